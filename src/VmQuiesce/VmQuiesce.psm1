# The module's root: imports the build of VmQuiesce that matches this PowerShell. Windows PowerShell 5.1
# runs on .NET Framework: bin/net472. PowerShell 7.4+ runs on .NET 8 or later: bin/net8.0, or its copy precompiled
# for this host. Either build's ModuleDependencies keeps the third-party assemblies it ships from conflicting with
# other modules' copies.

if ($PSVersionTable.PSEdition -eq 'Desktop') {
    $framework = 'net472'
}
elseif ($PSVersionTable.PSVersion -ge [version] '7.4') {
    $framework = 'net8.0'
    # build.ps1 also ReadyToRun-compiles VmQuiesce and some dependencies for the host it builds on, into
    # bin/net8.0-<os>-<arch>, loaded only on that host: the runtime refuses (BadImageFormatException) R2R code of
    # another OS or architecture. Runtimes older than the one it was compiled for ignore that code and JIT its IL.
    $os = if ($IsWindows) { 'win' } elseif ($IsMacOS) { 'osx' } else { 'linux' }
    $precompiled = "net8.0-$os-$("$([Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture)".ToLowerInvariant())"
    if (Test-Path -LiteralPath ([IO.Path]::Combine($PSScriptRoot, 'bin', $precompiled, 'VmQuiesce.dll'))) {
        $framework = $precompiled
    }
}
else {
    throw "VmQuiesce needs PowerShell 7.4 or later (.NET 8), or Windows PowerShell 5.1; this is PowerShell $($PSVersionTable.PSVersion)."
}

$cmdletModule = Import-Module -Name ([IO.Path]::Combine($PSScriptRoot, 'bin', $framework, 'VmQuiesce.dll')) -PassThru
Export-ModuleMember -Cmdlet @($cmdletModule.ExportedCmdlets.Keys)
