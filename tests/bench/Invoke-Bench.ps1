<#
.SYNOPSIS
    Measures VmQuiesce beside what a user would run instead (cp --sparse=always, restic, borg, sha256sum; restic
    and rclone against a real Ceph RGW the bench starts for the S3 figures),
    in one run on one machine, and writes out/bench/results.json, results.md and throughput.png.
.DESCRIPTION
    Every VmQuiesce run is a fresh pwsh that times only the cmdlet call (Invoke-BenchOperation.ps1).
    The page cache holds the image before each timed run (all tools alike), `sync` runs between runs
    (untimed) so one run's write-back does not land in the next, and every full backup goes into a
    fresh repository. A figure that cannot be measured says why; no number is ever made up.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [string] $OutputPath = (Join-Path $PSScriptRoot '../../out/bench'),
    # Runs per figure: min / median / max over these.
    [ValidateRange(1, 20)] [int] $Runs = 3,
    [ValidateRange(1, 20)] [int] $ImportRuns = 10,
    [ValidateRange(1, 64)] [int] $ImageGiB = 4,
    [ValidateRange(1, 50)] [int] $GuestBackups = 10,
    # Data disk sizes of the test guest for the figures from the repository (instant restore, one file back).
    [ValidateRange(1, 64)] [int[]] $RestorePointGiB = @(1, 4, 8),
    # Backups per image size for peak memory (a peak barely varies; the time goes to the 4 GiB figures).
    [ValidateRange(1, 20)] [int] $MemoryRuns = 2,
    # Timed change-tracked backups per round of the guest figures: their time spreads by up to 100 ms (qemu-ga looks at
    # a channel nobody had open every 100 ms), so three would give a median that moves by tens of ms between runs.
    [ValidateRange(1, 10)] [int] $TrackedPerRound = 4,
    # A folder of the test guest (tests/guest/Build-TestGuest.ps1); built there when missing.
    [string] $GuestPath = (Join-Path $PSScriptRoot '../../out/guest')
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
Import-Module (Join-Path $PSScriptRoot 'Bench.psm1') -Force

$OutputPath = [IO.Path]::GetFullPath($OutputPath)
$ModulePath = [IO.Path]::GetFullPath($ModulePath)
$benchClock = [Diagnostics.Stopwatch]::StartNew()
$work = Join-Path $OutputPath 'work'
if (Test-Path $work) { Remove-Item $work -Recurse -Force }
New-Item -ItemType Directory -Path $work -Force | Out-Null
foreach ($stale in 'results.json', 'results.md', 'throughput.png') { Remove-Item (Join-Path $OutputPath $stale) -ErrorAction Ignore }

$figures = [Collections.Generic.List[object]]::new()
$notes = [Collections.Generic.List[string]]::new()

function Write-Stage {
    param([string] $Text)
    Write-Host ("[{0,6:N1} s] {1}" -f $benchClock.Elapsed.TotalSeconds, $Text)
}

function Add-Figure {
    param([hashtable] $Figure)
    $f = New-BenchFigure @Figure
    $figures.Add($f)
    $shown = if ($f.PSObject.Properties['notMeasured']) { "not measured: $($f.notMeasured)" } else { "median $(Format-BenchValue $f.median $f.unit) (min $(Format-BenchValue $f.min $f.unit), max $(Format-BenchValue $f.max $f.unit))" }
    Write-Stage "  $($f.name), $($f.tool): $shown"
}

function Get-FreshPowerShell {
    # The same pwsh as this one, in a new process (through dotnet when it runs as the local tool).
    $process = [Environment]::GetCommandLineArgs()[0]
    if ($process -like '*.dll') { return @{ FilePath = (Get-Command dotnet).Source; Prefix = @($process) } }
    return @{ FilePath = (Get-Process -Id $PID).Path; Prefix = @() }
}
$freshPwsh = Get-FreshPowerShell

function Invoke-VmQuiesceOperation {
    # One VmQuiesce operation in a fresh pwsh; returns its JSON report.
    param([string] $Operation, [hashtable] $Arguments = @{})
    $childArgs = $freshPwsh.Prefix + @('-NoProfile', '-NonInteractive', '-File', (Join-Path $PSScriptRoot 'Invoke-BenchOperation.ps1'),
        '-ModulePath', $ModulePath, '-Operation', $Operation)
    foreach ($key in $Arguments.Keys) { $childArgs += @("-$key", "$($Arguments[$key])") }
    $output = & $freshPwsh.FilePath @childArgs 2>&1
    if ($LASTEXITCODE -ne 0) { throw "VmQuiesce $Operation failed (exit code $LASTEXITCODE): $($output -join [Environment]::NewLine)" }
    $json = @($output | Where-Object { "$_".StartsWith('{"operation"') })
    if (-not $json) { throw "VmQuiesce $Operation printed no result: $($output -join [Environment]::NewLine)" }
    return $json[-1] | ConvertFrom-Json
}

function Measure-Native {
    # Times one native command (GNU time records its peak RSS); throws with its output on failure.
    param([string] $FilePath, [string[]] $ArgumentList, [string] $WorkingDirectory = $work)
    $rssFile = Join-Path $work 'rss.txt'
    Push-Location $WorkingDirectory
    try {
        $clock = [Diagnostics.Stopwatch]::StartNew()
        $output = & /usr/bin/time -f '%M' -o $rssFile -- $FilePath @ArgumentList 2>&1
        $clock.Stop()
    }
    finally { Pop-Location }
    if ($LASTEXITCODE -ne 0) { throw "'$FilePath $($ArgumentList -join ' ')' failed with exit code ${LASTEXITCODE}: $($output -join [Environment]::NewLine)" }
    [pscustomobject]@{ Seconds = $clock.Elapsed.TotalSeconds; PeakResidentBytes = [long] (Get-Content $rssFile -Tail 1) * 1KB; Output = $output }
}

function Sync-Disk { & sync }

function Read-IntoCache {
    # The page cache holds the image before every timed read, for every tool alike.
    param([string] $Path)
    & cat -- $Path > /dev/null
}

function Get-TreeBytes {
    param([string] $Path)
    return [long] ((& du -sb -- $Path) -split '\s+')[0]
}

function Remove-Tree {
    param([string] $Path)
    if (Test-Path -LiteralPath $Path) { & rm -rf -- $Path }
}

function Find-RestoredImage {
    param([string] $Folder)
    $file = Get-ChildItem -LiteralPath $Folder -Recurse -File | Select-Object -First 1
    if (-not $file) { throw "Nothing was restored under $Folder." }
    return $file.FullName
}

# --- Tools -----------------------------------------------------------------------------------------
Write-Stage 'Baseline tools'
$missing = @(@{ restic = 'restic'; borg = 'borgbackup'; rclone = 'rclone'; gnuplot = 'gnuplot-nox' }.GetEnumerator() | Where-Object { -not (Get-Command $_.Key -ErrorAction Ignore) } | ForEach-Object Value | Sort-Object)
$toolReason = @{}
if ($missing) {
    $canApt = (& id -u) -eq '0' -and (Get-Command apt-get -ErrorAction Ignore)
    if ($canApt) {
        Write-Stage "  apt-get install $($missing -join ' ')"
        $env:DEBIAN_FRONTEND = 'noninteractive'
        $aptLog = & apt-get install -y --no-install-recommends @missing 2>&1
        if ($LASTEXITCODE -ne 0) {
            & apt-get update 2>&1 | Out-Null
            $aptLog = & apt-get install -y --no-install-recommends @missing 2>&1
        }
        if ($LASTEXITCODE -ne 0) { Write-Warning "apt-get install failed: $($aptLog | Select-Object -Last 3)" }
    }
    foreach ($tool in 'restic', 'borg', 'rclone') {
        if (-not (Get-Command $tool -ErrorAction Ignore)) {
            $toolReason[$tool] = if ($canApt) { "apt-get could not install $tool" } else { "$tool is not installed and this is not a root Debian host to install it (apt-get install restic borgbackup rclone)" }
        }
    }
}
$hasRestic = -not $toolReason.ContainsKey('restic')
$hasBorg = -not $toolReason.ContainsKey('borg')
$toolVersions = [ordered]@{ cp = (& cp --version | Select-Object -First 1) }
if ($hasRestic) { $toolVersions.restic = (& restic version) -replace ' compiled.*', '' }
if ($hasBorg) { $toolVersions.borg = (& borg --version) }
if (-not $toolReason.ContainsKey('rclone')) { $toolVersions.rclone = (& rclone version | Select-Object -First 1) }

