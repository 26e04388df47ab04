<#
.SYNOPSIS
    Boots and stops the real test guest (built by Build-TestGuest.ps1) for Pester tests and the demo.
.DESCRIPTION
    The same guest and QEMU command line as the xunit fixture
    tests/VmQuiesce.Core.Tests/TestGuest/TestGuestVm.cs: ext4 data disks, a QMP socket, a guest-agent
    socket, the serial console in console.log; ready once the guest prints VMQUIESCE-GUEST-READY.
#>
Set-StrictMode -Version Latest

$ReadyMarker = 'VMQUIESCE-GUEST-READY'
$FailedMarker = 'VMQUIESCE-GUEST-FAILED'

function Get-TestGuestUnavailableReason {
    <#
    .SYNOPSIS
        $null when test guests can boot here; otherwise why not (tests skip with it).
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param()
    $folder = $env:VMQUIESCE_TEST_GUEST
    if (-not $folder) { return 'VMQUIESCE_TEST_GUEST is not set: run through build.ps1 -Task Test' }
    if (-not (Get-Variable IsLinux -ValueOnly -ErrorAction Ignore)) { return 'The test guest runs under QEMU on a Linux host only.' }
    $unavailable = Join-Path $folder 'unavailable.txt'
    if (Test-Path $unavailable) { return (Get-Content -Raw $unavailable).Trim() }
    if (-not (Test-Path (Join-Path $folder 'manifest.json'))) {
        return "No test guest was built in $folder (no manifest.json): run through build.ps1 -Task Test"
    }
    if (-not (Get-Command qemu-system-x86_64 -CommandType Application -ErrorAction Ignore)) {
        return 'qemu-system-x86_64 is not on PATH (Debian: apt-get install qemu-system-x86).'
    }
    return $null
}

function Get-TestGuestSkipReason {
    <#
    .SYNOPSIS
        What guest tests skip with: $null when test guests can boot here, or when VMQUIESCE_REQUIRE_GUEST=1
        (CI sets it in .ci/run) so that an unavailable guest fails them, through Start-TestGuest, instead.
    #>
    [CmdletBinding()]
    [OutputType([string])]
    param()
    if ($env:VMQUIESCE_REQUIRE_GUEST -eq '1') { return $null }
    return Get-TestGuestUnavailableReason
}

function Invoke-HostTool {
    param([string] $FilePath, [string[]] $ArgumentList)
    $output = & $FilePath @ArgumentList 2>&1 | ForEach-Object { "$_" }
    if ($LASTEXITCODE -ne 0) { throw "'$FilePath $($ArgumentList -join ' ')' failed with exit code $LASTEXITCODE`: $($output -join ' ')" }
}

function ConvertTo-QemuPath {
    # QEMU's option syntax separates with commas; a literal comma is written twice.
    param([string] $Path)
    return $Path.Replace(',', ',,')
}

function New-GuestDisk {
    # An ext4 disk, empty or holding a copy of -ContentFolder; qcow2 is made as raw, formatted, then converted (mkfs writes raw only).
    param([string] $Path, [long] $SizeBytes, [string] $Format, [string] $Label, [string] $ContentFolder)
    $raw = if ($Format -eq 'raw') { $Path } else { "$Path.raw" }
    try {
        $stream = [IO.FileStream]::new($raw, [IO.FileMode]::CreateNew)
        try { $stream.SetLength($SizeBytes) } finally { $stream.Dispose() }
        Invoke-HostTool mkfs.ext4 @(@('-q', '-F', '-L', $Label, '-E', 'lazy_itable_init=0,lazy_journal_init=0') + $(if ($ContentFolder) { @('-d', $ContentFolder) }) + @($raw))
        if ($Format -eq 'qcow2') { Invoke-HostTool qemu-img @('convert', '-f', 'raw', '-O', 'qcow2', $raw, $Path) }
    }
    finally {
        if ($Format -eq 'qcow2' -and (Test-Path $raw)) { Remove-Item $raw }
    }
}

