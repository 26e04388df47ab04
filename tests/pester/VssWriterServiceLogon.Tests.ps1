# End-to-end tests of Get/Set/Test-VssWriterServiceLogon on Linux against real throwaway users,
# real folders and real unit files and drop-ins in a temporary unit directory (-UnitDirectory).
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force

    $script:skipReason = if (-not $IsLinux) { 'these tests drive the systemd backend and run on Linux only' }
    elseif ((& id -u) -ne '0') { 'creating throwaway users (useradd) needs root' }
    elseif (-not (Get-Command useradd -ErrorAction SilentlyContinue)) { 'useradd is not installed' }
    if ($skipReason) { return }

    $suffix = [Guid]::NewGuid().ToString('N').Substring(0, 8)
    $script:admin = "vqadm$suffix"     # member of sudo: an "administrator" on Linux
    $script:plain = "vqusr$suffix"     # not an administrator
    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmquiesce-logon-$suffix"
    $script:units = Join-Path $root 'units'
    $script:state = Join-Path $root 'state'
    $script:vmFolder = Join-Path $root 'vms/web01'
    New-Item -ItemType Directory -Path $units, $state, $vmFolder -Force | Out-Null
    & chmod 755 $root (Join-Path $root 'vms')
    & chmod 700 $vmFolder   # root only: the service account cannot modify it yet

    $adminGroup = if (Get-Content /etc/group | Where-Object { $_ -like 'sudo:*' }) { 'sudo' } else { 'wheel' }
    if (-not (Get-Content /etc/group | Where-Object { $_ -like "${adminGroup}:*" })) { & groupadd $adminGroup }
    & useradd --no-create-home --shell /usr/sbin/nologin --groups $adminGroup $admin
    & useradd --no-create-home --shell /usr/sbin/nologin $plain
    if ($LASTEXITCODE -ne 0) { throw "useradd $plain failed" }

    $script:unit = 'vq-writer.service'
    Set-Content -Path (Join-Path $units $unit) -Value "[Unit]`nDescription=Throwaway unit for VmQuiesce tests`n`n[Service]`nExecStart=/bin/true`n"
    $script:dropIn = Join-Path $units "$unit.d/vmquiesce-logon.conf"

    # A credential for Linux: systemd uses no password, so an empty one is the normal case.
    function script:New-Cred([string] $User, [string] $Password) {
        $secure = if ($Password) { ConvertTo-SecureString $Password -AsPlainText -Force } else { [securestring]::new() }
        [pscredential]::new($User, $secure)
    }
    $script:common = @{ ServiceName = $unit; UnitDirectory = $units; StateDirectory = $state }
}

AfterAll {
    if ($skipReason) { return }
    foreach ($user in $admin, $plain) {
        if ($user -and (& getent passwd $user)) { & userdel $user }
    }
    if ($root -and (Test-Path $root)) { Remove-Item $root -Recurse -Force }
}

Describe 'Get-VssWriterServiceLogon (systemd)' {
    It 'reports the unit, its account (root when no User=), and folder access' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $info = Get-VssWriterServiceLogon -ServiceName $unit -UnitDirectory $units -VmFolder $vmFolder
        $info | Should -BeOfType ([VmQuiesce.Core.Logon.ServiceLogonInfo])
        $info.ServiceName | Should -Be $unit
        $info.DisplayName | Should -Be 'Throwaway unit for VmQuiesce tests'
        $info.Account | Should -Be 'root'
        $info.LogonRight | Should -Be 'NotApplicable'
        $info.IsAdministrator | Should -BeTrue
        $info.ConfigurationPath | Should -Be $dropIn
        $info.FolderAccess.Path | Should -Be $vmFolder
        $info.FolderAccess.CanModify | Should -BeTrue  # root
    }

    It 'finds the unit by the description "VMware VSS Writer Service" when no name is given' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $other = Join-Path $root 'other-units'
        New-Item -ItemType Directory -Path $other -Force | Out-Null
        Set-Content -Path (Join-Path $other 'vmware-vss.service') -Value "[Unit]`nDescription=VMware VSS Writer Service`n[Service]`nUser=$admin`nExecStart=/bin/true`n"
        $info = Get-VssWriterServiceLogon -UnitDirectory $other
        $info.ServiceName | Should -Be 'vmware-vss.service'
        $info.Account | Should -Be $admin
    }

    It 'says which folder does not exist, and still reports the others' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $missing = Join-Path $root 'no-such-folder'
        $info = Get-VssWriterServiceLogon -ServiceName $unit -UnitDirectory $units -VmFolder $missing, $vmFolder -ErrorVariable problems -ErrorAction SilentlyContinue
        $problems.Count | Should -Be 1
        $problems[0].FullyQualifiedErrorId | Should -BeLike 'FolderNotFound,*'
        $problems[0].TargetObject | Should -Be $missing
        $problems[0].Exception.Message | Should -BeLike "*$missing*"
        $info.FolderAccess.Path | Should -Be $vmFolder
    }
}

