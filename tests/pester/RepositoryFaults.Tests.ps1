# Faults around the repository and the restore, driven for real against the built module: paths that are
# files or wildcards, failed first backups, repositories open to other users, processes SIGKILLed at a
# chosen system call (strace), real read-only and full file systems (tmpfs).

BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force

    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmq-pester-faults-$([guid]::NewGuid().ToString('N'))"
    New-Item -ItemType Directory -Path $root | Out-Null

    function New-TestDisk {
        param([string] $Name, [int] $Length, [int] $Seed)
        $bytes = [byte[]]::new($Length)
        [Random]::new($Seed).NextBytes($bytes)
        $path = Join-Path $root $Name
        [IO.File]::WriteAllBytes($path, $bytes)
        $path
    }

    $script:webDisk = New-TestDisk 'web01.img' (300KB) 1
    $script:web = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('web01', [string[]]@($webDisk))

    $script:isRoot = $IsLinux -and (& id -u) -eq '0'
    $script:strace = if ($IsLinux) { Get-Command strace -CommandType Application -ErrorAction Ignore | Select-Object -First 1 -ExpandProperty Source }
    $script:killSkip = if (-not $IsLinux) { 'SIGKILL at a chosen system call uses strace: Linux only' }
        elseif (-not $strace) { 'strace is not installed (the build installs it as root on Debian: apt-get install strace)' }

    # Runs $Command in a fresh pwsh with the module under strace, which SIGKILLs it at the $When-th call of one of
    # $Syscalls that touches one of $Path; returns the exit code (137 when the kill came).
    function Invoke-KilledPwsh {
        param([string[]] $Path, [string] $Syscalls, [string] $Command, [int] $When = 1)
        $child = Get-ChildPwsh
        $arguments = @('-f', '-qq', '-o', '/dev/null', '-e', "trace=$Syscalls", '-e', "inject=$($Syscalls):signal=KILL:when=$When")
        foreach ($item in $Path) { $arguments += @('-P', $item) }
        $arguments += @($child.FilePath) + $child.Prefix + @('-NoProfile', '-NonInteractive', '-Command', "Import-Module '$env:VMQUIESCE_MODULE_PATH'; $Command")
        $null = & $strace @arguments 2>&1
        $LASTEXITCODE
    }

    # A real tmpfs of its own, mounted for one test; $Options as mount -o takes them.
    function New-ScratchMount {
        param([string] $Options)
        $mount = Join-Path $root "mnt-$([guid]::NewGuid().ToString('N'))"
        New-Item -ItemType Directory -Path $mount | Out-Null
        & mount -t tmpfs -o $Options vmq-scratch $mount
        if ($LASTEXITCODE -ne 0) { throw "mount -t tmpfs -o $Options failed" }
        $mount
    }
}

AfterAll {
    if ($IsLinux) {
        Get-ChildItem $root -Directory -Filter 'mnt-*' -ErrorAction Ignore | ForEach-Object { & umount $_.FullName 2>$null }
    }
    Remove-Item -LiteralPath $root -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Repository paths' {
    It 'refuses a wildcard instead of making a folder named *' {
        { Invoke-VmQuiescedBackup -Vm $web -Repository (Join-Path $root 'repos/*') -Consistency Crash } | Should -Throw -ErrorId 'InvalidRepositoryPath,*' -ExpectedMessage "*contains '`*'*"
        Test-Path -LiteralPath (Join-Path $root 'repos/*') | Should -BeFalse
    }

    It 'names a file given as the repository, or on its way, instead of a raw .NET exception' {
        $file = New-TestDisk 'plain.txt' 10 2
        { Invoke-VmQuiescedBackup -Vm $web -Repository $file -Consistency Crash } | Should -Throw -ErrorId 'RepositoryPathIsFile,*'
        { Invoke-VmQuiescedBackup -Vm $web -Repository (Join-Path $file 'repo') -Consistency Crash } | Should -Throw -ErrorId 'RepositoryPathIsFile,*' -ExpectedMessage "*'$file' is a file*"
        Get-VmBackup (Join-Path $file 'repo') -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'RepositoryPathIsFile,*'
    }
}

