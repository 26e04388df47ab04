# The class-based DSC resources of VmQuiesce.Dsc.psm1: each resource's class is created and run through
# Get, Test, Set, Test on real files, real users and real systemd units in a temporary unit directory.
# The sequence of results goes to out/TestResults/dsc-resources.txt. On Windows the same resources run
# through Invoke-DscResource (the LCM's path).
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force

    $script:dsc = (Get-Module VmQuiesce).NestedModules | Where-Object Name -eq 'VmQuiesce.Dsc'
    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmquiesce-dsc-$([Guid]::NewGuid().ToString('N').Substring(0, 8))"
    New-Item -ItemType Directory -Path $root -Force | Out-Null
    $script:report = [Collections.Generic.List[string]]::new()

    # Creates a resource in the DSC module's scope (where its classes are visible) and sets its properties.
    function script:New-Resource([string] $Type, [hashtable] $Property) {
        & $dsc {
            param($Type, $Property)
            $resource = New-Object -TypeName $Type
            foreach ($entry in $Property.GetEnumerator()) { $resource.($entry.Key) = $entry.Value }
            $resource
        } $Type $Property
    }

    # Get, Test, Set, Test: the DSC contract. Records each step for the report and returns the Test results.
    function script:Invoke-GetTestSetTest([string] $Label, $Resource) {
        $before = $Resource.Get()
        $firstTest = $Resource.Test()
        $Resource.Set()
        $secondTest = $Resource.Test()
        $report.Add("${Label}: Get -> Ensure=$($before.Ensure); Test -> $firstTest; Set; Test -> $secondTest")
        [pscustomobject]@{ Before = $before; FirstTest = $firstTest; SecondTest = $secondTest }
    }
}

AfterAll {
    if ($root -and (Test-Path $root)) { Remove-Item $root -Recurse -Force }
    if ($env:VMQUIESCE_TEST_OUT -and $report) {
        $results = Join-Path $env:VMQUIESCE_TEST_OUT 'TestResults'
        New-Item -ItemType Directory -Path $results -Force | Out-Null
        Set-Content -Path (Join-Path $results 'dsc-resources.txt') -Value $report
    }
    $report | ForEach-Object { Write-Host "DSC $_" }
}

Describe 'The DSC module in the manifest' {
    It 'is a nested module that exports the three resources' {
        $dsc | Should -Not -BeNullOrEmpty
        $manifest = Import-PowerShellDataFile -Path $env:VMQUIESCE_MODULE_PATH
        $manifest.NestedModules | Should -Contain 'VmQuiesce.Dsc.psm1'
        $manifest.DscResourcesToExport | Sort-Object | Should -Be @('VmBackupSchedule', 'VssWriterConfig', 'VssWriterServiceLogon')
    }

    It 'declares each exported resource as a [DscResource()] class with one key' -ForEach @(
        @{ Resource = 'VmBackupSchedule'; Key = 'Name' }
        @{ Resource = 'VssWriterConfig'; Key = 'Path' }
        @{ Resource = 'VssWriterServiceLogon'; Key = 'ServiceName' }
    ) {
        $type = & $dsc { param($Name) $Name -as [type] } $Resource
        $type | Should -Not -BeNullOrEmpty
        $type.GetCustomAttributes($true).TypeId.Name | Should -Contain 'DscResourceAttribute'
        $keys = @($type.GetProperties() | Where-Object {
            $_.GetCustomAttributes($true) | Where-Object { $_.TypeId.Name -eq 'DscPropertyAttribute' -and $_.Key }
        } | ForEach-Object Name)
        $keys | Should -Be @($Key)
    }

    It 'uses no PowerShell 7-only syntax, since the Windows LCM loads it in Windows PowerShell 5.1' {
        $path = Join-Path (Split-Path (Get-Module VmQuiesce).Path) 'VmQuiesce.Dsc.psm1'
        $tokens = $errors = $null
        $ast = [System.Management.Automation.Language.Parser]::ParseFile($path, [ref] $tokens, [ref] $errors)
        $errors | Should -BeNullOrEmpty
        # ?? ??= ?. ?[ && || and the ternary operator arrived in PowerShell 7.
        $ps7Tokens = @($tokens | Where-Object { "$($_.Kind)" -in 'QuestionQuestion', 'QuestionQuestionEquals', 'QuestionDot', 'QuestionLBracket', 'AndAnd', 'OrOr' })
        $ps7Tokens.Text | Should -BeNullOrEmpty
        @($ast.FindAll({ $args[0].GetType().Name -in 'TernaryExpressionAst', 'PipelineChainAst' }, $true)) | Should -BeNullOrEmpty
    }

    It 'exports no functions: the classes are the only public surface' {
        (Get-Module VmQuiesce).ExportedFunctions.Count | Should -Be 0
    }
}

