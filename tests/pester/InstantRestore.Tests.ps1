# An instant restore whose serving pwsh is killed with SIGKILL mid-copy, against the real test guest: a new
# session finds it in its record and either completes it (the point served again, the copy resumed, nothing the
# guest wrote lost) or stops it, and nothing is left behind either way.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force
    $script:unavailable = Get-TestGuestUnavailableReason
    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmq-instant-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
    $script:repository = Join-Path $root 'repo'

    # Starts the restore in a child pwsh, throttled so the copy is still running when the child is killed.
    function script:Start-ServedRestore([string] $Destination) {
        $started = Start-ChildScript -Script 'Start-ServedInstantRestore.ps1' -Expect 'STARTED *' -RedirectInput -Arguments @(
            '-ModulePath', $env:VMQUIESCE_MODULE_PATH, '-Repository', $repository, '-Id', $point.Id, '-Destination', $Destination, '-CopyRateLimit', 64KB)
        [pscustomobject]@{ Process = $started.Process; Id = $started.Line.Substring(8) }
    }

    function script:Get-Backing([string] $Disk) {
        (& qemu-img info -U --output=json -f qcow2 $Disk | ConvertFrom-Json).'backing-filename'
    }

    # The restore's record and NBD socket, if any is left.
    function script:Get-Leftover([string] $Id) {
        @(Get-ChildItem /run/vmquiesce/instant-restores -Filter "$Id.*" -ErrorAction Ignore)
    }

    if (-not $unavailable) {
        $guest = Start-TestGuest
        try {
            Invoke-GuestShell $guest.AgentSocketPath 'echo instant-marker > /mnt/data/marker.txt && sync' | Out-Null
            $script:point = Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -Name instant-guest |
                Invoke-VmQuiescedBackup -Repository $repository -Confirm:$false
        }
        finally { $guest | Stop-TestGuest }
    }
}

AfterAll {
    if ($root -and (Test-Path $root)) { Remove-Item $root -Recurse -Force }
}

Describe 'An instant restore whose serving pwsh was killed with SIGKILL' {
    It 'is stopped by a new session: the VM ended, its disks, record and socket removed' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $served = Start-ServedRestore (Join-Path $root 'stop')
        $served.Process.Kill()
        $served.Process.WaitForExit()
        $found = Get-VmInstantRestore | Where-Object Id -EQ $served.Id
        $found.State | Should -Be 'Interrupted'
        Get-Leftover $served.Id | Should -Not -BeNullOrEmpty -Because 'the dead process left its record and socket'

        # -WhatIf takes nothing over: nothing served again, no copy started, nothing written.
        $found | Complete-VmInstantRestore -WhatIf | Should -BeNullOrEmpty
        (Get-VmInstantRestore | Where-Object Id -EQ $served.Id).State | Should -Be 'Interrupted'

        $found | Stop-VmInstantRestore -Confirm:$false

        Get-Process -Id $found.ProcessId -ErrorAction Ignore | Should -BeNullOrEmpty
        Test-Path $found.Disks[0] | Should -BeFalse
        Test-Path $found.Overlays[0] | Should -BeFalse
        Get-Leftover $served.Id | Should -BeNullOrEmpty
        Get-VmInstantRestore | Where-Object Id -EQ $served.Id | Should -BeNullOrEmpty
    }

    It 'is completed by a new session: served again, the copy resumed, every write kept, nothing left behind' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $served = Start-ServedRestore (Join-Path $root 'complete')
        $restore = Get-VmInstantRestore | Where-Object Id -EQ $served.Id
        try {
            $restore.State | Should -Be 'ServedElsewhere'
            { $restore | Stop-VmInstantRestore -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'InstantRestoreServedElsewhere,*'
            Invoke-GuestShell $restore.AgentSocket 'cat /mnt/data/marker.txt' | Should -Be "instant-marker`n"
            Invoke-GuestShell $restore.AgentSocket 'echo written-before-the-kill > /mnt/data/before.txt && sync' | Out-Null

            $served.Process.Kill()   # SIGKILL: no finally, no cleanup in the child
            $served.Process.WaitForExit()

            $found = Get-VmInstantRestore | Where-Object Id -EQ $served.Id
            $found.State | Should -Be 'Interrupted'
            Get-Backing $found.Overlays[0] | Should -BeLike 'nbd+unix:*' -Because 'the kill must land while the copy still runs'
            Get-Backing $found.Disks[0] | Should -BeNullOrEmpty -Because 'the local disk is the copy''s target, never backed by the repository'

            $completed = $found | Complete-VmInstantRestore -CopyRateLimit 0
            $completed.State | Should -Be 'Completed'
            Get-Backing $completed.Disks[0] | Should -BeNullOrEmpty
            Test-Path $completed.Overlays[0] | Should -BeFalse
            Get-Leftover $served.Id | Should -BeNullOrEmpty

            # The repository is gone: what the guest reads now comes from its local disk.
            Remove-Item $repository -Recurse -Force
            Invoke-GuestShell $restore.AgentSocket 'sync && echo 3 > /proc/sys/vm/drop_caches' | Out-Null
            Invoke-GuestShell $restore.AgentSocket 'cat /mnt/data/marker.txt /mnt/data/before.txt' | Should -Be "instant-marker`nwritten-before-the-kill`n"
        }
        finally {
            if (-not $served.Process.HasExited) { $served.Process.Kill() }
            Get-Process -Id $restore.ProcessId -ErrorAction Ignore | Stop-Process -Force
            $restore | Stop-VmInstantRestore -Confirm:$false -ErrorAction Ignore
        }
    }
}