Describe 'A first backup that fails' {
    It 'leaves no empty repository behind, nor this host''s key file for it' {
        $ghost = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('ghost', [string[]]@(Join-Path $root 'no-such-disk.img'))
        $fresh = Join-Path $root 'fresh'
        $keysBefore = @(Get-ChildItem $env:VMQUIESCE_KEY_FOLDER -File -ErrorAction Ignore).Name

        $null = Invoke-VmQuiescedBackup -Vm $ghost -Repository $fresh -Consistency Crash -ErrorVariable failures -ErrorAction SilentlyContinue

        $failures[0].FullyQualifiedErrorId | Should -BeLike 'SourceFileNotFound,*'
        Test-Path -LiteralPath $fresh | Should -BeFalse
        @(Get-ChildItem $env:VMQUIESCE_KEY_FOLDER -File -ErrorAction Ignore).Name | Should -Be $keysBefore
    }

    It 'into an existing repository keeps it and its key file' {
        $ghost = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('ghost', [string[]]@(Join-Path $root 'no-such-disk.img'))
        $existing = Join-Path $root 'existing'
        $made = New-VmBackupRepository -Path $existing -Confirm:$false

        $null = Invoke-VmQuiescedBackup -Vm $ghost -Repository $existing -Consistency Crash -ErrorVariable failures -ErrorAction SilentlyContinue

        $failures[0].FullyQualifiedErrorId | Should -BeLike 'SourceFileNotFound,*'
        Test-Path -LiteralPath (Join-Path $existing 'vmquiesce-repository.json') | Should -BeTrue
        Test-Path -LiteralPath $made.HostKeyFile | Should -BeTrue
    }
}

Describe 'A repository other users can read' {
    It 'is reported by Test-VmBackup with what to run' {
        if ($IsWindows) { Set-ItResult -Skipped -Because 'it changes a Unix mode; the Windows ACL check runs in the Windows CI job'; return }
        $repo = Join-Path $root 'wide'
        $point = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash
        (Get-Item $repo).UnixFileMode | Should -Be ([IO.UnixFileMode]'UserRead, UserWrite, UserExecute')
        Test-VmBackup $repo -WarningVariable warnings -WarningAction SilentlyContinue | Out-Null
        $warnings | Should -BeNullOrEmpty

        & chmod 0755 $repo
        $result = Test-VmBackup $repo -WarningVariable warnings -WarningAction SilentlyContinue

        $result.Status | Should -Be 'Ok'
        "$warnings" | Should -BeLike "*mode 0755*chmod -R go= '$repo'*"
    }
}

Describe 'A conflict copy of a manifest' {
    It 'is reported and never makes Remove-VmBackup -KeepLast 1 remove the point it keeps' {
        $repo = Join-Path $root 'conflict'
        $null = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash
        $kept = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash
        Copy-Item (Join-Path $repo "points/$($kept.Id).json") (Join-Path $repo "points/$($kept.Id)-copy.json")

        $result = Remove-VmBackup $repo -KeepLast 1 -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue

        $result.KeptRestorePoints | Should -Be 1
        "$warnings" | Should -BeLike "*$($kept.Id)-copy.json*not a restore point*"
        (Test-VmBackup $repo -Id $kept.Id).Status | Should -Be 'Ok'
        Get-VmBackup $repo -ErrorVariable problems -ErrorAction SilentlyContinue | Should -HaveCount 1
        $problems[0].FullyQualifiedErrorId | Should -BeLike 'RestorePointIdMismatch,*'
    }
}

