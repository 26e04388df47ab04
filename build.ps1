#Requires -Version 5.1
<#
.SYNOPSIS
    The one entry point for building, documenting, testing, packaging and demonstrating VmQuiesce.
.EXAMPLE
    dotnet tool restore && dotnet pwsh ./build.ps1 -Task Test
#>
[CmdletBinding()]
param(
    [ValidateSet('Build', 'Docs', 'Test', 'Package', 'Clean', 'Demo', 'Bench', 'Chaos')]
    [string[]] $Task = 'Build',

    [ValidateSet('Debug', 'Release')]
    [string] $Configuration = 'Release',

    # Runs only the Pester files and xunit classes whose names match (a quick inner loop).
    [string] $Filter,

    # Tests the module and package already in out/ (CI builds once, then tests on every platform).
    [switch] $SkipBuild,

    # Chaos: faults per scenario, and the seed that repeats a run's choices (0: a new one, printed).
    [ValidateRange(1, 1000)] [int] $Iterations = 4,
    [int] $Seed = 0
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

$Root = $PSScriptRoot
$Manifest = Import-PowerShellDataFile -Path (Join-Path $Root 'VmQuiesce.psd1')
$Version = $Manifest.ModuleVersion
$OutRoot = Join-Path $Root 'out'
$ModuleOut = Join-Path $OutRoot "VmQuiesce/$Version"
$TestResults = Join-Path $OutRoot 'TestResults'
$PackageOut = Join-Path $OutRoot 'package'
$Built = $false
# The hosts whose builds carry ReadyToRun code (CI tests the module on both); elsewhere the module stays IL-only.
$ReadyToRunHosts = 'linux-x64', 'win-x64'
# The assemblies of the net8.0 build precompiled: ours and ZstdSharp (every backup and restore runs them), and the
# AWS SDK (an s3:// repository's first call JITs about 2,000 of its methods). Not BouncyCastle: Argon2id's own
# time dwarfs the JIT it would save, for 12 MB more.
$ReadyToRunAssemblies = 'VmQuiesce', 'VmQuiesce.Core', 'ZstdSharp', 'AWSSDK.Core', 'AWSSDK.S3'

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

function Invoke-Clean {
    if (Test-Path $OutRoot) { Remove-Item $OutRoot -Recurse -Force }
    Get-ChildItem $Root -Include bin, obj -Recurse -Directory |
        Where-Object { $_.FullName -notlike "*$([IO.Path]::DirectorySeparatorChar)node_modules*" } |
        Remove-Item -Recurse -Force
}

function Invoke-Build {
    if (Test-Path $ModuleOut) { Remove-Item $ModuleOut -Recurse -Force }
    New-Item -ItemType Directory -Path $ModuleOut -Force | Out-Null
    # VmQuiesce.psm1 loads bin/net472 in Windows PowerShell 5.1 and bin/net8.0 in PowerShell 7.4+.
    foreach ($framework in 'net472', 'net8.0') {
        $publish = Join-Path $OutRoot "obj/publish/$framework"
        if (Test-Path $publish) { Remove-Item $publish -Recurse -Force }
        Invoke-Native dotnet @('publish', (Join-Path $Root 'src/VmQuiesce/VmQuiesce.csproj'), '-c', $Configuration, '-f', $framework, '-o', $publish, '--nologo', '-v', 'quiet', "-p:Version=$Version")
        $bin = Join-Path $ModuleOut "bin/$framework"
        New-Item -ItemType Directory -Path $bin -Force | Out-Null
        # Every assembly the build needs (ours and our dependencies'), and our own symbols.
        Get-ChildItem $publish -Filter *.dll | Copy-Item -Destination $bin
        Get-ChildItem $publish -Filter 'VmQuiesce*.pdb' | Copy-Item -Destination $bin
    }
    Invoke-ReadyToRun -Portable (Join-Path $ModuleOut 'bin/net8.0')
    Copy-Item (Join-Path $Root 'VmQuiesce.psd1') $ModuleOut
    foreach ($file in 'VmQuiesce.psm1', 'VmQuiesce.Format.ps1xml', 'VmQuiesce.Dsc.psm1') {
        Copy-Item (Join-Path $Root "src/VmQuiesce/$file") $ModuleOut
    }
    Invoke-Docs
    $script:Built = $true
    Write-Host "Built VmQuiesce $Version into $ModuleOut"
}

function Invoke-ReadyToRun {
    # Precompiles the net8.0 build for this host, so that a fresh PowerShell's first cmdlet call does not wait for
    # the JIT: into bin/net8.0-<host>, which VmQuiesce.psm1 loads only on that host (the runtime refuses R2R code of
    # another OS or architecture). crossgen2 is the one of the runtime this SDK bundles, compiling against that
    # runtime's shared framework: the R2R format changes between major versions, and a runtime uses only its own.
    param([string] $Portable)
    $project = Join-Path $Root 'src/VmQuiesce.ReadyToRun/VmQuiesce.ReadyToRun.csproj'
    $sdkJson = & dotnet msbuild $project -getProperty:NETCoreSdkRuntimeIdentifier -getProperty:BundledNETCoreAppPackageVersion -getProperty:NetCoreRoot -getProperty:Crossgen2Package
    if ($LASTEXITCODE -ne 0) { throw "Reading the SDK's runtime version from $project failed (exit code $LASTEXITCODE): $sdkJson" }
    $sdk = ($sdkJson | Out-String | ConvertFrom-Json).Properties
    $hostRid = $sdk.NETCoreSdkRuntimeIdentifier
    if ($hostRid -notin $ReadyToRunHosts) {
        Write-Host "The module's net8.0 build is left IL-only (JIT-compiled when first called): ReadyToRun code is built on $($ReadyToRunHosts -join ' and ') hosts, where it is tested, and this SDK runs on $hostRid."
        return
    }
    if ($PSVersionTable.PSEdition -eq 'Desktop') {
        Write-Host "The module's net8.0 build is left IL-only (JIT-compiled when first called): ReadyToRun code is compiled against PowerShell 7's System.Management.Automation, and this is Windows PowerShell; build with 'dotnet pwsh ./build.ps1'."
        return
    }
    $version = $sdk.BundledNETCoreAppPackageVersion
    $framework = Join-Path $sdk.NetCoreRoot "shared/Microsoft.NETCore.App/$version"
    if (-not (Test-Path $framework)) { throw "The runtime this SDK bundles, Microsoft.NETCore.App $version, is not in $framework; ReadyToRun code is compiled against it." }
    Invoke-Native dotnet @('restore', $project, '--nologo', '-v', 'quiet')
    $crossgen = Join-Path (Get-NuGetPackageFolder) "$($sdk.Crossgen2Package.ToLowerInvariant())/$version/tools/crossgen2"
    if ($hostRid -like 'win-*') { $crossgen += '.exe' }
    $os, $architecture = $hostRid -split '-'
    $targetOs = @{ win = 'windows'; linux = 'linux' }[$os]
    $out = "$Portable-$hostRid"
    New-Item -ItemType Directory -Path $out -Force | Out-Null
    # PowerShell's System.Management.Automation is outside the version bubble, like the framework: crossgen2 compiles
    # our cmdlets against this build's PowerShell, and the runtime checks what that code assumed of it when it runs.
    $automation = [System.Management.Automation.PSCmdlet].Assembly.Location
    $clock = [Diagnostics.Stopwatch]::StartNew()
    $responses = Join-Path $OutRoot 'obj/readytorun'
    New-Item -ItemType Directory -Path $responses -Force | Out-Null
    # x64 code for x86-64-v3 (AVX2, BMI2: Intel since 2013, AMD since 2015): crossgen2's default baseline leaves out every
    # method that asks for those (zstd's bit readers, SIMD loops), and a machine that has them then runs those methods
    # JIT-compiled, at first unoptimised, in every backup. On a CPU without them the runtime JIT-compiles instead.
    $instructionSet = if ($architecture -eq 'x64') { @('--instruction-set:x86-64-v3') } else { @() }
    foreach ($name in $ReadyToRunAssemblies) {
        # One image per assembly, each its own version bubble; the rest of the build (and the input itself) are
        # references. A response file, as the SDK writes: crossgen2 expands its wildcards itself, where PowerShell on
        # Unix would expand them on a command line into further inputs.
        $response = Join-Path $responses "$name.rsp"
        Set-Content -Path $response -Value (@(
            ('"{0}"' -f (Join-Path $Portable "$name.dll")), ('--out:"{0}"' -f (Join-Path $out "$name.dll")), '--optimize', "--targetos:$targetOs", "--targetarch:$architecture",
            ('--reference:"{0}"' -f (Join-Path $framework '*.dll')), ('--reference:"{0}"' -f (Join-Path $Portable '*.dll')), ('--reference:"{0}"' -f $automation)) + $instructionSet)
        $output = & $crossgen "@$response" 2>&1
        if ($LASTEXITCODE -ne 0) { throw "crossgen2 $version failed on $Portable/$name.dll (exit code $LASTEXITCODE; arguments in $response): $($output -join [Environment]::NewLine)" }
    }
    Get-ChildItem $Portable -Filter 'VmQuiesce*.pdb' | Copy-Item -Destination $out
    Write-Host ("ReadyToRun-compiled {0} for {1} (.NET {2}) into {3} in {4:N1} s" -f ($ReadyToRunAssemblies -join ', '), $hostRid, $version, $out, $clock.Elapsed.TotalSeconds)
}

function Assert-Built {
    # Builds once per run; with -SkipBuild uses the module a previous run (or CI's build job) made.
    if ($SkipBuild) {
        if (-not (Test-Path (Join-Path $ModuleOut 'VmQuiesce.psd1'))) {
            throw "-SkipBuild: there is no built module in $ModuleOut; run './build.ps1 -Task Package' (it builds first)."
        }
        return
    }
    if (-not $Built) { Invoke-Build }
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
        Write-Verbose 'platyPS is not installed: compiling help with the project''s own compiler.'
        $compilerOut = Join-Path $OutRoot 'obj/help-compiler'
        Invoke-Native dotnet @('publish', (Join-Path $Root 'src/VmQuiesce.HelpCompiler/VmQuiesce.HelpCompiler.csproj'), '-c', $Configuration, '-o', $compilerOut, '--nologo', '-v', 'quiet')
        Invoke-Native dotnet @((Join-Path $compilerOut 'VmQuiesce.HelpCompiler.dll'), $source, $helpOut, 'VmQuiesce.dll')
    }
}

