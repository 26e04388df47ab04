# Class-based DSC resources for VmQuiesce. Each is a thin layer over the module's own cmdlets (and so over
# the same core): nothing here re-implements a check or a change. Only class definitions run at import, so
# importing the module stays fast; the cmdlets run when the LCM, Invoke-DscResource or a test calls a method.
# Windows PowerShell 5.1 syntax only: the Windows LCM loads this file there.

enum Ensure {
    Absent
    Present
}

# vmvsswriter.cfg: whether VMware's host VSS writer may overwrite a VM's existing snapshot.
[DscResource()]
class VssWriterConfig {
    # The file, or the folder that holds (or will hold) vmvsswriter.cfg.
    [DscProperty(Key)]
    [string] $Path

    [DscProperty()]
    [bool] $OverwriteSnapshots

    [DscProperty()]
    [Ensure] $Ensure = [Ensure]::Present

    [VssWriterConfig] Get() {
        $current = [VssWriterConfig]::new()
        $current.Path = $this.Path
        $current.OverwriteSnapshots = $false
        $current.Ensure = [Ensure]::Absent
        # One read gives both whether the file exists and its value.
        $config = $this.ReadConfig()
        if ($config -and $config.Exists) {
            $current.OverwriteSnapshots = $config.OverwriteSnapshots
            $current.Ensure = [Ensure]::Present
        }
        return $current
    }

    # The cmdlets count a missing file as OverwriteSnapshots off (VMware's default) and so create none for
    # -OverwriteSnapshots $false; Present asks for the file itself, so Test and Set look at the file first.
    [bool] Test() {
        $exists = $this.FileExists()
        if ($this.Ensure -eq [Ensure]::Absent) {
            return -not $exists
        }
        return $exists -and [bool] (VmQuiesce\Test-VssWriterConfig -Path $this.Path -OverwriteSnapshots $this.OverwriteSnapshots -ErrorAction Stop)
    }

    [void] Set() {
        if ($this.Ensure -eq [Ensure]::Absent) {
            if ($this.FileExists()) { VmQuiesce\Remove-VssWriterConfig -Path $this.Path -Confirm:$false -ErrorAction Stop }
            return
        }
        # A missing file gets the value written out: -Setting compares exactly, so a missing setting differs even from FALSE.
        $desired = if ($this.FileExists()) { @{ OverwriteSnapshots = $this.OverwriteSnapshots } }
                   else { @{ Setting = @{ 'vmwriter.overwriteSnapshots' = $this.OverwriteSnapshots } } }
        # The cmdlet warns that turning OverwriteSnapshots on destroys hand-made snapshots; the configuration asked for it.
        VmQuiesce\Set-VssWriterConfig -Path $this.Path @desired -Confirm:$false -ErrorAction Stop
    }

    hidden [bool] FileExists() {
        $config = $this.ReadConfig()
        return $config -and $config.Exists
    }

    # The file as Get-VssWriterConfig reads it; $null for a folder that is not there (VMware Server uninstalled),
    # which holds no file: Absent is met, and Present's Set fails with the cmdlet's ConfigFolderNotFound.
    hidden [object] ReadConfig() {
        try {
            return VmQuiesce\Get-VssWriterConfig -Path $this.Path -ErrorAction Stop
        }
        catch {
            if ($_.FullyQualifiedErrorId -like 'ConfigFolderNotFound,*') { return $null }
            throw
        }
    }
}

# The account the VMware VSS Writer Service (or, on Linux, a systemd unit) logs on as. Test notices a rotated
# password through the verifier that Set-VssWriterServiceLogon keeps; Set restarts a running service.
[DscResource()]
class VssWriterServiceLogon {
    [DscProperty(Key)]
    [string] $ServiceName

    [DscProperty(Mandatory)]
    [pscredential] $Credential

    [DscProperty()]
    [string[]] $VmFolder = @()

    # Adds a Modify rule for the account on each VM folder that lacks one (a DSC run should converge).
    [DscProperty()]
    [bool] $GrantFolderAccess = $true

    # Linux: the systemd unit directory (default /etc/systemd/system) and where verifiers are kept; for tests.
    [DscProperty()]
    [string] $UnitDirectory

    [DscProperty()]
    [string] $StateDirectory

