# A real backup process SIGKILLed at a chosen point against the real guest: the guest is thawed by the
# guardian, and what the dead run left is repaired by the next command that touches the VM.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force
    $script:unavailable = Get-TestGuestUnavailableReason
    if (-not $unavailable) { $script:guest = Start-TestGuest }

    # Starts Start-HeldBackup.ps1 in a child pwsh and returns it once it holds at $HoldAt.
    function Start-HeldBackup([string] $HoldAt) {
        (Start-ChildScript -Script 'Start-HeldBackup.ps1' -Expect 'HOLDING' -Arguments @(
            '-ModulePath', $env:VMQUIESCE_MODULE_PATH, '-QmpSocket', $guest.QmpSocketPath, '-AgentSocket', $guest.AgentSocketPath, '-HoldAt', $HoldAt)).Process
    }

    # The agent's freeze status, asking until it answers (the killed process's connection closes first).
    function Get-FreezeStatus([timespan] $Within) {
        $clock = [Diagnostics.Stopwatch]::StartNew()
        while ($true) {
            try {
                $agent = [VmQuiesce.Core.Sources.Qemu.GuestAgentClient]::Connect($guest.AgentSocketPath, [timespan]::FromSeconds(5))
                try { return $agent.GetFreezeStatus() } finally { $agent.Dispose() }
            }
            catch [VmQuiesce.Core.VmQuiesceException] {
                if ($clock.Elapsed -gt $Within) { throw }
            }
        }
    }

    function Get-Overlay { @(Get-ChildItem $guest.WorkFolder -Filter '*.vmquiesce-*') }
}

AfterAll {
    if ($script:guest) { $script:guest | Stop-TestGuest }
}

Describe 'A backup process killed with SIGKILL against a real guest' {
    It 'while the guest is frozen: the guardian thaws it within the freeze timeout' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $held = Start-HeldBackup -HoldAt Frozen
        $held.Kill()   # SIGKILL: nothing in the process runs any more, no finally, no watchdog
        $held.WaitForExit()
        $killed = [Diagnostics.Stopwatch]::StartNew()

        # The guardian connects once the dead process's connection is closed; the backup's own deadline is 10 minutes.
        $status = Get-FreezeStatus -Within ([timespan]::FromSeconds(10))
        while ($status -ne 'thawed' -and $killed.Elapsed -lt [timespan]::FromSeconds(10)) { $status = Get-FreezeStatus -Within ([timespan]::FromSeconds(10)) }

        $status | Should -Be 'thawed' -Because 'the guardian must thaw the guest within the default 10 s freeze timeout of the kill'
        Get-Overlay | Should -BeNullOrEmpty
        # The run record says who thawed it; the next readiness check is clean and the record goes with the next repair.
        $readiness = @(Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath | Test-VmQuiesceReadiness)
        ($readiness | Where-Object Check -EQ 'FreezeSupported').Status | Should -Be 'Passed'
        ($readiness | Where-Object Check -EQ 'NoLeftovers').Detail | Should -BeLike '*VmQuiesce guardian*thawed the guest*'
        $repaired = @(Repair-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -Confirm:$false)
        $repaired.Leftover | Should -Be @('RunRecord')
    }

    It 'while the VM runs on its overlay: the next backup commits it back, says so, and backs up' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $held = Start-HeldBackup -HoldAt Overlay
        $held.Kill()
        $held.WaitForExit()
        @(Get-Overlay).Count | Should -Be 1 -Because 'the killed run left the VM on its overlay'

        $vm = Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -Name faults
        $leftover = $vm | Test-VmQuiesceReadiness | Where-Object Check -EQ 'NoLeftovers'
        $leftover.Status | Should -Be 'Failed'
        $leftover.Remedy | Should -BeLike "*Repair-BackupVm -QmpSocket '$($guest.QmpSocketPath)'*"
        $repo = Join-Path ([IO.Path]::GetTempPath()) ('vmq-faults-' + [guid]::NewGuid().ToString('N'))
        try {
            $point = $vm | Invoke-VmQuiescedBackup -Repository $repo -WarningVariable warnings -WarningAction SilentlyContinue
            $point.Consistency | Should -Be 'FileSystem'
            ($warnings -join "`n") | Should -BeLike '*repaired what an interrupted backup left: Overlay committed*'
            Get-Overlay | Should -BeNullOrEmpty
        }
        finally {
            Remove-Item $repo -Recurse -Force -ErrorAction Ignore
        }
    }

    It 'while the VM runs on its overlay: Repair-BackupVm commits it back at once' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $held = Start-HeldBackup -HoldAt Overlay
        $held.Kill()
        $held.WaitForExit()

        Repair-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -WhatIf | Should -Not -BeNullOrEmpty
        @(Get-Overlay).Count | Should -Be 1 -Because '-WhatIf changes nothing'
        $done = @(Repair-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -Confirm:$false)

        ($done | Where-Object Leftover -EQ 'Overlay').Action | Should -Be 'Committed'
        ($done | Where-Object Leftover -EQ 'RunRecord').Action | Should -Be 'Deleted'
        Get-Overlay | Should -BeNullOrEmpty
        @(Repair-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -Confirm:$false) | Should -BeNullOrEmpty
    }
}

