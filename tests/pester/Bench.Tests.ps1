BeforeAll { Import-Module $env:VMQUIESCE_MODULE_PATH -Force }

# The benchmark's pure pieces on small inputs: no timings are asserted here.
BeforeAll {
    # The bench runs on PowerShell 7 (on Linux, beside cp, restic and borg): its image generator is C# that
    # Windows PowerShell 5.1's Add-Type (C# 5) cannot compile, so there these tests skip, saying so.
    $script:benchSkip = if ($PSVersionTable.PSEdition -eq 'Desktop') { 'the bench and its helpers need PowerShell 7: Windows PowerShell 5.1''s Add-Type compiles only C# 5, and BenchImage.cs is newer C#' }
    $script:folder = Join-Path ([IO.Path]::GetTempPath()) ('vmq-bench-' + [guid]::NewGuid().ToString('N').Substring(0, 8))
    New-Item -ItemType Directory -Path $script:folder | Out-Null
    if (-not $benchSkip) { Import-Module (Join-Path $PSScriptRoot '../bench/Bench.psm1') -Force }
}
AfterAll { Remove-Item -LiteralPath $script:folder -Recurse -Force -ErrorAction Ignore }

Describe 'The benchmark image generator' {
    BeforeAll {
        if ($benchSkip) { return }
        $script:path = Join-Path $script:folder 'small.raw'
        $script:image = New-BenchImage -Path $script:path -Size 64MB -Seed 42
        $script:unit = [VmQuiesce.Bench.BenchImage]::DefaultUnit
        function Read-Unit {
            param([long] $Offset)
            $stream = [IO.File]::OpenRead($script:path)
            try {
                $buffer = [byte[]]::new($script:unit)
                $stream.Position = $Offset
                $null = $stream.Read($buffer, 0, $buffer.Length)
                return , $buffer
            }
            finally { $stream.Dispose() }
        }
        function Get-Hash { param([byte[]] $Bytes) [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($Bytes)) }
    }

    It 'plans 30% holes, 45% random and 25% repeated data in whole units that tile the image' {
        if ($benchSkip) { Set-ItResult -Skipped -Because $benchSkip; return }
        $image.Size | Should -Be 64MB
        (Get-Item $path).Length | Should -Be 64MB
        # 64 units: round(19.2) holes, round(28.8) random, the rest repeated.
        $image.HoleShare | Should -Be (19 / 64)
        $image.RandomShare | Should -Be (29 / 64)
        $image.RepeatedShare | Should -Be (16 / 64)
        $offset = 0
        foreach ($extent in $image.Plan) {
            $extent.Offset | Should -Be $offset
            $extent.Length % $unit | Should -Be 0
            $offset += $extent.Length
        }
        $offset | Should -Be 64MB
    }

    It 'leaves the holes unallocated and zero, and writes the data' {
        if ($benchSkip) { Set-ItResult -Skipped -Because $benchSkip; return }
        if (-not (Get-Variable IsLinux -ValueOnly -ErrorAction Ignore)) { Set-ItResult -Skipped -Because 'holes are measured with Linux''s allocated-block count'; return }
        $holes = ($image.Plan | Where-Object { "$($_.Kind)" -eq 'Hole' } | Measure-Object Length -Sum).Sum
        # The file system may allocate a little metadata; never a hole's worth.
        $image.AllocatedBytes | Should -BeGreaterOrEqual (64MB - $holes)
        $image.AllocatedBytes | Should -BeLessThan (64MB - $holes + 1MB)
        $hole = $image.Plan | Where-Object { "$($_.Kind)" -eq 'Hole' } | Select-Object -First 1
        (Read-Unit $hole.Offset) | Where-Object { $_ -ne 0 } | Select-Object -First 1 | Should -BeNullOrEmpty
    }

    It 'fills random units with distinct data and repeated units with copies of random units' {
        if ($benchSkip) { Set-ItResult -Skipped -Because $benchSkip; return }
        $randomHashes = @($image.Plan | Where-Object { "$($_.Kind)" -eq 'Random' } | ForEach-Object {
                for ($o = $_.Offset; $o -lt $_.Offset + $_.Length; $o += $unit) { Get-Hash (Read-Unit $o) }
            })
        $randomHashes.Count | Should -Be 29
        @($randomHashes | Select-Object -Unique).Count | Should -Be 29
        foreach ($extent in $image.Plan | Where-Object { "$($_.Kind)" -eq 'Repeated' }) {
            $extent.SourceOffset | Should -BeGreaterOrEqual 0
            for ($o = 0; $o -lt $extent.Length; $o += $unit) {
                $copy = Get-Hash (Read-Unit ($extent.Offset + $o))
                $copy | Should -Be (Get-Hash (Read-Unit ($extent.SourceOffset + $o % $extent.SourceLength)))
            }
        }
    }

    It 'gives the same bytes for the same seed and other bytes for another seed' {
        if ($benchSkip) { Set-ItResult -Skipped -Because $benchSkip; return }
        $again = Join-Path $folder 'again.raw'
        $other = Join-Path $folder 'other.raw'
        $null = New-BenchImage -Path $again -Size 64MB -Seed 42
        $null = New-BenchImage -Path $other -Size 64MB -Seed 43
        (Get-FileHash $again).Hash | Should -Be (Get-FileHash $path).Hash
        (Get-FileHash $other).Hash | Should -Not -Be (Get-FileHash $path).Hash
    }

    It 'changes 1% of the units (at least one) with new data, and another round changes others' {
        if ($benchSkip) { Set-ItResult -Skipped -Because $benchSkip; return }
        $changed = Join-Path $folder 'changed.raw'
        Copy-Item $path $changed
        $offsets = Update-BenchImage -Path $changed -Share 0.01 -Seed 42 -Round 1
        $offsets.Count | Should -Be 1
        (Get-Item $changed).Length | Should -Be 64MB
        $before = Get-Hash (Read-Unit $offsets[0])
        $stream = [IO.File]::OpenRead($changed)
        try {
            $buffer = [byte[]]::new($unit); $stream.Position = $offsets[0]; $null = $stream.Read($buffer, 0, $unit)
        }
        finally { $stream.Dispose() }
        Get-Hash $buffer | Should -Not -Be $before
        $again = Update-BenchImage -Path $changed -Share 0.10 -Seed 42 -Round 2
        $again.Count | Should -Be 6
    }

    It 'refuses a size that is not a whole number of units' {
        if ($benchSkip) { Set-ItResult -Skipped -Because $benchSkip; return }
        { New-BenchImage -Path (Join-Path $folder 'bad.raw') -Size (1MB + 1) } | Should -Throw '*multiple of the unit*'
    }
}

