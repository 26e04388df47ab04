BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force

    function Get-RelativeFile {
        param([string] $Folder)
        $root = (Get-Item $Folder).FullName.TrimEnd('\', '/')
        Get-ChildItem $root -Recurse -File | ForEach-Object { $_.FullName.Substring($root.Length + 1).Replace('\', '/') } | Sort-Object
    }

    function Invoke-FreshPowerShell {
        # Runs a script in a new process of this same PowerShell (powershell.exe on 5.1; pwsh, or
        # dotnet + pwsh.dll when run as the dotnet tool) and returns what it writes as JSON.
        param([string] $Script)
        $command = if ($PSVersionTable.PSEdition -eq 'Desktop') { @(Join-Path $PSHOME 'powershell.exe') } else {
            $entry = [Environment]::GetCommandLineArgs()[0]
            if ($entry -like '*.dll') { @((Get-Process -Id $PID).Path, $entry) } else { @((Get-Process -Id $PID).Path) }
        }
        $encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($Script))
        $arguments = @($command | Select-Object -Skip 1) + @('-NoProfile', '-NonInteractive', '-EncodedCommand', $encoded)
        $output = & $command[0] @arguments
        if ($LASTEXITCODE -ne 0) { throw "The fresh PowerShell failed (exit code $LASTEXITCODE): $output" }
        ($output -join "`n") | ConvertFrom-Json
    }
}

Describe 'The package that build.ps1 -Task Package makes' {
    BeforeAll {
        $manifest = Import-PowerShellDataFile $env:VMQUIESCE_MODULE_PATH
        $builtCmdlets = @((Get-Module VmQuiesce).ExportedCmdlets.Keys | Sort-Object)
        $psResourceGet = Get-Module -ListAvailable -Name Microsoft.PowerShell.PSResourceGet | Sort-Object Version -Descending | Select-Object -First 1
        $repository = "VmQuiesceTest-$PID"
        $installRoot = Join-Path ([IO.Path]::GetTempPath()) "VmQuiesce-package-$PID"
        $installed = Join-Path $installRoot "VmQuiesce/$($manifest.ModuleVersion)"
        if (-not $env:VMQUIESCE_PACKAGE_PATH) { throw 'VMQUIESCE_PACKAGE_PATH is not set: run the tests through build.ps1 -Task Test, which makes the package first.' }

        if ($psResourceGet) {
            Import-Module $psResourceGet
            Register-PSResourceRepository -Name $repository -Uri $env:VMQUIESCE_PACKAGE_PATH -Trusted
            New-Item -ItemType Directory -Path $installRoot -Force | Out-Null
            Save-PSResource -Name VmQuiesce -Version $manifest.ModuleVersion -Repository $repository -Path $installRoot -TrustRepository
            $imported = Invoke-FreshPowerShell @"
`$ErrorActionPreference = 'Stop'
`$env:PSModulePath = '$($installRoot -replace "'", "''")' + [IO.Path]::PathSeparator + `$env:PSModulePath
`$module = Import-Module VmQuiesce -PassThru
[pscustomobject]@{
    Version    = `$module.Version.ToString()
    ModuleBase = `$module.ModuleBase
    Cmdlets    = @(`$module.ExportedCmdlets.Keys | Sort-Object)
} | ConvertTo-Json -Compress
"@
        }
    }

    AfterAll {
        if ($psResourceGet -and (Get-PSResourceRepository -Name $repository -ErrorAction SilentlyContinue)) {
            Unregister-PSResourceRepository -Name $repository
        }
        if (Test-Path $installRoot) { Remove-Item $installRoot -Recurse -Force }
    }

    It 'installs from a local PSResourceGet repository with every file the build made' {
        if (-not $psResourceGet) { Set-ItResult -Skipped -Because 'Microsoft.PowerShell.PSResourceGet is not installed (Install-Module Microsoft.PowerShell.PSResourceGet)'; return }
        $built = Split-Path $env:VMQUIESCE_MODULE_PATH
        $expected = @(Get-RelativeFile $built)
        $expected | Should -Contain 'VmQuiesce.Format.ps1xml'
        $expected | Should -Contain 'en-US/about_VmQuiesce.help.txt'
        (@(Get-RelativeFile $installed) -join ', ') | Should -Be ($expected -join ', ')
    }

    It 'ships the .NET Framework build and the .NET 8 build, each with only the assemblies it needs' {
        if (-not $psResourceGet) { Set-ItResult -Skipped -Because 'Microsoft.PowerShell.PSResourceGet is not installed (Install-Module Microsoft.PowerShell.PSResourceGet)'; return }
        $assemblies = @(Get-RelativeFile $installed | Where-Object { $_ -like '*.dll' })
        # ZstdSharp (chunks), BouncyCastle (Argon2id; AES-GCM on .NET Framework) and the AWS SDK's S3 client (s3:// repositories); on .NET Framework also the System.* packages they need there.
        $aws = 'AWSSDK.Core', 'AWSSDK.Extensions.Numerics', 'AWSSDK.S3', 'System.IO.Hashing'
        $net472 = $aws + 'BouncyCastle.Cryptography', 'Microsoft.Bcl.AsyncInterfaces', 'System.Buffers', 'System.Memory', 'System.Numerics.Vectors', 'System.Runtime.CompilerServices.Unsafe', 'System.Text.Encodings.Web', 'System.Text.Json', 'System.Threading.Tasks.Extensions', 'System.ValueTuple', 'VmQuiesce.Core', 'VmQuiesce', 'ZstdSharp'
        $net8 = $aws + 'BouncyCastle.Cryptography', 'VmQuiesce.Core', 'VmQuiesce', 'ZstdSharp'
        $expected = @($net472 | ForEach-Object { "bin/net472/$_.dll" }) + @($net8 | ForEach-Object { "bin/net8.0/$_.dll" })
        # The .NET 8 build's copy precompiled for the host it was built on (build.ps1 names it): only what it precompiled.
        foreach ($precompiled in Get-ChildItem (Join-Path (Split-Path $env:VMQUIESCE_MODULE_PATH) 'bin') -Directory -Filter 'net8.0-*') {
            $expected += @('AWSSDK.Core', 'AWSSDK.S3', 'VmQuiesce.Core', 'VmQuiesce', 'ZstdSharp' | ForEach-Object { "bin/$($precompiled.Name)/$_.dll" })
        }
        ($assemblies -join ', ') | Should -Be (($expected | Sort-Object) -join ', ')
    }

    It 'imports by name in a fresh process from where it was installed, with the manifest''s version' {
        if (-not $psResourceGet) { Set-ItResult -Skipped -Because 'Microsoft.PowerShell.PSResourceGet is not installed (Install-Module Microsoft.PowerShell.PSResourceGet)'; return }
        $imported.Version | Should -Be $manifest.ModuleVersion
        $imported.ModuleBase | Should -Be (Get-Item $installed).FullName
    }

    It 'exports the same cmdlets as the built module' {
        if (-not $psResourceGet) { Set-ItResult -Skipped -Because 'Microsoft.PowerShell.PSResourceGet is not installed (Install-Module Microsoft.PowerShell.PSResourceGet)'; return }
        (@($imported.Cmdlets) -join ', ') | Should -Be ($builtCmdlets -join ', ')
    }
}
