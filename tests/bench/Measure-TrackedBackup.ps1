<#
.SYNOPSIS
    A/B of the change-tracked backup (issue 20) between two builds, in one guest: the bench's change-tracking
    case (Invoke-Bench.ps1) repeated, with the builds alternated.
.DESCRIPTION
    One TCG guest whose 4 GiB data disk holds the bench's realistic content. Each round rewrites 1% of it in the
    guest (1 MiB pieces), then one build makes a change-tracked backup into the shared repository; the two builds
    take turns (A B, then B A, ...), so each backup builds on the point the other build made, and both see the same
    kind of change. Then, the same way, whole-image backups into a repository of their own. Prints each run, the
    median, min and max per build, and B against A pair by pair (Compare-BenchPairs: the median difference with a 90%
    bootstrap interval; an interval that holds 0 is no measured difference). Every backup is a fresh pwsh
    (Invoke-BenchOperation.ps1) that times the cmdlet call.
.EXAMPLE
    ./tests/bench/Measure-TrackedBackup.ps1 -BaselineModulePath /work/main/out/VmQuiesce/0.1.0/VmQuiesce.psd1 -ModulePath ./out/VmQuiesce/0.1.0/VmQuiesce.psd1
#>
param(
    [Parameter(Mandatory)] [string] $BaselineModulePath,
    [Parameter(Mandatory)] [string] $ModulePath,
    [ValidateRange(1, 20)] [int] $Runs = 3,
    [ValidateRange(0, 20)] [int] $WholeImageRuns = 1,
    [ValidateRange(1, 64)] [int] $ImageGiB = 4,
    [string] $OutputPath = (Join-Path $PSScriptRoot '../../out/bench-tracked'),
    [string] $GuestPath = (Join-Path $PSScriptRoot '../../out/guest')
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Import-Module (Join-Path $PSScriptRoot 'Bench.psm1') -Force
$env:VMQUIESCE_TEST_GUEST = [IO.Path]::GetFullPath($GuestPath)
Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1') -Force

$builds = [ordered]@{ A = [IO.Path]::GetFullPath($BaselineModulePath); B = [IO.Path]::GetFullPath($ModulePath) }
$work = Join-Path ([IO.Path]::GetFullPath($OutputPath)) 'work'
if (Test-Path $work) { & rm -rf -- $work }
New-Item -ItemType Directory -Path $work -Force | Out-Null
$env:VMQUIESCE_KEY_FOLDER = Join-Path $work 'keys'
$env:VMQUIESCE_CHECKPOINT_FOLDER = Join-Path $work 'checkpoints'
$process = [Environment]::GetCommandLineArgs()[0]
$pwsh = if ($process -like '*.dll') { @{ FilePath = (Get-Command dotnet).Source; Prefix = @($process) } } else { @{ FilePath = (Get-Process -Id $PID).Path; Prefix = @() } }

function Invoke-Operation {
    # One operation of Invoke-BenchOperation.ps1 in a fresh pwsh with the given build; returns its JSON report.
    param([string] $Module, [string] $Operation, [hashtable] $Arguments)
    $childArgs = $pwsh.Prefix + @('-NoProfile', '-NonInteractive', '-File', (Join-Path $PSScriptRoot 'Invoke-BenchOperation.ps1'), '-ModulePath', $Module, '-Operation', $Operation)
    foreach ($key in $Arguments.Keys) { $childArgs += @("-$key", "$($Arguments[$key])") }
    $output = & $pwsh.FilePath @childArgs 2>&1
    if ($LASTEXITCODE -ne 0) { throw "$Operation with '$Module' failed (exit code $LASTEXITCODE): $($output -join [Environment]::NewLine)" }
    return @($output | Where-Object { "$_".StartsWith('{"operation"') })[-1] | ConvertFrom-Json
}

function Get-TreeBytes {
    param([string] $Path)
    return [long] ((& du -sb -- $Path) -split '\s+')[0]
}

$content = Join-Path $work 'guest-content'
New-Item -ItemType Directory -Path $content -Force | Out-Null
$imageSize = [long] $ImageGiB * 1GB
# As the bench: one file of 90% of the disk (ext4 needs the rest).
$null = New-BenchImage -Path (Join-Path $content 'data.img') -Size ([long] [math]::Floor($imageSize * 0.9 / 1MB) * 1MB)
$guest = Start-TestGuest -DiskSizeMB ($ImageGiB * 1024) -ContentFolder $content -TimeoutSeconds 600
& rm -rf -- $content
$results = [Collections.Generic.List[object]]::new()
try {
    $disk = $guest.DiskPaths[0]
    $sockets = @{ QmpSocket = $guest.QmpSocketPath; AgentSocket = $guest.AgentSocketPath }
    $repos = @{ Tracked = (Join-Path $work 'repo-tracked'); Whole = (Join-Path $work 'repo-whole') }
    foreach ($kind in 'Tracked', 'Whole') {
        $runsOfKind = if ($kind -eq 'Tracked') { $Runs } else { $WholeImageRuns }
        if ($runsOfKind -eq 0) { continue }
        # The point before the first change; for the tracked kind it starts the checkpoints.
        $null = Invoke-Operation $builds.A GuestBackups ($sockets + @{ Count = 1; Repository = $repos[$kind]; ChangeTracking = $(if ($kind -eq 'Tracked') { 'On' } else { 'Off' }) })
        for ($run = 1; $run -le $runsOfKind; $run++) {
            $order = if ($run % 2) { 'A', 'B' } else { 'B', 'A' }
            foreach ($build in $order) {
                $written = (Invoke-Operation $builds.A GuestRewrite ($sockets + @{ RewriteBytes = [long] ($imageSize * 0.01) })).rewrittenBytes
                & cat -- $disk > /dev/null
                & sync
                $before = Get-TreeBytes $repos[$kind]
                $r = Invoke-Operation $builds[$build] GuestBackups ($sockets + @{ Count = 1; Repository = $repos[$kind]; ChangeTracking = $(if ($kind -eq 'Tracked') { 'On' } else { 'Off' }) })
                $row = [pscustomobject]@{
                    Kind = $kind; Build = $build; Run = $run; Seconds = [math]::Round($r.seconds, 3); CpuSeconds = [math]::Round($r.cpuSeconds, 3)
                    ReadMiB = [math]::Round($r.bytesRead / 1MB, 1); WrittenMiB = $written / 1MB
                    StoredMiB = [math]::Round(((Get-TreeBytes $repos[$kind]) - $before) / 1MB, 1); FrozenMs = [math]::Round(@($r.frozenMilliseconds)[0], 1); How = $r.changeTracking
                }
                $results.Add($row)
                Write-Host ($row | Format-Table -HideTableHeaders | Out-String).Trim()
            }
        }
    }
}
finally { $guest | Stop-TestGuest }

$results | Format-Table Kind, Build, Run, Seconds, CpuSeconds, ReadMiB, WrittenMiB, StoredMiB, FrozenMs, How | Out-String | Write-Host
foreach ($group in $results | Group-Object Kind, Build) {
    foreach ($figure in 'Seconds', 'CpuSeconds') {
        $stats = Get-BenchStats @($group.Group.$figure)
        Write-Host ('{0}, {1}: median {2:N3} s (min {3:N3}, max {4:N3}) over {5} runs' -f $group.Name, $figure, $stats.Median, $stats.Min, $stats.Max, $group.Count)
    }
}
# B against A pair by pair (the two backups of one run came one after the other): medians of all runs apart move by
# 10-15 ms between two measures of one build here, the agent's 100 ms look alone spreading single runs over 100 ms.
foreach ($kind in @($results.Kind | Select-Object -Unique)) {
    $kindRuns = @($results | Where-Object Kind -EQ $kind | Sort-Object Run)
    foreach ($figure in 'Seconds', 'CpuSeconds') {
        $pairs = Compare-BenchPairs -Baseline @($kindRuns | Where-Object Build -EQ 'A' | ForEach-Object $figure) -Candidate @($kindRuns | Where-Object Build -EQ 'B' | ForEach-Object $figure)
        Write-Host ('{0}, {1}: B - A {2:+0.000;-0.000} s median of {3} pairs (90% interval {4:+0.000;-0.000} to {5:+0.000;-0.000} s), B quicker in {6} of them' -f
            $kind, $figure, $pairs.Median, $pairs.Pairs, $pairs.Low, $pairs.High, $pairs.CandidateQuicker)
    }
}
$results | ConvertTo-Json | Set-Content (Join-Path ([IO.Path]::GetFullPath($OutputPath)) 'results.json')
