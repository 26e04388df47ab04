<#
.SYNOPSIS
    The chaos run (build.ps1 -Task Chaos): kills backups, prunes and restores at random points against the
    real QEMU test guest and real repositories, and counts how often nothing was lost and nothing stuck.
.DESCRIPTION
    Each scenario runs -Iterations times; every choice (which fault, when, which system call, which proxy
    rule) comes from one seeded random generator, printed first, so a run can be repeated with -Seed (the
    machine's timing still varies). Faults are real: SIGKILL after a random delay, SIGKILL at the K-th call of
    chosen system calls (strace -e inject=...:signal=KILL), Ctrl+C (SIGINT) to a pwsh running the cmdlet, a
    proxy on the QMP and agent sockets that delays, drops or kills, a tmpfs or loop ext4 file system that fills
    up, a mount made read-only before or during a backup. After each fault the run checks what an
    administrator relies on, and the next ordinary command, and writes results.md and results.json.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $OutputPath,
    [ValidateRange(1, 1000)] [int] $Iterations = 4,
    # 0: a new seed, printed.
    [int] $Seed = 0,
    # Some of Backup, Prune, Restore, FullDisk, ReadOnly, Proxy (comma-separated through -File).
    [string[]] $Scenario = @('Backup', 'Prune', 'Restore', 'FullDisk', 'ReadOnly', 'Proxy')
)
$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest
$Scenario = @($Scenario -split ',' | ForEach-Object Trim)
$unknown = @($Scenario | Where-Object { $_ -notin 'Backup', 'Prune', 'Restore', 'FullDisk', 'ReadOnly', 'Proxy' })
if ($unknown) { throw "-Scenario: '$($unknown -join "', '")' is not one of Backup, Prune, Restore, FullDisk, ReadOnly, Proxy." }

Import-Module $ModulePath
Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1')
Import-Module (Join-Path $PSScriptRoot '../pester/TestSupport.psm1')
Add-Type -Path (Join-Path $PSScriptRoot 'Chaos.cs')

if ($Seed -eq 0) { $Seed = [Random]::new().Next(1, [int]::MaxValue) }
$script:Random = [Random]::new($Seed)
$started = [DateTime]::UtcNow
Write-Host "Chaos run: seed $Seed, $Iterations iteration(s) per scenario ($($Scenario -join ', ')). Repeat with: ./build.ps1 -Task Chaos -Iterations $Iterations -Seed $Seed"

$isRoot = $IsLinux -and (& id -u) -eq '0'
$strace = Get-Command strace -CommandType Application -ErrorAction Ignore | Select-Object -First 1 -ExpandProperty Source
$work = Join-Path ([IO.Path]::GetTempPath()) "vmq-chaos-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
New-Item -ItemType Directory -Path $work | Out-Null
$results = [Collections.Generic.List[object]]::new()
$guest = $null
$mounts = [Collections.Generic.List[string]]::new()

# The moment a command begins, as a system call strace sees (Measure-Syscalls counts the calls after it).
$StartMarker = "try { [IO.File]::Delete('/proc/vmquiesce-chaos-start') } catch { }"

function Get-RandomInt([int] $Min, [int] $Max) { $script:Random.Next($Min, $Max + 1) }
function Get-RandomItem([object[]] $Items) { $Items[$script:Random.Next(0, $Items.Count)] }

# ---- child processes and faults ----------------------------------------------------------------------

# Starts $Command in a fresh pwsh with the module, which prints "START <pid>" right before the command and
# "DONE" or "FAILED <error id>: <message>" after it. Under strace when $Inject names system calls.
function Start-ChaosChild {
    param([string] $Command, [string] $Syscalls, [int] $When)
    $wrapper = @"
`$ErrorActionPreference = 'Stop'
Import-Module '$ModulePath'
[Console]::Out.WriteLine("START `$PID"); [Console]::Out.Flush()
$StartMarker
try { $Command | Out-Null; [Console]::Out.WriteLine('DONE') }
catch { [Console]::Out.WriteLine("FAILED `$(`$_.FullyQualifiedErrorId): `$(`$_.Exception.Message)") }
"@
    $child = Get-ChildPwsh
    $pwsh = @($child.FilePath) + $child.Prefix + @('-NoProfile', '-NonInteractive', '-Command', $wrapper)
    if ($Syscalls) {
        # -f: the backup's worker threads make the calls; the guardian it starts is traced too (see Test-GuardianHit).
        $arguments = @('-f', '--seccomp-bpf', '-qq', '-o', (Join-Path $work 'strace.log'), '-e', "trace=$Syscalls", '-e', "inject=$($Syscalls):signal=KILL:when=$When") + $pwsh
        return [VmQuiesceChaos.ChildRun]::new($strace, [string[]] $arguments)
    }
    [VmQuiesceChaos.ChildRun]::new($pwsh[0], [string[]] @($pwsh | Select-Object -Skip 1))
}