# Throwaway credentials and caches of the baselines live under the work folder, never on a command line.
$env:RESTIC_PASSWORD = [guid]::NewGuid().ToString('N')
$env:RESTIC_CACHE_DIR = Join-Path $work 'restic-cache'
$env:BORG_BASE_DIR = Join-Path $work 'borg-home'
$env:BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK = 'yes'
$env:BORG_RELOCATED_REPO_ACCESS_IS_OK = 'yes'

# --- The image -------------------------------------------------------------------------------------
$imageSize = [long] $ImageGiB * 1GB
$image = Join-Path $work 'image.raw'
Write-Stage "Generating a $ImageGiB GiB image (30% holes, 45% random, 25% repeated, 1 MiB runs)"
$imageInfo = New-BenchImage -Path $image -Size $imageSize
$imageFacts = [ordered]@{
    sizeBytes = $imageSize; allocatedBytes = $imageInfo.AllocatedBytes; seed = $imageInfo.Seed
    holeShare = $imageInfo.HoleShare; randomShare = $imageInfo.RandomShare; repeatedShare = $imageInfo.RepeatedShare
}
Write-Stage ("  {0:N2} GiB allocated" -f ($imageInfo.AllocatedBytes / 1GB))

$warmCp = 'cp --sparse=always, memory warm'
$smallChunkRepo = Join-Path $work 'repo-VmQuiesce-1MiB-chunks'
# Issue 18: encrypted repositories (the default) against unencrypted ones (as made before keys), same run.
$plainTool = 'VmQuiesce, unencrypted'
$env:VMQUIESCE_KEY_FOLDER = Join-Path $work 'keys'
# The bench guest's change-tracking checkpoint records stay with the bench too, never in /var/lib/vmquiesce.
$env:VMQUIESCE_CHECKPOINT_FOLDER = Join-Path $work 'checkpoints'
$smallChunkTool = 'VmQuiesce, 1 MiB chunks'

function Measure-Copy {
    # cp --sparse=always twice: as it comes, then at once again after deleting the first copy, so that the
    # second writes into page-cache memory just freed. In this kind of VM, memory freed a few seconds
    # earlier has been handed back to the host (virtio-balloon free page reporting) and the first touch of
    # each page is a host fault: the first copy pays that, the second shows cp's own speed.
    param([string] $Destination)
    $asItComes = (Measure-Native cp @('--sparse=always', $image, $Destination)).Seconds
    Remove-Tree $Destination
    $warm = (Measure-Native cp @('--sparse=always', $image, $Destination)).Seconds
    @{ AsItComes = $asItComes; Warm = $warm }
}

function Get-Repo {
    param([string] $Tool, [int] $Run)
    Join-Path $work "repo-$Tool-$Run"
}

# --- Full backups ----------------------------------------------------------------------------------
Write-Stage "Full backup, $Runs runs per tool, each into a fresh repository"
$full = @{ VmQuiesce = @(); $plainTool = @(); cp = @(); cpWarm = @(); restic = @(); borg = @() }
$vmqPeak = @()
$stored = @{}
for ($run = 1; $run -le $Runs; $run++) {
    $keep = $run -eq $Runs
    Read-IntoCache $image; Sync-Disk
    $repo = Get-Repo VmQuiesce $run
    $r = Invoke-VmQuiesceOperation Backup @{ Image = $image; Repository = $repo }
    $full.VmQuiesce += $r.seconds; $vmqPeak += $r.peakResidentBytes; $stored['VmQuiesce'] = Get-TreeBytes $repo
    if (-not $keep) { Remove-Tree $repo }
    Read-IntoCache $image; Sync-Disk
    $repo = Get-Repo VmQuiesce-plain $run
    $full[$plainTool] += (Invoke-VmQuiesceOperation Backup @{ Image = $image; Repository = $repo; NewRepository = 'Unencrypted' }).seconds
    if (-not $keep) { Remove-Tree $repo }
    if ($keep) {
        # The same, into a repository of 1 MiB chunks, which the 1% change rounds back up too.
        Sync-Disk
        $null = Invoke-VmQuiesceOperation Backup @{ Image = $image; Repository = $smallChunkRepo; ChunkSize = 1MB }
    }

    Sync-Disk
    $copy = Join-Path $work "copy-$run.raw"
    $times = Measure-Copy $copy
    $full.cp += $times.AsItComes; $full.cpWarm += $times.Warm
    Remove-Tree $copy

    if ($hasRestic) {
        $repo = Get-Repo restic $run
        $null = Measure-Native restic @('init', '--quiet', '--repo', $repo)
        Sync-Disk
        $full.restic += (Measure-Native restic @('backup', '--quiet', '--repo', $repo, $image)).Seconds
        $stored['restic'] = Get-TreeBytes $repo
        if (-not $keep) { Remove-Tree $repo }
    }
    if ($hasBorg) {
        $repo = Get-Repo borg $run
        $null = Measure-Native borg @('init', '--encryption=none', $repo)
        Sync-Disk
        $full.borg += (Measure-Native borg @('create', "$repo::full", $image)).Seconds
        $stored['borg'] = Get-TreeBytes $repo
        if (-not $keep) { Remove-Tree $repo }
    }
    Write-Stage "  run $run done"
}
Sync-Disk
$name = 'Full backup'
Add-Figure @{ Name = $name; Tool = 'VmQuiesce'; Unit = 's'; Values = $full.VmQuiesce; Bytes = $imageSize; Note = ('stored {0:N2} GiB' -f ($stored.VmQuiesce / 1GB)) }
Add-Figure @{ Name = $name; Tool = $plainTool; Unit = 's'; Values = $full[$plainTool]; Bytes = $imageSize; Note = 'as repositories were made before keys: SHA-256 chunk ids, no encryption' }
Add-Figure @{ Name = $name; Tool = 'cp --sparse=always'; Unit = 's'; Values = $full.cp; Bytes = $imageSize; Note = 'no fsync: the data may still be in the page cache when cp returns' }
Add-Figure @{ Name = $name; Tool = $warmCp; Unit = 's'; Values = $full.cpWarm; Bytes = $imageSize; Note = 'the same, at once after deleting a first copy: no host page faults' }
Add-Figure @{ Name = $name; Tool = 'restic'; Unit = 's'; Values = $full.restic; Bytes = $imageSize; NotMeasured = $toolReason['restic']; Note = $(if ($hasRestic) { 'stored {0:N2} GiB (encrypted, repository v2 default compression)' -f ($stored.restic / 1GB) }) }
Add-Figure @{ Name = $name; Tool = 'borg'; Unit = 's'; Values = $full.borg; Bytes = $imageSize; NotMeasured = $toolReason['borg']; Note = $(if ($hasBorg) { 'stored {0:N2} GiB (--encryption=none, default lz4)' -f ($stored.borg / 1GB) }) }

