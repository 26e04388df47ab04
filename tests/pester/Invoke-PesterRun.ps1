<#
.SYNOPSIS
    Runs the Pester suite in this fresh process against the built module and writes a summary
    that build.ps1 adds to the xunit counts.
#>
param(
    [Parameter(Mandatory)] [string] $PesterModule,
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $ResultPath,
    [Parameter(Mandatory)] [string] $SummaryPath,
    [string] $Filter
)
$ErrorActionPreference = 'Stop'
Import-Module $PesterModule -MinimumVersion 5.7.1

# Every test file imports the module from here; tests never load the source tree.
$env:VMQUIESCE_MODULE_PATH = $ModulePath

$configuration = New-PesterConfiguration
$configuration.Run.Path = $PSScriptRoot
$configuration.Run.PassThru = $true
$configuration.Run.Exit = $false
$configuration.Output.Verbosity = 'Normal'
$configuration.TestResult.Enabled = $true
$configuration.TestResult.OutputFormat = 'NUnitXml'
$configuration.TestResult.OutputPath = $ResultPath
if ($Filter) {
    $configuration.Run.Path = @(Get-ChildItem $PSScriptRoot -Filter "*$Filter*.Tests.ps1" | ForEach-Object FullName)
    if (-not $configuration.Run.Path.Value) {
        # The filter names only xunit classes: nothing to run here, which is not a failure.
        Write-Host "No Pester file matches '*$Filter*.Tests.ps1'."
        [pscustomobject]@{ Passed = 0; Failed = 0; Skipped = 0; SkippedReasons = @(); Failures = @() } | ConvertTo-Json | Set-Content -Path $SummaryPath -Encoding utf8
        exit 0
    }
}

$result = Invoke-Pester -Configuration $configuration

$skippedReasons = @($result.Skipped | ForEach-Object {
    $because = @($_.ErrorRecord | ForEach-Object { $_.ToString() }) -join '; '
    if (-not $because) { $because = 'skipped without a reason (a test must say why)' }
    "$($_.ExpandedPath): $because"
})
$failures = @($result.Failed | ForEach-Object {
    $message = @($_.ErrorRecord | ForEach-Object { $_.ToString() }) -join '; '
    "$($_.ExpandedPath): $(($message -split "`n" | Select-Object -First 3) -join ' ')"
}) + @($result.FailedBlocks | ForEach-Object { "$($_.ExpandedPath): the block failed in its setup or teardown" }) +
    @($result.FailedContainers | ForEach-Object { "$($_.Item): the file failed to run" })
$failed = $result.FailedCount + $result.FailedBlocksCount + $result.FailedContainersCount
[pscustomobject]@{
    Passed         = $result.PassedCount
    Failed         = $failed
    Skipped        = $result.SkippedCount
    SkippedReasons = $skippedReasons
    Failures       = $failures
} | ConvertTo-Json | Set-Content -Path $SummaryPath -Encoding utf8
exit ([int]($failed -gt 0))