# Runs $Command with one fault and returns what happened: Landed (the fault came while the command ran),
# Outcome (DONE, FAILED ..., or Killed), Detail (the fault, repeatable).
function Invoke-Faulted {
    param([string] $Command, [string] $Fault, [string[]] $SyscallSets, [hashtable] $Proxy)
    $detail = $Fault
    $syscalls = $null; $when = 0
    if ($Fault -eq 'Syscall') {
        $syscalls = Get-RandomItem @($SyscallSets | Where-Object { $script:SyscallCounts[$_].Count -gt 0 })
        $when = Get-RandomItem $script:SyscallCounts[$syscalls]
        $detail = "SIGKILL at call $when of $syscalls in its thread (strace)"
    }
    $run = Start-ChaosChild -Command $Command -Syscalls $syscalls -When $when
    try {
        $start = $run.WaitForLine('START ', [timespan]::FromMinutes(2))
        if (-not $start) {
            $run.WaitForExit([timespan]::FromMinutes(1)) | Out-Null
            return [pscustomobject]@{ Landed = $false; Outcome = 'NotStarted'; Detail = "$detail (killed before the command began)"; Output = $run.Lines }
        }
        $childPid = [int] $start.Substring(6)
        $begun = $run.TimeOf('START ')
        switch ($Fault) {
            'RandomKill' {
                $delay = Get-RandomInt 0 ([int] $script:Window.TotalMilliseconds)
                $detail = "SIGKILL after $delay ms"
                if (-not $run.WaitForExit([timespan]::FromMilliseconds($delay))) { [VmQuiesceChaos.Signals]::Send($childPid, [VmQuiesceChaos.Signals]::Kill) | Out-Null }
            }
            'CtrlC' {
                $delay = Get-RandomInt 0 ([int] $script:Window.TotalMilliseconds)
                $detail = "Ctrl+C (SIGINT) after $delay ms"
                if (-not $run.WaitForExit([timespan]::FromMilliseconds($delay))) { [VmQuiesceChaos.Signals]::Send($childPid, [VmQuiesceChaos.Signals]::Interrupt) | Out-Null }
            }
            'Proxy' {
                $Proxy.Socket.Arm($Proxy.Trigger, $Proxy.OnReply, $Proxy.Fault, [timespan]::FromMilliseconds($Proxy.DelayMs), $childPid)
                $detail = "proxy: $($Proxy.Fault)$(if ($Proxy.Fault -eq 'Delay') { " $($Proxy.DelayMs) ms" }) on the $(if ($Proxy.OnReply) { 'reply' } else { 'request' }) containing '$($Proxy.Trigger)' ($($Proxy.Name))"
            }
        }
        # The command ends, or is killed; under strace the guardian may outlive it: strace is then detached.
        while ([VmQuiesceChaos.Signals]::IsAlive($childPid) -and -not $run.HasExited) { $run.WaitForExit([timespan]::FromMilliseconds(100)) | Out-Null }
        if ($Fault -eq 'Syscall' -and -not $run.HasExited) { [VmQuiesceChaos.Signals]::Send($run.ProcessId, [VmQuiesceChaos.Signals]::Terminate) | Out-Null }
        if (-not $run.WaitForExit([timespan]::FromMinutes(5))) { throw "The child running '$Command' did not end within 5 minutes of its fault." }
        if ($Proxy) { $Proxy.Socket.Disarm() }
        $lines = $run.Lines
        $last = $lines | Where-Object { $_ -like 'DONE*' -or $_ -like 'FAILED *' } | Select-Object -Last 1
        $outcome = if ($last) { $last } elseif ($Fault -eq 'CtrlC') { 'Stopped' } else { 'Killed' }
        $landed = switch ($Fault) {
            'CtrlC' { $outcome -notlike 'DONE*' }
            'Proxy' { [bool] $Proxy.Socket.Fired }
            default { $outcome -eq 'Killed' }
        }
        # A random moment is drawn within the shortest whole run seen: under load, runs vary a lot.
        if ($outcome -like 'DONE*' -and $Fault -in 'RandomKill', 'CtrlC' -and $run.TimeOf('DONE') - $begun -lt $script:Window) { $script:Window = $run.TimeOf('DONE') - $begun }
        [pscustomobject]@{ Landed = $landed; Outcome = $outcome; Detail = $detail; Output = $lines }
    }
    finally {
        $run.Dispose()
    }
}

# For each set of system calls, the K of every call a clean run of $Command makes once it has begun (after the
# marker the wrapper unlinks), counted per thread from the thread's start as strace counts for inject=...:when=K.
# A kill draws one of them: a random call of the operation, not of pwsh starting up.
function Measure-Syscalls {
    param([string] $Command, [string[]] $Sets)
    $log = Join-Path $work 'strace-count.log'
    $all = (@($Sets) + 'unlink') -join ','
    $child = Get-ChildPwsh
    & $strace -f --seccomp-bpf -qq -o $log -e "trace=$all" $child.FilePath @($child.Prefix) -NoProfile -NonInteractive -Command "Import-Module '$ModulePath'; $StartMarker; $Command | Out-Null" 2>&1 | Out-Null
    $counts = @{}
    foreach ($set in $Sets) {
        $names = $set -split ','
        $perThread = @{}
        $begun = $false
        $candidates = [Collections.Generic.List[int]]::new()
        foreach ($line in [IO.File]::ReadLines($log)) {
            if ($line -like '*vmquiesce-chaos-start*') { $begun = $true; continue }
            if ($line -match '^(\d+)\s+([a-z0-9_]+)\(' -and $names -contains $Matches[2]) {
                $perThread[$Matches[1]] = 1 + [int] $perThread[$Matches[1]]
                if ($begun) { $candidates.Add($perThread[$Matches[1]]) }
            }
        }
        $counts[$set] = $candidates.ToArray()
    }
    $counts
}

# How long a clean run of $Command takes from its start to its DONE line (a random moment is drawn within it;
# the process itself may take longer to exit).
function Measure-Window([string] $Command) {
    $run = Start-ChaosChild -Command $Command
    try {
        $run.WaitForExit([timespan]::FromMinutes(5)) | Out-Null
        $end = $run.Lines | Where-Object { $_ -like 'DONE*' -or $_ -like 'FAILED *' } | Select-Object -Last 1
        if ($end -notlike 'DONE*') { throw "The clean run of '$Command' failed: $($run.Lines -join ' | ')" }
        $run.TimeOf('DONE') - $run.TimeOf('START ')
    }
    finally { $run.Dispose() }
}

