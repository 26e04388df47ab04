# Backup schedules: Register-, Get-, Unregister-VmBackupSchedule on real unit files in a temporary unit directory,
# and the job itself: the service unit's own ExecStart, run the way systemd runs it, against the real QEMU test
# guest named only by its monitor socket, with the exit-code contract of Invoke-VmBackupJob.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force
    Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1') -Force
    $script:unavailable = Get-TestGuestSkipReason
    $script:unitSkip = if ($IsWindows -or $PSVersionTable.PSEdition -eq 'Desktop') { 'Windows registers scheduled tasks: covered by the stand-in ScheduledTasks tests and the Invoke-DscResource tests' }
    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmq-schedule-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
    New-Item -ItemType Directory -Path $root | Out-Null

    # The job's PowerShell: a file at a fixed path that starts this test's PowerShell (the local dotnet tool here).
    $child = Get-ChildPwsh
    $script:pwshPath = Join-Path $root 'pwsh'
    $command = (@($child.FilePath) + $child.Prefix | ForEach-Object { "'$($_.Replace("'", "'\''"))'" }) -join ' '
    Set-Content -LiteralPath $pwshPath -Value "#!/bin/sh`nexec $command `"`$@`""
    if (-not $unitSkip) { & chmod 755 $pwshPath }

    # ExecStart= back into program and arguments, undoing systemd's quoting ("...", \\ and \", %% and $$).
    function script:Split-ExecStart([string] $Line) {
        [regex]::Matches($Line.Substring('ExecStart='.Length), '"((?:[^"\\]|\\.)*)"') | ForEach-Object {
            [regex]::Replace($_.Groups[1].Value, '\\(.)', '$1').Replace('%%', '%').Replace('$$', '$')
        }
    }

    # Runs a unit's job as systemd would (no shell, no terminal) and returns its exit code and standard error.
    function script:Invoke-UnitJob([string] $Service) {
        $exec = Get-Content -LiteralPath $Service | Where-Object { $_ -like 'ExecStart=*' }
        $arguments = @(Split-ExecStart $exec)
        $start = [Diagnostics.ProcessStartInfo]::new($arguments[0])
        foreach ($argument in $arguments | Select-Object -Skip 1) { $start.ArgumentList.Add($argument) }
        $start.RedirectStandardError = $true
        $start.RedirectStandardOutput = $true
        $start.WorkingDirectory = '/'
        $process = [Diagnostics.Process]::Start($start)
        $errorText = $process.StandardError.ReadToEndAsync()
        $null = $process.StandardOutput.ReadToEnd()
        $process.WaitForExit()
        [pscustomobject]@{ ExitCode = $process.ExitCode; Errors = @($errorText.Result -split "`n" | Where-Object { $_.Trim() }) }
    }
}

AfterAll {
    if ($root -and (Test-Path $root)) { Remove-Item $root -Recurse -Force }
}

