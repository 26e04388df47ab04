using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>A real unprivileged account for one test (useradd), removed with everything it runs afterwards.</summary>
    public sealed class ThrowawayUser : IDisposable
    {
        private ThrowawayUser(string name, uint uid, uint gid)
        {
            Name = name;
            Uid = uid;
            Gid = gid;
        }

        /// <summary>Null when throwaway users can be made here; otherwise why not.</summary>
        public static string? UnavailableReason =>
            !HostPlatform.IsLinux ? $"Throwaway users are made with useradd on Linux (this is {HostPlatform.Name})."
            : HostCommand.Run("/usr/bin/id", new[] { "-u" }).StandardOutput.Trim() != "0" ? "Making a throwaway user (useradd) needs root."
            : !File.Exists("/usr/sbin/useradd") ? "useradd is not installed."
            : !File.Exists("/usr/bin/setpriv") ? "setpriv (util-linux) is not installed."
            : null;

        /// <summary>The system's QEMU, which the trust checks believe.</summary>
        public const string SystemQemu = "/usr/bin/qemu-system-x86_64";

        /// <summary>Null when the system's QEMU is installed; otherwise why tests that run it are skipped.</summary>
        public static string? NoSystemQemuReason =>
            File.Exists(SystemQemu) ? null : $"{SystemQemu} is not installed (the test guest's build installs it as root on Debian).";

        public string Name { get; }

        public uint Uid { get; }

        public uint Gid { get; }

        public static ThrowawayUser Create()
        {
            string name = "vmqt" + Guid.NewGuid().ToString("N").Substring(0, 8);
            HostCommand.RunChecked("/usr/sbin/useradd", new[] { "--system", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name });
            return new ThrowawayUser(name,
                uint.Parse(HostCommand.RunChecked("/usr/bin/id", new[] { "-u", name }).StandardOutput.Trim(), CultureInfo.InvariantCulture),
                uint.Parse(HostCommand.RunChecked("/usr/bin/id", new[] { "-g", name }).StandardOutput.Trim(), CultureInfo.InvariantCulture));
        }

        /// <summary>Starts a program as this user; setpriv execs it, so the process is the program itself.</summary>
        public Process Start(string program, params string[] arguments)
        {
            var startInfo = new ProcessStartInfo("/usr/bin/setpriv") { UseShellExecute = false, RedirectStandardInput = true };
            foreach (string argument in new[] { $"--reuid={Uid}", $"--regid={Gid}", "--clear-groups", "--", program })
            {
                startInfo.ArgumentList.Add(argument);
            }

            foreach (string argument in arguments)
            {
                startInfo.ArgumentList.Add(argument);
            }

            return Process.Start(startInfo) ?? throw new InvalidOperationException($"Could not start '{program}' as {Name}.");
        }

        /// <summary>Runs a command (absolute path, or a name setpriv finds on the system PATH) as this user to its end; returns what it printed and returned.</summary>
        public HostCommandResult Run(string program, params string[] arguments)
        {
            var all = new System.Collections.Generic.List<string> { $"--reuid={Uid}", $"--regid={Gid}", "--clear-groups", "--", program };
            all.AddRange(arguments);
            return HostCommand.Run("/usr/bin/setpriv", all);
        }

        /// <summary>Gives this user a folder (and what is in it).</summary>
        public void Own(string path) => HostCommand.RunChecked("/bin/chown", new[] { "-R", $"{Uid}:{Gid}", path });

        public void Dispose() => HostCommand.Run("/usr/sbin/userdel", new[] { Name });
    }

    /// <summary>A fact that needs a throwaway user and the system's QEMU (run as root, like a host's): skipped, with the reason, elsewhere.</summary>
    public sealed class RootQemuFactAttribute : FactAttribute
    {
        public RootQemuFactAttribute()
        {
            Skip = ThrowawayUser.UnavailableReason ?? ThrowawayUser.NoSystemQemuReason;
        }
    }

    /// <summary>A theory that needs root and the system's QEMU: skipped, with the reason, elsewhere.</summary>
    public sealed class RootQemuTheoryAttribute : TheoryAttribute
    {
        public RootQemuTheoryAttribute()
        {
            Skip = ThrowawayUser.UnavailableReason ?? ThrowawayUser.NoSystemQemuReason;
        }
    }

    /// <summary>A fact that needs a throwaway user: skipped, with the reason, where none can be made.</summary>
    public sealed class ThrowawayUserFactAttribute : FactAttribute
    {
        public ThrowawayUserFactAttribute()
        {
            if (ThrowawayUser.UnavailableReason is string reason)
            {
                Skip = reason;
            }
        }
    }
}
