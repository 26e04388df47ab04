BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force

    function Get-DocumentedParameter {
        # Each '### -Name' section of a platyPS page: one entry per parameter set its yaml blocks name.
        param([string] $Path)
        $text = Get-Content -Raw $Path
        foreach ($section in [regex]::Matches($text, '(?ms)^### -(?<name>\w+)\s*$(?<body>.*?)(?=^### |^## )')) {
            foreach ($yaml in [regex]::Matches($section.Groups['body'].Value, '(?ms)^```yaml\s*$(?<yaml>.*?)^```')) {
                $fields = @{}
                foreach ($line in $yaml.Groups['yaml'].Value -split "`r?`n") {
                    if ($line -match '^(?<key>[A-Za-z ]+):\s*(?<value>.*)$') { $fields[$Matches.key.Trim()] = $Matches.value.Trim() }
                }
                foreach ($set in ($fields['Parameter Sets'] -split ',\s*')) {
                    [pscustomobject]@{
                        Name = $section.Groups['name'].Value
                        Set  = if ($set -eq '(All)') { '__AllParameterSets' } else { $set }
                        Text = 'Type {0}, Required {1}, Position {2}, pipeline {3}' -f $fields['Type'], $fields['Required'], $fields['Position'], (Format-PipelineInput $fields['Accept pipeline input'])
                    }
                }
            }
        }
    }

    function Format-PipelineInput {
        # platyPS's "True (ByPropertyName, ByValue)" in one order, whatever order the page uses.
        param([string] $Text)
        if ($Text -match '^True \((?<kinds>.*)\)$') { return "True ($((($Matches.kinds -split ',\s*') | Sort-Object) -join ', '))" }
        return $Text
    }

    function Format-DeclaredParameter {
        # The same line for what the cmdlet declares in one parameter set.
        param([System.Management.Automation.ParameterMetadata] $Parameter, [System.Management.Automation.ParameterSetMetadata] $InSet)
        $kinds = @(if ($InSet.ValueFromPipeline) { 'ByValue' }; if ($InSet.ValueFromPipelineByPropertyName) { 'ByPropertyName' })
        $pipeline = if ($kinds) { "True ($(($kinds | Sort-Object) -join ', '))" } else { 'False' }
        $position = if ($InSet.Position -lt 0) { 'Named' } else { "$($InSet.Position)" }
        'Type {0}, Required {1}, Position {2}, pipeline {3}' -f $Parameter.ParameterType.Name, $InSet.IsMandatory, $position, $pipeline
    }
}

BeforeDiscovery {
    # Discovery needs the cmdlet list to make one test per cmdlet: every exported cmdlet, never a hand-kept list.
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    $script:cmdlets = @((Get-Module VmQuiesce).ExportedCmdlets.Keys | Sort-Object | ForEach-Object { @{ Name = $_ } })
}

Describe 'Help of the built module' {
    It 'exports at least one cmdlet, so the help tests below test something' {
        @((Get-Module VmQuiesce).ExportedCmdlets.Keys).Count | Should -BeGreaterThan 0
    }

    It 'has the about_VmQuiesce topic' {
        $about = Get-Help about_VmQuiesce | Out-String
        $about | Should -Match 'about_VmQuiesce'
        $about | Should -Match 'SHORT DESCRIPTION'
    }

    It 'offers no online version: no cmdlet or help page names a web address, so Get-Help -Online says there is none instead of opening a page that does not exist' {
        @(Get-Command -Module VmQuiesce -CommandType Cmdlet | Where-Object HelpUri).Name | Should -BeNullOrEmpty
        @(Get-ChildItem (Join-Path $PSScriptRoot '../../en-US') -Filter '*.md' | Select-String -Pattern '^online version:\s*\S').Path | Should -BeNullOrEmpty
        { Get-Help Invoke-VmQuiescedBackup -Online -ErrorAction Stop } | Should -Throw -ErrorId 'InvalidOperation,Microsoft.PowerShell.Commands.GetHelpCommand'
    }

    It 'has the threat model as about_VmQuiesce_Security' {
        $about = Get-Help about_VmQuiesce_Security | Out-String
        $about | Should -Match 'A guest, or whoever controls it'
        $about | Should -Match 'What the administrator must still do'
    }
}