function Invoke-Package {
    if (-not (Get-Command Publish-PSResource -ErrorAction SilentlyContinue)) {
        throw 'Packaging needs Microsoft.PowerShell.PSResourceGet: PowerShell 7.4+ ships it; in Windows PowerShell 5.1 run Install-Module Microsoft.PowerShell.PSResourceGet -Scope CurrentUser.'
    }
    if (Test-Path $PackageOut) { Remove-Item $PackageOut -Recurse -Force }
    New-Item -ItemType Directory -Path $PackageOut | Out-Null
    $repository = "VmQuiesceBuild-$PID"
    Register-PSResourceRepository -Name $repository -Uri $PackageOut -Trusted
    try {
        Publish-PSResource -Path $ModuleOut -Repository $repository
    }
    finally {
        Unregister-PSResourceRepository -Name $repository
    }
    Get-ChildItem $PackageOut -Filter *.nupkg | ForEach-Object { Write-Host "Packaged $($_.FullName)" }
}

function Get-TrxCount {
    # Counts of one xunit run; each test named says which build of the core it ran against.
    param([string] $Path, [string] $Framework)
    $prefix = "[$Framework] "
    [xml] $trx = Get-Content -Raw -Path $Path
    $ns = @{ t = 'http://microsoft.com/schemas/VisualStudio/TeamTest/2010' }
    $counters = (Select-Xml -Xml $trx -XPath '//t:ResultSummary/t:Counters' -Namespace $ns).Node
    $skipped = @(Select-Xml -Xml $trx -XPath '//t:UnitTestResult[@outcome="NotExecuted"]' -Namespace $ns | ForEach-Object {
        # InnerText: the skip reason (Output/StdOut or Output/ErrorInfo/Message) without naming an element that strict mode may find missing.
        $reason = $_.Node.InnerText.Trim()
        "$prefix$($_.Node.testName): $reason"
    })
    # CI shows only the tail of the output, so each failure is repeated there with its first message line.
    $failures = @(Select-Xml -Xml $trx -XPath '//t:UnitTestResult[@outcome!="Passed" and @outcome!="NotExecuted"]' -Namespace $ns | ForEach-Object {
        $message = (Select-Xml -Xml $_.Node -XPath './/t:ErrorInfo/t:Message' -Namespace $ns | Select-Object -First 1).Node.InnerText
        "$prefix$($_.Node.testName): $(($message -split "`n" | Select-Object -First 3) -join ' ')"
    })
    [pscustomobject]@{
        Passed  = [int] $counters.passed
        Failed  = [int] $counters.failed + [int] $counters.error + [int] $counters.timeout + [int] $counters.aborted
        Skipped = $skipped.Count
        SkippedReasons = $skipped
        Failures = $failures
    }
}

function Initialize-TestGuest {
    # Integration tests boot a real QEMU guest: build it once (cached under out/guest), or let the
    # builder record in out/guest/unavailable.txt why it cannot, which the guest tests skip with.
    $guestOut = Join-Path $OutRoot 'guest'
    & (Join-Path $Root 'tests/guest/Build-TestGuest.ps1') -OutputPath $guestOut
    $env:VMQUIESCE_TEST_GUEST = $guestOut
}

function Initialize-TestS3 {
    # The S3 tests start a real Ceph RGW (tests/s3/start-rgw.sh) themselves; its Debian packages are installed
    # here when missing (root), or out/s3/unavailable.txt says why they cannot be, which those tests skip with.
    $s3Out = Join-Path $OutRoot 's3'
    New-Item -ItemType Directory -Path $s3Out -Force | Out-Null
    $unavailable = Join-Path $s3Out 'unavailable.txt'
    Remove-Item $unavailable -ErrorAction SilentlyContinue
    $env:VMQUIESCE_TEST_S3 = $s3Out
    if (-not $IsLinux) { Set-Content $unavailable 'The S3 test server (Ceph RGW) runs on Linux only.'; return }
    $output = & /bin/bash (Join-Path $Root 'tests/s3/start-rgw.sh') --install 2>&1 | ForEach-Object { "$_" }
    if ($LASTEXITCODE -eq 3) { Set-Content $unavailable ($output -join ' ') }
    elseif ($LASTEXITCODE -ne 0) { throw "Installing the S3 test server's packages failed (exit code $LASTEXITCODE): $(($output | Select-Object -Last 5) -join ' | ')" }
}

function Invoke-Test {
    Assert-Built
    Initialize-TestGuest
    Initialize-TestS3
    # The package tests install what Package made, so Test makes it first (CI made it in its build job).
    if (-not $SkipBuild) { Invoke-Package }
    if (-not (Get-ChildItem $PackageOut -Filter 'VmQuiesce.*.nupkg' -ErrorAction SilentlyContinue)) {
        throw "There is no package in $PackageOut; run './build.ps1 -Task Package' (it builds first)."
    }
    if (Test-Path $TestResults) { Remove-Item $TestResults -Recurse -Force }
    New-Item -ItemType Directory -Path $TestResults -Force | Out-Null

    $env:VMQUIESCE_TEST_OUT = $OutRoot
    $env:VMQUIESCE_PACKAGE_PATH = $PackageOut
    # Test-only packages (another version of a dependency, for Dependencies.Tests.ps1) are restored there.
    $env:VMQUIESCE_NUGET_PACKAGES = Get-NuGetPackageFolder
    # Repository key files of the tests' repositories stay with the results, never in /etc/vmquiesce/keys.
    $env:VMQUIESCE_KEY_FOLDER = Join-Path $TestResults 'keys'
    # So are the records of the test VMs' change-tracking checkpoints (never /var/lib/vmquiesce/checkpoints).
    $env:VMQUIESCE_CHECKPOINT_FOLDER = Join-Path $TestResults 'checkpoints'

    # The core's net8.0 build everywhere; on Windows also its .NET Framework build, which Windows PowerShell 5.1 loads.
    $frameworks = @('net8.0')
    if ([Environment]::OSVersion.Platform -eq 'Win32NT') { $frameworks += 'net472' }
    else {
        # The .NET Framework tests run only on Windows, but they compile everywhere, so a test that breaks them fails here too.
        Invoke-Native dotnet @('build', (Join-Path $Root 'tests/VmQuiesce.Core.Tests/VmQuiesce.Core.Tests.csproj'), '-c', $Configuration, '-f', 'net472', '--nologo', '-v', 'quiet')
    }
    $xunitExit = 0
    $xunitRuns = foreach ($framework in $frameworks) {
        $trxName = "xunit-$framework.trx"
        $xunitArgs = @('test', (Join-Path $Root 'tests/VmQuiesce.Core.Tests/VmQuiesce.Core.Tests.csproj'), '-c', $Configuration, '-f', $framework, '--nologo',
            '--logger', "trx;LogFileName=$trxName", '--logger', 'console;verbosity=minimal', '--results-directory', $TestResults)
        if ($Filter) { $xunitArgs += @('--filter', "FullyQualifiedName~$Filter") }
        & dotnet @xunitArgs | Out-Host
        if ($LASTEXITCODE -ne 0) { $xunitExit = $LASTEXITCODE }
        $trxPath = Join-Path $TestResults $trxName
        if (Test-Path $trxPath) { Get-TrxCount $trxPath -Framework $framework } else {
            Write-Warning "xunit ($framework) produced no results (exit code $LASTEXITCODE)."
            [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0; SkippedReasons = @(); Failures = @("xunit ($framework): no results (exit code $LASTEXITCODE)") }
        }
    }
    $xunit = [pscustomobject]@{
        Passed         = ($xunitRuns | Measure-Object Passed -Sum).Sum
        Failed         = ($xunitRuns | Measure-Object Failed -Sum).Sum
        Skipped        = ($xunitRuns | Measure-Object Skipped -Sum).Sum
        SkippedReasons = @($xunitRuns | ForEach-Object { $_.SkippedReasons })
        Failures       = @($xunitRuns | ForEach-Object { $_.Failures })
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
        [pscustomobject]@{ Passed = 0; Failed = 1; Skipped = 0; SkippedReasons = @(); Failures = @("Pester: no summary (exit code $LASTEXITCODE)") }
    }

    $skippedReasons = @($xunit.SkippedReasons) + @($pester.SkippedReasons) | Where-Object { $_ }
    if ($skippedReasons) {
        Write-Host 'Skipped tests, and why:'
        $skippedReasons | ForEach-Object { Write-Host "  - $_" }
    }
    $failures = @($xunit.Failures) + @($pester.Failures) | Where-Object { $_ }
    if ($failures) {
        Write-Host 'Failed tests:'
        $failures | ForEach-Object { Write-Host "  - $_" }
    }
    Write-Host "xunit: $($xunit.Passed) passed, $($xunit.Failed) failed, $($xunit.Skipped) skipped; Pester: $($pester.Passed) passed, $($pester.Failed) failed, $($pester.Skipped) skipped. Results in $TestResults"
    $passed = $xunit.Passed + $pester.Passed
    $failed = $xunit.Failed + $pester.Failed
    $skipped = $xunit.Skipped + $pester.Skipped
    $line = "$passed passed, $failed failed"
    if ($skipped) { $line += ", $skipped skipped" }
    Write-Host $line
    # -and and -or share one precedence in PowerShell: the parentheses are needed.
    if ($failed -gt 0 -or ($xunitExit -ne 0 -and $xunit.Failed -eq 0 -and $xunit.Passed -eq 0)) { exit 1 }
}

function Invoke-Bench {
    # VmQuiesce beside cp, restic, borg and sha256sum in one run: out/bench/results.{json,md}, throughput.png.
    Assert-Built
    $child = Get-ChildPowerShell
    & $child.FilePath @($child.Prefix + @('-NoProfile', '-NonInteractive', '-File', (Join-Path $Root 'tests/bench/Invoke-Bench.ps1'),
            '-ModulePath', (Join-Path $ModuleOut 'VmQuiesce.psd1'), '-OutputPath', (Join-Path $OutRoot 'bench'), '-GuestPath', (Join-Path $OutRoot 'guest')))
    if ($LASTEXITCODE -ne 0) { throw "The benchmark failed (exit code $LASTEXITCODE)." }
}

function Invoke-Chaos {
    # Kills backups, prunes and restores at random points against the real guest (tests/chaos): out/chaos/results.{md,json}.
    Assert-Built
    Initialize-TestGuest
    $child = Get-ChildPowerShell
    & $child.FilePath @($child.Prefix + @('-NoProfile', '-NonInteractive', '-File', (Join-Path $Root 'tests/chaos/Invoke-Chaos.ps1'),
            '-ModulePath', (Join-Path $ModuleOut 'VmQuiesce.psd1'), '-OutputPath', (Join-Path $OutRoot 'chaos'), '-Iterations', $Iterations, '-Seed', $Seed))
    if ($LASTEXITCODE -ne 0) { throw "The chaos run found failures (exit code $LASTEXITCODE): see out/chaos/results.md." }
}

foreach ($step in $Task) {
    switch ($step) {
        'Clean' { Invoke-Clean }
        'Build' { Invoke-Build }
        'Docs' { Invoke-Docs }
        'Test' { Invoke-Test }
        'Package' { Assert-Built; Invoke-Package }
        'Bench' { Invoke-Bench }
        'Chaos' { Invoke-Chaos }
        'Demo' { Assert-Built; Initialize-TestGuest; & (Get-ChildPowerShell).FilePath @((Get-ChildPowerShell).Prefix + @('-NoProfile', '-File', (Join-Path $Root 'tests/demo/Invoke-Demo.ps1'), '-ModulePath', (Join-Path $ModuleOut 'VmQuiesce.psd1'))) }
    }
}