Describe 'VssWriterConfig resource on a real file' {
    It 'Get, Test, Set, Test turns OverwriteSnapshots on, then Absent removes the file' {
        $folder = New-Item -ItemType Directory -Path (Join-Path $root 'vmware-server') -Force
        $file = Join-Path $folder 'vmvsswriter.cfg'
        $resource = New-Resource 'VssWriterConfig' @{ Path = $folder.FullName; OverwriteSnapshots = $true }

        $result = Invoke-GetTestSetTest 'VssWriterConfig Present' $resource 3>$null
        "$($result.Before.Ensure)" | Should -Be 'Absent'
        $result.FirstTest | Should -BeFalse
        $result.SecondTest | Should -BeTrue
        (Get-Content $file) | Should -Contain 'vmwriter.overwriteSnapshots = "TRUE"'
        $resource.Get().OverwriteSnapshots | Should -BeTrue

        $absent = New-Resource 'VssWriterConfig' @{ Path = $folder.FullName; Ensure = 'Absent' }
        $result = Invoke-GetTestSetTest 'VssWriterConfig Absent' $absent
        "$($result.Before.Ensure)" | Should -Be 'Present'
        $result.FirstTest | Should -BeFalse
        $result.SecondTest | Should -BeTrue
        Test-Path $file | Should -BeFalse
    }

    It 'Get reads the file once for whether it exists and for its value' {
        $folder = New-Item -ItemType Directory -Path (Join-Path $root 'vmware-server-one-read') -Force
        Set-Content -Path (Join-Path $folder 'vmvsswriter.cfg') -Value 'vmwriter.overwriteSnapshots = "TRUE"'
        $resource = New-Resource 'VssWriterConfig' @{ Path = $folder.FullName; OverwriteSnapshots = $true }
        $reads = [Collections.Generic.List[string]]::new()
        $breakpoint = Set-PSBreakpoint -Command 'Get-VssWriterConfig' -Action { $reads.Add('read') }.GetNewClosure()
        try {
            $current = $resource.Get()
        }
        finally {
            Remove-PSBreakpoint -Breakpoint $breakpoint
        }

        $reads.Count | Should -Be 1
        "$($current.Ensure)" | Should -Be 'Present'
        $current.OverwriteSnapshots | Should -BeTrue
    }

    It 'turns OverwriteSnapshots off again in an existing file and keeps its other settings' {
        $folder = New-Item -ItemType Directory -Path (Join-Path $root 'vmware-server-2') -Force
        $file = Join-Path $folder 'vmvsswriter.cfg'
        Set-Content -Path $file -Value "# kept`nvmwriter.overwriteSnapshots = `"TRUE`"`nother.key = `"1`""
        $resource = New-Resource 'VssWriterConfig' @{ Path = $file; OverwriteSnapshots = $false }
        $result = Invoke-GetTestSetTest 'VssWriterConfig off' $resource
        $result.FirstTest | Should -BeFalse
        $result.SecondTest | Should -BeTrue
        Get-Content $file | Should -Contain '# kept'
        Get-Content $file | Should -Contain 'other.key = "1"'
    }

    # Set-VssWriterConfig -OverwriteSnapshots $false is met by a missing file; Ensure = Present asks for the file itself.
    It 'Present with OverwriteSnapshots off creates a missing file, and a second Set changes nothing' {
        $folder = New-Item -ItemType Directory -Path (Join-Path $root 'vmware-server-no-file') -Force
        $file = Join-Path $folder 'vmvsswriter.cfg'
        $resource = New-Resource 'VssWriterConfig' @{ Path = $folder.FullName; OverwriteSnapshots = $false }

        $result = Invoke-GetTestSetTest 'VssWriterConfig Present off, no file' $resource
        "$($result.Before.Ensure)" | Should -Be 'Absent'
        $result.FirstTest | Should -BeFalse
        $result.SecondTest | Should -BeTrue
        Get-Content $file | Should -Be 'vmwriter.overwriteSnapshots = "FALSE"'
        "$($resource.Get().Ensure)" | Should -Be 'Present'

        $before = Get-FolderSnapshot $folder
        $resource.Set()
        Get-FolderSnapshot $folder | Should -Be $before
    }

    It 'Present with OverwriteSnapshots off creates the file again when an Absent run left only the .bak' {
        $folder = New-Item -ItemType Directory -Path (Join-Path $root 'vmware-server-bak') -Force
        $file = Join-Path $folder 'vmvsswriter.cfg'
        Set-Content -Path $file -Value 'vmwriter.overwriteSnapshots = "TRUE"'
        (New-Resource 'VssWriterConfig' @{ Path = $folder.FullName; Ensure = 'Absent' }).Set()
        $resource = New-Resource 'VssWriterConfig' @{ Path = $folder.FullName; OverwriteSnapshots = $false }

        $result = Invoke-GetTestSetTest 'VssWriterConfig Present off, only .bak' $resource
        "$($result.Before.Ensure)" | Should -Be 'Absent'
        $result.FirstTest | Should -BeFalse
        $result.SecondTest | Should -BeTrue
        Get-Content $file | Should -Be 'vmwriter.overwriteSnapshots = "FALSE"'
        Get-Content "$file.bak" | Should -Be 'vmwriter.overwriteSnapshots = "TRUE"'

        $before = Get-FolderSnapshot $folder
        $resource.Set()
        Get-FolderSnapshot $folder | Should -Be $before
    }
}

