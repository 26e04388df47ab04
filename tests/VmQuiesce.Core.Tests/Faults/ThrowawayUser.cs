using System;
using System.Globalization;
using VmQuiesce.Core.Tests.TestGuest;

namespace VmQuiesce.Core.Tests.Faults
{
    /// <summary>A real local user made for one test (no home, no shell) and deleted after it. Needs root.</summary>
    internal sealed class ThrowawayUser : IDisposable
    {
        public ThrowawayUser()
        {
            Name = "vmq-" + Guid.NewGuid().ToString("N").Substring(0, 12);
            HostCommand.RunChecked("useradd", new[] { "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group", Name });
            Uid = uint.Parse(HostCommand.RunChecked("id", new[] { "-u", Name }).StandardOutput.Trim(), CultureInfo.InvariantCulture);
            Gid = uint.Parse(HostCommand.RunChecked("id", new[] { "-g", Name }).StandardOutput.Trim(), CultureInfo.InvariantCulture);
        }

        public string Name { get; }

        public uint Uid { get; }

        public uint Gid { get; }

        /// <summary>Runs a command as this user (setpriv: no password, no PAM session); returns its result.</summary>
        public HostCommandResult Run(params string[] command)
        {
            var arguments = new System.Collections.Generic.List<string> { "--reuid", Name, "--regid", Name, "--init-groups", "--" };
            arguments.AddRange(command);
            return HostCommand.Run("setpriv", arguments);
        }

        /// <summary>Gives a path to this user (chown, not following a link).</summary>
        public void Own(string path) => HostCommand.RunChecked("chown", new[] { "-h", $"{Name}:{Name}", path });

        public void Dispose() => HostCommand.Run("userdel", new[] { Name });
    }
}
