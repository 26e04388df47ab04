<#
.SYNOPSIS
    Measures the test guest's boot-to-ready time (QEMU start to VMQUIESCE-GUEST-READY on the console):
    guests booted one at a time, then groups booted in parallel. Needs VMQUIESCE_TEST_GUEST (build.ps1
    -Task Test sets it; or point it at out/guest after running Build-TestGuest.ps1).
.EXAMPLE
    $env:VMQUIESCE_TEST_GUEST = './out/guest'; ./tests/guest/Measure-TestGuestBoot.ps1 -Runs 5
#>
[CmdletBinding()]
param(
    [ValidateRange(1, 100)] [int] $Runs = 5,
    [int[]] $ParallelCounts = @(2, 4),
    [ValidateRange(96, 4096)] [int] $MemoryMB = 128
)
$ErrorActionPreference = 'Stop'
Import-Module (Join-Path $PSScriptRoot 'TestGuest.psm1') -Force

function Format-Seconds {
    param([string] $What, [double[]] $Seconds)
    $sorted = @($Seconds | Sort-Object)
    $median = if ($sorted.Count % 2) { $sorted[[int][math]::Floor($sorted.Count / 2)] } else { ($sorted[$sorted.Count / 2 - 1] + $sorted[$sorted.Count / 2]) / 2 }
    [pscustomobject]@{
        What    = $What
        Samples = $sorted.Count
        Min     = [math]::Round($sorted[0], 2)
        Median  = [math]::Round($median, 2)
        Max     = [math]::Round($sorted[-1], 2)
    }
}

$sequential = for ($run = 0; $run -lt $Runs; $run++) {
    $guest = Start-TestGuest -MemoryMB $MemoryMB
    try { $guest.BootSeconds } finally { $guest | Stop-TestGuest }
}
Format-Seconds "one guest, -m $MemoryMB" $sequential

foreach ($count in $ParallelCounts) {
    $samples = for ($run = 0; $run -lt $Runs; $run++) {
        $guests = @()
        try {
            for ($i = 0; $i -lt $count; $i++) { $guests += Start-TestGuest -NoWait -MemoryMB $MemoryMB }
            $guests | Wait-TestGuest
            $guests | ForEach-Object BootSeconds
        }
        finally {
            $guests | Stop-TestGuest
        }
    }
    Format-Seconds "$count guests in parallel, -m $MemoryMB" $samples
}
