# The benchmark's pure pieces: the image generator, statistics, targets, and the results writers.
# Invoke-Bench.ps1 drives them; tests/pester/Bench.Tests.ps1 tests them on small inputs.

Set-StrictMode -Version Latest

if (-not ('VmQuiesce.Bench.BenchImage' -as [type])) {
    Add-Type -Path (Join-Path $PSScriptRoot 'BenchImage.cs')
}

function New-BenchImage {
    <#
    .SYNOPSIS
        Writes a deterministic sparse image: HoleShare holes, RandomShare random data, the rest copies of random runs.
    #>
    [OutputType([pscustomobject])]
    param(
        [Parameter(Mandatory)] [string] $Path,
        [Parameter(Mandatory)] [long] $Size,
        [int] $Seed = 20261124,
        [double] $HoleShare = 0.30,
        [double] $RandomShare = 0.45
    )
    $plan = [VmQuiesce.Bench.BenchImage]::Plan($Size, $Seed, $HoleShare, $RandomShare, [VmQuiesce.Bench.BenchImage]::DefaultUnit)
    [VmQuiesce.Bench.BenchImage]::Write($Path, $plan, $Seed, [VmQuiesce.Bench.BenchImage]::DefaultUnit)
    $share = @{}
    foreach ($kind in 'Hole', 'Random', 'Repeated') {
        $bytes = ($plan | Where-Object { "$($_.Kind)" -eq $kind } | Measure-Object -Property Length -Sum).Sum
        $share[$kind] = [double] $bytes / $Size
    }
    [pscustomobject]@{
        Path           = $Path
        Size           = $Size
        Seed           = $Seed
        Plan           = $plan
        HoleShare      = $share.Hole
        RandomShare    = $share.Random
        RepeatedShare  = $share.Repeated
        AllocatedBytes = Get-AllocatedBytes -Path $Path
    }
}

function Update-BenchImage {
    # Overwrites Share of the image's 1 MiB units with new data; returns the offsets written.
    param([Parameter(Mandatory)] [string] $Path, [double] $Share = 0.01, [int] $Seed = 20261124, [int] $Round = 1)
    , [VmQuiesce.Bench.BenchImage]::Change($Path, $Share, $Seed, $Round, [VmQuiesce.Bench.BenchImage]::DefaultUnit)
}

function Get-AllocatedBytes {
    # Bytes the file system allocated for a file (holes cost nothing).
    param([Parameter(Mandatory)] [string] $Path)
    $blocks = (& stat -c '%b %B' -- $Path) -split ' '
    return [long] $blocks[0] * [long] $blocks[1]
}

