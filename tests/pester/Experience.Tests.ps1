# The PowerShell experience across every exported cmdlet: views for every output type, -WhatIf on every
# cmdlet that changes state, pipelines by property name, tab completion, documented error ids, scripts
# without prompts. Help pages (synopsis, description, parameters, examples) are checked by Help.Tests.ps1.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force

    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmquiesce-experience-$([Guid]::NewGuid().ToString('N').Substring(0, 8))"
    New-Item -ItemType Directory -Path $root -Force | Out-Null

    # A VM whose "disk" is a plain file (the files source), backed up into a repository.
    function script:New-FilesVm([string] $Name, [string] $Folder) {
        New-Item -ItemType Directory -Path $Folder -Force | Out-Null
        $disk = Join-Path $Folder 'disk.img'
        [IO.File]::WriteAllBytes($disk, [byte[]] (1..255 + 1..255))
        [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new($Name, @($disk))
    }

    $script:vm = New-FilesVm 'web 01' (Join-Path $root 'vms/web01')
    $script:repository = Join-Path $root 'repo'
    $script:point = $vm | Invoke-VmQuiescedBackup -Repository $repository -Consistency Crash -Confirm:$false

    # A qcow2 image with an internal snapshot, for Get-VmSnapshot's view and -Name completion.
    $script:image = $null
    if (Get-Command qemu-img -ErrorAction SilentlyContinue) {
        $script:image = Join-Path $root 'snap.qcow2'
        & qemu-img create -q -f qcow2 $image 1M
        & qemu-img snapshot -c 'before upgrade' $image
    }

    # A real QEMU guest for the tests that find running VMs; it boots while the other tests run.
    Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1') -Force
    $script:guestUnavailable = Get-TestGuestSkipReason
    $script:guest = if (-not $guestUnavailable) { Start-TestGuest -NoWait } else { $null }

    # This file's guest as discovery sees it (other tests' guests may be running too).
    function script:Get-RunningTestGuest {
        Wait-TestGuest -Guest $guest
        @([VmQuiesce.Core.Sources.Qemu.QemuDiscovery]::FindRunning() | Where-Object QmpSocket -eq $guest.QmpSocketPath)
    }

    # A backup of this file's guest (its disk records its format, so it can be served, mounted and started), made once.
    function script:Get-GuestPoint {
        if (-not $script:guestPoint) {
            Wait-TestGuest -Guest $guest
            $script:guestPoint = Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -Name experience-guest |
                Invoke-VmQuiescedBackup -Repository (Join-Path $root 'guest-repo') -Confirm:$false
        }
        $script:guestPoint
    }

    function script:Get-MountSkipReason {
        if ($guestUnavailable) { return $guestUnavailable }
        if (-not $IsLinux -or (& id -u) -ne '0') { return 'Mount-VmBackup needs root on Linux (loop devices and mount)' }
        if (-not (Test-Path /usr/bin/qemu-storage-daemon)) { return 'qemu-storage-daemon is not installed (Debian: qemu-system-common)' }
    }

    # What a -WhatIf run must leave as it was: every entry below $Folder (folders too, whose time changes when a
    # file such as a lock comes and goes), with its time and size.
    function script:Get-TreeState([string] $Folder) {
        Get-ChildItem -LiteralPath $Folder -Recurse -Force | Sort-Object FullName | ForEach-Object {
            '{0}|{1}|{2}' -f $_.FullName, $_.LastWriteTimeUtc.Ticks, $(if ($_.PSIsContainer) { '' } else { $_.Length })
        }
        (Get-Item -LiteralPath $Folder -Force).LastWriteTimeUtc.Ticks
    }

    function script:Complete([string] $InputScript) {
        (TabExpansion2 -inputScript $InputScript -cursorColumn $InputScript.Length).CompletionMatches
    }
}

AfterAll {
    if ($guest) { $guest | Stop-TestGuest }
    if ($root -and (Test-Path $root)) { Remove-Item $root -Recurse -Force }
}

BeforeDiscovery {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    $script:cmdlets = @((Get-Module VmQuiesce).ExportedCmdlets.Values | Sort-Object Name | ForEach-Object {
        @{ Name = $_.Name; Verb = $_.Verb; OutputTypes = @($_.OutputType.Type | Where-Object { $_ -and $_ -ne [bool] } | ForEach-Object FullName) }
    })
    $script:changingVerbs = 'Set', 'Remove', 'Invoke', 'Restore', 'Repair', 'New', 'Register', 'Unregister', 'Add', 'Clear', 'Start', 'Stop', 'Update', 'Install', 'Uninstall', 'Enable', 'Disable',
        'Copy', 'Import', 'Export', 'Mount', 'Dismount', 'Complete'
    $script:changing = @($cmdlets | Where-Object { $_.Verb -in $changingVerbs })
}

Describe '<Name>: views' -ForEach $cmdlets {
    It 'declares an output type, or its help says it writes none' {
        if (-not (Get-Command $Name).OutputType) {
            "$((Get-Help $Name).returnValues.returnValue.type.name)" | Should -Match '^None' -Because "$Name needs [OutputType] or an OUTPUTS section saying None"
        }
    }

    It 'has a table view and a list view for each output type' {
        foreach ($typeName in $OutputTypes) {
            $controls = @((Get-FormatData -TypeName $typeName -PowerShellVersion $PSVersionTable.PSVersion).FormatViewDefinition.Control |
                ForEach-Object { $_.GetType().Name })
            $controls | Should -Contain 'TableControl' -Because "$typeName (output of $Name) needs a table view in VmQuiesce.Format.ps1xml"
            $controls | Should -Contain 'ListControl' -Because "$typeName (output of $Name) needs a list view in VmQuiesce.Format.ps1xml"
        }
    }
}

