BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force

    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmq-pester-backup-$([guid]::NewGuid().ToString('N'))"
    New-Item -ItemType Directory -Path $root | Out-Null

    function New-TestDisk {
        param([string] $Name, [int] $Length, [int] $Seed)
        $bytes = [byte[]]::new($Length)
        [Random]::new($Seed).NextBytes($bytes)
        $path = Join-Path $root $Name
        [IO.File]::WriteAllBytes($path, $bytes)
        $path
    }

    function New-TestVm {
        param([string] $Name, [string[]] $Path)
        [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new($Name, $Path)
    }

    $script:web = New-TestVm 'web01' @(New-TestDisk 'web01.img' (300KB) 1)
    $script:db = New-TestVm 'db01' @(New-TestDisk 'db01-a.img' (200KB) 2), @(New-TestDisk 'db01-b.img' (10KB) 3)
}

AfterAll {
    Remove-Item -LiteralPath $root -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Invoke-VmQuiescedBackup' {
    BeforeAll { $script:repo = Join-Path $root 'invoke' }

    It 'backs up every VM from the pipeline, one restore point object each' {
        $points = @($web, $db | Invoke-VmQuiescedBackup -Repository $repo -Consistency Crash -ThrottleLimit 2)

        $points.Count | Should -Be 2
        $points | ForEach-Object { $_ | Should -BeOfType ([VmQuiesce.Core.Repository.RestorePoint]) }
        ($points.VmName | Sort-Object) -join ',' | Should -Be 'db01,web01'
        ($points | Where-Object VmName -eq 'db01').Files.Count | Should -Be 2
        $points[0].Repository | Should -Be $repo
    }

    It 'refuses a consistency the VM cannot reach, and accepts it with a warning under -AllowLowerConsistency' {
        $refused = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -ErrorVariable failures -ErrorAction SilentlyContinue
        $refused | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'ConsistencyNotReached,*'
        $failures[0].TargetObject.Name | Should -Be 'web01'

        $point = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Application -AllowLowerConsistency -WarningVariable warnings -WarningAction SilentlyContinue
        $point.Consistency | Should -Be 'Crash'
        $warnings.Count | Should -Be 1
        "$($warnings[0])" | Should -BeLike '*Crash*below*Application*'
    }

    It 'reports a failed VM as a non-terminating error naming it while the others go on' {
        $ghost = New-TestVm 'ghost' @(Join-Path $root 'no-such-disk.img')

        $points = @($ghost, $web | Invoke-VmQuiescedBackup -Repository $repo -Consistency Crash -ErrorVariable failures -ErrorAction SilentlyContinue)

        $points.VmName | Should -Be 'web01'
        $failures.Count | Should -Be 1
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'SourceFileNotFound,*'
        $failures[0].TargetObject.Name | Should -Be 'ghost'
        $failures[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
    }

    It 'runs the hook script blocks in the caller''s session with $_ set to the VM' {
        $calls = [Collections.Generic.List[string]]::new()

        $null = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash -PreFreezeScript { $calls.Add("pre $($_.Name)") } -PostThawScript { $calls.Add("post $($_.Name)") }

        $calls -join ';' | Should -Be 'pre web01;post web01'
    }

    It 'fails the VM with PreFreezeScriptFailed when the pre-freeze script throws' {
        $before = @(Get-VmBackup $repo).Count

        $null = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash -PreFreezeScript { throw 'app would not flush' } -ErrorVariable failures -ErrorAction SilentlyContinue

        $failures[0].FullyQualifiedErrorId | Should -BeLike 'PreFreezeScriptFailed,*'
        "$($failures[0])" | Should -BeLike '*app would not flush*'
        @(Get-VmBackup $repo).Count | Should -Be $before
    }

    It 'backs nothing up under -WhatIf' {
        $before = @(Get-VmBackup $repo).Count
        Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash -WhatIf | Should -BeNullOrEmpty
        @(Get-VmBackup $repo).Count | Should -Be $before
    }

    It 'takes -FreezeTimeout in seconds and rejects one that is not positive' {
        { Invoke-VmQuiescedBackup -Vm $web -Repository $repo -FreezeTimeout 0 } | Should -Throw -ErrorId 'InvalidFreezeTimeout*'
        $point = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash -FreezeTimeout 2.5
        $point | Should -Not -BeNullOrEmpty
    }

    It 'makes a new repository with -ChunkSize, and refuses an existing one with another chunk size before backing up' {
        $small = Join-Path $root 'small-chunks'
        $point = Invoke-VmQuiescedBackup -Vm $web -Repository $small -Consistency Crash -ChunkSize 128KB
        $point.ChunkSize | Should -Be 128KB
        (Get-Content -Raw (Join-Path $small 'vmquiesce-repository.json') | ConvertFrom-Json).chunkSize | Should -Be 128KB
        $point.Files[0].GetChunks().Count | Should -Be 3

        { Invoke-VmQuiescedBackup -Vm $web -Repository $small -Consistency Crash -ChunkSize 1MB } | Should -Throw -ErrorId 'RepositoryChunkSizeDiffers*' -ExpectedMessage '*has chunk size 128.0 KiB; -ChunkSize asks for 1.0 MiB*'
        @(Get-VmBackup -Repository $small).Count | Should -Be 1
        (Invoke-VmQuiescedBackup -Vm $web -Repository $small -Consistency Crash).ChunkSize | Should -Be 128KB
    }

    It 'rejects a -ChunkSize that is not a whole number of 4 KiB blocks or out of range' {
        { Invoke-VmQuiescedBackup -Vm $web -Repository (Join-Path $root 'odd') -ChunkSize 100000 } | Should -Throw -ErrorId 'InvalidChunkSize*' -ExpectedMessage '*(97.7 KiB)*whole number of 4.0 KiB blocks*'
        { Invoke-VmQuiescedBackup -Vm $web -Repository (Join-Path $root 'odd') -ChunkSize 4KB } | Should -Throw -ErrorId 'ParameterArgumentValidationError*'
        Test-Path (Join-Path $root 'odd') | Should -BeFalse
    }

    It 'refuses a folder that holds something other than a repository' {
        $other = Join-Path $root 'not-a-repo'
        New-Item -ItemType Directory -Path $other | Out-Null
        Set-Content -Path (Join-Path $other 'notes.txt') -Value 'mine'
        { Invoke-VmQuiescedBackup -Vm $web -Repository $other -Consistency Crash } | Should -Throw -ErrorId 'RepositoryNotRecognized*'
    }
}

Describe 'Get-VmBackup' {
    BeforeAll {
        $script:repo = Join-Path $root 'get'
        $script:first = $web | Invoke-VmQuiescedBackup -Repository $repo -Consistency Crash
        $script:second = $web, $db | Invoke-VmQuiescedBackup -Repository $repo -Consistency Crash -ThrottleLimit 1
    }

    It 'lists every restore point, oldest first' {
        $points = @(Get-VmBackup $repo)
        $points.Count | Should -Be 3
        $points[0].Id | Should -Be $first.Id
        $points | ForEach-Object { $_ | Should -BeOfType ([VmQuiesce.Core.Repository.RestorePoint]) }
    }

    It 'filters by VM name with wildcards, by id, and to the latest point per VM' {
        @(Get-VmBackup $repo -VmName 'web*').Count | Should -Be 2
        (Get-VmBackup $repo -Id $first.Id).Id | Should -Be $first.Id
        $latest = @(Get-VmBackup $repo -Latest)
        $latest.Count | Should -Be 2
        ($latest | Where-Object VmName -eq 'web01').Id | Should -Not -Be $first.Id
    }

    It 'reports a VM name without wildcards that matches no point, naming the VMs there, and lists the others' {
        $points = @(Get-VmBackup $repo -VmName 'web01', 'wbe01', 'nothing*' -ErrorVariable failures -ErrorAction SilentlyContinue)

        $points.VmName | Should -Be @('web01', 'web01')
        $failures.Count | Should -Be 1 -Because 'a pattern that matches nothing is no typo'
        $failures[0].FullyQualifiedErrorId | Should -Be 'RestorePointNotFound,VmQuiesce.Commands.GetVmBackupCommand'
        $failures[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $failures[0].TargetObject | Should -Be 'wbe01'
        "$($failures[0])" | Should -BeLike "*no restore point of a VM named 'wbe01' (its VMs: 'db01', 'web01')."
    }

    It 'reports unknown ids and folders with stable error ids' {
        Get-VmBackup $repo -Id '20200101T000000Z-00000000' -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'RestorePointNotFound,*'
        Get-VmBackup (Join-Path $root 'nowhere') -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'RepositoryNotFound,*'
        Get-VmBackup $repo -Id '../x' -ErrorVariable failures -ErrorAction SilentlyContinue
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'InvalidRestorePointId,*'
    }

    It 'reports an unreadable manifest by name and still lists the others' {
        $broken = Join-Path $repo 'points/20200101T000000Z-deadbeef.json'
        Set-Content -Path $broken -Value '{ "schema": '
        try {
            $points = @(Get-VmBackup $repo -ErrorVariable failures -ErrorAction SilentlyContinue)
            $points.Count | Should -Be 3
            # The repository a backup makes is encrypted: a manifest that is not sealed with its key is not authentic.
            $failures[0].FullyQualifiedErrorId | Should -BeLike 'RestorePointNotAuthentic,*'
            "$($failures[0])" | Should -BeLike '*20200101T000000Z-deadbeef.json*'
        }
        finally {
            Remove-Item $broken
        }
    }

    It 'formats as a table of VM, start time, consistency, size and stored bytes, and as a list' {
        $table = Get-VmBackup $repo | Format-Table | Out-String
        $table | Should -Match 'VmName\s+StartTime\s+Consistency\s+Size\s+StoredBytes'
        $table | Should -Match '300\.0 KiB'
        $list = Get-VmBackup $repo -Id $first.Id | Format-List | Out-String
        $list | Should -Match 'Quiesce\s*:\s*None, frozen 0 ms \(None\)'
    }
}

Describe 'Test-VmBackup' {
    BeforeAll {
        $script:repo = Join-Path $root 'test'
        $script:points = @($web, $db | Invoke-VmQuiescedBackup -Repository $repo -Consistency Crash)
    }

    It 'verifies restore points piped from Get-VmBackup' {
        $results = @(Get-VmBackup $repo | Test-VmBackup)
        $results.Count | Should -Be 2
        $results | ForEach-Object {
            $_ | Should -BeOfType ([VmQuiesce.Core.Repository.RestorePointVerification])
            $_.Status | Should -Be 'Ok'
            $_.ChunksChecked | Should -BeGreaterThan 0
        }
        Get-VmBackup $repo | Test-VmBackup | Format-Table | Out-String | Should -Match 'Status'
    }

    It 'shows bytes checked, the rate, percent and time left while it verifies, written by the pipeline thread for its worker' {
        $ps = [powershell]::Create()
        try {
            $null = $ps.AddScript("Import-Module '$env:VMQUIESCE_MODULE_PATH'; Get-VmBackup '$repo' | Test-VmBackup")
            $results = @($ps.Invoke())

            $ps.HadErrors | Should -BeFalse
            $results.Count | Should -Be 2
            $shown = @($ps.Streams.Progress | Where-Object { $_.Activity -like 'Verifying *' -and $_.RecordType -eq 'Processing' })
            $shown.Count | Should -BeGreaterThan 0
            $shown | ForEach-Object { $_.StatusDescription | Should -BeLike 'Reading and hashing chunks: * of * at */s' }
            # The figures themselves: percent within 0..100 and never going back, a time left for each record, and the
            # last record of each point at 100 % with nothing left.
            $shown | ForEach-Object {
                $_.PercentComplete | Should -BeGreaterOrEqual 0
                $_.PercentComplete | Should -BeLessOrEqual 100
                $_.SecondsRemaining | Should -BeGreaterOrEqual 0 -Because 'a verification that has read bytes knows its rate, so its time left'
            }
            foreach ($activity in $shown | Group-Object ActivityId) {
                $percents = @($activity.Group.PercentComplete)
                for ($i = 1; $i -lt $percents.Count; $i++) { $percents[$i] | Should -BeGreaterOrEqual $percents[$i - 1] }
                $last = $activity.Group[-1]
                $last.PercentComplete | Should -Be 100
                $last.SecondsRemaining | Should -Be 0
                $last.StatusDescription | Should -Match ': (?<done>[\d.,]+ \w+) of \k<done> at [\d.,]+ (B|KiB|MiB|GiB)/s$'
            }
        }
        finally {
            $ps.Dispose()
        }
    }

    It 'reports a changed chunk and the file it breaks with RestorePointNotAuthentic (the repository a backup makes is encrypted)' {
        $point = $points | Where-Object VmName -eq 'db01'
        $hash = $point.Files[1].GetChunks()[0]
        $chunk = Join-Path $repo "chunks/$($hash.Substring(0, 2))/$hash"
        $bytes = [IO.File]::ReadAllBytes($chunk)
        $bytes[100] = $bytes[100] -bxor 0xFF
        [IO.File]::WriteAllBytes($chunk, $bytes)

        $result = $point | Test-VmBackup -ErrorVariable failures -ErrorAction SilentlyContinue

        $result.Status | Should -Be 'Damaged'
        $result.BrokenFiles | Should -Be 'db01-b.img'
        $result.Problems[0].Hash | Should -Be $hash
        $result.Problems[0].Problem | Should -Be 'NotAuthentic'
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'RestorePointNotAuthentic,*'
        "$($failures[0])" | Should -BeLike '*db01-b.img*'
    }
}

Describe 'Test-VmBackup on a repository that lost a chunk' {
    It 'names the missing chunk and every file of every point it breaks' {
        $repo = Join-Path $root 'lost'
        $first = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash
        $second = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash
        $hash = $first.Files[0].GetChunks()[0]
        Remove-Item (Join-Path $repo "chunks/$($hash.Substring(0, 2))/$hash")

        $results = @(Test-VmBackup $repo -ErrorVariable failures -ErrorAction SilentlyContinue)

        $results.Count | Should -Be 2
        $results | ForEach-Object {
            $_.Status | Should -Be 'Damaged'
            $_.Problems[0].Problem | Should -Be 'Missing'
            $_.Problems[0].Files | Should -Be 'web01.img'
        }
        $failures.Count | Should -Be 2
        $failures | ForEach-Object { $_.FullyQualifiedErrorId | Should -BeLike 'RestorePointDamaged,*' }

        # The next backup stores the missing chunk anew and is whole again.
        $third = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash
        $third.StoredBytes | Should -BeGreaterThan 0
        (Test-VmBackup $repo -Id $third.Id, $first.Id).Status | Should -Be 'Ok', 'Ok'
    }
}

Describe 'Remove-VmBackup' {
    BeforeEach {
        $script:repo = Join-Path $root "remove-$([guid]::NewGuid().ToString('N'))"
        1..3 | ForEach-Object { $null = $web, $db | Invoke-VmQuiescedBackup -Repository $repo -Consistency Crash -ThrottleLimit 1 }
    }

    It 'keeps exactly what -KeepLast says for the VMs -VmName selects' {
        $result = Remove-VmBackup $repo -KeepLast 1 -VmName 'web*' -Confirm:$false

        $result | Should -BeOfType ([VmQuiesce.Core.Repository.PruneResult])
        $result.RemovedRestorePoints.Count | Should -Be 2
        @(Get-VmBackup $repo -VmName web01).Count | Should -Be 1
        @(Get-VmBackup $repo -VmName db01).Count | Should -Be 3
        Get-VmBackup $repo | Test-VmBackup | ForEach-Object { $_.Status | Should -Be 'Ok' }
    }

    It 'reports a -VmName without wildcards that matches no VM, naming the VMs there, and prunes the VMs the others select' {
        $result = Remove-VmBackup $repo -KeepLast 1 -VmName 'web01', 'dbo1' -Confirm:$false -ErrorVariable failures -ErrorAction SilentlyContinue

        $result.RemovedRestorePoints.Count | Should -Be 2
        $failures.Count | Should -Be 1
        $failures[0].FullyQualifiedErrorId | Should -Be 'RestorePointNotFound,VmQuiesce.Commands.RemoveVmBackupCommand'
        $failures[0].TargetObject | Should -Be 'dbo1'
        "$($failures[0])" | Should -BeLike "*no restore point of a VM named 'dbo1' (its VMs: 'db01', 'web01')."
        @(Get-VmBackup $repo -VmName db01).Count | Should -Be 3
    }

    It 'removes the restore points piped from Get-VmBackup' {
        Get-VmBackup $repo -VmName db01 | Remove-VmBackup -Confirm:$false | Out-Null
        @(Get-VmBackup $repo).VmName | Sort-Object -Unique | Should -Be 'web01'
    }

    It 'lists what would go under -WhatIf and removes nothing' {
        $before = @(Get-VmBackup $repo).Count
        $child = Get-ChildPwsh
        $command = "Import-Module '$env:VMQUIESCE_MODULE_PATH'; Remove-VmBackup -Repository '$repo' -KeepLast 2 -WhatIf"
        $output = & $child.FilePath @($child.Prefix + @('-NoProfile', '-NonInteractive', '-Command', $command)) 2>&1 | Out-String

        ([regex]::Matches($output, 'What if: Performing the operation "Remove restore point"')).Count | Should -Be 2
        $output | Should -Match 'web01'
        $output | Should -Match 'db01'
        $output | Should -Match 'chunk'
        # Dates as ISO 8601 whatever the culture, never 12/04/26.
        $output | Should -Match 'web01 \S+ \(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, Crash\)'
        @(Get-VmBackup $repo).Count | Should -Be $before
    }

    It 'asks before removing restore points by default (High impact), and removes nothing when told No' {
        $before = @(Get-VmBackup $repo).Count
        $console = New-RecordingPowerShell -Answer 2   # Yes, Yes to All, No, No to All, Suspend
        try {
            $null = $console.PowerShell.AddScript("Import-Module '$env:VMQUIESCE_MODULE_PATH'; Remove-VmBackup -Repository '$repo' -KeepLast 2 -VmName web01").Invoke()

            @($console.PowerShell.Streams.Error) | Should -BeNullOrEmpty
            $console.Host.Prompts[0] | Should -BeLike '*Remove restore point*web01*'
            $console.Host.Choices[0] | Should -BeLike 'Yes|Yes to All|No|No to All*'
            @(Get-VmBackup $repo).Count | Should -Be $before
        }
        finally {
            $console.PowerShell.Runspace.Dispose()
            $console.PowerShell.Dispose()
        }
    }

    It 'refuses a policy that keeps nothing' {
        { Remove-VmBackup $repo -VmName web01 } | Should -Throw -ErrorId 'RetentionPolicyEmpty*'
    }
}

Describe 'A backup interrupted mid-copy' {
    BeforeAll {
        # 1.5 GiB, sparse, with 384 MiB of random data: long enough to interrupt on any machine.
        $script:image = Join-Path $root 'big.img'
        $script:skipReason = if (-not $IsLinux) { 'needs Linux: the test image is made with truncate and dd, and the kill must be SIGKILL' }
        if (-not $skipReason) {
            & truncate -s 1536M $image
            & dd if=/dev/urandom of=$image bs=1M count=384 seek=512 conv=notrunc status=none
        }
    }

    It 'stops cleanly on Ctrl+C (pipeline stop): no restore point, no lock left' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $repo = Join-Path $root 'stopped'
        $kept = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash
        $chunksBefore = @(Get-ChildItem (Join-Path $repo 'chunks') -Recurse -File).Count
        $ps = [powershell]::Create()
        $null = $ps.AddScript("Import-Module '$env:VMQUIESCE_MODULE_PATH'; Invoke-VmQuiescedBackup -Vm ([VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('big', [string[]]@('$image'))) -Repository '$repo' -Consistency Crash")
        try {
            $handle = $ps.BeginInvoke()
            $deadline = [DateTime]::UtcNow.AddMinutes(3)
            while (@(Get-ChildItem (Join-Path $repo 'chunks') -Recurse -File).Count -lt $chunksBefore + 3 -and [DateTime]::UtcNow -lt $deadline -and -not $handle.IsCompleted) {
                Start-Sleep -Milliseconds 20
            }
            $handle.IsCompleted | Should -BeFalse -Because 'the backup must still be copying when it is stopped'
            $ps.Stop()
            $ps.InvocationStateInfo.State | Should -Be 'Stopped'
        }
        finally {
            $ps.Dispose()
        }

        @(Get-VmBackup $repo).Id | Should -Be $kept.Id
        @(Get-ChildItem (Join-Path $repo 'locks') -File).Count | Should -Be 0
        (Get-VmBackup $repo | Test-VmBackup).Status | Should -Be 'Ok'
    }

    It 'leaves a repository whose points verify, with no partial point, after SIGKILL; the dead process''s lock is removed with a warning' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $repo = Join-Path $root 'killed'
        $kept = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash
        $chunksBefore = @(Get-ChildItem (Join-Path $repo 'chunks') -Recurse -File).Count

        $script = Join-Path $root 'child.ps1'
        Set-Content -Path $script -Value @"
Import-Module '$env:VMQUIESCE_MODULE_PATH'
`$vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('big', [string[]]@('$image'))
Invoke-VmQuiescedBackup -Vm `$vm -Repository '$repo' -Consistency Crash
"@
        $child = Get-ChildPwsh
        $process = Start-Process -FilePath $child.FilePath -ArgumentList ($child.Prefix + @('-NoProfile', '-NonInteractive', '-File', $script)) -PassThru
        try {
            # Wait for the copy to be under way: new chunks appear while no new manifest does.
            $deadline = [DateTime]::UtcNow.AddMinutes(3)
            while (@(Get-ChildItem (Join-Path $repo 'chunks') -Recurse -File).Count -lt $chunksBefore + 3 -and [DateTime]::UtcNow -lt $deadline -and -not $process.HasExited) {
                Start-Sleep -Milliseconds 20
            }
            $process.HasExited | Should -BeFalse -Because 'the child must still be copying when it is killed'
        }
        finally {
            $process.Kill()   # SIGKILL on Linux
            $process.WaitForExit()
        }

        @(Get-VmBackup $repo).Id | Should -Be $kept.Id
        Get-VmBackup $repo | Test-VmBackup | ForEach-Object { $_.Status | Should -Be 'Ok' }

        $result = Remove-VmBackup $repo -KeepLast 5 -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue
        # The repository is encrypted, so its lock names the command but not the VM (lock files are not sealed).
        "$warnings" | Should -BeLike "*Removed the lock*Invoke-VmQuiescedBackup (process*that process is gone*"
        $result.RemovedChunks | Should -BeGreaterThan 0
        @(Get-ChildItem (Join-Path $repo 'chunks') -Recurse -File).Count | Should -Be $chunksBefore
        @(Get-VmBackup $repo | Test-VmBackup).Status | Should -Be 'Ok'
    }
}

