using System;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Text;
using Microsoft.Win32.SafeHandles;

namespace VmQuiesce.Core.Native
{
    /// <summary>kernel32.dll: files by device path, modules, volumes, handles and local memory.</summary>
    [SupportedOSPlatform("windows")]
    internal static class Kernel32
    {
        private const string Library = "kernel32.dll";

        public const uint GenericRead = 0x80000000;
        public const int FileShareAll = 0x1 | 0x2 | 0x4;
        public const int OpenExisting = 3;
        public const int FileFlagSequentialScan = 0x08000000;
        public const int FileFlagBackupSemantics = 0x02000000;
        public const int FileShareRead = 0x1;
        public const int FileShareReadWrite = 0x1 | 0x2;
        public const int FileFlagOpenReparsePoint = 0x00200000;

        /// <summary>FILE_INFO_BY_HANDLE_CLASS.FileAttributeTagInfo.</summary>
        public const int FileAttributeTagInfo = 9;

        /// <summary>FILE_INFO_BY_HANDLE_CLASS.FileIdInfo (Windows 8 and Server 2012 on).</summary>
        public const int FileIdInfo = 18;

        [StructLayout(LayoutKind.Sequential)]
        public struct ByHandleFileInformation
        {
            public uint FileAttributes;
            public uint CreationTimeLow;
            public uint CreationTimeHigh;
            public uint LastAccessTimeLow;
            public uint LastAccessTimeHigh;
            public uint LastWriteTimeLow;
            public uint LastWriteTimeHigh;
            public uint VolumeSerialNumber;
            public uint FileSizeHigh;
            public uint FileSizeLow;
            public uint NumberOfLinks;
            public uint FileIndexHigh;
            public uint FileIndexLow;
        }

        /// <summary>FILE_ATTRIBUTE_TAG_INFO.</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct FileAttributeTagInformation
        {
            public uint FileAttributes;
            public uint ReparseTag;
        }

        /// <summary>FILE_ID_INFO: FILE_ID_128's 16 bytes read as two little-endian halves.</summary>
        [StructLayout(LayoutKind.Sequential)]
        public struct FileIdInformation
        {
            public ulong VolumeSerialNumber;
            public ulong FileIdLow;
            public ulong FileIdHigh;
        }

        [DllImport(Library, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool GetFileInformationByHandleEx(SafeFileHandle file, int informationClass, out FileAttributeTagInformation information, int bufferSize);

        [DllImport(Library, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool GetFileInformationByHandleEx(SafeFileHandle file, int informationClass, out FileIdInformation information, int bufferSize);

        [DllImport(Library, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool GetFileInformationByHandle(SafeFileHandle file, out ByHandleFileInformation information);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        public static extern SafeFileHandle CreateFileW(string fileName, uint desiredAccess, int shareMode, IntPtr securityAttributes,
            int creationDisposition, int flagsAndAttributes, IntPtr templateFile);

        [DllImport(Library, ExactSpelling = true, SetLastError = true)]
        public static extern SafeFileHandle ReOpenFile(SafeFileHandle originalFile, uint desiredAccess, int shareMode, int flagsAndAttributes);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        public static extern IntPtr LoadLibraryW(string fileName);

        [DllImport(Library, CharSet = CharSet.Ansi, ExactSpelling = true, BestFitMapping = false, ThrowOnUnmappableChar = true)]
        public static extern IntPtr GetProcAddress(IntPtr module, string procName);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool GetVolumePathNameW(string fileName, StringBuilder volumePathName, int bufferLength);

        [DllImport(Library, CharSet = CharSet.Unicode, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool GetVolumeNameForVolumeMountPointW(string volumeMountPoint, StringBuilder volumeName, int bufferLength);

        [DllImport(Library, ExactSpelling = true, SetLastError = true)]
        [return: MarshalAs(UnmanagedType.Bool)]
        public static extern bool CloseHandle(IntPtr handle);

        [DllImport(Library, ExactSpelling = true)]
        public static extern IntPtr LocalFree(IntPtr memory);
    }
}
