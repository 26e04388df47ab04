using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Logon.Windows;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Tests.Platform;
using Xunit;

namespace VmQuiesce.Core.Tests.Logon
{
    /// <summary>
    /// How a folder VmQuiesce made on Windows (the state folder of the password verifiers and host keys, a new repository) is
    /// given to Administrators, through the handle-layer seam (runs on any OS).
    /// </summary>
    public sealed class AdministratorsOnlyFolderSeamTests
    {
        private const uint FullControl = 0x001F01FF;

        /// <summary>A state folder below a folder of the temporary folder; none of it exists on disk.</summary>
        private static readonly string Folder = Path.GetFullPath(Path.Combine(Path.GetTempPath(), "vmq-state", "VmQuiesce"));

        private static readonly string Above = Path.GetDirectoryName(Folder)!;

        private readonly FolderHandlesInMemory _folders = new FolderHandlesInMemory();

        /// <summary>
        /// The owner and the protected DACL are written through the handle of the folder that was checked, while every folder
        /// above it is held (unrenamable): a junction planted after the check, at the folder or above it, cannot lead them elsewhere.
        /// </summary>
        [Fact]
        public void TheFolderIsGivenToAdministratorsThroughItsOwnHandleWhileEveryFolderAboveItIsHeld()
        {
            WindowsSecurity.RestrictToAdministrators(_folders, Folder + Path.DirectorySeparatorChar);

            List<string> chain = WindowsLogonBackendSeamTests.FoldersDownTo(Folder);
            Assert.Equal(chain.Take(chain.Count - 1).Append(Folder + " (DACL)"), _folders.Opened);
            Assert.Equal(chain, _folders.HeldWhenWritten);
            Assert.Equal(WindowsDacl.SidFromString("S-1-5-32-544"), _folders.Owners[Folder]);
            Assert.Equal(WindowsDaclTests.Acl((0, 0x03, FullControl, "S-1-5-32-544"), (0, 0x03, FullControl, "S-1-5-18")), _folders.Dacls[Folder]);
            Assert.Equal(new[] { Folder }, _folders.Protected);
            Assert.Empty(_folders.OpenNow);
        }

        [Theory]
        [MemberData(nameof(ReparseTags.RedirectingTheName), MemberType = typeof(ReparseTags))]
        public void AReparsePointThatRedirectsTheNameAtTheFolderOrAboveItIsRefusedAndNothingIsWritten(uint tag)
        {
            foreach (string where in new[] { Folder, Above })
            {
                var folders = new FolderHandlesInMemory();
                folders.ReparsePoint(where, tag);

                FolderTrustException refused = Assert.Throws<FolderTrustException>(() => WindowsSecurity.RestrictToAdministrators(folders, Folder));
                Assert.Equal(FolderProblem.Link, refused.Problem);
                Assert.Equal(where, refused.Folder);
                Assert.Contains($"'{where}' is {ReparsePoints.Describe(tag)}", refused.Message, StringComparison.Ordinal);
                Assert.Equal(0, folders.Writes);
                Assert.Empty(folders.Owners);
                Assert.Empty(folders.OpenNow);
            }
        }

        /// <summary>A state folder or repository in a OneDrive, deduplicated or container folder is restricted as any other.</summary>
        [Theory]
        [MemberData(nameof(ReparseTags.KeepingTheName), MemberType = typeof(ReparseTags))]
        public void AReparsePointThatKeepsTheNameIsNoObstacle(uint tag)
        {
            _folders.ReparsePoint(Above, tag);
            _folders.ReparsePoint(Folder, tag);

            WindowsSecurity.RestrictToAdministrators(_folders, Folder);
            Assert.Equal(new[] { Folder }, _folders.Protected);
        }

        [Fact]
        public void AFileOrNothingAtTheFolderOrAboveItIsRefusedAndNothingIsWritten()
        {
            _folders.File(Folder);
            Assert.Equal(FolderProblem.NotAFolder, Assert.Throws<FolderTrustException>(() => WindowsSecurity.RestrictToAdministrators(_folders, Folder)).Problem);
            _folders.Missing(Above);
            FolderTrustException missing = Assert.Throws<FolderTrustException>(() => WindowsSecurity.RestrictToAdministrators(_folders, Folder));
            Assert.Equal(FolderProblem.Missing, missing.Problem);
            Assert.Equal(Above, missing.Folder);
            Assert.Equal(0, _folders.Writes);
            Assert.Empty(_folders.OpenNow);
        }
    }
}