# True while a scenario needs more faults that landed (a fault after the command finished is not counted), up to three times -Iterations attempts.
function Test-MoreNeeded([string] $Name, [ref] $Attempts) {
    $Attempts.Value++
    @($results | Where-Object { $_.Scenario -eq $Name -and $_.Landed }).Count -lt $Iterations -and $Attempts.Value -le 3 * $Iterations
}

function Add-Result {
    param([string] $Scenario, $Run, [string[]] $Problems, [string] $Mode)
    $entry = [pscustomobject]@{
        Scenario = $Scenario; Mode = $Mode; Detail = $Run.Detail; Landed = [bool] $Run.Landed; Outcome = $Run.Outcome
        Ok = (@($Problems).Count -eq 0); Problems = @($Problems)
    }
    $results.Add($entry)
    $mark = if (-not $entry.Landed) { 'missed' } elseif ($entry.Ok) { 'ok' } else { 'FAILED' }
    Write-Host ("  {0,-8} {1,-6} {2} -> {3}{4}" -f $Scenario, $mark, $Run.Detail, $Run.Outcome, $(if ($Problems) { "`n      " + ($Problems -join "`n      ") } else { '' }))
}

# ---- what must hold afterwards -------------------------------------------------------------------------

# Problems with a repository, none when every point verifies (a repository whose marker was never written
# counts as not made yet: the next backup must then complete it).
function Test-Repository([string] $Repository) {
    if (-not (Test-Path -LiteralPath (Join-Path $Repository 'vmquiesce-repository.json'))) { return }
    try {
        $points = @(Get-VmBackup -Repository $Repository -ErrorVariable listFailures -ErrorAction SilentlyContinue -WarningAction SilentlyContinue)
        foreach ($failure in $listFailures) { "listing: $($failure.FullyQualifiedErrorId): $failure" }
        if ($points.Count -eq 0) { return }
        $checked = @(Test-VmBackup -Repository $Repository -ErrorVariable verifyFailures -ErrorAction SilentlyContinue -WarningAction SilentlyContinue)
        foreach ($result in $checked | Where-Object Status -NE 'Ok') { "point $($result.Id) is $($result.Status)" }
        foreach ($failure in $verifyFailures) { "verify: $($failure.FullyQualifiedErrorId): $failure" }
    }
    catch { "verify: $($_.FullyQualifiedErrorId): $($_.Exception.Message)" }
}

function Get-FreezeStatus {
    $agent = [VmQuiesce.Core.Sources.Qemu.GuestAgentClient]::Connect($guest.AgentSocketPath, [timespan]::FromSeconds(5))
    try { $agent.GetFreezeStatus() } finally { $agent.Dispose() }
}

# Problems with the guest: frozen longer than the freeze timeout plus a margin for this loaded machine.
function Test-GuestThawed {
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $status = $null
    while ($clock.Elapsed.TotalSeconds -lt 30) {
        try { $status = Get-FreezeStatus } catch [VmQuiesce.Core.VmQuiesceException] { $status = "unreachable: $($_.Exception.Message)" }
        if ($status -eq 'thawed') { return }
        $guest.Process.WaitForExit(250) | Out-Null
    }
    "the guest is still '$status' 30 s after the fault"
    # Thawed here so that the next iteration starts clean; the failure is counted.
    Repair-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -Thaw -Confirm:$false -ErrorAction SilentlyContinue | Out-Null
}

function Get-Overlay { @(Get-ChildItem $guest.WorkFolder -Filter '*.vmquiesce-*' -ErrorAction Ignore) }

# The next ordinary backup after a fault: it must succeed (repairing what a dead run left) and leave no overlay,
# and no NBD export, scratch node or NBD server of a change-tracked read.
function Test-NextBackup([string] $Repository, [switch] $ChangeTracking) {
    $point = $null
    try {
        $vm = Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -Name chaos
        $point = Invoke-VmQuiescedBackup -Vm $vm -Repository $Repository -ChangeTracking:$ChangeTracking -ErrorAction Stop -WarningAction SilentlyContinue
    }
    catch { "the next backup failed: $($_.FullyQualifiedErrorId): $($_.Exception.Message)" }
    if ($point -and $point.Consistency -ne 'FileSystem') { "the next backup reached only $($point.Consistency)" }
    if (Get-Overlay) { "overlays left after the next backup: $((Get-Overlay).Name -join ', ')" }
    Test-NoTrackedLeftovers $guest.QmpSocketPath
}

# Problems in QEMU after a change-tracked read ended: VmQuiesce's exports or scratch nodes, or an NBD server still
# running (probed by starting one: QEMU runs one at a time).
function Test-NoTrackedLeftovers([string] $QmpSocket) {
    $qmp = [VmQuiesce.Core.Sources.Qemu.QmpClient]::Connect($QmpSocket)
    try {
        $exports = @($qmp.ExecuteArray('query-block-exports') | ForEach-Object { $_.GetOptionalString('id') })
        if ($exports) { "NBD exports left: $($exports -join ', ')" }
        $nodes = @($qmp.ExecuteArray('query-named-block-nodes') | ForEach-Object { $_.GetOptionalString('node-name') } | Where-Object { $_ -like 'vmquiesce-*' })
        if ($nodes) { "scratch nodes left: $($nodes -join ', ')" }
        $probe = Join-Path $work 'probe-nbd.sock'
        $address = [VmQuiesce.Core.Json.JsonObject]::new().With('addr', [VmQuiesce.Core.Json.JsonObject]::new().With('type', 'unix').With('data', [VmQuiesce.Core.Json.JsonObject]::new().With('path', $probe)))
        try { $null = $qmp.Execute('nbd-server-start', $address); $null = $qmp.Execute('nbd-server-stop') }
        catch { "QEMU's NBD server is left running: $($_.Exception.Message)" }
    }
    finally { $qmp.Dispose() }
}

