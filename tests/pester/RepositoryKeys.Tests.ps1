# Issue 18: encrypted repositories through the cmdlets. New repositories are encrypted; keys are created,
# exported, imported, added and removed; a planted or foreign manifest restores nothing; an unencrypted
# (pre-key) repository still restores and warns on every backup; the passphrase appears nowhere.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force
    if (-not $env:VMQUIESCE_KEY_FOLDER) { throw 'VMQUIESCE_KEY_FOLDER is not set: run the tests through build.ps1 -Task Test.' }

    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmq-pester-keys-$([guid]::NewGuid().ToString('N'))"
    New-Item -ItemType Directory -Path $root | Out-Null
    $script:passphraseText = 'pester-passphrase-' + [guid]::NewGuid().ToString('N')
    $script:passphrase = ConvertTo-SecureString $passphraseText -AsPlainText -Force

    function New-TestDisk {
        param([string] $Name, [int] $Seed)
        $bytes = [byte[]]::new(200KB)
        [Random]::new($Seed).NextBytes($bytes)
        $path = Join-Path $root $Name
        [IO.File]::WriteAllBytes($path, $bytes)
        $path
    }

    function Get-Sha256 { param([string] $Path) (Get-FileHash -LiteralPath $Path -Algorithm SHA256).Hash.ToLowerInvariant() }
}