function Start-TestGuest {
    <#
    .SYNOPSIS
        Creates a work folder with data disks, starts QEMU (TCG) and, unless -NoWait, waits until the
        guest agent is up. Returns the guest; always pair with Stop-TestGuest.
    .EXAMPLE
        $guest = Start-TestGuest -DiskCount 2
        try { ... $guest.QmpSocketPath ... } finally { $guest | Stop-TestGuest }
    #>
    [CmdletBinding()]
    [OutputType('VmQuiesce.TestGuest')]
    param(
        # Data disks vda, vdb, ... mounted on /mnt/data, /mnt/data1, ...
        [ValidateRange(0, 16)] [int] $DiskCount = 1,
        [ValidateRange(16, 65536)] [int] $DiskSizeMB = 64,
        # The first data disk starts holding a copy of this folder's files (mkfs.ext4 -d; holes stay holes).
        [string] $ContentFolder,
        [ValidateSet('qcow2', 'raw')] [string] $DiskFormat = 'qcow2',
        # 128 as measured; 96 boots with a smaller TCG cache; 64 does not boot.
        [ValidateRange(96, 4096)] [int] $MemoryMB = 128,
        [ValidateRange(1, 3600)] [int] $TimeoutSeconds = 60,
        # Returns once QEMU runs; Wait-TestGuest waits (boot several guests in parallel).
        [switch] $NoWait,
        # By default the guest restarts a qemu-ga that died (console: VMQUIESCE-GUEST-AGENT-RESTARTED).
        [switch] $NoAgentRespawn,
        # QEMU's -name and -uuid (none by default: QEMU then has no name and reports an all-zero UUID).
        [string] $VmName,
        [guid] $Uuid
    )
    $reason = Get-TestGuestUnavailableReason
    if ($reason) {
        $required = if ($env:VMQUIESCE_REQUIRE_GUEST -eq '1') { ' (VMQUIESCE_REQUIRE_GUEST=1 requires it)' } else { '' }
        throw "The test guest is unavailable$required`: $reason"
    }

    $folder = Join-Path ([IO.Path]::GetTempPath()) ('vmq-guest-' + [guid]::NewGuid().ToString('N').Substring(0, 12))
    $guest = [pscustomobject]@{
        PSTypeName      = 'VmQuiesce.TestGuest'
        WorkFolder      = $folder
        QmpSocketPath   = Join-Path $folder 'qmp.sock'
        AgentSocketPath = Join-Path $folder 'qga.sock'
        ConsoleLog      = Join-Path $folder 'console.log'
        QemuLog         = Join-Path $folder 'qemu.log'
        DiskPaths       = [string[]] @(for ($i = 0; $i -lt $DiskCount; $i++) { Join-Path $folder "disk$i.$DiskFormat" })
        DriveIds        = [string[]] @(for ($i = 0; $i -lt $DiskCount; $i++) { "disk$i" })
        Process         = $null
        ReadyLine       = $null
        BootSeconds     = $null
        TimeoutSeconds  = $TimeoutSeconds
        Stopwatch       = $null
    }
    if ([Text.Encoding]::UTF8.GetByteCount($guest.QmpSocketPath) -gt 107) {
        throw "The socket path $($guest.QmpSocketPath) is too long for a unix socket; set TMPDIR to a shorter folder."
    }
    try {
        New-Item -ItemType Directory -Path $folder | Out-Null
        for ($i = 0; $i -lt $DiskCount; $i++) {
            New-GuestDisk -Path $guest.DiskPaths[$i] -SizeBytes ($DiskSizeMB * 1MB) -Format $DiskFormat -Label "data$i" -ContentFolder $(if ($i -eq 0) { $ContentFolder })
        }
        # no_timer_check: on a loaded host the kernel's IO-APIC timer probe can miss its ticks under TCG and panic the boot.
        $qemuArgs = @(
            '-accel', $(if ($MemoryMB -lt 128) { 'tcg,tb-size=32' } else { 'tcg' }),
            '-m', "$MemoryMB", '-smp', '1', '-nodefaults', '-no-user-config', '-display', 'none', '-no-reboot',
            '-serial', "file:$(ConvertTo-QemuPath $guest.ConsoleLog)",
            '-kernel', (Join-Path $env:VMQUIESCE_TEST_GUEST 'vmlinuz'),
            '-initrd', (Join-Path $env:VMQUIESCE_TEST_GUEST 'initramfs.cpio.gz'),
            '-append', "console=ttyS0 quiet panic=-1 no_timer_check vmquiesce.disks=$DiskCount vmquiesce.agent=$(if ($NoAgentRespawn) { 'once' } else { 'respawn' })")
        for ($i = 0; $i -lt $DiskCount; $i++) {
            $qemuArgs += @('-drive', "if=none,id=disk$i,node-name=disk${i}fmt,file=$(ConvertTo-QemuPath $guest.DiskPaths[$i]),format=$DiskFormat",
                '-device', "virtio-blk-pci,drive=disk$i")
        }
        if ($VmName) { $qemuArgs += @('-name', "guest=$(ConvertTo-QemuPath $VmName)") }
        if ($Uuid) { $qemuArgs += @('-uuid', "$Uuid") }
        $qemuArgs += @('-device', 'virtio-serial-pci',
            '-chardev', "socket,id=qga0,path=$(ConvertTo-QemuPath $guest.AgentSocketPath),server=on,wait=off",
            '-device', 'virtserialport,chardev=qga0,name=org.qemu.guest_agent.0,id=qgaport',
            '-qmp', "unix:$(ConvertTo-QemuPath $guest.QmpSocketPath),server=on,wait=off")

        # A shell execs QEMU only to send its output straight into a file; the process is QEMU after the exec.
        $startInfo = [Diagnostics.ProcessStartInfo]::new('/bin/sh')
        $startInfo.UseShellExecute = $false
        $startInfo.WorkingDirectory = $folder
        foreach ($argument in @('-c', 'exec "$0" "$@" </dev/null >>"$VMQUIESCE_QEMU_LOG" 2>&1', 'qemu-system-x86_64') + $qemuArgs) {
            $startInfo.ArgumentList.Add($argument)
        }
        $startInfo.Environment['VMQUIESCE_QEMU_LOG'] = $guest.QemuLog
        Set-Content -Path $guest.QemuLog -Value "qemu-system-x86_64 $($qemuArgs -join ' ')"
        $guest.Stopwatch = [Diagnostics.Stopwatch]::StartNew()
        $guest.Process = [Diagnostics.Process]::Start($startInfo)
        if (-not $NoWait) { Wait-TestGuest -Guest $guest }
        return $guest
    }
    catch {
        Stop-TestGuest -Guest $guest
        throw
    }
}