# Writes new data into the guest so that each backup has new chunks to store.
function Write-GuestData([int] $MiB) {
    $agent = [VmQuiesce.Core.Sources.Qemu.GuestAgentClient]::Connect($guest.AgentSocketPath, [timespan]::FromSeconds(10))
    try {
        $result = $agent.Exec('/bin/sh', [string[]] @('-c', "dd if=/dev/urandom of=/mnt/data/chaos.bin bs=1048576 count=$MiB 2>/dev/null && sync"), [timespan]::FromMinutes(2))
        if ($result.ExitCode -ne 0) { throw "Writing $MiB MiB in the guest failed (exit code $($result.ExitCode))." }
    }
    finally { $agent.Dispose() }
}

function New-Mount {
    # A small file system of its own: tmpfs, or ext4 on a loop device when $Loop.
    param([int] $SizeMiB, [switch] $Loop)
    $mount = Join-Path $work "mnt-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
    New-Item -ItemType Directory -Path $mount | Out-Null
    if ($Loop) {
        $image = "$mount.img"
        $stream = [IO.File]::Create($image); $stream.SetLength($SizeMiB * 1MB); $stream.Dispose()
        & mkfs.ext4 -q -F $image 2>&1 | Out-Null
        & mount -o loop $image $mount 2>&1 | Out-Null
    }
    else { & mount -t tmpfs -o "size=$($SizeMiB)m,mode=0700" vmq-chaos $mount 2>&1 | Out-Null }
    if ($LASTEXITCODE -ne 0) { throw "Mounting a $SizeMiB MiB $(if ($Loop) { 'loop ext4' } else { 'tmpfs' }) on $mount failed." }
    $mounts.Add($mount)
    $mount
}

function Remove-Mount([string] $Mount) {
    & umount $Mount 2>&1 | Out-Null
    $mounts.Remove($Mount) | Out-Null
    Remove-Item -LiteralPath $Mount, "$Mount.img" -Recurse -Force -ErrorAction Ignore
}

# ---- scenarios -----------------------------------------------------------------------------------------

# Not unlink or mkdir for the guest's backups: the guardian a backup starts is traced too (strace -f), and as a
# fresh pwsh it makes such calls while starting; a kill there would be the harness's fault, not the product's.
$BackupSyscalls = @('fsync,fdatasync', 'link,linkat,rename,renameat,renameat2', 'ftruncate,fallocate')
$PruneSyscalls = @('unlink,unlinkat', 'fsync,fdatasync', 'link,linkat,rename,renameat,renameat2')
$RestoreSyscalls = @('link,linkat,rename,renameat,renameat2', 'fsync,fdatasync', 'unlink,unlinkat', 'ftruncate,fallocate')

function Get-FaultMode {
    $modes = @('RandomKill', 'CtrlC')
    if ($strace) { $modes += 'Syscall', 'Syscall' }
    Get-RandomItem $modes
}

function Invoke-BackupScenario {
    Write-Host "Backups of the real guest, killed (random SIGKILL, SIGKILL at a system call, Ctrl+C):"
    $shared = Join-Path $work 'backup-repo'
    $command = "Invoke-VmQuiescedBackup -Vm (Get-BackupVm -QmpSocket '$($guest.QmpSocketPath)' -AgentSocket '$($guest.AgentSocketPath)' -Name chaos) -Repository '$shared'"
    Write-GuestData 8
    $script:Window = Measure-Window $command
    if ($strace) { $script:SyscallCounts = Measure-Syscalls $command $BackupSyscalls }
    $i = 0
    while (Test-MoreNeeded Backup ([ref] $i)) {
        Write-GuestData (Get-RandomInt 1 12)
        # A quarter of the kills hit a first backup, which creates its repository; a third hit a change-tracked one
        # (QEMU's NBD server, exports, scratch nodes and bitmaps), whose next backup is change-tracked too.
        $repo = if ((Get-RandomInt 1 4) -eq 1) { Join-Path $work "backup-fresh-$i" } else { $shared }
        $tracked = (Get-RandomInt 1 3) -eq 1
        $mode = Get-FaultMode
        $run = Invoke-Faulted -Command ($command.Replace("'$shared'", "'$repo'") + $(if ($tracked) { ' -ChangeTracking' })) -Fault $mode -SyscallSets $BackupSyscalls
        $problems = @()
        if ($run.Landed) {
            $problems += Test-GuestThawed
            $problems += Test-Repository $repo
            if ($mode -eq 'CtrlC' -and (Get-Overlay)) { $problems += "overlays left after Ctrl+C: $((Get-Overlay).Name -join ', ')" }
            $problems += Test-NextBackup $repo -ChangeTracking:$tracked
            $problems += Test-Repository $repo
        }
        Add-Result -Scenario Backup -Run $run -Problems $problems -Mode $(if ($tracked) { "$mode tracked" } else { $mode })
    }
}

# A repository of a plain two-disk VM with $Count points whose data changes between them.
function New-PlainRepository {
    param([string] $Folder, [int] $Count)
    New-Item -ItemType Directory -Path $Folder -Force | Out-Null
    $disks = @(Join-Path $Folder 'disk0.img'; Join-Path $Folder 'disk1.img')
    $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('plain', [string[]] $disks)
    $repo = Join-Path $Folder 'repo'
    $points = for ($p = 0; $p -lt $Count; $p++) {
        foreach ($disk in $disks) { Write-RandomFile $disk (Get-RandomInt 2 6) }
        Invoke-VmQuiescedBackup -Vm $vm -Repository $repo -Consistency Crash -ChunkSize 1MB
    }
    [pscustomobject]@{ Repository = $repo; Disks = $disks; Vm = $vm; Points = @($points) }
}

