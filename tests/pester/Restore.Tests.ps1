BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force

    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmq-pester-restore-$([guid]::NewGuid().ToString('N'))"
    $script:disks = Join-Path $root 'disks'
    $script:repo = Join-Path $root 'repo'
    New-Item -ItemType Directory -Path $disks | Out-Null

    function New-TestDisk {
        param([string] $Name, [int] $Length, [int] $Seed)
        $bytes = [byte[]]::new($Length)
        [Random]::new($Seed).NextBytes($bytes)
        $path = Join-Path $disks $Name
        [IO.File]::WriteAllBytes($path, $bytes)
        $path
    }

    function Get-Sha256 { param([string] $Path) (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant() }

    $script:diskA = New-TestDisk 'web01-a.img' (300KB) 1
    $script:diskB = New-TestDisk 'web01-b.img' (20KB) 2
    $script:shaA = Get-Sha256 $diskA
    $script:shaB = Get-Sha256 $diskB
    $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('web01', @($diskA, $diskB))
    $script:point = Invoke-VmQuiescedBackup -Vm $vm -Repository $repo -Consistency Crash
}

AfterAll {
    Remove-Item -LiteralPath $root -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Restore-VmSnapshot' {
    BeforeEach {
        [IO.File]::WriteAllBytes($diskA, [byte[]](1, 2, 3))
        Remove-Item -LiteralPath $diskB -ErrorAction SilentlyContinue
    }

    It 'restores a restore point from Get-VmBackup over the originals with -Force' {
        $result = Get-VmBackup $repo -VmName web01 -Latest | Restore-VmSnapshot -Force -Confirm:$false

        $result | Should -BeOfType ([VmQuiesce.Core.Restore.RestoreResult])
        $result.FileCount | Should -Be 2
        $result.Bytes | Should -Be (320KB)
        $result.Revert | Should -Be 'NotNeeded'
        $result.SnapshotReverted | Should -BeFalse
        ($result.Files | Where-Object Replaced).Path | Should -Be $diskA
        Get-Sha256 $diskA | Should -Be $shaA
        Get-Sha256 $diskB | Should -Be $shaB
    }

    It 'binds -Repository and -Id by property name and by position' {
        $byProperty = [pscustomobject]@{ Repository = $repo; Id = $point.Id } | Restore-VmSnapshot -Force -Confirm:$false
        $byPosition = Restore-VmSnapshot $repo $point.Id -Destination (Join-Path $root 'positional')

        $byProperty.RestorePointId | Should -Be $point.Id
        $byPosition.Destination | Should -Be (Join-Path $root 'positional')
        Get-Sha256 (Join-Path (Join-Path $root 'positional') 'web01-a.img') | Should -Be $shaA
    }

    It 'restores into -Destination and leaves the VM files alone' {
        $destination = Join-Path $root 'elsewhere'

        $result = Restore-VmSnapshot -RestorePoint $point -Destination $destination

        $result.Destination | Should -Be $destination
        Get-Sha256 (Join-Path $destination 'web01-a.img') | Should -Be $shaA
        [IO.File]::ReadAllBytes($diskA).Count | Should -Be 3
    }

    It 'asks before replacing the VM''s own disks (High impact) with Yes to All; told No, it replaces nothing' {
        $console = New-RecordingPowerShell -Answer 2   # Yes, Yes to All, No, No to All, (Suspend)
        try {
            $null = $console.PowerShell.AddScript("Import-Module '$env:VMQUIESCE_MODULE_PATH'; Restore-VmSnapshot -Repository '$repo' -Id '$($point.Id)' -Force").Invoke()

            @($console.PowerShell.Streams.Error) | Should -BeNullOrEmpty
            $console.Host.Prompts.Count | Should -Be 1
            $console.Host.Prompts[0] | Should -BeLike "Replace 1 file(s) of VM 'web01' ($diskA) with restore point $($point.Id) of ????-??-?? ??:??:??*"
            $console.Host.Choices[0] | Should -BeLike 'Yes|Yes to All|No|No to All*'
            [IO.File]::ReadAllBytes($diskA).Count | Should -Be 3
        }
        finally {
            $console.PowerShell.Runspace.Dispose()
            $console.PowerShell.Dispose()
        }
    }

    It 'does not ask for a restore into -Destination; a host that cannot ask gets ConfirmationRequired over the disks' {
        $shell = [powershell]::Create()
        try {
            $null = $shell.AddScript("Import-Module '$env:VMQUIESCE_MODULE_PATH'; Restore-VmSnapshot -Repository '$repo' -Id '$($point.Id)' -Destination '$(Join-Path $root 'unasked')'; Restore-VmSnapshot -Repository '$repo' -Id '$($point.Id)' -Force")
            $output = $shell.Invoke()

            @($output).Count | Should -Be 1
            $output[0].Destination | Should -Be (Join-Path $root 'unasked')
            @($shell.Streams.Error).Count | Should -Be 1
            $shell.Streams.Error[0].FullyQualifiedErrorId | Should -BeLike 'ConfirmationRequired,*'
            $shell.Streams.Error[0].ErrorDetails.RecommendedAction | Should -BeLike '*-Confirm:$false*'
            [IO.File]::ReadAllBytes($diskA).Count | Should -Be 3
        }
        finally { $shell.Dispose() }
    }

    It 'refuses to replace existing files without -Force, with a stable error id' {
        $result = $point | Restore-VmSnapshot -ErrorVariable failures -ErrorAction SilentlyContinue

        $result | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'RestoreTargetExists,*'
        $failures[0].CategoryInfo.Category | Should -Be 'InvalidOperation'
        $failures[0].TargetObject | Should -Be $diskA
        [IO.File]::ReadAllBytes($diskA).Count | Should -Be 3
    }

    It 'reports an unknown restore point id and repository' {
        Restore-VmSnapshot -Repository $repo -Id '20200101T000000Z-00000000' -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'RestorePointNotFound,*'
        Restore-VmSnapshot -Repository (Join-Path $root 'nowhere') -Id $point.Id -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'RepositoryNotFound,*'
    }

    It 'stops at a changed chunk (not authentic: the repository is encrypted) and replaces nothing' {
        $copy = Join-Path $root 'damaged-repo'
        Copy-Item -LiteralPath $repo -Destination $copy -Recurse
        $hash = $point.Files[0].GetChunks() | Where-Object { $_ } | Select-Object -First 1
        $chunk = Join-Path $copy "chunks/$($hash.Substring(0, 2))/$hash"
        $bytes = [IO.File]::ReadAllBytes($chunk)
        $bytes[-1] = $bytes[-1] -bxor 0xFF
        [IO.File]::WriteAllBytes($chunk, $bytes)

        Restore-VmSnapshot -Repository $copy -Id $point.Id -Force -Confirm:$false -ErrorVariable failures -ErrorAction SilentlyContinue

        $failures[0].FullyQualifiedErrorId | Should -BeLike 'RestoreChunkNotAuthentic,*'
        $failures[0].Exception.Message | Should -Match $hash
        [IO.File]::ReadAllBytes($diskA).Count | Should -Be 3
        Test-Path -LiteralPath $diskB | Should -BeFalse
        @(Get-ChildItem -LiteralPath $disks -Force).Name | Should -Be @('web01-a.img')
    }

    It 'lists each file it would replace or create under -WhatIf and changes nothing' {
        $child = Get-ChildPwsh
        $command = "Import-Module '$env:VMQUIESCE_MODULE_PATH'; Restore-VmSnapshot -Repository '$repo' -Id '$($point.Id)' -Force -WhatIf"
        $output = & $child.FilePath @($child.Prefix + @('-NoProfile', '-NonInteractive', '-Command', $command)) 2>&1 | Out-String

        $output | Should -Match ([regex]::Escape("What if: Performing the operation `"Replace with 'web01-a.img'"))
        $output | Should -Match ([regex]::Escape("on target `"$diskA`""))
        $output | Should -Match ([regex]::Escape("What if: Performing the operation `"Create from 'web01-b.img'"))
        [IO.File]::ReadAllBytes($diskA).Count | Should -Be 3
        Test-Path -LiteralPath $diskB | Should -BeFalse
    }

    It 'has a table and a list view for its output' {
        $result = Restore-VmSnapshot -RestorePoint $point -Destination (Join-Path $root 'views')

        ($result | Format-Table | Out-String -Width 200) | Should -Match 'RestorePointId\s+Files\s+Bytes\s+Duration\s+Revert'
        $list = $result | Format-List | Out-String
        $list | Should -Match 'RevertDetail\s+: The backup captured no snapshot'
        $list | Should -Match 'Bytes\s+: 320.0 KiB'
        $list | Should -Match 'BytesPerSecond\s+: [\d.,]+ (B|KiB|MiB|GiB)/s'
        $list | Should -Match 'Duration\s+: [\d.,]+s'
    }

    It 'declares its output type and ShouldProcess' {
        $command = Get-Command Restore-VmSnapshot
        $command.OutputType.Type | Should -Be ([VmQuiesce.Core.Restore.RestoreResult])
        $command.Parameters.Keys | Should -Contain 'WhatIf'
        # Hyper-V's own sets (-Name -VMName, -VMSnapshot, -VM) go on to the Hyper-V module; see HyperVCoexistence.Tests.ps1.
        $command.ParameterSets.Name | Sort-Object | Should -Be @('HyperVSnapshotName', 'HyperVSnapshotObject', 'HyperVVM', 'Id', 'RestorePoint')
    }
}

Describe 'Get-VmSnapshot' {
    BeforeAll {
        $script:qemuImg = Get-Command qemu-img -ErrorAction SilentlyContinue
        $script:image = Join-Path $root 'snap.qcow2'
        if ($qemuImg) {
            & qemu-img create -q -f qcow2 $image 1M
            & qemu-img snapshot -c vmquiesce-20261124T180000000Z $image
            & qemu-img snapshot -c manual $image
        }
    }

    It 'lists the internal snapshots of an image offline' -Skip:(-not (Get-Command qemu-img -ErrorAction SilentlyContinue)) {
        if (-not $qemuImg) { Set-ItResult -Skipped -Because 'qemu-img is not installed'; return }

        $snapshots = @(Get-VmSnapshot -Path $image)

        $snapshots.Count | Should -Be 2
        $snapshots[0] | Should -BeOfType ([VmQuiesce.Core.Sources.Qemu.VmSnapshot])
        $snapshots.Name | Should -Be @('vmquiesce-20261124T180000000Z', 'manual')
        $snapshots[0].Id | Should -Be '1'
        $snapshots[0].Kind | Should -Be 'QemuInternal'
        $snapshots[0].Date | Should -BeGreaterThan ([datetime]::UtcNow.AddHours(-1))
    }

    It 'filters by name with wildcards and takes files from Get-ChildItem' -Skip:(-not (Get-Command qemu-img -ErrorAction SilentlyContinue)) {
        if (-not $qemuImg) { Set-ItResult -Skipped -Because 'qemu-img is not installed'; return }

        (Get-Item $image | Get-VmSnapshot -Name 'vmq*').Name | Should -Be 'vmquiesce-20261124T180000000Z'
        ((Get-VmSnapshot -Path $image) | Format-Table | Out-String -Width 200) | Should -Match 'Name\s+Date\s+VmClock\s+VmStateSize'
        ((Get-VmSnapshot -Path $image)[0] | Format-List | Out-String) | Should -Match 'Kind\s+: QemuInternal'
    }

    It 'reports a missing image with a stable error id' {
        Get-VmSnapshot -Path (Join-Path $root 'missing.qcow2') -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'ImageNotFound,*'
    }

    It 'reports a piped image path that does not resolve as a non-terminating PathNotFileSystem and goes on to the next' {
        $unresolved = 'NoSuchDrive:/snap.qcow2'
        $missing = Join-Path $root 'missing.qcow2'

        # A terminating error would throw here and leave the second image unread.
        $failures = @([pscustomobject]@{ Path = $unresolved }, [pscustomobject]@{ Path = $missing } | Get-VmSnapshot -ErrorAction Continue 2>&1)

        $failures.FullyQualifiedErrorId | Should -Be @('PathNotFileSystem,VmQuiesce.Commands.GetVmSnapshotCommand', 'ImageNotFound,VmQuiesce.Commands.GetVmSnapshotCommand')
        Assert-UnresolvedPathFailure $failures[0] Get-VmSnapshot Path $unresolved
        $failures[1].TargetObject | Should -Be $missing -Because 'the image after the unresolved one is processed'
    }

    It 'says which VM kinds it cannot list yet' {
        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('plain', @($diskA))

        $vm | Get-VmSnapshot -ErrorVariable failures -ErrorAction SilentlyContinue

        $failures[0].FullyQualifiedErrorId | Should -BeLike 'SnapshotListingNotSupported,*'
        $failures[0].TargetObject.Name | Should -Be 'plain'
    }
}

Describe 'Restore-VmSnapshot -Verify and Test-VmBackup -Boot against a real guest' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1') -Force
        $script:unavailable = Get-TestGuestSkipReason
        if (-not $unavailable) {
            $script:guest = Start-TestGuest
            $script:guestRepo = Join-Path $root 'guest-repo'
            $script:guestVm = Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -Name restore-guest
            $script:guestPoint = $guestVm | Invoke-VmQuiescedBackup -Repository $guestRepo
            $script:boot = @{
                Kernel      = Join-Path $env:VMQUIESCE_TEST_GUEST 'vmlinuz'
                Initrd      = Join-Path $env:VMQUIESCE_TEST_GUEST 'initramfs.cpio.gz'
                Append      = 'console=ttyS0 quiet panic=-1 vmquiesce.disks=1 vmquiesce.agent=once'
                MemoryMiB   = 128
                BootTimeout = [timespan]::FromMinutes(2)
            }
        }
    }

    AfterAll {
        if ($guest) { $guest | Stop-TestGuest }
    }

    It 'refuses to restore over the disks of the running VM and names it' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }

        $guestPoint | Restore-VmSnapshot -Force -Confirm:$false -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty

        $failures[0].FullyQualifiedErrorId | Should -BeLike 'VmRunning,*'
        $failures[0].CategoryInfo.Category | Should -Be 'ResourceBusy'
        $failures[0].Exception.Message | Should -Match "process $($guest.Process.Id)"
    }

    It 'restores into -Destination and boots the restored disk clean with -Verify' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }

        $result = $guestPoint | Restore-VmSnapshot -Destination (Join-Path $root 'guest-restored') -Verify -BootOption $boot

        $result.Verification.Passed | Should -BeTrue -Because $result.Verification.ToString()
        $result.Verification.FileSystems.MountPoint | Should -Contain '/mnt/data'
        $result.Verification.Disks.Status | Should -Be 'Clean'
        ($result | Format-List | Out-String -Width 200) | Should -Match 'Verification\s+: Passed'
    }

    It 'serves the point over NBD for qemu-img and nbdinfo until Stop-VmBackupExport' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }

        $export = $guestPoint | Start-VmBackupExport -Confirm:$false
        try {
            $export.Disks.Count | Should -Be 1
            $info = & qemu-img info --output=json -f qcow2 $export.Disks[0].Uri | ConvertFrom-Json
            $info.'virtual-size' | Should -BeGreaterThan 0
            (& nbdinfo --json --no-content $export.Disks[0].Uri | ConvertFrom-Json).exports[0].is_read_only | Should -BeTrue
            (Get-VmBackupExport -Id $export.Id).ChunksRead | Should -BeGreaterThan 0
            ($export | Format-Table | Out-String -Width 200) | Should -Match $export.RestorePointId
        }
        finally { $export | Stop-VmBackupExport -Confirm:$false }

        Test-Path $export.Endpoint.SocketPath | Should -BeFalse
        Stop-VmBackupExport -Id $export.Id -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'ExportNotFound,*'
    }

    It 'copies an item out of the point with its mode, and refuses to overwrite it without -Force' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        if (-not $IsLinux -or (& id -u) -ne '0') { Set-ItResult -Skipped -Because 'Restore-VmBackupItem mounts, which needs root on Linux'; return }
        $destination = Join-Path $root 'items'

        $item = $guestPoint | Restore-VmBackupItem -Path 'disk0/lost+found' -Destination $destination -Confirm:$false
        $guestPoint | Restore-VmBackupItem -Path 'disk0/lost+found' -Destination $destination -Confirm:$false -ErrorVariable failures -ErrorAction SilentlyContinue

        $item.Destination | Should -Be (Join-Path $destination 'lost+found')
        (Get-Item $item.Destination).UnixMode | Should -Be 'drwx------'
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'ItemExists,*'
        Get-VmBackupMount | Where-Object RestorePointId -eq $guestPoint.Id | Should -BeNullOrEmpty
    }

    It 'gives every copy the -Owner asked for, and that user''s own group, instead of the guest''s ids' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        if (-not $IsLinux -or (& id -u) -ne '0') { Set-ItResult -Skipped -Because 'Restore-VmBackupItem mounts, which needs root on Linux'; return }

        $item = $guestPoint | Restore-VmBackupItem -Path 'disk0/lost+found' -Destination (Join-Path $root 'items-owned') -Owner nobody -Confirm:$false

        & stat -c '%u:%g %a' $item.Destination | Should -Be "$(& id -u nobody):$(& id -g nobody) 700"
    }

    It 'refuses to boot a plain file that says it is a qcow2 backed by a host disk: its format was never recorded, so never guessed' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $hostDisk = Join-Path $root 'host-disk.raw'
        [IO.File]::WriteAllBytes($hostDisk, [byte[]]::new(0))
        & truncate -s 64M $hostDisk
        & mkfs.ext4 -q -F -L data $hostDisk
        $hostile = Join-Path $root 'hostile-disk.img'
        & qemu-img create -q -f qcow2 -b $hostDisk -F raw $hostile
        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('hostile', [string[]] @($hostile))
        $point = Invoke-VmQuiescedBackup -Vm $vm -Repository (Join-Path $root 'hostile-repo') -Consistency Crash

        $result = $point | Test-VmBackup -Boot -BootOption $boot -ErrorVariable failures -ErrorAction SilentlyContinue

        # Booted from its header, the host's disk would have come up with a clean /mnt/data.
        $result.Boot.Passed | Should -BeFalse
        $result.Boot.AgentAnswered | Should -BeFalse
        $result.Boot.Failure | Should -BeLike '*does not record its disk format*'
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'RestorePointBootFailed,*'
    }

    It 'boots a verified restore point with Test-VmBackup -Boot' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }

        $result = $guestPoint | Test-VmBackup -Boot -BootOption $boot

        $result.Status | Should -Be 'Ok'
        $result.Boot.Passed | Should -BeTrue -Because $result.Boot.ToString()
        $result.Boot.Disks.Status | Should -Be 'Clean'
    }
}