Describe 'An error written while a stopped backup unwinds' {
    BeforeAll {
        # A VM whose snapshot cannot be released. When asked, its release first waits for the backup to be stopped, so the
        # failure is posted exactly while the stopped pipeline unwinds; Releasing says when the release began.
        if (-not ('VmQuiesceTests.UnreleasableVm' -as [type])) {
            # The module is built for .NET 8, this PowerShell may run on a later one: that the compiler assumes they match (CS1701) is no error.
            Add-Type -ReferencedAssemblies ([VmQuiesce.Core.Sources.BackupVm].Assembly.Location), System.Collections, System.Threading -CompilerOptions '-nowarn:1701' -TypeDefinition @'
using System;
using System.Collections.Generic;
using System.Threading;
using VmQuiesce.Core;
using VmQuiesce.Core.Sources;

namespace VmQuiesceTests
{
    public sealed class UnreleasableVm : BackupVm
    {
        public UnreleasableVm(string name, string disk, bool waitForStop) : base(name, disk) { Disk = disk; WaitForStop = waitForStop; }
        public string Disk { get; }
        public bool WaitForStop { get; }
        public ManualResetEventSlim Releasing { get; } = new ManualResetEventSlim();
        public override string Kind => "Files";
        protected override IBackupSource CreateSource(IOperationHost host) => new Source(this);
        protected override IReadOnlyDictionary<string, string> Describe() => new Dictionary<string, string>();

        private sealed class Source : IBackupSource
        {
            private readonly UnreleasableVm _vm;
            public Source(UnreleasableVm vm) { _vm = vm; }
            public string Kind => "Files";
            public string VmName => _vm.Name;
            public IReadOnlyList<string> FindLeftovers(CancellationToken cancel) => Array.Empty<string>();
            public IConsistentView OpenConsistentView(QuiesceOptions options, CancellationToken cancel) => new View(_vm, cancel);
        }

        private sealed class View : IConsistentView
        {
            private readonly UnreleasableVm _vm;
            private readonly CancellationToken _stopped;
            public View(UnreleasableVm vm, CancellationToken stopped) { _vm = vm; _stopped = stopped; }
            public Consistency Reached => Consistency.Crash;
            public IReadOnlyList<ViewFile> Files => new[] { new ViewFile("disk.img", _vm.Disk, _vm.Disk) };
            public CapturedSnapshot Snapshot => null;
            public QuiesceRecord Quiesce => new QuiesceRecord(Consistency.Crash, Array.Empty<string>(), 0, QuiesceMethod.None);
            public void Complete(bool success, CancellationToken cancel)
            {
                _vm.Releasing.Set();
                if (_vm.WaitForStop)
                {
                    _stopped.WaitHandle.WaitOne(TimeSpan.FromMinutes(2));
                }
                throw new VmQuiesceException("TestSnapshotNotReleased", FailureKind.InvalidOperation, "The snapshot of '" + _vm.Name + "' could not be released.", _vm.Name)
                {
                    Remedy = "To release it: run release-test-snapshot.",
                };
            }
            public void Dispose() { }
        }
    }
}
'@
        }
        $script:unreleasableDisk = New-TestDisk 'unreleasable.img' (64KB) 4

        # Starts a backup of $Vm in a PowerShell whose host records what reaches the console.
        function script:Start-RecordedBackup($Vm, [string] $Repository) {
            $console = New-RecordingPowerShell
            $null = $console.PowerShell.AddScript("Import-Module '$env:VMQUIESCE_MODULE_PATH'").Invoke()
            $console.PowerShell.Commands.Clear()
            $null = $console.PowerShell.AddCommand('Invoke-VmQuiescedBackup').AddParameter('Vm', $Vm).AddParameter('Repository', $Repository).AddParameter('Consistency', 'Crash')
            $console
        }
    }

    It 'still shows a release failure after Ctrl+C, on the host''s error line, with its id, message and what to run' {
        $vm = [VmQuiesceTests.UnreleasableVm]::new('stuck01', $unreleasableDisk, $true)
        $console = Start-RecordedBackup $vm (Join-Path $root 'stopped-release')
        try {
            $null = $console.PowerShell.BeginInvoke()
            $vm.Releasing.Wait([timespan]::FromMinutes(2)) | Should -BeTrue -Because 'the backup copies, then releases its snapshot'
            $console.PowerShell.Stop()
            $console.PowerShell.InvocationStateInfo.State | Should -Be 'Stopped'
        }
        finally {
            $console.PowerShell.Runspace.Dispose()
            $console.PowerShell.Dispose()
        }

        $console.Host.Errors | Should -Be @("Invoke-VmQuiescedBackup: TestSnapshotNotReleased: The snapshot of 'stuck01' could not be released. To release it: run release-test-snapshot.")
    }

    It 'writes it once, to the error stream and not the console, when the pipeline is not stopped' {
        $vm = [VmQuiesceTests.UnreleasableVm]::new('stuck02', $unreleasableDisk, $false)
        $console = Start-RecordedBackup $vm (Join-Path $root 'unstopped-release')
        try {
            $points = $console.PowerShell.Invoke()
            $points.VmName | Should -Be 'stuck02' -Because 'the data was stored: the point records that its snapshot was not released'
            @($console.PowerShell.Streams.Error).FullyQualifiedErrorId | Should -Be @('TestSnapshotNotReleased,VmQuiesce.Commands.InvokeVmQuiescedBackupCommand')
            $console.Host.Errors | Should -BeNullOrEmpty
        }
        finally {
            $console.PowerShell.Runspace.Dispose()
            $console.PowerShell.Dispose()
        }
    }
}

