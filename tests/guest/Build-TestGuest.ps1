<#
.SYNOPSIS
    Builds the minimal Linux test guest that VmQuiesce's integration tests boot under QEMU (TCG).
.DESCRIPTION
    The guest is a Debian kernel plus an initramfs holding busybox, qemu-ga and the virtio drivers;
    tests/guest/init.sh is its PID 1 (it mounts the data disks, starts qemu-ga and prints
    VMQUIESCE-GUEST-READY on the serial console). Everything comes from Debian packages: the host
    packages that run and inspect guests are installed when missing (Debian, root), the guest packages
    are only downloaded and unpacked under <OutputPath>/work, never installed.

    The result is cached: <OutputPath>/manifest.json records a hash of this recipe (this script and
    init.sh), and a changed recipe rebuilds. When the guest cannot be built here (not Debian, not root
    with packages missing, no package registry), <OutputPath>/unavailable.txt gets the exact reason and
    the script exits 0, so the guest tests report themselves skipped with that reason.
.EXAMPLE
    ./tests/guest/Build-TestGuest.ps1 -OutputPath ./out/guest
#>
[CmdletBinding()]
param(
    [string] $OutputPath = (Join-Path $PSScriptRoot '../../out/guest'),

    # Rebuilds even when the cached guest matches the recipe.
    [switch] $Force
)

$ErrorActionPreference = 'Stop'
Set-StrictMode -Version Latest

# Tools on the host: QEMU and qemu-img run guests; e2fsprogs makes and checks their disks; cpio packs the
# initramfs; qemu-ga's own libraries are copied from the host into the guest (both are Debian 12); libnbd-bin's
# nbdinfo and nbdcopy are the NBD clients the NBD server is tested with; strace kills the module at chosen
# system calls in the fault tests and the chaos run.
$HostPackages = @('qemu-system-x86', 'qemu-utils', 'e2fsprogs', 'cpio', 'libglib2.0-0', 'libnuma1', 'liburing2', 'libudev1', 'libnbd-bin', 'strace')
$KernelMetaPackage = 'linux-image-cloud-amd64'
$GuestPackages = @('qemu-guest-agent', 'busybox-static')
# The drivers the guest needs that the cloud kernel builds as modules; their dependencies come along.
$GuestModules = @('virtio_pci', 'virtio_blk', 'virtio_console')
$InitScript = Join-Path $PSScriptRoot 'init.sh'

$OutputPath = [IO.Path]::GetFullPath($OutputPath)
$WorkPath = Join-Path $OutputPath 'work'
$ManifestPath = Join-Path $OutputPath 'manifest.json'
$UnavailablePath = Join-Path $OutputPath 'unavailable.txt'

class GuestUnavailableException : Exception {
    # The host cannot build the guest (as opposed to a bug in this script): tests skip with the reason.
    GuestUnavailableException([string] $message) : base($message) {}
}

function Invoke-Tool {
    # Runs a native command; returns its output lines, or throws naming the command and its output.
    param([string] $FilePath, [string[]] $ArgumentList, [switch] $Unavailable)
    $output = & $FilePath @ArgumentList 2>&1 | ForEach-Object { "$_" }
    if ($LASTEXITCODE -ne 0) {
        $message = "'$FilePath $($ArgumentList -join ' ')' failed with exit code $LASTEXITCODE`: $(($output | Select-Object -Last 5) -join ' | ')"
        if ($Unavailable) { throw [GuestUnavailableException]::new($message) }
        throw $message
    }
    return $output
}

$script:AptUpdated = $false
function Update-AptList {
    # Once per run, and only when a lookup or download failed: package lists may be missing or stale.
    if ($script:AptUpdated -or -not (Test-IsRoot)) { return $false }
    Write-Host 'Updating the apt package lists'
    Invoke-Tool apt-get @('update', '-qq', '-o', 'DPkg::Lock::Timeout=300') -Unavailable | Out-Null
    $script:AptUpdated = $true
    return $true
}

function Test-IsRoot { return (& id -u) -eq '0' }

