BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1') -Force
    $script:unavailable = Get-TestGuestSkipReason

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
    It 'takes the readiness line only once it is whole: a line QEMU has written part of is not ready' {
        # No QEMU needed: a console that ends inside the marker's line, and a process that has already exited.
        $folder = Join-Path ([IO.Path]::GetTempPath()) "vmquiesce-guest-console-$([guid]::NewGuid().ToString('N'))"
        New-Item -ItemType Directory $folder | Out-Null
        try {
            $console = Join-Path $folder 'console.log'
            [IO.File]::WriteAllText($console, "booting`nVMQUIESCE-GUEST-READY dis")
            $exited = [Diagnostics.Process]::Start('/bin/true')
            $exited.WaitForExit()
            $guest = [pscustomobject]@{
                PSTypeName = 'VmQuiesce.TestGuest'; ConsoleLog = $console; QemuLog = (Join-Path $folder 'qemu.log')
                Process = $exited; WorkFolder = $folder; TimeoutSeconds = 60; ReadyLine = $null; BootSeconds = $null; Stopwatch = [Diagnostics.Stopwatch]::StartNew()
            }
            { Wait-TestGuest -Guest $guest } | Should -Throw '*QEMU exited with code 0 before it was ready*'
            $guest.ReadyLine | Should -BeNullOrEmpty
        }
        finally {
            Remove-Item $folder -Recurse -Force
        }
    }

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

Describe 'A required test guest (VMQUIESCE_REQUIRE_GUEST=1, as CI sets it)' {
    BeforeAll {
        # A guest folder whose build recorded why it could not be built.
        $script:savedGuest, $script:savedRequire = $env:VMQUIESCE_TEST_GUEST, $env:VMQUIESCE_REQUIRE_GUEST
        $script:brokenGuest = Join-Path ([IO.Path]::GetTempPath()) "vmq-broken-guest-$([Guid]::NewGuid().ToString('N').Substring(0, 8))"
        New-Item -ItemType Directory -Path $brokenGuest | Out-Null
        Set-Content -Path (Join-Path $brokenGuest 'unavailable.txt') -Value 'no registry reachable'
        $env:VMQUIESCE_TEST_GUEST = $brokenGuest
    }
    AfterAll {
        $env:VMQUIESCE_TEST_GUEST, $env:VMQUIESCE_REQUIRE_GUEST = $savedGuest, $savedRequire
        Remove-Item $brokenGuest -Recurse -Force
    }

    It 'is skipped with the reason when not required' {
        $env:VMQUIESCE_REQUIRE_GUEST = $null
        Get-TestGuestSkipReason | Should -Match 'no registry reachable|Linux host only'
    }

    It 'is not skipped when required: starting it fails, naming the requirement and the reason' {
        $env:VMQUIESCE_REQUIRE_GUEST = '1'
        Get-TestGuestSkipReason | Should -BeNullOrEmpty
        { Start-TestGuest -NoWait } | Should -Throw '*VMQUIESCE_REQUIRE_GUEST=1 requires it*'
    }
}
