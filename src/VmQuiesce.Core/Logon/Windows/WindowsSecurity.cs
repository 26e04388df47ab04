using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Text;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Logon.Windows
{
    /// <summary>SIDs, folder DACLs and effective-access checks through advapi32 and authz (no extra packages).</summary>
    [SupportedOSPlatform("windows")]
    internal static class WindowsSecurity
    {
        public const string AdministratorsSid = "S-1-5-32-544";

        private const string SystemSid = "S-1-5-18";

        /// <summary>
        /// Gives the folder to Administrators and lets only Administrators and SYSTEM in (full control, inherited by everything
        /// inside; nothing inherited from the folder above). The owner matters as much as the DACL: an owner may always rewrite
        /// the DACL, so a folder a standard user made first would stay theirs.
        /// </summary>
        public static void RestrictToAdministrators(string folder) => RestrictToAdministrators(new WindowsFolderHandles(), folder);

        /// <summary>
        /// <see cref="RestrictToAdministrators(string)"/> through <paramref name="handles"/>: the owner and DACL are written through
        /// the folder's own handle while it and every folder above it are held (<see cref="HeldFolder"/>, as the service logon's
        /// grant writes its entry), so a junction put in place of the folder, or of one above it, after its path was checked
        /// cannot lead them elsewhere. Throws <see cref="FolderTrustException"/> for a junction or other name surrogate there.
        /// </summary>
        internal static void RestrictToAdministrators(IFolderHandles handles, string folder)
        {
            using HeldFolder held = HeldFolder.Open(handles, VmFolders.FullPath(folder), HeldFolder.DaclAccess | HeldFolder.OwnerAccess);
            byte[] administrators = WindowsDacl.SidFromString(AdministratorsSid);
            held.Folder.WriteOwnerAndProtectedDacl(administrators, WindowsDacl.AllowingOnly(
                (administrators, WindowsDacl.FullControl, WindowsDacl.InheritedByFilesAndFolders),
                (WindowsDacl.SidFromString(SystemSid), WindowsDacl.FullControl, WindowsDacl.InheritedByFilesAndFolders)));
        }

        /// <summary>The rights the SID effectively holds on the folder (Authz, MAXIMUM_ALLOWED): groups, deny entries and inheritance included.</summary>
        public static uint EffectiveRights(string folder, byte[] sid)
        {
            uint status = Advapi32.GetNamedSecurityInfoW(folder, Advapi32.SeFileObject,
                Advapi32.OwnerSecurityInformation | Advapi32.GroupSecurityInformation | Advapi32.DaclSecurityInformation,
                out _, out _, out _, out _, out IntPtr descriptor);
            if (status != 0)
            {
                throw new IOException($"Cannot read the permissions of '{folder}': {Win32Error.Describe((int)status)}");
            }

            IntPtr manager = IntPtr.Zero;
            IntPtr context = IntPtr.Zero;
            IntPtr granted = Marshal.AllocHGlobal(4);
            IntPtr error = Marshal.AllocHGlobal(4);
            try
            {
                if (!Authz.AuthzInitializeResourceManager(Authz.AuthzRmFlagNoAudit, IntPtr.Zero, IntPtr.Zero, IntPtr.Zero, null, out manager))
                {
                    throw new IOException("AuthzInitializeResourceManager failed: " + Win32Error.Describe(Marshal.GetLastWin32Error()));
                }

                if (!Authz.AuthzInitializeContextFromSid(0, sid, manager, IntPtr.Zero, default, IntPtr.Zero, out context))
                {
                    throw new IOException("Cannot build the account's access context (AuthzInitializeContextFromSid): " + Win32Error.Describe(Marshal.GetLastWin32Error()));
                }

                var request = new Authz.AuthzAccessRequest { DesiredAccess = Authz.MaximumAllowed };
                var reply = new Authz.AuthzAccessReply { ResultListLength = 1, GrantedAccessMask = granted, Error = error };
                if (!Authz.AuthzAccessCheck(0, context, ref request, IntPtr.Zero, descriptor, IntPtr.Zero, 0, ref reply, IntPtr.Zero))
                {
                    throw new IOException("AuthzAccessCheck failed: " + Win32Error.Describe(Marshal.GetLastWin32Error()));
                }

                return (uint)Marshal.ReadInt32(granted);
            }
            finally
            {
                if (context != IntPtr.Zero)
                {
                    Authz.AuthzFreeContext(context);
                }

                if (manager != IntPtr.Zero)
                {
                    Authz.AuthzFreeResourceManager(manager);
                }

                Marshal.FreeHGlobal(granted);
                Marshal.FreeHGlobal(error);
                Kernel32.LocalFree(descriptor);
            }
        }

        public static string SidToString(byte[] sid)
        {
            if (!Advapi32.ConvertSidToStringSidW(sid, out IntPtr text))
            {
                throw new IOException("ConvertSidToStringSid failed: " + Win32Error.Describe(Marshal.GetLastWin32Error()));
            }

            try
            {
                return Marshal.PtrToStringUni(text)!;
            }
            finally
            {
                Kernel32.LocalFree(text);
            }
        }

        public static byte[] StringToSid(string text)
        {
            if (!Advapi32.ConvertStringSidToSidW(text, out IntPtr sid))
            {
                throw new IOException($"'{text}' is not a SID: " + Win32Error.Describe(Marshal.GetLastWin32Error()));
            }

            try
            {
                byte[] bytes = new byte[Advapi32.GetLengthSid(sid)];
                Marshal.Copy(sid, bytes, 0, bytes.Length);
                return bytes;
            }
            finally
            {
                Kernel32.LocalFree(sid);
            }
        }

        /// <summary>The account name and domain of a SID, localized ("Administrators", "Administratoren", ...).</summary>
        public static (string Name, string Domain) AccountOf(byte[] sid)
        {
            int nameLength = 256;
            int domainLength = 256;
            var name = new StringBuilder(nameLength);
            var domain = new StringBuilder(domainLength);
            if (!Advapi32.LookupAccountSidW(null, sid, name, ref nameLength, domain, ref domainLength, out _))
            {
                throw new IOException("LookupAccountSid failed: " + Win32Error.Describe(Marshal.GetLastWin32Error()));
            }

            return (name.ToString(), domain.ToString());
        }
    }
}
