# Helpers shared by the Pester files.

# A fresh PowerShell of the same kind as this one (pwsh, or `dotnet pwsh.dll` from the local tool).
function Get-ChildPwsh {
    $first = [Environment]::GetCommandLineArgs()[0]
    if ($first -like '*.dll') { return @{ FilePath = (Get-Command dotnet).Source; Prefix = @($first) } }
    @{ FilePath = (Get-Process -Id $PID).Path; Prefix = @() }
}

Export-ModuleMember -Function Get-ChildPwsh
