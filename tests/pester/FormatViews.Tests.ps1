# The module's format views (VmQuiesce.Format.ps1xml): a column or list label is what a user types next
# ($point.StoredBytes), so every label names a property of the object it shows, unless it is listed below.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    $module = @(Get-Module VmQuiesce)[0]
    [xml]$script:format = Get-Content -LiteralPath (Join-Path $module.ModuleBase 'VmQuiesce.Format.ps1xml') -Raw

    # Labels that are not a property of their object, each with why. Keep it short.
    $script:calculated = @{
        'VmQuiesce.Core.Sources.BackupVm/AgentSocket' = 'an entry of Details, for QEMU VMs only: $vm.Details.AgentSocket'
    }

    # One row per column of a table view and per item of a list view.
    function Get-FormatColumn {
        foreach ($view in $format.Configuration.ViewDefinitions.View) {
            $typeName = @($view.ViewSelectedBy.TypeName)[0]
            if ($view.TableControl) {
                $headers = @($view.TableControl.TableHeaders.TableColumnHeader)
                $items = @(@($view.TableControl.TableRowEntries.TableRowEntry)[0].TableColumnItems.TableColumnItem)
                for ($i = 0; $i -lt $items.Count; $i++) {
                    [pscustomobject]@{
                        View = "$($view.Name) (table)"; TypeName = $typeName; Property = $items[$i].PropertyName
                        Label = if ($headers[$i].Label) { $headers[$i].Label } else { $items[$i].PropertyName }
                        Width = [int]$headers[$i].Width
                    }
                }
            }
            if ($view.ListControl) {
                foreach ($item in @(@($view.ListControl.ListEntries.ListEntry)[0].ListItems.ListItem)) {
                    [pscustomobject]@{
                        View = "$($view.Name) (list)"; TypeName = $typeName; Property = $item.PropertyName
                        Label = if ($item.Label) { $item.Label } else { $item.PropertyName }
                        Width = 0
                    }
                }
            }
        }
    }

    function Get-PropertyName([string]$TypeName) {
        $type = $TypeName -as [type]
        if ($type) { $type.GetProperties().Name }
    }
}

Describe 'What the default views show' {
    It 'shows whether a job''s copy step succeeded in its table, as it shows retention (exit code 4 says only that something after the backups failed)' {
        $run = [VmQuiesce.Core.Schedule.BackupJobResult]::new('nightly', [datetime]'2026-12-04 02:30')
        $run.SetRetention($true, '0 restore point(s) removed, 1 kept.')
        $run.SetCopy($false, "to 's3://offsite/host1': S3AccessDenied: denied")
        $run.Finish()
        $lines = @($run | Format-Table | Out-String -Width 200) -split "`n" | Where-Object { $_.Trim() }
        $lines[0] | Should -Match '\bCopySucceeded\b'
        $lines[2] | Should -Match '\b4\b.*\bTrue\b.*\bFalse\b'
    }
}

Describe 'Format views' {
    It 'has views to check, each for a type the module has' {
        $columns = @(Get-FormatColumn)
        $columns.Count | Should -BeGreaterThan 100 -Because 'the walk must find the views'
        $missing = $columns.TypeName | Select-Object -Unique | Where-Object { -not ($_ -as [type]) }
        $missing | Should -BeNullOrEmpty
    }

    It 'labels every column and list item with a property of the object it shows, or a listed calculated label' {
        $wrong = foreach ($column in Get-FormatColumn) {
            $properties = @(Get-PropertyName $column.TypeName)
            if ($properties -notcontains $column.Label -and -not $calculated.ContainsKey("$($column.TypeName)/$($column.Label)")) {
                "$($column.View): '$($column.Label)'"
            }
        }
        $wrong | Should -BeNullOrEmpty -Because 'a label is what a user types next ($object.Label); rename it to the property it shows'
    }

    It 'shows only properties that exist where a column names one' {
        $wrong = foreach ($column in Get-FormatColumn | Where-Object Property) {
            if (@(Get-PropertyName $column.TypeName) -notcontains $column.Property) { "$($column.View): PropertyName '$($column.Property)'" }
        }
        $wrong | Should -BeNullOrEmpty
    }

    It 'lists as calculated only labels that are used and are not properties' {
        $columns = @(Get-FormatColumn)
        $stale = foreach ($key in $calculated.Keys) {
            $typeName, $label = $key -split '/', 2
            if (-not ($columns | Where-Object { $_.TypeName -eq $typeName -and $_.Label -eq $label }) -or (@(Get-PropertyName $typeName) -contains $label)) { $key }
        }
        $stale | Should -BeNullOrEmpty
    }

    It 'gives each table column of fixed width room for its whole label' {
        $cut = Get-FormatColumn | Where-Object { $_.Width -gt 0 -and $_.Width -lt $_.Label.Length } | ForEach-Object { "$($_.View): '$($_.Label)' in $($_.Width)" }
        $cut | Should -BeNullOrEmpty
    }
}

Describe 'Dates in -WhatIf and -Confirm texts' {
    It 'go through Units.Time (ISO 8601 whatever the culture) in every question any cmdlet or the core asks' {
        $root = Join-Path $PSScriptRoot '../../src'
        $files = Get-ChildItem $root -Recurse -Filter *.cs | Where-Object FullName -NotMatch '[\\/](obj|bin)[\\/]'
        $questions = foreach ($file in $files) {
            $text = Get-Content -Raw $file.FullName
            # Each question's arguments, up to the end of the statement.
            foreach ($call in [regex]::Matches($text, '(?s)\b(ShouldProcess|ShouldContinue|ConfirmHighImpact|_?shouldProcess)\((?<args>.*?)\);')) {
                [pscustomobject]@{ File = $file.Name; Args = $call.Groups['args'].Value }
            }
        }
        @($questions).Count | Should -BeGreaterThan 30 -Because 'the scan must find the questions'
        # A date or time put into a question's text other than through Units.Time.
        $raw = $questions | Where-Object { $_.Args -match '\{[^{}]*(Time|Date)\b[^{}]*\}' -and $_.Args -notmatch 'Units\.Time\(' } |
            ForEach-Object { "$($_.File): $($_.Args.Trim())" }
        $raw | Should -BeNullOrEmpty
    }
}
