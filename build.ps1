#Requires -Version 5.1
<#
.SYNOPSIS
    The one entry point for building, documenting, testing, packaging and demonstrating VmQuiesce.
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 -Task Test
#>
[CmdletBinding()]
param(
    [ValidateSet('Build', 'Docs', 'Test', 'Package', 'Clean', 'Demo')]
    [string[]] $Task = 'Build',

    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',

    # Runs only the Pester files and xunit classes whose names match (a quick inner loop).
    [string] $Filter
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Root = $PSScriptRoot
$Manifest = Import-PowerShellDataFile -Path (Join-Path $Root 'VmQuiesce.psd1')
$Version = $Manifest.ModuleVersion
$OutRoot = Join-Path $Root 'out'
$ModuleOut = Join-Path $OutRoot "VmQuiesce/$Version"
$TestResults = Join-Path $OutRoot 'TestResults'

function Invoke-Native {
    # Runs a native command and stops the build on a non-zero exit, naming the command.
    param([string] $FilePath, [string[]] $ArgumentList)
    & $FilePath @ArgumentList
    if ($LASTEXITCODE -ne 0) {
        throw "'$FilePath $($ArgumentList -join ' ')' failed with exit code $LASTEXITCODE."
    }
}

function Get-ChildPowerShell {
    # Pester and the demo run in a fresh process against the built module, never in this one:
    # the same edition as this process (Windows PowerShell 5.1 stays 5.1).
    if ($PSVersionTable.PSEdition -eq 'Desktop') {
        return @{ FilePath = Join-Path $PSHOME 'powershell.exe'; Prefix = @() }
    }
    $process = [Environment]::GetCommandLineArgs()[0]
    if ($process -like '*.dll') {
        # Running as the local dotnet tool: start the same pwsh.dll through dotnet.
        return @{ FilePath = (Get-Command dotnet).Source; Prefix = @($process) }
    }
    return @{ FilePath = (Get-Process -Id $PID).Path; Prefix = @() }
}

function Get-NuGetPackageFolder {
    if ($env:NUGET_PACKAGES) { return $env:NUGET_PACKAGES }
    $line = & dotnet nuget locals global-packages --list
    return ($line -replace '^global-packages:\s*', '').Trim()
}

function Install-DebianPackage {
    # Installs missing Debian packages when running as root on Debian; elsewhere says what is
    # missing and returns $false so the caller can report the dependent tests as skipped.
    param([string[]] $Name)
    $missing = @($Name | Where-Object {
        $status = & dpkg-query -W -f '${Status}' $_ 2>$null
        $status -notlike '*install ok installed*'
    })
    if (-not $missing) { return $true }
    $isDebianRoot = (Test-Path /etc/debian_version) -and ((& id -u) -eq '0')
    if (-not $isDebianRoot) {
        Write-Warning "Missing packages: $($missing -join ', '). Install them (Debian: apt-get install $($missing -join ' ')) to run the tests that need them."
        return $false
    }
    Write-Host "Installing Debian packages: $($missing -join ', ')"
    if (-not (Test-Path /var/lib/apt/lists/lock) -or -not (Get-ChildItem /var/lib/apt/lists -Filter '*Packages*' -ErrorAction SilentlyContinue)) {
        Invoke-Native apt-get @('update', '-qq')
    }
    & apt-get install -y -qq --no-install-recommends @missing
    if ($LASTEXITCODE -ne 0) {
        Invoke-Native apt-get @('update', '-qq')
        Invoke-Native apt-get (@('install', '-y', '-qq', '--no-install-recommends') + $missing)
    }
    return $true
}

function Invoke-Clean {
    if (Test-Path $OutRoot) { Remove-Item $OutRoot -Recurse -Force }
    Get-ChildItem $Root -Include bin, obj -Recurse -Directory |
        Where-Object { $_.FullName -notlike "*$([IO.Path]::DirectorySeparatorChar)node_modules*" } |
        Remove-Item -Recurse -Force
}

function Invoke-Build {
    $publish = Join-Path $OutRoot "obj/publish"
    Invoke-Native dotnet @('publish', (Join-Path $Root 'src/VmQuiesce/VmQuiesce.csproj'), '-c', $Configuration, '-o', $publish, '--nologo', '-v', 'quiet', "-p:Version=$Version")
    if (Test-Path $ModuleOut) { Remove-Item $ModuleOut -Recurse -Force }
    New-Item -ItemType Directory -Path $ModuleOut -Force | Out-Null
    # Ship only our own assemblies: PowerShell supplies System.Management.Automation.
    foreach ($file in 'VmQuiesce.dll', 'VmQuiesce.pdb', 'VmQuiesce.Core.dll', 'VmQuiesce.Core.pdb') {
        Copy-Item (Join-Path $publish $file) $ModuleOut
    }
    Copy-Item (Join-Path $Root 'VmQuiesce.psd1') $ModuleOut
    Copy-Item (Join-Path $Root 'src/VmQuiesce/VmQuiesce.Format.ps1xml') $ModuleOut
    Invoke-Docs
    Write-Host "Built VmQuiesce $Version into $ModuleOut"
}

function Invoke-Docs {
    $helpOut = Join-Path $ModuleOut 'en-US'
    New-Item -ItemType Directory -Path $helpOut -Force | Out-Null
    $source = Join-Path $Root 'en-US'
    $platyPS = Get-Module -ListAvailable -Name platyPS | Sort-Object Version -Descending | Select-Object -First 1
    if ($platyPS) {
        Import-Module $platyPS
        New-ExternalHelp -Path $source -OutputPath $helpOut -Force | Out-Null
    }
    else {
        Write-Verbose 'platyPS is not installed: compiling help with the project''s own converter.'
        # TEMPORARY until the help compiler lands: no help is compiled.
        $compiler = Join-Path $Root "src/VmQuiesce.HelpCompiler/VmQuiesce.HelpCompiler.csproj"
        if (-not (Test-Path $compiler)) { Write-Warning "The help compiler is not written yet: no help compiled."; return }
        Invoke-Native dotnet @('run', '--project', $compiler, '-c', $Configuration, '--', $source, $helpOut, 'VmQuiesce.dll')
    }
}

function Invoke-Package {
    $packageOut = Join-Path $OutRoot 'package'
    if (Test-Path $packageOut) { Remove-Item $packageOut -Recurse -Force }
    New-Item -ItemType Directory -Path $packageOut | Out-Null
    $repository = "VmQuiesceBuild-$PID"
    Register-PSResourceRepository -Name $repository -Uri $packageOut -Trusted
    try {
        Publish-PSResource -Path $ModuleOut -Repository $repository
    }
    finally {
        Unregister-PSResourceRepository -Name $repository
    }
    Get-ChildItem $packageOut -Filter *.nupkg | ForEach-Object { Write-Host "Packaged $($_.FullName)" }
}

function Get-TrxCount {
    param([string] $Path)
    [xml] $trx = Get-Content -Raw -Path $Path
    $ns = @{ t = 'http://microsoft.com/schemas/VisualStudio/TeamTest/2010' }
    $counters = (Select-Xml -Xml $trx -XPath '//t:ResultSummary/t:Counters' -Namespace $ns).Node
    $skipped = @(Select-Xml -Xml $trx -XPath '//t:UnitTestResult[@outcome="NotExecuted"]' -Namespace $ns | ForEach-Object {
        $reason = ($_.Node.Output.StdOut, $_.Node.Output.ErrorInfo.Message | Where-Object { $_ } | Select-Object -First 1)
        "$($_.Node.testName): $reason"
    })
    [pscustomobject]@{
        Passed  = [int] $counters.passed
        Failed  = [int] $counters.failed + [int] $counters.error + [int] $counters.timeout + [int] $counters.aborted
        Skipped = [int] $counters.notExecuted
        SkippedReasons = $skipped
    }
}

function Initialize-TestGuest {
    # Integration tests boot a real QEMU guest: build it once (cached under out/guest), or let the
    # builder record in out/guest/unavailable.txt why it cannot, which the guest tests skip with.
    $guestOut = Join-Path $OutRoot 'guest'
    & (Join-Path $Root 'tests/guest/Build-TestGuest.ps1') -OutputPath $guestOut
    $env:VMQUIESCE_TEST_GUEST = $guestOut
}

function Invoke-Test {
    Invoke-Build
    Initialize-TestGuest
    if (Test-Path $TestResults) { Remove-Item $TestResults -Recurse -Force }
    New-Item -ItemType Directory -Path $TestResults -Force | Out-Null

    $env:VMQUIESCE_TEST_OUT = $OutRoot

    $xunitArgs = @('test', (Join-Path $Root 'tests/VmQuiesce.Core.Tests/VmQuiesce.Core.Tests.csproj'), '-c', $Configuration, '--nologo',
        '--logger', 'trx;LogFileName=xunit.trx', '--logger', 'console;verbosity=minimal', '--results-directory', $TestResults)
    if ($Filter) { $xunitArgs += @('--filter', "FullyQualifiedName~$Filter") }
    & dotnet @xunitArgs
    $xunitExit = $LASTEXITCODE
    $trxPath = Join-Path $TestResults 'xunit.trx'
    $xunit = if (Test-Path $trxPath) { Get-TrxCount $trxPath } else {
        Write-Warning "xunit produced no results (exit code $xunitExit)."
        [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0; SkippedReasons = @() }
    }

    $pesterModule = Join-Path (Get-NuGetPackageFolder) 'pester/5.7.1/tools/Pester.psd1'
    if (-not (Test-Path $pesterModule)) { throw "Pester 5.7.1 was not restored to $pesterModule; run 'dotnet restore tests/VmQuiesce.Core.Tests'." }
    $child = Get-ChildPowerShell
    $summaryPath = Join-Path $TestResults 'pester-summary.json'
    $runner = Join-Path $Root 'tests/pester/Invoke-PesterRun.ps1'
    $childArgs = $child.Prefix + @('-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-File', $runner,
        '-PesterModule', $pesterModule, '-ModulePath', (Join-Path $ModuleOut 'VmQuiesce.psd1'),
        '-ResultPath', (Join-Path $TestResults 'pester.xml'), '-SummaryPath', $summaryPath)
    if ($Filter) { $childArgs += @('-Filter', $Filter) }
    & $child.FilePath @childArgs
    $pester = if (Test-Path $summaryPath) { Get-Content -Raw $summaryPath | ConvertFrom-Json } else {
        Write-Warning "Pester produced no summary (exit code $LASTEXITCODE)."
        [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0; SkippedReasons = @() }
    }

    $skippedReasons = @($xunit.SkippedReasons) + @($pester.SkippedReasons) | Where-Object { $_ }
    if ($skippedReasons) {
        Write-Host 'Skipped tests, and why:'
        $skippedReasons | ForEach-Object { Write-Host "  - $_" }
    }
    Write-Host "xunit: $($xunit.Passed) passed, $($xunit.Failed) failed, $($xunit.Skipped) skipped; Pester: $($pester.Passed) passed, $($pester.Failed) failed, $($pester.Skipped) skipped. Results in $TestResults"
    $passed = $xunit.Passed + $pester.Passed
    $failed = $xunit.Failed + $pester.Failed
    $skipped = $xunit.Skipped + $pester.Skipped
    $line = "$passed passed, $failed failed"
    if ($skipped) { $line += ", $skipped skipped" }
    Write-Host $line
    if ($failed -gt 0 -or $xunitExit -ne 0 -and $xunit.Failed -eq 0 -and $xunit.Passed -eq 0) { exit 1 }
}

foreach ($step in $Task) {
    switch ($step) {
        'Clean' { Invoke-Clean }
        'Build' { Invoke-Build }
        'Docs' { Invoke-Docs }
        'Test' { Invoke-Test }
        'Package' { Invoke-Build; Invoke-Package }
        'Demo' { Invoke-Build; & (Get-ChildPowerShell).FilePath @((Get-ChildPowerShell).Prefix + @('-NoProfile', '-File', (Join-Path $Root 'tests/demo/Invoke-Demo.ps1'), '-ModulePath', (Join-Path $ModuleOut 'VmQuiesce.psd1'))) }
    }
}