Describe 'VssWriterConfig resource when the folder is not there' {
    # VMware Server uninstalled: its folder, and so the file, is gone. Absent is met; Present is not, and Set says why.
    It 'Absent: Get says Absent, Test is true and Set changes nothing' {
        $missing = Join-Path $root 'no-vmware-server'
        $absent = New-Resource 'VssWriterConfig' @{ Path = $missing; Ensure = 'Absent' }
        $current = $absent.Get()
        "$($current.Ensure)" | Should -Be 'Absent'
        $current.OverwriteSnapshots | Should -BeFalse
        $absent.Test() | Should -BeTrue
        $absent.Set()
        Test-Path $missing | Should -BeFalse
    }

    It 'Present: Test is false and Set fails naming the folder, creating nothing' {
        $missing = Join-Path $root 'no-vmware-server-2'
        $present = New-Resource 'VssWriterConfig' @{ Path = $missing; OverwriteSnapshots = $true }
        $present.Test() | Should -BeFalse
        { $present.Set() } | Should -Throw -ErrorId 'ConfigFolderNotFound,*' -ExpectedMessage "*$missing*"
        Test-Path $missing | Should -BeFalse
    }
}

Describe 'VssWriterServiceLogon resource with a real user and a real unit (systemd)' {
    BeforeAll {
        $script:logonSkip = if (-not $IsLinux) { 'the systemd backend runs on Linux; Windows runs the resource through Invoke-DscResource below' }
        elseif ((& id -u) -ne '0') { 'creating a throwaway user (useradd) needs root' }
        elseif (-not (Get-Command useradd -ErrorAction SilentlyContinue)) { 'useradd is not installed' }
        if ($logonSkip) { return }
        $script:user = "vqdsc$([Guid]::NewGuid().ToString('N').Substring(0, 8))"
        # A member of sudo (or wheel): an administrator on Linux, as the VSS writer's account must be.
        $adminGroup = if (Get-Content /etc/group | Where-Object { $_ -like 'sudo:*' }) { 'sudo' } else { 'wheel' }
        if (-not (Get-Content /etc/group | Where-Object { $_ -like "${adminGroup}:*" })) { & groupadd $adminGroup }
        & useradd --no-create-home --shell /usr/sbin/nologin --groups $adminGroup $user
        if ($LASTEXITCODE -ne 0) { throw "useradd $user failed" }
        $script:units = Join-Path $root 'units'
        $script:state = Join-Path $root 'state'
        $script:vmFolder = Join-Path $root 'vms'
        New-Item -ItemType Directory -Path $units, $state, $vmFolder -Force | Out-Null
        & chmod 755 $root
        & chmod 700 $vmFolder
        Set-Content -Path (Join-Path $units 'vq-dsc-writer.service') -Value "[Unit]`nDescription=Throwaway unit for the DSC tests`n`n[Service]`nExecStart=/bin/true`n"
        $script:credential = [pscredential]::new($user, [securestring]::new())
    }

    AfterAll {
        if ($logonSkip) { return }
        if ($user -and (& getent passwd $user)) { & userdel $user }
    }

    It 'Get, Test, Set, Test sets the unit''s User= and grants the VM folder' {
        if ($logonSkip) { Set-ItResult -Skipped -Because $logonSkip; return }
        $resource = New-Resource 'VssWriterServiceLogon' @{
            ServiceName = 'vq-dsc-writer.service'; Credential = $credential; VmFolder = @($vmFolder)
            UnitDirectory = $units; StateDirectory = $state
        }
        $before = $resource.Get()
        $before.Account | Should -Be 'root'
        $resource.Test() | Should -BeFalse
        $resource.Set() 3>$null
        $resource.Test() | Should -BeTrue
        $report.Add("VssWriterServiceLogon: Get -> Account=$($before.Account); Test -> False; Set; Test -> True")
        $resource.Get().Account | Should -Be $user
        Get-Content (Join-Path $units 'vq-dsc-writer.service.d/vmquiesce-logon.conf') | Should -Contain "User=$user"
        & runuser -u $user -- touch (Join-Path $vmFolder 'disk.img')
        $LASTEXITCODE | Should -Be 0 -Because 'the folder access that Set granted must be real'
    }

    It 'Test is false again when the folder loses access, and Set repairs it' {
        if ($logonSkip) { Set-ItResult -Skipped -Because $logonSkip; return }
        & chmod 700 $vmFolder
        $resource = New-Resource 'VssWriterServiceLogon' @{
            ServiceName = 'vq-dsc-writer.service'; Credential = $credential; VmFolder = @($vmFolder)
            UnitDirectory = $units; StateDirectory = $state
        }
        $resource.Test() | Should -BeFalse
        $resource.Set() 3>$null
        $resource.Test() | Should -BeTrue
    }

    It 'fails Set with the cmdlet''s error for an unknown unit, changing nothing' {
        if ($logonSkip) { Set-ItResult -Skipped -Because $logonSkip; return }
        $resource = New-Resource 'VssWriterServiceLogon' @{
            ServiceName = 'no-such.service'; Credential = $credential; UnitDirectory = $units; StateDirectory = $state
        }
        { $resource.Set() } | Should -Throw -ExpectedMessage '*no-such.service*'
        Test-Path (Join-Path $units 'no-such.service.d') | Should -BeFalse
    }

    It 'Test is false for a unit that does not exist, and Get reports no account' {
        if ($logonSkip) { Set-ItResult -Skipped -Because $logonSkip; return }
        $resource = New-Resource 'VssWriterServiceLogon' @{
            ServiceName = 'no-such.service'; Credential = $credential; UnitDirectory = $units; StateDirectory = $state
        }
        $resource.Test() | Should -BeFalse
        $current = $resource.Get()
        $current.ServiceName | Should -Be 'no-such.service'
        $current.Account | Should -BeNullOrEmpty
        $current.IsAdministrator | Should -BeFalse
    }

    It 'works without VM folders: Get reports the account, Test checks the account alone' {
        if ($logonSkip) { Set-ItResult -Skipped -Because $logonSkip; return }
        $resource = New-Resource 'VssWriterServiceLogon' @{
            ServiceName = 'vq-dsc-writer.service'; Credential = $credential; UnitDirectory = $units; StateDirectory = $state
        }
        $current = $resource.Get()
        $current.Account | Should -Be $user
        # Credential is a property too: Get gives the account it logs on as (never a password).
        $current.Credential.UserName | Should -Be $user
        $current.Credential.Password.Length | Should -Be 0
        $resource.Test() | Should -BeTrue
    }
}