# --- Second backup after changing 1% ---------------------------------------------------------------
Write-Stage "Second backup after changing 1% of the image (1 MiB writes at random places), $Runs rounds"
$second = @{ VmQuiesce = @(); $plainTool = @(); $smallChunkTool = @(); restic = @(); borg = @() }
$added = @{ VmQuiesce = @(); $smallChunkTool = @(); restic = @(); borg = @() }
for ($round = 1; $round -le $Runs; $round++) {
    $null = Update-BenchImage -Path $image -Share 0.01 -Round $round
    Read-IntoCache $image; Sync-Disk
    $repo = Get-Repo VmQuiesce $Runs
    $before = Get-TreeBytes $repo
    $r = Invoke-VmQuiesceOperation Backup @{ Image = $image; Repository = $repo }
    $second.VmQuiesce += $r.seconds; $added.VmQuiesce += (Get-TreeBytes $repo) - $before
    Sync-Disk
    $second[$plainTool] += (Invoke-VmQuiesceOperation Backup @{ Image = $image; Repository = (Get-Repo VmQuiesce-plain $Runs); NewRepository = 'Unencrypted' }).seconds
    $before = Get-TreeBytes $smallChunkRepo
    Sync-Disk
    $r = Invoke-VmQuiesceOperation Backup @{ Image = $image; Repository = $smallChunkRepo }
    $second[$smallChunkTool] += $r.seconds; $added[$smallChunkTool] += (Get-TreeBytes $smallChunkRepo) - $before
    if ($hasRestic) {
        $repo = Get-Repo restic $Runs
        $before = Get-TreeBytes $repo
        Sync-Disk
        $second.restic += (Measure-Native restic @('backup', '--quiet', '--repo', $repo, $image)).Seconds
        $added.restic += (Get-TreeBytes $repo) - $before
    }
    if ($hasBorg) {
        $repo = Get-Repo borg $Runs
        $before = Get-TreeBytes $repo
        Sync-Disk
        $second.borg += (Measure-Native borg @('create', "$repo::second-$round", $image)).Seconds
        $added.borg += (Get-TreeBytes $repo) - $before
    }
    Write-Stage "  round $round done"
}
$name = 'Backup after 1% change'
foreach ($tool in 'VmQuiesce', $smallChunkTool, 'restic', 'borg') {
    $why = if ($tool -notlike 'VmQuiesce*') { $toolReason[$tool] }
    Add-Figure @{ Name = $name; Tool = $tool; Unit = 's'; Values = $second[$tool]; Bytes = $imageSize; NotMeasured = $why }
    if ($tool -eq 'VmQuiesce') { Add-Figure @{ Name = $name; Tool = $plainTool; Unit = 's'; Values = $second[$plainTool]; Bytes = $imageSize } }
    Add-Figure @{ Name = 'Bytes stored by that backup'; Tool = $tool; Unit = 'MiB'; Values = @($added[$tool] | ForEach-Object { $_ / 1MB }); NotMeasured = $why; Note = $(if (-not $why) { '{0:N0} MiB changed; repository growth' -f ($imageSize * 0.01 / 1MB) }) }
}

# --- Verify ----------------------------------------------------------------------------------------
Write-Stage "Verify, $Runs runs: Test-VmBackup of the latest restore point vs sha256sum of the image"
$verify = @(); $sha = @(); $checked = 0
for ($run = 1; $run -le $Runs; $run++) {
    Sync-Disk
    $r = Invoke-VmQuiesceOperation Verify @{ Repository = (Get-Repo VmQuiesce $Runs) }
    if ($r.problems -ne 0) { throw "Test-VmBackup found $($r.problems) problems in a repository it just wrote." }
    $verify += $r.seconds; $checked = [long] $r.bytesChecked
    Read-IntoCache $image
    $sha += (Measure-Native sha256sum @($image)).Seconds
}
Add-Figure @{ Name = 'Verify'; Tool = 'VmQuiesce'; Unit = 's'; Values = $verify; Bytes = $imageSize; Note = ('Test-VmBackup -Id <latest>, {0:N2} GiB checked' -f ($checked / 1GB)) }
Add-Figure @{ Name = 'Verify'; Tool = 'sha256sum'; Unit = 's'; Values = $sha; Bytes = $imageSize; Note = 'the image, page cache warm' }

# --- Restore ---------------------------------------------------------------------------------------
Write-Stage "Restore of the latest point, $Runs runs per tool"
$restore = @{ VmQuiesce = @(); $plainTool = @(); cp = @(); cpWarm = @(); restic = @(); borg = @() }
$restoredAllocated = @{}
$imageAllocated = Get-AllocatedBytes $image
$restoreReason = $null
for ($run = 1; $run -le $Runs; $run++) {
    $target = Join-Path $work 'restored'
    if (-not $restoreReason) {
        Remove-Tree $target; Sync-Disk
        $r = Invoke-VmQuiesceOperation Restore @{ Repository = (Get-Repo VmQuiesce $Runs); Destination = $target }
        if ($r.PSObject.Properties['notMeasured']) { $restoreReason = $r.notMeasured }
        else { $restore.VmQuiesce += $r.seconds; $restoredAllocated.VmQuiesce = Get-AllocatedBytes (Find-RestoredImage $target) }
        Remove-Tree $target; Sync-Disk
        $restore[$plainTool] += (Invoke-VmQuiesceOperation Restore @{ Repository = (Get-Repo VmQuiesce-plain $Runs); Destination = $target }).seconds
    }
    Remove-Tree $target; Read-IntoCache $image; Sync-Disk
    New-Item -ItemType Directory -Path $target | Out-Null
    $copy = Join-Path $target 'image.raw'
    $times = Measure-Copy $copy
    $restore.cp += $times.AsItComes; $restore.cpWarm += $times.Warm
    $restoredAllocated.cp = Get-AllocatedBytes $copy
    if ($hasRestic) {
        Remove-Tree $target; Sync-Disk
        $restore.restic += (Measure-Native restic @('restore', '--quiet', '--repo', (Get-Repo restic $Runs), 'latest', '--target', $target)).Seconds
        $restoredAllocated.restic = Get-AllocatedBytes (Find-RestoredImage $target)
    }
    if ($hasBorg) {
        Remove-Tree $target; Sync-Disk
        New-Item -ItemType Directory -Path $target | Out-Null
        $restore.borg += (Measure-Native borg @('extract', "$(Get-Repo borg $Runs)::second-$Runs") -WorkingDirectory $target).Seconds
        $restoredAllocated.borg = Get-AllocatedBytes (Find-RestoredImage $target)
    }
    Remove-Tree $target
    Write-Stage "  run $run done"
}
$name = 'Restore'
foreach ($tool in 'VmQuiesce', $plainTool, 'cp', 'restic', 'borg') {
    $why = switch ($tool) { 'VmQuiesce' { $restoreReason } $plainTool { $restoreReason } 'cp' { $null } default { $toolReason[$tool] } }
    $note = if ($restoredAllocated.ContainsKey($tool)) { '{0:N2} GiB allocated (original {1:N2} GiB)' -f ($restoredAllocated[$tool] / 1GB), ($imageAllocated / 1GB) }
    Add-Figure @{ Name = $name; Tool = $(if ($tool -eq 'cp') { 'cp --sparse=always' } else { $tool }); Unit = 's'; Values = $restore[$tool]; Bytes = $imageSize; NotMeasured = $why; Note = $note }
}
Add-Figure @{ Name = $name; Tool = $warmCp; Unit = 's'; Values = $restore.cpWarm; Bytes = $imageSize; Note = 'the same, at once after deleting a first copy: no host page faults' }
foreach ($tool in 'VmQuiesce', 'VmQuiesce-plain', 'restic', 'borg') { Remove-Tree (Get-Repo $tool $Runs) }
Remove-Tree $smallChunkRepo