function Write-RandomFile([string] $Path, [int] $MiB) {
    $bytes = [byte[]]::new($MiB * 1MB)
    $script:Random.NextBytes($bytes)
    [IO.File]::WriteAllBytes($Path, $bytes)
}

function Invoke-PruneScenario {
    Write-Host "Prunes (Remove-VmBackup -KeepLast 1), killed:"
    $calibration = New-PlainRepository (Join-Path $work 'prune-calibration') 4
    $command = "Remove-VmBackup -Repository '$($calibration.Repository)' -KeepLast 1 -Confirm:`$false"
    $script:Window = Measure-Window $command
    if ($strace) { $script:SyscallCounts = Measure-Syscalls ((New-PlainRepository (Join-Path $work 'prune-count') 4).Repository | ForEach-Object { "Remove-VmBackup -Repository '$_' -KeepLast 1 -Confirm:`$false" }) $PruneSyscalls }
    $i = 0
    while (Test-MoreNeeded Prune ([ref] $i)) {
        $set = New-PlainRepository (Join-Path $work "prune-$i") 4
        $newest = $set.Points[-1].Id
        $mode = Get-FaultMode
        $run = Invoke-Faulted -Command "Remove-VmBackup -Repository '$($set.Repository)' -KeepLast 1 -Confirm:`$false" -Fault $mode -SyscallSets $PruneSyscalls
        $problems = @()
        if ($run.Landed) {
            $problems += Test-Repository $set.Repository
            if (-not (Test-Path (Join-Path $set.Repository "points/$newest.json"))) { $problems += "the newest point $newest is gone" }
            try {
                $again = Remove-VmBackup -Repository $set.Repository -KeepLast 1 -Confirm:$false -ErrorAction Stop -WarningAction SilentlyContinue
                if ($again.KeptRestorePoints -ne 1) { $problems += "the next prune kept $($again.KeptRestorePoints) points" }
            }
            catch { $problems += "the next prune failed: $($_.FullyQualifiedErrorId): $($_.Exception.Message)" }
            $problems += Test-Repository $set.Repository
        }
        Add-Result -Scenario Prune -Run $run -Problems $problems -Mode $mode
        Remove-Item -LiteralPath (Join-Path $work "prune-$i") -Recurse -Force
    }
}

function Invoke-RestoreScenario {
    Write-Host "Restores over the original files, killed (each file must be old or new, never half):"
    $calibration = New-PlainRepository (Join-Path $work 'restore-calibration') 1
    $restore = { param($set) "Restore-VmSnapshot -Repository '$($set.Repository)' -Id '$($set.Points[-1].Id)' -Force -Confirm:`$false" }
    $script:Window = Measure-Window (& $restore $calibration)
    if ($strace) { $script:SyscallCounts = Measure-Syscalls (& $restore $calibration) $RestoreSyscalls }
    $i = 0
    while (Test-MoreNeeded Restore ([ref] $i)) {
        $folder = Join-Path $work "restore-$i"
        $set = New-PlainRepository $folder 1
        $new = @{}; $old = @{}
        foreach ($disk in $set.Disks) {
            $new[$disk] = (Get-FileHash $disk).Hash
            Write-RandomFile $disk (Get-RandomInt 1 6)
            $old[$disk] = (Get-FileHash $disk).Hash
        }
        $mode = Get-FaultMode
        $run = Invoke-Faulted -Command (& $restore $set) -Fault $mode -SyscallSets $RestoreSyscalls
        $problems = @()
        if ($run.Landed) {
            foreach ($disk in $set.Disks) {
                $hash = if (Test-Path -LiteralPath $disk) { (Get-FileHash $disk).Hash } else { 'missing' }
                if ($hash -ne $old[$disk] -and $hash -ne $new[$disk]) { $problems += "$(Split-Path $disk -Leaf) is neither old nor new ($hash)" }
            }
            try { $null = Restore-VmSnapshot -Repository $set.Repository -Id $set.Points[-1].Id -Force -Confirm:$false -ErrorAction Stop -WarningAction SilentlyContinue }
            catch { $problems += "the next restore failed: $($_.FullyQualifiedErrorId): $($_.Exception.Message)" }
            foreach ($disk in $set.Disks) {
                if (-not (Test-Path -LiteralPath $disk) -or (Get-FileHash $disk).Hash -ne $new[$disk]) { $problems += "after the next restore $(Split-Path $disk -Leaf) is not the restored data" }
            }
            $left = @(Get-ChildItem -LiteralPath $folder -Force | Where-Object Name -NotIn @('disk0.img', 'disk1.img', 'repo'))
            if ($left) { $problems += "left beside the disks after the next restore: $($left.Name -join ', ')" }
        }
        Add-Result -Scenario Restore -Run $run -Problems $problems -Mode $mode
        Remove-Item -LiteralPath $folder -Recurse -Force
    }
}

