<#
.SYNOPSIS
    Runs one VmQuiesce operation in this (fresh) process and prints one JSON line: the seconds the
    cmdlet call took (module load excluded), the process's peak resident memory (VmHWM), and what
    the operation reports. Invoke-Bench.ps1 starts one process per run.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [ValidateSet('Import', 'Idle', 'Backup', 'Verify', 'Restore', 'GuestBackups', 'GuestRewrite')] [string] $Operation,
    [string] $Image,
    [string] $Repository,
    [string] $Destination,
    [string] $QmpSocket,
    [string] $AgentSocket,
    [int] $Count = 10,
    # GuestBackups: On backs up with -ChangeTracking (reads only what changed since the last tracked point).
    [ValidateSet('Off', 'On')] [string] $ChangeTracking = 'Off',
    # GuestRewrite: rewrite this many bytes of /mnt/data/data.img in the guest, in 1 MiB pieces spread over the file.
    [long] $RewriteBytes = 0,
    # For a backup into a new repository: its chunk size (0: the default).
    [int] $ChunkSize = 0,
    # For a backup into a new repository: Unencrypted makes it the way repositories were made before keys.
    [ValidateSet('Encrypted', 'Unencrypted')] [string] $NewRepository = 'Encrypted'
)
$ErrorActionPreference = 'Stop'
# Progress rendering is the host's business, not the engine's: keep it out of the timings.
$ProgressPreference = 'SilentlyContinue'

function Get-PeakResidentBytes {
    $line = Get-Content /proc/self/status | Where-Object { $_ -like 'VmHWM:*' }
    return [long] ($line -replace '\D', '') * 1KB
}

function Test-Command {
    param([string] $Name)
    return [bool] (Get-Command -Name $Name -Module VmQuiesce -ErrorAction Ignore)
}

$importClock = [Diagnostics.Stopwatch]::StartNew()
Import-Module $ModulePath -Force
$importClock.Stop()
$result = [ordered]@{ operation = $Operation; importSeconds = $importClock.Elapsed.TotalSeconds }
$clock = [Diagnostics.Stopwatch]::new()
switch ($Operation) {
    'Import' { }
    'Idle' { }
    'Backup' {
        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('bench', [string[]] @($Image))
        $clock.Start()
        $chunking = @{}
        if ($ChunkSize -gt 0) { $chunking.ChunkSize = $ChunkSize }
        if ($NewRepository -eq 'Unencrypted' -and -not (Test-Path $Repository)) {
            $clock.Stop()
            $null = [VmQuiesce.Core.Repository.BackupRepository]::OpenOrCreate($Repository, $(if ($ChunkSize -gt 0) { $ChunkSize } else { 4MB }))
            $clock.Start()
        }
        # An unencrypted repository warns on every backup: expected here.
        $point = Invoke-VmQuiescedBackup -Vm $vm -Repository $Repository -Consistency Crash -Confirm:$false -WarningAction SilentlyContinue @chunking
        $clock.Stop()
        $result.id = $point.Id
        $result.storedBytes = $point.StoredBytes
    }
    'Verify' {
        $latest = Get-VmBackup -Repository $Repository -Latest
        $clock.Start()
        $check = Test-VmBackup -Repository $Repository -Id $latest.Id
        $clock.Stop()
        $checks = @($check)
        $result.bytesChecked = ($checks | ForEach-Object BytesChecked | Measure-Object -Sum).Sum
        $result.problems = ($checks | ForEach-Object { @($_.Problems).Count + @($_.FileHashMismatches).Count } | Measure-Object -Sum).Sum
    }
    'Restore' {
        if (-not (Test-Command Restore-VmSnapshot)) {
            $result.notMeasured = 'Restore-VmSnapshot is not in this build (branch restore has not landed)'
            break
        }
        $point = Get-VmBackup -Repository $Repository -Latest
        $clock.Start()
        $null = $point | Restore-VmSnapshot -Destination $Destination -SkipRevert -Force -Confirm:$false
        $clock.Stop()
    }
    'GuestBackups' {
        if (-not (Test-Command Get-BackupVm)) {
            $result.notMeasured = 'Get-BackupVm -QmpSocket is not in this build (branch qemu has not landed)'
            break
        }
        # The post-thaw hook marks the moment the guest runs again: Invoke -> thaw, beside the frozen window.
        $windows = [Collections.Generic.List[double]]::new()
        $toThaw = [Collections.Generic.List[double]]::new()
        $thawHook = { $toThaw.Add($clock.Elapsed.TotalMilliseconds) }
        for ($i = 0; $i -lt $Count; $i++) {
            $vm = Get-BackupVm -QmpSocket $QmpSocket -AgentSocket $AgentSocket -Name 'bench-guest'
            $clock.Restart()
            $point = Invoke-VmQuiescedBackup -Vm $vm -Repository $Repository -Consistency FileSystem -PostThawScript $thawHook -ChangeTracking:($ChangeTracking -eq 'On') -Confirm:$false -WarningAction SilentlyContinue
            $clock.Stop()
            $windows.Add($point.Quiesce.FrozenMilliseconds)
        }
        $result.frozenMilliseconds = $windows
        $result.invokeToThawMilliseconds = $toThaw
        if ($Count -gt 0) {
            # The last backup's own figures (seconds: its time): bytes read from the disks and how (change tracking), bytes new to the repository.
            $result.newChunkBytes = $point.NewChunkBytes
            $result.changeTracking = "$($point.ChangeTracking)"
            $result.bytesRead = ($point.Files | ForEach-Object { if ($_.ChangeTracking) { $_.ChangeTracking.BytesRead } else { $_.Size } } | Measure-Object -Sum).Sum
        }
    }
    'GuestRewrite' {
        # Untimed: 1 MiB of fresh random data at evenly spread offsets of the data file, written through the guest's page cache and synced.
        $pieces = [math]::Max(1, [long] [math]::Floor($RewriteBytes / 1MB))
        $agent = [VmQuiesce.Core.Sources.Qemu.GuestAgentClient]::Connect($AgentSocket, [timespan]::FromSeconds(60))
        try {
            $script = 'n=$(( $(stat -c %s /mnt/data/data.img) / 1048576 )); step=$(( n / ' + $pieces + ' )); i=0; while [ $i -lt ' + $pieces + ' ]; do dd if=/dev/urandom of=/mnt/data/data.img bs=1M count=1 seek=$(( i * step )) conv=notrunc 2>/dev/null || exit 1; i=$(( i + 1 )); done; sync'
            $exec = $agent.Exec('/bin/sh', [string[]] @('-c', $script), [timespan]::FromMinutes(30))
            if (-not $exec.Succeeded) { throw "The rewrite in the guest failed: $($exec.StandardError)" }
        }
        finally { $agent.Dispose() }
        $result.rewrittenBytes = $pieces * 1MB
    }
}
$result.seconds = $clock.Elapsed.TotalSeconds
$result.peakResidentBytes = Get-PeakResidentBytes
$result | ConvertTo-Json -Compress -Depth 4