# --- Peak memory -----------------------------------------------------------------------------------
Write-Stage 'Peak memory: VmHWM of the backing-up pwsh minus an idle pwsh with the module loaded'
$idle = @(1..$Runs | ForEach-Object { (Invoke-VmQuiesceOperation Idle).peakResidentBytes })
$idleMedian = (Get-BenchStats -Values $idle).Median
Add-Figure @{ Name = 'Peak memory of an idle pwsh with the module'; Tool = 'VmQuiesce'; Unit = 'MiB'; Values = @($idle | ForEach-Object { $_ / 1MB }) }
$memoryImages = @(
    @{ Label = '1 GiB image'; Size = 1GB; Holes = 0.30; Random = 0.45; Note = 'realistic content' }
    @{ Label = '8 GiB image'; Size = 8GB; Holes = 0.90; Random = 0.06; Note = 'sparse-mostly: 90% holes, 6% random, 4% repeated (time budget)' }
)
foreach ($m in $memoryImages) {
    $path = Join-Path $work 'memory.raw'
    $null = New-BenchImage -Path $path -Size $m.Size -HoleShare $m.Holes -RandomShare $m.Random -Seed 7
    $above = @()
    for ($run = 1; $run -le $MemoryRuns; $run++) {
        $repo = Join-Path $work 'repo-memory'
        $r = Invoke-VmQuiesceOperation Backup @{ Image = $path; Repository = $repo }
        $above += ($r.peakResidentBytes - $idleMedian) / 1MB
        Remove-Tree $repo
    }
    Remove-Tree $path
    Add-Figure @{ Name = "Peak memory above idle, $($m.Label)"; Tool = 'VmQuiesce'; Unit = 'MiB'; Values = $above; Note = $m.Note }
}
Add-Figure @{ Name = "Peak memory above idle, $ImageGiB GiB image"; Tool = 'VmQuiesce'; Unit = 'MiB'; Values = @($vmqPeak | ForEach-Object { ($_ - $idleMedian) / 1MB }); Note = 'the full-backup runs' }

# --- S3 object storage (issue 19) -----------------------------------------------------------------
function Start-BenchObjectStorage {
    <#
    A real Ceph RGW (tests/s3/start-rgw.sh) on free loopback ports, its data in a sparse bluestore file under the
    work folder (memstore would hold every tool's copies in RAM). Returns its settings, or a reason it cannot run.
    #>
    if (-not $IsLinux) { return @{ Unavailable = 'the S3 test server (Ceph RGW) runs on Linux only' } }
    $script = Join-Path $PSScriptRoot '../s3/start-rgw.sh'
    $installed = & /bin/bash $script --install 2>&1
    if ($LASTEXITCODE -ne 0) { return @{ Unavailable = "Ceph RGW is not installed: $($installed -join ' ')" } }
    do {
        $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0); $listener.Start(); $port = $listener.LocalEndpoint.Port; $listener.Stop()
        $next = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, $port + 1)
        try { $next.Start(); $next.Stop(); $free = $true } catch { $free = $false }
    } until ($free)
    $folder = Join-Path $work 'rgw'
    $env:RGW_STORE = 'bluestore'; $env:RGW_STORE_BYTES = "$(4 * $imageSize + 8GB)"; $env:RGW_OWNER_PID = "$PID"
    try { $output = & /bin/bash $script $folder $port 2>&1 }
    finally { Remove-Item Env:RGW_STORE, Env:RGW_STORE_BYTES, Env:RGW_OWNER_PID }
    if ($LASTEXITCODE -ne 0) { return @{ Unavailable = "start-rgw.sh failed (exit code $LASTEXITCODE): $($output | Select-Object -Last 3)" } }
    $settings = @{ Folder = $folder }
    Get-Content (Join-Path $folder 'env') | ForEach-Object { $key, $value = $_ -split '=', 2; $settings[$key] = $value }
    return $settings
}

