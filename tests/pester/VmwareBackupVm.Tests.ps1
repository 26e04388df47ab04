BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force

    # VMware cannot be installed here: these tests drive the vmrun double (tests/vmrun-double/vmrun), a bash
    # script that Windows cannot start as vmrun.exe.
    $script:double = (Resolve-Path (Join-Path $PSScriptRoot '../vmrun-double/vmrun')).Path
    $script:noDouble = -not [bool](Get-Variable IsLinux -ValueOnly -ErrorAction Ignore)
    $script:why = 'the vmrun double is a bash 4 script: Windows cannot start it as vmrun.exe and macOS ships bash 3; it runs on Linux'

    function New-TestVmFolder([string]$Root, [string]$Name) {
        $folder = New-Item -ItemType Directory -Path (Join-Path $Root $Name) -Force
        $vmx = Join-Path $folder "$Name.vmx"
        Set-Content -LiteralPath $vmx -Value @(
            ".encoding = `"UTF-8`""
            "displayName = `"$Name display`""
            "scsi0:0.present = `"TRUE`""
            "scsi0:0.fileName = `"disk.vmdk`""
        )
        Set-Content -LiteralPath (Join-Path $folder 'disk.vmdk') -Value 'disk-base' -NoNewline
        Set-Content -LiteralPath (Join-Path $folder 'vmware.log') -Value 'log'
        $vmx
    }
}

