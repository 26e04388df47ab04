BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force

    $script:ConfigType = 'VmQuiesce.Core.Config.VssWriterConfig'
    $script:DifferenceType = 'VmQuiesce.Core.Config.VssWriterConfigDifference'

    function New-TestFolder {
        $path = Join-Path ([IO.Path]::GetTempPath()) ("vmquiesce-pester-" + [guid]::NewGuid().ToString('N'))
        (New-Item -ItemType Directory -Path $path).FullName
    }

    function Invoke-Failing {
        # Runs a command that must fail and returns its error record (terminating or not).
        param([scriptblock] $Command)
        try {
            $ErrorActionPreference = 'Stop'
            & $Command | Out-Null
        }
        catch {
            return $_
        }
        throw 'The command did not fail.'
    }

    function Invoke-WithoutUserInterface {
        # A runspace whose host cannot prompt: a prompt shows up as an error instead of waiting.
        param([string] $Script, [string] $Folder)
        $shell = [powershell]::Create()
        try {
            $null = $shell.AddScript("param(`$ModulePath, `$Folder) Import-Module `$ModulePath; $Script")
            $null = $shell.AddArgument($env:VMQUIESCE_MODULE_PATH).AddArgument($Folder)
            $output = $shell.Invoke()
            [pscustomobject]@{ Output = $output; Errors = @($shell.Streams.Error); Warnings = @($shell.Streams.Warning) }
        }
        finally {
            $shell.Dispose()
        }
    }

    function Set-ReadOnly {
        param([string] $Path)
        if ($IsLinux -or $IsMacOS) { & chmod 444 $Path } else { Set-ItemProperty -LiteralPath $Path -Name IsReadOnly -Value $true }
    }

    function Clear-ReadOnly {
        param([string] $Folder)
        Get-ChildItem -LiteralPath $Folder -Force -File | ForEach-Object {
            if ($IsLinux -or $IsMacOS) { & chmod 644 $_.FullName } else { $_.IsReadOnly = $false }
        }
    }

    $script:LongAgo = [datetime]::new(2009, 3, 1, 12, 0, 0, [DateTimeKind]::Utc)
}

Describe 'Cmdlet metadata' {
    It '<Name> takes -Path from the pipeline by value and by property name, with the PSPath alias' -TestCases @(
        @{ Name = 'Get-VssWriterConfig' }, @{ Name = 'Set-VssWriterConfig' }, @{ Name = 'Test-VssWriterConfig' }, @{ Name = 'Remove-VssWriterConfig' }
    ) {
        $path = (Get-Command $Name).Parameters['Path']
        $attribute = $path.Attributes | Where-Object { $_ -is [System.Management.Automation.ParameterAttribute] }
        $attribute.ValueFromPipelineByPropertyName | Should -BeTrue
        $attribute.ValueFromPipeline | Should -BeTrue
        $attribute.Position | Should -Be 0
        $path.Aliases | Should -Contain 'PSPath'
    }

    It 'Set and Remove support -WhatIf and -Confirm with Medium impact; Get and Test change nothing' {
        foreach ($name in 'Set-VssWriterConfig', 'Remove-VssWriterConfig') {
            $command = Get-Command $name
            $command.Parameters.Keys | Should -Contain 'WhatIf'
            $command.ImplementingType.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0].ConfirmImpact | Should -Be 'Medium'
        }
        (Get-Command Get-VssWriterConfig).Parameters.Keys | Should -Not -Contain 'WhatIf'
        (Get-Command Test-VssWriterConfig).Parameters.Keys | Should -Not -Contain 'WhatIf'
    }

    It 'declares its output types' {
        (Get-Command Get-VssWriterConfig).OutputType.Name | Should -Be $ConfigType
        (Get-Command Set-VssWriterConfig).OutputType.Name | Should -Be $ConfigType
        @((Get-Command Test-VssWriterConfig).OutputType.Name | Sort-Object) | Should -Be @('System.Boolean', $DifferenceType)
    }

    It 'Set and Test take -OverwriteSnapshots as a boolean and -Setting as a hashtable' {
        foreach ($name in 'Set-VssWriterConfig', 'Test-VssWriterConfig') {
            (Get-Command $name).Parameters['OverwriteSnapshots'].ParameterType | Should -Be ([bool])
            (Get-Command $name).Parameters['Setting'].ParameterType | Should -Be ([hashtable])
        }
    }
}