function Measure-ObjectStorage {
    <#
    The bench image backed up to and restored from the same RGW by VmQuiesce (s3://), restic (s3:) and rclone
    copyto, each run into a fresh prefix; then the peak memory of S3 backups of a 1 and an 8 GiB image.
    Credentials and the endpoint reach every tool through the environment only.
    #>
    $s3Figures = @(@('S3 full backup', 'VmQuiesce'), @('S3 full backup', 'restic'), @('S3 full backup', 'rclone copyto'),
        @('S3 restore', 'VmQuiesce'), @('S3 restore', 'restic'), @('S3 restore', 'rclone copyto'),
        @('Peak memory above idle, S3 backup, 1 GiB image', 'VmQuiesce'), @('Peak memory above idle, S3 backup, 8 GiB image', 'VmQuiesce'))
    $rgw = Start-BenchObjectStorage
    $why = $rgw['Unavailable']
    if (-not $why -and -not (Get-Command rclone -ErrorAction Ignore)) { $why = $toolReason['rclone'] }
    if ($why) {
        foreach ($pair in $s3Figures) { Add-Figure @{ Name = $pair[0]; Tool = $pair[1]; Unit = 's'; NotMeasured = $why } }
        return
    }
    Write-Stage "S3: full backup and restore on a real Ceph RGW (bluestore) at $($rgw.S3_ENDPOINT), $Runs runs per tool, each into a fresh prefix"
    $saved = @{}
    $s3Environment = @{
        AWS_ACCESS_KEY_ID = $rgw.AWS_ACCESS_KEY_ID; AWS_SECRET_ACCESS_KEY = $rgw.AWS_SECRET_ACCESS_KEY; AWS_DEFAULT_REGION = $rgw.AWS_DEFAULT_REGION
        AWS_ENDPOINT_URL_S3 = $rgw.S3_ENDPOINT
        # The endpoint is plain http on loopback; a CA bundle from the host's environment only breaks rclone's client.
        AWS_CA_BUNDLE = $null
        RCLONE_CONFIG_RGW_TYPE = 's3'; RCLONE_CONFIG_RGW_PROVIDER = 'Ceph'; RCLONE_CONFIG_RGW_ENV_AUTH = 'true'
        RCLONE_CONFIG_RGW_ENDPOINT = $rgw.S3_ENDPOINT; RCLONE_CONFIG_RGW_FORCE_PATH_STYLE = 'true'
    }
    foreach ($key in $s3Environment.Keys) { $saved[$key] = [Environment]::GetEnvironmentVariable($key); [Environment]::SetEnvironmentVariable($key, $s3Environment[$key]) }
    $bucket = 'bench'
    try {
        $null = Measure-Native rclone @('mkdir', "rgw:$bucket")
        $times = @{ VmQuiesce = @(); restic = @(); rclone = @() }
        $storedS3 = @{}
        for ($run = 1; $run -le $Runs; $run++) {
            $keep = $run -eq $Runs
            Read-IntoCache $image; Sync-Disk
            $r = Invoke-VmQuiesceOperation Backup @{ Image = $image; Repository = "s3://$bucket/vmquiesce-$run" }
            $times.VmQuiesce += $r.seconds
            if ($hasRestic) {
                $repo = "s3:$($rgw.S3_ENDPOINT)/$bucket/restic-$run"
                $null = Measure-Native restic @('init', '--quiet', '--repo', $repo)
                $times.restic += (Measure-Native restic @('backup', '--quiet', '--repo', $repo, $image)).Seconds
            }
            $times.rclone += (Measure-Native rclone @('copyto', $image, "rgw:$bucket/rclone-$run/image.raw")).Seconds
            foreach ($tool in 'vmquiesce', 'restic', 'rclone') {
                $size = @((Measure-Native rclone @('size', '--json', "rgw:$bucket/$tool-$run")).Output | Where-Object { "$_".StartsWith('{') })[-1] | ConvertFrom-Json
                $storedS3[$tool] = $size.bytes
                if (-not $keep) { $null = Measure-Native rclone @('purge', "rgw:$bucket/$tool-$run") }
            }
            Write-Stage "  run $run done"
        }
        $name = 'S3 full backup'
        Add-Figure @{ Name = $name; Tool = 'VmQuiesce'; Unit = 's'; Values = $times.VmQuiesce; Bytes = $imageSize; Note = ('s3://, encrypted; stored {0:N2} GiB' -f ($storedS3.vmquiesce / 1GB)) }
        Add-Figure @{ Name = $name; Tool = 'restic'; Unit = 's'; Values = $times.restic; Bytes = $imageSize; NotMeasured = $toolReason['restic']; Note = $(if ($hasRestic) { 'restic -r s3:; stored {0:N2} GiB' -f ($storedS3.restic / 1GB) }) }
        Add-Figure @{ Name = $name; Tool = 'rclone copyto'; Unit = 's'; Values = $times.rclone; Bytes = $imageSize; Note = ('the image file as one object (holes uploaded as zeroes); stored {0:N2} GiB' -f ($storedS3.rclone / 1GB)) }

        $restoreTimes = @{ VmQuiesce = @(); restic = @(); rclone = @() }
        $allocated = @{}
        $target = Join-Path $work 'restored-s3'
        for ($run = 1; $run -le $Runs; $run++) {
            Remove-Tree $target; Sync-Disk
            $restoreTimes.VmQuiesce += (Invoke-VmQuiesceOperation Restore @{ Repository = "s3://$bucket/vmquiesce-$Runs"; Destination = $target }).seconds
            $allocated.VmQuiesce = Get-AllocatedBytes (Find-RestoredImage $target)
            if ($hasRestic) {
                Remove-Tree $target; Sync-Disk
                $restoreTimes.restic += (Measure-Native restic @('restore', '--quiet', '--repo', "s3:$($rgw.S3_ENDPOINT)/$bucket/restic-$Runs", 'latest', '--target', $target)).Seconds
                $allocated.restic = Get-AllocatedBytes (Find-RestoredImage $target)
            }
            Remove-Tree $target; Sync-Disk
            $restoreTimes.rclone += (Measure-Native rclone @('copyto', "rgw:$bucket/rclone-$Runs/image.raw", (Join-Path $target 'image.raw'))).Seconds
            $allocated.rclone = Get-AllocatedBytes (Join-Path $target 'image.raw')
            Remove-Tree $target
            Write-Stage "  restore run $run done"
        }
        $imageAllocatedS3 = Get-AllocatedBytes $image
        foreach ($tool in 'VmQuiesce', 'restic', 'rclone') {
            $shown = if ($tool -eq 'rclone') { 'rclone copyto' } else { $tool }
            $note = if ($allocated.ContainsKey($tool)) { '{0:N2} GiB allocated (original {1:N2} GiB)' -f ($allocated[$tool] / 1GB), ($imageAllocatedS3 / 1GB) }
            Add-Figure @{ Name = 'S3 restore'; Tool = $shown; Unit = 's'; Values = $restoreTimes[$tool]; Bytes = $imageSize; NotMeasured = $(if ($tool -eq 'restic') { $toolReason['restic'] }); Note = $note }
        }
        $script:s3RestoredAllocatedShare = $allocated.VmQuiesce / $imageAllocatedS3
        foreach ($tool in 'vmquiesce', 'restic', 'rclone') { $null = Measure-Native rclone @('purge', "rgw:$bucket/$tool-$Runs") }

        Write-Stage 'S3: peak memory of backups of a 1 and an 8 GiB image'
        foreach ($m in $memoryImages) {
            $path = Join-Path $work 'memory.raw'
            $null = New-BenchImage -Path $path -Size $m.Size -HoleShare $m.Holes -RandomShare $m.Random -Seed 7
            $above = @()
            for ($run = 1; $run -le $MemoryRuns; $run++) {
                $r = Invoke-VmQuiesceOperation Backup @{ Image = $path; Repository = "s3://$bucket/memory-$run" }
                $above += ($r.peakResidentBytes - $idleMedian) / 1MB
                $null = Measure-Native rclone @('purge', "rgw:$bucket/memory-$run")
            }
            Remove-Tree $path
            Add-Figure @{ Name = "Peak memory above idle, S3 backup, $($m.Label)"; Tool = 'VmQuiesce'; Unit = 'MiB'; Values = $above; Note = $m.Note }
        }
    }
    finally {
        foreach ($key in $saved.Keys) { [Environment]::SetEnvironmentVariable($key, $saved[$key]) }
        & /bin/bash (Join-Path $PSScriptRoot '../s3/stop-rgw.sh') $rgw.Folder --purge 2>&1 | Out-Null
    }
}
Measure-ObjectStorage

# --- Chunk codecs ----------------------------------------------------------------------------------
# The image above is random data and holes: nothing in it compresses. The codecs are compared on 256 MiB of
# log- and record-like chunks instead, the compressible share a real image has, in this process (one thread).
Write-Stage "Chunk codecs on 256 MiB of compressible chunks: zstd (written now) vs Deflate (written before), $Runs runs"
$zstdPath = Join-Path (Split-Path $ModulePath) 'bin/net8.0/ZstdSharp.dll'
$codecRuns = @(1..$Runs | ForEach-Object { Measure-ChunkCodec -ZstdPath $zstdPath -ZstdLevel 1 })
foreach ($codec in @($codecRuns | ForEach-Object Codec | Select-Object -Unique)) {
    $runsOf = @($codecRuns | Where-Object Codec -eq $codec)
    $sample = $runsOf[0].OriginalBytes
    Add-Figure @{ Name = 'Compress, compressible chunks'; Tool = $codec; Unit = 's'; Values = @($runsOf.CompressSeconds); Bytes = $sample }
    Add-Figure @{ Name = 'Decompress, compressible chunks'; Tool = $codec; Unit = 's'; Values = @($runsOf.DecompressSeconds); Bytes = $sample }
    Add-Figure @{ Name = 'Compression ratio, compressible chunks'; Tool = $codec; Unit = 'x'; Values = @($runsOf.Ratio); Note = ('{0:N1} MiB stored of {1:N0} MiB' -f ($runsOf[0].StoredBytes / 1MB), ($sample / 1MB)) }
}

# --- Module import ---------------------------------------------------------------------------------
Write-Stage "Module import, $ImportRuns fresh processes"
$import = @(1..$ImportRuns | ForEach-Object { (Invoke-VmQuiesceOperation Import).importSeconds })
Add-Figure @{ Name = 'Module import (fresh pwsh)'; Tool = 'VmQuiesce'; Unit = 's'; Values = $import }

# --- Real guest, change tracking (issue 20) -------------------------------------------------------
$trackedName = 'Backup after 1% rewritten in the guest (real QEMU guest, TCG)'
$trackedTool = 'VmQuiesce -ChangeTracking'
$wholeTool = 'VmQuiesce, whole image'
# The same whole-image backup into a repository of the chunk size a change-tracked backup gives the repository it
# creates (BackupRepository.ChangeTrackedChunkSize): the default (4 MiB) one is what the ratios compare with, this one
# shows the chunk size is not what wins.
$trackedChunkSize = 512KB
$wholeSmallTool = "VmQuiesce, whole image, $($trackedChunkSize / 1KB) KiB chunks"
$trackedBytesName = 'Bytes read from the disk by that backup (real QEMU guest)'
$trackedStoredName = 'Bytes stored by that backup (real QEMU guest)'
$trackedFrozenName = 'Frozen window with -ChangeTracking (real QEMU guest, TCG)'

function Measure-TrackedGuestBackup {
    <#
    A running guest whose ext4 data disk (qcow2, ImageGiB) holds the bench's realistic content as one file;
    1% of it rewritten in the guest; then one change-tracked backup, one default (whole image) backup and
    one borg create of the image, each into a repository that already holds the point before the change (the
    tracked one made by the first change-tracked backup, so with 512 KiB chunks; the whole-image ones with 4 MiB and 512 KiB).
    Runs rounds of that, like the other figures. From the second on, an untimed change-tracked backup first takes in
    what the whole-image backups' overlay commits wrote into the disk (and so into the checkpoint's bitmap). Each round
    ends with TrackedPerRound - 1 more timed change-tracked backups, each after its own 1% rewrite.
    #>
    $figureNames = @(@($trackedName, $trackedTool), @($trackedName, $wholeTool), @($trackedName, $wholeSmallTool), @($trackedName, 'borg'), @($trackedBytesName, $trackedTool),
        @($trackedStoredName, $trackedTool), @($trackedStoredName, $wholeTool), @($trackedStoredName, $wholeSmallTool), @($trackedStoredName, 'borg'), @($trackedFrozenName, 'VmQuiesce'))
    if ($guestReason) {
        foreach ($pair in $figureNames) { Add-Figure @{ Name = $pair[0]; Tool = $pair[1]; Unit = 's'; NotMeasured = $guestReason } }
        return
    }
    Write-Stage "Real guest: backups of a $ImageGiB GiB data disk after 1% rewritten in the guest"
    $content = Join-Path $work 'guest-content'
    New-Item -ItemType Directory -Path $content -Force | Out-Null
    # The file fills 90% of the disk: ext4 needs the rest for its own metadata.
    $null = New-BenchImage -Path (Join-Path $content 'data.img') -Size ([long] [math]::Floor($imageSize * 0.9 / 1MB) * 1MB)
    $guest = Start-TestGuest -DiskSizeMB ($ImageGiB * 1024) -ContentFolder $content -TimeoutSeconds 600
    Remove-Tree $content
    try {
        $disk = $guest.DiskPaths[0]
        $sockets = @{ QmpSocket = $guest.QmpSocketPath; AgentSocket = $guest.AgentSocketPath }
        $repos = @{ $trackedTool = (Join-Path $work 'repo-guest-tracked'); $wholeTool = (Join-Path $work 'repo-guest-whole'); $wholeSmallTool = (Join-Path $work 'repo-guest-whole-1m'); borg = (Join-Path $work 'borg-guest') }
        $chunkSizes = @{ $wholeSmallTool = $trackedChunkSize }
        # The points before the change. No default backup runs between the two tracked ones: its overlay
        # commit would write into the disk, and so into the checkpoint's bitmap.
        foreach ($tool in $wholeTool, $wholeSmallTool) { $null = Invoke-VmQuiesceOperation GuestBackups ($sockets + @{ Count = 1; Repository = $repos[$tool]; ChunkSize = [int] $chunkSizes[$tool] }) }
        if ($hasBorg) {
            $null = Measure-Native borg @('init', '--encryption=none', $repos.borg)
            $null = Measure-Native borg @('create', "$($repos.borg)::before", $disk)
        }
        $seconds = @{}; $stored = @{}; $read = [Collections.Generic.List[double]]::new(); $how = [Collections.Generic.List[string]]::new()
        foreach ($tool in $trackedTool, $wholeTool, $wholeSmallTool, 'borg') { $seconds[$tool] = [Collections.Generic.List[double]]::new(); $stored[$tool] = [Collections.Generic.List[double]]::new() }
        for ($run = 0; $run -lt $Runs; $run++) {
            $null = Invoke-VmQuiesceOperation GuestBackups ($sockets + @{ Count = 1; Repository = $repos[$trackedTool]; ChangeTracking = 'On' })
            $written = (Invoke-VmQuiesceOperation GuestRewrite ($sockets + @{ RewriteBytes = [long] ($imageSize * 0.01) })).rewrittenBytes
            foreach ($tool in $trackedTool, $wholeTool, $wholeSmallTool, 'borg') {
                if ($tool -eq 'borg' -and -not $hasBorg) { continue }
                Read-IntoCache $disk; Sync-Disk
                $before = Get-TreeBytes $repos[$tool]
                if ($tool -eq 'borg') { $seconds.borg.Add((Measure-Native borg @('create', "$($repos.borg)::after-$run", $disk)).Seconds) }
                else {
                    $r = Invoke-VmQuiesceOperation GuestBackups ($sockets + @{ Count = 1; Repository = $repos[$tool]; ChunkSize = [int] $chunkSizes[$tool]; ChangeTracking = $(if ($tool -eq $trackedTool) { 'On' } else { 'Off' }) })
                    $seconds[$tool].Add($r.seconds)
                    if ($tool -eq $trackedTool) { $read.Add($r.bytesRead / 1MB); $how.Add($r.changeTracking) }
                }
                $stored[$tool].Add(((Get-TreeBytes $repos[$tool]) - $before) / 1MB)
            }
            # More timed change-tracked backups, each after its own 1% rewrite; an untimed one first takes in what the
            # whole-image backups' overlay commits wrote.
            if ($TrackedPerRound -gt 1) { $null = Invoke-VmQuiesceOperation GuestBackups ($sockets + @{ Count = 1; Repository = $repos[$trackedTool]; ChangeTracking = 'On' }) }
            for ($extra = 1; $extra -lt $TrackedPerRound; $extra++) {
                $null = Invoke-VmQuiesceOperation GuestRewrite ($sockets + @{ RewriteBytes = [long] ($imageSize * 0.01) })
                Read-IntoCache $disk; Sync-Disk
                $r = Invoke-VmQuiesceOperation GuestBackups ($sockets + @{ Count = 1; Repository = $repos[$trackedTool]; ChangeTracking = 'On' })
                $seconds[$trackedTool].Add($r.seconds); $read.Add($r.bytesRead / 1MB); $how.Add($r.changeTracking)
            }
        }
        # The frozen window of change-tracked backups (bitmaps and the fleecing node are set inside it).
        $frozen = (Invoke-VmQuiesceOperation GuestBackups ($sockets + @{ Count = $GuestBackups; Repository = $repos[$trackedTool]; ChangeTracking = 'On' })).frozenMilliseconds
    }
    finally { $guest | Stop-TestGuest }
    $noBorg = $toolReason['borg']
    Add-Figure @{ Name = $trackedName; Tool = $trackedTool; Unit = 's'; Values = @($seconds[$trackedTool]); Bytes = $imageSize; Note = "read as $(@($how | Select-Object -Unique) -join ', ')" }
    Add-Figure @{ Name = $trackedName; Tool = $wholeTool; Unit = 's'; Values = @($seconds[$wholeTool]); Bytes = $imageSize; Note = 'the default QEMU backup: an overlay, then the image file read and hashed' }
    Add-Figure @{ Name = $trackedName; Tool = $wholeSmallTool; Unit = 's'; Values = @($seconds[$wholeSmallTool]); Bytes = $imageSize; Note = "the same, into a repository of $($trackedChunkSize / 1KB) KiB chunks" }
    Add-Figure @{ Name = $trackedName; Tool = 'borg'; Unit = 's'; Values = @($seconds['borg']); Bytes = $imageSize; NotMeasured = $noBorg; Note = 'borg create of the qcow2 image (not quiesced)' }
    Add-Figure @{ Name = $trackedBytesName; Tool = $trackedTool; Unit = 'MiB'; Values = @($read); Note = ('the guest rewrote {0:N0} MiB' -f ($written / 1MB)) }
    $script:trackedWrittenBytes = $written
    foreach ($tool in $trackedTool, $wholeTool, $wholeSmallTool, 'borg') {
        Add-Figure @{ Name = $trackedStoredName; Tool = $tool; Unit = 'MiB'; Values = @($stored[$tool]); NotMeasured = $(if ($tool -eq 'borg') { $noBorg }); Note = 'repository growth' }
    }
    Add-Figure @{ Name = $trackedFrozenName; Tool = 'VmQuiesce'; Unit = 'ms'; Values = @($frozen); Note = "$GuestBackups change-tracked backups of the $ImageGiB GiB disk" }
}