function Invoke-FullDiskScenario {
    Write-Host "Backups of the real guest into a file system that fills up (tmpfs or loop ext4):"
    for ($i = 0; $i -lt $Iterations; $i++) {
        $loop = (Get-RandomInt 0 1) -eq 1
        $size = Get-RandomInt 4 12
        $mount = New-Mount -SizeMiB $size -Loop:$loop
        try {
            $repo = Join-Path $mount 'repo'
            $vm = Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -Name chaos
            # A first point that fits (a little data), then more data than the space left.
            Write-GuestData 1
            $first = $null
            try { $first = Invoke-VmQuiescedBackup -Vm $vm -Repository $repo -ErrorAction Stop -WarningAction SilentlyContinue } catch { $first = $null }
            Write-GuestData ($size + 4)
            $failure = $null
            try { $null = Invoke-VmQuiescedBackup -Vm $vm -Repository $repo -ErrorAction Stop -WarningAction SilentlyContinue }
            catch { $failure = $_ }
            $run = [pscustomobject]@{ Landed = $true; Detail = "$size MiB $(if ($loop) { 'loop ext4' } else { 'tmpfs' })$(if ($first) { ', one point already in it' } else { ', empty' })"; Outcome = if ($failure) { "FAILED $($failure.FullyQualifiedErrorId)" } else { 'DONE (it fitted)' } }
            $problems = @()
            if ($failure -and $failure.FullyQualifiedErrorId -notlike 'RepositoryDiskFull,*' -and $failure.FullyQualifiedErrorId -notlike 'InsufficientDiskSpace,*') {
                $problems += "the error is $($failure.FullyQualifiedErrorId), not one that says the file system is full: $($failure.Exception.Message)"
            }
            $problems += Test-GuestThawed
            if (Get-Overlay) { $problems += "overlays left after the failed backup: $((Get-Overlay).Name -join ', ')" }
            $problems += Test-Repository $repo
            # Room again (tmpfs remounted larger, ext4 grown offline): the next backup must succeed into the same repository.
            if ($loop) {
                & umount $mount
                & truncate -s 256M "$mount.img"
                $grown = & e2fsck -fy "$mount.img" 2>&1; $grown += & resize2fs "$mount.img" 2>&1
                & mount -o loop "$mount.img" $mount
                if ($LASTEXITCODE -ne 0) { throw "Growing the loop file system $mount.img failed: $grown" }
            }
            else { & mount -o 'remount,size=256m' $mount }
            $problems += Test-NextBackup $repo
            $problems += Test-Repository $repo
            Add-Result -Scenario FullDisk -Run $run -Problems $problems -Mode $(if ($loop) { 'loop' } else { 'tmpfs' })
        }
        finally { Remove-Mount $mount }
    }
}

function Invoke-ReadOnlyScenario {
    Write-Host "A repository whose mount becomes read-only (before a backup, or at a random moment during one):"
    $mount = New-Mount -SizeMiB 256
    try {
        $repo = Join-Path $mount 'repo'
        $command = "Invoke-VmQuiescedBackup -Vm (Get-BackupVm -QmpSocket '$($guest.QmpSocketPath)' -AgentSocket '$($guest.AgentSocketPath)' -Name chaos) -Repository '$repo'"
        Write-GuestData 4
        $script:Window = Measure-Window $command
        $i = 0
        while (Test-MoreNeeded ReadOnly ([ref] $i)) {
            Write-GuestData (Get-RandomInt 1 8)
            $during = (Get-RandomInt 0 1) -eq 1
            $problems = @()
            if ($during) {
                $delay = Get-RandomInt 0 ([int] $script:Window.TotalMilliseconds)
                $child = Start-ChaosChild -Command $command
                $null = $child.WaitForLine('START ', [timespan]::FromMinutes(2))
                $child.WaitForExit([timespan]::FromMilliseconds($delay)) | Out-Null
                # The kernel refuses to remount while a file is open for writing (EBUSY): then nothing became read-only.
                & mount -o remount,ro $mount 2>&1 | Out-Null
                $madeReadOnly = $LASTEXITCODE -eq 0
                $child.WaitForExit([timespan]::FromMinutes(5)) | Out-Null
                $outcome = $child.Lines | Where-Object { $_ -like 'DONE*' -or $_ -like 'FAILED *' } | Select-Object -Last 1
                $child.Dispose()
                $detail = if ($madeReadOnly) { "made read-only $delay ms into a backup" } else { "not made read-only $delay ms into a backup (mount busy: a file open for writing)" }
                $run = [pscustomobject]@{ Landed = $madeReadOnly -and $outcome -notlike 'DONE*'; Detail = $detail; Outcome = "$outcome" }
            }
            else {
                & mount -o remount,ro $mount
                $failure = $null
                try { $null = Invoke-Expression $command -ErrorAction Stop } catch { $failure = $_ }
                $run = [pscustomobject]@{ Landed = $true; Detail = 'read-only before the backup'; Outcome = if ($failure) { "FAILED $($failure.FullyQualifiedErrorId)" } else { 'DONE' } }
                if (-not $failure) { $problems += 'a backup into a read-only repository reported success' }
            }
            if ($run.Landed) {
                if ($run.Outcome -like 'FAILED *' -and $run.Outcome -notlike '*RepositoryReadOnly*') { $problems += "the error is not RepositoryReadOnly: $($run.Outcome)" }
                $problems += Test-GuestThawed
                if (Get-Overlay) { $problems += "overlays left after the failed backup: $((Get-Overlay).Name -join ', ')" }
                # Still readable while read-only: verified, and restored from.
                $problems += Test-Repository $repo
                $points = @(try { Get-VmBackup -Repository $repo -ErrorAction SilentlyContinue } catch { })
                if ($points) {
                    $target = Join-Path $work "from-read-only-$i"
                    try { $null = Restore-VmSnapshot -Repository $repo -Id $points[-1].Id -Destination $target -SkipRevert -Confirm:$false -ErrorAction Stop -WarningAction SilentlyContinue }
                    catch { $problems += "restoring from the read-only repository failed: $($_.FullyQualifiedErrorId): $($_.Exception.Message)" }
                    Remove-Item -LiteralPath $target -Recurse -Force -ErrorAction Ignore
                }
            }
            & mount -o remount,rw $mount
            if ($run.Landed) { $problems += Test-NextBackup $repo; $problems += Test-Repository $repo }
            # Only the newest point is kept between runs: a dozen runs' backups would otherwise fill the mount, and the
            # scenario's faults would turn into "full".
            try { $null = Remove-VmBackup -Repository $repo -KeepLast 1 -Confirm:$false -ErrorAction Stop -WarningAction SilentlyContinue }
            catch { $problems += "pruning to the newest point after the run failed: $($_.FullyQualifiedErrorId): $($_.Exception.Message)" }
            Add-Result -Scenario ReadOnly -Run $run -Problems $problems -Mode $(if ($during) { 'during' } else { 'before' })
        }
    }
    finally { Remove-Mount $mount }
}

