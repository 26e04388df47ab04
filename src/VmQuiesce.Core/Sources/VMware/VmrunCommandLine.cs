using System;
using System.Collections.Generic;
using System.Linq;
using System.Security;
using System.Text;
using System.Text.RegularExpressions;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>
    /// One vmrun invocation: its arguments, of which the password is a placeholder until the moment
    /// the process starts. <see cref="Display"/> is the only text form that may be shown or logged.
    /// </summary>
    internal sealed class VmrunCommandLine
    {
        public const string Mask = ToolCommand.Mask;

        private readonly List<string?> _arguments;
        private readonly SecureString? _password;

        private VmrunCommandLine(List<string?> arguments, SecureString? password, string command)
        {
            _arguments = arguments;
            _password = password;
            Command = command;
        }

        /// <summary>The vmrun command (list, snapshot, ...).</summary>
        public string Command { get; }

        /// <summary>Every argument, the password as <see cref="Mask"/>: safe for logs, verbose output and errors.</summary>
        public IReadOnlyList<string> DisplayArguments => _arguments.Select(a => a ?? Mask).ToList();

        /// <summary>The command line with the password masked.</summary>
        public string Display => string.Join(" ", DisplayArguments.Select(ToolCommand.Quote));

        /// <summary>
        /// -T type [-h URL -u USER -p PASS] command args. vmrun's global options come before the command,
        /// as its usage text shows (<c>vmrun [AUTHENTICATION-FLAGS] COMMAND [PARAMETERS]</c>).
        /// </summary>
        public static VmrunCommandLine Build(VmrunConnection connection, string command, params string[] commandArguments)
        {
            var arguments = new List<string?> { "-T", connection.HostType.ToVmrunType() };
            SecureString? password = null;
            if (connection.HostType == VmwareHostType.Server)
            {
                arguments.Add("-h");
                arguments.Add(connection.ServerUrl);
                arguments.Add("-u");
                arguments.Add(connection.Credential!.UserName);
                arguments.Add("-p");
                arguments.Add(null);
                password = connection.Credential.SecurePassword;
            }

            arguments.Add(command);
            arguments.AddRange(commandArguments);
            return new VmrunCommandLine(arguments, password, command);
        }

        /// <summary>Every argument, null where the password goes: the process runner reveals it only into the starting process's arguments.</summary>
        public IReadOnlyList<string?> Arguments => _arguments;

        public SecureString? Password => _password;

        /// <summary>
        /// Removes the password from any text that might echo the command line or the password (vmrun's own
        /// output included): the literal password and whatever follows a -p/-gp/-vp flag become <see cref="Mask"/>.
        /// </summary>
        public string Redact(string? text)
        {
            if (string.IsNullOrEmpty(text))
            {
                return text ?? string.Empty;
            }

            string result = text!;
            if (_password != null && _password.Length > 0)
            {
                string password = ToolCommand.Reveal(_password);
                result = result.Replace(password, Mask);
                string quoted = ToolCommand.Quote(password);
                if (quoted != password)
                {
                    result = result.Replace(quoted, Mask);
                }
            }

            return RedactFlags(result);
        }

        /// <summary>Masks the value after -p, -gp and -vp (vmrun's password flags) in any text.</summary>
        public static string RedactFlags(string text) =>
            PasswordFlag.Replace(text, match => match.Groups["flag"].Value + Mask);

        private static readonly Regex PasswordFlag = new Regex(
            @"(?<flag>(?:^|\s)-(?:p|gp|vp)\s+)(?:""(?:[^""\\]|\\.)*""|\S+)",
            RegexOptions.CultureInvariant);
    }
}