Describe 'Get-VssWriterConfig' {
    BeforeEach {
        $folder = New-TestFolder
        $file = Join-Path $folder 'vmvsswriter.cfg'
    }
    AfterEach {
        Clear-ReadOnly $folder
        Remove-Item -LiteralPath $folder -Recurse -Force
    }

    It 'shows a folder without the file as not existing' {
        $config = Get-VssWriterConfig -Path $folder

        $config.PSObject.TypeNames[0] | Should -Be $ConfigType
        $config.Path | Should -Be $file
        $config.Exists | Should -BeFalse
        $config.OverwriteSnapshots | Should -BeFalse
        @($config.Settings).Count | Should -Be 0
        Test-Path -LiteralPath $file | Should -BeFalse
    }

    It 'reads every setting and OverwriteSnapshots as a boolean' {
        [IO.File]::WriteAllText($file, "# ops`r`nvmwriter.overwriteSnapshots = `"TRUE`"`r`nvmwriter.unknown = `"a|7Cb`"`r`n")

        $config = Get-VssWriterConfig -Path $file

        $config.Exists | Should -BeTrue
        $config.OverwriteSnapshots | Should -BeTrue
        $config.OverwriteSnapshots | Should -BeOfType [bool]
        $config.Settings.Name | Should -Be @('vmwriter.overwriteSnapshots', 'vmwriter.unknown')
        $config.Settings[1].Value | Should -Be 'a|b'
    }

    It 'resolves a relative path against the current location' {
        Push-Location $folder
        try {
            (Get-VssWriterConfig -Path .).Path | Should -Be $file
            (Get-VssWriterConfig .).Path | Should -Be $file
        }
        finally {
            Pop-Location
        }
    }

    It 'takes paths from the pipeline, by value and from Get-Item by property name' {
        $other = New-TestFolder
        try {
            @($folder, $other | Get-VssWriterConfig).Path | Should -Be @($file, (Join-Path $other 'vmvsswriter.cfg'))
            (Get-Item -LiteralPath $folder | Get-VssWriterConfig).Path | Should -Be $file
        }
        finally {
            Remove-Item -LiteralPath $other -Recurse -Force
        }
    }

    It 'reports a folder that does not exist with ConfigFolderNotFound and goes on with the next path' {
        $missing = Join-Path $folder 'VMware Server'

        $results = @($missing, $folder | Get-VssWriterConfig -ErrorVariable failures -ErrorAction SilentlyContinue)

        $failures.Count | Should -Be 1
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'ConfigFolderNotFound,*'
        $failures[0].CategoryInfo.Category | Should -Be 'ObjectNotFound'
        $failures[0].TargetObject | Should -Be $missing
        $results.Path | Should -Be $file
        Test-Path -LiteralPath $missing | Should -BeFalse
    }

    It 'reports a malformed file with the path and line number' {
        [IO.File]::WriteAllText($file, "a = `"1`"`nbroken line`n")

        $failure = Invoke-Failing { Get-VssWriterConfig -Path $file }

        $failure.FullyQualifiedErrorId | Should -BeLike 'MalformedConfigLine,*'
        $failure.Exception.Message | Should -BeLike "$file, line 2:*"
    }

    It 'without -Path finds VMware Server, or says it is not installed and asks for -Path' {
        $config = Get-VssWriterConfig -ErrorVariable failures -ErrorAction SilentlyContinue
        if ($IsLinux -or $IsMacOS -or -not $config) {
            $failures[0].FullyQualifiedErrorId | Should -BeLike 'VMwareServerNotFound,*'
            $failures[0].Exception.Message | Should -BeLike '*-Path*'
        }
        else {
            $config.Path | Should -BeLike '*\vmvsswriter.cfg'
        }
    }

    It 'formats as a table with its headers and no type names' {
        Set-Content -LiteralPath $file -Value 'vmwriter.overwriteSnapshots = "TRUE"'

        $text = Get-VssWriterConfig -Path $folder | Format-Table | Out-String -Width 200

        foreach ($header in 'Exists', 'OverwriteSnapshots', 'Settings', 'Path') { $text | Should -Match "\b$header\b" }
        $text | Should -Match ([regex]::Escape($file))
        $text | Should -Not -Match 'VmQuiesce\.Core'
    }

    It 'formats as a list with one line per setting and no type names' {
        Set-Content -LiteralPath $file -Value 'vmwriter.overwriteSnapshots = "TRUE"', 'vmwriter.other = "x"'

        $text = Get-VssWriterConfig -Path $folder | Format-List | Out-String -Width 200

        foreach ($label in 'Path', 'Exists', 'OverwriteSnapshots', 'LastWriteTime', 'Settings') { $text | Should -Match "(?m)^$label\s+:" }
        $text | Should -Match 'vmwriter\.overwriteSnapshots = "TRUE"'
        $text | Should -Match 'vmwriter\.other = "x"'
        $text | Should -Not -Match 'VmQuiesce\.Core'
    }

    It 'formats the settings as a table of name, value and line' {
        Set-Content -LiteralPath $file -Value 'vmwriter.overwriteSnapshots = "TRUE"'

        $text = (Get-VssWriterConfig -Path $folder).Settings | Format-Table | Out-String

        $text | Should -Match 'Name\s+Value\s+Line'
        $text | Should -Not -Match 'VmQuiesce\.Core'
    }
}

Describe 'Set-VssWriterConfig' {
    BeforeEach {
        $folder = New-TestFolder
        $file = Join-Path $folder 'vmvsswriter.cfg'
    }
    AfterEach {
        Clear-ReadOnly $folder
        Remove-Item -LiteralPath $folder -Recurse -Force
    }

    It 'creates the file, warns that snapshots will be overwritten, and outputs nothing without -PassThru' {
        $output = Set-VssWriterConfig -Path $folder -OverwriteSnapshots $true -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue

        $output | Should -BeNullOrEmpty
        [IO.File]::ReadAllText($file) | Should -Be "vmwriter.overwriteSnapshots = `"TRUE`"`r`n"
        $warnings.Count | Should -Be 1
        $warnings[0].Message | Should -BeLike '*overwrite*snapshot*'
        Test-Path -LiteralPath "$file.bak" | Should -BeFalse
    }

    It '-PassThru outputs the configuration after the change' {
        $config = Set-VssWriterConfig -Path $folder -OverwriteSnapshots $true -Setting @{ 'vmwriter.logLevel' = 'verbose' } -PassThru -Confirm:$false -WarningAction SilentlyContinue

        $config.PSObject.TypeNames[0] | Should -Be $ConfigType
        $config.Exists | Should -BeTrue
        $config.OverwriteSnapshots | Should -BeTrue
        ($config.Settings | Where-Object Name -EQ 'vmwriter.logLevel').Value | Should -Be 'verbose'
    }

    It 'updates in place, keeps comments and the previous version as .bak' {
        $original = "# ops: keep this`nvmwriter.overwriteSnapshots   =  `"FALSE`"  # was off`nvmwriter.unknown = `"kept`"`n"
        [IO.File]::WriteAllText($file, $original)

        Set-VssWriterConfig -Path $file -OverwriteSnapshots $true -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue

        $warnings.Count | Should -Be 1
        [IO.File]::ReadAllText($file) | Should -Be ($original -replace '"FALSE"', '"TRUE"')
        [IO.File]::ReadAllText("$file.bak") | Should -Be $original
        @(Get-ChildItem -LiteralPath $folder -Force).Name | Sort-Object | Should -Be @('vmvsswriter.cfg', 'vmvsswriter.cfg.bak')
    }

    It 'converts -Setting values and removes a setting whose value is $null' {
        [IO.File]::WriteAllText($file, "old = `"1`"`n")

        Set-VssWriterConfig -Path $file -Setting @{ old = $null; flag = $true; number = 1.5; text = 'a|b' } -Confirm:$false

        $settings = (Get-VssWriterConfig -Path $file).Settings
        $settings.Name | Should -Not -Contain 'old'
        ($settings | Where-Object Name -EQ 'flag').Value | Should -Be 'TRUE'
        ($settings | Where-Object Name -EQ 'number').Value | Should -Be '1.5'
        ($settings | Where-Object Name -EQ 'text').Value | Should -Be 'a|b'
        [IO.File]::ReadAllText($file) | Should -Match 'text = "a\|7Cb"'
    }

    It 'appends new settings in name order, so the same command writes the same file everywhere' {
        Set-VssWriterConfig -Path $folder -Setting @{ zeta = '1'; Alpha = '2'; mid = '3' }

        [IO.File]::ReadAllText($file) | Should -Be "Alpha = `"2`"`r`nmid = `"3`"`r`nzeta = `"1`"`r`n"
    }

    It 'writes nothing when the file already says so: timestamp and bytes stay, no .bak' {
        [IO.File]::WriteAllText($file, "vmwriter.overwriteSnapshots = `"true`"`n")
        [IO.File]::SetLastWriteTimeUtc($file, $LongAgo)
        $before = Get-FolderSnapshot $folder

        Set-VssWriterConfig -Path $folder -OverwriteSnapshots $true -Confirm:$false -WarningVariable warnings

        Get-FolderSnapshot $folder | Should -Be $before
        $warnings.Count | Should -Be 0
    }

    It 'turning OverwriteSnapshots off does not create a file that is not there' {
        Set-VssWriterConfig -Path $folder -OverwriteSnapshots $false -WarningVariable warnings

        Test-Path -LiteralPath $file | Should -BeFalse
        $warnings.Count | Should -Be 0
    }

    It 'takes -Path from Get-VssWriterConfig by property name' {
        [IO.File]::WriteAllText($file, "vmwriter.overwriteSnapshots = `"FALSE`"`n")

        Get-VssWriterConfig -Path $folder | Set-VssWriterConfig -OverwriteSnapshots $true -Confirm:$false -WarningAction SilentlyContinue

        (Get-VssWriterConfig -Path $folder).OverwriteSnapshots | Should -BeTrue
    }

    It '-WhatIf changes nothing: <Case>' -TestCases @(
        @{ Case = 'new file'; Existing = $null }
        @{ Case = 'existing file'; Existing = "vmwriter.overwriteSnapshots = `"FALSE`"`r`n" }
    ) {
        if ($Existing) { [IO.File]::WriteAllText($file, $Existing); [IO.File]::SetLastWriteTimeUtc($file, $LongAgo) }
        $before = Get-FolderSnapshot $folder

        $output = Set-VssWriterConfig -Path $folder -OverwriteSnapshots $true -Setting @{ other = 'x' } -PassThru -WhatIf -WarningAction SilentlyContinue

        $output | Should -BeNullOrEmpty
        Get-FolderSnapshot $folder | Should -Be $before
    }

    It '-Confirm:$false never prompts, even where no one could answer' {
        [IO.File]::WriteAllText($file, "vmwriter.overwriteSnapshots = `"FALSE`"`r`n")

        $result = Invoke-WithoutUserInterface -Folder $folder -Script 'Set-VssWriterConfig -Path $Folder -OverwriteSnapshots $true -Confirm:$false'

        $result.Errors | Should -BeNullOrEmpty
        $result.Warnings.Count | Should -Be 1
        (Get-VssWriterConfig -Path $folder).OverwriteSnapshots | Should -BeTrue
    }

    It 'plain use asks before turning OverwriteSnapshots on (a host that cannot ask gets ConfirmationRequired)' {
        [IO.File]::WriteAllText($file, "vmwriter.overwriteSnapshots = `"FALSE`"`r`n")
        $before = Get-FolderSnapshot $folder

        $result = Invoke-WithoutUserInterface -Folder $folder -Script 'Set-VssWriterConfig -Path $Folder -OverwriteSnapshots $true'

        $result.Errors.Count | Should -Be 1
        $result.Errors[0].FullyQualifiedErrorId | Should -BeLike 'ConfirmationRequired,*'
        $result.Errors[0].ErrorDetails.RecommendedAction | Should -BeLike '*-Confirm:$false*'
        Get-FolderSnapshot $folder | Should -Be $before
    }

    It 'the question offers Yes to All, which answers it for every folder piped after' {
        $second = New-TestFolder
        $console = New-RecordingPowerShell -Answer 1   # Yes, Yes to All, No, No to All
        try {
            $null = $console.PowerShell.AddScript("Import-Module '$env:VMQUIESCE_MODULE_PATH'; '$folder', '$second' | Set-VssWriterConfig -OverwriteSnapshots `$true -WarningAction SilentlyContinue").Invoke()

            @($console.PowerShell.Streams.Error) | Should -BeNullOrEmpty
            $console.Host.Prompts.Count | Should -Be 1
            $console.Host.Choices[0] | Should -BeLike 'Yes|Yes to All|No|No to All*'
            (Get-VssWriterConfig -Path $folder).OverwriteSnapshots | Should -BeTrue
            (Get-VssWriterConfig -Path $second).OverwriteSnapshots | Should -BeTrue
        }
        finally {
            $console.PowerShell.Runspace.Dispose()
            $console.PowerShell.Dispose()
            Remove-Item -LiteralPath $second -Recurse -Force
        }
    }

    It 'plain use does not ask for a change that is not dangerous' {
        $result = Invoke-WithoutUserInterface -Folder $folder -Script 'Set-VssWriterConfig -Path $Folder -Setting @{ "vmwriter.logLevel" = "info" }'

        $result.Errors | Should -BeNullOrEmpty
        (Get-VssWriterConfig -Path $folder).Settings.Name | Should -Be 'vmwriter.logLevel'
    }

    It '$ConfirmPreference = None means never ask, as for every cmdlet' {
        $result = Invoke-WithoutUserInterface -Folder $folder -Script '$ConfirmPreference = "None"; Set-VssWriterConfig -Path $Folder -OverwriteSnapshots $true'

        $result.Errors | Should -BeNullOrEmpty
        (Get-VssWriterConfig -Path $folder).OverwriteSnapshots | Should -BeTrue
    }

    It 'rejects <Case> with <ErrorId> and leaves the file unchanged' -TestCases @(
        @{ Case = 'a value with a newline'; ErrorId = 'InvalidSettingValue'; Arguments = @{ Setting = @{ a = "one`ntwo" } } }
        @{ Case = 'a value with a carriage return'; ErrorId = 'InvalidSettingValue'; Arguments = @{ Setting = @{ a = "one`rtwo" } } }
        @{ Case = 'quote injection'; ErrorId = 'InvalidSettingValue'; Arguments = @{ Setting = @{ a = 'x" vmwriter.overwriteSnapshots = "TRUE' } } }
        @{ Case = 'a control character'; ErrorId = 'InvalidSettingValue'; Arguments = @{ Setting = @{ a = "bell`a" } } }
        @{ Case = 'a list as a value'; ErrorId = 'InvalidSettingValue'; Arguments = @{ Setting = @{ a = 1, 2 } } }
        @{ Case = 'a name with a space'; ErrorId = 'InvalidSettingName'; Arguments = @{ Setting = @{ 'a b' = '1' } } }
        @{ Case = 'a name with ='; ErrorId = 'InvalidSettingName'; Arguments = @{ Setting = @{ 'a=b' = '1' } } }
        @{ Case = 'a name with #'; ErrorId = 'InvalidSettingName'; Arguments = @{ Setting = @{ 'a#b' = '1' } } }
        @{ Case = 'a name with a quote'; ErrorId = 'InvalidSettingName'; Arguments = @{ Setting = @{ 'a"b' = '1' } } }
        @{ Case = 'a name with a newline'; ErrorId = 'InvalidSettingName'; Arguments = @{ Setting = @{ "a`nb" = '1' } } }
        @{ Case = 'an empty name'; ErrorId = 'InvalidSettingName'; Arguments = @{ Setting = @{ '' = '1' } } }
        @{ Case = 'OverwriteSnapshots given twice'; ErrorId = 'ConflictingSetting'; Arguments = @{ OverwriteSnapshots = $true; Setting = @{ 'VMWRITER.overwriteSnapshots' = 'TRUE' } } }
        @{ Case = 'nothing to set'; ErrorId = 'NothingToConfigure'; Arguments = @{} }
    ) {
        [IO.File]::WriteAllText($file, "# mine`r`nvmwriter.overwriteSnapshots = `"FALSE`"`r`n")
        [IO.File]::SetLastWriteTimeUtc($file, $LongAgo)
        $before = Get-FolderSnapshot $folder

        $failure = Invoke-Failing { Set-VssWriterConfig -Path $folder @Arguments -Confirm:$false }

        $failure.FullyQualifiedErrorId | Should -BeLike "$ErrorId,*"
        $failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
        $failure.Exception.Message | Should -Not -Match "`n"
        Get-FolderSnapshot $folder | Should -Be $before
    }

    It 'rejects a malformed file with MalformedConfigLine and leaves it unchanged' {
        [IO.File]::WriteAllText($file, "vmwriter.overwriteSnapshots = `"FALSE`" `"again`"`r`n")
        $before = Get-FolderSnapshot $folder

        $failure = Invoke-Failing { Set-VssWriterConfig -Path $folder -OverwriteSnapshots $true -Confirm:$false }

        $failure.FullyQualifiedErrorId | Should -BeLike 'MalformedConfigLine,*'
        $failure.CategoryInfo.Category | Should -Be 'InvalidData'
        Get-FolderSnapshot $folder | Should -Be $before
    }

    It 'rejects a read-only file with ConfigFileReadOnly and leaves it unchanged' {
        [IO.File]::WriteAllText($file, "vmwriter.overwriteSnapshots = `"FALSE`"`r`n")
        Set-ReadOnly $file
        $before = Get-FolderSnapshot $folder

        $failure = Invoke-Failing { Set-VssWriterConfig -Path $folder -OverwriteSnapshots $true -Confirm:$false -WarningAction SilentlyContinue }

        $failure.FullyQualifiedErrorId | Should -BeLike 'ConfigFileReadOnly,*'
        $failure.CategoryInfo.Category | Should -Be 'PermissionDenied'
        $failure.TargetObject | Should -Be $file
        Get-FolderSnapshot $folder | Should -Be $before
    }

    It 'rejects a folder that does not exist with ConfigFolderNotFound and creates nothing' {
        $missing = Join-Path $folder 'VMware Server'

        $failure = Invoke-Failing { Set-VssWriterConfig -Path $missing -OverwriteSnapshots $true -Confirm:$false -WarningAction SilentlyContinue }

        $failure.FullyQualifiedErrorId | Should -BeLike 'ConfigFolderNotFound,*'
        Test-Path -LiteralPath $missing | Should -BeFalse
    }

    It 'rejects a path outside the file system with InvalidConfigPath' {
        $failure = Invoke-Failing { Set-VssWriterConfig -Path 'Env:\PATH' -OverwriteSnapshots $false }

        $failure.FullyQualifiedErrorId | Should -BeLike 'InvalidConfigPath,*'
    }

    It 'rejects an OverwriteSnapshots value that is not a boolean at binding' {
        $failure = Invoke-Failing { Set-VssWriterConfig -Path $folder -OverwriteSnapshots 'maybe' }

        # Windows PowerShell 5.1 and PowerShell 7 name the binding failure differently.
        $failure.FullyQualifiedErrorId | Should -Match '^(ParameterArgumentTransformationError|CannotConvertArgument),'
        Test-Path -LiteralPath $file | Should -BeFalse
    }
}

Describe 'Test-VssWriterConfig' {
    BeforeEach {
        $folder = New-TestFolder
        $file = Join-Path $folder 'vmvsswriter.cfg'
    }
    AfterEach {
        Remove-Item -LiteralPath $folder -Recurse -Force
    }

    It 'answers $false, then $true after Set' {
        Test-VssWriterConfig -Path $folder -OverwriteSnapshots $true | Should -BeExactly $false

        Set-VssWriterConfig -Path $folder -OverwriteSnapshots $true -Confirm:$false -WarningAction SilentlyContinue

        $answer = Test-VssWriterConfig -Path $folder -OverwriteSnapshots $true
        $answer | Should -BeExactly $true
        $answer | Should -BeOfType [bool]
    }

    It 'treats a missing file as OverwriteSnapshots off' {
        Test-VssWriterConfig -Path $folder -OverwriteSnapshots $false | Should -BeTrue
    }

    It '-Detailed outputs one object per difference, and nothing when there is none' {
        [IO.File]::WriteAllText($file, "vmwriter.overwriteSnapshots = `"FALSE`"`nold = `"1`"`n")

        $differences = @(Test-VssWriterConfig -Path $folder -OverwriteSnapshots $true -Setting @{ old = $null; new = 'n' } -Detailed)

        $differences.Count | Should -Be 3
        $differences[0].PSObject.TypeNames[0] | Should -Be $DifferenceType
        $byName = @{}; $differences | ForEach-Object { $byName[$_.Setting] = $_ }
        $byName['vmwriter.overwriteSnapshots'].Expected | Should -Be 'TRUE'
        $byName['vmwriter.overwriteSnapshots'].Actual | Should -Be 'FALSE'
        $byName['old'].Expected | Should -BeNullOrEmpty
        $byName['old'].Actual | Should -Be '1'
        $byName['new'].Actual | Should -BeNullOrEmpty
        $differences[0].Path | Should -Be $file

        Test-VssWriterConfig -Path $folder -OverwriteSnapshots $false -Detailed | Should -BeNullOrEmpty
    }

    It 'formats differences as a table and a list that show absent values, without type names' {
        $differences = Test-VssWriterConfig -Path $folder -Setting @{ new = 'n' } -Detailed

        $table = $differences | Format-Table | Out-String -Width 200
        $list = $differences | Format-List | Out-String -Width 200

        $table | Should -Match 'Setting\s+Expected\s+Actual\s+Path'
        $table | Should -Match '\(absent\)'
        foreach ($label in 'Setting', 'Expected', 'Actual', 'Path') { $list | Should -Match "(?m)^$label\s+:" }
        "$table$list" | Should -Not -Match 'VmQuiesce\.Core'
    }

    It 'takes -Path from Get-VssWriterConfig by property name' {
        Get-VssWriterConfig -Path $folder | Test-VssWriterConfig -OverwriteSnapshots $true | Should -BeExactly $false
    }

    It 'does not create or change the file' {
        Test-VssWriterConfig -Path $folder -OverwriteSnapshots $true -Setting @{ a = 'b' } | Out-Null

        Test-Path -LiteralPath $file | Should -BeFalse
    }

    It 'rejects <Case> with <ErrorId>' -TestCases @(
        @{ Case = 'nothing to test'; ErrorId = 'NothingToConfigure'; Arguments = @{} }
        @{ Case = 'quote injection'; ErrorId = 'InvalidSettingValue'; Arguments = @{ Setting = @{ a = 'x"y' } } }
        @{ Case = 'an invalid name'; ErrorId = 'InvalidSettingName'; Arguments = @{ Setting = @{ 'a b' = 'x' } } }
    ) {
        $failure = Invoke-Failing { Test-VssWriterConfig -Path $folder @Arguments }

        $failure.FullyQualifiedErrorId | Should -BeLike "$ErrorId,*"
    }
}

Describe 'A vmvsswriter.cfg that is a link' {
    BeforeEach {
        $folder = New-TestFolder
        $file = Join-Path $folder 'vmvsswriter.cfg'
        $target = Join-Path $folder 'elsewhere.cfg'
        [IO.File]::WriteAllText($target, "vmwriter.overwriteSnapshots = `"TRUE`"`r`n")
        New-Item -ItemType SymbolicLink -Path $file -Target $target | Out-Null
    }
    AfterEach {
        Remove-Item -LiteralPath $folder -Recurse -Force
    }

    It '<Name> refuses it with ConfigReadFailed, reads and writes nothing through it, and its help says so' -TestCases @(
        @{ Name = 'Get-VssWriterConfig'; Command = { Get-VssWriterConfig -Path $folder } }
        @{ Name = 'Test-VssWriterConfig'; Command = { Test-VssWriterConfig -Path $folder -OverwriteSnapshots $true } }
        @{ Name = 'Set-VssWriterConfig'; Command = { Set-VssWriterConfig -Path $folder -OverwriteSnapshots $false -Confirm:$false } }
    ) {
        $before = Get-FolderSnapshot $folder

        $failure = Invoke-Failing $Command

        $failure.FullyQualifiedErrorId | Should -BeLike 'ConfigReadFailed,*'
        $failure.CategoryInfo.Category | Should -Be 'InvalidData'
        "$failure" | Should -BeLike "*'$file' is a symbolic link*"
        Get-FolderSnapshot $folder | Should -Be $before
        (Get-Item -LiteralPath $file -Force).LinkType | Should -Be 'SymbolicLink'
        $help = (Get-Help $Name -Full | Out-String) -replace '`', '' -replace '\s+', ' '
        $help | Should -Match 'ConfigReadFailed\b.{0,120}\b(itself is|is itself) a link' -Because "the help of $Name names the error a vmvsswriter.cfg that is a link gets"
    }
}

Describe 'Remove-VssWriterConfig' {
    BeforeEach {
        $folder = New-TestFolder
        $file = Join-Path $folder 'vmvsswriter.cfg'
        [IO.File]::WriteAllText($file, "vmwriter.overwriteSnapshots = `"TRUE`"`r`n")
    }
    AfterEach {
        Clear-ReadOnly $folder
        Remove-Item -LiteralPath $folder -Recurse -Force
    }

    It 'removes the file and keeps it as .bak' {
        Remove-VssWriterConfig -Path $folder -Confirm:$false

        Test-Path -LiteralPath $file | Should -BeFalse
        [IO.File]::ReadAllText("$file.bak") | Should -Be "vmwriter.overwriteSnapshots = `"TRUE`"`r`n"
        (Get-VssWriterConfig -Path $folder).Exists | Should -BeFalse
    }

    It '-WhatIf changes nothing' {
        $before = Get-FolderSnapshot $folder

        Remove-VssWriterConfig -Path $folder -WhatIf

        Get-FolderSnapshot $folder | Should -Be $before
    }

    It 'takes -Path from Get-VssWriterConfig by property name' {
        Get-VssWriterConfig -Path $folder | Remove-VssWriterConfig -Confirm:$false

        Test-Path -LiteralPath $file | Should -BeFalse
    }

    It 'does nothing, without error, when there is no file' {
        Remove-VssWriterConfig -Path $folder -Confirm:$false

        Remove-VssWriterConfig -Path $folder -Confirm:$false -ErrorVariable failures

        $failures.Count | Should -Be 0
        Test-Path -LiteralPath "$file.bak" | Should -BeTrue
    }

    It 'rejects a read-only file with ConfigFileReadOnly and leaves it in place' {
        Set-ReadOnly $file
        $before = Get-FolderSnapshot $folder

        $failure = Invoke-Failing { Remove-VssWriterConfig -Path $file -Confirm:$false }

        $failure.FullyQualifiedErrorId | Should -BeLike 'ConfigFileReadOnly,*'
        Get-FolderSnapshot $folder | Should -Be $before
    }

    It 'rejects a folder that does not exist with ConfigFolderNotFound' {
        $failure = Invoke-Failing { Remove-VssWriterConfig -Path (Join-Path $folder 'missing') -Confirm:$false }

        $failure.FullyQualifiedErrorId | Should -BeLike 'ConfigFolderNotFound,*'
    }
}
