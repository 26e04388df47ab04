<#
.SYNOPSIS
    Runs one VmQuiesce operation in this (fresh) process and prints one JSON line: the seconds the
    cmdlet call took (module load excluded), the process's peak resident memory (VmHWM), and what
    the operation reports. Invoke-Bench.ps1 starts one process per run.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [ValidateSet('Import', 'Idle', 'Backup', 'Verify', 'Restore', 'GuestBackups')] [string] $Operation,
    [string] $Image,
    [string] $Repository,
    [string] $Destination,
    [string] $QmpSocket,
    [string] $AgentSocket,
    [int] $Count = 10,
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
            $point = Invoke-VmQuiescedBackup -Vm $vm -Repository $Repository -Consistency FileSystem -PostThawScript $thawHook -Confirm:$false
            $clock.Stop()
            $windows.Add($point.Quiesce.FrozenMilliseconds)
        }
        $result.frozenMilliseconds = $windows
        $result.invokeToThawMilliseconds = $toThaw
    }
}
$result.seconds = $clock.Elapsed.TotalSeconds
$result.peakResidentBytes = Get-PeakResidentBytes
$result | ConvertTo-Json -Compress -Depth 4
