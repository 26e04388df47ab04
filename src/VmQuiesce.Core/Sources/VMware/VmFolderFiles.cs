using System;
using System.Collections.Generic;
using System.IO;
using Microsoft.Win32.SafeHandles;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository;

namespace VmQuiesce.Core.Sources.VMware
{
    /// <summary>A file of the VM folder that belongs in the backup, and where it is read.</summary>
    internal sealed class VmFolderFile
    {
        public VmFolderFile(string relative, string full, string readPath, FileOwner? owner = null, SafeFileHandle? handle = null, bool keptByFilter = false)
        {
            KeptByFilter = keptByFilter;
            Relative = relative;
            Full = full;
            ReadPath = readPath;
            Owner = owner;
            Handle = handle;
        }

        /// <summary>The path inside the VM folder, with '/'.</summary>
        public string Relative { get; }

        /// <summary>Where the file is in the VM folder (what a restore writes back).</summary>
        public string Full { get; }

        /// <summary>
        /// Where it is read: on Linux this process's own descriptor of the file as it was found (/proc/&lt;pid&gt;/fd/&lt;n&gt;),
        /// elsewhere <see cref="Full"/> (on Windows held so that the path keeps leading to the file found: see
        /// <see cref="VmwareVmFolder.OpenFrozenFiles"/>).
        /// </summary>
        public string ReadPath { get; }

        /// <summary>
        /// Linux: who owns the file and its permissions, from the descriptor held (the file read, whatever is linked in its
        /// place since); elsewhere null.
        /// </summary>
        public FileOwner? Owner { get; }

        /// <summary>Windows: the handle the file is held by (<see cref="VmFolderFiles"/> owns it); null elsewhere.</summary>
        public SafeFileHandle? Handle { get; }

        /// <summary>
        /// Windows: whether <see cref="Handle"/> is on a reparse point that keeps its name (a deduplicated file, a cloud
        /// placeholder, a compressed file), whose data only an ordinary open reads: the handle reads the stub.
        /// </summary>
        public bool KeptByFilter { get; }
    }

    /// <summary>
    /// The VM folder's files that belong in the backup (<see cref="VmwareVmFolder.OpenFrozenFiles"/>), each held open as
    /// it was found until disposed. Whoever can write the VM folder could swap a file or a subfolder for a link to a host
    /// file after it was listed; reading through the held descriptor still reads the file that was listed.
    /// </summary>
    internal sealed class VmFolderFiles : IDisposable
    {
        private readonly List<SafeFileHandle> _handles;

        public VmFolderFiles(IReadOnlyList<VmFolderFile> files, List<SafeFileHandle> handles)
        {
            Files = files;
            _handles = handles;
        }

        /// <summary>Sorted by <see cref="VmFolderFile.Relative"/> (ordinal).</summary>
        public IReadOnlyList<VmFolderFile> Files { get; }

        /// <summary>
        /// Copies <paramref name="file"/> (a small configuration file) to the new file <paramref name="copy"/>, readable by
        /// this user only; a file larger than <paramref name="maxBytes"/> is refused (an IOException), not copied.
        /// </summary>
        public static void CopySmall(VmFolderFile file, string copy, long maxBytes)
        {
            // Windows: through the held handle, since configuration files are held shareable and may be swapped by path; one kept
            // by a filter through an ordinary open of its path, read only when it reaches the file held.
            using FileStream source = file.Handle == null
                ? new FileStream(file.ReadPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete)
                : file.KeptByFilter && HostPlatform.IsWindows
                ? WindowsFolderHandles.OpenThroughFilter(file.Handle, file.Full, Kernel32.FileShareAll)
                : new FileStream(new SafeFileHandle(file.Handle.DangerousGetHandle(), ownsHandle: false), FileAccess.Read, bufferSize: 1);
            if (source.Length > maxBytes)
            {
                throw new UnexpectedFileException(file.Full, $"{source.Length:N0} bytes long", $"at most {maxBytes:N0} bytes");
            }

            ArraySegment<byte> bytes = RegularFile.ReadBytesToEnd(source, file.Full, maxBytes);
            using FileStream target = RegularFile.CreateNew(copy);
            target.Write(bytes.Array!, bytes.Offset, bytes.Count);
        }

        public void Dispose()
        {
            foreach (SafeFileHandle handle in _handles)
            {
                handle.Dispose();
            }

            _handles.Clear();
        }
    }
}
