BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1') -Force
    $script:unavailable = Get-TestGuestSkipReason
    $script:onLinux = [bool](Get-Variable IsLinux -ValueOnly -ErrorAction Ignore)
}

Describe 'Get-BackupVm without a VM' {
    It 'has discovery, QMP socket, the two VMware and the Hyper-V parameter sets' {
        @((Get-Command Get-BackupVm).ParameterSets.Name | Sort-Object) | Should -Be @('Discover', 'HyperV', 'Path', 'QmpSocket', 'VmwareRunning', 'VmxPath')
        (Get-Command Get-BackupVm).OutputType.Name | Should -Contain 'VmQuiesce.Core.Sources.BackupVm'
    }

    It 'reports a missing QMP socket as QmpSocketNotFound with the path as target' {
        $path = Join-Path ([IO.Path]::GetTempPath()) "vmq-missing-$([guid]::NewGuid().ToString('N')).sock"
        $result = Get-BackupVm -QmpSocket $path -Name vm1 -ErrorVariable failures -ErrorAction SilentlyContinue
        $result | Should -BeNullOrEmpty
        $failures.Count | Should -Be 1
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'QmpSocketNotFound,*'
        $failures[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $failures[0].TargetObject | Should -Be $path
    }

    It 'reports a -<Parameter> that does not resolve as a non-terminating PathNotFileSystem for its pipeline item and goes on to the next' -ForEach @(
        @{ Parameter = 'QmpSocket'; Unresolved = @{ QmpSocket = 'NoSuchDrive:/qmp.sock' }; Next = 'QmpSocket'; NextErrorId = 'QmpSocketNotFound' }
        # A tcp monitor is taken as it is: only the agent socket fails to resolve, and nothing connects.
        @{ Parameter = 'AgentSocket'; Unresolved = @{ QmpSocket = 'tcp:127.0.0.1:1'; AgentSocket = 'NoSuchDrive:/qga.sock' }; Next = 'QmpSocket'; NextErrorId = 'QmpSocketNotFound' }
        @{ Parameter = 'Path'; Unresolved = @{ Path = 'NoSuchDrive:/disk.img' }; Next = 'Path'; NextErrorId = 'ImageNotFound' }
    ) {
        $missing = Join-Path ([IO.Path]::GetTempPath()) "vmq-missing-$([guid]::NewGuid().ToString('N'))"
        $items = [pscustomobject]$Unresolved, [pscustomobject]@{ $Next = $missing }

        # A terminating error would throw here and leave the second item unprocessed.
        $failures = @($items | Get-BackupVm -ErrorAction Continue 2>&1)

        $failures.FullyQualifiedErrorId | Should -Be @('PathNotFileSystem,VmQuiesce.Commands.GetBackupVmCommand', "$NextErrorId,VmQuiesce.Commands.GetBackupVmCommand")
        Assert-UnresolvedPathFailure $failures[0] Get-BackupVm $Parameter $Unresolved[$Parameter]
        $failures[1].TargetObject | Should -Be $missing -Because 'the item after the unresolved one is processed'
    }

    It 'reports a name that no running VM has as VmNotFound' {
        if (-not $onLinux) { Set-ItResult -Skipped -Because 'discovery reads /proc and works on Linux only'; return }
        Get-BackupVm -Name "no-such-vm-$([guid]::NewGuid().ToString('N'))" -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'VmNotFound,*'
    }

    It 'refuses discovery off Linux with DiscoveryNotSupported' {
        if ($onLinux) { Set-ItResult -Skipped -Because 'this host is Linux, where discovery works'; return }
        { Get-BackupVm -ErrorAction Stop } | Should -Throw -ErrorId 'DiscoveryNotSupported,*'
    }
}

Describe 'Test-VmQuiesceReadiness without a VM' {
    It 'rejects a VM of another kind with ReadinessNotSupported' {
        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('vm1', [string[]] @('/vms/vm1/disk.img'))
        $vm | Test-VmQuiesceReadiness -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'ReadinessNotSupported,*'
        $failures[0].TargetObject.Name | Should -Be 'vm1'
    }

    It 'reports an unreachable monitor as a failed row with a remedy and skips the rest' {
        $notASocket = New-TemporaryFile
        try {
            $rows = [VmQuiesce.Core.Sources.Qemu.QemuVm]::new('vm1', $notASocket.FullName, $null) | Test-VmQuiesceReadiness
            $rows.Count | Should -Be 6
            $rows[0].Check | Should -Be 'QmpReachable'
            $rows[0].Status | Should -Be 'Failed'
            $rows[0].Remedy | Should -Not -BeNullOrEmpty
            @($rows | Select-Object -Skip 1 | ForEach-Object { "$($_.Status)" } | Sort-Object -Unique) | Should -Be @('Skipped')
        }
        finally {
            Remove-Item $notASocket
        }
    }

    It 'refuses a socket path that is a regular file at Get-BackupVm, naming it, before anything connects' {
        if (-not $onLinux) { Set-ItResult -Skipped -Because 'telling a socket from a file uses statx: Linux only'; return }
        $notASocket = New-TemporaryFile
        try {
            Get-BackupVm -QmpSocket $notASocket.FullName -Name vm1 -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $failures[0].FullyQualifiedErrorId | Should -BeLike 'SocketPathNotASocket,*'
            $failures[0].TargetObject | Should -Be $notASocket.FullName
        }
        finally {
            Remove-Item $notASocket
        }
    }

    It 'makes a VM of plain images from a folder (a stopped VM''s disks), named after the folder, and backs it up' {
        $folder = Join-Path ([IO.Path]::GetTempPath()) "vmq-path-$([guid]::NewGuid().ToString('N'))/web01"
        New-Item -ItemType Directory -Path $folder -Force | Out-Null
        try {
            [IO.File]::WriteAllBytes((Join-Path $folder 'disk0.img'), [byte[]]::new(8192))
            [IO.File]::WriteAllBytes((Join-Path $folder 'disk1.img'), [byte[]] (1..200))
            $vm = Get-BackupVm -Path $folder
            $vm | Should -BeOfType ([VmQuiesce.Core.Sources.PlainImage.PlainImageVm])
            $vm.Name | Should -Be 'web01'
            @($vm.Paths | Split-Path -Leaf) | Should -Be @('disk0.img', 'disk1.img')
            $point = $vm | Invoke-VmQuiescedBackup -Repository (Join-Path (Split-Path $folder) 'repo') -Consistency Crash
            $point.Files.Count | Should -Be 2
            { Get-BackupVm -Path (Join-Path $folder 'none.img') -ErrorAction Stop } | Should -Throw -ErrorId 'ImageNotFound,*'
        }
        finally {
            Remove-Item -LiteralPath (Split-Path $folder) -Recurse -Force
        }
    }

    It 'refuses an image another process has open unless -AllowInUse' {
        if (-not $onLinux) { Set-ItResult -Skipped -Because 'which process has a file open is read from /proc: Linux only'; return }
        $image = New-TemporaryFile
        # A process that holds the image open for writing, as a running VM holds its disk.
        $start = [Diagnostics.ProcessStartInfo]::new('/bin/sh')
        foreach ($argument in '-c', 'exec 3>>"$0"; exec sleep 60', $image.FullName) { $start.ArgumentList.Add($argument) }
        $holder = [Diagnostics.Process]::Start($start)
        try {
            $deadline = [Diagnostics.Stopwatch]::StartNew()
            while ((Get-Item "/proc/$($holder.Id)/fd/3" -ErrorAction SilentlyContinue).LinkTarget -ne $image.FullName) {
                if ($deadline.Elapsed.TotalSeconds -gt 10) { throw 'the holder did not open the image' }
                $holder.WaitForExit(20) | Out-Null
            }
            Get-BackupVm -Path $image.FullName -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $failures[0].FullyQualifiedErrorId | Should -BeLike 'ImageInUse,*'
            "$($failures[0])" | Should -BeLike "*process $($holder.Id)*"
            (Get-BackupVm -Path $image.FullName -AllowInUse -Name held).Name | Should -Be 'held'
        }
        finally {
            $holder.Kill()
            $holder.WaitForExit()
            Remove-Item $image
        }
    }

    It 'takes several names at once and reports each plain name that matches nothing' {
        if (-not $onLinux) { Set-ItResult -Skipped -Because 'discovery reads /proc and works on Linux only'; return }
        $first = "no-such-vm-$([guid]::NewGuid().ToString('N'))"
        $second = "no-such-vm-$([guid]::NewGuid().ToString('N'))"
        Get-BackupVm -Name $first, $second, 'no-such-*' -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        @($failures | ForEach-Object TargetObject) | Should -Be @($first, $second)
    }
}

Describe 'A VM typed as text for -Vm: what Get-BackupVm warns while finding it is the calling cmdlet''s warning' {
    BeforeAll {
        # Two QEMUs with a monitor and no guest agent (no machine, nothing to boot): Get-BackupVm -QmpSocket finds each
        # and warns that without an agent it reaches only Crash consistency. -daemonize returns once the monitor listens.
        $script:bareSkip = if (-not $onLinux -or (& id -u) -ne '0') { 'needs Linux as root: the QEMU is trusted as root''s, by /proc' }
            elseif (-not (Test-Path /usr/bin/qemu-system-x86_64)) { 'qemu-system-x86_64 is not installed' }
        $script:bareRoot = Join-Path ([IO.Path]::GetTempPath()) "vmq-pester-bare-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
        $script:bare = [ordered]@{}
        if (-not $bareSkip) {
            New-Item -ItemType Directory -Path $bareRoot | Out-Null
            foreach ($name in 'bare-a', 'bare-b') {
                $socket = Join-Path $bareRoot "$name.qmp"
                & /usr/bin/qemu-system-x86_64 -daemonize -pidfile (Join-Path $bareRoot "$name.pid") -machine none -nodefaults -no-user-config -display none `
                    -name $name -qmp "unix:$socket,server=on,wait=off"
                if ($LASTEXITCODE -ne 0) { throw "QEMU for $name did not start (exit code $LASTEXITCODE)" }
                $bare[$name] = $socket
            }
        }

        # Runs $Script in a PowerShell whose host records what reaches the console; its output (with 3>&1, warnings too) and that host.
        function script:Invoke-Recorded([string] $Script) {
            $console = New-RecordingPowerShell
            try {
                $output = $console.PowerShell.AddScript("Import-Module '$env:VMQUIESCE_MODULE_PATH'; $Script").Invoke()
                [pscustomobject]@{ Output = @($output); Host = $console.Host; Errors = @($console.PowerShell.Streams.Error) }
            }
            finally {
                $console.PowerShell.Runspace.Dispose()
                $console.PowerShell.Dispose()
            }
        }
    }

    AfterAll {
        foreach ($pidFile in Get-ChildItem -Path $bareRoot -Filter '*.pid' -Recurse -ErrorAction Ignore) {
            Stop-Process -Id ([int](Get-Content -LiteralPath $pidFile.FullName)) -Force -ErrorAction Ignore
        }
        Remove-Item -LiteralPath $bareRoot -Recurse -Force -ErrorAction Ignore
    }

    It '<Command>: -WarningAction SilentlyContinue and $WarningPreference hide them, 3>&1 and -WarningVariable get each once, in order, none reaches the console' -ForEach @(
        @{ Command = 'Test-VmQuiesceReadiness'; Call = 'Test-VmQuiesceReadiness'; Piped = $true }
        @{ Command = 'Invoke-VmQuiescedBackup'; Call = "Invoke-VmQuiescedBackup -Repository '{0}' -WhatIf"; Piped = $true }
        @{ Command = 'Repair-BackupVm'; Call = 'Repair-BackupVm -WhatIf'; Piped = $true }
        # The job finds its VMs as the transformation does, and then fails to back these up (no agent: no FileSystem consistency).
        @{ Command = 'Invoke-VmBackupJob'; Call = "Invoke-VmBackupJob -Name text-vm -Repository '{0}'"; Piped = $false }
    ) {
        if ($bareSkip) { Set-ItResult -Skipped -Because $bareSkip; return }
        $vms = "'$($bare['bare-a'])', '$($bare['bare-b'])'"
        $command = $Call -f (Join-Path $bareRoot 'repo')
        $noAgent = "VM 'bare-?': no guest agent socket*Crash consistency*"

        $hidden = Invoke-Recorded "$command -Vm $vms -WarningAction SilentlyContinue"
        @($hidden.Host.Warnings -like $noAgent) | Should -BeNullOrEmpty -Because '-WarningAction SilentlyContinue hides them'
        $preferred = Invoke-Recorded "`$WarningPreference = 'SilentlyContinue'; $command -Vm $vms"
        @($preferred.Host.Warnings -like $noAgent) | Should -BeNullOrEmpty -Because '$WarningPreference hides them'

        $merged = Invoke-Recorded "$command -Vm $vms 3>&1"
        @($merged.Host.Warnings -like $noAgent) | Should -BeNullOrEmpty -Because '3>&1 takes them off the console'
        @($merged.Output | Where-Object { $_ -is [Management.Automation.WarningRecord] -and $_.Message -like $noAgent }).Message -replace ':.*' |
            Should -Be @("VM 'bare-a'", "VM 'bare-b'") -Because 'each VM''s warning comes once, in the order the VMs were given'

        $kept = Invoke-Recorded "$command -Vm $vms -WarningVariable kept -WarningAction SilentlyContinue | Out-Null; `$kept"
        @($kept.Output | Where-Object { "$_" -like $noAgent }).Count | Should -Be 2 -Because '-WarningVariable gets them'

        if ($Piped) {
            $piped = Invoke-Recorded "$vms | $command 3>&1"
            @($piped.Host.Warnings -like $noAgent) | Should -BeNullOrEmpty -Because 'text from the pipeline is found the same way'
            @($piped.Output | Where-Object { $_ -is [Management.Automation.WarningRecord] -and $_.Message -like $noAgent }).Count | Should -Be 2
        }
    }

    It 'Invoke-VmQuiescedBackup writes them, first, even when it then refuses its other parameters' {
        if ($bareSkip) { Set-ItResult -Skipped -Because $bareSkip; return }
        $noAgent = "VM 'bare-?': no guest agent socket*Crash consistency*"

        $refused = Invoke-Recorded "Invoke-VmQuiescedBackup -Vm '$($bare['bare-a'])' -Repository '$(Join-Path $bareRoot 'repo')' -ChunkSize 1000000 3>&1"

        @($refused.Output | Where-Object { $_ -is [Management.Automation.WarningRecord] }).Message | Should -BeLike $noAgent -Because 'Get-BackupVm warned while -Vm was bound, before -ChunkSize was refused'
        @($refused.Errors).FullyQualifiedErrorId | Should -Be @('InvalidChunkSize,VmQuiesce.Commands.InvokeVmQuiescedBackupCommand')
        @($refused.Host.Warnings) | Should -BeNullOrEmpty
    }

    It 'puts what Get-BackupVm warned into the error when it finds no VM for the text, instead of on the console' {
        if ($bareSkip) { Set-ItResult -Skipped -Because $bareSkip; return }
        # A system QEMU run as a user that is neither root nor a QEMU user (65534, nobody): discovery refuses it, with a
        # warning that says why. Its folder is one that user can write.
        $impostorRoot = New-Item -ItemType Directory -Path (Join-Path $bareRoot 'impostor')
        & chmod 1777 $impostorRoot
        $pidFile = Join-Path $impostorRoot 'impostor.pid'
        & setpriv --reuid=65534 --regid=65534 --clear-groups /usr/bin/qemu-system-x86_64 -daemonize -pidfile $pidFile -machine none -nodefaults -no-user-config `
            -display none -name impostor-vm -qmp "unix:$(Join-Path $impostorRoot 'impostor.qmp'),server=on,wait=off"
        if ($LASTEXITCODE -ne 0) { throw "the impostor QEMU did not start (exit code $LASTEXITCODE)" }
        $impostorId = [int](Get-Content -LiteralPath $pidFile)

        $failed = Invoke-Recorded 'Test-VmQuiesceReadiness -Vm impostor-vm -WarningAction SilentlyContinue'

        @($failed.Host.Warnings) | Should -BeNullOrEmpty
        $failed.Errors[0].Exception.Message | Should -BeLike "*'impostor-vm' is not a VM that Get-BackupVm can find*Get-BackupVm warned: Process $impostorId (*impostor-vm*) was not taken for a QEMU VM: it runs as user*"
    }
}

Describe 'Get-BackupVm and Test-VmQuiesceReadiness against a real guest' {
    BeforeAll {
        if (-not $unavailable) { $script:guest = Start-TestGuest }
    }

    AfterAll {
        if ($script:guest) { $script:guest | Stop-TestGuest }
    }

    It 'gets the VM by its sockets, naming it after the socket when QEMU has no -name' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $vm = Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath
        $vm | Should -BeOfType ([VmQuiesce.Core.Sources.BackupVm])
        $vm.Kind | Should -Be 'Qemu'
        $vm.Name | Should -Be 'qmp'
        $vm.Location | Should -Be $guest.QmpSocketPath
        $vm.Details['AgentSocket'] | Should -Be $guest.AgentSocketPath
    }

    It 'takes the sockets from the pipeline by property name' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $vm = $guest | Get-BackupVm -Name guest1
        $vm.Name | Should -Be 'guest1'
        $vm.Details['QmpSocket'] | Should -Be $guest.QmpSocketPath
        $vm.Details['AgentSocket'] | Should -Be $guest.AgentSocketPath
    }

    It 'discovers the running guest with both sockets from its command line' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $found = @(Get-BackupVm | Where-Object Location -EQ $guest.QmpSocketPath)
        $found.Count | Should -Be 1
        $found[0].Details['AgentSocket'] | Should -Be $guest.AgentSocketPath
        $found[0].Details['ProcessId'] | Should -Be "$($guest.Process.Id)"
    }

    It 'completes -Name with the names of running VMs' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        # Other VMs may come and go on this host meanwhile: check for this guest only.
        $mine = (Get-BackupVm | Where-Object Location -EQ $guest.QmpSocketPath).Name
        $line = "Get-BackupVm -Name $($mine.Substring(0, 3))"
        $completions = (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches
        $completions.ListItemText | Should -Contain $mine
        $completions.ListItemText | ForEach-Object { $_ | Should -BeLike "$($mine.Substring(0, 3))*" }
    }

    It 'passes every readiness check and shows them as a table and a list' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $rows = @(Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath | Test-VmQuiesceReadiness)
        @($rows.Check) | Should -Be @('QmpReachable', 'AgentAnswering', 'FreezeSupported', 'DisksSnapshotable', 'OverlaySpace', 'NoLeftovers')
        $rows | ForEach-Object { $_ | Should -BeOfType ([VmQuiesce.Core.Sources.ReadinessCheck]); "$($_.Check)=$($_.Status)" } |
            Should -Be @('QmpReachable=Passed', 'AgentAnswering=Passed', 'FreezeSupported=Passed', 'DisksSnapshotable=Passed', 'OverlaySpace=Passed', 'NoLeftovers=Passed')
        ($rows | Where-Object Check -EQ 'FreezeSupported').Detail | Should -BeLike '*FileSystem*'
        $table = $rows | Format-Table | Out-String -Width 200
        $table | Should -BeLike '*Check*Status*Detail*'
        $table | Should -BeLike '*QmpReachable*Passed*'
        $list = $rows | Format-List | Out-String -Width 200
        $list | Should -BeLike '*Remedy*'
        $vmTable = Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath | Format-Table | Out-String -Width 300
        $vmTable | Should -BeLike "*AgentSocket*$($guest.AgentSocketPath)*"
    }

    It 'finds the agent socket on QEMU''s own command line when only the monitor is given, so readiness passes' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $vm = Get-BackupVm -QmpSocket $guest.QmpSocketPath -WarningVariable warnings
        $warnings | Should -BeNullOrEmpty
        $vm.Details['AgentSocket'] | Should -Be $guest.AgentSocketPath
        $vm.Details['ProcessId'] | Should -Be "$($guest.Process.Id)"
        $rows = @($vm | Test-VmQuiesceReadiness)
        ($rows | Where-Object Check -EQ 'AgentAnswering').Status | Should -Be 'Passed'
        ($rows | Where-Object Check -EQ 'FreezeSupported').Detail | Should -BeLike '*FileSystem*'
    }

    It 'names the VM alike whether it is discovered or named by its socket: one VM, one name' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $discovered = @(Get-BackupVm | Where-Object Location -EQ $guest.QmpSocketPath)
        $discovered.Name | Should -Be (Get-BackupVm -QmpSocket $guest.QmpSocketPath).Name
        $discovered.Name | Should -Be 'qmp'
    }

    It 'closes the monitor and agent connections it made while the repository opened when the repository fails, so they are free at once' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $vm = Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath
        $notRepository = Join-Path $TestDrive 'not-a-repository'
        Set-Content -Path $notRepository -Value 'a file where the repository folder should be'
        { $vm | Invoke-VmQuiescedBackup -Repository $notRepository -Confirm:$false -ErrorAction Stop } | Should -Throw
        # QEMU's monitor and agent each serve one client at a time: a connection left open would keep the checks from them.
        $rows = @($vm | Test-VmQuiesceReadiness)
        ($rows | Where-Object Check -EQ 'QmpReachable').Status | Should -Be 'Passed'
        ($rows | Where-Object Check -EQ 'AgentAnswering').Status | Should -Be 'Passed'
        Get-Content -Path $notRepository | Should -Be 'a file where the repository folder should be'
    }

    It 'warns that without an agent socket only Crash consistency is reachable' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $rows = @([VmQuiesce.Core.Sources.Qemu.QemuVm]::new('noagent', $guest.QmpSocketPath, $null) | Test-VmQuiesceReadiness)
        $agent = $rows | Where-Object Check -EQ 'AgentAnswering'
        $agent.Status | Should -Be 'Warning'
        $agent.Detail | Should -BeLike '*Crash*'
        ($rows | Where-Object Check -EQ 'FreezeSupported').Status | Should -Be 'Skipped'
    }
}

Describe 'Change-tracked backups of several guests in parallel' {
    It 'backs up two guests at once, one with two disks, a full point each and then an incremental point each that reads only what changed, into a repository it made with 512 KiB chunks' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $repository = Join-Path ([IO.Path]::GetTempPath()) "vmq-parallel-tracked-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
        $existing = "$repository-existing"
        $asked = "$repository-asked"
        $guests = @()
        try {
            $guests += Start-TestGuest -NoWait -DiskCount 2
            $guests += Start-TestGuest -NoWait
            $guests | Wait-TestGuest
            $vms = @(
                Get-BackupVm -QmpSocket $guests[0].QmpSocketPath -AgentSocket $guests[0].AgentSocketPath -Name 'two-disks'
                Get-BackupVm -QmpSocket $guests[1].QmpSocketPath -AgentSocket $guests[1].AgentSocketPath -Name 'one-disk'
            )

            $first = @($vms | Invoke-VmQuiescedBackup -Repository $repository -ChangeTracking -ThrottleLimit 2 -Confirm:$false -WarningVariable firstWarnings -WarningAction SilentlyContinue)
            $modes = [Collections.Generic.List[string]]::new()
            $second = @($vms | Invoke-VmQuiescedBackup -Repository $repository -ChangeTracking -ThrottleLimit 2 -Confirm:$false -PreFreezeScript { $modes.Add("$([Runtime.GCSettings]::LatencyMode)") })
            $modes | Should -Be @('NoGCRegion', 'NoGCRegion') -Because 'change-tracked backups run without garbage collection (within a budget)'
            "$([Runtime.GCSettings]::LatencyMode)" | Should -Not -Be 'NoGCRegion' -Because 'the region ends with the command'

            @($first | Sort-Object VmName).VmName | Should -Be @('one-disk', 'two-disks')
            @($first.ChunkSize | Sort-Object -Unique) | Should -Be 512KB -Because 'a change-tracked backup that creates its repository gives it 512 KiB chunks'
            @($first | Sort-Object VmName | ForEach-Object { $_.Files.Count }) | Should -Be @(1, 2)
            @($first.Files.ChangeTracking | ForEach-Object { "$_" } | Sort-Object -Unique) | Should -Be 'Full (NoCheckpoint)'
            @($firstWarnings | Where-Object { "$_" -like '*NoCheckpoint*' }).Count | Should -Be 3
            @($second.Files.ChangeTracking | ForEach-Object { "$_" } | Sort-Object -Unique) | Should -Be 'Incremental'
            foreach ($point in $second) {
                $base = $first | Where-Object VmName -EQ $point.VmName
                foreach ($file in $point.Files) {
                    $file.GetChangeTracking().BasePoint | Should -Be $base.Id
                    $file.GetChangeTracking().BytesRead | Should -BeLessThan ($file.Size / 4)
                }
            }
            @($second | Test-VmBackup -Repository $repository).IsValid | Should -Be @($true, $true)

            # An existing repository keeps its chunk size, and -ChunkSize still decides for a new one.
            $null = New-VmBackupRepository -Path $existing -Confirm:$false
            ($vms[1] | Invoke-VmQuiescedBackup -Repository $existing -ChangeTracking -Confirm:$false -WarningAction SilentlyContinue).ChunkSize | Should -Be 4MB
            ($vms[1] | Invoke-VmQuiescedBackup -Repository $asked -ChangeTracking -ChunkSize 2MB -Confirm:$false -WarningAction SilentlyContinue).ChunkSize | Should -Be 2MB
            # A whole-image backup collects garbage as it goes.
            $modes.Clear()
            $null = $vms[1] | Invoke-VmQuiescedBackup -Repository $existing -Confirm:$false -PreFreezeScript { $modes.Add("$([Runtime.GCSettings]::LatencyMode)") }
            $modes.Count | Should -Be 1
            $modes[0] | Should -Not -Be 'NoGCRegion'
        }
        finally {
            $guests | Stop-TestGuest
            foreach ($folder in $repository, $existing, $asked) { Remove-Item -LiteralPath $folder -Recurse -Force -ErrorAction Ignore }
        }
    }
}