function Invoke-AptWithUpdate {
    # apt-get/apt-cache fail the same way when the lists are missing or stale: update once, then retry.
    param([string] $FilePath, [string[]] $ArgumentList)
    try {
        return Invoke-Tool $FilePath $ArgumentList -Unavailable
    }
    catch [GuestUnavailableException] {
        if (-not (Update-AptList)) { throw }
        return Invoke-Tool $FilePath $ArgumentList -Unavailable
    }
}

function Install-HostPackage {
    $missing = @($HostPackages | Where-Object {
        # Stringified: a missing package gives no output, and an empty result never matches -notlike.
        $status = "$(& dpkg-query -W -f '${Status}' $_ 2>$null)"
        $status -notlike '*install ok installed*'
    })
    if (-not $missing) { return }
    if (-not (Test-IsRoot)) {
        throw [GuestUnavailableException]::new("The host packages $($missing -join ', ') are missing and this is not root: run 'apt-get install --no-install-recommends $($missing -join ' ')' as root, or run the build as root.")
    }
    Write-Host "Installing host packages: $($missing -join ', ')"
    $installArgs = @('install', '-y', '-qq', '--no-install-recommends', '-o', 'DPkg::Lock::Timeout=300') + $missing
    $env:DEBIAN_FRONTEND = 'noninteractive'
    Invoke-AptWithUpdate apt-get $installArgs | Out-Null
}

function Get-RecipeHash {
    $text = (Get-Content -Raw $PSCommandPath) + (Get-Content -Raw $InitScript)
    $bytes = [Text.Encoding]::UTF8.GetBytes($text)
    return [Convert]::ToHexString([Security.Cryptography.SHA256]::HashData($bytes)).ToLowerInvariant()
}

function Test-CachedGuest {
    param([string] $RecipeHash)
    if (-not (Test-Path $ManifestPath)) { return $false }
    $manifest = Get-Content -Raw $ManifestPath | ConvertFrom-Json
    if ($manifest.recipeHash -ne $RecipeHash) { return $false }
    foreach ($file in $manifest.files) {
        $path = Join-Path $OutputPath $file.name
        if (-not (Test-Path $path) -or (Get-Item $path).Length -ne $file.size) { return $false }
    }
    return $true
}

function Get-KernelPackageName {
    # The cloud kernel meta-package depends on exactly one versioned kernel image; follow it rather than
    # hard-coding a version that the next Debian point release removes from the registry.
    $lines = Invoke-AptWithUpdate apt-cache @('depends', $KernelMetaPackage)
    $names = @($lines | Where-Object { $_ -match '^\s*Depends:\s*(linux-image-\S+)' } | ForEach-Object { $Matches[1] })
    if ($names.Count -ne 1) {
        throw [GuestUnavailableException]::new("'apt-cache depends $KernelMetaPackage' did not name exactly one kernel image: $($lines -join ' | ')")
    }
    return $names[0]
}

function Save-GuestPackage {
    param([string[]] $Name, [string] $Destination)
    New-Item -ItemType Directory -Path $Destination -Force | Out-Null
    Get-ChildItem $Destination -Filter *.deb | Remove-Item
    $downloadArgs = @('download', '-qq')
    # As root, apt drops to the _apt user for downloads, which cannot write here; root downloads itself.
    if (Test-IsRoot) { $downloadArgs += @('-o', 'APT::Sandbox::User=root') }
    Push-Location $Destination
    try {
        Invoke-AptWithUpdate apt-get ($downloadArgs + $Name) | Out-Null
    }
    finally {
        Pop-Location
    }
    return @(Get-ChildItem $Destination -Filter *.deb)
}

function Get-ModuleDependency {
    # The .deb ships no modules.dep (depmod runs in postinst) and the host may lack kmod: a module's
    # own modinfo string "depends=a,b" names what must be loaded before it.
    param([string] $Path)
    $text = [Text.Encoding]::Latin1.GetString([IO.File]::ReadAllBytes($Path))
    if ($text -match "depends=([a-z0-9_,-]*)`0") {
        return @($Matches[1] -split ',' | Where-Object { $_ })
    }
    return @()
}