# --- Real guest ------------------------------------------------------------------------------------
Write-Stage "Real guest: $GuestBackups quiesced backups of a QEMU guest"
$guestReason = $null
$probe = Invoke-VmQuiesceOperation GuestBackups @{ Count = 0 }
if ($probe.PSObject.Properties['notMeasured']) { $guestReason = $probe.notMeasured }
if (-not $guestReason) {
    & (Join-Path $PSScriptRoot '../guest/Build-TestGuest.ps1') -OutputPath $GuestPath | Out-Null
    $env:VMQUIESCE_TEST_GUEST = [IO.Path]::GetFullPath($GuestPath)
    Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1') -Force
    $guestReason = Get-TestGuestUnavailableReason
}
if (-not $guestReason) {
    $guest = Start-TestGuest
    try {
        $r = Invoke-VmQuiesceOperation GuestBackups @{ Count = $GuestBackups; QmpSocket = $guest.QmpSocketPath; AgentSocket = $guest.AgentSocketPath; Repository = (Join-Path $work 'repo-guest') }
    }
    finally { $guest | Stop-TestGuest }
    Add-Figure @{ Name = 'Frozen window (real QEMU guest, TCG)'; Tool = 'VmQuiesce'; Unit = 'ms'; Values = @($r.frozenMilliseconds); Note = "$GuestBackups quiesced backups, 64 MiB qcow2 data disk" }
    $toThaw = @($r.invokeToThawMilliseconds)
    Add-Figure @{ Name = 'Invoke to thaw (real QEMU guest, TCG)'; Tool = 'VmQuiesce'; Unit = 'ms'; Values = $toThaw; NotMeasured = $(if (-not $toThaw) { '-PostThawScript never ran with the QEMU source, so the moment of the thaw cannot be seen from the host' }) }
}
else {
    Add-Figure @{ Name = 'Frozen window (real QEMU guest, TCG)'; Tool = 'VmQuiesce'; Unit = 'ms'; NotMeasured = $guestReason }
    Add-Figure @{ Name = 'Invoke to thaw (real QEMU guest, TCG)'; Tool = 'VmQuiesce'; Unit = 'ms'; NotMeasured = $guestReason }
}
Measure-TrackedGuestBackup