Describe '<Name>: -WhatIf and -Confirm' -ForEach $changing {
    BeforeAll {
        # One real -WhatIf run per state-changing cmdlet: it must change nothing. A new cmdlet without an entry fails.
        $whatIfRuns = @{
            'Set-VssWriterConfig'       = {
                $folder = New-Item -ItemType Directory -Path (Join-Path $root "cfg-$(New-Guid)")
                Set-VssWriterConfig -Path $folder -OverwriteSnapshots $true -WhatIf
                Test-Path (Join-Path $folder 'vmvsswriter.cfg') | Should -BeFalse
            }
            'Remove-VssWriterConfig'    = {
                $folder = New-Item -ItemType Directory -Path (Join-Path $root "cfg-$(New-Guid)")
                Set-VssWriterConfig -Path $folder -OverwriteSnapshots $true -Confirm:$false -WarningAction SilentlyContinue
                Remove-VssWriterConfig -Path $folder -WhatIf
                Test-Path (Join-Path $folder 'vmvsswriter.cfg') | Should -BeTrue
            }
            'Set-VssWriterServiceLogon' = {
                if (-not $IsLinux -or (& id -u) -ne '0') { Set-ItResult -Skipped -Because 'the systemd backend with a temp unit directory runs on Linux as root; VssWriterServiceLogon.Windows.Tests.ps1 covers Windows'; return }
                $units = New-Item -ItemType Directory -Path (Join-Path $root "units-$(New-Guid)")
                Set-Content -Path (Join-Path $units 'vq-whatif.service') -Value "[Unit]`nDescription=x`n[Service]`nExecStart=/bin/true`n"
                Set-VssWriterServiceLogon -Credential ([pscredential]::new('root', [securestring]::new())) -ServiceName 'vq-whatif.service' -UnitDirectory $units -StateDirectory (Join-Path $units 'state') -WhatIf
                Test-Path (Join-Path $units 'vq-whatif.service.d') | Should -BeFalse
            }
            'Invoke-VmQuiescedBackup'   = {
                $before = @(Get-VmBackup $repository).Count
                $treeBefore = Get-TreeState $repository
                $vm | Invoke-VmQuiescedBackup -Repository $repository -Consistency Crash -WhatIf | Should -BeNullOrEmpty
                @(Get-VmBackup $repository).Count | Should -Be $before
                Get-TreeState $repository | Should -Be $treeBefore -Because 'the repository is left as it was'
            }
            'Copy-VmBackup'             = {
                $destination = Join-Path $root "copy-$(New-Guid)"
                $treeBefore = Get-TreeState $repository
                $point | Copy-VmBackup -Destination $destination -WhatIf | Should -BeNullOrEmpty
                Test-Path $destination | Should -BeFalse
                Get-TreeState $repository | Should -Be $treeBefore -Because 'the repository is left as it was'
            }
            'Remove-VmBackup'           = {
                $treeBefore = Get-TreeState $repository
                Remove-VmBackup -Repository $repository -Id $point.Id -WhatIf
                (Get-VmBackup $repository -Id $point.Id).Id | Should -Be $point.Id
                Get-TreeState $repository | Should -Be $treeBefore -Because 'the repository is left as it was'
            }
            'Repair-BackupVm'           = {
                $qemuImg = Get-Command qemu-img -CommandType Application -ErrorAction Ignore | Select-Object -First 1
                if (-not $qemuImg) { Set-ItResult -Skipped -Because 'qemu-img is not installed (the test guest build installs it on Debian)'; return }
                $image = Join-Path $root "repair-$(New-Guid).qcow2"
                $overlay = "$image.vmquiesce-20260101T000000000Z.qcow2"
                & $qemuImg.Source create -q -f qcow2 $image 1M
                & $qemuImg.Source create -q -f qcow2 -b $image -F qcow2 $overlay
                Repair-BackupVm -Overlay $overlay -WhatIf | Select-Object -ExpandProperty Action | Should -Be 'Skipped'
                Test-Path $overlay | Should -BeTrue
            }
            'Invoke-VmBackupJob'        = {
                $before = @(Get-VmBackup $repository).Count
                Invoke-VmBackupJob -Name whatif -Vm (Join-Path $root 'no-vm.qmp') -Repository $repository -KeepLast 1 -LogFolder (Join-Path $root 'whatif-logs') -WhatIf | Should -BeNullOrEmpty
                @(Get-VmBackup $repository).Count | Should -Be $before
                Test-Path (Join-Path $root 'whatif-logs') | Should -BeFalse
            }
            'Register-VmBackupSchedule' = {
                if ($IsWindows) { Set-ItResult -Skipped -Because 'Windows registers scheduled tasks; the -WhatIf run uses a temporary systemd unit directory'; return }
                $units = Join-Path $root "schedule-$(New-Guid)"
                Register-VmBackupSchedule -Name whatif -Vm web01 -Repository $repository -UnitDirectory $units -PowerShellPath (Get-Process -Id $PID).Path -WhatIf
                Test-Path $units | Should -BeFalse
            }
            'Unregister-VmBackupSchedule' = {
                if ($IsWindows) { Set-ItResult -Skipped -Because 'Windows registers scheduled tasks; the -WhatIf run uses a temporary systemd unit directory'; return }
                $units = Join-Path $root "schedule-$(New-Guid)"
                Register-VmBackupSchedule -Name whatif -Vm web01 -Repository $repository -UnitDirectory $units -PowerShellPath (Get-Process -Id $PID).Path -Confirm:$false
                Unregister-VmBackupSchedule -Name whatif -UnitDirectory $units -WhatIf
                (Get-VmBackupSchedule -Name whatif -UnitDirectory $units).Name | Should -Be 'whatif'
            }
            'Export-VmBackupRepositoryKey' = {
                $keyFile = Join-Path $root "export-$(New-Guid).key"
                Export-VmBackupRepositoryKey -Repository $repository -Destination $keyFile -WhatIf | Should -BeNullOrEmpty
                Test-Path $keyFile | Should -BeFalse
            }
            'Import-VmBackupRepositoryKey' = {
                $keyFile = Join-Path $root "import-$(New-Guid).key"
                Export-VmBackupRepositoryKey -Repository $repository -Destination $keyFile -Confirm:$false | Out-Null
                $keysBefore = Get-TreeState $env:VMQUIESCE_KEY_FOLDER
                Import-VmBackupRepositoryKey -Repository $repository -KeyFile $keyFile -WhatIf | Should -BeNullOrEmpty
                Get-TreeState $env:VMQUIESCE_KEY_FOLDER | Should -Be $keysBefore -Because "this host's key files are left as they were"
            }
            'Complete-VmInstantRestore' = {
                # Taking over an interrupted restore is what it changes: InstantRestore.Tests.ps1 runs -WhatIf on one.
                Complete-VmInstantRestore -Id 'no-such-restore' -WhatIf -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            }
            'New-VmBackupRepository'    = {
                $path = Join-Path $root "new-repo-$(New-Guid)"
                New-VmBackupRepository -Path $path -WhatIf | Should -BeNullOrEmpty
                Test-Path $path | Should -BeFalse
            }
            'Add-VmBackupRepositoryKey' = {
                $treeBefore = Get-TreeState $repository
                Add-VmBackupRepositoryKey -Repository $repository -Passphrase (ConvertTo-SecureString 'what-if passphrase' -AsPlainText -Force) -WhatIf | Should -BeNullOrEmpty
                (Get-VmBackupRepository $repository).PassphraseSlots | Should -BeNullOrEmpty
                Get-TreeState $repository | Should -Be $treeBefore -Because 'the repository is left as it was'
            }
            'Remove-VmBackupRepositoryKey' = {
                $treeBefore = Get-TreeState $repository
                Remove-VmBackupRepositoryKey -Repository $repository -HostKeyFile -Force -WhatIf
                (Get-VmBackupRepository $repository).HostKeyFile | Should -Not -BeNullOrEmpty
                Get-TreeState $repository | Should -Be $treeBefore -Because 'the repository is left as it was'
            }
            'Restore-VmSnapshot'        = {
                $destination = Join-Path $root "restore-$(New-Guid)"
                $treeBefore = Get-TreeState $repository
                $point | Restore-VmSnapshot -Destination $destination -WhatIf | Should -BeNullOrEmpty
                Test-Path (Join-Path $destination 'disk.img') | Should -BeFalse
                Get-TreeState $repository | Should -Be $treeBefore -Because 'no lock is taken in the repository for a restore that does not run'
            }
            'Start-VmBackupExport'      = {
                $treeBefore = Get-TreeState $repository
                Start-VmBackupExport -Repository $repository -Id $point.Id -WhatIf | Should -BeNullOrEmpty
                Get-VmBackupExport | Should -BeNullOrEmpty
                Get-TreeState $repository | Should -Be $treeBefore -Because 'the repository is left as it was'
            }
            'Stop-VmBackupExport'       = {
                $export = Start-VmBackupExport -Repository $repository -Id $point.Id -Confirm:$false
                try {
                    $export | Stop-VmBackupExport -WhatIf
                    (Get-VmBackupExport -Id $export.Id).IsRunning | Should -BeTrue
                }
                finally { $export | Stop-VmBackupExport -Confirm:$false }
                Get-VmBackupExport -Id $export.Id | Should -BeNullOrEmpty
            }
            'Mount-VmBackup'            = {
                $folder = Join-Path $root "mount-$(New-Guid)"
                $treeBefore = Get-TreeState $repository
                $point | Mount-VmBackup -Path $folder -WhatIf | Should -BeNullOrEmpty
                Test-Path $folder | Should -BeFalse
                Get-TreeState $repository | Should -Be $treeBefore -Because 'the repository is left as it was'
            }
            'Dismount-VmBackup'         = {
                if ($reason = Get-MountSkipReason) { Set-ItResult -Skipped -Because $reason; return }
                $folder = Join-Path $root "mount-$(New-Guid)"
                $mount = Get-GuestPoint | Mount-VmBackup -Path $folder -Confirm:$false
                try {
                    $mount | Dismount-VmBackup -WhatIf
                    Test-Path (Join-Path $folder 'disk0/lost+found') | Should -BeTrue
                }
                finally { $mount | Dismount-VmBackup -Confirm:$false }
                Test-Path $folder | Should -BeFalse
            }
            'Restore-VmBackupItem'      = {
                # Nothing is mounted to say what would be copied: a point that cannot be mounted (a plain file) shows it too.
                $treeBefore = Get-TreeState $repository
                $point | Restore-VmBackupItem -Path 'disk0/etc/hosts' -Destination (Join-Path $root "items-$(New-Guid)") -WhatIf -ErrorVariable problems | Should -BeNullOrEmpty
                $problems | Should -BeNullOrEmpty
                Get-TreeState $repository | Should -Be $treeBefore -Because 'the repository is left as it was'
                if ($reason = Get-MountSkipReason) { Set-ItResult -Skipped -Because "the copy out of a real guest's point: $reason"; return }
                $destination = Join-Path $root "items-$(New-Guid)"
                Get-GuestPoint | Restore-VmBackupItem -Path 'disk0/lost+found' -Destination $destination -WhatIf | Should -BeNullOrEmpty
                Test-Path (Join-Path $destination 'lost+found') | Should -BeFalse
            }
            'Start-VmInstantRestore'    = {
                $destination = Join-Path $root "instant-$(New-Guid)"
                $treeBefore = Get-TreeState $repository
                $point | Start-VmInstantRestore -Destination $destination -WhatIf | Should -BeNullOrEmpty
                Test-Path $destination | Should -BeFalse
                # Only this destination: the host's other instant restores (another run's) are not this test's.
                Get-VmInstantRestore | Where-Object Destination -Like "$destination*" | Should -BeNullOrEmpty
                Get-TreeState $repository | Should -Be $treeBefore -Because 'the repository is left as it was'
            }
            'Stop-VmInstantRestore'     = {
                if ($guestUnavailable) { Set-ItResult -Skipped -Because $guestUnavailable; return }
                $destination = Join-Path $root "instant-$(New-Guid)"
                # The guest's disk without a kernel: QEMU starts and the copy runs; no guest needs to boot.
                $restore = Get-GuestPoint | Start-VmInstantRestore -Destination $destination -VmOption @{ MemoryMiB = 64 } -Confirm:$false
                try {
                    $restore | Stop-VmInstantRestore -WhatIf
                    Get-VmInstantRestore | Where-Object Id -eq $restore.Id | Should -Not -BeNullOrEmpty
                    Test-Path $restore.Disks[0] | Should -BeTrue
                }
                finally {
                    $restore | Stop-VmInstantRestore -Confirm:$false
                    # A copy that completed first leaves its VM running, as it should: end it here.
                    Get-Process -Id $restore.ProcessId -ErrorAction Ignore | Stop-Process -Force
                }
                Get-VmInstantRestore | Where-Object Id -eq $restore.Id | Should -BeNullOrEmpty
            }
        }
    }

    It 'supports -WhatIf and -Confirm' {
        $parameters = (Get-Command $Name).Parameters
        $parameters.Keys | Should -Contain 'WhatIf' -Because "$Name changes state: SupportsShouldProcess = true"
        $parameters.Keys | Should -Contain 'Confirm'
    }

    It 'changes nothing with -WhatIf' {
        $whatIfRuns.Keys | Should -Contain $Name -Because "every state-changing cmdlet needs a -WhatIf run here"
        & $whatIfRuns[$Name]
    }
}