Describe 'VmBackupSchedule resource with real units in a temporary unit directory' {
    BeforeAll {
        $script:scheduleSkip = if ($IsWindows -or $PSVersionTable.PSEdition -eq 'Desktop') { 'Windows registers a scheduled task: covered by the Invoke-DscResource tests below' }
        $script:scheduleUnits = Join-Path $root 'schedule-units'
        # The job's PowerShell must exist: a stand-in file at a fixed path (the job is not run here; Schedule.Tests.ps1 runs it).
        $script:jobPwsh = Join-Path $root 'pwsh'
        Set-Content -LiteralPath $jobPwsh -Value '#!/bin/sh'
        $script:scheduleSettings = @{
            Name = 'nightly'; Vm = @('web01', "/run/vm's/web01.qmp", '/vms/db 01/db01.vmx'); Repository = '/srv/backup repo %h'
            At = '02:30'; KeepDaily = 7; KeepWeekly = 4; UnitDirectory = $scheduleUnits; PowerShellPath = $jobPwsh
        }
    }

    It 'Get, Test, Set, Test registers the schedule through Register-VmBackupSchedule' {
        if ($scheduleSkip) { Set-ItResult -Skipped -Because $scheduleSkip; return }
        $resource = New-Resource 'VmBackupSchedule' $scheduleSettings
        $result = Invoke-GetTestSetTest 'VmBackupSchedule Present' $resource
        "$($result.Before.Ensure)" | Should -Be 'Absent'
        $result.FirstTest | Should -BeFalse
        $result.SecondTest | Should -BeTrue

        $schedule = Get-VmBackupSchedule -Name nightly -UnitDirectory $scheduleUnits
        $schedule.Vm | Should -Be $scheduleSettings.Vm
        $schedule.Command[0] | Should -Be $jobPwsh
        $schedule.Command[4] | Should -BeLike '*Invoke-VmBackupJob -Name ''nightly''*-KeepDaily 7 -KeepWeekly 4*'
        Get-Content (Join-Path $scheduleUnits 'vmquiesce-backup-nightly.timer') | Should -Contain 'OnCalendar=*-*-* 02:30:00'
    }

    It 'Get reads back what Set registered, and Test is false after a change of time or a hand edit' {
        if ($scheduleSkip) { Set-ItResult -Skipped -Because $scheduleSkip; return }
        $current = (New-Resource 'VmBackupSchedule' $scheduleSettings).Get()
        "$($current.Ensure)" | Should -Be 'Present'
        $current.Vm | Should -Be $scheduleSettings.Vm
        $current.Repository | Should -Be $scheduleSettings.Repository
        $current.At | Should -Be '02:30'
        $current.KeepDaily | Should -Be 7
        $current.NextRunTime | Should -BeLike '*T02:30:00'

        $changed = $scheduleSettings.Clone()
        $changed.At = '04:00'
        $resource = New-Resource 'VmBackupSchedule' $changed
        $resource.Test() | Should -BeFalse
        $resource.Set()
        $resource.Test() | Should -BeTrue
        Get-Content (Join-Path $scheduleUnits 'vmquiesce-backup-nightly.timer') | Should -Contain 'OnCalendar=*-*-* 04:00:00'

        Add-Content -LiteralPath (Join-Path $scheduleUnits 'vmquiesce-backup-nightly.service') -Value 'ExecStartPost=/bin/true'
        $resource.Test() | Should -BeFalse
        $resource.Set()
        $resource.Test() | Should -BeTrue
    }

    It 'registers change tracking and the copy step, reads them back, and Test is false when the copy target changes' {
        if ($scheduleSkip) { Set-ItResult -Skipped -Because $scheduleSkip; return }
        $settings = $scheduleSettings.Clone()
        $settings += @{ ChangeTracking = $true; VerifyChangeTrackingEvery = 7; CopyTo = 's3://backups/host-1'; S3Endpoint = 'http://rgw.example.net:7480'; S3ProfileName = 'backup-writer' }
        $result = Invoke-GetTestSetTest 'VmBackupSchedule with a copy step' (New-Resource 'VmBackupSchedule' $settings)
        $result.FirstTest | Should -BeFalse
        $result.SecondTest | Should -BeTrue

        $current = (New-Resource 'VmBackupSchedule' $settings).Get()
        $current.ChangeTracking | Should -BeTrue
        $current.VerifyChangeTrackingEvery | Should -Be 7
        $current.CopyTo | Should -Be 's3://backups/host-1'
        $current.S3Endpoint | Should -Be 'http://rgw.example.net:7480'
        $current.S3ProfileName | Should -Be 'backup-writer'
        (Get-VmBackupSchedule -Name nightly -UnitDirectory $scheduleUnits).Command[4] | Should -BeLike "*-ChangeTracking -VerifyChangeTrackingEvery 7 -CopyTo 's3://backups/host-1' -S3Endpoint 'http://rgw.example.net:7480' -S3ProfileName 'backup-writer'*"

        $settings.CopyTo = '/srv/offsite'
        $settings.Remove('S3Endpoint')
        $settings.Remove('S3ProfileName')
        (New-Resource 'VmBackupSchedule' $settings).Test() | Should -BeFalse
    }

    It 'Absent removes both units' {
        if ($scheduleSkip) { Set-ItResult -Skipped -Because $scheduleSkip; return }
        $resource = New-Resource 'VmBackupSchedule' @{ Name = 'nightly'; Ensure = 'Absent'; UnitDirectory = $scheduleUnits }
        $result = Invoke-GetTestSetTest 'VmBackupSchedule Absent' $resource
        $result.FirstTest | Should -BeFalse
        $result.SecondTest | Should -BeTrue
        @(Get-ChildItem $scheduleUnits) | Should -BeNullOrEmpty
    }

    It 'Set refuses a name that cannot name a unit and a time that is not HH:mm, before writing anything' -ForEach @(
        @{ Change = @{ Name = '../evil' }; ErrorId = 'ScheduleNameInvalid' }
        @{ Change = @{ At = '25:00' }; ErrorId = 'ScheduleTimeInvalid' }
    ) {
        if ($scheduleSkip) { Set-ItResult -Skipped -Because $scheduleSkip; return }
        $settings = $scheduleSettings.Clone()
        foreach ($entry in $Change.GetEnumerator()) { $settings[$entry.Key] = $entry.Value }
        $resource = New-Resource 'VmBackupSchedule' $settings
        $resource.Test() | Should -BeFalse
        { $resource.Set() } | Should -Throw -ErrorId "$ErrorId,*"
        Test-Path (Join-Path $scheduleUnits 'vmquiesce-backup-nightly.service') | Should -BeFalse
    }
}

