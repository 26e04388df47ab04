using System;
using System.IO;
using System.Runtime.CompilerServices;
using VmQuiesce.Core.Repository.Keys;

namespace VmQuiesce.Core.Tests
{
    /// <summary>
    /// Host key files of the tests' encrypted repositories go to a folder of the test run, never the host's own
    /// (/etc/vmquiesce/keys): the one build.ps1 names in VMQUIESCE_KEY_FOLDER, or one under temp for this process
    /// when the tests run without it (dotnet test). Set before any test class is touched, so none can miss it.
    /// </summary>
    internal static class TestKeyFolder
    {
        [ModuleInitializer]
        [System.Diagnostics.CodeAnalysis.SuppressMessage("Usage", "CA2255", Justification = "A test assembly is the application here: its initializer must run before any test class.")]
        internal static void KeepKeysOutOfTheHostsFolder()
        {
            if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable(HostKeyStore.FolderVariable)))
            {
                Environment.SetEnvironmentVariable(HostKeyStore.FolderVariable, Path.Combine(Path.GetTempPath(), $"vmq-test-keys-{System.Diagnostics.Process.GetCurrentProcess().Id}"));
            }
        }
    }
}

#if NETFRAMEWORK
namespace System.Runtime.CompilerServices
{
    /// <summary>The compiler runs a method so marked when the assembly loads; .NET Framework lacks the attribute, not the feature.</summary>
    [AttributeUsage(AttributeTargets.Method, Inherited = false)]
    internal sealed class ModuleInitializerAttribute : Attribute
    {
    }
}
#endif