Describe 'The benchmark statistics and results writer' {
    It 'takes min, median and max (the mean of the middle two for an even count)' {
        if ($benchSkip) { Set-ItResult -Skipped -Because $benchSkip; return }
        $odd = Get-BenchStats -Values 5, 1, 3
        $odd.Min | Should -Be 1; $odd.Median | Should -Be 3; $odd.Max | Should -Be 5
        (Get-BenchStats -Values 4, 1, 3, 2).Median | Should -Be 2.5
    }

    It 'compares two builds pair by pair: a steady gain is one, pairs that disagree hold 0 in their interval' {
        if ($benchSkip) { Set-ItResult -Skipped -Because $benchSkip; return }
        $baseline = 0.40, 0.52, 0.38, 0.47, 0.44, 0.39, 0.50, 0.41
        $steady = Compare-BenchPairs -Baseline $baseline -Candidate ($baseline | ForEach-Object { $_ - 0.01 })
        $steady.Median | Should -BeLessThan -0.0099
        $steady.Median | Should -BeGreaterThan -0.0101
        $steady.High | Should -BeLessThan 0
        $steady.CandidateQuicker | Should -Be 8
        # Half the pairs 30 ms quicker, half 30 ms slower: no measured difference.
        $mixed = Compare-BenchPairs -Baseline $baseline -Candidate @(for ($i = 0; $i -lt 8; $i++) { $baseline[$i] + $(if ($i % 2) { 0.03 } else { -0.03 }) })
        $mixed.Low | Should -BeLessThan 0
        $mixed.High | Should -BeGreaterThan 0
        $mixed.CandidateQuicker | Should -Be 4
        { Compare-BenchPairs -Baseline 1, 2 -Candidate 1 } | Should -Throw '*2 baseline and 1 candidate*'
    }

    It 'shows seconds under one as milliseconds, and switches to seconds where the rounding reaches 1000 ms' {
        if ($benchSkip) { Set-ItResult -Skipped -Because $benchSkip; return }
        Format-BenchValue -Value 0.958 -Unit 's' | Should -Be ('{0:N0} ms' -f 958)
        Format-BenchValue -Value 0.9996 -Unit 's' | Should -Be ('{0:N2} s' -f 1)
        Format-BenchValue -Value 2.345 -Unit 's' | Should -Be ('{0:N2} s' -f 2.345)
    }

    It 'writes figures, throughputs, reasons for what was not measured, and PASS/MISS per target' {
        if ($benchSkip) { Set-ItResult -Skipped -Because $benchSkip; return }
        $fast = New-BenchFigure -Name 'Full backup' -Tool 'VmQuiesce' -Unit 's' -Values 2, 4, 3 -Bytes 3GB
        $slow = New-BenchFigure -Name 'Full backup' -Tool 'borg' -Unit 's' -Values 6, 6, 6 -Bytes 3GB
        $missing = New-BenchFigure -Name 'Restore' -Tool 'VmQuiesce' -Unit 's' -NotMeasured 'Restore-VmSnapshot is missing'
        $fast.median | Should -Be 3
        $fast.mibPerSecond | Should -Be 1024
        $missing.PSObject.Properties['median'] | Should -BeNullOrEmpty
        $checks = @(
            New-BenchCheck -Target 'Full backup / borg' -Value (Get-BenchRatio $fast $slow) -Limit 1 -Comparison '<'
            New-BenchCheck -Target 'Full backup / nothing' -Value (Get-BenchRatio $slow $fast) -Limit 1 -Comparison '<'
            New-BenchCheck -Target 'Restore / borg' -Value (Get-BenchRatio $missing $slow) -Limit 1 -NotMeasured (Get-NotMeasuredReason @($missing, $slow))
        )
        $checks.result | Should -Be @('PASS', 'MISS', 'NOT MEASURED')
        $checks[0].value | Should -Be 0.5
        $results = [pscustomobject]@{
            date = '2026-11-24 20:00 UTC'; notes = @('a note')
            machine = [ordered]@{ cpu = 'Test CPU'; cores = 2; memoryGiB = 4; kernel = 'k'; os = 'os'; disk = 'd'; dotnet = 'n'; pwsh = 'p' }
            figures = @($fast, $slow, $missing); checks = $checks
        }
        $out = Join-Path $folder 'results'
        New-Item -ItemType Directory -Path $out | Out-Null
        $markdown = Write-BenchResults -Results $results -OutputPath $out
        $markdown | Should -Match 'Test CPU, 2 cores'
        $markdown | Should -Match '\| Full backup \| VmQuiesce \| 2\.00 s \| 3\.00 s \| 4\.00 s \| 1024 MiB/s \|'
        $markdown | Should -Match '\| Restore \| VmQuiesce \| \| not measured: Restore-VmSnapshot is missing \|'
        $markdown | Should -Match '\| Full backup / borg \| 0\.50x \| < 1\.00x \| PASS \|'
        $markdown | Should -Match '\| Restore / borg \| not measured: VmQuiesce Restore: Restore-VmSnapshot is missing \| <= 1\.00x \| NOT MEASURED \|'
        Get-Content -Raw (Join-Path $out 'results.md') | Should -Be $markdown
        $json = Get-Content -Raw (Join-Path $out 'results.json') | ConvertFrom-Json
        $json.figures[2].notMeasured | Should -Be 'Restore-VmSnapshot is missing'
        $json.checks[1].result | Should -Be 'MISS'
    }
}