Describe 'VmBackupSchedule resource: converges, and answers only for its own schedule' {
    BeforeAll {
        $script:convergeSkip = if ($IsWindows -or $PSVersionTable.PSEdition -eq 'Desktop') { 'Windows registers a scheduled task: covered by the Invoke-DscResource tests' }
        $script:jobPwsh = Join-Path $root 'pwsh'
        Set-Content -LiteralPath $jobPwsh -Value '#!/bin/sh'
    }

    BeforeEach {
        $script:convergeUnits = Join-Path $root "converge-units-$([Guid]::NewGuid().ToString('N').Substring(0, 8))"
        $script:baseSettings = @{ Name = 'nightly'; Vm = @('web01'); Repository = '/srv/backup'; UnitDirectory = $convergeUnits; PowerShellPath = $jobPwsh }
    }

    AfterEach {
        if (Test-Path $convergeUnits) { Remove-Item $convergeUnits -Recurse -Force }
    }

    # systemd unit names are case-sensitive: vmquiesce-backup-Nightly is another schedule than vmquiesce-backup-nightly.
    It 'Absent for a name that differs only in case leaves the other schedule registered' {
        if ($convergeSkip) { Set-ItResult -Skipped -Because $convergeSkip; return }
        (New-Resource 'VmBackupSchedule' $baseSettings).Set()
        $otherCase = New-Resource 'VmBackupSchedule' @{ Name = 'Nightly'; Ensure = 'Absent'; UnitDirectory = $convergeUnits }
        "$($otherCase.Get().Ensure)" | Should -Be 'Absent'
        $otherCase.Test() | Should -BeTrue
        $otherCase.Set()
        Test-Path (Join-Path $convergeUnits 'vmquiesce-backup-nightly.service') | Should -BeTrue
        Test-Path (Join-Path $convergeUnits 'vmquiesce-backup-nightly.timer') | Should -BeTrue
    }

    It 'Absent removes only its own schedule when another one differs only in case' {
        if ($convergeSkip) { Set-ItResult -Skipped -Because $convergeSkip; return }
        (New-Resource 'VmBackupSchedule' $baseSettings).Set()
        $settings = $baseSettings.Clone()
        $settings.Name = 'Nightly'
        (New-Resource 'VmBackupSchedule' $settings).Set()
        $absent = New-Resource 'VmBackupSchedule' @{ Name = 'Nightly'; Ensure = 'Absent'; UnitDirectory = $convergeUnits }
        $absent.Test() | Should -BeFalse
        $absent.Set()
        $absent.Test() | Should -BeTrue
        Test-Path (Join-Path $convergeUnits 'vmquiesce-backup-Nightly.service') | Should -BeFalse
        Test-Path (Join-Path $convergeUnits 'vmquiesce-backup-nightly.service') | Should -BeTrue
    }

    It 'Present is not met by a schedule whose name differs only in case' {
        if ($convergeSkip) { Set-ItResult -Skipped -Because $convergeSkip; return }
        (New-Resource 'VmBackupSchedule' $baseSettings).Set()
        $settings = $baseSettings.Clone()
        $settings.Name = 'Nightly'
        $resource = New-Resource 'VmBackupSchedule' $settings
        $resource.Test() | Should -BeFalse
        $resource.Set()
        $resource.Test() | Should -BeTrue
        Test-Path (Join-Path $convergeUnits 'vmquiesce-backup-Nightly.timer') | Should -BeTrue
    }

    It 'takes a timer left without its service for neither Present nor Absent, and Set makes it whole or removes it' {
        if ($convergeSkip) { Set-ItResult -Skipped -Because $convergeSkip; return }
        $present = New-Resource 'VmBackupSchedule' $baseSettings
        $present.Set()
        $service = Join-Path $convergeUnits 'vmquiesce-backup-nightly.service'
        Remove-Item -LiteralPath $service
        $absent = New-Resource 'VmBackupSchedule' @{ Name = 'nightly'; Ensure = 'Absent'; UnitDirectory = $convergeUnits }

        "$($present.Get().Ensure)" | Should -Be 'Present'
        $present.Test() | Should -BeFalse
        $absent.Test() | Should -BeFalse
        $present.Set()
        $present.Test() | Should -BeTrue
        Test-Path -LiteralPath $service | Should -BeTrue

        Remove-Item -LiteralPath $service
        $absent.Set()
        $absent.Test() | Should -BeTrue
        @(Get-ChildItem $convergeUnits) | Should -BeNullOrEmpty
    }

    # Register-VmBackupSchedule documents that -VerifyChangeTrackingEvery implies -ChangeTracking, and records it so.
    It 'converges with VerifyChangeTrackingEvery and ChangeTracking left off' {
        if ($convergeSkip) { Set-ItResult -Skipped -Because $convergeSkip; return }
        $resource = New-Resource 'VmBackupSchedule' ($baseSettings + @{ VerifyChangeTrackingEvery = 7 })
        $resource.Set()
        $resource.Test() | Should -BeTrue
        $resource.Get().ChangeTracking | Should -BeTrue
    }

    It 'Set refuses a negative VerifyChangeTrackingEvery, naming it, before writing anything' {
        if ($convergeSkip) { Set-ItResult -Skipped -Because $convergeSkip; return }
        $resource = New-Resource 'VmBackupSchedule' ($baseSettings + @{ VerifyChangeTrackingEvery = -1 })
        { $resource.Set() } | Should -Throw -ExpectedMessage '*VerifyChangeTrackingEvery*'
        Test-Path $convergeUnits | Should -BeFalse
    }

    It 'a second Set leaves the units untouched' {
        if ($convergeSkip) { Set-ItResult -Skipped -Because $convergeSkip; return }
        $resource = New-Resource 'VmBackupSchedule' $baseSettings
        $resource.Set()
        $before = Get-FolderSnapshot $convergeUnits
        $resource.Set()
        Get-FolderSnapshot $convergeUnits | Should -Be $before
    }

    # Left out, PowerShellPath means "the installed PowerShell Set would pick now", not "whatever is registered".
    It 'Test is false when the registered PowerShell is not the one Set would use, PowerShellPath not given' {
        if ($convergeSkip) { Set-ItResult -Skipped -Because $convergeSkip; return }
        (New-Resource 'VmBackupSchedule' $baseSettings).Set()
        $settings = $baseSettings.Clone()
        $settings.Remove('PowerShellPath')
        (New-Resource 'VmBackupSchedule' $settings).Test() | Should -BeFalse
    }

    It 'Test is false when the job imports VmQuiesce from another folder than Set would now write' {
        if ($convergeSkip) { Set-ItResult -Skipped -Because $convergeSkip; return }
        $resource = New-Resource 'VmBackupSchedule' $baseSettings
        $resource.Set()
        # As if the module had been moved since: the recorded settings and the job line name the old folder alike.
        $service = Join-Path $convergeUnits 'vmquiesce-backup-nightly.service'
        $modulePath = (Get-VmBackupSchedule -Name nightly -UnitDirectory $convergeUnits).Settings.ModulePath
        [IO.File]::WriteAllText($service, [IO.File]::ReadAllText($service).Replace($modulePath, '/opt/moved-away/VmQuiesce'))
        (Get-VmBackupSchedule -Name nightly -UnitDirectory $convergeUnits).IsCurrent | Should -BeTrue
        $resource.Test() | Should -BeFalse
        $resource.Set()
        $resource.Test() | Should -BeTrue
    }

    # Register-VmBackupSchedule records each path as the file system path it resolves to ('.', '..', '//' and, on
    # Windows, '/' as separators resolved); Test must compare with that, or Set runs again on every check.
    It 'converges when the paths it is given are not written the way Register-VmBackupSchedule records them' {
        if ($convergeSkip) { Set-ItResult -Skipped -Because $convergeSkip; return }
        $settings = $baseSettings.Clone()
        $settings.Vm = @('web01', '/run/qemu/./web01.qmp', '/vms//db01/db01.vmx', 'tcp:127.0.0.1:4444')
        $settings.Repository = '/srv/./backup'
        $settings.LogFolder = '/var/log/vmquiesce/../vmquiesce'
        $settings.CopyTo = '/srv//offsite'
        $settings.PowerShellPath = Join-Path $root './pwsh'
        $resource = New-Resource 'VmBackupSchedule' $settings
        $resource.Set()
        $recorded = (Get-VmBackupSchedule -Name nightly -UnitDirectory $convergeUnits).Settings
        $recorded.Repository | Should -Be '/srv/backup'
        $resource.Test() | Should -BeTrue
        $settings.Repository = '/srv/./backup-2'
        (New-Resource 'VmBackupSchedule' $settings).Test() | Should -BeFalse
    }

    It 'Get of a schedule that is not registered reports no settings, not the defaults' {
        if ($convergeSkip) { Set-ItResult -Skipped -Because $convergeSkip; return }
        $current = (New-Resource 'VmBackupSchedule' $baseSettings).Get()
        "$($current.Ensure)" | Should -Be 'Absent'
        $current.At | Should -BeNullOrEmpty
        $current.Consistency | Should -BeNullOrEmpty
        $current.KeepDaily | Should -Be 0
        $current.KeepWeekly | Should -Be 0
    }
}