function Get-ModuleLoadOrder {
    # Dependencies first (depth-first topological order), each module once.
    param([hashtable] $ModuleFiles, [string[]] $Name)
    $ordered = [Collections.Generic.List[string]]::new()
    $visit = {
        param([string] $module)
        if ($ordered.Contains($module)) { return }
        $file = $ModuleFiles[$module -replace '-', '_']
        if (-not $file) { throw "Kernel module '$module' is not in the kernel package (looked for $module.ko)." }
        foreach ($dependency in Get-ModuleDependency $file) { & $visit $dependency }
        $ordered.Add($module)
    }
    foreach ($module in $Name) { & $visit $module }
    return $ordered.ToArray()
}

function Copy-IntoStaging {
    # Copies a file (following symlinks) to the same absolute path inside the initramfs.
    param([string] $Source, [string] $GuestPath, [string] $Staging)
    $target = Join-Path $Staging $GuestPath.TrimStart('/')
    New-Item -ItemType Directory -Path (Split-Path $target) -Force | Out-Null
    [IO.File]::Copy($Source, $target, $true)
    return $target
}

function Get-SharedLibrary {
    # The libraries the dynamic loader resolves for a binary on this host, including the loader itself.
    param([string] $Binary)
    $lines = Invoke-Tool ldd @($Binary)
    $missing = @($lines | Where-Object { $_ -match 'not found' })
    if ($missing) { throw "qemu-ga needs libraries this host lacks: $($missing -join '; ')" }
    return @($lines | ForEach-Object {
        if ($_ -match '=>\s*(/\S+)') { $Matches[1] }
        elseif ($_ -match '^\s*(/\S+)\s+\(') { $Matches[1] }
    })
}

