# Helpers shared by the Pester files.

# A fresh PowerShell of the same kind as this one (pwsh, or `dotnet pwsh.dll` from the local tool).
function Get-ChildPwsh {
    $first = [Environment]::GetCommandLineArgs()[0]
    if ($first -like '*.dll') { return @{ FilePath = (Get-Command dotnet).Source; Prefix = @($first) } }
    @{ FilePath = (Get-Process -Id $PID).Path; Prefix = @() }
}

# Runs a script of this folder in a fresh PowerShell with its output (and with -RedirectInput its input) redirected, and
# returns the process and its first line once the script wrote it; throws when that line is not -Like -Expect.
function Start-ChildScript {
    param([string] $Script, [string[]] $Arguments, [string] $Expect, [switch] $RedirectInput)
    $child = Get-ChildPwsh
    $startInfo = [Diagnostics.ProcessStartInfo]::new($child.FilePath)
    $startInfo.UseShellExecute = $false
    $startInfo.RedirectStandardOutput = $true
    $startInfo.RedirectStandardInput = [bool] $RedirectInput
    foreach ($argument in $child.Prefix + @('-NoProfile', '-NonInteractive', '-File', (Join-Path $PSScriptRoot $Script)) + $Arguments) {
        $startInfo.ArgumentList.Add($argument)
    }
    $process = [Diagnostics.Process]::Start($startInfo)
    $line = $process.StandardOutput.ReadLine()
    if ($line -notlike $Expect) {
        $process.WaitForExit(10000) | Out-Null
        throw "$Script did not get to '$Expect' (its first line was '$line', exit code $(if ($process.HasExited) { $process.ExitCode }))."
    }
    [pscustomobject]@{ Process = $process; Line = $line }
}

# A PowerShell whose host records what reaches the console (warnings, error lines, the prompts it is asked) and answers
# every prompt with the choice given, as a user at the console would: for what a pipeline does not capture
# (the console after Ctrl+C) and for -Confirm. $ps.Runspace.Dispose() and $ps.Dispose() when done.
function New-RecordingPowerShell {
    param([int] $Answer = 0)
    if (-not ('VmQuiesceTests.RecordingHost' -as [type])) {
        Add-Type -TypeDefinition @'
using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.Globalization;
using System.Linq;
using System.Management.Automation;
using System.Management.Automation.Host;
using System.Security;

namespace VmQuiesceTests
{
    public sealed class RecordingHost : PSHost
    {
        private readonly RecordingUI _ui;
        public RecordingHost(int answer) { _ui = new RecordingUI(answer); }
        public List<string> Warnings => _ui.Warnings;
        public List<string> Errors => _ui.Errors;
        public List<string> Prompts => _ui.Prompts;
        public List<string> Choices => _ui.Choices;
        public override string Name => "VmQuiesceTestHost";
        public override Version Version => new Version(1, 0);
        public override Guid InstanceId { get; } = Guid.NewGuid();
        public override PSHostUserInterface UI => _ui;
        public override CultureInfo CurrentCulture => CultureInfo.InvariantCulture;
        public override CultureInfo CurrentUICulture => CultureInfo.InvariantCulture;
        public override void SetShouldExit(int exitCode) { }
        public override void EnterNestedPrompt() => throw new NotSupportedException();
        public override void ExitNestedPrompt() => throw new NotSupportedException();
        public override void NotifyBeginApplication() { }
        public override void NotifyEndApplication() { }
    }

    public sealed class RecordingUI : PSHostUserInterface
    {
        private readonly int _answer;
        public RecordingUI(int answer) { _answer = answer; }
        public List<string> Warnings { get; } = new List<string>();
        public List<string> Errors { get; } = new List<string>();
        public List<string> Prompts { get; } = new List<string>();
        // The labels of the choices each prompt offered, without their hot-key marks, joined with '|'.
        public List<string> Choices { get; } = new List<string>();
        public override PSHostRawUserInterface RawUI => null;
        public override int PromptForChoice(string caption, string message, Collection<ChoiceDescription> choices, int defaultChoice)
        {
            lock (Prompts)
            {
                Prompts.Add(message);
                Choices.Add(string.Join("|", choices.Select(choice => choice.Label.Replace("&", ""))));
            }
            return _answer;
        }
        public override void WriteWarningLine(string message) { lock (Warnings) { Warnings.Add(message); } }
        public override Dictionary<string, PSObject> Prompt(string caption, string message, Collection<FieldDescription> descriptions) => throw new NotSupportedException();
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName) => throw new NotSupportedException();
        public override PSCredential PromptForCredential(string caption, string message, string userName, string targetName, PSCredentialTypes allowedCredentialTypes, PSCredentialUIOptions options) => throw new NotSupportedException();
        public override string ReadLine() => throw new NotSupportedException();
        public override SecureString ReadLineAsSecureString() => throw new NotSupportedException();
        public override void Write(string value) { }
        public override void Write(ConsoleColor foregroundColor, ConsoleColor backgroundColor, string value) { }
        public override void WriteLine(string value) { }
        public override void WriteErrorLine(string value) { lock (Errors) { Errors.Add(value); } }
        public override void WriteDebugLine(string message) { }
        public override void WriteProgress(long sourceId, ProgressRecord record) { }
        public override void WriteVerboseLine(string message) { }
    }
}
'@
    }
    $recording = [VmQuiesceTests.RecordingHost]::new($Answer)
    $runspace = [runspacefactory]::CreateRunspace($recording)
    $runspace.Open()
    $ps = [powershell]::Create()
    $ps.Runspace = $runspace
    [pscustomobject]@{ PowerShell = $ps; Host = $recording }
}

