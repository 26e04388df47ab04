BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force

    $script:OnWindows = [Environment]::OSVersion.Platform -eq [PlatformID]::Win32NT
    $script:WriterType = 'VmQuiesce.Core.Sources.WindowsVss.VssWriterInfo'
}

Describe 'Get-VssWriter' {
    It 'declares its output type and a wildcard -Name' {
        $command = Get-Command Get-VssWriter
        $command.OutputType.Name | Should -Be $WriterType
        $name = $command.Parameters['Name']
        $name.ParameterType | Should -Be ([string[]])
        $name.Attributes.Where({ $_ -is [System.Management.Automation.SupportsWildcardsAttribute] }).Count | Should -Be 1
    }

    It 'has a table and a list view for its output' {
        $views = @((Get-FormatData -TypeName $WriterType -PowerShellVersion $PSVersionTable.PSVersion).FormatViewDefinition)
        @($views.Control | ForEach-Object { $_.GetType().Name } | Sort-Object) | Should -Be @('ListControl', 'TableControl')
    }

    It 'shows an unknown service, a state and the last error by name in its table' {
        $writer = [VmQuiesce.Core.Sources.WindowsVss.VssWriterInfo]::new('Test Writer', [guid]::NewGuid(), [guid]::NewGuid(),
            [VmQuiesce.Core.Sources.WindowsVss.VssWriterState]::FailedAtFreeze, [int]0x800423F2, $null)
        $text = $writer | Format-Table | Out-String -Width 200
        $text | Should -Match 'Test Writer\s+FailedAtFreeze\s+VSS_E_WRITERERROR_TIMEOUT\s+unknown'
        ($writer | Format-List | Out-String -Width 200) | Should -Match 'LastError\s+:\s+0x800423F2 VSS_E_WRITERERROR_TIMEOUT'
    }

    It 'is refused off Windows with the stable error id WindowsOnly' {
        if ($OnWindows) { Set-ItResult -Skipped -Because 'this checks the refusal on Linux and macOS; the Windows behaviour is in HostVss.Windows.Tests.ps1'; return }
        $failure = $null
        try { Get-VssWriter -ErrorAction Stop } catch { $failure = $_ }
        $failure | Should -Not -BeNullOrEmpty
        $failure.FullyQualifiedErrorId | Should -Be 'WindowsOnly,VmQuiesce.Commands.GetVssWriterCommand'
        $failure.CategoryInfo.Category | Should -Be 'NotImplemented'
        $failure.Exception.Message | Should -BeLike '*Volume Shadow Copy Service*'
    }
}