function Build-Guest {
    param([string] $RecipeHash)
    if (Test-Path $WorkPath) { Remove-Item $WorkPath -Recurse -Force }
    $unpacked = Join-Path $WorkPath 'root'
    $staging = Join-Path $WorkPath 'initramfs'
    New-Item -ItemType Directory -Path $unpacked, $staging -Force | Out-Null

    $kernelPackage = Get-KernelPackageName
    Write-Host "Downloading $kernelPackage, $($GuestPackages -join ', ')"
    $debs = Save-GuestPackage -Name (@($kernelPackage) + $GuestPackages) -Destination (Join-Path $WorkPath 'debs')
    $packages = foreach ($deb in $debs) {
        Invoke-Tool dpkg-deb @('-x', $deb.FullName, $unpacked) | Out-Null
        $fields = Invoke-Tool dpkg-deb @('-f', $deb.FullName, 'Package', 'Version')
        [ordered]@{
            name    = ($fields[0] -replace '^Package:\s*', '')
            version = ($fields[1] -replace '^Version:\s*', '')
            file    = $deb.Name
        }
    }

    $kernel = @(Get-ChildItem (Join-Path $unpacked 'boot') -Filter 'vmlinuz-*')
    if ($kernel.Count -ne 1) { throw "Expected one vmlinuz in $kernelPackage, found $($kernel.Count)." }
    $kernelRelease = $kernel[0].Name -replace '^vmlinuz-', ''
    $moduleRoot = @(Get-ChildItem $unpacked -Recurse -Directory -Filter $kernelRelease | Where-Object { $_.Parent.Name -eq 'modules' })[0]
    $moduleFiles = @{}
    foreach ($file in Get-ChildItem $moduleRoot.FullName -Recurse -Filter '*.ko*') {
        if ($file.Name -notlike '*.ko') { continue }  # compressed modules would need the guest to decompress
        $moduleFiles[$file.BaseName -replace '-', '_'] = $file.FullName
    }
    $loadOrder = Get-ModuleLoadOrder -ModuleFiles $moduleFiles -Name $GuestModules
    foreach ($module in $loadOrder) {
        Copy-IntoStaging $moduleFiles[$module] "/lib/modules/$module.ko" $staging | Out-Null
    }
    New-Item -ItemType Directory -Path (Join-Path $staging 'etc') -Force | Out-Null
    [IO.File]::WriteAllText((Join-Path $staging 'etc/vmquiesce-modules'), (($loadOrder -join "`n") + "`n"))
    # guest-get-osinfo reads it; hosts tell a Linux guest (file-system freeze) from Windows (VSS) by it.
    [IO.File]::WriteAllText((Join-Path $staging 'etc/os-release'), @"
PRETTY_NAME="VmQuiesce test guest ($kernelRelease, busybox, qemu-ga)"
NAME="VmQuiesce test guest"
ID=vmquiesce-test-guest
ID_LIKE=debian
VERSION_ID="1"

"@)

    $busybox = Join-Path $unpacked 'bin/busybox'
    Copy-IntoStaging $busybox '/bin/busybox' $staging | Out-Null
    $agent = Join-Path $unpacked 'usr/sbin/qemu-ga'
    Copy-IntoStaging $agent '/usr/sbin/qemu-ga' $staging | Out-Null
    $libraries = Get-SharedLibrary $agent
    foreach ($library in $libraries) { Copy-IntoStaging $library $library $staging | Out-Null }
    $init = Copy-IntoStaging $InitScript '/init' $staging
    foreach ($executable in $init, (Join-Path $staging 'bin/busybox'), (Join-Path $staging 'usr/sbin/qemu-ga')) {
        Invoke-Tool chmod @('755', $executable) | Out-Null
    }

    $initramfs = Join-Path $OutputPath 'initramfs.cpio.gz'
    $vmlinuz = Join-Path $OutputPath 'vmlinuz'
    # Owned by root inside the guest whoever builds it; sorted so the archive does not depend on readdir order.
    Invoke-Tool sh @('-c', 'cd "$1" && find . | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet | gzip -9 -n > "$2.tmp" && mv "$2.tmp" "$2"', 'sh', $staging, $initramfs) | Out-Null
    Copy-Item $kernel[0].FullName $vmlinuz -Force

    $manifest = [ordered]@{
        recipeHash    = $RecipeHash
        builtAtUtc    = [DateTime]::UtcNow.ToString('o')
        kernelRelease = $kernelRelease
        packages      = @($packages)
        modules       = $loadOrder
        libraries     = $libraries
        hostQemu      = (Invoke-Tool qemu-system-x86_64 @('--version'))[0]
        files         = @(foreach ($path in $vmlinuz, $initramfs) {
                [ordered]@{ name = Split-Path $path -Leaf; size = (Get-Item $path).Length; sha256 = (Get-FileHash $path -Algorithm SHA256).Hash.ToLowerInvariant() }
            })
    }
    # The manifest is written last: it is what marks the guest as complete.
    $manifest | ConvertTo-Json -Depth 5 | Set-Content -Path "$ManifestPath.tmp" -Encoding utf8
    Move-Item "$ManifestPath.tmp" $ManifestPath -Force
    Remove-Item $WorkPath -Recurse -Force
    return $manifest
}

New-Item -ItemType Directory -Path $OutputPath -Force | Out-Null
try {
    # No #Requires 7: Windows PowerShell 5.1 must reach this line to record why there is no guest.
    if (-not (Get-Variable IsLinux -ValueOnly -ErrorAction Ignore) -or -not (Test-Path /etc/debian_version)) {
        throw [GuestUnavailableException]::new("The test guest is built from Debian packages and runs under QEMU on a Debian host; this host is $([Runtime.InteropServices.RuntimeInformation]::OSDescription).")
    }
    Install-HostPackage
    $recipeHash = Get-RecipeHash
    if (-not $Force -and (Test-CachedGuest $recipeHash)) {
        Write-Host "Test guest is up to date in $OutputPath"
    }
    else {
        if (Test-Path $ManifestPath) { Remove-Item $ManifestPath }
        $stopwatch = [Diagnostics.Stopwatch]::StartNew()
        $manifest = Build-Guest $recipeHash
        Write-Host "Built the test guest (kernel $($manifest.kernelRelease)) into $OutputPath in $([int]$stopwatch.Elapsed.TotalSeconds) s"
    }
    if (Test-Path $UnavailablePath) { Remove-Item $UnavailablePath }
}
catch [GuestUnavailableException] {
    $reason = "The test guest cannot be built on this host: $($_.Exception.Message)"
    Set-Content -Path $UnavailablePath -Value $reason -Encoding utf8
    Write-Warning "$reason Tests that boot a guest will be skipped."
}
catch {
    # A failure that is not about the host is a bug here: say so loudly, and still let tests skip with it.
    Set-Content -Path $UnavailablePath -Value "Building the test guest failed: $($_.Exception.Message)" -Encoding utf8
    throw
}
