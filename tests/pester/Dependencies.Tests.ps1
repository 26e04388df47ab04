# Third-party assemblies VmQuiesce ships must not conflict with another module's copy of the same assembly in
# another version: a throwaway module loads ZstdSharp 0.7.3 and BouncyCastle.Cryptography 2.4.0 into the same
# PowerShell, before or after VmQuiesce (which uses ZstdSharp 0.8.8 for chunks, BouncyCastle 2.7.0 for Argon2id
# passphrase keys), and both keep working.
BeforeDiscovery {
    $script:orders = @(@{ Order = 'OtherFirst' }, @{ Order = 'VmQuiesceFirst' })
}

BeforeAll {
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force
    $script:otherVersion = '0.7.3'
    # Every BouncyCastle.Cryptography 2.x has assembly version 2.0.0.0: the file version tells them apart.
    $script:otherBouncyCastleVersion = '2.4.0'
    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmq-dependencies-$([Guid]::NewGuid().ToString('N').Substring(0, 8))"
    $script:skipReason = if ($PSVersionTable.PSEdition -eq 'Desktop') {
        'Windows PowerShell 5.1 has no AssemblyLoadContext: VmQuiesce and another module share one copy of an assembly per version there (see the README)'
    }
    if (-not $skipReason) {
        if (-not $env:VMQUIESCE_NUGET_PACKAGES) { throw 'VMQUIESCE_NUGET_PACKAGES is not set: run the tests through build.ps1 -Task Test.' }
        $otherZstd = Join-Path $env:VMQUIESCE_NUGET_PACKAGES "zstdsharp.port/$otherVersion/lib/netstandard2.1/ZstdSharp.dll"
        if (-not (Test-Path $otherZstd)) { throw "ZstdSharp.Port $otherVersion was not restored to $otherZstd; run 'dotnet restore tests/VmQuiesce.Core.Tests'." }
        $otherBouncyCastle = Join-Path $env:VMQUIESCE_NUGET_PACKAGES "bouncycastle.cryptography/$otherBouncyCastleVersion/lib/net6.0/BouncyCastle.Cryptography.dll"
        if (-not (Test-Path $otherBouncyCastle)) { throw "BouncyCastle.Cryptography $otherBouncyCastleVersion was not restored to $otherBouncyCastle; run 'dotnet restore tests/VmQuiesce.Core.Tests'." }
    }

    # The throwaway module: its own ZstdSharp, loaded the usual way (Add-Type into the default context).
    $module = Join-Path $root 'modules/OtherZstd'
    New-Item -ItemType Directory -Path $module -Force | Out-Null
    if (-not $skipReason) { Copy-Item $otherZstd, $otherBouncyCastle $module }
    Set-Content -Path (Join-Path $module 'OtherZstd.psm1') -Value @'
Add-Type -Path (Join-Path $PSScriptRoot 'ZstdSharp.dll')
function Test-OtherZstd {
    # Round-trips text through this module's ZstdSharp and says which version did it.
    $text = [Text.Encoding]::UTF8.GetBytes(('other module ' * 1000))
    $packed = [byte[]]::new($text.Length)
    $packedLength = [ZstdSharp.Compressor]::new(3).Wrap($text, $packed, 0)
    $back = [byte[]]::new($text.Length)
    $backLength = [ZstdSharp.Decompressor]::new().Unwrap([byte[]] $packed[0..($packedLength - 1)], $back, 0)
    if ($backLength -ne $text.Length -or [Convert]::ToBase64String($back) -ne [Convert]::ToBase64String($text)) { throw 'round trip failed' }
    [ZstdSharp.Compressor].Assembly.GetName().Version.ToString(3)
}
function Test-OtherBouncyCastle {
    # A SHA-256 through this module's BouncyCastle, checked against .NET's; says which file version did it.
    Add-Type -Path (Join-Path $PSScriptRoot 'BouncyCastle.Cryptography.dll')
    $text = [Text.Encoding]::UTF8.GetBytes('other module')
    $digest = [Org.BouncyCastle.Crypto.Digests.Sha256Digest]::new()
    $digest.BlockUpdate($text, 0, $text.Length)
    $hash = [byte[]]::new(32)
    $null = $digest.DoFinal($hash, 0)
    if ([Convert]::ToBase64String($hash) -ne [Convert]::ToBase64String([Security.Cryptography.SHA256]::HashData($text))) { throw 'digest differs' }
    ([Diagnostics.FileVersionInfo]::GetVersionInfo([Org.BouncyCastle.Crypto.Digests.Sha256Digest].Assembly.Location).FileVersion -split '\.')[0..2] -join '.'
}
'@

    function script:Invoke-BothModules {
        # In a fresh process: import both modules in the given order, back up compressible data with VmQuiesce,
        # then use the other module again.
        param([string] $Order)
        if ($script:results.ContainsKey($Order)) { return $script:results[$Order] }
        $work = Join-Path $root $Order
        $script = @"
`$ErrorActionPreference = 'Stop'
`$env:PSModulePath = '$((Join-Path $root 'modules') -replace "'", "''")' + [IO.Path]::PathSeparator + `$env:PSModulePath
function Import-VmQuiesce { Import-Module '$($env:VMQUIESCE_MODULE_PATH -replace "'", "''")' }
# Argon2id (BouncyCastle) for a passphrase copy: after the other module's BouncyCastle was loaded (OtherFirst), or
# before it is (VmQuiesceFirst).
function New-KeyedRepository {
    `$passphrase = ConvertTo-SecureString 'dependency-test-passphrase' -AsPlainText -Force
    try { @((New-VmBackupRepository -Path (Join-Path '$work' 'keyed') -Passphrase `$passphrase -Confirm:`$false).PassphraseSlots).Count } catch { "`$(`$_.FullyQualifiedErrorId): `$_" }
}
if ('$Order' -eq 'OtherFirst') { Import-Module OtherZstd; `$before = Test-OtherZstd; `$bcBefore = Test-OtherBouncyCastle; Import-VmQuiesce; `$slots = New-KeyedRepository }
else { Import-VmQuiesce; `$slots = New-KeyedRepository; Import-Module OtherZstd; `$before = Test-OtherZstd; `$bcBefore = Test-OtherBouncyCastle }
New-Item -ItemType Directory -Path '$work' -Force | Out-Null
`$disk = Join-Path '$work' 'disk.img'
[IO.File]::WriteAllText(`$disk, ('quiesce, snapshot, thaw. ' * 400000))
`$vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('conflict', [string[]] @(`$disk))
`$point = Invoke-VmQuiescedBackup -Vm `$vm -Repository (Join-Path '$work' 'repo') -Consistency Crash -Confirm:`$false
`$verified = Test-VmBackup -Repository (Join-Path '$work' 'repo') -Id `$point.Id
`$ours = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { `$_.GetName().Name -eq 'ZstdSharp' -and `$_.Location -like '*VmQuiesce*' }
[pscustomobject]@{
    OtherBefore      = `$before
    OtherAfter       = Test-OtherZstd
    OtherBcBefore    = `$bcBefore
    Ratio            = `$point.CompressionRatio
    Valid            = `$verified.IsValid
    OursVersion      = `$ours.GetName().Version.ToString(3)
    OursContext      = [Runtime.Loader.AssemblyLoadContext]::GetLoadContext(`$ours).Name
    PassphraseSlots  = `$slots
    OtherBcAfter     = Test-OtherBouncyCastle
} | ConvertTo-Json -Compress
"@
        $child = Get-ChildPwsh
        $encoded = [Convert]::ToBase64String([Text.Encoding]::Unicode.GetBytes($script))
        $output = & $child.FilePath @($child.Prefix + @('-NoProfile', '-NonInteractive', '-EncodedCommand', $encoded)) 2>&1
        # Without colour codes, which the test report's XML cannot hold.
        if ($LASTEXITCODE -ne 0) { throw "The fresh PowerShell failed (exit code $LASTEXITCODE): $(($output -join ' ') -replace "`e\[[0-9;]*m", '')" }
        $script:results[$Order] = ($output | Select-Object -Last 1) | ConvertFrom-Json
        $script:results[$Order]
    }
    $script:results = @{}
}