Describe 'Pipelines by property name' {
    It 'Get-BackupVm | Invoke-VmQuiescedBackup -Repository r (a BackupVm binds to -Vm)' {
        $other = New-FilesVm 'db01' (Join-Path $root 'vms/db01')
        # Get-BackupVm output is a BackupVm; the files source makes one without a hypervisor.
        $points = @($other, $vm) | Invoke-VmQuiescedBackup -Repository $repository -Consistency Crash -Confirm:$false
        $points.VmName | Sort-Object | Should -Be @('db01', 'web 01')
        $points | Should -BeOfType ([VmQuiesce.Core.Repository.RestorePoint])
    }

    It 'Get-VmBackup r -Latest | Test-VmBackup (Repository and Id bind by property name)' {
        $results = @(Get-VmBackup $repository -Latest | Test-VmBackup)
        $results.Count | Should -Be @(Get-VmBackup $repository -Latest).Count
        $results.Status | Should -Not -Contain 'Damaged'
        ($results | Where-Object VmName -eq 'web 01').Status | Should -Be 'Ok'
    }

    It 'Get-VmBackup r -Latest | Restore-VmSnapshot puts the files back' {
        $destination = Join-Path $root 'restored'
        $result = Get-VmBackup $repository -VmName 'web 01' -Latest | Restore-VmSnapshot -Destination $destination -Confirm:$false
        $result | Should -BeOfType ([VmQuiesce.Core.Restore.RestoreResult])
        $restored = Get-ChildItem $destination -Recurse -File -Filter disk.img
        [IO.File]::ReadAllBytes($restored.FullName).Length | Should -Be 510
    }

    It 'Get-VmBackup r -Latest | Remove-VmBackup removes exactly those points' {
        $repo = Join-Path $root 'repo-remove'
        $vm | Invoke-VmQuiescedBackup -Repository $repo -Consistency Crash -Confirm:$false | Out-Null
        Get-VmBackup $repo -Latest | Remove-VmBackup -Confirm:$false | Out-Null
        @(Get-VmBackup $repo) | Should -BeNullOrEmpty
    }
}