    [DscProperty(NotConfigurable)]
    [string] $Account

    [DscProperty(NotConfigurable)]
    [bool] $IsAdministrator

    [VssWriterServiceLogon] Get() {
        $current = [VssWriterServiceLogon]::new()
        $current.ServiceName = $this.ServiceName
        $current.VmFolder = $this.VmFolder
        $current.UnitDirectory = $this.UnitDirectory
        $current.StateDirectory = $this.StateDirectory
        $parameters = $this.CommonParameters()
        try {
            $info = VmQuiesce\Get-VssWriterServiceLogon @parameters -ErrorAction Stop
        }
        catch {
            # No such service: it logs on as no one.
            if ([VssWriterServiceLogon]::IsServiceNotFound($_)) { return $current }
            throw
        }
        $current.Account = $info.Account
        # The account it logs on as, with no password: Get never reads or returns one.
        if ($info.Account) { $current.Credential = [pscredential]::new($info.Account, [securestring]::new()) }
        $current.IsAdministrator = $info.IsAdministrator
        return $current
    }

    # A service that is not there is not in the desired state; Set then fails with the cmdlet's ServiceNotFound.
    [bool] Test() {
        $parameters = $this.RequestParameters()
        try {
            return [bool] (VmQuiesce\Test-VssWriterServiceLogon @parameters -ErrorAction Stop)
        }
        catch {
            if ([VssWriterServiceLogon]::IsServiceNotFound($_)) { return $false }
            throw
        }
    }

    [void] Set() {
        $parameters = $this.RequestParameters()
        VmQuiesce\Set-VssWriterServiceLogon @parameters -GrantFolderAccess:$this.GrantFolderAccess -Confirm:$false -ErrorAction Stop
    }

    hidden static [bool] IsServiceNotFound([System.Management.Automation.ErrorRecord] $failure) {
        return $failure.FullyQualifiedErrorId -like 'ServiceNotFound,*'
    }

    hidden [hashtable] CommonParameters() {
        $parameters = @{ ServiceName = $this.ServiceName }
        if ($this.UnitDirectory) { $parameters.UnitDirectory = $this.UnitDirectory }
        if ($this.VmFolder) { $parameters.VmFolder = $this.VmFolder }
        return $parameters
    }

    hidden [hashtable] RequestParameters() {
        $parameters = $this.CommonParameters()
        $parameters.Credential = $this.Credential
        if ($this.StateDirectory) { $parameters.StateDirectory = $this.StateDirectory }
        return $parameters
    }
}

# A daily backup job, through Register-/Get-/Unregister-VmBackupSchedule: Invoke-VmBackupJob for the VM targets (names
# of running QEMU VMs, QMP sockets, .vmx paths), then the retention policy, with a documented exit code. Windows: a
# scheduled task under \VmQuiesce\ run as SYSTEM. Linux: a systemd service + timer unit pair. No secret is part of it.
[DscResource()]
class VmBackupSchedule {
    # Names the task or units (vmquiesce-backup-<Name>.service/.timer): letters, digits, '.', '_' and '-'.
    [DscProperty(Key)]
    [string] $Name

    # Names of running QEMU VMs, QMP sockets and .vmx paths.
    [DscProperty(Mandatory)]
    [string[]] $Vm

    [DscProperty(Mandatory)]
    [string] $Repository

    # Local time of day the backup starts, HH:mm.
    [DscProperty()]
    [string] $At = '03:00'

    [DscProperty()]
    [string] $Consistency = 'FileSystem'

    [DscProperty()]
    [int] $KeepLast

    [DscProperty()]
    [int] $KeepDaily = 7

    [DscProperty()]
    [int] $KeepWeekly = 4

    [DscProperty()]
    [int] $KeepMonthly

    # A folder that gets one log file per run.
    [DscProperty()]
    [string] $LogFolder

    # QEMU VMs are backed up with -ChangeTracking; every VerifyChangeTrackingEvery-th backup reads in full to check it (0: never).
    [DscProperty()]
    [bool] $ChangeTracking

    [DscProperty()]
    [int] $VerifyChangeTrackingEvery

    # A second repository (a folder or s3://bucket/prefix) each run copies its new restore points to, and the S3 store's endpoint and AWS profile.
    [DscProperty()]
    [string] $CopyTo