AfterAll {
    Remove-Item -LiteralPath $root -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'New-VmBackupRepository and Get-VmBackupRepository' {
    It 'makes an encrypted repository with a host key file and a passphrase copy, and describes it' {
        $path = Join-Path $root 'new'
        $made = New-VmBackupRepository -Path $path -Passphrase $passphrase -ChunkSize 64KB -Verbose 4>&1 | Where-Object { $_ -isnot [Management.Automation.VerboseRecord] }
        $disk = New-TestDisk 'new.img' 1
        $null = Invoke-VmQuiescedBackup -Vm ([VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('newvm', @($disk))) -Repository $path -Consistency Crash -WarningVariable warnings
        $info = Get-VmBackupRepository $path

        $made | Should -BeOfType ([VmQuiesce.Core.Repository.RepositorySummary])
        $info.IsEncrypted | Should -BeTrue
        $aesInstructions = [Runtime.Intrinsics.X86.Aes]::IsSupported -or [Runtime.Intrinsics.Arm.Aes]::IsSupported
        $info.Encryption | Should -Be $(if ($aesInstructions) { 'AES-256-GCM' } else { 'ChaCha20-Poly1305' })
        $info.FormatVersion | Should -Be 2
        $info.KeyId | Should -Match '^[0-9a-f]{16}$'
        $info.KeyAvailable | Should -BeTrue
        $info.HostKeyFile | Should -Be (Join-Path $env:VMQUIESCE_KEY_FOLDER "$($info.RepositoryId).key")
        @($info.PassphraseSlots).Count | Should -Be 1
        $info.RestorePoints | Should -Be 1
        $info.ChunkCount | Should -Be 4
        $info.DedupRatio | Should -BeGreaterThan 0
        $warnings | Should -BeNullOrEmpty
        ($made, $info | Out-String) + ($info | Format-List * | Out-String) | Should -Not -Match $passphraseText
    }

    It 'makes a ChaCha20-Poly1305 repository with -Cipher (tab-completed), which backs up and restores' {
        $path = Join-Path $root 'chacha'
        $line = 'New-VmBackupRepository -Cipher Ch'
        (TabExpansion2 -inputScript $line -cursorColumn $line.Length).CompletionMatches.CompletionText | Should -Be 'ChaCha20Poly1305'
        $made = New-VmBackupRepository -Path $path -Cipher ChaCha20Poly1305 -ChunkSize 64KB
        $disk = New-TestDisk 'chacha.img' 11
        $null = Invoke-VmQuiescedBackup -Vm ([VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('chachavm', @($disk))) -Repository $path -Consistency Crash
        $restored = Join-Path $root 'chacha-restored'
        $null = Get-VmBackup -Repository $path | Restore-VmSnapshot -Destination $restored -Confirm:$false

        $made.Encryption | Should -Be 'ChaCha20-Poly1305'
        (Get-VmBackupRepository $path).Encryption | Should -Be 'ChaCha20-Poly1305'
        Get-Sha256 (Join-Path $restored 'chacha.img') | Should -Be (Get-Sha256 $disk)
    }

    It 'refuses a folder that is not empty with RepositoryFolderNotEmpty, and -WhatIf makes nothing' {
        $busy = Join-Path $root 'busy'
        New-Item -ItemType Directory -Path $busy | Out-Null
        Set-Content (Join-Path $busy 'x') 'x'
        $whatIf = Join-Path $root 'whatif'

        { New-VmBackupRepository -Path $busy -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryFolderNotEmpty,VmQuiesce.Commands.NewVmBackupRepositoryCommand'
        New-VmBackupRepository -Path $whatIf -WhatIf
        Test-Path $whatIf | Should -BeFalse
    }

    It 'refuses a short passphrase with PassphraseTooShort before anything is made, so the same command with a good one then works' {
        $path = Join-Path $root 'short-passphrase'
        $keysBefore = @(Get-ChildItem $env:VMQUIESCE_KEY_FOLDER -File).Name

        { New-VmBackupRepository -Path $path -Passphrase (ConvertTo-SecureString 'seven77' -AsPlainText -Force) -ErrorAction SilentlyContinue } |
            Should -Throw -ErrorId 'PassphraseTooShort,VmQuiesce.Commands.NewVmBackupRepositoryCommand'
        Test-Path $path | Should -BeFalse
        @(Get-ChildItem $env:VMQUIESCE_KEY_FOLDER -File).Name | Should -Be $keysBefore
        @((New-VmBackupRepository -Path $path -Passphrase $passphrase).PassphraseSlots).Count | Should -Be 1
    }
}

Describe 'Backups into encrypted and unencrypted repositories' {
    It 'a new repository made by a backup is encrypted; one made before keys restores and warns on every backup' {
        $disk = New-TestDisk 'legacy.img' 2
        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('legacy', @($disk))
        $encrypted = Join-Path $root 'by-backup'
        $legacy = Join-Path $root 'legacy'
        $null = [VmQuiesce.Core.Repository.BackupRepository]::OpenOrCreate($legacy)

        $null = Invoke-VmQuiescedBackup -Vm $vm -Repository $encrypted -Consistency Crash -WarningVariable encryptedWarnings
        $point = Invoke-VmQuiescedBackup -Vm $vm -Repository $legacy -Consistency Crash -WarningVariable legacyWarnings -WarningAction SilentlyContinue
        $restored = Join-Path $root 'legacy-restored'
        $null = Restore-VmSnapshot -Repository $legacy -Id $point.Id -Destination $restored

        (Get-VmBackupRepository $encrypted).IsEncrypted | Should -BeTrue
        $encryptedWarnings | Should -BeNullOrEmpty
        (Get-VmBackupRepository $legacy).Encryption | Should -Be 'None'
        "$legacyWarnings" | Should -Match 'not encrypted'
        Get-Sha256 (Join-Path $restored 'legacy.img') | Should -Be (Get-Sha256 $disk)
    }
}

Describe 'Tampered restore points restore nothing' {
    BeforeAll {
        $script:repo = Join-Path $root 'tamper'
        $script:target = Join-Path $root 'victim.img'
        $disk = New-TestDisk 'tamper.img' 3
        $script:good = Invoke-VmQuiescedBackup -Vm ([VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('tamper', @($disk))) -Repository $repo -Consistency Crash
        # A plaintext restore point, as anyone who can write the folder could plant one: its file goes to $target.
        $plain = Join-Path $root 'plain-source'
        $null = [VmQuiesce.Core.Repository.BackupRepository]::OpenOrCreate($plain)
        $victim = New-TestDisk 'victim-source.img' 4
        $script:planted = Invoke-VmQuiescedBackup -Vm ([VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('planted', @($victim))) -Repository $plain -Consistency Crash -WarningAction SilentlyContinue
        $manifest = Get-Content -Raw (Join-Path $plain "points/$($planted.Id).json")
        Set-Content -LiteralPath (Join-Path $repo "points/$($planted.Id).json") -Value $manifest.Replace($victim, $target) -NoNewline
    }

    It 'a planted plaintext manifest is RestorePointNotAuthentic and writes nothing' {
        { Restore-VmSnapshot -Repository $repo -Id $planted.Id -Force -ErrorAction Stop } | Should -Throw -ErrorId 'RestorePointNotAuthentic,VmQuiesce.Commands.RestoreVmSnapshotCommand'
        Test-Path $target | Should -BeFalse
        Get-VmBackup $repo -ErrorVariable listed -ErrorAction SilentlyContinue | ForEach-Object Id | Should -Be $good.Id
        $listed[0].FullyQualifiedErrorId | Should -BeLike 'RestorePointNotAuthentic,*'
    }

    It 'a flipped byte in a chunk is RestorePointNotAuthentic in Test-VmBackup' {
        $chunk = Get-ChildItem (Join-Path $repo 'chunks') -Recurse -File | Select-Object -First 1
        $bytes = [IO.File]::ReadAllBytes($chunk.FullName)
        $bytes[100] = $bytes[100] -bxor 1
        [IO.File]::WriteAllBytes($chunk.FullName, $bytes)

        $result = Test-VmBackup -Repository $repo -Id $good.Id -ErrorVariable problems -ErrorAction SilentlyContinue
        $result.IsValid | Should -BeFalse
        $result.Problems[0].Problem | Should -Be 'NotAuthentic'
        $problems[0].FullyQualifiedErrorId | Should -BeLike 'RestorePointNotAuthentic,*'
    }
}

Describe 'Key management' {
    BeforeAll {
        $script:repo = Join-Path $root 'keys'
        $disk = New-TestDisk 'keys.img' 5
        $script:point = Invoke-VmQuiescedBackup -Vm ([VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('keys', @($disk))) -Repository $repo -Consistency Crash
        $script:sha = Get-Sha256 $disk
    }

    It 'adds a passphrase copy, exports the key, and a new host recovers with either' {
        $slot = (Add-VmBackupRepositoryKey -Repository $repo -Passphrase $passphrase).Slot
        $exported = Join-Path $root 'exported/keys.key'
        $file = Export-VmBackupRepositoryKey -Repository $repo -Destination $exported
        { Remove-VmBackupRepositoryKey -Repository $repo -Slot $slot -Confirm:$false -ErrorAction Stop } | Should -Not -Throw
        { Remove-VmBackupRepositoryKey -Repository $repo -HostKeyFile -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryKeyLastCopy,VmQuiesce.Commands.RemoveVmBackupRepositoryKeyCommand'
        $slot = (Add-VmBackupRepositoryKey -Repository $repo -Credential ([pscredential]::new('ignored', $passphrase))).Slot
        Remove-VmBackupRepositoryKey -Repository $repo -HostKeyFile -Confirm:$false

        # This host has lost the key: nothing reads until it is imported.
        (Get-VmBackupRepository $repo).KeyAvailable | Should -BeFalse
        { Get-VmBackupRepository $repo | Out-Null; Get-VmBackup $repo -Id $point.Id -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryKeyNotFound,VmQuiesce.Commands.GetVmBackupCommand'
        { Import-VmBackupRepositoryKey -Repository $repo -Passphrase (ConvertTo-SecureString 'not the passphrase' -AsPlainText -Force) -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryPassphraseWrong,VmQuiesce.Commands.ImportVmBackupRepositoryKeyCommand'
        $imported = (Import-VmBackupRepositoryKey -Repository $repo -Passphrase $passphrase).Path
        $restored = Join-Path $root 'keys-restored'
        $null = Restore-VmSnapshot -Repository $repo -Id $point.Id -Destination $restored

        $file.Path | Should -Be $exported
        $file.Kind | Should -Be 'ExportedKeyFile'
        $slot | Should -Match '^[0-9a-f]{8}$'
        $imported | Should -Be (Get-VmBackupRepository $repo).HostKeyFile
        Get-Sha256 (Join-Path $restored 'keys.img') | Should -Be $sha
        if (-not $IsWindows) { [int] (Get-Item $exported).UnixFileMode | Should -Be ([Convert]::ToInt32('600', 8)) -Because 'a key file is for root only' }

        Remove-VmBackupRepositoryKey -Repository $repo -HostKeyFile -Confirm:$false
        (Import-VmBackupRepositoryKey -Repository $repo -KeyFile $exported).Path | Should -Be $imported
    }

    It 'refuses a short passphrase for a new copy with PassphraseTooShort, once, before any repository is opened' {
        $short = ConvertTo-SecureString 'seven77' -AsPlainText -Force
        $repositories = (Join-Path $root 'no-such-repository'), $repo
        { $repositories | Add-VmBackupRepositoryKey -Passphrase $short -ErrorAction SilentlyContinue } |
            Should -Throw -ErrorId 'PassphraseTooShort,VmQuiesce.Commands.AddVmBackupRepositoryKeyCommand'
    }

    It 'refuses a -KeyFile that is not a file system path before the repository is opened, with -WhatIf too' {
        $missing = Join-Path $root 'no-such-repository'
        foreach ($whatIf in $false, $true) {
            { Import-VmBackupRepositoryKey -Repository $missing -KeyFile 'Variable:/key' -WhatIf:$whatIf -ErrorAction SilentlyContinue } |
                Should -Throw -ErrorId 'PathNotFileSystem,VmQuiesce.Commands.ImportVmBackupRepositoryKeyCommand'
        }
    }
}
