BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1') -Force
    $script:unavailable = Get-TestGuestUnavailableReason

    function Read-QmpGreeting {
        # The first line QEMU's QMP server sends on connect; proves the monitor socket is live.
        param([string] $SocketPath)
        $socket = [Net.Sockets.Socket]::new([Net.Sockets.AddressFamily]::Unix, [Net.Sockets.SocketType]::Stream, [Net.Sockets.ProtocolType]::Unspecified)
        try {
            $socket.Connect([Net.Sockets.UnixDomainSocketEndPoint]::new($SocketPath))
            $socket.ReceiveTimeout = 30000
            $reader = [IO.StreamReader]::new([Net.Sockets.NetworkStream]::new($socket))
            return $reader.ReadLine()
        }
        finally {
            $socket.Dispose()
        }
    }
}

Describe 'The test guest (tests/guest/TestGuest.psm1)' {
    It 'boots until its agent holds the port, answers on QMP, then stops and leaves nothing behind' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $guest = Start-TestGuest
        try {
            $guest.ReadyLine | Should -BeLike 'VMQUIESCE-GUEST-READY disks=1 agent=/dev/vport*'
            $guest.Process.HasExited | Should -BeFalse
            Test-Path $guest.AgentSocketPath | Should -BeTrue
            Read-QmpGreeting $guest.QmpSocketPath | Should -BeLike '{"QMP": {"version": *'
        }
        finally {
            $guest | Stop-TestGuest
        }
        $guest.Process.HasExited | Should -BeTrue
        Test-Path $guest.WorkFolder | Should -BeFalse
    }

    It 'boots two guests in parallel, each with its own disks and sockets' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $guests = @()
        try {
            $guests += Start-TestGuest -NoWait -DiskCount 2 -DiskFormat raw
            $guests += Start-TestGuest -NoWait -MemoryMB 96
            $guests | Wait-TestGuest
            $guests[0].ReadyLine | Should -BeLike '* disks=2 *'
            $guests[1].ReadyLine | Should -BeLike '* disks=1 *'
            $guests[0].QmpSocketPath | Should -Not -Be $guests[1].QmpSocketPath
        }
        finally {
            $guests | Stop-TestGuest
        }
    }

    It 'fails at once with the guest''s output when QEMU exits before the guest is ready' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $guest = Start-TestGuest -NoWait
        try {
            $guest.Process.Kill()
            { $guest | Wait-TestGuest } | Should -Throw '*QEMU exited with code*before it was ready*--- console ---*'
        }
        finally {
            $guest | Stop-TestGuest
        }
    }
}
