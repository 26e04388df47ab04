using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using VmQuiesce.Core.Native;

namespace VmQuiesce.Core.Sources.WindowsVss.Native
{
    /// <summary>
    /// vssapi.dll's flat exports. Vista and later export CreateVssBackupComponentsInternal; older systems
    /// export only C++-mangled names with another vtable layout, so a missing export is "unsupported".
    /// </summary>
    [SupportedOSPlatform("windows")]
    internal static unsafe class VssApiLibrary
    {
        private static readonly object Gate = new object();
        private static IntPtr _create;
        private static IntPtr _freeSnapshotProperties;

        /// <summary>CreateVssBackupComponentsInternal: a new IVssBackupComponents.</summary>
        public static IntPtr CreateBackupComponents()
        {
            Load();
            IntPtr instance = IntPtr.Zero;
            Com.Check(((delegate* unmanaged[Stdcall]<IntPtr*, int>)_create)(&instance), "CreateVssBackupComponents");
            return instance;
        }

        /// <summary>VssFreeSnapshotPropertiesInternal (or VssFreeSnapshotProperties): frees the strings of a VSS_SNAPSHOT_PROP.</summary>
        public static void FreeSnapshotProperties(VssSnapshotProp* properties) =>
            ((delegate* unmanaged[Stdcall]<VssSnapshotProp*, void>)_freeSnapshotProperties)(properties);

        private static void Load()
        {
            lock (Gate)
            {
                if (_create != IntPtr.Zero)
                {
                    return;
                }

                string path = Path.Combine(Environment.SystemDirectory, "vssapi.dll");
                IntPtr module = Kernel32.LoadLibraryW(path);
                if (module == IntPtr.Zero)
                {
                    int error = Marshal.GetLastWin32Error();
                    throw new VmQuiesceException("VssUnavailable", FailureKind.NotSupported,
                        $"Could not load '{path}' (Windows error {error}: {new System.ComponentModel.Win32Exception(error).Message}); the Volume Shadow Copy API is not available.", path);
                }

                IntPtr free = Kernel32.GetProcAddress(module, "VssFreeSnapshotPropertiesInternal");
                if (free == IntPtr.Zero)
                {
                    free = Kernel32.GetProcAddress(module, "VssFreeSnapshotProperties");
                }

                IntPtr create = Kernel32.GetProcAddress(module, "CreateVssBackupComponentsInternal");
                if (create == IntPtr.Zero || free == IntPtr.Zero)
                {
                    throw new VmQuiesceException("UnsupportedWindowsVersion", FailureKind.NotSupported,
                        $"'{path}' does not export CreateVssBackupComponentsInternal and VssFreeSnapshotProperties: this Windows version is not supported (Windows Vista / Server 2008 or later is needed).", path);
                }

                _freeSnapshotProperties = free;
                _create = create;
            }
        }
    }

    /// <summary>VSS_SNAPSHOT_PROP.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct VssSnapshotProp
    {
        public Guid SnapshotId;
        public Guid SnapshotSetId;
        public int SnapshotsCount;
        public IntPtr SnapshotDeviceObject;
        public IntPtr OriginalVolumeName;
        public IntPtr OriginatingMachine;
        public IntPtr ServiceMachine;
        public IntPtr ExposedName;
        public IntPtr ExposedPath;
        public Guid ProviderId;
        public int SnapshotAttributes;
        public long CreationTimestamp;
        public int Status;
    }

    /// <summary>VSS_COMPONENTINFO; the four flags are C++ bool (one byte each).</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct VssComponentInfo
    {
        public int Type;
        public IntPtr LogicalPath;
        public IntPtr ComponentName;
        public IntPtr Caption;
        public IntPtr Icon;
        public uint IconSize;
        public byte RestoreMetadata;
        public byte NotifyOnBackupComplete;
        public byte Selectable;
        public byte SelectableForRestore;
        public uint ComponentFlags;
        public uint FileCount;
        public uint DatabaseCount;
        public uint LogFileCount;
        public uint DependencyCount;
    }
}
