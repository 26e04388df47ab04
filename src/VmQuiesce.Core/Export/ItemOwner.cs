using System;
using System.Globalization;
using System.Runtime.InteropServices;
using VmQuiesce.Core.Native;
using VmQuiesce.Core.Platform;

namespace VmQuiesce.Core.Export
{
    /// <summary>
    /// The owner and group Restore-VmBackupItem gives every copy (-Owner, -Group) in place of the guest's numeric ids,
    /// which on the host may be another account's (as tar --no-same-owner and rsync --chown do). Linux only, as mounts are.
    /// </summary>
    public sealed class ItemOwner
    {
        private ItemOwner(uint? uid, uint? gid)
        {
            Uid = uid;
            Gid = gid;
        }

        /// <summary>The user id every copy gets; null keeps the guest's.</summary>
        public uint? Uid { get; }

        /// <summary>The group id every copy gets; null keeps the guest's.</summary>
        public uint? Gid { get; }

        /// <summary>
        /// Looks up <paramref name="user"/> (a name, or a numeric user id) and <paramref name="group"/> (a name, or a numeric
        /// group id) on this host, before anything is copied; null when neither is given (the guest's ids are kept). Without
        /// a group, the user's own group (as `chown user:` gives). Throws ItemOwnerNotFound or ItemGroupNotFound.
        /// </summary>
        public static ItemOwner? Resolve(string? user, string? group)
        {
            if (user == null && group == null)
            {
                return null;
            }

            uint? uid = null, primaryGid = null;
            if (user != null)
            {
                IntPtr entry = Libc.getpwnam(user);
                if (entry == IntPtr.Zero && Id(user) is uint number)
                {
                    entry = Libc.getpwuid(number);
                    uid = number;
                }

                if (entry != IntPtr.Zero)
                {
                    Libc.Passwd passwd = Marshal.PtrToStructure<Libc.Passwd>(entry);
                    (uid, primaryGid) = (passwd.Uid, passwd.Gid);
                }
                else if (uid == null)
                {
                    throw new VmQuiesceException("ItemOwnerNotFound", FailureKind.ObjectNotFound,
                        $"The user '{FileNameText.Printable(user)}' (-Owner) does not exist on this host; expected a user name or a numeric user id such as 1000. Nothing was copied.", user)
                    {
                        Remedy = "Pass a user of this host ('getent passwd' lists them) or a numeric user id.",
                    };
                }
            }

            uint? gid = primaryGid;
            if (group != null)
            {
                IntPtr entry = Libc.getgrnam(group);
                gid = entry != IntPtr.Zero ? Marshal.PtrToStructure<Libc.Group>(entry).Gid
                    : Id(group) ?? throw new VmQuiesceException("ItemGroupNotFound", FailureKind.ObjectNotFound,
                        $"The group '{FileNameText.Printable(group)}' (-Group) does not exist on this host; expected a group name or a numeric group id such as 1000. Nothing was copied.", group)
                    {
                        Remedy = "Pass a group of this host ('getent group' lists them) or a numeric group id.",
                    };
            }
            else if (gid == null)
            {
                throw new VmQuiesceException("ItemGroupNotFound", FailureKind.ObjectNotFound,
                    $"The user id {uid} (-Owner) has no account on this host, so no group of its own to give the copies; expected -Group too. Nothing was copied.", user)
                {
                    Remedy = $"Add -Group with a group name or a numeric group id: -Owner {uid} -Group {uid}.",
                };
            }

            return new ItemOwner(uid, gid);
        }

        /// <summary>The owner and group of the copy of a guest's file or folder of <paramref name="stat"/>.</summary>
        internal (uint Uid, uint Gid) Of(FileStatus stat) => (Uid ?? stat.Uid, Gid ?? stat.Gid);

        /// <summary>A numeric id; never -1 (4294967295), which chown reads as "leave as it is".</summary>
        private static uint? Id(string text) =>
            uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out uint id) && id != uint.MaxValue ? id : (uint?)null;
    }
}