Describe 'Set-VssWriterServiceLogon and Test-VssWriterServiceLogon (systemd)' {
    It 'changes nothing with -WhatIf' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $modeBefore = (& ls -ld $vmFolder) -replace '\s+\d+\s.*$', ''
        Set-VssWriterServiceLogon -Credential (New-Cred $admin) @common -VmFolder $vmFolder -GrantFolderAccess -WhatIf
        Test-Path $dropIn | Should -BeFalse
        ((& ls -ld $vmFolder) -replace '\s+\d+\s.*$', '') | Should -Be $modeBefore
        (Get-VssWriterServiceLogon -ServiceName $unit -UnitDirectory $units).Account | Should -Be 'root'
        Test-VssWriterServiceLogon -Credential (New-Cred $admin) @common -VmFolder $vmFolder | Should -BeFalse
    }

    It 'refuses a folder the account cannot modify, names it, and changes nothing' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        { Set-VssWriterServiceLogon -Credential (New-Cred $admin) @common -VmFolder $vmFolder -ErrorAction Stop } |
            Should -Throw -ErrorId 'FolderAccessDenied,VmQuiesce.Commands.SetVssWriterServiceLogonCommand' -ExpectedMessage "*$vmFolder*"
        Test-Path $dropIn | Should -BeFalse
    }

    It 'asks -Confirm for the change its worker thread makes on the pipeline thread, and does what the answer says' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $confirmUnit = 'vq-confirm.service'
        Set-Content -Path (Join-Path $units $confirmUnit) -Value "[Unit]`nDescription=Throwaway unit for the -Confirm test`n`n[Service]`nExecStart=/bin/true`n"
        $confirmDropIn = Join-Path $units "$confirmUnit.d/vmquiesce-logon.conf"
        $set = "param(`$Credential) Import-Module '$env:VMQUIESCE_MODULE_PATH'; Set-VssWriterServiceLogon -Credential `$Credential -ServiceName '$confirmUnit' -UnitDirectory '$units' -StateDirectory '$state' -Confirm -WarningAction SilentlyContinue"
        # The console's answers: No (the third choice), then Yes (the first).
        foreach ($case in @{ Answer = 2; Changed = $false }, @{ Answer = 0; Changed = $true }) {
            $console = New-RecordingPowerShell -Answer $case.Answer
            try {
                $null = $console.PowerShell.AddScript($set).AddArgument((New-Cred $admin)).Invoke()

                @($console.PowerShell.Streams.Error) | Should -BeNullOrEmpty
                $console.Host.Prompts | Should -BeLike "*Set the logon account to $admin*$confirmUnit*"
                Test-Path $confirmDropIn | Should -Be $case.Changed
            }
            finally {
                $console.PowerShell.Runspace.Dispose()
                $console.PowerShell.Dispose()
            }
        }
        Get-Content $confirmDropIn | Should -Contain "User=$admin"
    }

    It 'sets User= and Group= in an atomic drop-in, grants folder access, then Test is true' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $info = Set-VssWriterServiceLogon -Credential (New-Cred $admin) @common -VmFolder $vmFolder -GrantFolderAccess -Group $plain -PassThru -WarningVariable warnings -Confirm:$false
        Get-Content $dropIn | Should -Contain "User=$admin"
        Get-Content $dropIn | Should -Contain "Group=$plain"
        Get-ChildItem (Split-Path $dropIn) -Force | ForEach-Object Name | Should -Be 'vmquiesce-logon.conf'  # no temp file left behind
        $info.Account | Should -Be $admin
        $info.Group | Should -Be $plain
        $info.FolderAccess.CanModify | Should -BeTrue
        # systemd does not run here (or does not read a temp unit directory): the change waits for the next start.
        $warnings | Should -BeLike '*next start*'
        Test-VssWriterServiceLogon -Credential (New-Cred $admin) @common -VmFolder $vmFolder -Group $plain | Should -BeTrue
        # The ACL entry really lets the user in: the kernel agrees with the module.
        & runuser -u $admin -- touch (Join-Path $vmFolder 'disk.vmdk')
        $LASTEXITCODE | Should -Be 0
    }

    It 'is idempotent: a second Set with the same account makes no change' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $before = (Get-Item $dropIn).LastWriteTimeUtc
        $verbose = Set-VssWriterServiceLogon -Credential (New-Cred $admin) @common -VmFolder $vmFolder -Group $plain -Verbose 4>&1
        ($verbose -join "`n") | Should -BeLike '*already logs on as*'
        (Get-Item $dropIn).LastWriteTimeUtc | Should -Be $before
    }

    It 'reports false, with the reason, after the folder loses access' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        & chmod 700 $vmFolder   # with an ACL, chmod sets the mask: the named entry is masked to ---
        Test-VssWriterServiceLogon -Credential (New-Cred $admin) @common -VmFolder $vmFolder | Should -BeFalse
        $detail = Test-VssWriterServiceLogon -Credential (New-Cred $admin) @common -VmFolder $vmFolder -Detailed
        $detail.InDesiredState | Should -BeFalse
        ($detail.Checks | Where-Object Name -eq 'Folder').Passed | Should -BeFalse
        ($detail.Checks | Where-Object Name -eq 'Account').Passed | Should -BeTrue

        $owned = Join-Path $root 'vms/owned'
        New-Item -ItemType Directory -Path $owned -Force | Out-Null
        & chown "${admin}:" $owned
        & chmod 700 $owned
        Test-VssWriterServiceLogon -Credential (New-Cred $admin) @common -VmFolder $owned | Should -BeTrue
        & chown root:root $owned
        Test-VssWriterServiceLogon -Credential (New-Cred $admin) @common -VmFolder $owned | Should -BeFalse
    }

    It 'reports false for another account than the one configured' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        Test-VssWriterServiceLogon -Credential (New-Cred 'root') @common | Should -BeFalse
    }

    It 'fails clearly for <Case>, before changing anything' -TestCases @(
        @{ Case = 'an unknown user'; User = 'vq-no-such-user'; Service = $null; Folder = $null; ErrorId = 'AccountNotFound'; Mentions = 'vq-no-such-user' }
        @{ Case = 'an unknown unit'; User = $null; Service = 'vq-no-such-unit'; Folder = $null; ErrorId = 'ServiceNotFound'; Mentions = 'vq-no-such-unit.service' }
        @{ Case = 'a folder that does not exist'; User = $null; Service = $null; Folder = 'missing'; ErrorId = 'FolderNotFound'; Mentions = 'missing' }
        @{ Case = 'an account that is not an administrator'; User = 'plain'; Service = $null; Folder = $null; ErrorId = 'AccountNotAdministrator'; Mentions = 'administrator' }
    ) {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $user = if ($User -eq 'plain') { $plain } elseif ($User) { $User } else { 'root' }
        $parameters = @{ Credential = (New-Cred $user); UnitDirectory = $units; StateDirectory = $state; ServiceName = $unit }
        if ($Service) { $parameters.ServiceName = $Service }
        if ($Folder) { $parameters.VmFolder = Join-Path $root $Folder }
        $dropInBefore = Get-Content -Raw $dropIn
        { Set-VssWriterServiceLogon @parameters -ErrorAction Stop } | Should -Throw -ErrorId "$ErrorId,VmQuiesce.Commands.SetVssWriterServiceLogonCommand" -ExpectedMessage "*$Mentions*"
        Get-Content -Raw $dropIn | Should -Be $dropInBefore
    }

    It 'refuses a group that does not exist' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        { Set-VssWriterServiceLogon -Credential (New-Cred $admin) @common -Group 'vq-no-such-group' -ErrorAction Stop } |
            Should -Throw -ErrorId 'GroupNotFound,VmQuiesce.Commands.SetVssWriterServiceLogonCommand' -ExpectedMessage '*vq-no-such-group*'
    }

    It 'formats its output as a table and a list' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $info = Get-VssWriterServiceLogon -ServiceName $unit -UnitDirectory $units -VmFolder $vmFolder
        $table = $info | Format-Table | Out-String -Width 300
        $table | Should -BeLike '*ServiceName*Account*State*StartMode*LogonRight*IsAdministrator*FolderAccess*'
        $table | Should -BeLike "*$unit*$admin*"
        ($info | Format-List | Out-String -Width 300) | Should -BeLike "*FolderAccess*$vmFolder*"
        $detail = Test-VssWriterServiceLogon -Credential (New-Cred $admin) @common -VmFolder $vmFolder -Detailed
        ($detail | Format-List | Out-String -Width 300) | Should -BeLike '*Checks*Account*'
        ($detail | Format-Table | Out-String -Width 300) | Should -BeLike '*InDesiredState*'
    }

    It 'warns that a password is not used on Linux and never shows it in any stream, file or error' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $secret = 'Pw-' + [Guid]::NewGuid().ToString('N')
        $Error.Clear()
        $everything = & {
            $DebugPreference = 'Continue'   # -Debug would make ShouldProcess prompt
            Set-VssWriterServiceLogon -Credential (New-Cred $admin $secret) @common -VmFolder $vmFolder -GrantFolderAccess -Restart -PassThru -Verbose -Confirm:$false
            Test-VssWriterServiceLogon -Credential (New-Cred $admin $secret) @common -VmFolder $vmFolder -Detailed -Verbose
            Set-VssWriterServiceLogon -Credential (New-Cred 'vq-no-such-user' $secret) @common -ErrorAction Continue
        } *>&1 | Out-String -Width 500
        $everything | Should -BeLike '*password*ignored*'
        $everything | Should -Not -BeLike "*$secret*"
        ($Error | Out-String -Width 500) | Should -Not -BeLike "*$secret*"
        ($Error | ForEach-Object { $_.Exception.ToString() }) -join "`n" | Should -Not -BeLike "*$secret*"
        Get-ChildItem $root -Recurse -File | Where-Object { (Get-Content -Raw $_.FullName) -like "*$secret*" } | Should -BeNullOrEmpty
        @(Get-ChildItem $state -Force).Count | Should -Be 0  # no verifier on Linux: there is no password to verify
    }
}

Describe 'Help for the service logon cmdlets' {
    It 'documents every parameter of <Name>, with at least two examples and the error ids' -TestCases @(
        @{ Name = 'Get-VssWriterServiceLogon' }
        @{ Name = 'Set-VssWriterServiceLogon' }
        @{ Name = 'Test-VssWriterServiceLogon' }
    ) {
        $page = Get-Content -Raw (Join-Path $PSScriptRoot "../../en-US/$Name.md")
        $common = [System.Management.Automation.PSCmdlet]::CommonParameters + [System.Management.Automation.PSCmdlet]::OptionalCommonParameters
        $parameters = (Get-Command $Name).Parameters.Keys | Where-Object { $_ -notin $common -or $_ -in 'WhatIf', 'Confirm' }
        foreach ($parameter in $parameters) {
            $page | Should -Match "(?m)^### -$parameter\r?$" -Because "-$parameter must be documented"
        }
        ([regex]::Matches($page, '(?m)^### Example \d')).Count | Should -BeGreaterOrEqual 2
        $page | Should -Match '(?s)## NOTES.*`ServiceNotFound`'
    }
}
