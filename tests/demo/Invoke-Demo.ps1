<#
.SYNOPSIS
    The README's "main job" command: a quiesced backup of a real QEMU guest, end to end, against the built module.
.DESCRIPTION
    build.ps1 -Task Demo builds the module and the test guest, then runs this in a fresh process. It boots the
    guest (QEMU, software emulation), writes data inside it, backs it up (freeze -> snapshot -> thaw -> copy),
    changes a little data, backs up again to show how little the second restore point stores, verifies both,
    lists them and restores the first to another folder. Then it shows step 1 of the classic recipe, the
    VSS writer configuration.
    Everything lives in a temporary folder that is removed at the end.
#>
param([Parameter(Mandatory)] [string] $ModulePath)

$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force

function Write-Step([string] $Text) { Write-Host "`n== $Text" -ForegroundColor Cyan }

function Invoke-InGuest {
    # Runs a shell command inside the guest through its QEMU guest agent (as a guest-side hook would).
    param($Guest, [string] $Command)
    $agent = [VmQuiesce.Core.Sources.Qemu.GuestAgentClient]::Connect($Guest.AgentSocketPath, [TimeSpan]::FromSeconds(60))
    try {
        $result = $agent.Exec('/bin/sh', [string[]] @('-c', $Command), [TimeSpan]::FromSeconds(120))
        if (-not $result.Succeeded) { throw "'$Command' failed in the guest: $($result.StandardError)" }
        $result.StandardOutput
    }
    finally {
        $agent.Dispose()
    }
}

$unavailable = $null
if (-not $env:VMQUIESCE_TEST_GUEST) {
    $unavailable = 'VMQUIESCE_TEST_GUEST is not set: run this through build.ps1 -Task Demo'
}
else {
    Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1') -Force
    $unavailable = Get-TestGuestUnavailableReason
}

if ($unavailable) {
    Write-Warning "The backup part of the demo needs the QEMU test guest, which is unavailable here: $unavailable"
}
else {
    $repository = Join-Path ([IO.Path]::GetTempPath()) "vmquiesce-demo-repo-$PID"
    Write-Step 'Boot a Linux guest under QEMU with the QEMU guest agent (software emulation: a few seconds)'
    $guest = Start-TestGuest -DiskSizeMB 256
    try {
        Write-Host "Guest ready after $([math]::Round($guest.BootSeconds, 1)) s; QMP socket $($guest.QmpSocketPath)"

        Write-Step 'The VM as VmQuiesce sees it, and whether it can be quiesced'
        $vm = Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -Name demo-vm
        $vm | Format-Table | Out-Host
        $vm | Test-VmQuiesceReadiness | Format-Table | Out-Host

        Write-Step 'Inside the guest: 48 MiB of application data, the last line written just before the backup'
        Invoke-InGuest $guest 'dd if=/dev/urandom of=/mnt/data/app.db bs=1M count=48 2>/dev/null; echo "order 1001 committed" > /mnt/data/journal.txt'

        Write-Step 'First backup: freeze the file system, snapshot, thaw, copy into a deduplicating repository'
        $first = $vm | Invoke-VmQuiescedBackup -Repository $repository -Consistency FileSystem
        $first | Format-List | Out-Host

        Write-Step 'Inside the guest: change 1 MiB of the database and add a journal line'
        Invoke-InGuest $guest 'dd if=/dev/urandom of=/mnt/data/app.db bs=1M count=1 seek=7 conv=notrunc 2>/dev/null; echo "order 1002 committed" >> /mnt/data/journal.txt'

        Write-Step 'Second backup: only chunks not already in the repository are stored'
        $second = $vm | Invoke-VmQuiescedBackup -Repository $repository -Consistency FileSystem
        Write-Host ("The second restore point is a full image of {0:N0} MiB that stored {1:N1} MiB of new data ({2:P1})." -f
            ($second.Size / 1MB), ($second.StoredBytes / 1MB), ($second.StoredBytes / [math]::Max(1, $second.Size)))

        Write-Step 'Verify: every chunk of every restore point re-read and re-hashed'
        Get-VmBackup -Repository $repository | Test-VmBackup | Format-Table | Out-Host

        Write-Step 'The restore points, with the consistency each one actually reached'
        Get-VmBackup -Repository $repository | Format-Table | Out-Host

        Write-Step 'Restore the first point to another folder: chunks re-verified, holes kept sparse, nothing replaced until all is checked'
        $restored = Join-Path $repository 'restored'
        $result = Get-VmBackup -Repository $repository -Id $first.Id | Restore-VmSnapshot -Destination $restored -Confirm:$false
        $result | Format-List | Out-Host
    }
    finally {
        $guest | Stop-TestGuest
        Remove-Item $repository -Recurse -Force -ErrorAction SilentlyContinue
    }
}

& (Join-Path $PSScriptRoot 'Show-VssWriterConfig.ps1') -ModulePath $ModulePath