# --- From the repository (issue 21) ----------------------------------------------------------------
Write-Stage "From the repository: a point of the test guest with a $($RestorePointGiB -join ', ') GiB data disk (3/4 in one file), started at once vs restored then booted; one file back"
$fromRepository = @{}
foreach ($size in $RestorePointGiB) {
    if ($guestReason) { break }
    $repo = Join-Path $work "repo-point-$size"
    # Three quarters of the disk in one file of the bench image's mix (holes, random, repeated runs), made on the host.
    $content = Join-Path $work 'guest-content'
    New-Item -ItemType Directory -Path $content | Out-Null
    $null = New-BenchImage -Path (Join-Path $content 'data.bin') -Size ($size * 768MB) -Seed 21
    try { $guest = Start-TestGuest -DiskSizeMB ($size * 1024) -ContentFolder $content -TimeoutSeconds 300 }
    finally { Remove-Tree $content }
    try { $null = Invoke-VmQuiesceOperation GuestPoint @{ QmpSocket = $guest.QmpSocketPath; AgentSocket = $guest.AgentSocketPath; Repository = $repo } }
    finally { $guest | Stop-TestGuest }
    $target = Join-Path $work 'from-repository'
    $fromRepository[$size] = Invoke-VmQuiesceOperation FromRepository @{ Repository = $repo; Destination = $target; GuestPath = $env:VMQUIESCE_TEST_GUEST }
    Remove-Tree $target; Remove-Tree $repo
}
function Get-Seconds([string] $Property) { if ($r) { @($r.$Property) } else { @() } }
foreach ($size in $RestorePointGiB) {
    $r = $fromRepository[$size]
    $why = if ($guestReason) { $guestReason }
    $point = "$size GiB point (test guest, TCG)"
    Add-Figure @{ Name = "Start to guest agent answering, $point"; Tool = 'Start-VmInstantRestore'; Unit = 's'; Values = (Get-Seconds instantToAgentSeconds); NotMeasured = $why }
    Add-Figure @{ Name = "Start to guest agent answering, $point"; Tool = 'Restore-VmSnapshot, then boot'; Unit = 's'; Values = (Get-Seconds restoreToAgentSeconds); NotMeasured = $why }
    Add-Figure @{ Name = "Disks local, $point"; Tool = 'Start-VmInstantRestore'; Unit = 's'; Values = (Get-Seconds instantToLocalSeconds); NotMeasured = $why; Note = $(if ($r) { 'blockdev-mirror while the guest boots and runs, {0:N0} MiB mirrored' -f ($r.streamedBytes / 1MB) }) }
    Add-Figure @{ Name = "Disks local, $point"; Tool = 'Restore-VmSnapshot'; Unit = 's'; Values = (Get-Seconds restoreSeconds); NotMeasured = $why }
    Add-Figure @{ Name = "One small file back, $point"; Tool = 'Restore-VmBackupItem'; Unit = 's'; Values = (Get-Seconds itemSeconds); NotMeasured = $why; Note = 'mounted read-only from the repository, copied, unmounted' }
}
Remove-Tree $work