Describe 'A damaged chunk' {
    It 'is recorded by Test-VmBackup and stored anew by the next backup, which repairs the older point' {
        $repo = Join-Path $root 'damaged'
        $point = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash
        $chunk = Get-ChildItem (Join-Path $repo 'chunks') -Recurse -File | Select-Object -First 1
        $bytes = [IO.File]::ReadAllBytes($chunk.FullName)
        $bytes[$bytes.Length - 1] = $bytes[$bytes.Length - 1] -bxor 1
        [IO.File]::WriteAllBytes($chunk.FullName, $bytes)

        $result = Test-VmBackup $repo -Id $point.Id -ErrorVariable failures -ErrorAction SilentlyContinue
        $result.Status | Should -Be 'Damaged'
        $failures[0].ErrorDetails.RecommendedAction | Should -BeLike '*next backup*stores the damaged chunks anew*'
        Test-Path (Join-Path $repo "damaged/$($chunk.Name)") | Should -BeTrue

        $null = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash -WarningVariable warnings -WarningAction SilentlyContinue

        "$warnings" | Should -BeLike "*$($chunk.Name)*stored it anew*"
        (Test-VmBackup $repo).Status | Should -Be @('Ok', 'Ok')
    }
}

Describe 'A process killed while it holds a lock' {
    It 'leaves a lock that the next command removes with a warning, without -RemoveStaleLock' {
        if ($killSkip) { Set-ItResult -Skipped -Because $killSkip; return }
        $repo = Join-Path $root 'killed-prune'
        $old = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash
        $null = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash

        # Killed as it deletes the first manifest (the first unlink in the points folder): after taking the exclusive lock.
        $exit = Invoke-KilledPwsh -Path (Join-Path $repo 'points') -Syscalls 'unlink,unlinkat' -Command "Remove-VmBackup '$repo' -KeepLast 1 -Confirm:`$false"

        $exit | Should -Be 137 -Because 'strace must have killed the prune at the manifest, or this test tests nothing'
        Test-Path (Join-Path $repo 'locks/exclusive.lock') | Should -BeTrue
        $point = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash -WarningVariable warnings -WarningAction SilentlyContinue
        $point | Should -Not -BeNullOrEmpty
        "$warnings" | Should -BeLike '*Removed the lock*Remove-VmBackup (prune)*that process is gone*'
        (Remove-VmBackup $repo -KeepLast 1 -Confirm:$false).KeptRestorePoints | Should -Be 1
    }
}

Describe 'A repository on a read-only mount' {
    BeforeAll {
        $script:readOnlySkip = if (-not $isRoot) { 'mounting a tmpfs read-only needs Linux and root' }
        if ($readOnlySkip) { return }
        $script:mount = New-ScratchMount 'size=16m'
        $script:roRepo = Join-Path $mount 'repo'
        $script:roPoint = Invoke-VmQuiescedBackup -Vm $web -Repository $roRepo -Consistency Crash
        & mount -o remount,ro $mount
    }

    It 'is verified without a lock, with a warning saying prunes are not excluded' {
        if ($readOnlySkip) { Set-ItResult -Skipped -Because $readOnlySkip; return }
        $result = Test-VmBackup $roRepo -WarningVariable warnings -WarningAction SilentlyContinue
        $result.Status | Should -Be 'Ok'
        "$warnings" | Should -BeLike '*read-only*without a lock*prune*'
    }

    It 'is restored from' {
        if ($readOnlySkip) { Set-ItResult -Skipped -Because $readOnlySkip; return }
        $target = Join-Path $root 'from-read-only'
        $result = Restore-VmSnapshot -Repository $roRepo -Id $roPoint.Id -Destination $target -Confirm:$false -WarningAction SilentlyContinue
        (Get-FileHash (Join-Path $target 'web01.img')).Hash | Should -Be (Get-FileHash $webDisk).Hash
        $result.FileCount | Should -Be 1
    }

    It 'refuses a backup with a typed error and a remedy' {
        if ($readOnlySkip) { Set-ItResult -Skipped -Because $readOnlySkip; return }
        $null = Invoke-VmQuiescedBackup -Vm $web -Repository $roRepo -Consistency Crash -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'RepositoryReadOnly,*'
        $failures[0].ErrorDetails.RecommendedAction | Should -BeLike '*Remount*'
    }
}