Describe 'Get-Help <Name> -Full' -ForEach $cmdlets {
    BeforeAll {
        $help = Get-Help $Name -Full
        $command = Get-Command $Name
        $commonParameters = @([System.Management.Automation.PSCmdlet]::CommonParameters) +
            @([System.Management.Automation.PSCmdlet]::OptionalCommonParameters)
    }

    It 'comes from the compiled help file, not the syntax-only fallback' {
        # Without a help file PowerShell makes an ExtendedCmdletHelpInfo whose synopsis is the syntax.
        $help.PSObject.TypeNames | Should -Contain 'MamlCommandHelpInfo' -Because "$Name needs a page en-US/$Name.md"
    }

    It 'has a synopsis' {
        $synopsis = "$($help.Synopsis)".Trim()
        $synopsis | Should -Not -BeNullOrEmpty -Because "$Name needs a ## SYNOPSIS"
        $synopsis | Should -Not -BeLike "$Name *" -Because "the synopsis of $Name must say what it does, not repeat its syntax"
    }

    It 'has a description' {
        "$($help.description.Text)".Trim() | Should -Not -BeNullOrEmpty -Because "$Name needs a ## DESCRIPTION"
    }

    It 'describes every parameter' {
        $documented = @{}
        foreach ($parameter in @($help.parameters.parameter)) {
            if ($parameter) { $documented[$parameter.name] = "$($parameter.description.Text)".Trim() }
        }
        $undocumented = @($command.Parameters.Keys | Where-Object { $_ -notin $commonParameters } | Where-Object {
            -not $documented.ContainsKey($_) -or -not $documented[$_]
        } | Sort-Object)
        $undocumented | Should -BeNullOrEmpty -Because "every parameter of $Name needs a '### -Name' section with text and a yaml block; undocumented: $($undocumented -join ', ')"
    }

    It 'documents no parameter the cmdlet does not have' {
        # Common parameters differ between editions (-ProgressAction is new in 7.4), so pages may list them.
        $stale = @($help.parameters.parameter | Where-Object {
            $_ -and -not $command.Parameters.ContainsKey($_.name) -and $_.name -notin $commonParameters -and $_.name -ne 'ProgressAction'
        } | ForEach-Object name)
        $stale | Should -BeNullOrEmpty -Because "the page of $Name documents parameters it no longer has: $($stale -join ', ')"
    }

    It 'documents each parameter''s type, mandatory flag, position, pipeline input and parameter sets as the cmdlet declares them' {
        $documented = @(Get-DocumentedParameter (Join-Path $PSScriptRoot "../../en-US/$Name.md"))
        $differences = foreach ($parameter in $command.Parameters.Values | Where-Object { $_.Name -notin $commonParameters }) {
            foreach ($set in $parameter.ParameterSets.GetEnumerator()) {
                $declared = Format-DeclaredParameter $parameter $set.Value
                $page = @($documented | Where-Object { $_.Name -eq $parameter.Name -and $_.Set -eq $set.Key })
                $pageText = if ($page) { $page[0].Text } else { 'not documented in this set' }
                if ($pageText -ne $declared) { "-$($parameter.Name) [$($set.Key)]: declared '$declared', page '$pageText'" }
            }
        }
        $differences += @($documented | Where-Object { $command.Parameters.ContainsKey($_.Name) -and -not $command.Parameters[$_.Name].ParameterSets.ContainsKey($_.Set) } |
            ForEach-Object { "-$($_.Name): the page names the set '$($_.Set)', which the parameter is not in" })
        $differences | Should -BeNullOrEmpty -Because "en-US/$Name.md must match the cmdlet: $($differences -join '; ')"
    }

    It 'has at least two examples, each with code' {
        $examples = @($help.examples.example)
        $examples.Count | Should -BeGreaterOrEqual 2 -Because "$Name needs two '### Example N' sections"
        foreach ($example in $examples) {
            "$($example.code)".Trim() | Should -Not -BeNullOrEmpty -Because "example '$($example.title)' of $Name needs a code block"
        }
    }
}
