# A real VSS requester run. It needs Windows and an elevated process: it runs in the GitHub Actions
# Windows job (windows-latest, whose runner is elevated) and is skipped, with the reason, elsewhere.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force

    $script:Skip = if ([Environment]::OSVersion.Platform -ne [PlatformID]::Win32NT) {
        'needs Windows: VSS exists only there'
    }
    elseif (-not ([Security.Principal.WindowsPrincipal][Security.Principal.WindowsIdentity]::GetCurrent()).IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
        'needs an elevated PowerShell: a VSS requester must be an Administrator or Backup Operator'
    }
    $script:NotElevatedWindows = ([Environment]::OSVersion.Platform -eq [PlatformID]::Win32NT) -and $Skip
}

Describe 'HostVss on a real Windows host' {
    It 'lists every writer with its state and hosting service' {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $writers = @(Get-VssWriter)
        $writers.Count | Should -BeGreaterThan 0
        $writers | ForEach-Object { $_.GetType().FullName | Should -Be 'VmQuiesce.Core.Sources.WindowsVss.VssWriterInfo' }
        $writers | ForEach-Object { $_.WriterId | Should -Not -Be ([guid]::Empty) }
        $system = $writers | Where-Object Name -EQ 'System Writer'
        $system | Should -Not -BeNullOrEmpty
        $system.Service | Should -Be 'CryptSvc'
        (Get-VssWriter -Name 'System*').Name | Should -Contain 'System Writer'
    }

    It 'reports a writer name that is not registered' {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $errors = $null
        Get-VssWriter -Name 'No Such Writer' -ErrorVariable errors -ErrorAction SilentlyContinue | Should -BeNullOrEmpty
        $errors[0].FullyQualifiedErrorId | Should -Be 'VssWriterNotFound,VmQuiesce.Commands.GetVssWriterCommand'
    }

    It 'refuses a process without backup rights' {
        if (-not $NotElevatedWindows) { Set-ItResult -Skipped -Because 'needs a Windows PowerShell that is not elevated'; return }
        { Get-VssWriter -ErrorAction Stop } | Should -Throw -ErrorId 'VssRequiresElevation,VmQuiesce.Commands.GetVssWriterCommand'
    }

    It 'snapshots the system volume, reads a file from the shadow copy as it was, then deletes the shadow copy' {
        if ($Skip) { Set-ItResult -Skipped -Because $Skip; return }
        $folder = Join-Path "$env:SystemDrive\" ('VmQuiesceVss-' + [guid]::NewGuid().ToString('N'))
        New-Item -ItemType Directory -Path $folder | Out-Null
        $view = $null
        try {
            $path = Join-Path $folder 'disk.bin'
            $before = [byte[]]::new(3MB)
            [Random]::new(42).NextBytes($before)
            [IO.File]::WriteAllBytes($path, $before)

            $notes = [Collections.Generic.List[string]]::new()
            $source = [VmQuiesce.Core.Sources.WindowsVss.HostVssSource]::new('pester', $null, [string[]] @($path),
                [VmQuiesce.Core.Sources.WindowsVss.VssBackupType]::Copy, [VmQuiesce.Core.OperationHost]::new($null, [Action[string]] { param($note) $notes.Add($note) }, $null, $null))
            $view = $source.OpenConsistentView([VmQuiesce.Core.Sources.QuiesceOptions]::new(), [Threading.CancellationToken]::None)

            # Changed after the shadow copy: the copy must still hold the bytes from before.
            [IO.File]::WriteAllBytes($path, [byte[]]::new(3MB))

            $view.Reached | Should -Be 'FileSystem'
            $view.Quiesce.Method | Should -Be 'HostVss'
            # Without a VM writer the window is the kernel's hold on writes, read from VSS's own records.
            $view.Quiesce.FrozenMeasure | Should -Be 'VssHoldWritesEvents' -Because ($notes -join ' ')
            $view.Quiesce.FrozenMilliseconds | Should -BeGreaterThan 0
            $view.Quiesce.FrozenMilliseconds | Should -BeLessThan 10000
            $file = $view.Files[0]
            $file.RelativePath | Should -Be 'disk.bin'
            $file.ReadPath | Should -BeLike '\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopy*\VmQuiesceVss-*\disk.bin'
            $device = $file.ReadPath.Substring(0, $file.ReadPath.IndexOf('\VmQuiesceVss-'))
            @(Get-CimInstance Win32_ShadowCopy | Where-Object DeviceObject -EQ $device).Count | Should -Be 1

            $stream = [VmQuiesce.Core.Platform.DevicePathFile]::OpenRead($file.ReadPath)
            try {
                $copy = [IO.MemoryStream]::new()
                $stream.CopyTo($copy)
            }
            finally {
                $stream.Dispose()
            }
            [Convert]::ToBase64String($copy.ToArray()) | Should -BeExactly ([Convert]::ToBase64String($before))

            $view.Complete($true, [Threading.CancellationToken]::None)
            @(Get-CimInstance Win32_ShadowCopy | Where-Object DeviceObject -EQ $device).Count | Should -Be 0
        }
        finally {
            if ($view) { $view.Dispose() }
            Remove-Item -LiteralPath $folder -Recurse -Force
        }
    }
}