AfterAll {
    if (Test-Path $root) { Remove-Item $root -Recurse -Force }
}

Describe 'VmQuiesce next to a module that ships another ZstdSharp' {
    It 'both work when <Order> is imported first' -ForEach $orders {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $result = Invoke-BothModules -Order $Order
        $result.OtherBefore | Should -Be $otherVersion
        $result.OtherAfter | Should -Be $otherVersion
        $result.OursVersion | Should -Be '0.8.8'
        $result.OursContext | Should -Be 'VmQuiesce.Dependencies'
        $result.Valid | Should -BeTrue
        $result.Ratio | Should -BeGreaterThan 10 -Because 'the repeated text was compressed with zstd'
        $result.OtherBcBefore | Should -Be $otherBouncyCastleVersion
    }

    It 'VmQuiesce''s BouncyCastle (Argon2id) works beside another BouncyCastle 2.x when <Order> is imported first' -ForEach $orders {
        # Every BouncyCastle.Cryptography 2.x has assembly version 2.0.0.0, so a version cannot tell ours (2.7.0) from
        # the other module's (2.4.0, which has no Argon2BytesGenerator): the passphrase KDF must run from our copy anyway.
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $result = Invoke-BothModules -Order $Order
        $result.PassphraseSlots | Should -Be 1
        $result.OtherBcBefore | Should -Be $otherBouncyCastleVersion
        $result.OtherBcAfter | Should -Be $otherBouncyCastleVersion
    }
}