function Measure-ChunkCodec {
    <#
    .SYNOPSIS
        zstd (as chunks are written now) against Deflate (as they were before) on the same compressible
        chunks, one run each: ratio, compress and decompress time. Needs PowerShell 7 (the helper is C# 9).
    #>
    [OutputType([pscustomobject])]
    param(
        # ZstdSharp.dll of the built module (bin/net8.0): the same zstd the chunk store uses.
        [Parameter(Mandatory)] [string] $ZstdPath,
        [Parameter(Mandatory)] [int] $ZstdLevel,
        [long] $Size = 256MB,
        [int] $ChunkSize = 4MB,
        [int] $Seed = 20261124
    )
    if (-not ('VmQuiesce.Bench.CodecBench' -as [type])) {
        Add-Type -Path $ZstdPath
        # CS1701 (ZstdSharp was built against .NET 8's System.Runtime, this is a newer one) is only a warning.
        Add-Type -Path (Join-Path $PSScriptRoot 'CodecBench.cs') -ReferencedAssemblies $ZstdPath, 'System.IO.Compression' -IgnoreWarnings -WarningAction Ignore
    }
    $chunks = [byte[][]] @(for ($i = 0; $i * $ChunkSize -lt $Size; $i++) { , [VmQuiesce.Bench.CodecBench]::CompressibleChunk($ChunkSize, $Seed + $i) })
    # One chunk through each codec first, untimed: neither pays for the JIT in its figures.
    $null = [VmQuiesce.Bench.CodecBench]::Zstd([byte[][]] @(, $chunks[0]), $ZstdLevel), [VmQuiesce.Bench.CodecBench]::Deflate([byte[][]] @(, $chunks[0]))
    [VmQuiesce.Bench.CodecBench]::Zstd($chunks, $ZstdLevel)
    [VmQuiesce.Bench.CodecBench]::Deflate($chunks)
}

function Get-BenchStats {
    # min / median / max of a set of runs (median of an even count: the mean of the middle two).
    [OutputType([pscustomobject])]
    param([Parameter(Mandatory)] [double[]] $Values)
    $sorted = @($Values | Sort-Object)
    $n = $sorted.Count
    $median = if ($n % 2) { $sorted[($n - 1) / 2] } else { ($sorted[$n / 2 - 1] + $sorted[$n / 2]) / 2 }
    [pscustomobject]@{ Min = $sorted[0]; Median = $median; Max = $sorted[$n - 1]; Runs = $sorted }
}

function Compare-BenchPairs {
    <#
    .SYNOPSIS
        A candidate build against a baseline, run by run: each pair of runs was made one after the other, so its
        difference leaves out what the machine was doing at the time. The median difference (candidate minus
        baseline), in how many pairs the candidate was quicker, and a 90% bootstrap interval of the median difference
        (the pairs drawn again with replacement, with a fixed seed so the same runs give the same interval): an
        interval that holds 0 is no measured difference.
    #>
    [OutputType([pscustomobject])]
    param(
        [Parameter(Mandatory)] [double[]] $Baseline,
        [Parameter(Mandatory)] [double[]] $Candidate,
        [ValidateRange(100, 100000)] [int] $Resamples = 2000
    )
    if ($Baseline.Count -eq 0 -or $Baseline.Count -ne $Candidate.Count) {
        throw "Compare-BenchPairs needs one candidate run per baseline run, at least one pair; got $($Baseline.Count) baseline and $($Candidate.Count) candidate runs."
    }
    $n = $Baseline.Count
    $differences = [double[]]::new($n)
    for ($i = 0; $i -lt $n; $i++) { $differences[$i] = $Candidate[$i] - $Baseline[$i] }
    $random = [Random]::new(1)
    $sample = [double[]]::new($n)
    $medians = [double[]]::new($Resamples)
    for ($r = 0; $r -lt $Resamples; $r++) {
        for ($i = 0; $i -lt $n; $i++) { $sample[$i] = $differences[$random.Next($n)] }
        $medians[$r] = (Get-BenchStats $sample).Median
    }
    [Array]::Sort($medians)
    [pscustomobject]@{
        Median = (Get-BenchStats $differences).Median
        Low = $medians[[int][math]::Floor(0.05 * ($Resamples - 1))]
        High = $medians[[int][math]::Ceiling(0.95 * ($Resamples - 1))]
        CandidateQuicker = @($differences | Where-Object { $_ -lt 0 }).Count
        Pairs = $n
    }
}

function New-BenchFigure {
    <#
    .SYNOPSIS
        One measured figure; with -NotMeasured, the reason it could not be measured (never a made-up number).
    #>
    param(
        [Parameter(Mandatory)] [string] $Name,
        [Parameter(Mandatory)] [string] $Tool,
        [Parameter(Mandatory)] [string] $Unit,
        [double[]] $Values,
        [string] $NotMeasured,
        [string] $Note,
        # Bytes each run processed, for a throughput (MiB/s) beside a time.
        [long] $Bytes
    )
    $figure = [ordered]@{ name = $Name; tool = $Tool; unit = $Unit }
    if ($NotMeasured -or -not $Values) {
        $figure.notMeasured = if ($NotMeasured) { $NotMeasured } else { 'no run produced a value' }
    }
    else {
        $stats = Get-BenchStats -Values $Values
        $figure.min = $stats.Min
        $figure.median = $stats.Median
        $figure.max = $stats.Max
        $figure.runs = $stats.Runs
        if ($Bytes -gt 0 -and $Unit -eq 's') { $figure.mibPerSecond = [math]::Round($Bytes / 1MB / $stats.Median, 1) }
    }
    if ($Note) { $figure.note = $Note }
    [pscustomobject]$figure
}

function Find-BenchFigure {
    param([object[]] $Figures, [string] $Name, [string] $Tool)
    $Figures | Where-Object { $_.name -eq $Name -and $_.tool -eq $Tool } | Select-Object -First 1
}

function New-BenchCheck {
    <#
    .SYNOPSIS
        A target from the issues: Value (a ratio or a size) compared with Limit. PASS, MISS, or NOT MEASURED with why.
    #>
    param(
        [Parameter(Mandatory)] [string] $Target,
        [Nullable[double]] $Value,
        [Parameter(Mandatory)] [double] $Limit,
        [ValidateSet('<', '<=')] [string] $Comparison = '<=',
        [string] $Unit = 'x',
        [string] $NotMeasured
    )
    $check = [ordered]@{ target = $Target; limit = $Limit; comparison = $Comparison; unit = $Unit }
    if ($null -eq $Value) {
        $check.result = 'NOT MEASURED'
        $check.reason = if ($NotMeasured) { $NotMeasured } else { 'a figure it needs was not measured' }
    }
    else {
        $check.value = [math]::Round($Value, 3)
        $pass = if ($Comparison -eq '<') { $Value -lt $Limit } else { $Value -le $Limit }
        $check.result = if ($pass) { 'PASS' } else { 'MISS' }
    }
    [pscustomobject]$check
}

function Get-BenchRatio {
    # Median of one figure over the median of another; $null (with the reason in -Why) when either is missing.
    param([object] $Numerator, [object] $Denominator)
    foreach ($figure in $Numerator, $Denominator) {
        if (-not $figure -or $figure.PSObject.Properties['notMeasured']) { return $null }
    }
    if ($Denominator.median -eq 0) { return $null }
    return $Numerator.median / $Denominator.median
}

function Get-NotMeasuredReason {
    param([object[]] $Figures)
    $reasons = foreach ($figure in $Figures) {
        if (-not $figure) { 'a figure is missing' }
        elseif ($figure.PSObject.Properties['notMeasured']) { "$($figure.tool) $($figure.name): $($figure.notMeasured)" }
    }
    return ($reasons -join '; ')
}

function Get-BenchMachine {
    # CPU, cores, memory, kernel and the disk under the output folder: what the figures came from.
    param([Parameter(Mandatory)] [string] $OutputPath)
    $cpu = (Get-Content /proc/cpuinfo | Where-Object { $_ -like 'model name*' } | Select-Object -First 1) -replace '^model name\s*:\s*', ''
    $memKb = [long] ((Get-Content /proc/meminfo | Where-Object { $_ -like 'MemTotal:*' }) -replace '\D', '')
    $source = (& df --output=source,fstype -- $OutputPath | Select-Object -Last 1).Trim() -split '\s+'
    $device = Split-Path -Leaf $source[0]
    $rotational = "/sys/block/$device/queue/rotational"
    $os = (Get-Content /etc/os-release | Where-Object { $_ -like 'PRETTY_NAME=*' }) -replace '^PRETTY_NAME="?|"$', ''
    [ordered]@{
        cpu       = $cpu
        cores     = [Environment]::ProcessorCount
        memoryGiB = [math]::Round($memKb / 1MB, 1)
        kernel    = (& uname -r)
        os        = $os
        disk      = "$($source[0]) ($($source[1])$(if (Test-Path $rotational) { if ((Get-Content $rotational) -eq '1') { ', reported rotational' } else { ', non-rotational' } }))"
        dotnet    = [Runtime.InteropServices.RuntimeInformation]::FrameworkDescription
        pwsh      = "$($PSVersionTable.PSVersion)"
    }
}

function Format-BenchValue {
    param([double] $Value, [string] $Unit)
    switch ($Unit) {
        # Decided after rounding, so 0.9996 s reads "1.00 s", not "1,000 ms".
        's' { if ([math]::Round($Value * 1000) -lt 1000) { '{0:N0} ms' -f ($Value * 1000) } else { '{0:N2} s' -f $Value } }
        'ms' { '{0:N1} ms' -f $Value }
        'MiB' { '{0:N1} MiB' -f $Value }
        'MiB/s' { '{0:N0} MiB/s' -f $Value }
        'x' { '{0:N2}x' -f $Value }
        '%' { '{0:N2} %' -f $Value }
        default { "$Value $Unit" }
    }
}

function ConvertTo-BenchMarkdown {
    # The results as markdown: machine, the figures (min / median / max), and the targets with PASS/MISS.
    [OutputType([string])]
    param([Parameter(Mandatory)] [object] $Results)
    $md = [Text.StringBuilder]::new()
    $m = $Results.machine
    $null = $md.AppendLine("## Benchmark results ($($Results.date))")
    $null = $md.AppendLine()
    $null = $md.AppendLine("Machine: $($m.cpu), $($m.cores) cores, $($m.memoryGiB) GiB RAM, kernel $($m.kernel), $($m.os), disk $($m.disk); $($m.dotnet), PowerShell $($m.pwsh).")
    $null = $md.AppendLine()
    foreach ($line in @($Results.notes)) { $null = $md.AppendLine("- $line") }
    $null = $md.AppendLine()
    $null = $md.AppendLine('| figure | tool | min | median | max | notes |')
    $null = $md.AppendLine('| --- | --- | --- | --- | --- | --- |')
    foreach ($f in $Results.figures) {
        $note = if ($f.PSObject.Properties['note']) { $f.note } else { '' }
        if ($f.PSObject.Properties['notMeasured']) {
            $null = $md.AppendLine("| $($f.name) | $($f.tool) | | not measured: $($f.notMeasured) | | $note |")
            continue
        }
        if ($f.PSObject.Properties['mibPerSecond']) { $note = (@("$($f.mibPerSecond) MiB/s", $note) | Where-Object { $_ }) -join '; ' }
        $null = $md.AppendLine("| $($f.name) | $($f.tool) | $(Format-BenchValue $f.min $f.unit) | $(Format-BenchValue $f.median $f.unit) | $(Format-BenchValue $f.max $f.unit) | $note |")
    }
    $null = $md.AppendLine()
    $null = $md.AppendLine('| target (issues 5 and 6) | measured (ratios of medians; memory per size: max) | limit | result |')
    $null = $md.AppendLine('| --- | --- | --- | --- |')
    foreach ($c in $Results.checks) {
        $value = if ($c.PSObject.Properties['value']) { Format-BenchValue $c.value $c.unit } else { "not measured: $($c.reason)" }
        $null = $md.AppendLine("| $($c.target) | $value | $($c.comparison) $(Format-BenchValue $c.limit $c.unit) | $($c.result) |")
    }
    return $md.ToString()
}

function Write-BenchResults {
    # results.json and results.md in OutputPath; returns the markdown.
    param([Parameter(Mandatory)] [object] $Results, [Parameter(Mandatory)] [string] $OutputPath)
    $Results | ConvertTo-Json -Depth 8 | Set-Content -Path (Join-Path $OutputPath 'results.json') -Encoding utf8
    $markdown = ConvertTo-BenchMarkdown -Results $Results
    Set-Content -Path (Join-Path $OutputPath 'results.md') -Value $markdown -Encoding utf8 -NoNewline
    return $markdown
}

function New-BenchChart {
    <#
    .SYNOPSIS
        throughput.png: MiB/s of each operation, VmQuiesce beside the baselines (gnuplot, pngcairo).
        Returns $null when written, else why not.
    #>
    param([Parameter(Mandatory)] [object] $Results, [Parameter(Mandatory)] [string] $Path)
    if (-not (Get-Command gnuplot -ErrorAction Ignore)) { return 'gnuplot is not installed (Debian: apt-get install gnuplot-nox)' }
    $tools = @('VmQuiesce', 'cp --sparse=always', 'cp --sparse=always, memory warm', 'restic', 'borg', 'sha256sum')
    $operations = @($Results.figures | Where-Object { $_.PSObject.Properties['mibPerSecond'] } | ForEach-Object name | Select-Object -Unique)
    if (-not $operations) { return 'no figure has a throughput' }
    $data = [Text.StringBuilder]::new()
    $null = $data.AppendLine('operation ' + (($tools | ForEach-Object { '"' + $_ + '"' }) -join ' '))
    foreach ($operation in $operations) {
        $cells = foreach ($tool in $tools) {
            $f = Find-BenchFigure -Figures $Results.figures -Name $operation -Tool $tool
            if ($f -and $f.PSObject.Properties['mibPerSecond']) { $f.mibPerSecond.ToString([cultureinfo]::InvariantCulture) } else { '-' }
        }
        $null = $data.AppendLine('"' + $operation + '" ' + ($cells -join ' '))
    }
    $dataPath = "$Path.dat"
    Set-Content -Path $dataPath -Value $data.ToString() -Encoding ascii
    $script = @"
set terminal pngcairo size 1100,560 font 'sans,10'
set output '$Path'
set title 'Throughput of the same image, one run ($($Results.date)); higher is better'
set ylabel 'MiB/s (image bytes / median time)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set datafile missing '-'
set key top right
set grid ytics
set yrange [0:*]
set xtics nomirror
plot for [i=2:$($tools.Count + 1)] '$dataPath' using i:xtic(1) title columnheader(i)
"@
    $output = $script | & gnuplot 2>&1
    Remove-Item -LiteralPath $dataPath -ErrorAction Ignore
    if ($LASTEXITCODE -ne 0 -or -not (Test-Path $Path)) { return "gnuplot failed: $output" }
    return $null
}

Export-ModuleMember -Function New-BenchImage, Measure-ChunkCodec, Update-BenchImage, Get-AllocatedBytes, Get-BenchStats, Compare-BenchPairs, New-BenchFigure, Find-BenchFigure,
    New-BenchCheck, Get-BenchRatio, Get-NotMeasuredReason, Get-BenchMachine, Format-BenchValue, ConvertTo-BenchMarkdown, Write-BenchResults, New-BenchChart
