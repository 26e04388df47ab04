<#
.SYNOPSIS
    Runs one VmQuiesce operation in this (fresh) process and prints one JSON line: the seconds the
    cmdlet call took (module load excluded), the process's peak resident memory (VmHWM), and what
    the operation reports. Invoke-Bench.ps1 starts one process per run.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [ValidateSet('Import', 'Idle', 'Backup', 'Verify', 'Restore', 'GuestBackups', 'GuestRewrite', 'GuestPoint', 'FromRepository')] [string] $Operation,
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
    # For FromRepository: the test guest's folder (its kernel and initramfs boot the restored VM).
    [string] $GuestPath,
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

function Wait-GuestAgent {
    # Returns once the guest agent behind the socket answers guest-sync.
    param([string] $Socket)
    $agent = [VmQuiesce.Core.Sources.Qemu.GuestAgentClient]::Connect($Socket, [TimeSpan]::FromSeconds(300))
    try { $agent.Sync([TimeSpan]::FromSeconds(600)) } finally { $agent.Dispose() }
}

function Stop-Qemu {
    param([int] $ProcessId)
    $qemu = Get-Process -Id $ProcessId -ErrorAction Ignore
    if ($qemu) { $qemu.Kill(); $qemu.WaitForExit() }
}

$importClock = [Diagnostics.Stopwatch]::StartNew()
Import-Module $ModulePath -Force
$importClock.Stop()
$result = [ordered]@{ operation = $Operation; importSeconds = $importClock.Elapsed.TotalSeconds }
$clock = [Diagnostics.Stopwatch]::new()
# -ChunkSize for a backup that creates its repository, only when one was asked for (else the cmdlet's own default).
$chunking = @{}
if ($ChunkSize -gt 0) { $chunking.ChunkSize = $ChunkSize }
switch ($Operation) {
    'Import' { }
    'Idle' { }
    'Backup' {
        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('bench', [string[]] @($Image))
        $clock.Start()
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
            $cpuBefore = [Diagnostics.Process]::GetCurrentProcess().TotalProcessorTime
            $clock.Restart()
            $point = Invoke-VmQuiescedBackup -Vm $vm -Repository $Repository -Consistency FileSystem -PostThawScript $thawHook -ChangeTracking:($ChangeTracking -eq 'On') -Confirm:$false -WarningAction SilentlyContinue @chunking
            $clock.Stop()
            # CPU the process spent on it (all threads): less at the mercy of other load on the machine than the seconds.
            $result.cpuSeconds = ([Diagnostics.Process]::GetCurrentProcess().TotalProcessorTime - $cpuBefore).TotalSeconds
            $windows.Add($point.Quiesce.FrozenMilliseconds)
        }
        $result.frozenMilliseconds = $windows
        $result.invokeToThawMilliseconds = $toThaw
        if ($Count -gt 0) {
            # The last backup's own figures (seconds: its time): bytes read from the disks and how (change tracking), bytes new to the repository.
            $result.newChunkBytes = $point.NewChunkBytes
            $result.changeTracking = "$($point.ChangeTracking)"
            $result.bytesRead = ($point.Files | ForEach-Object { if ($_.ChangeTracking) { $_.GetChangeTracking().BytesRead } else { $_.Size } } | Measure-Object -Sum).Sum
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
    'GuestPoint' {
        # A small file written in the guest, then one quiesced backup: the point FromRepository starts and reads.
        $agent = [VmQuiesce.Core.Sources.Qemu.GuestAgentClient]::Connect($AgentSocket, [TimeSpan]::FromSeconds(60))
        try {
            $written = $agent.Exec('/bin/sh', [string[]] @('-c', 'echo bench-marker > /mnt/data/marker.txt && sync'), [TimeSpan]::FromSeconds(120))
            if (-not $written.Succeeded) { throw "The guest could not write its marker: $($written.StandardError)" }
        }
        finally { $agent.Dispose() }
        $point = Get-BackupVm -QmpSocket $QmpSocket -AgentSocket $AgentSocket -Name 'bench-guest' | Invoke-VmQuiescedBackup -Repository $Repository -Confirm:$false
        $result.id = $point.Id
    }
    'FromRepository' {
        # Issue 21, on the latest point of the test guest: started at once from the repository (to the guest agent
        # answering, then to every byte local), against a full restore followed by a boot; and one small file copied out.
        $point = Get-VmBackup -Repository $Repository -Latest
        $vm = @{
            Kernel = Join-Path $GuestPath 'vmlinuz'; Initrd = Join-Path $GuestPath 'initramfs.cpio.gz'; MemoryMiB = 128
            Append = 'console=ttyS0 quiet panic=-1 no_timer_check vmquiesce.disks=1 vmquiesce.agent=respawn'
        }
        $clock.Start()
        $startTime = [DateTime]::UtcNow
        $instant = $point | Start-VmInstantRestore -Destination (Join-Path $Destination 'instant') -VmOption $vm -Confirm:$false
        try {
            Wait-GuestAgent $instant.AgentSocket
            $result.instantToAgentSeconds = $clock.Elapsed.TotalSeconds
            $completed = $instant | Complete-VmInstantRestore
            if ($completed.State -ne 'Completed') { throw "The instant restore did not complete: $($completed.State) $($completed.Error)" }
            # When the disks became local, which may be before the agent answered (the copy runs while the guest boots).
            $result.instantToLocalSeconds = ($completed.CompletionTime - $startTime).TotalSeconds
            $result.streamedBytes = $completed.TotalBytes
        }
        finally {
            $instant | Stop-VmInstantRestore -Confirm:$false
            Stop-Qemu $instant.ProcessId
        }

        $restored = Join-Path $Destination 'restored'
        $clock.Restart()
        $null = $point | Restore-VmSnapshot -Destination $restored -SkipRevert -Force -Confirm:$false
        $result.restoreSeconds = $clock.Elapsed.TotalSeconds
        $disk = (Get-ChildItem -LiteralPath $restored -Recurse -File | Select-Object -First 1).FullName
        $format = (& qemu-img info -U --output=json -- $disk | ConvertFrom-Json).format
        $agentSocket = Join-Path $restored 'qga.sock'
        $pidFile = Join-Path $restored 'qemu.pid'
        & qemu-system-x86_64 -daemonize -pidfile $pidFile -accel tcg -m 128 -nodefaults -no-user-config -display none -no-reboot `
            -serial "file:$(Join-Path $restored 'console.log')" -kernel $vm.Kernel -initrd $vm.Initrd -append $vm.Append `
            -drive "if=none,id=disk0,file=$($disk.Replace(',', ',,')),format=$format" -device virtio-blk-pci,drive=disk0 `
            -device virtio-serial-pci -chardev "socket,id=qga0,path=$($agentSocket.Replace(',', ',,')),server=on,wait=off" `
            -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0
        if ($LASTEXITCODE -ne 0) { throw "QEMU did not start the restored disk (exit code $LASTEXITCODE)." }
        try {
            Wait-GuestAgent $agentSocket
            $result.restoreToAgentSeconds = $clock.Elapsed.TotalSeconds
        }
        finally { Stop-Qemu ([int] (Get-Content $pidFile)) }

        $clock.Restart()
        $item = $point | Restore-VmBackupItem -Path 'disk0/marker.txt' -Destination (Join-Path $Destination 'items') -Confirm:$false
        $clock.Stop()
        if ((Get-Content -Raw $item.Destination) -ne "bench-marker`n") { throw "Restore-VmBackupItem brought back other bytes than the marker's." }
        $result.itemSeconds = $clock.Elapsed.TotalSeconds
    }
}
$result.seconds = $clock.Elapsed.TotalSeconds
$result.peakResidentBytes = Get-PeakResidentBytes
$result | ConvertTo-Json -Compress -Depth 4
