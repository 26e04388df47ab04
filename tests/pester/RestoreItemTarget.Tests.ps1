# Restore-VmBackupItem asks about each item before it mounts the point: the confirmation must name the file the copy
# writes, and an item no point can hold is refused then, with -WhatIf too. A point of a plain-file VM needs no mount.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force

    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmquiesce-itemtarget-$([Guid]::NewGuid().ToString('N').Substring(0, 8))"
    $folder = New-Item -ItemType Directory -Path (Join-Path $root 'vm') -Force
    $disk = Join-Path $folder 'disk.img'
    [IO.File]::WriteAllBytes($disk, [byte[]] (1..255))
    $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('items 01', @($disk))
    $script:point = $vm | Invoke-VmQuiescedBackup -Repository (Join-Path $root 'repo') -Consistency Crash -Confirm:$false
    $script:destination = Join-Path $root 'items'
}

AfterAll {
    Remove-Item -LiteralPath $root -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Restore-VmBackupItem -WhatIf' {
    It 'names the file the copy writes for an item given with backslashes' {
        $transcript = Join-Path $root "whatif-$(New-Guid).txt"
        Start-Transcript -LiteralPath $transcript | Out-Null
        try {
            $point | Restore-VmBackupItem -Path 'disk0\etc\hosts' -Destination $destination -WhatIf -ErrorVariable problems
        }
        finally { Stop-Transcript | Out-Null }
        $problems | Should -BeNullOrEmpty
        $said = Get-Content -LiteralPath $transcript -Raw
        $said | Should -Match ([regex]::Escape("on target `"$(Join-Path $destination 'hosts')`""))
    }

    It "refuses an item that climbs out of the point ('..') before asking" {
        $point | Restore-VmBackupItem -Path 'disk0/../../etc/shadow' -Destination $destination -WhatIf -ErrorVariable problems -ErrorAction SilentlyContinue
        $problems.FullyQualifiedErrorId | Should -Be 'ItemPathInvalid,VmQuiesce.Commands.RestoreVmBackupItemCommand'
        Test-Path $destination | Should -BeFalse
    }
}

Describe 'Restore-VmBackupItem -Owner and -Group' {
    It 'refuses a user or group this host does not know, by name, before anything is mounted or written' {
        if (-not $IsLinux) { Set-ItResult -Skipped -Because 'host accounts are looked up on Linux, where items are restored'; return }
        $point | Restore-VmBackupItem -Path 'disk0/etc/hosts' -Destination $destination -Owner 'no-such-user-vmq' -Confirm:$false -ErrorVariable problems -ErrorAction SilentlyContinue
        $point | Restore-VmBackupItem -Path 'disk0/etc/hosts' -Destination $destination -Owner root -Group 'no-such-group-vmq' -Confirm:$false -ErrorVariable +problems -ErrorAction SilentlyContinue
        $problems.FullyQualifiedErrorId | Should -Be @('ItemOwnerNotFound,VmQuiesce.Commands.RestoreVmBackupItemCommand', 'ItemGroupNotFound,VmQuiesce.Commands.RestoreVmBackupItemCommand')
        $problems[0].Exception.Message | Should -Match "'no-such-user-vmq' \(-Owner\)"
        Test-Path $destination | Should -BeFalse
        Get-VmBackupMount | Should -BeNullOrEmpty
    }
}
