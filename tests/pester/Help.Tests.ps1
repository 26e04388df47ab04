BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
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

    It 'has at least two examples, each with code' {
        $examples = @($help.examples.example)
        $examples.Count | Should -BeGreaterOrEqual 2 -Because "$Name needs two '### Example N' sections"
        foreach ($example in $examples) {
            "$($example.code)".Trim() | Should -Not -BeNullOrEmpty -Because "example '$($example.title)' of $Name needs a code block"
        }
    }
}
