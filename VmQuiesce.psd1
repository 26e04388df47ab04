@{
    # Imports bin/net472/VmQuiesce.dll (Windows PowerShell 5.1) or bin/net8.0/VmQuiesce.dll (PowerShell 7.4+).
    RootModule           = 'VmQuiesce.psm1'
    ModuleVersion        = '0.1.0'
    CompatiblePSEditions = @('Desktop', 'Core')
    GUID                 = '6f1c1f7e-3c2a-4b8e-9a51-2d6d0c8a4e17'
    Author               = 'VmQuiesce contributors'
    CompanyName          = 'VmQuiesce'
    Copyright            = '(c) VmQuiesce contributors. All rights reserved.'
    Description          = 'Application-consistent, agentless image-level VM backups taken from the host: quiesce the guest (VSS writers, fsfreeze), snapshot in the quiet moment, thaw within milliseconds, store deduplicated restore points, and restore in two steps.'
    PowerShellVersion    = '5.1'
    DotNetFrameworkVersion = '4.7.2'
    FormatsToProcess     = @('VmQuiesce.Format.ps1xml')
    NestedModules        = @('VmQuiesce.Dsc.psm1')
    CmdletsToExport      = @(
        'Add-VmBackupRepositoryKey'
        'Complete-VmInstantRestore'
        'Copy-VmBackup'
        'Dismount-VmBackup'
        'Export-VmBackupRepositoryKey'
        'Get-BackupVm'
        'Get-VmBackup'
        'Get-VmBackupExport'
        'Get-VmBackupMount'
        'Get-VmBackupRepository'
        'Get-VmBackupSchedule'
        'Get-VmInstantRestore'
        'Get-VmSnapshot'
        'Get-VssWriter'
        'Get-VssWriterConfig'
        'Get-VssWriterServiceLogon'
        'Import-VmBackupRepositoryKey'
        'Invoke-VmBackupJob'
        'Invoke-VmQuiescedBackup'
        'Mount-VmBackup'
        'New-VmBackupRepository'
        'Register-VmBackupSchedule'
        'Remove-VmBackup'
        'Remove-VmBackupRepositoryKey'
        'Remove-VssWriterConfig'
        'Repair-BackupVm'
        'Restore-VmBackupItem'
        'Restore-VmSnapshot'
        'Set-VssWriterConfig'
        'Set-VssWriterServiceLogon'
        'Start-VmBackupExport'
        'Start-VmInstantRestore'
        'Stop-VmBackupExport'
        'Stop-VmInstantRestore'
        'Test-VmBackup'
        'Test-VmQuiesceReadiness'
        'Test-VssWriterConfig'
        'Test-VssWriterServiceLogon'
        'Unregister-VmBackupSchedule'
    )
    FunctionsToExport    = @()
    VariablesToExport    = @()
    AliasesToExport      = @()
    DscResourcesToExport = @('VmBackupSchedule', 'VssWriterConfig', 'VssWriterServiceLogon')
    PrivateData          = @{
        PSData = @{
            Tags         = @('Backup', 'VSS', 'QEMU', 'KVM', 'VMware', 'Snapshot', 'Quiesce', 'Windows', 'Linux', 'PSEdition_Desktop', 'PSEdition_Core')
            ReleaseNotes = 'See README.md.'
        }
    }
}