Describe 'Invoke-DscResource (Windows LCM path)' {
    BeforeAll {
        $script:lcmSkip = if (-not ($IsWindows -or $PSVersionTable.PSEdition -eq 'Desktop')) { 'Invoke-DscResource drives the resources through the Windows LCM / PSDesiredStateConfiguration: Windows only' }
        elseif (-not (Get-Command Invoke-DscResource -ErrorAction SilentlyContinue)) { 'Invoke-DscResource is not available (PowerShell 7 needs the PSDesiredStateConfiguration 2.x module)' }
        elseif ($PSVersionTable.PSEdition -eq 'Desktop' -and -not $env:CI) { 'Windows PowerShell 5.1 runs Invoke-DscResource in the LCM as SYSTEM, which loads modules from Program Files only: the CI job (CI set) installs the built module there' }
        if ($lcmSkip) { return }
        # Invoke-DscResource finds resources by module name on PSModulePath: out/ holds VmQuiesce/<version>/.
        $script:outModules = Split-Path (Split-Path (Split-Path $env:VMQUIESCE_MODULE_PATH))
        $script:savedModulePath = $env:PSModulePath
        $env:PSModulePath = $outModules + [IO.Path]::PathSeparator + $env:PSModulePath
        $script:installed = $null
        if ($PSVersionTable.PSEdition -eq 'Desktop') {
            $script:installed = Join-Path $env:ProgramFiles 'WindowsPowerShell\Modules\VmQuiesce'
            Copy-Item (Join-Path $outModules 'VmQuiesce') $installed -Recurse -Force
        }
    }

    AfterAll {
        if ($lcmSkip) { return }
        $env:PSModulePath = $savedModulePath
        if ($installed -and (Test-Path $installed)) { Remove-Item $installed -Recurse -Force }
    }

    It 'runs VssWriterConfig through Get, Test, Set, Test' {
        if ($lcmSkip) { Set-ItResult -Skipped -Because $lcmSkip; return }
        $folder = New-Item -ItemType Directory -Path (Join-Path $root 'lcm-config') -Force
        $invoke = @{ Name = 'VssWriterConfig'; ModuleName = 'VmQuiesce'; Property = @{ Path = $folder.FullName; OverwriteSnapshots = $true } }
        "$((Invoke-DscResource @invoke -Method Get).Ensure)" | Should -Be 'Absent'
        (Invoke-DscResource @invoke -Method Test).InDesiredState | Should -BeFalse
        Invoke-DscResource @invoke -Method Set | Out-Null
        (Invoke-DscResource @invoke -Method Test).InDesiredState | Should -BeTrue
        $report.Add('Invoke-DscResource VssWriterConfig: Get -> Absent; Test -> False; Set; Test -> True')
    }

    It 'runs VmBackupSchedule through Get, Test, Set, Test as a scheduled task' {
        if ($lcmSkip) { Set-ItResult -Skipped -Because $lcmSkip; return }
        $name = "VmQuiesceTest$PID"
        $invoke = @{ Name = 'VmBackupSchedule'; ModuleName = 'VmQuiesce'; Property = @{ Name = $name; Vm = @('C:\VMs\web01\web01.vmx'); Repository = (Join-Path $root 'repo'); At = '02:30' } }
        try {
            (Invoke-DscResource @invoke -Method Test).InDesiredState | Should -BeFalse
            Invoke-DscResource @invoke -Method Set | Out-Null
            (Invoke-DscResource @invoke -Method Test).InDesiredState | Should -BeTrue
            $task = Get-ScheduledTask -TaskPath '\VmQuiesce\' -TaskName $name
            $task.Actions[0].Arguments | Should -BeLike '*Invoke-VmBackupJob*-KeepDaily 7 -KeepWeekly 4*'
            $report.Add('Invoke-DscResource VmBackupSchedule: Test -> False; Set; Test -> True')
        }
        finally {
            Unregister-ScheduledTask -TaskPath '\VmQuiesce\' -TaskName $name -Confirm:$false -ErrorAction SilentlyContinue
        }
    }
}