Describe '-Vm takes a VM name, a QMP socket or a .vmx path as well as Get-BackupVm objects' {
    It 'rejects text that names no VM, pointing at Get-BackupVm, before anything changes' {
        $target = Join-Path $root 'repo-none'
        { Invoke-VmQuiescedBackup -Vm 'no-such-vm-x1' -Repository $target -Consistency Crash -ErrorAction Stop } |
            Should -Throw -ExpectedMessage "*'no-such-vm-x1' is not a VM that Get-BackupVm can find*"
        Test-Path $target | Should -BeFalse
        { Test-VmQuiesceReadiness -Vm 'no-such-vm-x1' } | Should -Throw -ExpectedMessage '*Get-BackupVm*'
    }

    It 'finds a running QEMU VM by its name and by its QMP socket, as Get-BackupVm does' {
        if (-not $guest) { Set-ItResult -Skipped -Because "the QEMU test guest is unavailable: $guestUnavailable"; return }
        $running = Get-RunningTestGuest
        $running.Count | Should -Be 1
        # The transformation alone (read-only): it finds the VM; nothing is run against it.
        $transform = [VmQuiesce.Commands.BackupVmTransformationAttribute]::new()
        $byName = @($transform.Transform($ExecutionContext, $running[0].Name))
        $byName.Location | Should -Be @(Get-BackupVm -Name $running[0].Name).Location
        $bySocket = @($transform.Transform($ExecutionContext, $running[0].QmpSocket))
        $bySocket.Name | Should -Be @(Get-BackupVm -QmpSocket $running[0].QmpSocket).Name
        $bySocket[0] | Should -BeOfType ([VmQuiesce.Core.Sources.BackupVm])
    }
}

