# Windows end-to-end test of the service logon cmdlets: a throwaway local user and a throwaway
# service (sc.exe create with a harmless binary), removed afterwards. Runs in the Windows CI job.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force

    $script:skipReason = if (-not ($PSVersionTable.PSEdition -eq 'Desktop' -or $IsWindows)) { 'these tests drive the Windows Service Control Manager and LSA and run on Windows only' }
    elseif (-not ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) { 'creating users and services needs an elevated session' }
    if ($skipReason) { return }

    $suffix = [Guid]::NewGuid().ToString('N').Substring(0, 8)
    $script:userName = "vq$suffix"
    $script:serviceName = "VmQuiesceTest$suffix"
    $script:displayName = "VmQuiesce test $suffix"
    $script:state = Join-Path $TestDrive 'state'
    $script:vmFolder = New-Item -ItemType Directory -Path (Join-Path $TestDrive 'vms\web01') -Force | ForEach-Object FullName

    function script:New-Password { 'Vq1!' + [Guid]::NewGuid().ToString('N') }
    function script:New-Cred([string] $Password) { [pscredential]::new(".\$userName", (ConvertTo-SecureString $Password -AsPlainText -Force)) }

    # ADSI keeps the password off every command line.
    $script:computer = [ADSI]"WinNT://$env:COMPUTERNAME,computer"
    $script:password = New-Password
    $user = $computer.Create('User', $userName)
    $user.SetPassword($password)
    $user.SetInfo()
    $administrators = ([Security.Principal.SecurityIdentifier] 'S-1-5-32-544').Translate([Security.Principal.NTAccount]).Value.Split('\')[1]
    ([ADSI]"WinNT://$env:COMPUTERNAME/$administrators,group").Add("WinNT://$env:COMPUTERNAME/$userName,user")

    # cmd.exe is harmless and is not a service: the SCM accepts the configuration, and a start fails.
    & sc.exe create $serviceName binPath= "$env:SystemRoot\System32\cmd.exe /c exit 0" start= demand DisplayName= $displayName | Out-Null
    if ($LASTEXITCODE -ne 0) { throw "sc.exe create $serviceName failed with exit code $LASTEXITCODE" }
    $script:common = @{ ServiceName = $serviceName; StateDirectory = $state }
}

AfterAll {
    if ($skipReason) { return }
    if ($serviceName) { & sc.exe delete $serviceName | Out-Null }
    if ($userName) { try { $computer.Delete('User', $userName) } catch { Write-Warning "Could not remove the test user ${userName}: $_" } }
}

Describe 'Service logon on Windows' {
    It 'reads the throwaway service, which runs as LocalSystem' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $info = Get-VssWriterServiceLogon -ServiceName $serviceName -VmFolder $vmFolder
        $info.Account | Should -Be 'LocalSystem'
        $info.State | Should -Be 'Stopped'
        $info.StartMode | Should -Be 'Manual'
        $info.IsAdministrator | Should -BeTrue
        $info.FolderAccess.CanModify | Should -BeTrue
        (Get-VssWriterServiceLogon -ServiceName $displayName).ServiceName | Should -Be $serviceName
    }

    It 'refuses a wrong password and changes nothing' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        { Set-VssWriterServiceLogon -Credential (New-Cred 'not-the-password') @common -ErrorAction Stop } |
            Should -Throw -ErrorId 'PasswordIncorrect,VmQuiesce.Commands.SetVssWriterServiceLogonCommand'
        (Get-VssWriterServiceLogon -ServiceName $serviceName).Account | Should -Be 'LocalSystem'
    }

    It 'changes nothing with -WhatIf' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        Set-VssWriterServiceLogon -Credential (New-Cred $password) @common -WhatIf
        (Get-VssWriterServiceLogon -ServiceName $serviceName).Account | Should -Be 'LocalSystem'
        Test-Path $state | Should -BeFalse
    }

    It 'sets the account, grants the logon right, and Test is true' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $info = Set-VssWriterServiceLogon -Credential (New-Cred $password) @common -VmFolder $vmFolder -GrantFolderAccess -PassThru -Confirm:$false
        $info.Account | Should -Be ".\$userName"
        $info.LogonRight | Should -Be 'Granted'
        $info.FolderAccess.CanModify | Should -BeTrue
        Test-VssWriterServiceLogon -Credential (New-Cred $password) @common -VmFolder $vmFolder | Should -BeTrue
    }

    It 'notices a rotated password, and Set with the new one makes Test true again' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        $rotated = New-Password
        ([ADSI]"WinNT://$env:COMPUTERNAME/$userName,user").SetPassword($rotated)
        $result = Test-VssWriterServiceLogon -Credential (New-Cred $rotated) @common -Detailed
        $result.InDesiredState | Should -BeFalse
        ($result.Checks | Where-Object { -not $_.Passed }).Name | Should -Be 'Password'
        Set-VssWriterServiceLogon -Credential (New-Cred $rotated) @common -Confirm:$false
        Test-VssWriterServiceLogon -Credential (New-Cred $rotated) @common | Should -BeTrue
        $script:password = $rotated
    }

    It 'puts the previous account back when the restart fails, and says so' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        & sc.exe config $serviceName obj= LocalSystem | Out-Null
        $everything = Set-VssWriterServiceLogon -Credential (New-Cred $password) @common -Restart -Confirm:$false -ErrorVariable failure -ErrorAction SilentlyContinue -Verbose *>&1 | Out-String -Width 500
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'ServiceRestartFailed,*'
        $failure[0].Exception.Message | Should -BeLike "*'LocalSystem' was put back*"
        (Get-VssWriterServiceLogon -ServiceName $serviceName).Account | Should -Be 'LocalSystem'
        $everything + ($failure | Out-String -Width 500) | Should -Not -BeLike "*$password*"
    }

    It 'removes the Modify entry it gave when the restart fails, and leaves the entry the account held before' {
        if ($skipReason) { Set-ItResult -Skipped -Because $skipReason; return }
        & sc.exe config $serviceName obj= LocalSystem | Out-Null
        $closed = New-Item -ItemType Directory -Path (Join-Path $TestDrive 'vms\closed') -Force | ForEach-Object FullName
        $me = [Security.Principal.WindowsIdentity]::GetCurrent().User.Value
        $userSid = ([Security.Principal.NTAccount] "$env:COMPUTERNAME\$userName").Translate([Security.Principal.SecurityIdentifier]).Value
        # SYSTEM and the account running the test only, and Read for the throwaway user: it (an administrator) cannot modify it.
        $acl = Get-Acl $closed
        $acl.SetSecurityDescriptorSddlForm("D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;$me)(A;OICI;0x1200a9;;;$userSid)", 'Access')
        Set-Acl -Path $closed -AclObject $acl
        $before = (Get-Acl $closed).GetSecurityDescriptorSddlForm('Access')

        Set-VssWriterServiceLogon -Credential (New-Cred $password) @common -VmFolder $closed -GrantFolderAccess -Restart -Confirm:$false -ErrorVariable failure -ErrorAction SilentlyContinue
        $failure[0].FullyQualifiedErrorId | Should -BeLike 'ServiceRestartFailed,*'
        $failure[0].Exception.Message | Should -BeLike "*was removed again from $closed*"
        (Get-Acl $closed).GetSecurityDescriptorSddlForm('Access') | Should -Be $before
        (Get-VssWriterServiceLogon -ServiceName $serviceName).Account | Should -Be 'LocalSystem'
    }
}