Describe 'The third-party assemblies the module ships' {
    # ModuleDependencies answers requests from what VmQuiesce's assemblies reference rather than reading each shipped
    # file's name (which costs a backup's copy 10-15 ms): that holds only while the files are those very versions.
    It 'are, in every build folder, the versions and publishers VmQuiesce''s own assemblies reference' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        function Get-AssemblyReference([string] $Path) {
            $stream = [IO.File]::OpenRead($Path)
            try {
                $reader = [Reflection.Metadata.PEReaderExtensions]::GetMetadataReader([Reflection.PortableExecutable.PEReader]::new($stream))
                foreach ($handle in $reader.AssemblyReferences) { $reader.GetAssemblyReference($handle).GetAssemblyName() }
            } finally { $stream.Dispose() }
        }
        $checked = foreach ($folder in Get-ChildItem (Join-Path (Split-Path $env:VMQUIESCE_MODULE_PATH) 'bin') -Directory) {
            $references = @('VmQuiesce.dll', 'VmQuiesce.Core.dll' | ForEach-Object { Get-AssemblyReference (Join-Path $folder.FullName $_) })
            foreach ($file in Get-ChildItem $folder.FullName -Filter '*.dll' | Where-Object Name -NotLike 'VmQuiesce*') {
                $shipped = [Reflection.AssemblyName]::GetAssemblyName($file.FullName)
                foreach ($reference in $references | Where-Object Name -EQ $shipped.Name) {
                    "$($folder.Name)/$($shipped.Name) $($reference.Version) $([Convert]::ToHexString([byte[]] @($reference.GetPublicKeyToken())))" |
                        Should -Be "$($folder.Name)/$($shipped.Name) $($shipped.Version) $([Convert]::ToHexString([byte[]] @($shipped.GetPublicKeyToken())))"
                    "$($folder.Name)/$($shipped.Name)"
                }
            }
        }
        $checked | Should -Contain 'net8.0/ZstdSharp'
        $checked | Should -Contain 'net472/ZstdSharp'
    }
}
