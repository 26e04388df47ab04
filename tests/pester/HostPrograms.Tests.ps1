# Which programs the module runs: tools come from the system directories (or an explicit
# VMQUIESCE_TOOL_<NAME> setting), never from the folder PowerShell was started in and never from PATH.
# Each case starts a fresh pwsh with a planted qemu-img where .NET's own lookup would find it first.
BeforeAll {
    Import-Module $env:VMQUIESCE_MODULE_PATH -Force
    Import-Module (Join-Path $PSScriptRoot 'TestSupport.psm1') -Force

    $script:root = Join-Path ([IO.Path]::GetTempPath()) "vmq-pester-programs-$([guid]::NewGuid().ToString('N'))"
    $script:marker = Join-Path $root 'planted-ran'
    $script:image = Join-Path $root 'disk.qcow2'
    $script:qemuImg = '/usr/bin/qemu-img'
    $script:canRun = $IsLinux -and (Test-Path $qemuImg)
    New-Item -ItemType Directory -Path $root | Out-Null
    if ($canRun) {
        & $qemuImg create -q -f qcow2 $image 1M
        & $qemuImg snapshot -c real-snapshot $image
    }

    # A folder holding a "qemu-img" that records that it ran and answers with a snapshot no real image has.
    function New-PlantedFolder([string] $Name) {
        $folder = New-Item -ItemType Directory -Path (Join-Path $root $Name)
        $fake = Join-Path $folder 'qemu-img'
        Set-Content -LiteralPath $fake -Value @(
            '#!/bin/sh'
            "echo `"$Name `$*`" >> '$marker'"
            'echo ''{"format": "qcow2", "snapshots": [{"id": "1", "name": "planted", "date-sec": 0, "date-nsec": 0, "vm-clock-sec": 0, "vm-clock-nsec": 0, "vm-state-size": 0}]}'''
        )
        & chmod 755 $fake
        $folder.FullName
    }

    # Get-VmSnapshot in a fresh pwsh started in $WorkingDirectory with $PathPrefix in front of PATH.
    function Invoke-ChildSnapshotList([string] $WorkingDirectory, [string] $PathPrefix) {
        $child = Get-ChildPwsh
        $start = [Diagnostics.ProcessStartInfo]::new($child.FilePath)
        foreach ($argument in $child.Prefix + @('-NoProfile', '-NonInteractive', '-Command',
                "Import-Module '$env:VMQUIESCE_MODULE_PATH'; (Get-VmSnapshot -Path '$image').Name")) {
            $start.ArgumentList.Add($argument)
        }
        $start.WorkingDirectory = $WorkingDirectory
        $start.Environment['PATH'] = if ($PathPrefix) { "$PathPrefix$([IO.Path]::PathSeparator)$env:PATH" } else { $env:PATH }
        $start.RedirectStandardOutput = $true
        $start.RedirectStandardError = $true
        $process = [Diagnostics.Process]::Start($start)
        $output = $process.StandardOutput.ReadToEnd() + $process.StandardError.ReadToEnd()
        $process.WaitForExit()
        $output
    }
}

AfterAll {
    Remove-Item -LiteralPath $root -Recurse -Force -ErrorAction SilentlyContinue
}

Describe 'Host programs' {
    BeforeEach {
        Remove-Item -LiteralPath $marker -ErrorAction SilentlyContinue
    }

    It 'never runs a qemu-img planted in the folder PowerShell was started in' {
        if (-not $canRun) { Set-ItResult -Skipped -Because 'it needs Linux and /usr/bin/qemu-img (Debian: apt-get install qemu-utils)'; return }
        $planted = New-PlantedFolder 'start-folder'

        $output = Invoke-ChildSnapshotList -WorkingDirectory $planted

        Test-Path $marker | Should -BeFalse -Because "the planted program ran: $(Get-Content $marker -Raw -ErrorAction SilentlyContinue)"
        $output.Trim() | Should -Be 'real-snapshot'
    }

    It 'never runs a qemu-img planted in a PATH folder that is not a system directory' {
        if (-not $canRun) { Set-ItResult -Skipped -Because 'it needs Linux and /usr/bin/qemu-img (Debian: apt-get install qemu-utils)'; return }
        $planted = New-PlantedFolder 'path-folder'

        $output = Invoke-ChildSnapshotList -WorkingDirectory $root -PathPrefix $planted

        Test-Path $marker | Should -BeFalse -Because "the planted program ran: $(Get-Content $marker -Raw -ErrorAction SilentlyContinue)"
        $output.Trim() | Should -Be 'real-snapshot'
    }

    It 'runs the program an explicit VMQUIESCE_TOOL_ setting names' {
        if (-not $canRun) { Set-ItResult -Skipped -Because 'it needs Linux and /usr/bin/qemu-img (Debian: apt-get install qemu-utils)'; return }
        $chosen = New-PlantedFolder 'chosen'
        $env:VMQUIESCE_TOOL_QEMU_IMG = Join-Path $chosen 'qemu-img'
        try {
            $output = Invoke-ChildSnapshotList -WorkingDirectory $root
        }
        finally {
            Remove-Item Env:VMQUIESCE_TOOL_QEMU_IMG
        }

        $output.Trim() | Should -Be 'planted'
        Get-Content $marker | Should -BeLike 'chosen info*'
    }
}
