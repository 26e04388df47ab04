// Compiled for net472 only (see the csproj): the few .NET APIs the tests use that .NET Framework lacks, so the
// same tests run against the core's .NET Framework build on Windows. Unix-only ones throw: their tests skip there.
using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Security.Cryptography;
using System.Text;

namespace System
{
    /// <summary>What the compiler needs for list[^1]; lists are indexed through Count.</summary>
    internal readonly struct Index
    {
        private readonly int _value;

        public Index(int value, bool fromEnd = false)
        {
            _value = value;
            IsFromEnd = fromEnd;
        }

        public int Value => _value;

        public bool IsFromEnd { get; }

        public int GetOffset(int length) => IsFromEnd ? length - _value : _value;
    }
}

namespace System.IO
{
    [Flags]
    internal enum UnixFileMode
    {
        None = 0,
        OtherExecute = 1,
        OtherWrite = 2,
        OtherRead = 4,
        GroupExecute = 8,
        GroupWrite = 16,
        GroupRead = 32,
        UserExecute = 64,
        UserWrite = 128,
        UserRead = 256,
        StickyBit = 512,
        SetGroup = 1024,
        SetUser = 2048,
    }
}

namespace System.Net.Sockets
{
    internal sealed class UnixDomainSocketEndPoint : EndPoint
    {
        public UnixDomainSocketEndPoint(string path) =>
            throw new PlatformNotSupportedException($"Unix domain sockets ({path}) are not available on .NET Framework.");
    }
}

namespace VmQuiesce.Core.Tests.TestGuest
{
    /// <summary>What a host tool printed and returned.</summary>
    public sealed record HostCommandResult(int ExitCode, string StandardOutput, string StandardError);

    /// <summary>The host tools (qemu-img, qemu-io, stat) run on Linux only; their tests skip elsewhere.</summary>
    public static class HostCommand
    {
        public static HostCommandResult Run(string fileName, IEnumerable<string> arguments, TimeSpan? timeout = null) =>
            throw new PlatformNotSupportedException($"'{fileName}' is a Linux host tool.");

        public static HostCommandResult RunChecked(string fileName, IEnumerable<string> arguments, TimeSpan? timeout = null) =>
            Run(fileName, arguments, timeout);
    }
}

namespace VmQuiesce.Core.Tests
{
    internal static class NetFrameworkPolyfills
    {
        extension(Convert)
        {
            public static string ToHexString(byte[] bytes) => BitConverter.ToString(bytes).Replace("-", string.Empty);
        }

        extension(SHA256)
        {
            public static byte[] HashData(byte[] data)
            {
                using var sha = SHA256.Create();
                return sha.ComputeHash(data);
            }
        }

        extension(RandomNumberGenerator)
        {
            public static byte[] GetBytes(int count)
            {
                var bytes = new byte[count];
                using var random = RandomNumberGenerator.Create();
                random.GetBytes(bytes);
                return bytes;
            }
        }

        extension(Rfc2898DeriveBytes)
        {
            public static byte[] Pbkdf2(byte[] password, byte[] salt, int iterations, HashAlgorithmName hash, int length)
            {
                using var derive = new Rfc2898DeriveBytes(password, salt, iterations, hash);
                return derive.GetBytes(length);
            }
        }

        extension(OperatingSystem)
        {
            public static bool IsWindows() => Environment.OSVersion.Platform == PlatformID.Win32NT;
        }

        extension(Enum)
        {
            public static bool IsDefined<T>(T value)
                where T : struct, Enum => Enum.IsDefined(typeof(T), value);
        }

        extension(File)
        {
            public static void SetUnixFileMode(string path, UnixFileMode mode) =>
                throw new PlatformNotSupportedException($"Unix file modes ({path}) do not exist on Windows.");

            public static UnixFileMode GetUnixFileMode(string path) =>
                throw new PlatformNotSupportedException($"Unix file modes ({path}) do not exist on Windows.");

            public static FileSystemInfo CreateSymbolicLink(string path, string pathToTarget) =>
                throw new PlatformNotSupportedException($"The symbolic link tests ({path} -> {pathToTarget}) run on Linux.");
        }

        extension(FileSystemInfo info)
        {
            public string? LinkTarget => throw new PlatformNotSupportedException($"The symbolic link tests ({info.FullName}) run on Linux.");
        }

        extension(System.Diagnostics.ProcessStartInfo info)
        {
            public System.Collections.ObjectModel.Collection<string> ArgumentList =>
                throw new PlatformNotSupportedException($"'{info.FileName}' with an argument list: the tests that start it run on Linux.");
        }

        extension(Environment)
        {
            public static int ProcessId => System.Diagnostics.Process.GetCurrentProcess().Id;
        }

        public static string Replace(this string text, string oldValue, string newValue, StringComparison comparison)
        {
            var result = new StringBuilder();
            int start = 0;
            for (int found = text.IndexOf(oldValue, comparison); found >= 0; found = text.IndexOf(oldValue, start, comparison))
            {
                result.Append(text, start, found - start).Append(newValue);
                start = found + oldValue.Length;
            }

            return result.Append(text, start, text.Length - start).ToString();
        }

        public static bool Contains(this string text, string value, StringComparison comparison) => text.IndexOf(value, comparison) >= 0;

        public static string[] Split(this string text, string separator) => text.Split(new[] { separator }, StringSplitOptions.None);

        public static void Deconstruct<TKey, TValue>(this KeyValuePair<TKey, TValue> pair, out TKey key, out TValue value)
        {
            key = pair.Key;
            value = pair.Value;
        }
    }
}
