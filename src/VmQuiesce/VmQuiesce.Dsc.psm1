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
        $config = VmQuiesce\Get-VssWriterConfig -Path $this.Path -ErrorAction Stop
        $current = [VssWriterConfig]::new()
        $current.Path = $this.Path
        $current.OverwriteSnapshots = $config.OverwriteSnapshots
        $current.Ensure = if ($config.Exists) { [Ensure]::Present } else { [Ensure]::Absent }
        return $current
    }

    [bool] Test() {
        if ($this.Ensure -eq [Ensure]::Absent) {
            return -not (VmQuiesce\Get-VssWriterConfig -Path $this.Path -ErrorAction Stop).Exists
        }
        return [bool] (VmQuiesce\Test-VssWriterConfig -Path $this.Path -OverwriteSnapshots $this.OverwriteSnapshots -ErrorAction Stop)
    }

    [void] Set() {
        if ($this.Ensure -eq [Ensure]::Absent) {
            VmQuiesce\Remove-VssWriterConfig -Path $this.Path -Confirm:$false -ErrorAction Stop
            return
        }
        # The cmdlet warns that turning OverwriteSnapshots on destroys hand-made snapshots; the configuration asked for it.
        VmQuiesce\Set-VssWriterConfig -Path $this.Path -OverwriteSnapshots $this.OverwriteSnapshots -Confirm:$false -ErrorAction Stop
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
        $parameters = $this.CommonParameters()
        $info = VmQuiesce\Get-VssWriterServiceLogon @parameters -ErrorAction Stop
        $current = [VssWriterServiceLogon]::new()
        $current.ServiceName = $this.ServiceName
        $current.VmFolder = $this.VmFolder
        $current.UnitDirectory = $this.UnitDirectory
        $current.StateDirectory = $this.StateDirectory
        $current.Account = $info.Account
        $current.IsAdministrator = $info.IsAdministrator
        return $current
    }

    [bool] Test() {
        $parameters = $this.RequestParameters()
        return [bool] (VmQuiesce\Test-VssWriterServiceLogon @parameters -ErrorAction Stop)
    }

    [void] Set() {
        $parameters = $this.RequestParameters()
        VmQuiesce\Set-VssWriterServiceLogon @parameters -GrantFolderAccess:$this.GrantFolderAccess -Confirm:$false -ErrorAction Stop
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

# A daily backup job: Invoke-VmQuiescedBackup for the VM targets, then Remove-VmBackup with the retention
# policy. Windows: a scheduled task under \VmQuiesce\. Linux: a systemd service + timer unit pair.
# No secret is ever part of the job: targets are QMP sockets and .vmx paths on this host.
[DscResource()]
class VmBackupSchedule {
    # Names the task or units (vmquiesce-backup-<Name>.service/.timer): letters, digits, '.', '_' and '-'.
    [DscProperty(Key)]
    [string] $Name

    # QMP sockets of QEMU VMs and .vmx paths of VMware VMs.
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

    [DscProperty()]
    [Ensure] $Ensure = [Ensure]::Present

    # Linux: where the units go (default /etc/systemd/system; systemctl runs only for that directory).
    [DscProperty()]
    [string] $UnitDirectory

    # The PowerShell the job runs (an absolute path); default: PowerShell 7 where it installs, else Windows PowerShell.
    [DscProperty()]
    [string] $PowerShellPath

    hidden static [string] $Marker = '# VmQuiesce schedule: '

    [VmBackupSchedule] Get() {
        $this.Validate()
        $current = [VmBackupSchedule]::new()
        $current.Name = $this.Name
        $current.UnitDirectory = $this.UnitDirectory
        $current.Ensure = [Ensure]::Absent
        $recorded = $this.ReadInstalledSettings()
        if ($recorded) {
            $current.Ensure = [Ensure]::Present
            $current.Vm = @($recorded.Vm)
            $current.Repository = $recorded.Repository
            $current.At = $recorded.At
            $current.Consistency = $recorded.Consistency
            $current.KeepLast = $recorded.KeepLast
            $current.KeepDaily = $recorded.KeepDaily
            $current.KeepWeekly = $recorded.KeepWeekly
            $current.KeepMonthly = $recorded.KeepMonthly
            $current.PowerShellPath = $recorded.PowerShellPath
        }
        return $current
    }

    [bool] Test() {
        $this.Validate()
        if ($this.Ensure -eq [Ensure]::Absent) {
            return -not $this.IsInstalled()
        }
        if ($this.IsWindows()) {
            $task = Get-ScheduledTask -TaskPath '\VmQuiesce\' -TaskName $this.Name -ErrorAction SilentlyContinue
            return $null -ne $task -and $task.Description -eq $this.DescriptionText() -and
                $task.Actions[0].Arguments -eq $this.PowerShellArguments() -and $task.State -ne 'Disabled'
        }
        foreach ($unit in $this.UnitFiles().GetEnumerator()) {
            if (-not (Test-Path -LiteralPath $unit.Key)) { return $false }
            if ([IO.File]::ReadAllText($unit.Key) -cne $unit.Value) { return $false }
        }
        return $true
    }

    [void] Set() {
        $this.Validate()
        if ($this.IsWindows()) {
            if ($this.Ensure -eq [Ensure]::Absent) {
                Unregister-ScheduledTask -TaskPath '\VmQuiesce\' -TaskName $this.Name -Confirm:$false -ErrorAction SilentlyContinue
                return
            }
            $action = New-ScheduledTaskAction -Execute $this.ResolvePowerShell() -Argument $this.PowerShellArguments()
            $trigger = New-ScheduledTaskTrigger -Daily -At ([datetime]::ParseExact($this.At, 'HH:mm', [cultureinfo]::InvariantCulture))
            $principal = New-ScheduledTaskPrincipal -UserId 'SYSTEM' -LogonType ServiceAccount -RunLevel Highest
            Register-ScheduledTask -TaskPath '\VmQuiesce\' -TaskName $this.Name -Action $action -Trigger $trigger -Principal $principal `
                -Description $this.DescriptionText() -Force -ErrorAction Stop | Out-Null
            return
        }

        $units = $this.UnitFiles()
        $manageSystemd = $this.ManagesLiveSystemd()
        $timer = "vmquiesce-backup-$($this.Name).timer"
        if ($this.Ensure -eq [Ensure]::Absent) {
            if ($manageSystemd) { & ([VmBackupSchedule]::Systemctl()) disable --now $timer 2>$null }
            foreach ($path in $units.Keys) { Remove-Item -LiteralPath $path -Force -ErrorAction SilentlyContinue }
            if ($manageSystemd) { & ([VmBackupSchedule]::Systemctl()) daemon-reload }
            return
        }
        New-Item -ItemType Directory -Path $this.UnitRoot() -Force | Out-Null
        foreach ($unit in $units.GetEnumerator()) {
            [IO.File]::WriteAllText($unit.Key, $unit.Value)
        }
        if ($manageSystemd) {
            & ([VmBackupSchedule]::Systemctl()) daemon-reload
            & ([VmBackupSchedule]::Systemctl()) enable --now $timer
            if ($LASTEXITCODE -ne 0) { throw "systemctl enable --now $timer failed with exit code $LASTEXITCODE." }
        }
    }

    # The PowerShell the job runs: backup of every target, then the retention policy. Stops at the first error,
    # so the job exits non-zero and the failure shows in the task history or the journal.
    [string] JobScript() {
        $targets = foreach ($target in $this.Vm) {
            if ($target -like '*.vmx') { "Get-BackupVm -VmxPath $([VmBackupSchedule]::Quote($target))" }
            else { "Get-BackupVm -QmpSocket $([VmBackupSchedule]::Quote($target))" }
        }
        $repositoryArgument = [VmBackupSchedule]::Quote($this.Repository)
        $script = "`$ErrorActionPreference = 'Stop'; Import-Module VmQuiesce; " +
            "@($($targets -join '; ')) | Invoke-VmQuiescedBackup -Repository $repositoryArgument -Consistency $($this.Consistency) -Confirm:`$false"
        $policy = @()
        foreach ($keep in 'KeepLast', 'KeepDaily', 'KeepWeekly', 'KeepMonthly') {
            if ($this.$keep -gt 0) { $policy += "-$keep $($this.$keep)" }
        }
        if ($policy) {
            $script += "; Remove-VmBackup -Repository $repositoryArgument $($policy -join ' ') -Confirm:`$false"
        }
        return $script
    }

    hidden [void] Validate() {
        if ($this.Name -notmatch '^[A-Za-z0-9_.-]+$') {
            throw "VmBackupSchedule: Name '$($this.Name)' may hold only letters, digits, '.', '_' and '-' (it names a scheduled task or systemd units)."
        }
        if ($this.Ensure -eq [Ensure]::Absent) { return }
        $time = [datetime]::MinValue
        if (-not [datetime]::TryParseExact($this.At, 'HH:mm', [cultureinfo]::InvariantCulture, [Globalization.DateTimeStyles]::None, [ref] $time)) {
            throw "VmBackupSchedule '$($this.Name)': At '$($this.At)' is not a time of day HH:mm (e.g. 03:00)."
        }
        if (-not $this.Vm -or -not $this.Repository) {
            throw "VmBackupSchedule '$($this.Name)': Vm (QMP sockets or .vmx paths) and Repository are required."
        }
        if ($this.Consistency -notin 'Application', 'FileSystem', 'Crash') {
            throw "VmBackupSchedule '$($this.Name)': Consistency '$($this.Consistency)' must be Application, FileSystem or Crash."
        }
        if ($this.PowerShellPath -and -not [IO.Path]::IsPathRooted($this.PowerShellPath)) {
            throw "VmBackupSchedule '$($this.Name)': PowerShellPath '$($this.PowerShellPath)' must be the absolute path of pwsh or powershell.exe."
        }
        foreach ($text in @($this.Vm) + $this.Repository) {
            if ($text -match '[\r\n\x00]') { throw "VmBackupSchedule '$($this.Name)': a path holds a line break or NUL: '$text'." }
        }
    }

    hidden [bool] IsWindows() {
        return [Environment]::OSVersion.Platform -eq [PlatformID]::Win32NT
    }

    hidden [bool] IsInstalled() {
        if ($this.IsWindows()) {
            return $null -ne (Get-ScheduledTask -TaskPath '\VmQuiesce\' -TaskName $this.Name -ErrorAction SilentlyContinue)
        }
        foreach ($path in $this.UnitFiles().Keys) {
            if (Test-Path -LiteralPath $path) { return $true }
        }
        return $false
    }

    # What Set recorded (as JSON in the task description or a comment in the service unit), for Get.
    hidden [object] ReadInstalledSettings() {
        $text = $null
        if ($this.IsWindows()) {
            $task = Get-ScheduledTask -TaskPath '\VmQuiesce\' -TaskName $this.Name -ErrorAction SilentlyContinue
            if ($task) { $text = $task.Description }
        }
        else {
            $service = Join-Path $this.UnitRoot() "vmquiesce-backup-$($this.Name).service"
            if (Test-Path -LiteralPath $service) {
                $line = Get-Content -LiteralPath $service | Where-Object { $_.StartsWith([VmBackupSchedule]::Marker) } | Select-Object -First 1
                if ($line) { $text = $line.Substring([VmBackupSchedule]::Marker.Length) }
            }
        }
        if (-not $text) { return $null }
        try { return ConvertFrom-Json -InputObject $text } catch { return $null }
    }

    hidden [string] DescriptionText() {
        return ([ordered]@{
            Vm = @($this.Vm); Repository = $this.Repository; At = $this.At; Consistency = $this.Consistency
            KeepLast = $this.KeepLast; KeepDaily = $this.KeepDaily; KeepWeekly = $this.KeepWeekly; KeepMonthly = $this.KeepMonthly
            PowerShellPath = $this.ResolvePowerShell()
        } | ConvertTo-Json -Compress)
    }

    hidden [string] PowerShellArguments() {
        return "-NoProfile -NonInteractive -Command `"$($this.JobScript().Replace('"', '\"'))`""
    }

    # The PowerShell the job runs as root or SYSTEM: from where it is installed, never looked up on PATH (which is
    # whatever environment ran the configuration, and may hold folders other users can write).
    hidden [string] ResolvePowerShell() {
        if ($this.PowerShellPath) { return $this.PowerShellPath }
        $candidates = if ($this.IsWindows()) {
            @((Join-Path $env:ProgramFiles 'PowerShell\7\pwsh.exe'), (Join-Path $env:SystemRoot 'System32\WindowsPowerShell\v1.0\powershell.exe'))
        }
        else { @('/usr/bin/pwsh', '/opt/microsoft/powershell/7/pwsh', '/usr/local/bin/pwsh') }
        foreach ($candidate in $candidates) {
            if (Test-Path -LiteralPath $candidate -PathType Leaf) { return $candidate }
        }
        return $candidates[0]
    }

    # systemctl by absolute path, like every program VmQuiesce runs.
    hidden static [string] Systemctl() {
        if (Test-Path -LiteralPath '/bin/systemctl' -PathType Leaf) { return '/bin/systemctl' }
        return '/usr/bin/systemctl'
    }

    hidden [string] UnitRoot() {
        if ($this.UnitDirectory) { return $this.UnitDirectory }
        return '/etc/systemd/system'
    }

    hidden [bool] ManagesLiveSystemd() {
        return (-not $this.UnitDirectory -or $this.UnitDirectory.TrimEnd('/') -eq '/etc/systemd/system') -and (Test-Path '/run/systemd/system')
    }

    # Path -> exact content of the service and timer units.
    hidden [System.Collections.Specialized.OrderedDictionary] UnitFiles() {
        $base = Join-Path $this.UnitRoot() "vmquiesce-backup-$($this.Name)"
        $exec = "$([VmBackupSchedule]::SystemdQuote($this.ResolvePowerShell())) -NoProfile -NonInteractive -Command $([VmBackupSchedule]::SystemdQuote($this.JobScript()))"
        $service = "[Unit]`nDescription=VmQuiesce backup $($this.Name)`n$([VmBackupSchedule]::Marker)$($this.DescriptionText())`n`n" +
            "[Service]`nType=oneshot`nExecStart=$exec`n"
        $timer = "[Unit]`nDescription=Daily VmQuiesce backup $($this.Name) at $($this.At)`n`n" +
            "[Timer]`nOnCalendar=*-*-* $($this.At):00`nPersistent=true`n`n[Install]`nWantedBy=timers.target`n"
        $files = [ordered]@{}
        $files["$base.service"] = $service
        $files["$base.timer"] = $timer
        return $files
    }

    # A single-quoted PowerShell string: PowerShell also ends one at U+2018-U+201B, so every quote character it
    # knows is doubled, not only the ASCII one.
    hidden static [string] Quote([string] $text) {
        return "'" + [System.Management.Automation.Language.CodeGeneration]::EscapeSingleQuotedStringContent($text) + "'"
    }

    # One ExecStart argument: double-quoted, with systemd's specifiers (%) and variables ($) kept literal.
    hidden static [string] SystemdQuote([string] $text) {
        return '"' + $text.Replace('\', '\\').Replace('"', '\"').Replace('%', '%%').Replace('$', '$$') + '"'
    }
}