Describe 'Register-, Get-, Unregister-VmBackupSchedule with real unit files' {
    BeforeAll {
        $script:units = Join-Path $root 'units'
        $script:settings = @{
            Name = 'nightly'; Vm = @('web01', "/run/vm's/db 01.qmp"); Repository = '/srv/backup repo %h'; At = '02:30'
            KeepDaily = 7; KeepWeekly = 4; UnitDirectory = $units; PowerShellPath = $pwshPath; Confirm = $false
        }
    }

    It 'writes a service and a timer whose job imports the module by path and runs Invoke-VmBackupJob' {
        if ($unitSkip) { Set-ItResult -Skipped -Because $unitSkip; return }
        $registered = Register-VmBackupSchedule @settings -PassThru
        $registered | Should -BeOfType ([VmQuiesce.Core.Schedule.BackupScheduleInfo])
        $registered.IsCurrent | Should -BeTrue

        Get-Content (Join-Path $units 'vmquiesce-backup-nightly.timer') | Should -Contain 'OnCalendar=*-*-* 02:30:00'
        $exec = Get-Content (Join-Path $units 'vmquiesce-backup-nightly.service') | Where-Object { $_ -like 'ExecStart=*' }
        $arguments = @(Split-ExecStart $exec)
        $arguments[0] | Should -Be $pwshPath
        $arguments[1..3] | Should -Be @('-NoProfile', '-NonInteractive', '-Command')
        $moduleFolder = Split-Path (Split-Path $env:VMQUIESCE_MODULE_PATH)
        $arguments[4] | Should -BeLike "Import-Module -Name '$moduleFolder' -ErrorAction Stop; exit (Invoke-VmBackupJob -Name 'nightly' -Vm 'web01','/run/vm''s/db 01.qmp' -Repository '/srv/backup repo %h' -Consistency FileSystem -KeepDaily 7 -KeepWeekly 4).ExitCode"
        $exec | Should -BeLike '*%%h*' -Because 'systemd would expand %h to a home folder'
    }

    It 'lists the schedule with its settings, its command and the next run; a hand edit makes it not current' {
        if ($unitSkip) { Set-ItResult -Skipped -Because $unitSkip; return }
        $schedule = Get-VmBackupSchedule -Name 'night*' -UnitDirectory $units
        $schedule.Name | Should -Be 'nightly'
        $schedule.Vm | Should -Be @('web01', "/run/vm's/db 01.qmp")
        $schedule.Settings.KeepWeekly | Should -Be 4
        $schedule.Scheduler | Should -Be 'systemd'
        $schedule.Command[0] | Should -Be $pwshPath
        $schedule.IsCurrent | Should -BeTrue
        $schedule.LastRunTime | Should -BeNullOrEmpty -Because 'systemd does not read this folder, so nothing ran it'
        $schedule.NextRunTime | Should -Be ([VmQuiesce.Core.Schedule.BackupScheduleInfo]::NextDaily([timespan]'02:30', $schedule.NextRunTime.AddMinutes(-1)))
        $schedule.NextRunTime.TimeOfDay | Should -Be ([timespan]'02:30')

        Add-Content -LiteralPath (Join-Path $units 'vmquiesce-backup-nightly.service') -Value 'ExecStartPost=/bin/true'
        (Get-VmBackupSchedule nightly -UnitDirectory $units).IsCurrent | Should -BeFalse
    }

    It 'replaces the schedule whole when registered again, and -WhatIf changes nothing' {
        if ($unitSkip) { Set-ItResult -Skipped -Because $unitSkip; return }
        Register-VmBackupSchedule @settings
        (Get-VmBackupSchedule nightly -UnitDirectory $units).IsCurrent | Should -BeTrue
        $changed = $settings.Clone()
        $changed.At = '04:00'
        Register-VmBackupSchedule @changed -WhatIf
        (Get-VmBackupSchedule nightly -UnitDirectory $units).At | Should -Be '02:30'
    }

    It 'names a schedule that does not exist with ScheduleNotFound, and refuses a bad name before writing anything' {
        if ($unitSkip) { Set-ItResult -Skipped -Because $unitSkip; return }
        Get-VmBackupSchedule -Name 'no-such' -UnitDirectory $units -ErrorVariable failures -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'ScheduleNotFound,*'
        $bad = $settings.Clone()
        $bad.Name = '../evil'
        { Register-VmBackupSchedule @bad -ErrorAction Stop } | Should -Throw -ErrorId 'ScheduleNameInvalid,*'
        $bad = $settings.Clone()
        $bad.At = '25:00'
        { Register-VmBackupSchedule @bad -ErrorAction Stop } | Should -Throw -ErrorId 'ScheduleTimeInvalid,*'
        @(Get-ChildItem $units).Name | Sort-Object | Should -Be @('vmquiesce-backup-nightly.service', 'vmquiesce-backup-nightly.timer')
    }

    It 'refuses a -PowerShellPath that is not a file' {
        $missing = $settings.Clone()
        $missing.PowerShellPath = Join-Path $root 'no-pwsh-here'
        { Register-VmBackupSchedule @missing -ErrorAction Stop } | Should -Throw -ErrorId 'PowerShellNotFound,*'
    }

    It 'records a copy step in the job and reads it back as current; copy settings without a copy, or a copy onto the repository, are refused before writing' {
        if ($unitSkip) { Set-ItResult -Skipped -Because $unitSkip; return }
        $copyUnits = Join-Path $root 'copy-units'
        $copied = Register-VmBackupSchedule -Name 'offsite' -Vm 'web01' -Repository '/srv/backup' -CopyTo 's3://backups/host-1' -S3Endpoint 'http://rgw.example.net:7480' -S3ProfileName 'backup-writer' `
            -UnitDirectory $copyUnits -PowerShellPath $pwshPath -Confirm:$false -PassThru

        $copied.IsCurrent | Should -BeTrue
        $copied.Settings.CopyTo | Should -Be 's3://backups/host-1'
        $copied.Settings.S3Endpoint | Should -Be ([uri] 'http://rgw.example.net:7480')
        $copied.Settings.S3ProfileName | Should -Be 'backup-writer'
        $copied.Command[-1] | Should -BeLike "*-CopyTo 's3://backups/host-1' -S3Endpoint 'http://rgw.example.net:7480' -S3ProfileName 'backup-writer'*"
        foreach ($case in @(
                @{ Arguments = @{ S3Endpoint = 'http://rgw.example.net' }; ErrorId = 'ScheduleCopySettingsWithoutCopy' }
                @{ Arguments = @{ CopyTo = '/srv/copy'; S3ProfileName = 'p' }; ErrorId = 'ScheduleCopySettingsWithoutCopy' }
                @{ Arguments = @{ CopyTo = '/srv/backup' }; ErrorId = 'ScheduleCopyToSameRepository' }
                @{ Arguments = @{ CopyTo = 's3://Not_A_Bucket' }; ErrorId = 'InvalidS3Repository' }
            )) {
            $arguments = $case.Arguments
            { Register-VmBackupSchedule -Name 'refused' -Vm 'web01' -Repository '/srv/backup' @arguments -UnitDirectory $copyUnits -PowerShellPath $pwshPath -Confirm:$false -ErrorAction Stop } |
                Should -Throw -ErrorId "$($case.ErrorId),*"
        }
        @(Get-ChildItem $copyUnits -Filter '*refused*').Count | Should -Be 0
    }

    It 'registers a job that backs up into an s3:// repository: the unit carries the endpoint, never a secret' {
        if ($unitSkip) { Set-ItResult -Skipped -Because $unitSkip; return }
        $s3Units = Join-Path $root 's3-units'
        # A secret this session holds: the job's own account reads its credentials from its AWS chain at run time.
        $env:AWS_SECRET_ACCESS_KEY = 'canary-secret-0123456789'
        try {
            $registered = Register-VmBackupSchedule -Name 'to-s3' -Vm 'web01' -Repository 's3://backups/host-1' -S3Endpoint 'http://rgw.example.net:7480' -KeepLast 3 `
                -UnitDirectory $s3Units -PowerShellPath $pwshPath -Confirm:$false -PassThru
        }
        finally { Remove-Item Env:AWS_SECRET_ACCESS_KEY }
        $registered.Settings.Repository | Should -Be 's3://backups/host-1'
        $registered.Command[-1] | Should -BeLike "*-Repository 's3://backups/host-1'*-S3Endpoint 'http://rgw.example.net:7480'*"
        $unitText = Get-ChildItem $s3Units -File | Get-Content -Raw | Out-String
        $unitText | Should -Match ([regex]::Escape("http://rgw.example.net:7480"))
        $unitText | Should -Not -Match 'canary-secret|AWS_SECRET|S3Credential'
        { Register-VmBackupSchedule -Name 'refused' -Vm 'web01' -Repository 's3://backups/host-1' -S3Endpoint 'http://writer:pass-in-url@rgw.example.net' -UnitDirectory $s3Units -PowerShellPath $pwshPath -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ErrorId 'ScheduleS3EndpointInvalid,*'
    }

    It 'registers the rows piped from Import-Csv, reporting a bad row as a non-terminating error and going on to the next' {
        if ($unitSkip) { Set-ItResult -Skipped -Because $unitSkip; return }
        $csvUnits = Join-Path $root 'csv-units'
        $csv = Join-Path $root 'schedules.csv'
        @(
            [pscustomobject]@{ Name = 'web'; Vm = 'web01'; Repository = '/srv/backup'; At = '01:00' }
            [pscustomobject]@{ Name = 'db'; Vm = 'db01'; Repository = '/srv/backup'; At = '25:00' }
            [pscustomobject]@{ Name = 'mail'; Vm = 'mail01'; Repository = 'NoSuchDrive:/backup'; At = '01:30' }
            [pscustomobject]@{ Name = 'files'; Vm = 'files01'; Repository = '/srv/backup'; At = '02:00' }
        ) | Export-Csv -LiteralPath $csv

        $output = @(Import-Csv -LiteralPath $csv | Register-VmBackupSchedule -UnitDirectory $csvUnits -PowerShellPath $pwshPath -Confirm:$false -PassThru -ErrorAction Continue 2>&1)

        $failures = @($output | Where-Object { $_ -is [System.Management.Automation.ErrorRecord] })
        $failures.FullyQualifiedErrorId | Should -Be @('ScheduleTimeInvalid,VmQuiesce.Commands.RegisterVmBackupScheduleCommand', 'PathNotFileSystem,VmQuiesce.Commands.RegisterVmBackupScheduleCommand')
        $failures[1].TargetObject | Should -Be 'NoSuchDrive:/backup'
        @($output | Where-Object { $_ -is [VmQuiesce.Core.Schedule.BackupScheduleInfo] }).Name | Should -Be @('web', 'files')
        @(Get-ChildItem $csvUnits).Name | Sort-Object | Should -Be @('vmquiesce-backup-files.service', 'vmquiesce-backup-files.timer', 'vmquiesce-backup-web.service', 'vmquiesce-backup-web.timer')
    }

    # A crash between the two unit writes, or a half removal by hand, leaves one unit: still a schedule, to replace or remove whole.
    It 'lists a timer left without its service as incomplete; Register replaces it whole and Unregister removes what is left' {
        if ($unitSkip) { Set-ItResult -Skipped -Because $unitSkip; return }
        $half = $settings.Clone()
        $half.UnitDirectory = Join-Path $root 'half-units'
        Register-VmBackupSchedule @half
        Remove-Item -LiteralPath (Join-Path $half.UnitDirectory 'vmquiesce-backup-nightly.service')

        $left = Get-VmBackupSchedule -Name nightly -UnitDirectory $half.UnitDirectory
        $left.IsComplete | Should -BeFalse
        $left.IsCurrent | Should -BeFalse
        $left.Missing | Should -Be 'vmquiesce-backup-nightly.service'
        Register-VmBackupSchedule @half
        (Get-VmBackupSchedule -Name nightly -UnitDirectory $half.UnitDirectory).IsComplete | Should -BeTrue

        Remove-Item -LiteralPath (Join-Path $half.UnitDirectory 'vmquiesce-backup-nightly.service')
        Unregister-VmBackupSchedule -Name nightly -UnitDirectory $half.UnitDirectory -Confirm:$false -ErrorAction Stop
        @(Get-ChildItem $half.UnitDirectory) | Should -BeNullOrEmpty
    }

    # Root writes and deletes the units: a folder above them that others may write lets them swap the unit folder.
    It 'refuses a unit folder below a folder others may write with UnitFolderUnsafe, in Register and Unregister, and changes nothing' {
        if ($unitSkip) { Set-ItResult -Skipped -Because $unitSkip; return }
        $open = Join-Path $root 'open'
        $shared = $settings.Clone()
        $shared.UnitDirectory = Join-Path $open 'units'
        Register-VmBackupSchedule @shared
        $before = Get-ChildItem $shared.UnitDirectory | ForEach-Object { "$($_.Name)=$(Get-Content -LiteralPath $_.FullName -Raw)" }
        & chmod 0777 $open

        $shared.At = '04:00'
        { Register-VmBackupSchedule @shared -ErrorAction Stop } | Should -Throw -ErrorId 'UnitFolderUnsafe,VmQuiesce.Commands.RegisterVmBackupScheduleCommand'
        { Unregister-VmBackupSchedule -Name nightly -UnitDirectory $shared.UnitDirectory -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ErrorId 'UnitFolderUnsafe,VmQuiesce.Commands.UnregisterVmBackupScheduleCommand'
        Get-ChildItem $shared.UnitDirectory | ForEach-Object { "$($_.Name)=$(Get-Content -LiteralPath $_.FullName -Raw)" } | Should -Be $before
    }

    It 'Unregister removes both units and the schedule is gone' {
        if ($unitSkip) { Set-ItResult -Skipped -Because $unitSkip; return }
        Unregister-VmBackupSchedule -Name nightly -UnitDirectory $units -Confirm:$false
        @(Get-ChildItem $units) | Should -BeNullOrEmpty
        Get-VmBackupSchedule -UnitDirectory $units | Should -BeNullOrEmpty
    }

    It 'keeps a VM path that ends its quote with U+2018-U+201B one argument: the command it injects never runs' {
        $marker = Join-Path $root 'injected'
        $received = Join-Path $root 'received.json'
        $hostile = @(foreach ($quote in [char] 0x2018, [char] 0x2019, [char] 0x201A, [char] 0x201B) { "/run/vm$quote; New-Item -ItemType File -Path $marker; $quote.qmp" })
        $schedule = [VmQuiesce.Core.Schedule.BackupSchedule]::new('hostile', [string[]] $hostile, '/srv/repo')
        # The job as the scheduler runs it, with VmQuiesce's commands replaced by stubs that record what reached them.
        $stubs = "function Import-Module {}; function Invoke-VmBackupJob { param(`$Name, [string[]] `$Vm) ConvertTo-Json -InputObject `$Vm | Set-Content -LiteralPath '$received'; @{ ExitCode = 0 } }; "
        $child = Get-ChildPwsh

        & $child.FilePath @($child.Prefix + @('-NoProfile', '-NonInteractive', '-Command', $stubs + $schedule.JobScript()))

        $LASTEXITCODE | Should -Be 0
        Test-Path $marker | Should -BeFalse -Because 'the VM path ended its quoted string and ran New-Item as root'
        @(Get-Content -LiteralPath $received -Raw | ConvertFrom-Json) | Should -Be $hostile
    }
}

Describe 'The scheduled job against the real QEMU test guest' {
    BeforeAll {
        if ($unavailable -or $unitSkip) { return }
        $script:uuid = [guid]::NewGuid()
        $script:guest = Start-TestGuest -Uuid $uuid
        $script:jobUnits = Join-Path $root 'job-units'
        $script:repository = Join-Path $root 'job-repo'
        $script:logs = Join-Path $root 'job-logs'
    }

    AfterAll {
        if ($script:guest) { $script:guest | Stop-TestGuest }
    }

    It 'gives the VM the same name and its UUID whether it is discovered or named by its socket' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $bySocket = Get-BackupVm -QmpSocket $guest.QmpSocketPath
        $discovered = @(Get-BackupVm | Where-Object Location -EQ $guest.QmpSocketPath)
        $discovered.Count | Should -Be 1
        $discovered[0].Name | Should -Be $bySocket.Name
        $bySocket.Uuid | Should -Be $uuid
        $discovered[0].Uuid | Should -Be $uuid
    }

    It 'runs the unit''s own ExecStart and gets a FileSystem-consistent point from a VM named only by its monitor' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        if ($unitSkip) { Set-ItResult -Skipped -Because $unitSkip; return }
        Register-VmBackupSchedule -Name 'guest-job' -Vm $guest.QmpSocketPath -Repository $repository -KeepLast 5 -LogFolder $logs `
            -UnitDirectory $jobUnits -PowerShellPath $pwshPath -Confirm:$false

        $run = Invoke-UnitJob (Join-Path $jobUnits 'vmquiesce-backup-guest-job.service')

        $run.Errors | Should -BeNullOrEmpty
        $run.ExitCode | Should -Be 0
        $points = @(Get-VmBackup -Repository $repository)
        $points.Count | Should -Be 1
        "$($points[0].Consistency)" | Should -Be 'FileSystem'
        $points[0].Quiesce.Frozen | Should -Not -BeNullOrEmpty
        $points[0].VmUuid | Should -Be $uuid
        $log = @(Get-ChildItem $logs -Filter 'guest-job-*.log')
        $log.Count | Should -Be 1
        Get-Content $log[0].FullName | Select-Object -Last 1 | Should -BeLike '*exit code 0.'
    }

    It 'exits 2 with one error line per VM that failed, while the others are backed up' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        if ($unitSkip) { Set-ItResult -Skipped -Because $unitSkip; return }
        $missing = Join-Path $root 'gone/qmp.sock'
        Register-VmBackupSchedule -Name 'guest-job' -Vm $guest.QmpSocketPath, $missing -Repository $repository -KeepLast 5 `
            -UnitDirectory $jobUnits -PowerShellPath $pwshPath -Confirm:$false

        $run = Invoke-UnitJob (Join-Path $jobUnits 'vmquiesce-backup-guest-job.service')

        $run.ExitCode | Should -Be 2
        $run.Errors.Count | Should -Be 1
        $run.Errors[0] | Should -BeLike "guest-job: FAILED $missing`: QmpSocketNotFound: *"
        @(Get-VmBackup -Repository $repository).Count | Should -Be 2
    }

    It 'copies the run''s new points to a second repository with -CopyTo, and exits 4 when only the copy fails' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $copySource = Join-Path $root 'copy-source-repo'
        $copyRepository = Join-Path $root 'copy-repo'
        $run = Invoke-VmBackupJob -Name 'copied' -Vm $guest.QmpSocketPath -Repository $copySource -CopyTo $copyRepository -WarningAction SilentlyContinue

        $run.ExitCode | Should -Be 0
        $run.CopySucceeded | Should -BeTrue
        @(Get-VmBackup -Repository $copyRepository).Id | Should -Be @($run.RestorePoints.Id)
        (Test-VmBackup -Repository $copyRepository -Id $run.RestorePoints[0].Id).IsValid | Should -BeTrue
        $run.LogLines -join "`n" | Should -BeLike '*Copy: 1 restore point(s) copied to*'

        $notARepository = Join-Path $root 'not-a-repository'
        Set-Content -LiteralPath $notARepository -Value 'a file, not a repository'
        $failed = Invoke-VmBackupJob -Name 'copy-fails' -Vm $guest.QmpSocketPath -Repository $copySource -CopyTo $notARepository -WarningAction SilentlyContinue 2>$null
        $failed.ExitCode | Should -Be 4
        $failed.Failures | Should -BeNullOrEmpty
        $failed.RestorePoints.Count | Should -Be 1
        $failed.CopySucceeded | Should -BeFalse
        $failed.CopyError | Should -BeLike "to '$notARepository'*"
    }

    It 'reports each VM''s own outcome when the calling script stops on errors ($ErrorActionPreference = ''Stop'')' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        # A VM without disks fails its backup (QemuNoDisks) beside the test guest, in the same Invoke-VmQuiescedBackup.
        $diskless = Start-TestGuest -DiskCount 0 -VmName 'diskless'
        try {
            $stopRepository = Join-Path $root 'stop-repo'
            $run = & {
                $ErrorActionPreference = 'Stop'
                Invoke-VmBackupJob -Name 'stops' -Vm $guest.QmpSocketPath, $diskless.QmpSocketPath -Repository $stopRepository -KeepLast 1 -WarningAction SilentlyContinue
            }

            $run.ExitCode | Should -Be 2
            $run.Failures.ErrorId | Should -Be 'QemuNoDisks'
            $run.RestorePoints.Count | Should -Be 1
            @(Get-VmBackup -Repository $stopRepository).Id | Should -Be @($run.RestorePoints.Id)
        }
        finally { $diskless | Stop-TestGuest }
    }

    It 'stops at Ctrl+C: the steps after the stopped one do not run (no retention), and its log says so' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $stoppedRepository = Join-Path $root 'stopped-repo'
        $stoppedLogs = Join-Path $root 'stopped-logs'
        foreach ($i in 1, 2) { $null = Invoke-VmQuiescedBackup -Vm $guest.QmpSocketPath -Repository $stoppedRepository -Confirm:$false -WarningAction SilentlyContinue }
        $job = [powershell]::Create()
        $null = $job.AddCommand('Import-Module').AddParameter('Name', $env:VMQUIESCE_MODULE_PATH).AddStatement().AddCommand('Invoke-VmBackupJob').
            AddParameter('Name', 'stopped').AddParameter('Vm', $guest.QmpSocketPath).AddParameter('Repository', $stoppedRepository).
            AddParameter('KeepLast', 1).AddParameter('LogFolder', $stoppedLogs).AddParameter('WarningAction', 'SilentlyContinue')
        try {
            $running = $job.BeginInvoke()
            # Ctrl+C while the backup step runs: once it holds its repository lock, QEMU is held still (SIGSTOP), so the
            # backup cannot end before the stop reaches it; QEMU goes on once the stop is under way.
            $locks = Join-Path $stoppedRepository 'locks'
            $deadline = [DateTime]::UtcNow.AddSeconds(120)
            while (-not [IO.Directory]::EnumerateFiles($locks, 'shared-*.lock').GetEnumerator().MoveNext() -and -not $running.IsCompleted -and [DateTime]::UtcNow -lt $deadline) { }
            & /bin/kill -STOP $guest.Process.Id
            try {
                $running.IsCompleted | Should -BeFalse -Because 'the job is stopped during its backup step'
                $stopping = $job.BeginStop($null, $null)
            }
            finally { & /bin/kill -CONT $guest.Process.Id }
            $job.EndStop($stopping)

            "$($job.InvocationStateInfo.State)" | Should -Be 'Stopped'
            @(Get-VmBackup -Repository $stoppedRepository).Count | Should -Be 2 -Because 'retention (-KeepLast 1) must not run once the job was stopped'
            $log = Get-Content (Get-ChildItem $stoppedLogs -Filter 'stopped-*.log')[0].FullName
            $log -join "`n" | Should -BeLike '*Stopped*: the steps after it were not run.*'
            $log -join "`n" | Should -Not -BeLike '*Retention*'
            $log -join "`n" | Should -Not -BeLike '*PipelineStopped*'
        }
        finally { $job.Dispose() }
    }

    It 'exits 3 with one FAILED retention line naming the job when only the retention policy fails' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        if ($unitSkip) { Set-ItResult -Skipped -Because $unitSkip; return }
        $busyRepository = Join-Path $root 'busy-repo'
        $first = Invoke-VmBackupJob -Name 'busy-job' -Vm $guest.QmpSocketPath -Repository $busyRepository -WarningAction SilentlyContinue
        # A served point holds a shared lock on its repository: the prune that retention needs is refused (RepositoryBusy).
        $export = Start-VmBackupExport -Repository $busyRepository -Id $first.RestorePoints[0].Id -Confirm:$false
        try {
            Register-VmBackupSchedule -Name 'busy-job' -Vm $guest.QmpSocketPath -Repository $busyRepository -KeepLast 1 `
                -UnitDirectory $jobUnits -PowerShellPath $pwshPath -Confirm:$false

            $run = Invoke-UnitJob (Join-Path $jobUnits 'vmquiesce-backup-busy-job.service')

            $run.ExitCode | Should -Be 3
            $run.Errors.Count | Should -Be 1
            $run.Errors[0] | Should -BeLike 'busy-job: FAILED retention: *' -Because 'every line a job writes to the error stream starts with its name'
            @(Get-VmBackup -Repository $busyRepository).Count | Should -Be 2
        }
        finally { $export | Stop-VmBackupExport -Confirm:$false }
    }

    It 'gives its steps'' warnings and verbose lines as its own: -WarningVariable, -WarningAction, -Verbose and 4>&1 take them' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        # A repository made before keys: every backup into it warns that it is not encrypted.
        $legacy = Join-Path $root 'legacy-repo'
        $null = [VmQuiesce.Core.Repository.BackupRepository]::OpenOrCreate($legacy)

        $records = Invoke-VmBackupJob -Name 'streams' -Vm $guest.QmpSocketPath -Repository $legacy -Verbose -WarningVariable warnings -WarningAction SilentlyContinue 4>&1

        @($records | Where-Object { $_ -is [VmQuiesce.Core.Schedule.BackupJobResult] }).ExitCode | Should -Be 0
        "$warnings" | Should -Match 'not encrypted'
        @($records | Where-Object { $_ -is [Management.Automation.VerboseRecord] } | ForEach-Object Message) -join "`n" | Should -BeLike '*consistency, frozen for*'
    }

    It 'exits 2 when a VM cannot reach the required consistency' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $result = Invoke-VmBackupJob -Name 'too-high' -Vm $guest.QmpSocketPath -Repository $repository -Consistency Application 2>$null
        $result.ExitCode | Should -Be 2
        $result.Failures.ErrorId | Should -Be 'ConsistencyNotReached'
        @(Get-VmBackup -Repository $repository).Count | Should -Be 2
    }

    It 'reads incrementally with -ChangeTracking and verifies every third backup, counted from the repository' {
        if ($unavailable) { Set-ItResult -Skipped -Because $unavailable; return }
        $tracked = Join-Path $root 'tracked-repo'
        $runs = foreach ($n in 1..4) { Invoke-VmBackupJob -Name 'tracked' -Vm $guest.QmpSocketPath -Repository $tracked -VerifyChangeTrackingEvery 3 -WarningAction SilentlyContinue }

        $runs.ExitCode | Should -Be @(0, 0, 0, 0)
        $records = foreach ($run in $runs) { $run.RestorePoints[0].Files[0].GetChangeTracking() }
        "$($records[0])" | Should -Be 'Full (NoCheckpoint)'
        "$($records[1])" | Should -Be 'Incremental'
        $records.Verified | Should -Be @($false, $false, $true, $false)
        "$($records[3])" | Should -Be 'Incremental'
        $runs[2].LogLines -join "`n" | Should -BeLike '*read in full to verify its change tracking (every 3 backups)*'
        $runs[1].LogLines -join "`n" | Should -BeLike '*Read: * Incremental.*'
    }
}
