BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force

    $script:onWindows = $IsWindows -or $PSVersionTable.PSEdition -eq 'Desktop'
    $script:webId = '5F2C3A10-1111-4222-8333-944445555666'
    $script:dbId = '6A7B8C9D-1111-4222-8333-944445555666'

    # Hyper-V cannot run here. This stands in for its WMI classes the way Get-CimInstance answers on a
    # Hyper-V host; a function named like the cmdlet is found before it, as it is on Windows.
    $global:HyperVWmi = @{
        Msvm_ComputerSystem               = @(
            [pscustomobject]@{ Name = 'HOST01'; ElementName = 'HOST01'; EnabledState = [uint16]2 }
            [pscustomobject]@{ Name = $webId; ElementName = 'web'; EnabledState = [uint16]2 }
            [pscustomobject]@{ Name = $dbId; ElementName = 'db'; EnabledState = [uint16]3 }
        )
        Msvm_VirtualSystemSettingData     = @(
            [pscustomobject]@{ VirtualSystemIdentifier = $webId; VirtualSystemType = 'Microsoft:Hyper-V:System:Realized'
                ConfigurationDataRoot = 'C:\ProgramData\Microsoft\Windows\Hyper-V'; ConfigurationFile = "Virtual Machines\$webId.vmcx" }
            [pscustomobject]@{ VirtualSystemIdentifier = $dbId; VirtualSystemType = 'Microsoft:Hyper-V:System:Realized'
                ConfigurationDataRoot = 'E:\VMs\db'; ConfigurationFile = "Virtual Machines\$dbId.vmcx" }
        )
        Msvm_StorageAllocationSettingData = @(
            [pscustomobject]@{ InstanceID = "Microsoft:$webId\83F8638B-8DCA-4152-9EDA-2CA8B33039B4\0\0\L"; HostResource = [string[]] @('D:\Disks\web.vhdx') }
            [pscustomobject]@{ InstanceID = "Microsoft:$dbId\83F8638B-8DCA-4152-9EDA-2CA8B33039B4\0\0\L"; HostResource = [string[]] @('E:\VMs\db\db.vhdx') }
        )
    }
    $global:HyperVWmiCalls = [Collections.Generic.List[string]]::new()
    $global:HyperVWmiFailure = $null

    function global:Get-CimInstance {
        param([string] $Namespace, [string] $ClassName, [string] $Filter)
        $global:HyperVWmiCalls.Add("$Namespace|$ClassName|$Filter")
        if ($global:HyperVWmiFailure) { throw $global:HyperVWmiFailure }
        $global:HyperVWmi[$ClassName]
    }
}

AfterAll {
    Remove-Item -Path function:global:Get-CimInstance -ErrorAction Ignore
    Remove-Variable -Name HyperVWmi, HyperVWmiCalls, HyperVWmiFailure -Scope Global -ErrorAction Ignore
}

