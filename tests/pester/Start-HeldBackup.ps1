<#
.SYNOPSIS
    A real QEMU backup that stops to be killed: run in a child pwsh by GuestFaults.Tests.ps1. It opens the
    backup's consistent view of a VM through the built module's core and, at -HoldAt, prints HOLDING and
    blocks, so the test can SIGKILL this process at that exact point: 'Frozen' (inside the frozen window,
    before the snapshot) or 'Overlay' (the guest thawed and running on the backup's overlays, as during the copy).
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $QmpSocket,
    [Parameter(Mandatory)] [string] $AgentSocket,
    [Parameter(Mandatory)] [ValidateSet('Frozen', 'Overlay')] [string] $HoldAt
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath

# The hold is compiled: it runs on the freeze's thread, where no PowerShell runspace is.
Add-Type -TypeDefinition @'
public static class VmQuiesceTestHold
{
    public static void Here(System.Threading.CancellationToken cancel)
    {
        System.Console.Out.WriteLine("HOLDING");
        System.Console.Out.Flush();
        System.Threading.Thread.Sleep(System.Threading.Timeout.Infinite);
    }
}
'@

$options = [VmQuiesce.Core.Sources.Qemu.QemuSourceOptions]::new('held', $QmpSocket)
$type = $options.GetType()
$type.GetProperty('AgentSocket').SetValue($options, $AgentSocket)
if ($HoldAt -eq 'Frozen') {
    $hold = [Delegate]::CreateDelegate([Action[Threading.CancellationToken]], [VmQuiesceTestHold].GetMethod('Here'))
    $type.GetProperty('BeforeSnapshot', [Reflection.BindingFlags] 'NonPublic, Instance').SetValue($options, $hold)
}

# A freeze timeout far beyond the test: only the guardian can thaw the guest once this process is killed.
$quiesce = [VmQuiesce.Core.Sources.QuiesceOptions]::new()
[VmQuiesce.Core.Sources.QuiesceOptions].GetProperty('FreezeTimeout').SetValue($quiesce, [timespan]::FromMinutes(10))
$view = [VmQuiesce.Core.Sources.Qemu.QemuSource]::new($options).OpenConsistentView($quiesce, [Threading.CancellationToken]::None)
[VmQuiesceTestHold]::Here([Threading.CancellationToken]::None)