Describe 'Formatted output' {
    BeforeAll {
        $samples = [ordered]@{
            'BackupVm'                  = $vm
            'RestorePoint'              = $point
            'RestorePointVerification'  = $point | Test-VmBackup
            'PruneResult'               = Remove-VmBackup -Repository $repository -Id $point.Id -WhatIf -ErrorAction SilentlyContinue
            'VssWriterConfig'           = Get-VssWriterConfig -Path $root
            'VssWriterConfigDifference' = Test-VssWriterConfig -Path $root -OverwriteSnapshots $true -Detailed
            'RestoreResult'             = $point | Restore-VmSnapshot -Destination (Join-Path $root 'restored-format') -Confirm:$false
        }
        $pruneRepository = Join-Path $root 'repo-prune'
        $vm | Invoke-VmQuiescedBackup -Repository $pruneRepository -Consistency Crash -Confirm:$false | Out-Null
        $samples['PruneResult'] = Remove-VmBackup -Repository $pruneRepository -KeepLast 1 -Confirm:$false
        $configFile = Join-Path $root 'format-cfg/vmvsswriter.cfg'
        New-Item -ItemType Directory -Path (Split-Path $configFile) -Force | Out-Null
        Set-Content -Path $configFile -Value 'vmwriter.overwriteSnapshots = "FALSE"'
        $samples['VmwareConfigSetting'] = (Get-VssWriterConfig -Path $configFile).Settings[0]
        if ($IsLinux -and (& id -u) -eq '0') {
            $units = New-Item -ItemType Directory -Path (Join-Path $root 'format-units') -Force
            Set-Content -Path (Join-Path $units 'vq-format.service') -Value "[Unit]`nDescription=x`n[Service]`nExecStart=/bin/true`n"
            $samples['ServiceLogonInfo'] = Get-VssWriterServiceLogon -ServiceName 'vq-format.service' -UnitDirectory $units -VmFolder $root
            $samples['ServiceLogonTestResult'] = Test-VssWriterServiceLogon -Credential ([pscredential]::new('root', [securestring]::new())) -ServiceName 'vq-format.service' -UnitDirectory $units -StateDirectory (Join-Path $units 'state') -VmFolder $root -Detailed
        }
        if ($image) { $samples['VmSnapshot'] = Get-VmSnapshot -Path $image }
    }

    It 'shows <_> in a table and a list with human units and no raw type names' -ForEach @(
        'BackupVm', 'RestorePoint', 'RestorePointVerification', 'VssWriterConfig', 'VssWriterConfigDifference', 'RestoreResult',
        'PruneResult', 'VmwareConfigSetting', 'ServiceLogonInfo', 'ServiceLogonTestResult', 'VmSnapshot'
    ) {
        if (-not $samples.Contains($_)) { Set-ItResult -Skipped -Because "no $_ can be made here (ServiceLogon* need Linux as root, VmSnapshot needs qemu-img)"; return }
        $sample = $samples[$_]
        $sample | Should -Not -BeNullOrEmpty
        foreach ($format in 'Format-Table', 'Format-List') {
            $text = $sample | & $format | Out-String -Width 200
            $text | Should -Not -Match 'VmQuiesce\.Core\.|System\.Collections|System\.Object\[\]|Dictionary`' -Because "$format of $_ must not print type names:`n$text"
            $text.Trim() | Should -Not -BeNullOrEmpty
        }
    }

    It 'shows sizes in human units and durations readably' {
        $table = $point | Format-Table | Out-String -Width 200
        $table | Should -Match '\d+(\.\d)? (B|KiB|MiB|GiB)'
        $restore = $samples['RestoreResult'] | Format-Table | Out-String -Width 200
        $restore | Should -Match '\d+(\.\d)?s\b'
    }
}

