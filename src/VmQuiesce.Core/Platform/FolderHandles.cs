using System;
using System.IO;

namespace VmQuiesce.Core.Platform
{
    /// <summary>
    /// The handle layer under the checks of folders and files on Windows (CreateFileW, GetFileInformationByHandleEx,
    /// GetSecurityInfo, SetSecurityInfo, ReOpenFile): a seam, so that what is refused on the way to a folder or as a file to
    /// read, and which handle a DACL is read and written or a file read through, is proven on any OS.
    /// </summary>
    internal interface IFolderHandles
    {
        /// <summary>
        /// The entry at <paramref name="path"/>, opened with <paramref name="access"/> without following a reparse point there,
        /// and shared for reading and writing, not deleting, so that it cannot be renamed or deleted while open (when
        /// <paramref name="access"/> holds a right share modes are checked against); null when nothing is there. Throws
        /// IOException when it cannot be opened.
        /// </summary>
        IFolderHandle? Open(string path, uint access);
    }

    /// <summary>One entry held open: what it is, as its handle says, and its DACL or data through that same handle.</summary>
    internal interface IFolderHandle : IDisposable
    {
        /// <summary>FILE_ATTRIBUTE_* (FILE_ATTRIBUTE_TAG_INFO.FileAttributes).</summary>
        uint Attributes { get; }

        /// <summary>The reparse tag, when <see cref="Attributes"/> holds FILE_ATTRIBUTE_REPARSE_POINT.</summary>
        uint ReparseTag { get; }

        /// <summary>
        /// FILE_ID_INFO: the volume's 64-bit serial number and the 128-bit file id; null when the file system does not answer
        /// it (FAT, some network shares, Windows before 8). Throws IOException for any other failure.
        /// </summary>
        (ulong Volume, ulong IdHigh, ulong IdLow)? ReadFileId();

        /// <summary>BY_HANDLE_FILE_INFORMATION: the volume's 32-bit serial number and the 64-bit file index. Throws IOException.</summary>
        (uint Volume, ulong Index) ReadFileIndex();

        /// <summary>
        /// This file, opened again for reading (shared for reading only) as any program opens it: a reparse point that keeps its
        /// name (a deduplicated file, a cloud placeholder, a WOF-compressed file) is read through the filter that keeps its data,
        /// which this handle, opened on the reparse point itself, would bypass, reading the stub. Read only when the new open
        /// reaches this same file (its file id): a name swapped meanwhile is not followed. The stream outlives this handle.
        /// Throws IOException (UnauthorizedAccessException when access is denied).
        /// </summary>
        FileStream OpenForReading();

        /// <summary>The DACL's bytes; throws IOException, also for a NULL DACL (which is never edited).</summary>
        byte[] ReadDacl();

        void WriteDacl(byte[] dacl);

        /// <summary>
        /// Gives the entry to <paramref name="owner"/> (a binary SID) and replaces its DACL by <paramref name="dacl"/>, protected:
        /// nothing inherited from the folder above (SetSecurityInfo, OWNER and PROTECTED_DACL). Throws IOException.
        /// </summary>
        void WriteOwnerAndProtectedDacl(byte[] owner, byte[] dacl);
    }
}