Describe 'Repair-BackupVm parameters' {
    It 'refuses to run without a target, and an agent socket alone without -Thaw' {
        { Repair-BackupVm -QmpSocket $null -ErrorAction Stop } | Should -Throw
        { Repair-BackupVm -AgentSocket '/nonexistent/qga.sock' -ErrorAction Stop } | Should -Throw -ErrorId 'AgentOnlyRepairNeedsThaw,VmQuiesce.Commands.RepairBackupVmCommand'
    }

    It 'refuses an overlay file that is not a VmQuiesce overlay, changing nothing' {
        $file = Join-Path ([IO.Path]::GetTempPath()) ('vmq-not-an-overlay-' + [guid]::NewGuid().ToString('N') + '.qcow2')
        Set-Content -Path $file -Value 'x'
        try {
            Repair-BackupVm -Overlay $file -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $failures[0].FullyQualifiedErrorId | Should -Be 'OverlayInvalid,VmQuiesce.Commands.RepairBackupVmCommand'
            Test-Path $file | Should -BeTrue
        }
        finally {
            Remove-Item $file
        }
    }

    It 'reports a piped -<Parameter> that does not resolve as a non-terminating PathNotFileSystem and goes on to the next item' -ForEach @(
        @{ Parameter = 'Overlay'; Unresolved = @{ Overlay = 'NoSuchDrive:/disk.vmquiesce-overlay.qcow2' }; Next = 'Overlay'; NextErrorId = 'OverlayInvalid' }
        @{ Parameter = 'QmpSocket'; Unresolved = @{ QmpSocket = 'NoSuchDrive:/qmp.sock' }; Next = 'QmpSocket'; NextErrorId = 'QmpConnectFailed' }
        @{ Parameter = 'AgentSocket'; Unresolved = @{ QmpSocket = 'tcp:127.0.0.1:1'; AgentSocket = 'NoSuchDrive:/qga.sock' }; Next = 'QmpSocket'; NextErrorId = 'QmpConnectFailed' }
    ) {
        # The next item is an overlay file that is not a VmQuiesce overlay, or a monitor socket that does not exist: it fails on its own.
        $nextPath = Join-Path ([IO.Path]::GetTempPath()) ('vmq-next-' + [guid]::NewGuid().ToString('N') + '.qcow2')
        if ($Next -eq 'Overlay') { Set-Content -Path $nextPath -Value 'x' }
        try {
            # A terminating error would throw here and leave the second item unrepaired.
            $failures = @([pscustomobject]$Unresolved, [pscustomobject]@{ $Next = $nextPath } | Repair-BackupVm -ErrorAction Continue 2>&1)

            $failures.FullyQualifiedErrorId | Should -Be @('PathNotFileSystem,VmQuiesce.Commands.RepairBackupVmCommand', "$NextErrorId,VmQuiesce.Commands.RepairBackupVmCommand")
            Assert-UnresolvedPathFailure $failures[0] Repair-BackupVm $Parameter $Unresolved[$Parameter]
        }
        finally {
            Remove-Item $nextPath -ErrorAction Ignore
        }
    }
}