Describe 'Tab completion' {
    It 'completes restore point ids for -Id from the -Repository already typed' {
        $found = Complete "Get-VmBackup -Repository '$repository' -Id $($point.Id.Substring(0, 8))"
        $found.CompletionText | Should -Contain $point.Id
        $found = Complete "Test-VmBackup '$repository' -Id "
        $found.CompletionText | Should -Contain $point.Id
        $found = Complete "Restore-VmSnapshot -Repository '$repository' -Id zz"
        $found | Should -BeNullOrEmpty
    }

    It 'completes ids from the manifests'' names, without reading a manifest' {
        $unread = Join-Path $root 'repo-completion'
        $made = ($vm | Invoke-VmQuiescedBackup -Repository $unread -Consistency Crash -Confirm:$false).Id
        # A manifest no one can read: a Tab must not read (and open with the key) every manifest of a repository.
        Set-Content -LiteralPath (Join-Path $unread "points/$made.json") -Value 'not a manifest'
        (Complete "Get-VmBackup -Repository '$unread' -Id ").CompletionText | Should -Be @($made)
    }

    It 'completes VM names in the repository for -VmName, quoting a name with a space' {
        $found = Complete "Remove-VmBackup -Repository '$repository' -KeepLast 1 -VmName we"
        $found.CompletionText | Should -Be @("'web 01'")
        $found[0].ListItemText | Should -Be 'web 01'
    }

    It 'completes folders, not files, for -Repository' {
        Push-Location $root
        try {
            $found = Complete 'Get-VmBackup -Repository re'
            $found.CompletionText | Should -Contain 'repo'
            $found.ResultType | Select-Object -Unique | Should -Be 'ProviderContainer'
            Complete 'Invoke-VmQuiescedBackup -Repository vms/we' | ForEach-Object CompletionText | Should -Be 'vms/web01'
        }
        finally { Pop-Location }
    }

    It 'completes systemd unit names for -ServiceName from -UnitDirectory' {
        if (-not $IsLinux) { Set-ItResult -Skipped -Because 'Windows completes service names from Get-Service; the unit directory is Linux only'; return }
        $units = New-Item -ItemType Directory -Path (Join-Path $root 'complete-units') -Force
        Set-Content -Path (Join-Path $units 'vmware-vss.service') -Value '[Service]'
        Set-Content -Path (Join-Path $units 'other.timer') -Value '[Timer]'
        $found = Complete "Get-VssWriterServiceLogon -UnitDirectory '$units' -ServiceName vm"
        $found.CompletionText | Should -Be @('vmware-vss.service')
    }

    It 'completes internal snapshot names of the image given with -Path, quoting names with spaces' {
        if (-not $image) { Set-ItResult -Skipped -Because 'qemu-img is not installed'; return }
        $found = Complete "Get-VmSnapshot -Path '$image' -Name bef"
        $found.CompletionText | Should -Be @("'before upgrade'")
    }

    It 'offers nothing, and does not fail, when the repository does not exist' {
        Complete "Get-VmBackup -Repository '$root/none' -Id " | Should -BeNullOrEmpty
    }

    It 'answers a Tab within the bound when a read of the repository blocks, instead of hanging the prompt' {
        if (-not $IsLinux) { Set-ItResult -Skipped -Because 'the blocking read is made with a FIFO (mkfifo), which is Linux only here'; return }
        # The host's key file of the repository, replaced by a FIFO: a read that waits, as one on an unreachable share does.
        $keys = New-Item -ItemType Directory -Path (Join-Path $root 'complete-blocked-keys') -Force
        $savedKeys = $env:VMQUIESCE_KEY_FOLDER
        $env:VMQUIESCE_KEY_FOLDER = $keys.FullName
        $blockedRepository = Join-Path $root 'repo-complete-blocked'
        $powerShell = $null
        try {
            $null = $vm | Invoke-VmQuiescedBackup -Repository $blockedRepository -Consistency Crash -Confirm:$false
            $keyFile = @(Get-ChildItem -LiteralPath $keys -Filter '*.key')[0].FullName
            Remove-Item -LiteralPath $keyFile
            & mkfifo $keyFile

            # In a runspace of its own, so that a Tab that hangs fails this test instead of hanging the run.
            $powerShell = [powershell]::Create()
            $null = $powerShell.AddScript('param($Module) Import-Module $Module').AddArgument($env:VMQUIESCE_MODULE_PATH).Invoke()
            $powerShell.Commands.Clear()
            $line = "Get-VmBackup -Repository '$blockedRepository' -VmName "
            $null = $powerShell.AddScript('param($Line) (TabExpansion2 -inputScript $Line -cursorColumn $Line.Length).CompletionMatches').AddArgument($line)
            $watch = [Diagnostics.Stopwatch]::StartNew()
            $pending = $powerShell.BeginInvoke()
            $answered = $pending.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(15))
            $watch.Stop()
            $answered | Should -BeTrue -Because 'a Tab answers within the completers'' bound (2 s), whatever a read of the repository does'
            $watch.Elapsed.TotalSeconds | Should -BeLessThan 15
        }
        finally {
            # A writer ends the read still waiting on the FIFO (opened read-write, which never waits itself; shared, as the reader holds it shared).
            if ($keyFile -and (Test-Path -LiteralPath $keyFile)) { [IO.File]::Open($keyFile, 'Open', 'ReadWrite', 'ReadWrite').Dispose() }
            if ($powerShell) {
                if ($pending) { $null = $pending.AsyncWaitHandle.WaitOne([TimeSpan]::FromSeconds(30)) }
                $powerShell.Dispose()
            }
            $env:VMQUIESCE_KEY_FOLDER = $savedKeys
        }
    }

    It 'offers what a lookup found within the bound, and reads no further after it' {
        if (-not $IsLinux) { Set-ItResult -Skipped -Because 'the blocking read is made with a FIFO (mkfifo), which is Linux only here'; return }
        $fifo = Join-Path $root 'complete-fifo'
        & mkfifo $fifo
        if (-not ('BlockingTestCompleter' -as [type])) {
            # -IgnoreWarnings: the module is built against .NET 8, this PowerShell may run a newer one (CS1701).
            Add-Type -IgnoreWarnings -ReferencedAssemblies ([VmQuiesce.Commands.VmQuiesceCompleter].Assembly.Location) -TypeDefinition @'
using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Threading;

// A completer whose lookup finds one value, then waits on a FIFO (as a read on an unreachable share does), then would find more.
public sealed class BlockingTestCompleter : VmQuiesce.Commands.VmQuiesceCompleter
{
    public static string Fifo;
    public static int Steps;
    public static System.Threading.Tasks.TaskCompletionSource<bool> Ended;

    protected override Func<CancellationToken, IEnumerable<string>> Lookup(string parameterName, string word, IDictionary fakeBoundParameters)
    {
        return cancel => Read();
    }

    private static IEnumerable<string> Read()
    {
        try
        {
            Steps = 1;
            yield return "found-first";
            Steps = 2;
            File.ReadAllText(Fifo);
            yield return "found-after-the-wait";
            Steps = 3;
            yield return "found-last";
        }
        finally
        {
            Ended.SetResult(true);
        }
    }
}
'@
        }
        [BlockingTestCompleter]::Fifo = $fifo
        [BlockingTestCompleter]::Steps = 0
        [BlockingTestCompleter]::Ended = [System.Threading.Tasks.TaskCompletionSource[bool]]::new()
        try {
            $watch = [Diagnostics.Stopwatch]::StartNew()
            $found = [BlockingTestCompleter]::new().CompleteArgument('Get-Thing', 'Name', '', $null, @{})
            $watch.Stop()
            $found.CompletionText | Should -Be @('found-first')
            $watch.Elapsed.TotalSeconds | Should -BeGreaterOrEqual ([VmQuiesce.Commands.VmQuiesceCompleter]::LookupBound.TotalSeconds - 0.1)
            $watch.Elapsed.TotalSeconds | Should -BeLessThan 15
        }
        finally {
            # A writer ends the wait; the lookup, cancelled, must then stop at the value that read gave.
            [IO.File]::Open($fifo, 'Open', 'ReadWrite', 'ReadWrite').Dispose()
        }
        [BlockingTestCompleter]::Ended.Task.Wait([TimeSpan]::FromSeconds(30)) | Should -BeTrue -Because 'the lookup ends once its pending read returns'
        [BlockingTestCompleter]::Steps | Should -Be 2
    }

    It 'completes the names of running QEMU VMs for Get-BackupVm -Name and their sockets for -QmpSocket' {
        if (-not $guest) { Set-ItResult -Skipped -Because "the QEMU test guest is unavailable: $guestUnavailable"; return }
        $running = Get-RunningTestGuest
        $running.Count | Should -Be 1
        (Complete "Get-BackupVm -Name $($running[0].Name.Substring(0, 1))").ListItemText | Should -Contain $running[0].Name
        (Complete "Get-BackupVm -QmpSocket $($running[0].QmpSocket.Substring(0, 3))").ListItemText | Should -Contain $running[0].QmpSocket
    }
}

