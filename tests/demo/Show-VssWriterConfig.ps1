<#
.SYNOPSIS
    Step 1 of the classic recipe, for the demo: the VMware VSS writer configuration (vmvsswriter.cfg)
    in a temporary "install folder".
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath -Force

function Write-Step {
    param([string] $Text)
    Write-Host ''
    Write-Host "== $Text" -ForegroundColor Cyan
}

$folder = Join-Path ([IO.Path]::GetTempPath()) ("VmQuiesce demo " + [guid]::NewGuid().ToString('N').Substring(0, 8))
$null = New-Item -ItemType Directory -Path $folder
$file = Join-Path $folder 'vmvsswriter.cfg'
try {
    Write-Step "A VMware Server install folder without vmvsswriter.cfg: $folder"
    Get-VssWriterConfig -Path $folder | Format-Table | Out-Host

    Write-Step 'What must change so the VSS writer may overwrite VM snapshots?'
    Test-VssWriterConfig -Path $folder -OverwriteSnapshots $true -Detailed | Format-Table | Out-Host

    Write-Step 'Set it (a script confirms the High-impact change with -Confirm:$false; the warning still shows)'
    Set-VssWriterConfig -Path $folder -OverwriteSnapshots $true -Confirm:$false -PassThru | Format-List | Out-Host
    Get-Content -LiteralPath $file | Out-Host

    Write-Step 'An administrator adds a comment by hand; a later change keeps it, byte for byte'
    [IO.File]::WriteAllText($file, "# Changed for the nightly backup, ticket 4711`r`n" + [IO.File]::ReadAllText($file))
    Set-VssWriterConfig -Path $folder -Setting @{ 'vmwriter.logLevel' = 'verbose' }
    Get-Content -LiteralPath $file | Out-Host
    Write-Host "Previous version kept as $(Split-Path -Leaf "$file.bak")"

    Write-Step 'Running the same command again writes nothing (idempotent)'
    $before = (Get-Item -LiteralPath $file).LastWriteTimeUtc
    Set-VssWriterConfig -Path $folder -Setting @{ 'vmwriter.logLevel' = 'verbose' } -Verbose
    Write-Host "Timestamp unchanged: $($before -eq (Get-Item -LiteralPath $file).LastWriteTimeUtc)"
    Write-Host "In the desired state: $(Test-VssWriterConfig -Path $folder -OverwriteSnapshots $true -Setting @{ 'vmwriter.logLevel' = 'verbose' })"

    Write-Step 'Bad input is refused before anything is written'
    try {
        Set-VssWriterConfig -Path $folder -Setting @{ 'vmwriter.note' = 'x" vmwriter.overwriteSnapshots = "FALSE' }
    }
    catch {
        Write-Host "$($_.FullyQualifiedErrorId): $($_.Exception.Message)"
    }

    Write-Step 'Remove it (kept as vmvsswriter.cfg.bak)'
    Remove-VssWriterConfig -Path $folder -Confirm:$false
    Get-ChildItem -LiteralPath $folder | Format-Table Name, Length | Out-Host
}
finally {
    Remove-Item -LiteralPath $folder -Recurse -Force
}
