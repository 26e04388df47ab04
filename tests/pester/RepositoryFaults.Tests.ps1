# Faults around the repository and the restore, driven for real against the built module: paths that are
# files or wildcards, failed first backups, repositories open to other users.

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

    $script:web = [VmQuiesce.Core.Backup.StableFilesSource]::CreateVm('web01', @(New-TestDisk 'web01.img' (300KB) 1))
}

AfterAll {
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
    It 'leaves no empty repository behind' {
        $ghost = [VmQuiesce.Core.Backup.StableFilesSource]::CreateVm('ghost', @(Join-Path $root 'no-such-disk.img'))
        $fresh = Join-Path $root 'fresh'

        $null = Invoke-VmQuiescedBackup -Vm $ghost -Repository $fresh -Consistency Crash -ErrorVariable failures -ErrorAction SilentlyContinue

        $failures[0].FullyQualifiedErrorId | Should -BeLike 'SourceFileNotFound,*'
        Test-Path -LiteralPath $fresh | Should -BeFalse
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