Describe 'Scripts' {
    It 'runs state-changing cmdlets with -Confirm:$false in a runspace that has no UI host, without prompting' {
        $folder = New-Item -ItemType Directory -Path (Join-Path $root 'noninteractive') -Force
        $powerShell = [powershell]::Create()
        try {
            $null = $powerShell.AddScript({
                param($ModulePath, $Folder, $Vm)
                Import-Module $ModulePath
                $ConfirmPreference = 'Low'   # the strictest setting: every ShouldProcess would ask
                Set-VssWriterConfig -Path $Folder -OverwriteSnapshots $true -Confirm:$false -WarningAction SilentlyContinue
                $repo = Join-Path $Folder 'repo'
                $made = $Vm | Invoke-VmQuiescedBackup -Repository $repo -Consistency Crash -Confirm:$false
                $made | Restore-VmSnapshot -Destination (Join-Path $Folder 'restored') -Confirm:$false
                Remove-VmBackup -Repository $repo -KeepLast 1 -Confirm:$false
                Remove-VssWriterConfig -Path $Folder -Confirm:$false
                Get-VmBackup $repo
            }).AddArgument($env:VMQUIESCE_MODULE_PATH).AddArgument($folder.FullName).AddArgument($vm)
            $output = $powerShell.Invoke()
            $powerShell.Streams.Error | Should -BeNullOrEmpty
            # Objects, never formatted text.
            $output | Where-Object { $_ -is [string] } | Should -BeNullOrEmpty
            @($output | Where-Object { $_ -is [VmQuiesce.Core.Repository.RestorePoint] }).Count | Should -Be 1
            Test-Path (Join-Path $folder 'vmvsswriter.cfg') | Should -BeFalse
            # The long operations said what they were doing (a host-less runspace collects the records).
            $activities = @($powerShell.Streams.Progress | ForEach-Object Activity | Select-Object -Unique)
            $activities | Should -Contain 'Backing up VMs'
            $activities | Where-Object { $_ -like 'Restoring web 01 *' } | Should -Not -BeNullOrEmpty
            $activities | Where-Object { $_ -like 'Pruning *' } | Should -Not -BeNullOrEmpty
        }
        finally { $powerShell.Dispose() }
    }

    It 'stops the command (terminating error) for an invalid combination even with -ErrorAction SilentlyContinue' {
        { Remove-VmBackup -Repository $repository -VmName x -ErrorAction SilentlyContinue } |
            Should -Throw -ErrorId 'RetentionPolicyEmpty,VmQuiesce.Commands.RemoveVmBackupCommand'
        @(Get-VmBackup $repository).Count | Should -BeGreaterThan 0
    }

    It 'ends Copy-VmBackup with PathNotFileSystem for a -Destination of another provider, before any restore point is read' {
        { Copy-VmBackup -Repository (Join-Path $root 'no-such-repository') -Destination 'Variable:/copy' -ErrorAction SilentlyContinue } |
            Should -Throw -ErrorId 'PathNotFileSystem,VmQuiesce.Commands.CopyVmBackupCommand'
    }

    It 'gives a non-terminating error with a stable id and the real target for one bad item, and goes on with the others' {
        $results = Get-VmBackup $repository -Id 'no-such-id', $point.Id -ErrorVariable problems -ErrorAction SilentlyContinue
        $results.Id | Should -Be $point.Id
        $problems.Count | Should -Be 1
        $problems[0].FullyQualifiedErrorId | Should -Match '^[A-Z][A-Za-z]+,VmQuiesce\.Commands\.GetVmBackupCommand$'
        $problems[0].TargetObject | Should -Not -BeOfType ([System.Management.Automation.Cmdlet])
    }

    It 'gives a non-terminating PathNotFileSystem for a piped Dismount-VmBackup folder that does not resolve, and goes on to the next' {
        $unresolved = 'NoSuchDrive:/mount'
        $notMounted = Join-Path $root 'not-mounted'

        # A terminating error would throw here and leave the second folder alone.
        $failures = @([pscustomobject]@{ Path = $unresolved }, [pscustomobject]@{ Path = $notMounted } | Dismount-VmBackup -Confirm:$false -ErrorAction Continue 2>&1)

        $failures.FullyQualifiedErrorId | Should -Be @('PathNotFileSystem,VmQuiesce.Commands.DismountVmBackupCommand', 'MountNotFound,VmQuiesce.Commands.DismountVmBackupCommand')
        Assert-UnresolvedPathFailure $failures[0] Dismount-VmBackup Path $unresolved
        $failures[1].TargetObject | Should -Be $notMounted -Because 'the folder after the unresolved one is processed'
    }
}