function Wait-TestGuest {
    <#
    .SYNOPSIS
        Waits until the guest prints its readiness line; fails at once, with the console and QEMU
        output, when QEMU exits or the guest reports a failure.
    #>
    [CmdletBinding()]
    param([Parameter(Mandatory, ValueFromPipeline)] [PSTypeName('VmQuiesce.TestGuest')] $Guest)
    process {
        $deadline = [Diagnostics.Stopwatch]::StartNew()
        while ($true) {
            $console = if (Test-Path $Guest.ConsoleLog) { [IO.File]::ReadAllText($Guest.ConsoleLog) } else { '' }
            # Complete lines only: QEMU may have written part of the last one (a marker's line cut short).
            $lines = $console.Substring(0, $console.LastIndexOf("`n") + 1) -split "`r?`n"
            $ready = $lines | Where-Object { $_.StartsWith($ReadyMarker) } | Select-Object -First 1
            if ($ready) {
                $Guest.ReadyLine = $ready
                if ($null -eq $Guest.BootSeconds) { $Guest.BootSeconds = $Guest.Stopwatch.Elapsed.TotalSeconds }
                return
            }
            $failure = $lines | Where-Object { $_.StartsWith($FailedMarker) } | Select-Object -First 1
            $problem = if ($failure) { "could not get ready: $failure" }
            elseif ($Guest.Process.HasExited) { "ended: QEMU exited with code $($Guest.Process.ExitCode) before it was ready" }
            elseif ($deadline.Elapsed.TotalSeconds -gt $Guest.TimeoutSeconds) { "did not print $ReadyMarker within $($Guest.TimeoutSeconds) s" }
            if ($problem) {
                $qemu = if (Test-Path $Guest.QemuLog) { Get-Content -Raw $Guest.QemuLog } else { '' }
                throw "The test guest in $($Guest.WorkFolder) $problem.`n--- console ---`n$console`n--- QEMU ---`n$qemu"
            }
            # Doubles as the poll interval: returns early when QEMU exits.
            $Guest.Process.WaitForExit(50) | Out-Null
        }
    }
}

function Stop-TestGuest {
    <#
    .SYNOPSIS
        Kills QEMU if it still runs and deletes the guest's work folder.
    #>
    [CmdletBinding()]
    param([Parameter(Mandatory, ValueFromPipeline)] [PSTypeName('VmQuiesce.TestGuest')] $Guest)
    process {
        if ($Guest.Process) {
            if (-not $Guest.Process.HasExited) { $Guest.Process.Kill($true) }
            $Guest.Process.WaitForExit()
        }
        if (Test-Path $Guest.WorkFolder) { Remove-Item $Guest.WorkFolder -Recurse -Force }
    }
}

Export-ModuleMember -Function Get-TestGuestUnavailableReason, Get-TestGuestSkipReason, Start-TestGuest, Wait-TestGuest, Stop-TestGuest