Describe 'A repository path that cannot be resolved, piped among others' {
    BeforeAll {
        $script:repo = Join-Path $root 'unresolved'
        $script:point = Invoke-VmQuiescedBackup -Vm $web -Repository $repo -Consistency Crash
        # A drive no session has: unlike a folder that does not exist, the path does not even resolve.
        $script:unresolved = 'NoSuchDrive:/backups'
    }

    It '<Command> writes a non-terminating PathNotFileSystem for it and processes the next repository' -ForEach @(
        @{ Command = 'Get-VmBackup'; Parameter = 'Repository'; Type = 'VmQuiesce.Core.Repository.RestorePoint'; Run = { param($Items) $Items | Get-VmBackup -ErrorAction Continue } }
        @{ Command = 'Test-VmBackup'; Parameter = 'Repository'; Type = 'VmQuiesce.Core.Repository.RestorePointVerification'; Run = { param($Items) $Items | Test-VmBackup -ErrorAction Continue } }
        @{ Command = 'Remove-VmBackup'; Parameter = 'Repository'; Type = 'VmQuiesce.Core.Repository.PruneResult'; Run = { param($Items) $Items | Remove-VmBackup -KeepLast 5 -Confirm:$false -ErrorAction Continue } }
        @{ Command = 'Copy-VmBackup'; Parameter = 'Repository'; Type = 'VmQuiesce.Core.Repository.Storage.RestorePointCopyResult'; Run = { param($Items) $Items | Copy-VmBackup -Destination (Join-Path $root 'unresolved-copy') -ErrorAction Continue } }
        @{ Command = 'Get-VmBackupRepository'; Parameter = 'Path'; Type = 'VmQuiesce.Core.Repository.RepositorySummary'; Run = { param($Items) $Items | Get-VmBackupRepository -ErrorAction Continue } }
        # The other key cmdlets open the repository as Export does; they would add seconds of Argon2id for a passphrase.
        @{ Command = 'Export-VmBackupRepositoryKey'; Parameter = 'Repository'; Type = 'VmQuiesce.Core.Repository.Keys.RepositoryKeyCopy'; Run = { param($Items) $Items | Export-VmBackupRepositoryKey -Destination (Join-Path $root 'unresolved.key') -ErrorAction Continue } }
    ) {
        $items = [pscustomobject]@{ Repository = $unresolved }, [pscustomobject]@{ Repository = $repo }

        # A terminating error would throw here and leave the second repository unprocessed.
        $output = @(& $Run $items 2>&1)

        $failures = @($output | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        $failures.Count | Should -Be 1
        Assert-UnresolvedPathFailure $failures[0] $Command $Parameter $unresolved
        $results = @($output | Where-Object { $_ -isnot [System.Management.Automation.ErrorRecord] })
        $results.Count | Should -Be 1 -Because 'the repository after the unresolved one is processed'
        $results[0] | Should -BeOfType $Type
    }

    It 'Remove-VmBackup by id still removes the ids piped before it' {
        $removable = Invoke-VmQuiescedBackup -Vm $db -Repository $repo -Consistency Crash
        $items = [pscustomobject]@{ Repository = $repo; Id = $removable.Id }, [pscustomobject]@{ Repository = $unresolved; Id = $point.Id }

        $output = @($items | Remove-VmBackup -Confirm:$false -ErrorAction Continue 2>&1)

        @($output | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] }).FullyQualifiedErrorId | Should -Be 'PathNotFileSystem,VmQuiesce.Commands.RemoveVmBackupCommand'
        @($output | Where-Object { $_ -is [VmQuiesce.Core.Repository.PruneResult] }).RemovedRestorePoints | Should -Be $removable.Id
        @(Get-VmBackup $repo).Id | Should -Be $point.Id
    }
}

