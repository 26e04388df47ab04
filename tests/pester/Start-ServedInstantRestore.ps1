<#
.SYNOPSIS
    An instant restore whose serving process is there to be killed: run in a child pwsh by
    InstantRestore.Tests.ps1. It starts the restore of the test guest's point through the built module, prints
    STARTED <id>, and serves the point until killed (it reads its standard input, which the test never closes).
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $Repository,
    [Parameter(Mandatory)] [string] $Id,
    [Parameter(Mandatory)] [string] $Destination,
    [Parameter(Mandatory)] [long] $CopyRateLimit
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath
$vm = @{
    Kernel    = Join-Path $env:VMQUIESCE_TEST_GUEST 'vmlinuz'
    Initrd    = Join-Path $env:VMQUIESCE_TEST_GUEST 'initramfs.cpio.gz'
    Append    = 'console=ttyS0 quiet panic=-1 no_timer_check vmquiesce.disks=1 vmquiesce.agent=respawn'
    MemoryMiB = 128
}
$restore = Start-VmInstantRestore -Repository $Repository -Id $Id -Destination $Destination -VmOption $vm -CopyRateLimit $CopyRateLimit -Confirm:$false
[Console]::Out.WriteLine("STARTED $($restore.Id)")
[Console]::Out.Flush()
[Console]::In.ReadLine() | Out-Null