# The guest's sockets behind a proxy each, for the whole scenario: QEMU's own sockets are renamed aside (a bound
# unix socket keeps working under a new name) and the proxies listen at the names the VM is known by. A proxy is
# not QEMU, so these backups trust the proxy's process (this one) the way the xunit stand-ins do
# (QemuSourceOptions.Trust), and this process holds the disk images open as QEMU does; every backup of the
# scenario, the checks after a fault included, goes through the proxies, so the VM's QEMU is the same throughout.
function Enable-Proxy {
    Rename-Item -LiteralPath $guest.QmpSocketPath -NewName 'qmp.real.sock'
    Rename-Item -LiteralPath $guest.AgentSocketPath -NewName 'qga.real.sock'
    @{
        Qmp   = [VmQuiesceChaos.SocketProxy]::new($guest.QmpSocketPath, (Join-Path $guest.WorkFolder 'qmp.real.sock'))
        Agent = [VmQuiesceChaos.SocketProxy]::new($guest.AgentSocketPath, (Join-Path $guest.WorkFolder 'qga.real.sock'))
    }
}

function Disable-Proxy($Proxies) {
    $Proxies.Qmp.Dispose(); $Proxies.Agent.Dispose()
    Rename-Item -LiteralPath (Join-Path $guest.WorkFolder 'qmp.real.sock') -NewName 'qmp.sock'
    Rename-Item -LiteralPath (Join-Path $guest.WorkFolder 'qga.real.sock') -NewName 'qga.sock'
}

# Problems of a run of $Command with no fault: none when it printed DONE and left no overlay.
function Test-CleanRun([string] $Command, [string] $What) {
    $run = Start-ChaosChild -Command $Command
    try {
        $run.WaitForExit([timespan]::FromMinutes(5)) | Out-Null
        $end = $run.Lines | Where-Object { $_ -like 'DONE*' -or $_ -like 'FAILED *' } | Select-Object -Last 1
        if ($end -notlike 'DONE*') { "$What failed: $end" }
        if (Get-Overlay) { "overlays left after $($What): $((Get-Overlay).Name -join ', ')" }
    }
    finally { $run.Dispose() }
}