Describe 'Documentation' {
    It 'documents every error id in the source in a help page or about topic, however the id is built' {
        function Get-SourceErrorId {
            # Every error id the code can raise, however it is built.
            param([string] $Source)
            $files = @(Get-ChildItem $Source -Recurse -Filter *.cs | Where-Object FullName -NotMatch '[\\/](obj|bin)[\\/]' | ForEach-Object { Get-Content -Raw $_.FullName })
            $all = $files -join "`n"
            $peers = @([regex]::Matches($all, 'const string Peer = "(?<id>\w+)"') | ForEach-Object { $_.Groups['id'].Value })
            # Methods that take the id as a parameter named errorId, and where it sits among their arguments.
            $takers = foreach ($declaration in [regex]::Matches($all, '(?<name>\w+)\((?<before>[^()]*?)\bstring errorId\b')) {
                @{ Name = $declaration.Groups['name'].Value; Index = ([regex]::Matches($declaration.Groups['before'].Value, ',')).Count }
            }
            $literal = '"(?<id>[A-Z][A-Za-z0-9]+)"'
            $ids = [Collections.Generic.HashSet[string]]::new()
            foreach ($code in $files) {
                $found = [Collections.Generic.List[string]]::new()
                $add = { param($pattern) foreach ($m in [regex]::Matches($code, $pattern)) { $found.Add($m.Groups['id'].Value) } }
                # Beside its FailureKind (VmQuiesceException, the VSS and vmrun tables), not after a '+' (a suffix).
                & $add "(?<!\+\s*)$literal,\s*FailureKind\."
                & $add "FailureKind\.\w+,\s*$literal"
                & $add "const string \w*Id = $literal"
                foreach ($taker in $takers) {
                    $skip = '(?:[^,()]*(?:\([^()]*\))?[^,()]*,\s*)' * $taker.Index
                    & $add "\b$($taker.Name)\(\s*$skip$literal"
                }
                # A peer's name and a suffix: Peer + "Timeout", or peer + suffix from a (suffix, kind) table.
                $ownPeers = @([regex]::Matches($code, 'const string Peer = "(?<id>\w+)"') | ForEach-Object { $_.Groups['id'].Value })
                if (-not $ownPeers) { $ownPeers = $peers }
                $suffixes = @([regex]::Matches($code, "\b(?:[Pp]eer|errorPrefix) \+ $literal") | ForEach-Object { $_.Groups['id'].Value })
                if ($code -match '\b[Pp]eer \+ suffix\b') {
                    $table = @([regex]::Matches($code, "\($literal,\s*FailureKind\.") | ForEach-Object { $_.Groups['id'].Value })
                    $suffixes += $table
                    $found.RemoveAll({ param($id) $table -contains $id }) | Out-Null
                }
                foreach ($id in $found) { $null = $ids.Add($id) }
                foreach ($suffix in $suffixes) { foreach ($peer in $ownPeers) { $null = $ids.Add($peer + $suffix) } }
            }
            , @($ids | Sort-Object)
        }
        $ids = Get-SourceErrorId (Join-Path $PSScriptRoot '../../src')
        $ids.Count | Should -BeGreaterThan 150 -Because 'the scan must find the error ids'
        $ids | Should -Contain 'GuestAgentTimeout' -Because 'an id built from a peer and a suffix counts'
        $ids | Should -Contain 'QmpDeviceNotFound' -Because 'an id built from a peer and a table of suffixes counts'
        $ids | Should -Contain 'ServiceRestartFailed' -Because 'an id passed to a parameter named errorId counts'
        $ids | Should -Contain 'VssProviderVeto' -Because 'an id in a table beside its FailureKind counts'
        $ids | Should -Not -Contain 'Timeout' -Because 'a suffix alone is not an id'
        $help = (Get-ChildItem (Join-Path $PSScriptRoot '../../en-US') -Filter *.md | Get-Content -Raw) -join "`n"
        $undocumented = @($ids | Where-Object { $help -notmatch "\b$_\b" })
        $undocumented | Should -BeNullOrEmpty -Because "each error id belongs in the NOTES of the cmdlet that emits it, or an about topic: $($undocumented -join ', ')"
    }

    It 'about_VmQuiesce walks through the whole recipe: config, service logon, first backup, restore' {
        $about = Get-Help about_VmQuiesce | Out-String
        foreach ($step in 'Set-VssWriterConfig', 'Set-VssWriterServiceLogon', 'Get-BackupVm', 'Invoke-VmQuiescedBackup', 'Test-VmBackup', 'Restore-VmSnapshot', 'Remove-VmBackup', 'VmBackupSchedule') {
            $about | Should -Match $step
        }
    }

    It 'about_VmQuiesce_Repository names every entry a real repository holds' {
        $about = Get-Help about_VmQuiesce_Repository | Out-String
        foreach ($entry in Get-ChildItem $repository) {
            $about | Should -Match ([regex]::Escape($entry.Name)) -Because "the format page must describe '$($entry.Name)'"
        }
        $manifest = Get-ChildItem (Join-Path $repository 'points') -Recurse -File | Select-Object -First 1
        $fields = (Get-Content -Raw $manifest.FullName | ConvertFrom-Json).PSObject.Properties.Name
        foreach ($field in $fields) {
            $about | Should -Match "\b$field\b" -Because "the format page must describe the manifest field '$field'"
        }
    }
}
