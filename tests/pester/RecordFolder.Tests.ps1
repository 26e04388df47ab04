# The instant-restore cmdlets refuse a records folder another user could write, with the error id that says so,
# before they believe any record in it. The runtime folder is pointed at a test folder through Core's test seam
# (RuntimeFolder.UseRootForTests), so /run is not touched.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmq-records-$([guid]::NewGuid().ToString('N').Substring(0, 8))"
    $null = New-Item -ItemType Directory -Path (Join-Path $root 'vmquiesce/instant-restores')
    if ($IsLinux) {
        # Group and others may write the vmquiesce folder: a record planted there must not be believed.
        & chmod 0700 $root
        & chmod 0777 (Join-Path $root 'vmquiesce')
    }
    $runtimeFolder = [VmQuiesce.Core.VmQuiesceException].Assembly.GetType('VmQuiesce.Core.Platform.RuntimeFolder', $true)
    $script:testRoot = $runtimeFolder.GetMethod('UseRootForTests', [Reflection.BindingFlags] 'NonPublic, Static').Invoke($null, [object[]] @([string] $root))
}

AfterAll {
    if ($testRoot) { $testRoot.Dispose() }
    if ($root -and (Test-Path $root)) { Remove-Item $root -Recurse -Force }
}

Describe 'Instant restores whose records folder others may write' {
    It '<Command> fails with RecordFolderUntrusted, naming the folder' -TestCases @(
        @{ Command = 'Get-VmInstantRestore'; Run = { Get-VmInstantRestore } }
        @{ Command = 'Stop-VmInstantRestore'; Run = { Stop-VmInstantRestore -Id 0123456789abcdef -Confirm:$false } }
        @{ Command = 'Complete-VmInstantRestore'; Run = { Complete-VmInstantRestore -Id 0123456789abcdef -Confirm:$false } }
    ) {
        if (-not $IsLinux) { Set-ItResult -Skipped -Because 'the records folder is checked on Linux only (elsewhere records live in the user profile)'; return }
        $failure = { & $Run } | Should -Throw -PassThru
        $failure.FullyQualifiedErrorId | Should -BeLike 'RecordFolderUntrusted*'
        $failure.Exception.Message | Should -BeLike "*$(Join-Path $root 'vmquiesce')*"
    }
}