    [DscProperty()]
    [string] $S3Endpoint

    [DscProperty()]
    [string] $S3ProfileName

    [DscProperty()]
    [Ensure] $Ensure = [Ensure]::Present

    # Linux: where the units go (default /etc/systemd/system; systemctl runs only for that directory).
    [DscProperty()]
    [string] $UnitDirectory

    # The PowerShell the job runs (an absolute path); default: an installed PowerShell 7, else Windows PowerShell.
    [DscProperty()]
    [string] $PowerShellPath

    # What the scheduler knows of the runs (local times as ISO 8601 text; empty when unknown).
    [DscProperty(NotConfigurable)]
    [string] $LastRunTime

    [DscProperty(NotConfigurable)]
    [string] $LastExitCode

    [DscProperty(NotConfigurable)]
    [string] $NextRunTime

    [VmBackupSchedule] Get() {
        $current = [VmBackupSchedule]::new()
        $current.Name = $this.Name
        $current.UnitDirectory = $this.UnitDirectory
        $current.Ensure = [Ensure]::Absent
        # A new instance holds the defaults a configuration gets; a schedule that is not registered has no settings at all.
        $current.At = $null
        $current.Consistency = $null
        $current.KeepDaily = 0
        $current.KeepWeekly = 0
        $found = $this.Installed()
        if ($found) {
            $current.Ensure = [Ensure]::Present
            $current.Vm = @($found.Vm)
            $current.Repository = $found.Repository
            $current.At = $found.At
            $current.Consistency = "$($found.Consistency)"
            $current.KeepLast = $found.Settings.KeepLast
            $current.KeepDaily = $found.Settings.KeepDaily
            $current.KeepWeekly = $found.Settings.KeepWeekly
            $current.KeepMonthly = $found.Settings.KeepMonthly
            $current.LogFolder = $found.Settings.LogFolder
            $current.ChangeTracking = $found.Settings.ChangeTracking
            $current.VerifyChangeTrackingEvery = $found.Settings.VerifyChangeTrackingEvery
            $current.CopyTo = $found.Settings.CopyTo
            $current.S3Endpoint = "$($found.Settings.S3Endpoint.OriginalString)"
            $current.S3ProfileName = $found.Settings.S3ProfileName
            $current.PowerShellPath = $found.Settings.PowerShellPath
            $current.LastRunTime = if ($found.LastRunTime) { $found.LastRunTime.ToString('s') } else { '' }
            $current.LastExitCode = "$($found.LastExitCode)"
            $current.NextRunTime = if ($found.NextRunTime) { $found.NextRunTime.ToString('s') } else { '' }
        }
        return $current
    }

    [bool] Test() {
        $found = $this.Installed()
        if ($this.Ensure -eq [Ensure]::Absent) { return $null -eq $found }
        if (-not $found -or -not $found.IsCurrent -or $found.Enabled -eq $false) { return $false }
        $job = $this.JobProgram()
        if (-not $job) { return $false }
        $settings = $found.Settings
        # -VerifyChangeTrackingEvery implies -ChangeTracking (Register-VmBackupSchedule records it so).
        $tracksChanges = $this.ChangeTracking -or $this.VerifyChangeTrackingEvery -gt 0
        $backupSchedule = 'VmQuiesce.Core.Schedule.BackupSchedule' -as [type]
        $recordedVm = foreach ($target in $this.Vm) { if ($backupSchedule::IsPathTarget($target)) { $this.RecordedPath($target) } else { $target } }
        return (@($settings.Vm) -join "`n") -ceq (@($recordedVm) -join "`n") -and $settings.Repository -ceq $this.RecordedPath($this.Repository) -and
            $settings.At -eq $this.At -and "$($settings.Consistency)" -eq $this.Consistency -and $settings.KeepLast -eq $this.KeepLast -and
            $settings.KeepDaily -eq $this.KeepDaily -and $settings.KeepWeekly -eq $this.KeepWeekly -and $settings.KeepMonthly -eq $this.KeepMonthly -and
            "$($settings.LogFolder)" -ceq "$($this.RecordedPath($this.LogFolder))" -and $settings.PowerShellPath -ceq $job.PowerShellPath -and $settings.ModulePath -ceq $job.ModulePath -and
            $settings.TracksChanges -eq $tracksChanges -and $settings.VerifyChangeTrackingEvery -eq $this.VerifyChangeTrackingEvery -and
            "$($settings.CopyTo)" -ceq "$($this.RecordedPath($this.CopyTo))" -and "$($settings.S3Endpoint.OriginalString)" -ceq "$($this.S3Endpoint)" -and
            "$($settings.S3ProfileName)" -ceq "$($this.S3ProfileName)"
    }

