<#
.SYNOPSIS
    The README's "main job" command: shows VmQuiesce's capabilities end to end against the built module.
.DESCRIPTION
    Runs in a fresh process (build.ps1 -Task Demo starts it) in a temporary folder that it removes at the end.
    Step 1 of the classic recipe: the VMware VSS writer configuration (vmvsswriter.cfg).
#>
param([Parameter(Mandatory)] [string] $ModulePath)

$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force

function Write-Step([string] $Text) { Write-Host "`n== $Text" -ForegroundColor Cyan }

$demoRoot = Join-Path ([IO.Path]::GetTempPath()) "vmquiesce-demo-$PID"
$serverFolder = New-Item -ItemType Directory -Path (Join-Path $demoRoot 'VMware Server') -Force
try {
    Write-Step 'A VMware Server folder without vmvsswriter.cfg: the writer keeps existing snapshots'
    Get-VssWriterConfig -Path $serverFolder.FullName | Format-List | Out-Host

    Write-Step 'Is the writer allowed to overwrite snapshots? (Test-VssWriterConfig -Detailed)'
    Test-VssWriterConfig -Path $serverFolder.FullName -OverwriteSnapshots $true -Detailed | Format-Table | Out-Host

    Write-Step 'What would change (-WhatIf): nothing is written'
    Set-VssWriterConfig -Path $serverFolder.FullName -OverwriteSnapshots $true -WhatIf

    Write-Step 'Allow it (warned: a snapshot taken by hand will be overwritten); -Confirm:$false as a script would'
    Set-VssWriterConfig -Path $serverFolder.FullName -OverwriteSnapshots $true -Confirm:$false -PassThru | Format-List | Out-Host
    Write-Host (Get-Content -Raw (Join-Path $serverFolder.FullName 'vmvsswriter.cfg'))

    Write-Step 'Setting it again changes nothing: the file is not rewritten'
    $before = (Get-Item (Join-Path $serverFolder.FullName 'vmvsswriter.cfg')).LastWriteTimeUtc
    Set-VssWriterConfig -Path $serverFolder.FullName -OverwriteSnapshots $true -Confirm:$false
    $after = (Get-Item (Join-Path $serverFolder.FullName 'vmvsswriter.cfg')).LastWriteTimeUtc
    Write-Host "Unchanged timestamp: $($before -eq $after)"
    Write-Host "Test-VssWriterConfig now: $(Test-VssWriterConfig -Path $serverFolder.FullName -OverwriteSnapshots $true)"

    Write-Step 'Bad input is refused before anything changes'
    try {
        Set-VssWriterConfig -Path $serverFolder.FullName -Setting @{ 'vmwriter.note' = "two`nlines" } -Confirm:$false
    }
    catch {
        Write-Host "Refused: [$($_.FullyQualifiedErrorId)] $($_.Exception.Message)"
    }

    Write-Step 'Remove the file (the previous version stays as vmvsswriter.cfg.bak)'
    Remove-VssWriterConfig -Path $serverFolder.FullName -Confirm:$false
    Get-ChildItem $serverFolder.FullName | Select-Object Name, Length | Format-Table | Out-Host
}
finally {
    Remove-Item $demoRoot -Recurse -Force -ErrorAction SilentlyContinue
}