Describe 'Get-BackupVm -HyperV' {
    BeforeEach {
        $global:HyperVWmiCalls.Clear()
        $global:HyperVWmiFailure = $null
        $script:disks = $global:HyperVWmi.Msvm_StorageAllocationSettingData
    }

    AfterEach {
        $global:HyperVWmi.Msvm_StorageAllocationSettingData = $disks
    }

    It "lists the host's VMs, not the host, from Hyper-V's WMI classes: current settings and virtual disks only" {
        $vms = @(Get-BackupVm -HyperV)

        $vms.Name | Should -Be @('web', 'db')
        $vms.Kind | Should -Be @('HyperV', 'HyperV')
        $vms[0].Location | Should -Be "C:\ProgramData\Microsoft\Windows\Hyper-V\Virtual Machines\$webId.vmcx"
        $vms[0].Details['Id'] | Should -Be $webId.ToLowerInvariant()
        $vms[0].Details['State'] | Should -Be 'Running'
        $vms[1].Details['Disks'] | Should -Be 'E:\VMs\db\db.vhdx'
        $global:HyperVWmiCalls | Should -Be @(
            'root\virtualization\v2|Msvm_ComputerSystem|'
            "root\virtualization\v2|Msvm_VirtualSystemSettingData|VirtualSystemType = 'Microsoft:Hyper-V:System:Realized'"
            'root\virtualization\v2|Msvm_StorageAllocationSettingData|ResourceType = 31')
    }

    It 'filters by -Name with wildcards, and a plain name that matches nothing is VmNotFound' {
        (Get-BackupVm -HyperV -Name 'W*').Name | Should -Be 'web'
        Get-BackupVm -HyperV 'nosuch' -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -Be 'VmNotFound,VmQuiesce.Commands.GetBackupVmCommand'
        "$($failures[0])" | Should -Be "No Hyper-V VM named 'nosuch'; found 2: 'web', 'db'."
    }

    It 'reports a VM on a checkpoint disk as an error naming the disk, and still lists the others' {
        $global:HyperVWmi.Msvm_StorageAllocationSettingData = @(
            $disks[0]
            [pscustomobject]@{ InstanceID = "Microsoft:$dbId\83F8638B\0\0\L"; HostResource = [string[]] @("E:\VMs\db\db_$dbId.avhdx") })

        $vms = @(Get-BackupVm -HyperV -ErrorVariable failures -ErrorAction SilentlyContinue)

        $vms.Name | Should -Be 'web'
        $failures[0].FullyQualifiedErrorId | Should -Be 'HyperVCheckpointDisk,VmQuiesce.Commands.GetBackupVmCommand'
        "$($failures[0])" | Should -BeLike "*'db'*.avhdx*"
    }

    It 'stops with HyperVNotAvailable, naming the namespace, when WMI refuses' {
        $global:HyperVWmiFailure = 'Invalid namespace'

        { Get-BackupVm -HyperV -ErrorAction Stop } | Should -Throw -ErrorId 'HyperVNotAvailable,VmQuiesce.Commands.GetBackupVmCommand' -ExpectedMessage '*root\virtualization\v2*Invalid namespace*'
    }

    It 'stops with HyperVNotAvailable where there is no Get-CimInstance at all' {
        if ($onWindows) { Set-ItResult -Skipped -Because 'Windows has the real Get-CimInstance; this checks a PowerShell without it (Linux, macOS)'; return }
        # A fresh PowerShell, without the stand-in above.
        $child = Get-ChildPwsh
        $command = "Import-Module '$env:VMQUIESCE_MODULE_PATH'; try { Get-BackupVm -HyperV -ErrorAction Stop } catch { `$_.FullyQualifiedErrorId; `"`$_`" }"

        $output = & $child.FilePath @($child.Prefix + @('-NoProfile', '-NonInteractive', '-Command', $command)) 2>&1

        $output[0] | Should -Be 'HyperVNotAvailable,VmQuiesce.Commands.GetBackupVmCommand'
        $output[1] | Should -BeLike '*no Get-CimInstance*'
    }
}

Describe 'Backing up a Hyper-V VM' {
    It 'goes through the host VSS with or without -Method HostVss, which alone allows -VssBackupType Full; off Windows that is WindowsOnly before anything is written' {
        if ($onWindows) { Set-ItResult -Skipped -Because 'on Windows this would ask the real VSS for a Hyper-V writer; the requester itself is tested through HostVss.Windows.Tests.ps1'; return }
        $repo = Join-Path ([IO.Path]::GetTempPath()) "vmq-hyperv-$([guid]::NewGuid().ToString('N'))"
        try {
            $web = Get-BackupVm -HyperV -Name web

            $web | Invoke-VmQuiescedBackup -Repository $repo -ErrorVariable native -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
            $web | Invoke-VmQuiescedBackup -Repository $repo -Method HostVss -VssBackupType Full -ErrorVariable full -ErrorAction SilentlyContinue | Should -BeNullOrEmpty

            foreach ($failure in $native[0], $full[0]) {
                $failure.FullyQualifiedErrorId | Should -BeLike 'WindowsOnly,*'
                $failure.TargetObject.Name | Should -Be 'web'
            }
            @(Get-ChildItem -LiteralPath (Join-Path $repo 'points') -ErrorAction Ignore).Count | Should -Be 0
        }
        finally {
            Remove-Item -LiteralPath $repo -Recurse -Force -ErrorAction Ignore
        }
    }
}