function Invoke-ProxyScenario {
    Write-Host "Backups through a proxy on the QMP and agent sockets that delays, drops or kills:"
    $repo = Join-Path $work 'proxy-repo'
    $self = (Get-Item "/proc/$PID/exe").Target
    # The backup, through the core as the cmdlet runs it, trusting the proxy's process instead of QEMU's.
    $command = @"
`$options = [VmQuiesce.Core.Sources.Qemu.QemuSourceOptions]::new('chaos', '$($guest.QmpSocketPath)')
`$type = `$options.GetType()
`$type.GetProperty('AgentSocket').SetValue(`$options, '$($guest.AgentSocketPath)')
`$trust = [VmQuiesce.Core.Sources.Qemu.QemuProcessTrust].GetMethod('WithExecutable', [Reflection.BindingFlags] 'NonPublic, Static').Invoke(`$null, @('$self', `$null))
`$type.GetProperty('Trust', [Reflection.BindingFlags] 'NonPublic, Instance').SetValue(`$options, `$trust)
`$engine = [VmQuiesce.Core.Backup.BackupEngine]::new([VmQuiesce.Core.Repository.BackupRepository]::OpenOrCreate('$repo', 4MB))
`$engine.Run([VmQuiesce.Core.Sources.Qemu.QemuSource]::new(`$options), [VmQuiesce.Core.Sources.QuiesceOptions]::new(), `$null, [Threading.CancellationToken]::None, TRACKING)
"@
    $plain = $command.Replace('TRACKING', '$null')
    $tracked = $command.Replace('TRACKING', '[VmQuiesce.Core.Backup.ChangeTrackingOptions]::new()')
    $rules = @(
        @{ Name = 'QMP'; Triggers = @('qmp_capabilities', 'query-block', 'transaction', 'block-commit', 'block-job-complete', 'job-dismiss') }
        @{ Name = 'agent'; Triggers = @('guest-sync-delimited', 'guest-fsfreeze-status', 'guest-fsfreeze-freeze', 'guest-fsfreeze-thaw') }
        @{ Name = 'QMP, change-tracked'; Tracked = $true; Triggers = @('blockdev-add', 'transaction', 'nbd-server-start', 'block-export-add', 'block-export-del', 'nbd-server-stop', 'blockdev-del', 'block-dirty-bitmap-remove') }
    )
    $held = @($guest.DiskPaths | ForEach-Object { [IO.File]::Open($_, 'Open', 'Read', 'ReadWrite, Delete') })
    $proxies = Enable-Proxy
    try {
        $i = 0
        while (Test-MoreNeeded Proxy ([ref] $i)) {
            Write-GuestData (Get-RandomInt 1 8)
            $rule = Get-RandomItem $rules
            $fault = Get-RandomItem @('Delay', 'Drop', 'Kill')
            $proxy = @{
                Name = $rule.Name; Socket = $(if ($rule.Name -like 'QMP*') { $proxies.Qmp } else { $proxies.Agent })
                Trigger = Get-RandomItem $rule.Triggers; OnReply = (Get-RandomInt 0 1) -eq 1
                Fault = [VmQuiesceChaos.ProxyFault] $fault; DelayMs = Get-RandomInt 500 15000
            }
            $isTracked = $rule.ContainsKey('Tracked')
            $command = if ($isTracked) { $tracked } else { $plain }
            $run = Invoke-Faulted -Command $command -Fault Proxy -Proxy $proxy
            $problems = @()
            if ($run.Landed) {
                $problems += Test-GuestThawed
                $problems += Test-Repository $repo
                $problems += Test-CleanRun $command 'the next backup'
                $problems += Test-Repository $repo
                if ($isTracked) { $problems += Test-NoTrackedLeftovers $guest.QmpSocketPath }
            }
            Add-Result -Scenario Proxy -Run $run -Problems $problems -Mode $(if ($isTracked) { "$fault tracked" } else { $fault })
        }
    }
    finally {
        # What the last fault left is repaired by one more backup through the proxies, whose QEMU it knows.
        $left = Test-CleanRun $tracked 'the closing backup through the proxies'
        if ($left) { Write-Warning "$left" }
        Disable-Proxy $proxies
        $held | ForEach-Object Dispose
    }
}

# ---- the run -------------------------------------------------------------------------------------------

$Figures = [ordered]@{
    Backup   = 'kills during backup: {0} of {1} left a verifying repository and a thawed guest, and the next backup repaired what was left and succeeded'
    Prune    = 'kills during prune: {0} of {1} left a verifying repository with the newest point, and the next prune finished unaided'
    Restore  = 'kills during restore: {0} of {1} left every target old or new, never half, and the next restore finished and left nothing behind'
    FullDisk = 'backups into a file system that filled up: {0} of {1} failed with a "full" error, left a verifying repository and a thawed guest, and succeeded once there was room'
    ReadOnly = 'a repository mount made read-only before or during a backup: {0} of {1} backups failed cleanly (RepositoryReadOnly, guest thawed), the repository verified and restored while read-only, and backed up again once writable'
    Proxy    = 'proxy faults on QMP and the agent (delay, drop, kill): {0} of {1} left a thawed guest and a verifying repository, and the next backup succeeded'
}

try {
    $unavailable = Get-TestGuestUnavailableReason
    $guestScenarios = @('Backup', 'FullDisk', 'ReadOnly', 'Proxy')
    $skipped = [ordered]@{}
    foreach ($name in $Scenario) {
        if ($unavailable -and $guestScenarios -contains $name) { $skipped[$name] = "no test guest: $unavailable" }
        elseif (-not $isRoot -and $name -in 'FullDisk', 'ReadOnly') { $skipped[$name] = 'mounting file systems needs root on Linux' }
    }
    if (-not $strace) { Write-Warning 'strace is not installed: no kills at chosen system calls (Debian: apt-get install strace; the build installs it as root).' }
    if (-not $unavailable -and @($Scenario | Where-Object { $guestScenarios -contains $_ -and -not $skipped.Contains($_) })) {
        $guest = Start-TestGuest -DiskSizeMB 128 -TimeoutSeconds 180
    }
    foreach ($name in $Scenario) {
        if ($skipped.Contains($name)) { Write-Warning "$name skipped: $($skipped[$name])"; continue }
        & "Invoke-$($name)Scenario"
    }
}
finally {
    foreach ($mount in @($mounts)) { & umount $mount 2>&1 | Out-Null }
    if ($guest) { $guest | Stop-TestGuest }
    Remove-Item -LiteralPath $work -Recurse -Force -ErrorAction SilentlyContinue
}

$lines = foreach ($name in $Scenario) {
    if ($skipped.Contains($name)) { "$($name): skipped ($($skipped[$name]))"; continue }
    $landed = @($results | Where-Object { $_.Scenario -eq $name -and $_.Landed })
    $missed = @($results | Where-Object { $_.Scenario -eq $name -and -not $_.Landed }).Count
    $byMode = ($landed | Group-Object Mode | ForEach-Object { "$($_.Name) $(@($_.Group | Where-Object Ok).Count)/$($_.Count)" }) -join ', '
    $line = $Figures[$name] -f @($landed | Where-Object Ok).Count, $landed.Count
    if ($byMode) { $line += " ($byMode)" }
    if ($missed) { $line += "; $missed fault(s) came after the command had finished and are not counted" }
    $line
}
$elapsed = [DateTime]::UtcNow - $started
$machine = "$([Environment]::ProcessorCount) cores, $((Get-Content /proc/loadavg -ErrorAction Ignore) -split ' ' | Select-Object -First 1) load average at the end"
New-Item -ItemType Directory -Path $OutputPath -Force | Out-Null
$failures = @($results | Where-Object { $_.Landed -and -not $_.Ok })
$markdown = @("Chaos run: $($started.ToString('yyyy-MM-dd HH:mm')) UTC, seed $Seed, $Iterations iteration(s) per scenario, $([int] $elapsed.TotalMinutes) min; $machine.", '') +
    @($lines | ForEach-Object { "- $_" }) +
    @(if ($failures) { ''; 'Failures:'; $failures | ForEach-Object { "- $($_.Scenario), $($_.Detail) -> $($_.Outcome): $($_.Problems -join '; ')" } })
$markdown | Set-Content -Path (Join-Path $OutputPath 'results.md') -Encoding utf8
[pscustomobject]@{ Seed = $Seed; Iterations = $Iterations; Started = $started; Results = $results; Figures = $lines } |
    ConvertTo-Json -Depth 5 | Set-Content -Path (Join-Path $OutputPath 'results.json') -Encoding utf8
Write-Host ''
$markdown | ForEach-Object { Write-Host $_ }
Write-Host "Results in $OutputPath (seed $Seed)."
exit ([int] ($failures.Count -gt 0))