Describe 'A path on another provider' {
    BeforeAll {
        # The current location is where a mistaken provider path used to land: 'Variable:\PWD' became './PWD'.
        $script:here = Join-Path $root 'here'
        New-Item -ItemType Directory -Path $here | Out-Null
        Push-Location $here
        $script:point = Invoke-VmQuiescedBackup -Vm $web -Repository (Join-Path $root 'providers') -Consistency Crash
    }

    AfterAll {
        Pop-Location
    }

    It '<Command> -<Parameter> on the <Provider> provider is refused, naming both, before anything happens' -ForEach @(
        @{ Command = 'Get-VmBackup'; Parameter = 'Repository'; Provider = 'Variable'; Run = { Get-VmBackup -Repository 'Variable:\PWD' } }
        @{ Command = 'Invoke-VmQuiescedBackup'; Parameter = 'Repository'; Provider = 'Variable'; Run = { Invoke-VmQuiescedBackup -Vm $web -Repository 'Variable:\PWD' -Consistency Crash } }
        @{ Command = 'Test-VmBackup'; Parameter = 'Repository'; Provider = 'Environment'; Run = { Test-VmBackup -Repository 'Env:\PATH' } }
        @{ Command = 'Remove-VmBackup'; Parameter = 'Repository'; Provider = 'Variable'; Run = { Remove-VmBackup -Repository 'Variable:\PWD' -KeepLast 1 -Confirm:$false } }
        @{ Command = 'Restore-VmSnapshot'; Parameter = 'Destination'; Provider = 'Variable'; Run = { $point | Restore-VmSnapshot -Destination 'Variable:\PWD' -Confirm:$false } }
        @{ Command = 'Get-VmSnapshot'; Parameter = 'Path'; Provider = 'Variable'; Run = { Get-VmSnapshot -Path 'Variable:\PWD' } }
        @{ Command = 'Get-BackupVm'; Parameter = 'QmpSocket'; Provider = 'Variable'; Run = { Get-BackupVm -QmpSocket 'Variable:\PWD' -Name vm1 } }
    ) {
        $failure = $null
        try {
            $ErrorActionPreference = 'Stop'
            & $Run | Out-Null
        }
        catch {
            $failure = $_
        }

        $failure.FullyQualifiedErrorId | Should -BeLike 'PathNotFileSystem,*'
        $failure.InvocationInfo.MyCommand.Name | Should -Be $Command
        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
        "$failure" | Should -BeLike "-$Parameter '*' is a path of the $Provider provider*"
        @(Get-ChildItem -LiteralPath $here -Force).Count | Should -Be 0 -Because 'nothing may be created where the provider path would have landed'
        @(Get-VmBackup (Join-Path $root 'providers')).Count | Should -Be 1
        @(Get-ChildItem -LiteralPath (Join-Path $root 'providers/locks') -File).Count | Should -Be 0
    }
}