Describe 'A backup of a real guest stopped with Ctrl+C while it copies' {
    BeforeAll {
        if (-not $unavailable) {
            # 256 MiB of random data on the guest's disk: a copy long enough to stop on any machine.
            $content = Join-Path ([IO.Path]::GetTempPath()) "vmq-pester-cancel-$([guid]::NewGuid().ToString('N'))"
            New-Item -ItemType Directory -Path $content | Out-Null
            & dd if=/dev/urandom "of=$(Join-Path $content 'random.bin')" bs=1M count=256 status=none
            try { $script:bigGuest = Start-TestGuest -DiskSizeMB 512 -ContentFolder $content }
            finally { Remove-Item -LiteralPath $content -Recurse -Force }
        }
    }

    AfterAll {
        if ($script:bigGuest) { $script:bigGuest | Stop-TestGuest }
    }

    It 'says "cancelled; guest thawed", leaves the guest thawed and stores no point' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $repository = Join-Path $bigGuest.WorkFolder 'cancel-repo'
        $console = New-RecordingPowerShell
        $copying = "vmq-cancel-progress-$([guid]::NewGuid().ToString('N'))"
        try {
            $null = $console.PowerShell.AddScript("Import-Module '$env:VMQUIESCE_MODULE_PATH'; Get-BackupVm -QmpSocket '$($bigGuest.QmpSocketPath)' -AgentSocket '$($bigGuest.AgentSocketPath)' | Invoke-VmQuiescedBackup -Repository '$repository'")
            # Stopped once a progress record says bytes were copied: the guest was frozen, snapshotted and thawed, and the copy runs.
            $null = Register-ObjectEvent -InputObject $console.PowerShell.Streams.Progress -EventName DataAdded -SourceIdentifier $copying
            $handle = $console.PowerShell.BeginInvoke()
            $underWay = $false
            while (-not $underWay -and -not $handle.IsCompleted) {
                $added = Wait-Event -SourceIdentifier $copying -Timeout 120
                if (-not $added) { break }
                $added | Remove-Event
                $underWay = @($console.PowerShell.Streams.Progress | Where-Object { $_.StatusDescription -match '^\S.*: [1-9][\d.,]* \S+ of ' }).Count -gt 0
            }
            $underWay | Should -BeTrue -Because 'the copy must report progress'
            $handle.IsCompleted | Should -BeFalse -Because 'the backup must still be copying when it is stopped'
            $console.PowerShell.Stop()
            $console.PowerShell.InvocationStateInfo.State | Should -Be 'Stopped'
        }
        finally {
            Unregister-Event -SourceIdentifier $copying -ErrorAction Ignore
            Get-Event -SourceIdentifier $copying -ErrorAction Ignore | Remove-Event
            $console.PowerShell.Runspace.Dispose()
            $console.PowerShell.Dispose()
        }

        $console.Host.Warnings -join "`n" | Should -BeLike "*The backup of VM '*' was cancelled; guest thawed, no restore point stored.*"
        $agent = [VmQuiesce.Core.Sources.Qemu.GuestAgentClient]::Connect($bigGuest.AgentSocketPath, [timespan]::FromSeconds(10))
        try { $agent.GetFreezeStatus() | Should -Be 'thawed' } finally { $agent.Dispose() }
        @(Get-VmBackup -Repository $repository -ErrorAction SilentlyContinue) | Should -BeNullOrEmpty
        @(Get-ChildItem -LiteralPath (Join-Path $repository 'points') -Force -ErrorAction Ignore) | Should -BeNullOrEmpty -Because 'no manifest, not even a partial one, was written'
        @(Get-ChildItem $bigGuest.WorkFolder -Filter '*.vmquiesce-*') | Should -BeNullOrEmpty -Because 'the backup''s overlays are committed back'
    }
}