    [void] Set() {
        $location = $this.Location()
        if ($this.Ensure -eq [Ensure]::Absent) {
            if ($this.Installed()) { VmQuiesce\Unregister-VmBackupSchedule -Name $this.Name @location -Confirm:$false -ErrorAction Stop }
            return
        }
        # Registering again would rewrite the units and re-enable the timer (on Windows, replace the task and its run history).
        if ($this.Test()) { return }
        $parameters = @{
            Name = $this.Name; Vm = $this.Vm; Repository = $this.Repository; At = $this.At; Consistency = $this.Consistency
            KeepLast = $this.KeepLast; KeepDaily = $this.KeepDaily; KeepWeekly = $this.KeepWeekly; KeepMonthly = $this.KeepMonthly
        }
        if ($this.LogFolder) { $parameters.LogFolder = $this.LogFolder }
        if ($this.PowerShellPath) { $parameters.PowerShellPath = $this.PowerShellPath }
        if ($this.ChangeTracking) { $parameters.ChangeTracking = $true }
        # A negative interval goes to the cmdlet too, whose validation names it (0 means never and is its default).
        if ($this.VerifyChangeTrackingEvery -ne 0) { $parameters.VerifyChangeTrackingEvery = $this.VerifyChangeTrackingEvery }
        if ($this.CopyTo) { $parameters.CopyTo = $this.CopyTo }
        if ($this.S3Endpoint) { $parameters.S3Endpoint = $this.S3Endpoint }
        if ($this.S3ProfileName) { $parameters.S3ProfileName = $this.S3ProfileName }
        VmQuiesce\Register-VmBackupSchedule @parameters @location -Confirm:$false -ErrorAction Stop
    }

    # The PowerShell and the module folder Register-VmBackupSchedule would write into the job now; $null when it would
    # find no PowerShell (Set then fails with the cmdlet's PowerShellNotFound). A type looked up by name: this file is
    # parsed before the module's assembly may be loaded.
    hidden [hashtable] JobProgram() {
        $jobEnvironment = 'VmQuiesce.Core.Schedule.JobEnvironment' -as [type]
        $powerShell = $this.RecordedPath($this.PowerShellPath)
        if (-not $powerShell) {
            try { $powerShell = $jobEnvironment::FindPowerShell($null) }
            catch { return $null }
        }
        $moduleBase = (Get-Command -Name VmQuiesce\Register-VmBackupSchedule).Module.ModuleBase
        return @{ PowerShellPath = $powerShell; ModulePath = $jobEnvironment::ModuleImportPath($moduleBase) }
    }

    # A path as Register-VmBackupSchedule records it: the file system path it resolves to ('.', '..', doubled and, on
    # Windows, '/' separators resolved); an s3:// address, an empty one, or one that does not resolve (Set then names
    # it) as given.
    hidden [string] RecordedPath([string] $path) {
        if (-not $path -or ('VmQuiesce.Core.Repository.Storage.S3RepositoryAddress' -as [type])::IsS3($path)) { return $path }
        try { return $global:ExecutionContext.SessionState.Path.GetUnresolvedProviderPathFromPSPath($path) }
        catch { return $path }
    }

    hidden [hashtable] Location() {
        if ($this.UnitDirectory) { return @{ UnitDirectory = $this.UnitDirectory } }
        return @{}
    }

    # systemd unit names are case-sensitive (vmquiesce-backup-Nightly is another schedule than vmquiesce-backup-nightly);
    # Task Scheduler's task names are not.
    hidden [object] Installed() {
        $location = $this.Location()
        $wanted = $this.Name
        return VmQuiesce\Get-VmBackupSchedule @location -ErrorAction Stop |
            Where-Object { $_.Name -ceq $wanted -or ($_.Scheduler -ne 'systemd' -and $_.Name -eq $wanted) } | Select-Object -First 1
    }
}