# Runs a shell command in a test guest through its agent (the test guest's agent allows exec) and returns its output;
# throws when it fails.
function Invoke-GuestShell([string] $AgentSocket, [string] $Command) {
    $agent = [VmQuiesce.Core.Sources.Qemu.GuestAgentClient]::Connect($AgentSocket, [timespan]::FromSeconds(60))
    try {
        $agent.Sync([timespan]::FromSeconds(120))
        $result = $agent.Exec('/bin/sh', [string[]] @('-c', $Command), [timespan]::FromSeconds(120))
        if (-not $result.Succeeded) { throw "'$Command' failed in the guest: $($result.StandardError)" }
        $result.StandardOutput
    }
    finally { $agent.Dispose() }
}

# The host build.ps1's precompiled copy is named for (bin/net8.0-<os>-<arch>), as VmQuiesce.psm1 names this process's.
function Get-PrecompiledHostName {
    $os = if ($IsWindows) { 'win' } elseif ($IsMacOS) { 'osx' } else { 'linux' }
    "$os-$("$([Runtime.InteropServices.RuntimeInformation]::ProcessArchitecture)".ToLowerInvariant())"
}

# Everything a command that should change nothing must leave alone: each file's name, timestamp and bytes.
function Get-FolderSnapshot([string] $Folder) {
    Get-ChildItem -LiteralPath $Folder -Force -File | Sort-Object Name | ForEach-Object {
        '{0}|{1}|{2}' -f $_.Name, $_.LastWriteTimeUtc.Ticks, [Convert]::ToBase64String([IO.File]::ReadAllBytes($_.FullName))
    }
}

# The non-terminating error $Command gives a pipeline item whose -$Parameter ($Path) does not resolve to a file system path.
function Assert-UnresolvedPathFailure($Failure, [string] $Command, [string] $Parameter, [string] $Path) {
    $Failure.FullyQualifiedErrorId | Should -Be "PathNotFileSystem,VmQuiesce.Commands.$($Command.Replace('-', ''))Command"
    $Failure.CategoryInfo.Category | Should -Be 'InvalidArgument'
    $Failure.TargetObject | Should -Be $Path
    "$Failure" | Should -BeLike "-$Parameter '$Path' cannot be resolved to a file system path*"
}

Export-ModuleMember -Function Get-ChildPwsh, Start-ChildScript, New-RecordingPowerShell, Invoke-GuestShell, Get-PrecompiledHostName, Get-FolderSnapshot, Assert-UnresolvedPathFailure