Describe 'Get-BackupVm for VMware' {
    BeforeEach {
        $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmq-vmware-$([guid]::NewGuid().ToString('N'))"
        New-Item -ItemType Directory -Path $root | Out-Null
        $env:VMRUN_DOUBLE_STATE = Join-Path $root 'running'
        $env:VMRUN_DOUBLE_ARGV_LOG = Join-Path $root 'argv.log'
    }

    AfterEach {
        Remove-Item Env:VMRUN_DOUBLE_STATE, Env:VMRUN_DOUBLE_ARGV_LOG, Env:VMRUN_DOUBLE_DATASTORES, Env:VMRUN_DOUBLE_FAIL_COMMAND, Env:VMRUN_DOUBLE_FAIL_TEXT, Env:VMQUIESCE_TOOL_VMRUN -ErrorAction Ignore
        Remove-Item -LiteralPath $root -Recurse -Force -ErrorAction Ignore
    }

    It 'returns a VMware target for a .vmx, named by its displayName' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $vmx = New-TestVmFolder $root 'web01'

        $vm = Get-BackupVm -VmxPath $vmx -VmrunPath $double

        $vm | Should -BeOfType ([VmQuiesce.Core.Sources.BackupVm])
        $vm.Name | Should -Be 'web01 display'
        $vm.Kind | Should -Be 'VMware'
        $vm.Location | Should -Be $vmx
        $vm.Details['HostType'] | Should -Be 'Workstation'
        $vm.Details['Vmrun'] | Should -Be $double
    }

    It 'takes .vmx files from the pipeline and reports an unreadable one as VmxNotFound with its path' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $good = New-TestVmFolder $root 'a'
        $missing = Join-Path $root 'a/missing.vmx'

        $vms = Get-ChildItem -LiteralPath $good, $missing -ErrorAction Ignore | Get-BackupVm -VmrunPath $double
        @($vms).Count | Should -Be 1
        $vms.Name | Should -Be 'a display'
        $result = [pscustomobject]@{ VmxPath = $missing } | Get-BackupVm -VmrunPath $double -ErrorVariable failures -ErrorAction SilentlyContinue

        $result | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'VmxNotFound,*'
        $failures[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $failures[0].TargetObject | Should -Be $missing
    }

    It 'refuses a .vmx that is a link with ConfigReadFailed, in Get-BackupVm and in a backup before any snapshot, and both help pages say so' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $vmx = New-TestVmFolder $root 'app'
        $vm = Get-BackupVm -VmxPath $vmx -VmrunPath $double
        # Whoever can write the VM folder makes the .vmx a link to another file.
        Move-Item -LiteralPath $vmx -Destination "$vmx.real"
        New-Item -ItemType SymbolicLink -Path $vmx -Target "$vmx.real" | Out-Null

        $result = Get-BackupVm -VmxPath $vmx -VmrunPath $double -ErrorVariable failures -ErrorAction SilentlyContinue
        $backup = $vm | Invoke-VmQuiescedBackup -Repository (Join-Path $root 'repo') -Consistency Crash -ErrorVariable backupFailures -ErrorAction SilentlyContinue

        $result | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'ConfigReadFailed,*'
        "$($failures[0])" | Should -BeLike "*'$vmx' is a symbolic link*"
        $backup | Should -BeNullOrEmpty
        $backupFailures[0].FullyQualifiedErrorId | Should -BeLike 'ConfigReadFailed,*'
        (& $double -T ws listSnapshots "$vmx.real") | Should -Be 'Total snapshots: 0'
        foreach ($name in 'Get-BackupVm', 'Invoke-VmQuiescedBackup') {
            $help = (Get-Help $name -Full | Out-String) -replace '`', '' -replace '\s+', ' '
            $help | Should -Match 'ConfigReadFailed\b.{0,120}\b(itself is|is itself) a link' -Because "the help of $name names the error a .vmx that is a link gets"
        }
    }

    It 'reports a piped .vmx path that does not resolve as a non-terminating PathNotFileSystem and goes on to the next' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $good = New-TestVmFolder $root 'b'
        $unresolved = 'NoSuchDrive:/b/b.vmx'

        # A terminating error would throw here and leave the second .vmx unread.
        $output = @([pscustomobject]@{ VmxPath = $unresolved }, [pscustomobject]@{ VmxPath = $good } | Get-BackupVm -VmrunPath $double -ErrorAction Continue 2>&1)

        $failures = @($output | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        $failures.Count | Should -Be 1
        Assert-UnresolvedPathFailure $failures[0] Get-BackupVm VmxPath $unresolved
        @($output | Where-Object { $_ -isnot [System.Management.Automation.ErrorRecord] }).Name | Should -Be 'b display'
    }

    It 'lists the running VMs of a host type through vmrun list, filtered by name' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $a = New-TestVmFolder $root 'alpha'
        $b = New-TestVmFolder $root 'beta'
        & $double -T ws start $a nogui
        & $double -T ws start $b nogui

        (Get-BackupVm -HostType Workstation -VmrunPath $double).Name | Should -Be @('alpha display', 'beta display')
        (Get-BackupVm 'b*' -HostType Workstation -VmrunPath $double).Name | Should -Be 'beta display'
        Get-BackupVm 'gamma' -HostType Workstation -VmrunPath $double -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'VmNotFound,*'
        "$($failures[0])" | Should -Be "No running VMware VM named 'gamma'; found 2: 'alpha display', 'beta display'."
    }

    It 'warns that a VMware Server password goes on the vmrun command line, and shows it nowhere' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $store = New-Item -ItemType Directory -Path (Join-Path $root 'store')
        $vmx = New-TestVmFolder $store 'db'
        $env:VMRUN_DOUBLE_DATASTORES = "standard=$store"
        $secret = 'Sup3r-Secret!'
        $cred = [pscredential]::new('backup', (ConvertTo-SecureString $secret -AsPlainText -Force))

        $vm = Get-BackupVm -HostType Server -VmrunHost localhost -Credential $cred -VmxPath $vmx -DatastorePath '[standard] db/db.vmx' -VmrunPath $double -WarningVariable warnings -WarningAction SilentlyContinue -Verbose 4>&1 |
            Tee-Object -Variable everything | Where-Object { $_ -is [VmQuiesce.Core.Sources.BackupVm] }

        $vm.Details['Host'] | Should -Be 'https://localhost:8333/sdk'
        $vm.Details['DatastorePath'] | Should -Be '[standard] db/db.vmx'
        ($warnings -join "`n") | Should -Match 'process listings'
        ($everything + $warnings + $vm.Details.Values | Out-String) | Should -Not -Match ([regex]::Escape($secret))
    }

    It 'refuses -DatastorePath outside VMware Server and a Server host without a credential' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $vmx = New-TestVmFolder $root 'x'
        { Get-BackupVm -VmxPath $vmx -DatastorePath '[standard] x/x.vmx' -VmrunPath $double -ErrorAction Stop } | Should -Throw -ErrorId 'DatastorePathNotSupported,*'
        { Get-BackupVm -VmxPath $vmx -HostType Server -VmrunHost localhost -VmrunPath $double -ErrorAction Stop } | Should -Throw -ErrorId 'VmrunCredentialRequired,*'
    }

    It 'reports a vmrun that does not exist as VmrunNotFound' {
        $missing = Join-Path ([IO.Path]::GetTempPath()) "no-vmrun-$([guid]::NewGuid().ToString('N'))"
        { Get-BackupVm -HostType Workstation -VmrunPath $missing -ErrorAction Stop } | Should -Throw -ErrorId 'VmrunNotFound,*'
    }

    It 'backs the VM up crash consistent and releases the snapshot: the point is whole without it' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $vmx = New-TestVmFolder $root 'app'
        $repository = Join-Path $root 'repo'

        $point = Get-BackupVm -VmxPath $vmx -VmrunPath $double | Invoke-VmQuiescedBackup -Repository $repository -Consistency Crash

        $point.SourceKind | Should -Be 'VMware'
        $point.Consistency | Should -Be 'Crash'
        $point.Quiesce.Method | Should -Be 'None'
        $point.Snapshot | Should -BeNullOrEmpty
        $point.SnapshotReleased | Should -BeTrue
        @($point.Files.Path | Sort-Object) | Should -Be @('app.vmx', 'disk.vmdk')
        (& $double -T ws listSnapshots $vmx) | Should -Be 'Total snapshots: 0'
    }

    It 'keeps the snapshot with -KeepSnapshot (SnapshotReleased False), and Remove-VmBackup deletes it with the last point that records it' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $vmx = New-TestVmFolder $root 'kept'
        $repository = Join-Path $root 'repo'
        $vm = Get-BackupVm -VmxPath $vmx -VmrunPath $double
        $released = $vm | Invoke-VmQuiescedBackup -Repository $repository -Consistency Crash
        $first = $vm | Invoke-VmQuiescedBackup -Repository $repository -Consistency Crash -KeepSnapshot
        $second = $vm | Invoke-VmQuiescedBackup -Repository $repository -Consistency Crash -KeepSnapshot

        $first.SnapshotReleased | Should -BeFalse
        $first.Snapshot.Name | Should -BeLike 'vmquiesce-*'
        $first.Snapshot.VmrunPath | Should -Be $double
        (& $double -T ws listSnapshots $vmx) | Should -Be @('Total snapshots: 2', $first.Snapshot.Name, $second.Snapshot.Name)

        # The vmrun the points recorded is run only as this host's own: the double is, by VMQUIESCE_TOOL_VMRUN.
        $env:VMQUIESCE_TOOL_VMRUN = $double
        $result = Remove-VmBackup -Repository $repository -Id $released.Id, $first.Id -Confirm:$false

        @($result.RemovedSnapshots) | Should -Be @($first.Snapshot.Name)
        (& $double -T ws listSnapshots $vmx) | Should -Be @('Total snapshots: 1', $second.Snapshot.Name)
        $result = Remove-VmBackup -Repository $repository -KeepLast 1 -Confirm:$false
        @($result.RemovedSnapshots).Count | Should -Be 0 -Because 'the last point still needs its snapshot'
        (& $double -T ws listSnapshots $vmx) | Should -Be @('Total snapshots: 1', $second.Snapshot.Name)
    }

    It 'reverts a restore with this host''s vmrun (never one only the point names), or the one -VmrunPath names, checked before anything is replaced' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $vmx = New-TestVmFolder $root 'back'
        $disk = Join-Path $root 'back/disk.vmdk'
        $point = Get-BackupVm -VmxPath $vmx -VmrunPath $double | Invoke-VmQuiescedBackup -Repository (Join-Path $root 'repo') -Consistency Crash -KeepSnapshot
        Set-Content -LiteralPath $disk -Value 'damaged' -NoNewline
        $link = Join-Path $root 'vmrun-link'
        $null = New-Item -ItemType SymbolicLink -Path $link -Target $double

        $point | Restore-VmSnapshot -Force -VmrunPath $link -Confirm:$false -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'VmrunPathInvalid,*'
        Get-Content -LiteralPath $disk -Raw | Should -Be 'damaged' -Because 'nothing is replaced when the vmrun is refused'
        { $point | Restore-VmSnapshot -Force -VmrunPath (Join-Path $root 'none') -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'VmrunNotFound,*'
        # The point names the double, which is in none of this host's places for vmrun: it is not run.
        { $point | Restore-VmSnapshot -Force -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'VmrunNotFound,*'
        Get-Content -LiteralPath $disk -Raw | Should -Be 'damaged'

        $env:VMQUIESCE_TOOL_VMRUN = $double
        $result = $point | Restore-VmSnapshot -Force -Confirm:$false
        "$($result.Revert)" | Should -Be 'Reverted'
        Get-Content -LiteralPath $disk -Raw | Should -Be 'disk-base'
        $result = $point | Restore-VmSnapshot -Force -VmrunPath $double -Confirm:$false
        "$($result.Revert)" | Should -Be 'Reverted'
        $calls = Get-Content -LiteralPath $env:VMRUN_DOUBLE_ARGV_LOG
        @($calls | Where-Object { $_ -eq 'revertToSnapshot' }).Count | Should -Be 2
    }

    It 'passes what the source says during the backup to the caller: why it is not quiesced (warning) and the snapshot it takes (verbose)' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $vmx = New-TestVmFolder $root 'talk'

        $verbose = Get-BackupVm -VmxPath $vmx -VmrunPath $double |
            Invoke-VmQuiescedBackup -Repository (Join-Path $root 'repo') -AllowLowerConsistency -WarningVariable warnings -WarningAction SilentlyContinue -Verbose 4>&1 |
            Where-Object { $_ -is [System.Management.Automation.VerboseRecord] }

        @($warnings).Count | Should -Be 1
        "$($warnings[0])" | Should -BeLike "*VM 'talk display'*below the required FileSystem*"
        ($verbose.Message -join "`n") | Should -Match "taking snapshot 'vmquiesce-"
    }

    It 'takes -Method HostVss only where Windows VSS exists, naming the VM, and -VssBackupType only with HostVss' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $vmx = New-TestVmFolder $root 'vss'
        $vm = Get-BackupVm -VmxPath $vmx -VmrunPath $double

        $vm | Invoke-VmQuiescedBackup -Repository (Join-Path $root 'repo') -Method HostVss -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'WindowsOnly,*'
        $failures[0].TargetObject.Name | Should -Be 'vss display'
        { $vm | Invoke-VmQuiescedBackup -Repository (Join-Path $root 'repo') -VssBackupType Full -ErrorAction Stop } | Should -Throw -ErrorId 'VssBackupTypeNeedsHostVss,*'
        (& $double -T ws listSnapshots $vmx) | Should -Be 'Total snapshots: 0'
    }

    It 'refuses a VMware backup that must be file-system consistent with ConsistencyNotReached' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $vmx = New-TestVmFolder $root 'strict'

        Get-BackupVm -VmxPath $vmx -VmrunPath $double | Invoke-VmQuiescedBackup -Repository (Join-Path $root 'repo') -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty

        $failures[0].FullyQualifiedErrorId | Should -BeLike 'ConsistencyNotReached,*'
        (& $double -T ws listSnapshots $vmx) | Should -Be 'Total snapshots: 0'
    }

    It 'still tells the console after Ctrl+C that it releases the snapshot first, and which vmrun command deletes the snapshot it could not' {
        if ($noDouble) { Set-ItResult -Skipped -Because $why; return }
        $env:VMRUN_DOUBLE_FAIL_COMMAND = 'deleteSnapshot'
        $env:VMRUN_DOUBLE_FAIL_TEXT = 'Error: The file is already in use'
        $vmx = New-TestVmFolder $root 'big'
        # 1.5 GiB, sparse, with 384 MiB of random data: long enough to stop mid-copy on any machine.
        $disk = Join-Path $root 'big/disk.vmdk'
        & truncate -s 1536M $disk
        & dd if=/dev/urandom of=$disk bs=1M count=384 seek=512 conv=notrunc status=none
        $repository = Join-Path $root 'repo'
        $chunks = Join-Path $repository 'chunks'
        $console = New-RecordingPowerShell
        try {
            $null = $console.PowerShell.AddScript("Import-Module '$env:VMQUIESCE_MODULE_PATH'; Get-BackupVm -VmxPath '$vmx' -VmrunPath '$double' | Invoke-VmQuiescedBackup -Repository '$repository' -Consistency Crash")
            $handle = $console.PowerShell.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddMinutes(3)
            while (@(Get-ChildItem $chunks -Recurse -File -ErrorAction Ignore).Count -lt 3 -and [DateTime]::UtcNow -lt $deadline -and -not $handle.IsCompleted) {
                Start-Sleep -Milliseconds 20
            }
            $handle.IsCompleted | Should -BeFalse -Because 'the backup must still be copying when it is stopped'
            $console.PowerShell.Stop()
            $console.PowerShell.InvocationStateInfo.State | Should -Be 'Stopped'
        }
        finally {
            $console.PowerShell.Runspace.Dispose()
            $console.PowerShell.Dispose()
        }

        $said = $console.Host.Warnings -join "`n"
        $said | Should -BeLike "*Stopping the backup of VM 'big display'*released*"
        $said | Should -BeLike "*The backup of VM 'big display' was cancelled; guest thawed, no restore point stored.*"
        $said | Should -BeLike "*could not be deleted*To release it: Run *deleteSnapshot*"
        @(Get-VmBackup $repository).Count | Should -Be 0
        (& $double -T ws listSnapshots $vmx)[0] | Should -Be 'Total snapshots: 1' -Because 'the snapshot the warning names is still there'
    }
}
