# Get-VmSnapshot and Restore-VmSnapshot share their names with Hyper-V's Get-VMSnapshot and Restore-VMSnapshot. After
# Import-Module VmQuiesce, Hyper-V's documented calls must still work: a stand-in Hyper-V module (the real one's
# parameter sets and object type names) records what reaches it, imported before VmQuiesce as on a Hyper-V host.
BeforeAll {
    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmq-hyperv-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
    $standIn = New-Item -ItemType Directory -Path (Join-Path $root 'modules/Hyper-V') -Force
    # Binary cmdlets, as the real module's are: a function would win over any cmdlet whatever the import order.
    Add-Type -OutputAssembly (Join-Path $standIn 'HyperVStandIn.dll') -TypeDefinition @'
using System;
using System.Collections.Generic;
using System.Management.Automation;

namespace HyperVStandIn
{
    public static class Calls
    {
        public static readonly List<PSObject> Recorded = new List<PSObject>();

        public static void Add(string command, string set, string target, System.Collections.IDictionary parameters)
        {
            var call = new PSObject();
            call.Properties.Add(new PSNoteProperty("Command", command));
            call.Properties.Add(new PSNoteProperty("Set", set));
            call.Properties.Add(new PSNoteProperty("Target", target));
            call.Properties.Add(new PSNoteProperty("Parameters", new Dictionary<string, object>((IDictionary<string, object>)parameters, StringComparer.OrdinalIgnoreCase)));
            Recorded.Add(call);
        }

        public static PSObject Snapshot(string vm, string name, int age)
        {
            var snapshot = new PSObject();
            snapshot.TypeNames.Insert(0, "Microsoft.HyperV.PowerShell.VMSnapshot");
            snapshot.Properties.Add(new PSNoteProperty("Name", name));
            snapshot.Properties.Add(new PSNoteProperty("VMName", vm));
            snapshot.Properties.Add(new PSNoteProperty("ComputerName", "HV01"));
            snapshot.Properties.Add(new PSNoteProperty("CreationTime", new DateTime(2026, 12, 1).AddDays(-age)));
            return snapshot;
        }
    }

    [Cmdlet(VerbsCommon.Get, "VM")]
    public sealed class GetVm : PSCmdlet
    {
        [Parameter(Position = 0)] public string[] Name { get; set; }

        protected override void ProcessRecord()
        {
            foreach (string name in Name)
            {
                var vm = new PSObject();
                vm.TypeNames.Insert(0, "Microsoft.HyperV.PowerShell.VirtualMachine");
                vm.Properties.Add(new PSNoteProperty("Name", name));
                vm.Properties.Add(new PSNoteProperty("VMName", name));
                vm.Properties.Add(new PSNoteProperty("ComputerName", "HV01"));
                vm.Properties.Add(new PSNoteProperty("Path", @"C:\VMs\" + name));
                WriteObject(vm);
            }
        }
    }

    [Cmdlet(VerbsCommon.Get, "VMSnapshot", DefaultParameterSetName = "VMName")]
    public sealed class GetVmSnapshot : PSCmdlet
    {
        [Parameter(ParameterSetName = "VMName", Mandatory = true, Position = 0)] public string[] VMName { get; set; }
        [Parameter(ParameterSetName = "VMObject", Mandatory = true, Position = 0, ValueFromPipeline = true)] public PSObject[] VM { get; set; }
        [Parameter(Position = 1)] public string Name { get; set; }
        [Parameter] public string[] ComputerName { get; set; }
        [Parameter] public PSCredential[] Credential { get; set; }
        [Parameter] public object[] CimSession { get; set; }
        [Parameter] public string SnapshotType { get; set; }

        protected override void ProcessRecord()
        {
            Calls.Add("Get-VMSnapshot", ParameterSetName, null, MyInvocation.BoundParameters);
            var names = new List<string>();
            if (VM != null) { foreach (PSObject vm in VM) { names.Add(vm.Properties["Name"].Value.ToString()); } } else { names.AddRange(VMName); }
            foreach (string vm in names)
            {
                if (vm == "noisy01") { WriteWarning("Checkpoints of 'noisy01' are being merged."); }
                WriteObject(Calls.Snapshot(vm, "Before patch", 2));
                WriteObject(Calls.Snapshot(vm, "Base image", 9));
            }
        }
    }

    [Cmdlet(VerbsData.Restore, "VMSnapshot", SupportsShouldProcess = true, ConfirmImpact = ConfirmImpact.High, DefaultParameterSetName = "SnapshotName")]
    public sealed class RestoreVmSnapshot : PSCmdlet
    {
        [Parameter(ParameterSetName = "SnapshotName", Mandatory = true, Position = 0)]
        [Parameter(ParameterSetName = "VM", Mandatory = true, Position = 1)] public string Name { get; set; }
        [Parameter(ParameterSetName = "SnapshotName", Mandatory = true, Position = 1)] public string VMName { get; set; }
        [Parameter(ParameterSetName = "SnapshotObject", Mandatory = true, Position = 0, ValueFromPipeline = true)] public PSObject VMSnapshot { get; set; }
        [Parameter(ParameterSetName = "VM", Mandatory = true, Position = 0)] public PSObject VM { get; set; }
        [Parameter(ParameterSetName = "SnapshotName")] public string[] ComputerName { get; set; }
        [Parameter(ParameterSetName = "SnapshotName")] public PSCredential[] Credential { get; set; }
        [Parameter(ParameterSetName = "SnapshotName")] public object[] CimSession { get; set; }
        [Parameter] public SwitchParameter AsJob { get; set; }
        [Parameter] public SwitchParameter Passthru { get; set; }

        protected override void ProcessRecord()
        {
            string vm = VMSnapshot != null ? VMSnapshot.Properties["VMName"].Value.ToString() : VM != null ? VM.Properties["Name"].Value.ToString() : VMName;
            string name = VMSnapshot != null ? VMSnapshot.Properties["Name"].Value.ToString() : Name;
            if (ShouldProcess(vm + "/" + name, "Restore checkpoint"))
            {
                Calls.Add("Restore-VMSnapshot", ParameterSetName, vm + "/" + name, MyInvocation.BoundParameters);
                if (Passthru) { WriteObject(Calls.Snapshot(vm, name, 0)); }
            }
        }
    }
}
'@
    New-ModuleManifest -Path (Join-Path $standIn 'Hyper-V.psd1') -RootModule 'HyperVStandIn.dll' -CmdletsToExport 'Get-VM', 'Get-VMSnapshot', 'Restore-VMSnapshot' -ModuleVersion '2.0.0'
   $script:savedModulePath = $env:PSModulePath
    $env:PSModulePath = (Join-Path $root 'modules') + [IO.Path]::PathSeparator + $env:PSModulePath
    # As on a Hyper-V host: Hyper-V first, then VmQuiesce, whose cmdlets now answer to both names.
    Import-Module Hyper-V -Force
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force

    function script:Get-Calls([string] $Command) { @([HyperVStandIn.Calls]::Recorded | Where-Object Command -EQ $Command) }
}

AfterAll {
    Remove-Module Hyper-V -Force -ErrorAction SilentlyContinue
    $env:PSModulePath = $savedModulePath
    Remove-Item -LiteralPath $root -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Hyper-V''s documented calls after Import-Module VmQuiesce' {
    BeforeEach { [HyperVStandIn.Calls]::Recorded.Clear() }

    It 'resolves Hyper-V''s command names to VmQuiesce''s cmdlets (the case this is about)' {
        (Get-Command Restore-VMSnapshot).Source | Should -Be 'VmQuiesce'
        (Get-Command Get-VMSnapshot).Source | Should -Be 'VmQuiesce'
    }

    It 'Restore-VMSnapshot -Name ''Before patch'' -VMName sql01 reaches Hyper-V''s Restore-VMSnapshot' {
        Restore-VMSnapshot -Name 'Before patch' -VMName sql01 -Confirm:$false

        $call = Get-Calls 'Restore-VMSnapshot'
        $call.Count | Should -Be 1
        $call[0].Set | Should -Be 'SnapshotName'
        $call[0].Target | Should -Be 'sql01/Before patch'
    }

    It 'Get-VM | ForEach-Object { $_ | Get-VMSnapshot | Sort CreationTime | Select -Last 1 | Restore-VMSnapshot } applies each VM''s newest checkpoint' {
        Get-VM sql01, web01 | ForEach-Object { $_ | Get-VMSnapshot | Sort-Object CreationTime | Select-Object -Last 1 | Restore-VMSnapshot -Confirm:$false }

        @(Get-Calls 'Get-VMSnapshot' | ForEach-Object Set) | Should -Be @('VMObject', 'VMObject')
        $restores = Get-Calls 'Restore-VMSnapshot'
        @($restores | ForEach-Object Set) | Should -Be @('SnapshotObject', 'SnapshotObject')
        @($restores | ForEach-Object Target) | Should -Be @('sql01/Before patch', 'web01/Before patch')
    }

    It 'Get-VMSnapshot -VMName sql01 -SnapshotType Standard hands every parameter on and returns Hyper-V''s objects' {
        $snapshots = @(Get-VMSnapshot -VMName sql01 -SnapshotType Standard -ComputerName HV01)

        $snapshots.Count | Should -Be 2
        $snapshots[0].PSObject.TypeNames | Should -Contain 'Microsoft.HyperV.PowerShell.VMSnapshot'
        $call = Get-Calls 'Get-VMSnapshot'
        $call[0].Set | Should -Be 'VMName'
        $call[0].Parameters.SnapshotType | Should -Be 'Standard'
        $call[0].Parameters.ComputerName | Should -Be 'HV01'
    }

    It 'Get-VMSnapshot writes Hyper-V''s warnings as its own: 3>&1 takes them, in order, once; -WarningVariable and -WarningAction apply' {
        $all = @(Get-VMSnapshot -VMName noisy01 3>&1)

        @($all | ForEach-Object { if ($_ -is [Management.Automation.WarningRecord]) { "WARNING: $($_.Message)" } else { $_.Name } }) |
            Should -Be @("WARNING: Checkpoints of 'noisy01' are being merged.", 'Before patch', 'Base image')
        $null = Get-VMSnapshot -VMName noisy01 -WarningVariable warned -WarningAction SilentlyContinue
        @($warned).Count | Should -Be 1
        @(Get-VMSnapshot -VMName noisy01 -WarningAction SilentlyContinue 3>&1 | Where-Object { $_ -is [Management.Automation.WarningRecord] }) | Should -BeNullOrEmpty
    }

    It 'Restore-VMSnapshot -VM (Get-VM sql01) -Name ''Base image'' -Passthru returns what Hyper-V returns' {
        $applied = Restore-VMSnapshot -VM (Get-VM sql01) -Name 'Base image' -Passthru -Confirm:$false

        (Get-Calls 'Restore-VMSnapshot')[0].Set | Should -Be 'VM'
        $applied.Name | Should -Be 'Base image'
    }

    It 'passes -WhatIf on: Hyper-V restores nothing' {
        Restore-VMSnapshot -Name 'Before patch' -VMName sql01 -WhatIf
        Get-Calls 'Restore-VMSnapshot' | Should -BeNullOrEmpty
    }

    It 'refuses an object that is not a Hyper-V checkpoint when binding it' {
        { Restore-VMSnapshot -VMSnapshot ([pscustomobject]@{ Name = 'x'; VMName = 'y' }) -Confirm:$false } | Should -Throw -ErrorId 'MismatchedPSTypeName,VmQuiesce.Commands.RestoreVmSnapshotCommand'
        Get-Calls 'Restore-VMSnapshot' | Should -BeNullOrEmpty
    }

    It 'says the Hyper-V module is missing when there is none' {
        if ($IsWindows -or $PSVersionTable.PSEdition -eq 'Desktop') { Set-ItResult -Skipped -Because 'a Windows host may have the real Hyper-V module installed'; return }
        Remove-Module Hyper-V -Force
        $path = $env:PSModulePath
        try {
            $env:PSModulePath = $savedModulePath
            { Restore-VMSnapshot -Name 'Before patch' -VMName sql01 -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'HyperVModuleNotFound,*'
        }
        finally {
            $env:PSModulePath = $path
            Import-Module Hyper-V -Force
            Import-Module $env:VMQUIESCE_MODULE_PATH -Force
        }
    }
}

Describe 'VmQuiesce''s own calls are unchanged' {
    It 'still binds a restore point from the pipeline and a BackupVm to -Vm' {
        (Get-Command Restore-VmSnapshot -Module VmQuiesce).ParameterSets.Name | Should -Contain 'RestorePoint'
        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('vm1', [string[]] @((Join-Path $root 'disk.img')))
        $vm | Get-VmSnapshot -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -Not -BeLike 'HyperV*'
    }
}
