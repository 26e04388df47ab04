# S3 repositories and Copy-VmBackup against a real Ceph RGW that this file starts (tests/s3/start-rgw.sh) and purges;
# build.ps1 installs its Debian packages. Backups go to a folder, copies go to S3 and back.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force
    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmq-s3-$([Guid]::NewGuid().ToString('N').Substring(0, 8))"
    New-Item -ItemType Directory -Path $root -Force | Out-Null
    $script:unavailable = if (-not $IsLinux) { 'The S3 test server (Ceph RGW) runs on Linux only.' }
    elseif ($env:VMQUIESCE_TEST_S3 -and (Test-Path (Join-Path $env:VMQUIESCE_TEST_S3 'unavailable.txt'))) { (Get-Content -Raw (Join-Path $env:VMQUIESCE_TEST_S3 'unavailable.txt')).Trim() }
    elseif (-not (Test-Path /usr/bin/radosgw)) { 'radosgw is not installed: run through build.ps1 -Task Test as root on Debian (it installs it).' }
    if ($unavailable -and $env:VMQUIESCE_REQUIRE_S3 -eq '1') { throw "VMQUIESCE_REQUIRE_S3=1 requires the real S3 server, and it is unavailable: $unavailable" }

    $script:scripts = Join-Path $PSScriptRoot '../s3'
    $script:rgw = Join-Path $root 'rgw'
    if (-not $unavailable) {
        # A free port whose neighbour (the monitor's) is free too.
        do {
            $listener = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, 0); $listener.Start(); $port = $listener.LocalEndpoint.Port; $listener.Stop()
            $next = [Net.Sockets.TcpListener]::new([Net.IPAddress]::Loopback, $port + 1)
            try { $next.Start(); $next.Stop(); $free = $true } catch { $free = $false }
        } until ($free)
        $env:RGW_NO_INSTALL = '1'; $env:RGW_OWNER_PID = "$PID"
        $output = & /bin/bash (Join-Path $scripts 'start-rgw.sh') $rgw $port 2>&1
        Remove-Item Env:RGW_NO_INSTALL, Env:RGW_OWNER_PID
        if ($LASTEXITCODE -ne 0) { throw "start-rgw.sh failed (exit code $LASTEXITCODE): $($output -join ' | ')" }
        $settings = @{}
        Get-Content (Join-Path $rgw 'env') | ForEach-Object { $name, $value = $_ -split '=', 2; $settings[$name] = $value }
        $script:endpoint = [uri] $settings.S3_ENDPOINT
        $script:secret = $settings.AWS_SECRET_ACCESS_KEY
        $script:credential = [pscredential]::new($settings.AWS_ACCESS_KEY_ID, (ConvertTo-SecureString $secret -AsPlainText -Force))
        $script:bucket = 'vmq-pester'
        # The bucket is made with the SDK VmQuiesce ships (VmQuiesce never creates buckets). It lives in VmQuiesce's
        # own load context, out of reach of type literals: a first S3 call loads it, and reflection finds it.
        Get-VmBackup -Repository "s3://$bucket/none" -S3Endpoint $endpoint -S3Credential $credential -ErrorAction SilentlyContinue
        $script:sdk = [AppDomain]::CurrentDomain.GetAssemblies() | Where-Object { $_.GetName().Name -eq 'AWSSDK.S3' }
        $config = [Activator]::CreateInstance($sdk.GetType('Amazon.S3.AmazonS3Config'))
        $config.ServiceURL = $endpoint.AbsoluteUri; $config.ForcePathStyle = $true; $config.AuthenticationRegion = 'us-east-1'
        $config.RequestChecksumCalculation = 'WHEN_REQUIRED'; $config.ResponseChecksumValidation = 'WHEN_REQUIRED'
        $client = [Activator]::CreateInstance($sdk.GetType('Amazon.S3.AmazonS3Client'), [object[]] @($settings.AWS_ACCESS_KEY_ID, $secret, $config))
        $null = $client.PutBucketAsync($bucket).GetAwaiter().GetResult()
        # Kept to read and change objects as someone who can write the bucket but has no repository key.
        $script:client = $client
        $script:readObject = {
            param([string] $key)
            $response = $client.GetObjectAsync($bucket, $key).GetAwaiter().GetResult()
            $buffer = [IO.MemoryStream]::new(); $response.ResponseStream.CopyTo($buffer); $response.Dispose()
            , $buffer.ToArray()
        }
        $script:writeObject = {
            param([string] $key, [byte[]] $content)
            $request = [Activator]::CreateInstance($sdk.GetType('Amazon.S3.Model.PutObjectRequest'))
            $request.BucketName = $bucket; $request.Key = $key; $request.InputStream = [IO.MemoryStream]::new($content)
            $null = $client.PutObjectAsync($request).GetAwaiter().GetResult()
        }

        $script:folder = Join-Path $root 'repo'
        $script:disk = Join-Path $root 'disk.img'
        $bytes = [byte[]]::new(3MB); [Random]::new(7).NextBytes($bytes); [IO.File]::WriteAllBytes($disk, $bytes)
        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('s3vm', [string[]] @($disk))
        $script:first = Invoke-VmQuiescedBackup -Vm $vm -Repository $folder -Consistency Crash -ChunkSize 1MB -Confirm:$false
        $bytes[0] = $bytes[0] -bxor 0xff; [IO.File]::WriteAllBytes($disk, $bytes)
        $script:second = Invoke-VmQuiescedBackup -Vm $vm -Repository $folder -Consistency Crash -ChunkSize 1MB -Confirm:$false
    }
}

