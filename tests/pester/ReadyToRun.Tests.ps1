# build.ps1 ReadyToRun-compiles the net8.0 build for the host it builds on (bin/net8.0-<host>), so that a fresh
# PowerShell's first cmdlet call runs precompiled code instead of waiting for the JIT; bin/net8.0 stays portable IL.
BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force
    $script:moduleBase = Split-Path $env:VMQUIESCE_MODULE_PATH

    # The hosts build.ps1 precompiles for, with the PE machine of their R2R images: the architecture's (AMD64,
    # 0x8664), XORed on Linux with 0x7B79 so that no other OS's loader takes the image for one of its own.
    $hostMachines = @{ 'linux-x64' = 0xFD1D; 'win-x64' = 0x8664 }
    $readyToRunHosts = @($hostMachines.Keys | Sort-Object)
    $script:skipReason = $null
    if ($PSVersionTable.PSEdition -eq 'Desktop') {
        $script:skipReason = 'Windows PowerShell 5.1 runs the .NET Framework build (bin/net472), which is not precompiled'
        return
    }
    $script:hostName = Get-PrecompiledHostName
    $script:precompiled = Join-Path $moduleBase "bin/net8.0-$hostName"
    $built = @(Get-ChildItem (Join-Path $moduleBase 'bin') -Directory -Filter 'net8.0-*' | ForEach-Object { $_.Name -replace '^net8\.0-' })
    if ($hostName -notin $readyToRunHosts) {
        $script:skipReason = "build.ps1 precompiles for $($readyToRunHosts -join ' and ') only; this is $hostName"
    }
    elseif (-not (Test-Path $precompiled) -and $built) {
        $script:skipReason = "this module was built on another host: its precompiled copy is for $($built -join ', '), not $hostName"
    }
    $script:hostMachine = $hostMachines[$hostName]

    function Get-ReadyToRunHeader {
        # The PE machine of an assembly, and the major version of its ReadyToRun header (0: none, an IL-only assembly).
        param([string] $Path)
        $stream = [IO.File]::OpenRead($Path)
        try {
            $reader = [Reflection.PortableExecutable.PEReader]::new($stream)
            $headers = $reader.PEHeaders
            $native = $headers.CorHeader.ManagedNativeHeaderDirectory
            $major = 0
            if ($native.Size -gt 0) {
                $blob = $reader.GetSectionData($native.RelativeVirtualAddress).GetReader()
                if ($blob.ReadUInt32() -eq 0x00525452) { $major = $blob.ReadUInt16() } # 'RTR'
            }
            [pscustomobject]@{ Machine = [int] $headers.CoffHeader.Machine; ReadyToRunMajor = $major }
        }
        finally {
            if ($reader) { $reader.Dispose() }
            $stream.Dispose()
        }
    }
}

Describe 'The precompiled build' {
    It 'carries ReadyToRun code for this host for <_>, and bin/net8.0 keeps the portable IL' -ForEach 'VmQuiesce', 'VmQuiesce.Core', 'ZstdSharp', 'AWSSDK.Core', 'AWSSDK.S3' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $image = Get-ReadyToRunHeader (Join-Path $precompiled "$_.dll")
        $image.ReadyToRunMajor | Should -BeGreaterThan 0 -Because "bin/net8.0-$hostName/$_.dll is compiled ReadyToRun"
        '0x{0:X4}' -f $image.Machine | Should -Be ('0x{0:X4}' -f $hostMachine)
        (Get-ReadyToRunHeader (Join-Path $moduleBase "bin/net8.0/$_.dll")).ReadyToRunMajor | Should -Be 0 -Because 'every other host loads bin/net8.0'
    }

    It 'runs a fresh PowerShell''s first cmdlet call on precompiled code: few of VmQuiesce''s own methods are JIT-compiled' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        # The code is for the runtime of the SDK global.json pins; an older runtime (PowerShell 7.4, 7.5) JITs the IL.
        $sdkMajor = ([version] (Get-Content -Raw (Join-Path $PSScriptRoot '../../global.json') | ConvertFrom-Json).sdk.version).Major
        if ([Environment]::Version.Major -ne $sdkMajor) {
            Set-ItResult -Skipped -Because "the precompiled code is for .NET $sdkMajor (the SDK global.json pins), and this PowerShell runs on .NET $([Environment]::Version), which JITs the IL"
            return
        }
        $work = Join-Path ([IO.Path]::GetTempPath()) "vmq-r2r-$([Guid]::NewGuid().ToString('N').Substring(0, 8))"
        New-Item -ItemType Directory -Path $work | Out-Null
        try {
            $image = Join-Path $work 'disk.img'
            [IO.File]::WriteAllBytes($image, [byte[]]::new(4MB))
            $script = @"
`$ErrorActionPreference = 'Stop'
Import-Module '$($env:VMQUIESCE_MODULE_PATH)'
`$vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('r2r', [string[]] @('$image'))
`$null = Invoke-VmQuiescedBackup -Vm `$vm -Repository '$(Join-Path $work 'repository')' -Consistency Crash -Confirm:`$false
"@
            $child = Get-ChildPwsh
            $environment = @{
                # One line per method the JIT compiles in the child, whatever its tier, on its standard output. Not to a file
                # (DOTNET_JitStdOutFile): with that the runtime crashed as the child ended in 4 of 20 runs (SIGSEGV, SIGABRT), never
                # in 40 without it or with standard output.
                DOTNET_JitDisasmSummary = '1'
                VMQUIESCE_KEY_FOLDER = Join-Path $work 'keys'; VMQUIESCE_CHECKPOINT_FOLDER = Join-Path $work 'checkpoints'
            }
            $saved = @{}
            foreach ($name in $environment.Keys) { $saved[$name] = [Environment]::GetEnvironmentVariable($name); [Environment]::SetEnvironmentVariable($name, $environment[$name]) }
            try {
                $encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($script))
                $output = & $child.FilePath @($child.Prefix + @('-NoProfile', '-NonInteractive', '-EncodedCommand', $encoded)) 2>&1
            }
            finally {
                foreach ($name in $saved.Keys) { [Environment]::SetEnvironmentVariable($name, $saved[$name]) }
            }
            $compiled = @($output | Where-Object { "$_" -match '^\s*\d+: JIT compiled ' })
            if ($LASTEXITCODE -ne 0) { throw "The fresh PowerShell failed (exit code $LASTEXITCODE): $((@($output | Where-Object { "$_" -notmatch '^\s*\d+: JIT compiled ' }) -join ' ') -replace "`e\[[0-9;]*m", '')" }
            $compiled.Count | Should -BeGreaterThan 0 -Because 'the runtime lists what it compiles (DOTNET_JitDisasmSummary), or the count below proves nothing'
            # Methods of VmQuiesce's own types (not framework generics instantiated over them, which no image of ours can hold).
            $ours = @($compiled | Where-Object { "$_" -match 'JIT compiled VmQuiesce\.' })
            # About 500 when the module is IL-only; what stays are stubs and code the runtime rejects.
            $ours.Count | Should -BeLessThan 50 -Because "bin/net8.0-$hostName is precompiled; JIT-compiled: $(($ours | Select-Object -First 5) -join '; ')"
        }
        finally {
            Remove-Item $work -Recurse -Force -ErrorAction SilentlyContinue
        }
    }
}
