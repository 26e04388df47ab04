# The module's root: imports the build of VmQuiesce that matches this PowerShell. Windows PowerShell 5.1
# runs on .NET Framework: bin/net472. PowerShell 7.4+ runs on .NET 8 or later: bin/net8.0. Either build's
# ModuleDependencies keeps the third-party assemblies it ships from conflicting with other modules' copies.

if ($PSVersionTable.PSEdition -eq 'Desktop') {
    $framework = 'net472'
}
elseif ($PSVersionTable.PSVersion -ge [version] '7.4') {
    $framework = 'net8.0'
}
else {
    throw "VmQuiesce needs PowerShell 7.4 or later (.NET 8), or Windows PowerShell 5.1; this is PowerShell $($PSVersionTable.PSVersion)."
}

$cmdletModule = Import-Module -Name ([IO.Path]::Combine($PSScriptRoot, 'bin', $framework, 'VmQuiesce.dll')) -PassThru
Export-ModuleMember -Cmdlet @($cmdletModule.ExportedCmdlets.Keys)
