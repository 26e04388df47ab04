using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Management.Automation;
using System.Reflection;
using VmQuiesce.Core;
#if !NETFRAMEWORK
using System.Runtime.Loader;
using VmQuiesce.Core.Repository.Keys;
#endif

namespace VmQuiesce
{
    /// <summary>
    /// Loads the third-party assemblies the module ships (every assembly beside this one that is not VmQuiesce's
    /// own) so that another module's copy of the same assembly, in another version, does not conflict with ours.
    /// PowerShell 7: they load into an AssemblyLoadContext of their own, answering the default context's requests
    /// for exactly the version we built against; VmQuiesce's own assemblies stay in the default context, where
    /// PowerShell's type literals ([VmQuiesce.Core...]) can see them. Windows PowerShell 5.1 has no
    /// AssemblyLoadContext, and powershell.exe.config no binding redirects for modules: a request for an assembly
    /// we ship, of the same publisher, at its version or older, is answered with our copy, as a redirect would.
    /// </summary>
    public sealed class ModuleDependencies : IModuleAssemblyInitializer, IModuleAssemblyCleanup
    {
        private const string OwnAssemblyPrefix = "VmQuiesce";

        private static readonly string s_folder = Path.GetDirectoryName(typeof(ModuleDependencies).Assembly.Location) ?? string.Empty;

        /// <summary>
        /// The portable build's folder (bin/net8.0) when this is the build ReadyToRun-compiled for one host
        /// (bin/net8.0-linux-x64), which holds only the assemblies build.ps1 precompiled: the rest are the portable ones.
        /// </summary>
        private static readonly string s_portableFolder = PortableFolder(s_folder);

        /// <summary>What VmQuiesce's own assemblies reference: see <see cref="Referenced"/>.</summary>
        private static readonly Lazy<List<AssemblyName>> s_references = new Lazy<List<AssemblyName>>(() =>
            typeof(ModuleDependencies).Assembly.GetReferencedAssemblies().Concat(typeof(VmQuiesceException).Assembly.GetReferencedAssemblies()).ToList());

        private static readonly object s_sync = new object();
        private static bool s_registered;

#if NETFRAMEWORK
        public void OnImport() => Register(true, () => AppDomain.CurrentDomain.AssemblyResolve += ResolveRedirect);

        public void OnRemove(PSModuleInfo psModuleInfo) => Register(false, () => AppDomain.CurrentDomain.AssemblyResolve -= ResolveRedirect);

        private static Assembly? ResolveRedirect(object? sender, ResolveEventArgs args)
        {
            var requested = new AssemblyName(args.Name);
            string? path = ShippedPath(requested, out AssemblyName? shipped);
            return path != null && (requested.Version == null || shipped!.Version >= requested.Version) ? Assembly.LoadFrom(path) : null;
        }
#else
        private static readonly DependencyLoadContext s_context = new DependencyLoadContext();

        public void OnImport()
        {
            Register(true, () => AssemblyLoadContext.Default.Resolving += ResolveIsolated);
            Argon2id.Isolated ??= IsolatedArgon2id();
        }

        public void OnRemove(PSModuleInfo psModuleInfo) => Register(false, () => AssemblyLoadContext.Default.Resolving -= ResolveIsolated);

        private static Assembly? ResolveIsolated(AssemblyLoadContext defaultContext, AssemblyName requested)
        {
            // Exactly our version: a request for another one is another module's, for its own copy.
            string? path = ShippedPath(requested, out AssemblyName? shipped);
            return path != null && requested.Version == shipped!.Version ? s_context.LoadFromAssemblyPath(path) : null;
        }

        /// <summary>
        /// Argon2id of a copy of VmQuiesce.Core loaded into our context, so that it runs on the BouncyCastle we ship: all
        /// BouncyCastle 2.x share assembly version 2.0.0.0, and the default context answers a request for it with any
        /// copy another module loaded first, whatever its file version (issue 18).
        /// </summary>
        private static Func<char[], byte[], int, int, int, int, byte[]> IsolatedArgon2id()
        {
            Assembly core = s_context.LoadFromAssemblyPath(typeof(Argon2id).Assembly.Location);
            MethodInfo compute = core.GetType(typeof(Argon2id).FullName!, throwOnError: true)!.GetMethod(nameof(Argon2id.Compute))!;
            return (Func<char[], byte[], int, int, int, int, byte[]>)compute.CreateDelegate(typeof(Func<char[], byte[], int, int, int, int, byte[]>));
        }

        /// <summary>VmQuiesce's third-party assemblies, and what they reference that the module's folder holds.</summary>
        private sealed class DependencyLoadContext : AssemblyLoadContext
        {
            public DependencyLoadContext()
                : base("VmQuiesce.Dependencies", isCollectible: false)
            {
            }

            protected override Assembly? Load(AssemblyName assemblyName) =>
                ShippedPath(assemblyName, out _) is string path ? LoadFromAssemblyPath(path) : null;
        }
#endif

        /// <summary>
        /// The third-party assembly of this simple name and publisher in the module's folder, or null. A simple
        /// name is a file name, never a path; VmQuiesce's own assemblies are left to PowerShell.
        /// </summary>
        private static string? ShippedPath(AssemblyName requested, out AssemblyName? shipped)
        {
            shipped = null;
            string? name = requested.Name;
            if (string.IsNullOrEmpty(name) || name!.IndexOfAny(new[] { '/', '\\' }) >= 0 ||
                name.StartsWith(OwnAssemblyPrefix, StringComparison.OrdinalIgnoreCase))
            {
                return null;
            }

            string path = Path.Combine(s_folder, name + ".dll");
            if (!File.Exists(path))
            {
                path = Path.Combine(s_portableFolder, name + ".dll");
                if (!File.Exists(path))
                {
                    return null;
                }
            }

            shipped = Referenced(name) ?? AssemblyName.GetAssemblyName(path);
            return Convert.ToBase64String(shipped.GetPublicKeyToken() ?? Array.Empty<byte>()) ==
                Convert.ToBase64String(requested.GetPublicKeyToken() ?? Array.Empty<byte>()) ? path : null;
        }

        /// <summary>
        /// The name (version, publisher) VmQuiesce's own assemblies reference <paramref name="name"/> by, or null. The build
        /// ships those very files (a Pester test holds it to that), and reading a reference costs nothing, where reading a
        /// shipped file's name (AssemblyName.GetAssemblyName) first loads System.Reflection.Metadata and compiles its
        /// generics: 10-15 ms of CPU on two cores, in the middle of a backup's copy, whose first chunk loads ZstdSharp.
        /// </summary>
        private static AssemblyName? Referenced(string name) =>
            s_references.Value.FirstOrDefault(reference => string.Equals(reference.Name, name, StringComparison.OrdinalIgnoreCase));

        private static string PortableFolder(string folder)
        {
            string name = Path.GetFileName(folder);
            int host = name.IndexOf('-');
            return host < 0 ? folder : Path.Combine(Path.GetDirectoryName(folder) ?? string.Empty, name.Substring(0, host));
        }

        private static void Register(bool register, Action change)
        {
            lock (s_sync)
            {
                if (s_registered != register)
                {
                    change();
                    s_registered = register;
                }
            }
        }
    }
}