# --- Targets ---------------------------------------------------------------------------------------
function Get-Figure { param([string] $Name, [string] $Tool) Find-BenchFigure -Figures $figures -Name $Name -Tool $Tool }
function Add-RatioCheck {
    param([string] $Target, [object] $Numerator, [object] $Denominator, [double] $Limit, [string] $Comparison = '<')
    $checks.Add((New-BenchCheck -Target $Target -Value (Get-BenchRatio $Numerator $Denominator) -Limit $Limit -Comparison $Comparison -NotMeasured (Get-NotMeasuredReason @($Numerator, $Denominator))))
}
$checks = [Collections.Generic.List[object]]::new()
$vmqFull = Get-Figure 'Full backup' VmQuiesce
Add-RatioCheck 'Full backup time / restic' $vmqFull (Get-Figure 'Full backup' restic) 1
Add-RatioCheck 'Full backup time / borg' $vmqFull (Get-Figure 'Full backup' borg) 1
Add-RatioCheck 'Full backup time / cp --sparse=always' $vmqFull (Get-Figure 'Full backup' 'cp --sparse=always') 1.2 '<='
Add-RatioCheck 'Full backup time / cp --sparse=always, memory warm' $vmqFull (Get-Figure 'Full backup' $warmCp) 1.2 '<='
Add-RatioCheck 'Backup after 1% change, time / borg' (Get-Figure 'Backup after 1% change' VmQuiesce) (Get-Figure 'Backup after 1% change' borg) 0.25
foreach ($tool in 'VmQuiesce', $smallChunkTool) {
    $storedFigure = Get-Figure 'Bytes stored by that backup' $tool
    $chunks = if ($tool -eq 'VmQuiesce') { '4 MiB chunks' } else { '1 MiB chunks' }
    $checks.Add((New-BenchCheck -Target "Backup after 1% change, stored / image size (""about 1%""), $chunks" -Value $(if (-not $storedFigure.PSObject.Properties['notMeasured']) { $storedFigure.median * 1MB / $imageSize * 100 }) -Limit 2 -Unit '%' -NotMeasured (Get-NotMeasuredReason @($storedFigure))))
}
foreach ($label in '1 GiB image', '8 GiB image') {
    $f = Get-Figure "Peak memory above idle, $label" VmQuiesce
    $checks.Add((New-BenchCheck -Target "Peak memory above idle pwsh, $label" -Value $f.max -Limit 64 -Comparison '<' -Unit 'MiB'))
}
$small = Get-Figure 'Peak memory above idle, 1 GiB image' VmQuiesce
$large = Get-Figure 'Peak memory above idle, 8 GiB image' VmQuiesce
$checks.Add((New-BenchCheck -Target 'Peak memory does not grow with size: 8 GiB minus 1 GiB (medians)' -Value ($large.median - $small.median) -Limit 8 -Unit 'MiB'))
# Issue 19: against the same RGW, in the same run.
Add-RatioCheck 'S3 full backup time / restic -r s3:' (Get-Figure 'S3 full backup' VmQuiesce) (Get-Figure 'S3 full backup' restic) 1
Add-RatioCheck 'S3 full backup time / rclone copyto' (Get-Figure 'S3 full backup' VmQuiesce) (Get-Figure 'S3 full backup' 'rclone copyto') 1
Add-RatioCheck 'S3 restore time / restic restore' (Get-Figure 'S3 restore' VmQuiesce) (Get-Figure 'S3 restore' restic) 1
$s3Restore = Get-Figure 'S3 restore' VmQuiesce
$checks.Add((New-BenchCheck -Target 'S3 restored image allocated / original allocated (stays sparse)' -Value $(if (-not $s3Restore.PSObject.Properties['notMeasured']) { $s3RestoredAllocatedShare }) -Limit 1.01 -NotMeasured (Get-NotMeasuredReason @($s3Restore))))
foreach ($label in '1 GiB image', '8 GiB image') {
    $f = Get-Figure "Peak memory above idle, S3 backup, $label" VmQuiesce
    $checks.Add((New-BenchCheck -Target "Peak memory above idle pwsh, S3 backup, $label" -Value $(if (-not $f.PSObject.Properties['notMeasured']) { $f.max }) -Limit 96 -Comparison '<' -Unit 'MiB' -NotMeasured (Get-NotMeasuredReason @($f))))
}
$vmqRestore = Get-Figure 'Restore' VmQuiesce
Add-RatioCheck 'Restore time / cp --sparse=always' $vmqRestore (Get-Figure 'Restore' 'cp --sparse=always') 1.2 '<='
Add-RatioCheck 'Restore time / cp --sparse=always, memory warm' $vmqRestore (Get-Figure 'Restore' $warmCp) 1.2 '<='
Add-RatioCheck 'Restore time / restic restore' $vmqRestore (Get-Figure 'Restore' restic) 1
Add-RatioCheck 'Restore time / borg extract' $vmqRestore (Get-Figure 'Restore' borg) 1
foreach ($operation in 'Full backup', 'Backup after 1% change', 'Restore') {
    Add-RatioCheck "$operation time, encrypted / unencrypted repository" (Get-Figure $operation VmQuiesce) (Get-Figure $operation $plainTool) 1.15 '<='
}
# Issue 20: change tracking, against the same change in the same guest.
$incremental = Get-Figure $trackedName $trackedTool
Add-RatioCheck 'Backup after 1% rewritten in a guest, time, -ChangeTracking / borg' $incremental (Get-Figure $trackedName borg) 0.05 '<='
Add-RatioCheck 'Backup after 1% rewritten in a guest, time, -ChangeTracking / whole image' $incremental (Get-Figure $trackedName $wholeTool) 0.2 '<='
$readFigure = Get-Figure $trackedBytesName $trackedTool
$checks.Add((New-BenchCheck -Target 'Bytes a change-tracked backup read / bytes the guest wrote' -Value $(if (-not $readFigure.PSObject.Properties['notMeasured']) { $readFigure.median * 1MB / $trackedWrittenBytes }) -Limit 2 -NotMeasured (Get-NotMeasuredReason @($readFigure))))
Add-RatioCheck 'Bytes stored after 1% rewritten in a guest, -ChangeTracking / whole image' (Get-Figure $trackedStoredName $trackedTool) (Get-Figure $trackedStoredName $wholeTool) 1 '<='
$trackedFrozen = Get-Figure $trackedFrozenName VmQuiesce
$checks.Add((New-BenchCheck -Target 'Frozen window with -ChangeTracking, median' -Value $(if (-not $trackedFrozen.PSObject.Properties['notMeasured']) { $trackedFrozen.median }) -Limit 50 -Comparison '<' -Unit 'ms' -NotMeasured (Get-NotMeasuredReason @($trackedFrozen))))
$pointGiB = if ($RestorePointGiB -contains 4) { 4 } else { $RestorePointGiB[0] }
$point = "$pointGiB GiB point (test guest, TCG)"
Add-RatioCheck "Instant restore to agent / full restore then boot, $point" (Get-Figure "Start to guest agent answering, $point" 'Start-VmInstantRestore') (Get-Figure "Start to guest agent answering, $point" 'Restore-VmSnapshot, then boot') 0.25 '<='
Add-RatioCheck "Background copy time / full restore time (copy rate at least 0.8x the restore's), $point" (Get-Figure "Disks local, $point" 'Start-VmInstantRestore') (Get-Figure "Disks local, $point" 'Restore-VmSnapshot') 1.25 '<='
$smallest = "$(($RestorePointGiB | Measure-Object -Minimum).Minimum) GiB point (test guest, TCG)"
$largest = "$(($RestorePointGiB | Measure-Object -Maximum).Maximum) GiB point (test guest, TCG)"
Add-RatioCheck "Instant restore to agent, largest / smallest point (independent of size)" (Get-Figure "Start to guest agent answering, $largest" 'Start-VmInstantRestore') (Get-Figure "Start to guest agent answering, $smallest" 'Start-VmInstantRestore') 1.5 '<='
$itemFigure = Get-Figure "One small file back, $point" 'Restore-VmBackupItem'
$checks.Add((New-BenchCheck -Target "One small file back, $point" -Value $(if (-not $itemFigure.PSObject.Properties['notMeasured']) { $itemFigure.median }) -Limit 5 -Unit 's' -NotMeasured (Get-NotMeasuredReason @($itemFigure))))
$checks.Add((New-BenchCheck -Target 'Restored image allocated / original allocated (stays sparse)' -Value $(if ($restoredAllocated.ContainsKey('VmQuiesce')) { $restoredAllocated.VmQuiesce / $imageAllocated }) -Limit 1.01 -NotMeasured $restoreReason))

$notes.Add("Each figure: min / median / max over $Runs runs (peak memory of the 1 and 8 GiB images: $MemoryRuns; module import: $ImportRuns fresh processes; frozen window: $GuestBackups backups of one guest; a change-tracked backup after 1% rewritten in the guest: $($Runs * $TrackedPerRound), $TrackedPerRound a round). Ratios compare medians of the same run.")
$notes.Add(("Image: {0} GiB sparse raw file, {1:N2} GiB allocated; 30% holes, 45% random, 25% copies of random runs, in shuffled runs of 1-16 MiB (seed {2}). 'Backup after 1% change' overwrites 1% of the 1 MiB units, anywhere, with new data." -f $ImageGiB, ($imageInfo.AllocatedBytes / 1GB), $imageInfo.Seed))
$notes.Add('Page cache warm (the image is read once per run; it stays cached) for every tool; `sync` (untimed) between runs; every full backup into a fresh repository. VmQuiesce: a fresh pwsh per run, the cmdlet call timed (module load excluded), progress display off. Baselines: the whole command, defaults otherwise.')
$notes.Add("Tools: $(($toolVersions.Values) -join '; ').")
$results = [ordered]@{
    date     = [DateTime]::UtcNow.ToString('yyyy-MM-dd HH:mm \U\T\C', [cultureinfo]::InvariantCulture)
    machine  = Get-BenchMachine -OutputPath $OutputPath
    image    = $imageFacts
    runs     = $Runs
    notes    = $notes
    figures  = $figures
    checks   = $checks
    benchSeconds = [math]::Round($benchClock.Elapsed.TotalSeconds, 1)
}
$chartProblem = New-BenchChart -Results ([pscustomobject]$results) -Path (Join-Path $OutputPath 'throughput.png')
if ($chartProblem) { $notes.Add("No chart: $chartProblem") }
$markdown = Write-BenchResults -Results ([pscustomobject]$results) -OutputPath $OutputPath
Write-Host ''
Write-Host $markdown
Write-Host ("Bench took {0:N0} s. Results in {1}" -f $benchClock.Elapsed.TotalSeconds, $OutputPath)
