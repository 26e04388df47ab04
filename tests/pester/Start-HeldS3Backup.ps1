<#
.SYNOPSIS
    A backup into an S3 repository that stops inside its pre-freeze script, holding its lock object: run in a child
    pwsh by ObjectStorage.Tests.ps1, which sees the lock respected while this process lives, then SIGKILLs it.
    The credentials come from the environment (the AWS chain), never from the command line.
#>
param(
    [Parameter(Mandatory)] [string] $ModulePath,
    [Parameter(Mandatory)] [string] $Repository,
    [Parameter(Mandatory)] [uri] $Endpoint,
    [Parameter(Mandatory)] [string] $Disk
)
$ErrorActionPreference = 'Stop'
Import-Module $ModulePath
$vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('held', [string[]] @($Disk))
Invoke-VmQuiescedBackup -Vm $vm -Repository $Repository -S3Endpoint $Endpoint -Consistency Crash -Confirm:$false -PreFreezeScript {
    [Console]::Out.WriteLine('HOLDING')
    [Console]::Out.Flush()
    [Threading.Thread]::Sleep([Threading.Timeout]::Infinite)
}
