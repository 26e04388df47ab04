BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    $script:module = Get-Module VmQuiesce
}

Describe 'The built module' {
    It 'loads from the build output, not the source tree' {
        $module.ModuleBase | Should -Be (Split-Path $env:VMQUIESCE_MODULE_PATH)
    }

    It 'exports exactly the cmdlets its manifest lists, and no functions, variables or aliases' {
        $manifest = Import-PowerShellDataFile $env:VMQUIESCE_MODULE_PATH
        @($module.ExportedCmdlets.Keys | Sort-Object) | Should -Be @($manifest.CmdletsToExport | Sort-Object)
        $module.ExportedFunctions.Count | Should -Be 0
        $module.ExportedAliases.Count | Should -Be 0
        $module.ExportedVariables.Count | Should -Be 0
    }

    It 'runs the build for this edition: net472 in Windows PowerShell 5.1, net8.0 in PowerShell 7 (its copy precompiled for this host, when the build made one)' {
        $framework = 'net472'
        if ($PSVersionTable.PSEdition -ne 'Desktop') {
            $precompiled = "net8.0-$(Get-PrecompiledHostName)"
            $framework = if (Test-Path (Join-Path (Split-Path $env:VMQUIESCE_MODULE_PATH) "bin/$precompiled")) { $precompiled } else { 'net8.0' }
        }
        $expected = Join-Path (Split-Path $env:VMQUIESCE_MODULE_PATH) "bin/$framework"
        foreach ($type in (Get-Command Get-VmBackup).ImplementingType, [VmQuiesce.Core.Json.JsonText]) {
            Split-Path $type.Assembly.Location | Should -Be ([IO.Path]::GetFullPath($expected))
        }
    }

    It 'exports every cmdlet again after Import-Module -Force' {
        Import-Module $env:VMQUIESCE_MODULE_PATH -Force
        @((Get-Module VmQuiesce).ExportedCmdlets.Keys).Count | Should -Be @((Import-PowerShellDataFile $env:VMQUIESCE_MODULE_PATH).CmdletsToExport).Count
    }

    It 'declares both editions and Windows PowerShell 5.1' {
        $manifest = Import-PowerShellDataFile $env:VMQUIESCE_MODULE_PATH
        $manifest.CompatiblePSEditions | Should -Be @('Desktop', 'Core')
        $manifest.PowerShellVersion | Should -Be '5.1'
    }
}

Describe 'The build does not drift' {
    It 'pins the SDK in global.json (rolling forward within its major version only) and the language and analysis level' {
        $root = Join-Path $PSScriptRoot '../..'
        $sdk = (Get-Content -Raw (Join-Path $root 'global.json') | ConvertFrom-Json).sdk
        $sdk.version | Should -Match '^\d+\.\d+\.\d{3}$'
        $sdk.rollForward | Should -BeIn @('patch', 'feature', 'minor', 'latestPatch', 'latestFeature', 'latestMinor', 'disable')
        [xml] $props = Get-Content -Raw (Join-Path $root 'Directory.Build.props')
        foreach ($setting in 'LangVersion', 'AnalysisLevel') {
            $value = "$(@($props.Project.PropertyGroup)[0].$setting)"
            $value | Should -Match '^\d+\.\d+$' -Because "$setting must name a version, not latest/preview, so a new SDK cannot change a clean build"
        }
    }
}
