# ConvertTo-Json of the module's output objects is what automation wants, in Windows PowerShell 5.1 and PowerShell 7:
# both serialize an object's public .NET properties (extended members cannot replace them), write an enum as a
# number (5.1 has no -EnumsAsStrings), a TimeSpan as an object of eleven members, and every list. So the objects'
# public properties are names (strings), seconds (numbers) and no chunk lists; these tests check the shapes by
# reflection for every output type, and real objects' JSON round trips in this PowerShell.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    $module = @(Get-Module VmQuiesce)[0]

    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmq-pester-json-$([guid]::NewGuid().ToString('N'))"
    New-Item -ItemType Directory -Path $root | Out-Null

    # Every type a cmdlet declares it writes, and every type a view shows.
    [xml]$format = Get-Content -LiteralPath (Join-Path $module.ModuleBase 'VmQuiesce.Format.ps1xml') -Raw
    $declared = (Get-Command -Module VmQuiesce).OutputType.Type | Where-Object { $_.Namespace -like 'VmQuiesce*' }
    $viewed = $format.SelectNodes('//ViewSelectedBy/TypeName').InnerText | ForEach-Object { $_ -as [type] }
    $script:outputTypes = @($declared) + @($viewed) | Sort-Object FullName -Unique

    # The objects that carry a whole restore point (its files are objects in a list): they need -Depth 4.
    $script:carriesRestorePoint = 'RestoreResult', 'RestorePointVerification', 'BackupJobResult', 'RestorePointMount', 'RestorePointServer'

    function Get-ElementType([type] $Type) {
        $nullable = [Nullable]::GetUnderlyingType($Type)
        if ($nullable) { return $nullable }
        $Type
    }

    function Test-Scalar([type] $Type) {
        $Type = Get-ElementType $Type
        $Type.IsPrimitive -or $Type.IsEnum -or $Type -in [string], [char], [datetime], [datetimeoffset], [guid], [uri], [double], [decimal]
    }

    function Get-ListElement([type] $Type) {
        if ($Type -eq [string] -or -not [Collections.IEnumerable].IsAssignableFrom($Type)) { return $null }
        if ($Type.IsArray) { return $Type.GetElementType() }
        @($Type.GetGenericArguments())[-1]
    }

    # Each public property reachable from an object of $Type that ConvertTo-Json writes at $Depth (the top object
    # is at 0, its properties' values at 1, an object's or list's members one deeper), and each list's elements:
    # ConvertTo-Json cuts an object or list deeper than -Depth, with a warning.
    function Get-PropertyPath([type] $Type, [string] $Path = $Type.Name, [int] $Depth = 0, [string[]] $Seen = @()) {
        foreach ($property in $Type.GetProperties([Reflection.BindingFlags] 'Public, Instance')) {
            $propertyType = Get-ElementType $property.PropertyType
            $here = "$Path.$($property.Name)"
            [pscustomobject]@{ Path = $here; Type = $propertyType; Name = $property.Name; Depth = $Depth + 1 }
            if (Test-Scalar $propertyType) { continue }
            $element = Get-ListElement $propertyType
            if ($element) {
                $element = Get-ElementType $element
                [pscustomobject]@{ Path = "$here[]"; Type = $element; Name = $property.Name; Depth = $Depth + 2 }
                if (-not (Test-Scalar $element) -and $element.Namespace -like 'VmQuiesce*' -and $Seen -notcontains $element.FullName) {
                    Get-PropertyPath $element "$here[]" ($Depth + 2) ($Seen + $element.FullName)
                }
            }
            elseif ($propertyType.Namespace -like 'VmQuiesce*' -and $Seen -notcontains $propertyType.FullName) {
                Get-PropertyPath $propertyType $here ($Depth + 1) ($Seen + $propertyType.FullName)
            }
        }
    }

    function ConvertTo-AutomationJson {
        param([Parameter(ValueFromPipeline)] $InputObject, [int] $Depth = 2)
        begin { $objects = [Collections.Generic.List[object]]::new() }
        process { $objects.Add($InputObject) }
        end {
            $warnings = $null
            $json = $objects | ConvertTo-Json -Depth $Depth -WarningVariable warnings -WarningAction SilentlyContinue
            [pscustomobject]@{ Json = $json; Warnings = @($warnings); Parsed = $json | ConvertFrom-Json }
        }
    }

    function New-TestVm([string] $Name) {
        $bytes = [byte[]]::new(300KB)
        [Random]::new(7).NextBytes($bytes)
        $disk = Join-Path $root "$Name.img"
        [IO.File]::WriteAllBytes($disk, $bytes)
        [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new($Name, [string[]] @($disk))
    }

    $script:repo = Join-Path $root 'repo'
    $script:point = New-TestVm 'web01' | Invoke-VmQuiescedBackup -Repository $repo -Consistency Crash
}

