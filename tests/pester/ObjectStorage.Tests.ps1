# S3 repositories and Copy-VmBackup against a real Ceph RGW that this file starts (tests/s3/start-rgw.sh) and purges;
# build.ps1 installs its Debian packages. Backups go to a folder, copies go to S3 and back.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
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

    It 'refuses an s3:// repository in a cmdlet that works on folders, before anything changes' {
        { Get-VmBackupRepository -Path "s3://$bucket/site-a" -ErrorAction Stop } | Should -Throw -ErrorId 'S3RepositoryNotSupported*'
    }

    It 'loads the AWS SDK into VmQuiesce''s own load context, where type literals do not reach it' {
        [Runtime.Loader.AssemblyLoadContext]::GetLoadContext($sdk).Name | Should -Be 'VmQuiesce.Dependencies'
        'Amazon.S3.AmazonS3Client' -as [type] | Should -BeNullOrEmpty
    }
}