Describe 'A restore killed between its two steps of replacing a file' {
    It 'leaves the original at the target, and the next restore cleans what it left and says so' {
        if ($killSkip) { Set-ItResult -Skipped -Because $killSkip; return }
        $disk = New-TestDisk 'killed-restore.img' (200KB) 5
        $original = [IO.File]::ReadAllBytes($disk)
        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('killed', [string[]]@($disk))
        $repo = Join-Path $root 'killed-restore'
        $point = Invoke-VmQuiescedBackup -Vm $vm -Repository $repo -Consistency Crash
        $changed = [byte[]]::new(1000)
        [IO.File]::WriteAllBytes($disk, $changed)

        # Killed at the rename that puts the restored file in place: after the original got its second name.
        $exit = Invoke-KilledPwsh -Path $root -Syscalls 'rename,renameat,renameat2' -Command "Restore-VmSnapshot -Repository '$repo' -Id '$($point.Id)' -Force -Confirm:`$false"

        $exit | Should -Be 137 -Because 'strace must have killed the restore at its rename, or this test tests nothing'
        [IO.File]::ReadAllBytes($disk) | Should -Be $changed
        Test-Path "$disk.vmquiesce-replaced" | Should -BeTrue
        @(Get-ChildItem $root -Force -Filter '.killed-restore.img.vmquiesce-restore-*').Count | Should -Be 1

        $null = Restore-VmSnapshot -Repository $repo -Id $point.Id -Force -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue

        [IO.File]::ReadAllBytes($disk) | Should -Be $original
        @($warnings).Count | Should -Be 2
        "$warnings" | Should -BeLike '*Removed*vmquiesce-restore-*interrupted*'
        Test-Path "$disk.vmquiesce-replaced" | Should -BeFalse
        @(Get-ChildItem $root -Force -Filter '.killed-restore.img.vmquiesce-restore-*').Count | Should -Be 0
    }
}

Describe 'Restore destinations that cannot take the files' {
    It 'names a file given as the destination instead of a raw .NET exception' {
        $point = Invoke-VmQuiescedBackup -Vm $web -Repository (Join-Path $root 'dest-checks') -Consistency Crash
        $file = New-TestDisk 'not-a-folder.txt' 10 6
        Restore-VmSnapshot -Repository $point.Repository -Id $point.Id -Destination $file -Confirm:$false -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'RestoreDestinationIsFile,*'
        Restore-VmSnapshot -Repository $point.Repository -Id $point.Id -Destination (Join-Path $root 'out/*') -Confirm:$false -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'InvalidDestinationPath,*'
    }

    It 'says how much a full file system lacks, in bytes that add up' {
        if (-not $isRoot) { Set-ItResult -Skipped -Because 'mounting a small tmpfs needs Linux and root'; return }
        $point = Invoke-VmQuiescedBackup -Vm $web -Repository (Join-Path $root 'dest-full') -Consistency Crash
        $mount = New-ScratchMount 'size=128k'

        Restore-VmSnapshot -Repository $point.Repository -Id $point.Id -Destination $mount -Confirm:$false -ErrorVariable failures -ErrorAction SilentlyContinue

        $failures[0].FullyQualifiedErrorId | Should -BeLike 'InsufficientDiskSpace,*'
        "$($failures[0])" | Should -BeLike "*needs 307,200 bytes (300 KiB) on the file system of '$mount', which has 131,072 bytes (128 KiB) free*"
        $failures[0].ErrorDetails.RecommendedAction | Should -BeLike '*Free at least 176,128 bytes*'
        @(Get-ChildItem $mount -Force).Count | Should -Be 0
    }
}