AfterAll {
    Remove-Item -LiteralPath $root -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Output object shapes for ConvertTo-Json' {
    It 'finds the output types of the cmdlets and views' {
        $outputTypes.Count | Should -BeGreaterThan 20 -Because 'the walk must find the types'
        $outputTypes.Name | Should -Contain 'RestorePoint'
        $outputTypes.Name | Should -Contain 'VssWriterInfo'
    }

    It 'has no enum-typed public property on any output object (5.1 would write a number)' {
        $enums = $outputTypes | ForEach-Object { Get-PropertyPath $_ } | Where-Object { $_.Type.IsEnum } | ForEach-Object Path
        $enums | Should -BeNullOrEmpty
    }

    It 'has no TimeSpan public property on any output object (seconds instead)' {
        $spans = $outputTypes | ForEach-Object { Get-PropertyPath $_ } | Where-Object { $_.Type -eq [timespan] } | ForEach-Object Path
        $spans | Should -BeNullOrEmpty
    }

    It 'has no chunk list property on any output object' {
        $chunks = $outputTypes | ForEach-Object { Get-PropertyPath $_ } | Where-Object { $_.Name -eq 'Chunks' -and -not (Test-Scalar $_.Type) } | ForEach-Object Path
        $chunks | Should -BeNullOrEmpty
    }

    It 'keeps every output object within the default depth of 2, but those that carry a whole restore point (depth 4)' {
        $tooDeep = foreach ($type in $outputTypes) {
            $deepest = (Get-PropertyPath $type | Where-Object { -not (Test-Scalar $_.Type) } | Measure-Object Depth -Maximum).Maximum
            $limit = if ($type.Name -in $carriesRestorePoint) { 4 } else { 2 }
            if ($deepest -gt $limit) { "$($type.Name): objects $deepest deep" }
        }
        $tooDeep | Should -BeNullOrEmpty
    }
}

Describe 'ConvertTo-Json round trips of real output objects' {
    It 'writes a restore point with names, seconds, no chunks and no depth warning' {
        $result = Get-VmBackup -Repository $repo | ConvertTo-AutomationJson

        $result.Warnings | Should -BeNullOrEmpty
        $result.Json | Should -Not -Match '"Chunks"'
        $result.Parsed.Consistency | Should -Be 'Crash'
        $result.Parsed.Quiesce.Reached | Should -Be 'Crash'
        $result.Parsed.Duration | Should -BeOfType ([double])
        $result.Parsed.Duration | Should -Be $point.Duration
        $result.Parsed.Files[0].DigestKind | Should -Be 'SizeAndChunkListSha256'
        $result.Parsed.Files[0].Owner | Should -Match '^\d+:\d+ 0[0-7]{3}$'
        $result.Parsed.Files[0].Size | Should -Be 300KB
    }

    It 'keeps the details reachable: the chunk list, owner and typed consistency' {
        $point.Files[0].GetChunks().Count | Should -Be 1
        $point.Files[0].GetOwner().ModeText | Should -Match '^0[0-7]{3}$'
        [VmQuiesce.Core.Consistency]$point.Consistency | Should -Be ([VmQuiesce.Core.Consistency]::Crash)
        $point.Consistency -eq [VmQuiesce.Core.Consistency]::Crash | Should -BeTrue
    }

    It 'writes a verification with its status by name, and the whole point at -Depth 4 without a warning' {
        $result = $point | Test-VmBackup | ConvertTo-AutomationJson -Depth 4

        $result.Warnings | Should -BeNullOrEmpty
        $result.Json | Should -Not -Match '"Chunks"'
        $result.Parsed.Status | Should -Be 'Ok'
        $result.Parsed.RestorePoint.Consistency | Should -Be 'Crash'
        $result.Parsed.RestorePoint.Files[0].Path | Should -Be 'web01.img'
    }

    It 'writes a restore result with its revert status by name and its duration in seconds' {
        $result = $point | Restore-VmSnapshot -Destination (Join-Path $root 'restored') -Confirm:$false | ConvertTo-AutomationJson -Depth 4

        $result.Warnings | Should -BeNullOrEmpty
        $result.Parsed.Revert | Should -Be 'NotNeeded'
        $result.Parsed.Consistency | Should -Be 'Crash'
        $result.Parsed.Duration | Should -BeOfType ([double])
        $result.Parsed.Duration | Should -BeGreaterThan 0
    }

    It 'writes a copy result with its duration in seconds and no depth warning' {
        $result = $point | Copy-VmBackup -Destination (Join-Path $root 'copy') | ConvertTo-AutomationJson

        $result.Warnings | Should -BeNullOrEmpty
        $result.Parsed.Duration | Should -BeOfType ([double])
        $result.Parsed.Id | Should -Be $point.Id
    }

    It 'writes readiness checks with their status by name and no depth warning' {
        $notASocket = New-Item -ItemType File -Path (Join-Path $root 'not-a-socket')
        $checks = [VmQuiesce.Core.Sources.Qemu.QemuVm]::new('vm1', $notASocket.FullName, $null) | Test-VmQuiesceReadiness
        $result = $checks | ConvertTo-AutomationJson

        $result.Warnings | Should -BeNullOrEmpty
        @($result.Parsed.Status) | Should -Contain 'Failed'
        @($result.Parsed.Status) | ForEach-Object { $_ | Should -BeOfType ([string]) }
    }

    It 'writes a repository summary and a VM found by path without a depth warning' {
        foreach ($object in @((Get-VmBackupRepository -Path $repo), (Get-BackupVm -Path (Join-Path $root 'web01.img')))) {
            $result = $object | ConvertTo-AutomationJson
            $result.Warnings | Should -BeNullOrEmpty -Because $object.GetType().Name
        }
    }
}