AfterAll {
    if ($client) { $client.Dispose() }
    if ($rgw -and (Test-Path $rgw)) { & /bin/bash (Join-Path $scripts 'stop-rgw.sh') $rgw --purge 2>&1 | Out-Null }
    if (Test-Path $root) { Remove-Item $root -Recurse -Force }
}

Describe 'Copy-VmBackup to and from S3' {
    BeforeEach { if ($unavailable) { Set-ItResult -Skipped -Because $unavailable } }

    It 'copies only the chunks S3 lacks, lists and verifies there, and a second run copies nothing' {
        $s3 = "s3://$bucket/site-a"
        $copies = Copy-VmBackup -Repository $folder -Destination $s3 -VmName s3vm -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false
        $copies.Id | Should -Be @($first.Id, $second.Id)
        $copies[0].ChunksCopied | Should -Be 3
        $copies[1].ChunksCopied | Should -Be 1 -Because 'only the first chunk changed'
        $copies[1].ChunksAlreadyPresent | Should -Be 2

        (Get-VmBackup -Repository $s3 -S3Endpoint $endpoint -S3Credential $credential).Id | Should -Be @($first.Id, $second.Id)
        $verified = Test-VmBackup -Repository $s3 -S3Endpoint $endpoint -S3Credential $credential
        $verified.IsValid | Should -Be @($true, $true)
        (Copy-VmBackup $folder $s3 -Latest -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false).AlreadyPresent | Should -BeTrue
    }

    It 'copies back into a new folder repository with credentials from the environment, which then restores the same bytes' {
        $back = Join-Path $root 'back'
        $env:AWS_ENDPOINT_URL_S3 = $endpoint.AbsoluteUri; $env:AWS_ACCESS_KEY_ID = $credential.UserName; $env:AWS_SECRET_ACCESS_KEY = $secret
        try {
            $copy = Get-VmBackup -Repository "s3://$bucket/site-a" -Id $second.Id | Copy-VmBackup -Destination $back -Confirm:$false
        }
        finally { Remove-Item Env:AWS_ENDPOINT_URL_S3, Env:AWS_ACCESS_KEY_ID, Env:AWS_SECRET_ACCESS_KEY }
        $copy.ChunksCopied | Should -Be 3
        (Test-VmBackup -Repository $back -Id $second.Id).IsValid | Should -BeTrue
        $restored = Join-Path $root 'restored'
        Restore-VmSnapshot -Repository $back -Id $second.Id -Destination $restored -SkipRevert -Confirm:$false | Out-Null
        $file = @(Get-ChildItem $restored -Recurse -File)
        $file.Count | Should -Be 1
        (Get-FileHash $file[0].FullName).Hash | Should -Be (Get-FileHash $disk).Hash
    }

    It 'restores straight from S3, by id and from a piped restore point, the same bytes' {
        $s3 = "s3://$bucket/site-a"
        $byId = Join-Path $root 'from-s3-id'
        $result = Restore-VmSnapshot -Repository $s3 -Id $second.Id -Destination $byId -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false
        $result.RestorePointId | Should -Be $second.Id
        $piped = Join-Path $root 'from-s3-piped'
        Get-VmBackup -Repository $s3 -Id $first.Id -S3Endpoint $endpoint -S3Credential $credential |
            Restore-VmSnapshot -Destination $piped -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false | Out-Null
        (Get-FileHash (Get-ChildItem $byId -Recurse -File).FullName).Hash | Should -Be (Get-FileHash $disk).Hash
        $firstBytes = [IO.File]::ReadAllBytes($disk); $firstBytes[0] = $firstBytes[0] -bxor 0xff
        [IO.File]::ReadAllBytes((Get-ChildItem $piped -Recurse -File).FullName)[0] | Should -Be $firstBytes[0] -Because 'the first point holds the byte before it was flipped'
    }

    It 'serves a point straight from S3 over NBD, equal to the image for qemu-img, until Stop-VmBackupExport; -WhatIf serves nothing' {
        $s3 = "s3://$bucket/site-a"
        Start-VmBackupExport -Repository $s3 -Id $second.Id -S3Endpoint $endpoint -S3Credential $credential -WhatIf | Should -BeNullOrEmpty
        $export = Get-VmBackup -Repository $s3 -Id $second.Id -S3Endpoint $endpoint -S3Credential $credential | Start-VmBackupExport -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false
        try {
            $export.Repository | Should -Be $s3
            & qemu-img compare -q -f raw -F raw $disk $export.Disks[0].Uri
            $LASTEXITCODE | Should -Be 0 -Because 'the export serves the bytes that were backed up'
            (Get-VmBackupExport -Id $export.Id).ChunksRead | Should -Be 3
        }
        finally { $export | Stop-VmBackupExport -Confirm:$false }
        Test-Path $export.Endpoint.SocketPath | Should -BeFalse
    }

    It 'keeps an encrypted copy in S3 sealed under its own key: listed and verified with the key file, a changed object not authentic, nothing read without the key' {
        $s3 = "s3://$bucket/site-enc"
        $copy = Copy-VmBackup -Repository $folder -Destination $s3 -Id $second.Id -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false
        $copy.ChunksCopied | Should -Be 3
        $marker = [Text.Encoding]::UTF8.GetString((& $readObject 'site-enc/vmquiesce-repository.json')) | ConvertFrom-Json
        $marker.encryption.algorithm | Should -Be 'AES-256-GCM'
        $keyFile = Join-Path $env:VMQUIESCE_KEY_FOLDER "$($marker.encryption.repositoryId).key"
        $keyFile | Should -Exist
        [Text.Encoding]::UTF8.GetString((& $readObject "site-enc/points/$($second.Id).json")) | Should -Not -Match 's3vm'

        (Get-VmBackup -Repository $s3 -S3Endpoint $endpoint -S3Credential $credential).VmName | Should -Be 's3vm'
        (Test-VmBackup -Repository $s3 -S3Endpoint $endpoint -S3Credential $credential).IsValid | Should -BeTrue

        $point = Get-VmBackup -Repository $s3 -S3Endpoint $endpoint -S3Credential $credential
        $chunk = $point.Files[0].GetChunks()[1]
        $key = "site-enc/chunks/$($chunk.Substring(0, 2))/$chunk"
        $bytes = & $readObject $key
        $bytes[100] = $bytes[100] -bxor 1
        & $writeObject $key $bytes
        $verified = Test-VmBackup -Repository $s3 -S3Endpoint $endpoint -S3Credential $credential -ErrorVariable damaged -ErrorAction SilentlyContinue
        $verified.IsValid | Should -BeFalse
        $verified.Problems.Hash | Should -Be $chunk
        "$($verified.Problems.Problem)" | Should -Be 'NotAuthentic'
        $damaged[0].FullyQualifiedErrorId | Should -BeLike 'RestorePointNotAuthentic,*'

        Move-Item $keyFile "$keyFile.away"
        try {
            { Get-VmBackup -Repository $s3 -S3Endpoint $endpoint -S3Credential $credential -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryKeyNotFound,*'
        }
        finally { Move-Item "$keyFile.away" $keyFile }
    }

    It 'reports wrong keys with S3AccessDenied naming the repository, and never shows the secret' {
        $wrong = [pscredential]::new($credential.UserName, (ConvertTo-SecureString 'not-the-secret-000000000000000000000000' -AsPlainText -Force))
        $output = Get-VmBackup -Repository "s3://$bucket/site-a" -S3Endpoint $endpoint -S3Credential $wrong -ErrorVariable failures -ErrorAction SilentlyContinue -Verbose 4>&1
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'S3AccessDenied,*'
        $failures[0].Exception.Message | Should -Match "s3://$bucket/site-a"
        ($output + $failures | Out-String) | Should -Not -Match 'not-the-secret'
    }

    It 'backs up straight to S3 into a new encrypted repository, sends only changed chunks the second time, and restores from there' {
        $s3 = "s3://$bucket/site-direct"
        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('direct', [string[]] @($disk))
        $one = Invoke-VmQuiescedBackup -Vm $vm -Repository $s3 -Consistency Crash -ChunkSize 1MB -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false
        $one.Repository | Should -Be $s3
        $one.NewChunkBytes | Should -Be 3MB
        $two = Invoke-VmQuiescedBackup -Vm $vm -Repository $s3 -Consistency Crash -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false
        $two.NewChunkBytes | Should -Be 0 -Because 'every chunk is in the bucket already'
        $marker = [Text.Encoding]::UTF8.GetString((& $readObject 'site-direct/vmquiesce-repository.json')) | ConvertFrom-Json
        $marker.encryption.algorithm | Should -Be 'AES-256-GCM'
        (Test-VmBackup -Repository $s3 -S3Endpoint $endpoint -S3Credential $credential).IsValid | Should -Be @($true, $true)
        $restored = Join-Path $root 'from-direct'
        Restore-VmSnapshot -Repository $s3 -Id $two.Id -Destination $restored -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false | Out-Null
        (Get-FileHash (Get-ChildItem $restored -Recurse -File).FullName).Hash | Should -Be (Get-FileHash $disk).Hash
    }

    It 'reports an unreachable endpoint before any VM is frozen' {
        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('direct', [string[]] @($disk))
        $script:frozen = $false
        { Invoke-VmQuiescedBackup -Vm $vm -Repository "s3://$bucket/site-x" -Consistency Crash -PreFreezeScript { $script:frozen = $true } -S3Endpoint 'http://127.0.0.1:1' -S3Credential $credential -Confirm:$false -ErrorAction Stop } |
            Should -Throw -ErrorId 'S3EndpointUnreachable*'
        $frozen | Should -BeFalse
    }

    It 'prunes an S3 repository by policy: the old point and the chunks only it used go, the rest verifies' {
        $s3 = "s3://$bucket/site-a"
        $result = Remove-VmBackup -Repository $s3 -KeepLast 1 -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false
        $result.RemovedRestorePoints | Should -Be @($first.Id)
        $result.RemovedChunks | Should -Be 1 -Because 'only the first chunk differed between the two points'
        (Get-VmBackup -Repository $s3 -S3Endpoint $endpoint -S3Credential $credential).Id | Should -Be @($second.Id)
        (Test-VmBackup -Repository $s3 -S3Endpoint $endpoint -S3Credential $credential).IsValid | Should -BeTrue
    }

    It 'adds, changes, exports and imports the key of an S3 repository: a new copy before the old one goes, the last copy kept' {
        $s3 = "s3://$bucket/site-keys"
        $store = @{ S3Endpoint = $endpoint; S3Credential = $credential }
        $secure = { param([string] $text) ConvertTo-SecureString $text -AsPlainText -Force }
        Copy-VmBackup -Repository $folder -Destination $s3 -Id $second.Id @store -Confirm:$false | Out-Null
        $old = Add-VmBackupRepositoryKey $s3 -Passphrase (& $secure 'old passphrase 1') @store -Confirm:$false
        $old.Kind | Should -Be 'Passphrase'
        $old.Repository | Should -Be $s3
        [Text.Encoding]::UTF8.GetString((& $readObject "site-keys/keys/$($old.Slot).json")) | Should -Match 'VmQuiesceWrappedKey'

        # A passphrase changes by adding the new copy, then removing the old one: the bucket always holds one.
        $new = Add-VmBackupRepositoryKey $s3 -Passphrase (& $secure 'new passphrase 2') @store -Confirm:$false
        Remove-VmBackupRepositoryKey $s3 -Slot $old.Slot @store -Confirm:$false
        { & $readObject "site-keys/keys/$($old.Slot).json" } | Should -Throw
        $exported = Join-Path $root 'site-keys.key'
        (Export-VmBackupRepositoryKey $s3 $exported @store -Confirm:$false).Path | Should -Be $exported

        Remove-VmBackupRepositoryKey $s3 -HostKeyFile @store -Confirm:$false
        { Get-VmBackup -Repository $s3 @store -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryKeyNotFound,*'
        { Remove-VmBackupRepositoryKey $s3 -Slot $new.Slot @store -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryKeyLastCopy,*'
        { Import-VmBackupRepositoryKey $s3 -Passphrase (& $secure 'old passphrase 1') @store -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryPassphraseWrong,*'
        (Import-VmBackupRepositoryKey $s3 -Passphrase (& $secure 'new passphrase 2') @store -Confirm:$false).Kind | Should -Be 'HostKeyFile'
        (Get-VmBackup -Repository $s3 @store).Id | Should -Be $second.Id

        Remove-VmBackupRepositoryKey $s3 -HostKeyFile @store -Confirm:$false
        Import-VmBackupRepositoryKey $s3 -KeyFile $exported @store -Confirm:$false | Out-Null
        (Test-VmBackup -Repository $s3 @store).IsValid | Should -BeTrue
    }

    It 'never removes a live writer''s lock object, removes the one its killed process left with a warning, and prunes' {
        $s3 = "s3://$bucket/site-locks"
        $store = @{ S3Endpoint = $endpoint; S3Credential = $credential }
        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('locks', [string[]] @($disk))
        $old = Invoke-VmQuiescedBackup -Vm $vm -Repository $s3 -Consistency Crash -ChunkSize 1MB @store -Confirm:$false
        Invoke-VmQuiescedBackup -Vm $vm -Repository $s3 -Consistency Crash @store -Confirm:$false | Out-Null
        $env:AWS_ACCESS_KEY_ID = $credential.UserName; $env:AWS_SECRET_ACCESS_KEY = $secret
        try {
            $held = (Start-ChildScript -Script 'Start-HeldS3Backup.ps1' -Expect 'HOLDING' -Arguments @(
                '-ModulePath', $env:VMQUIESCE_MODULE_PATH, '-Repository', $s3, '-Endpoint', $endpoint.AbsoluteUri, '-Disk', $disk)).Process
        }
        finally { Remove-Item Env:AWS_ACCESS_KEY_ID, Env:AWS_SECRET_ACCESS_KEY }
        try {
            { Remove-VmBackup -Repository $s3 -KeepLast 1 -RemoveStaleLock @store -Confirm:$false -ErrorAction Stop } |
                Should -Throw -ErrorId 'RepositoryLocked,*' -Because 'the writer is alive, whatever -RemoveStaleLock says'
        }
        finally {
            $held.Kill()   # SIGKILL: its lock object stays behind
            $held.WaitForExit()
        }

        $result = Remove-VmBackup -Repository $s3 -KeepLast 1 @store -Confirm:$false -WarningVariable warnings -WarningAction SilentlyContinue
        $result.RemovedRestorePoints | Should -Be @($old.Id)
        ($warnings -join "`n") | Should -BeLike "*Removed the lock object '$s3/locks/shared-*.json'*process $($held.Id) on*that process is gone*" -Because 'the refused prune left the live writer''s lock object alone'
        (Get-VmBackup -Repository $s3 @store).Count | Should -Be 1
    }

    It 'leaves nothing behind when the first backup into a new S3 repository fails: no marker, no host key file' {
        $s3 = "s3://$bucket/site-failed"
        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('failed', [string[]] @($disk))
        $keysBefore = @(Get-ChildItem $env:VMQUIESCE_KEY_FOLDER -File).Name
        Invoke-VmQuiescedBackup -Vm $vm -Repository $s3 -Consistency Crash -PreFreezeScript { throw 'the application would not flush' } -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false -ErrorVariable failures -ErrorAction SilentlyContinue -Verbose 4>&1 |
            Out-String | Should -Match "Removed the repository '$s3' this call created"
        $failures[0].FullyQualifiedErrorId | Should -BeLike 'PreFreezeScriptFailed,*'
        { Get-VmBackup -Repository $s3 -S3Endpoint $endpoint -S3Credential $credential -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryNotFound,*' -Because 'the prefix holds no object at all'
        @(Get-ChildItem $env:VMQUIESCE_KEY_FOLDER -File).Name | Should -Be $keysBefore
    }

    It 'gives a repository a change-tracked backup of a QEMU guest creates 1 MiB chunks in object storage (512 KiB in a folder)' {
        Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1') -Force
        if ($reason = Get-TestGuestSkipReason) { Set-ItResult -Skipped -Because $reason; return }
        $guest = Start-TestGuest
        try {
            $vm = Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -Name 'tracked-new'
            $point = $vm | Invoke-VmQuiescedBackup -Repository "s3://$bucket/site-tracked" -ChangeTracking -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false -WarningAction SilentlyContinue
            $point.ChunkSize | Should -Be 1MB -Because 'each chunk is a request, and a manifest of object storage lists at most 64 MiB of chunk names'
        }
        finally { $guest | Stop-TestGuest }
    }

    It 'makes a new encrypted repository at an empty S3 prefix and describes it as a folder one; a prefix that holds objects is refused' {
        $s3 = "s3://$bucket/site-new"
        $passphrase = ConvertTo-SecureString 'correct horse battery staple' -AsPlainText -Force
        $made = New-VmBackupRepository -Path $s3 -ChunkSize 1MB -Cipher ChaCha20Poly1305 -Passphrase $passphrase -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false
        $made.Path | Should -Be $s3
        $made.Encryption | Should -Be 'ChaCha20-Poly1305'
        $made.ChunkCount | Should -Be 0
        @($made.PassphraseSlots).Count | Should -Be 1
        $made.KeyAvailable | Should -BeTrue

        $vm = [VmQuiesce.Core.Sources.PlainImage.PlainImageVm]::new('new-s3', [string[]] @($disk))
        $null = Invoke-VmQuiescedBackup -Vm $vm -Repository $s3 -Consistency Crash -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false
        $summary = Get-VmBackupRepository $s3 -S3Endpoint $endpoint -S3Credential $credential
        $summary.RestorePoints | Should -Be 1
        $summary.ChunkSize | Should -Be 1MB
        $summary.ChunkCount | Should -Be 3 -Because 'the 3 MiB disk of random data is three 1 MiB chunks'
        $summary.StoredBytes | Should -BeGreaterThan 3MB
        { New-VmBackupRepository -Path $s3 -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false -ErrorAction Stop } | Should -Throw -ErrorId 'RepositoryPrefixNotEmpty,*'
    }

    It 'loads the AWS SDK into VmQuiesce''s own load context, where type literals do not reach it' {
        [Runtime.Loader.AssemblyLoadContext]::GetLoadContext($sdk).Name | Should -Be 'VmQuiesce.Dependencies'
        'Amazon.S3.AmazonS3Client' -as [type] | Should -BeNullOrEmpty
    }
}

Describe 'Serving a restore point of the real test guest straight from S3' {
    BeforeAll {
        Import-Module (Join-Path $PSScriptRoot '../guest/TestGuest.psm1') -Force
        Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force
        $script:guestUnavailable = if ($unavailable) { $unavailable } else { Get-TestGuestSkipReason }
        if (-not $guestUnavailable) {
            $guest = Start-TestGuest
            try {
                Invoke-GuestShell $guest.AgentSocketPath 'printf "s3-marker\n" > /mnt/data/marker.txt && chmod 0640 /mnt/data/marker.txt && sync' | Out-Null
                $local = Get-BackupVm -QmpSocket $guest.QmpSocketPath -AgentSocket $guest.AgentSocketPath -Name s3-guest |
                    Invoke-VmQuiescedBackup -Repository (Join-Path $root 'guest-repo') -Confirm:$false
            }
            finally { $guest | Stop-TestGuest }
            $script:guestS3 = "s3://$bucket/guest"
            $script:guestPoint = Copy-VmBackup -Repository $local.Repository -Destination $guestS3 -Id $local.Id -S3Endpoint $endpoint -S3Credential $credential -Confirm:$false
            $script:s3Parameters = @{ S3Endpoint = $endpoint; S3Credential = $credential }
            $script:guestBoot = @{
                Kernel    = Join-Path $env:VMQUIESCE_TEST_GUEST 'vmlinuz'
                Initrd    = Join-Path $env:VMQUIESCE_TEST_GUEST 'initramfs.cpio.gz'
                MemoryMiB = 128
            }
            # The shared lock objects of the guest's S3 repository (one per reader or server).
            $script:getLocks = {
                $request = [Activator]::CreateInstance($sdk.GetType('Amazon.S3.Model.ListObjectsV2Request'))
                $request.BucketName = $bucket; $request.Prefix = 'guest/locks/'
                @($client.ListObjectsV2Async($request).GetAwaiter().GetResult().S3Objects | ForEach-Object Key)
            }
        }
    }

    BeforeEach { if ($guestUnavailable) { Set-ItResult -Skipped -Because $guestUnavailable } }

    It 'copies the guest''s marker out of the S3 point byte for byte with its mode, through a mount that leaves no lock object' {
        if (-not $IsLinux -or (& id -u) -ne '0') { Set-ItResult -Skipped -Because 'Restore-VmBackupItem mounts, which needs root on Linux'; return }
        $destination = Join-Path $root 'guest-items'

        $item = Restore-VmBackupItem -Repository $guestS3 -Id $guestPoint.Id -Path 'disk0/marker.txt' -Destination $destination @s3Parameters -Confirm:$false

        $item.Destination | Should -Be (Join-Path $destination 'marker.txt')
        [IO.File]::ReadAllText($item.Destination) | Should -BeExactly "s3-marker`n"
        (Get-Item $item.Destination).UnixMode | Should -Be '-rw-r-----'
        Get-VmBackupMount | Where-Object RestorePointId -eq $guestPoint.Id | Should -BeNullOrEmpty
        & $getLocks | Should -BeNullOrEmpty
    }

    It 'boots the S3 point with Test-VmBackup -Boot, nothing restored first' {
        $boot = $guestBoot + @{ Append = 'console=ttyS0 quiet panic=-1 vmquiesce.disks=1 vmquiesce.agent=once'; BootTimeout = [timespan]::FromMinutes(2) }

        $result = Test-VmBackup -Repository $guestS3 -Id $guestPoint.Id -Boot -BootOption $boot @s3Parameters

        $result.Status | Should -Be 'Ok'
        $result.Boot.Passed | Should -BeTrue -Because $result.Boot.ToString()
        $result.Boot.FileSystems.MountPoint | Should -Contain '/mnt/data'
        & $getLocks | Should -BeNullOrEmpty
    }

    It 'starts the guest at once from the S3 point, holds a lock object while the copy runs, and completes with the marker on local disks' {
        $vm = $guestBoot + @{ Append = 'console=ttyS0 quiet panic=-1 no_timer_check vmquiesce.disks=1 vmquiesce.agent=respawn' }
        $restore = Start-VmInstantRestore -Repository $guestS3 -Id $guestPoint.Id -Destination (Join-Path $root 'guest-instant') -VmOption $vm -CopyRateLimit 64KB @s3Parameters -Confirm:$false
        try {
            $record = Get-Content -Raw (Join-Path /run/vmquiesce/instant-restores "$($restore.Id).json")
            $record | Should -Not -Match ([regex]::Escape($secret)) -Because 'a record never holds a secret'
            $record | Should -Not -Match ([regex]::Escape($credential.UserName))
            $record | Should -Not -Match ([regex]::Escape($endpoint.Authority))
            $restore.Repository | Should -Be $guestS3
            @(& $getLocks).Count | Should -Be 1 -Because 'the export holds a shared lock object while it serves'
            Invoke-GuestShell $restore.AgentSocket 'cat /mnt/data/marker.txt' | Should -BeExactly "s3-marker`n"

            $completed = $restore | Complete-VmInstantRestore -CopyRateLimit 0
            $completed.State | Should -Be 'Completed'
            & $getLocks | Should -BeNullOrEmpty -Because 'the export ended with the copy'
            (& qemu-img info -U --output=json -f qcow2 $completed.Disks[0] | ConvertFrom-Json).'backing-filename' | Should -BeNullOrEmpty -Because 'the local disk stands alone'
        }
        finally {
            Get-Process -Id $restore.ProcessId -ErrorAction Ignore | Stop-Process -Force
            $restore | Stop-VmInstantRestore -Confirm:$false -ErrorAction Ignore
        }
    }

    It 'is completed from S3 by a new session after its serving pwsh was killed, the S3 parameters given again (the record keeps none)' {
        # The child takes the endpoint and keys from the environment; this session gives them as parameters.
        $env:AWS_ENDPOINT_URL_S3 = $endpoint.AbsoluteUri; $env:AWS_ACCESS_KEY_ID = $credential.UserName; $env:AWS_SECRET_ACCESS_KEY = $secret
        try {
            $started = Start-ChildScript -Script 'Start-ServedInstantRestore.ps1' -Expect 'STARTED *' -RedirectInput -Arguments @(
                '-ModulePath', $env:VMQUIESCE_MODULE_PATH, '-Repository', $guestS3, '-Id', $guestPoint.Id, '-Destination', (Join-Path $root 'guest-resumed'), '-CopyRateLimit', 64KB)
        }
        finally { Remove-Item Env:AWS_ENDPOINT_URL_S3, Env:AWS_ACCESS_KEY_ID, Env:AWS_SECRET_ACCESS_KEY }
        $restore = $null
        try {
            $started.Process.Kill()   # SIGKILL: the export ends mid-copy
            $started.Process.WaitForExit()
            $restore = Get-VmInstantRestore | Where-Object Id -EQ $started.Line.Substring(8)
            $restore.State | Should -Be 'Interrupted'
            $restore.Repository | Should -Be $guestS3

            $completed = $restore | Complete-VmInstantRestore -CopyRateLimit 0 @s3Parameters

            $completed.State | Should -Be 'Completed'
            Invoke-GuestShell $completed.AgentSocket 'cat /mnt/data/marker.txt' | Should -BeExactly "s3-marker`n"
            (& qemu-img info -U --output=json -f qcow2 $completed.Disks[0] | ConvertFrom-Json).'backing-filename' | Should -BeNullOrEmpty
        }
        finally {
            if (-not $started.Process.HasExited) { $started.Process.Kill() }
            if ($restore) {
                Get-Process -Id $restore.ProcessId -ErrorAction Ignore | Stop-Process -Force
                $restore | Stop-VmInstantRestore -Confirm:$false -ErrorAction Ignore
            }
        }
    }
}
