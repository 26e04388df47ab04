#if NET7_0_OR_GREATER
using System.IO;
using VmQuiesce.Core.Sources.VMware;
using VmQuiesce.Core.Tests.Nbd;
using VmQuiesce.Core.Tests.Qemu;
using Xunit;

namespace VmQuiesce.Core.Tests.VMware
{
    /// <summary>The disk chain of monolithic sparse vmdks that a real tool made (qemu-img), not only the headers the tests build by hand.</summary>
    public sealed class SparseVmdkToolTests
    {
        [NbdToolFact("qemu-img")]
        public void The_chain_of_a_sparse_delta_made_by_qemu_img_reaches_its_parent_in_another_folder()
        {
            using var folder = new TempFolder();
            string template = Directory.CreateDirectory(folder.File("template")).FullName;
            string vm = Directory.CreateDirectory(folder.File("vm")).FullName;
            string baseDisk = Path.Combine(template, "base.vmdk");
            string delta = Path.Combine(vm, "data.vmdk");
            NbdTools.Run("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", baseDisk, "1M");
            NbdTools.Run("qemu-img", "create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", "-b", "../template/base.vmdk", "-F", "vmdk", delta);

            // Each sparse extent's embedded descriptor names the extent itself too; each file is listed once.
            Assert.Equal(new[] { delta, baseDisk }, VmwareVmFolder.DiskChainFiles(delta));
            Assert.Equal(new[] { delta }, VmwareVmFolder.DiskFiles(delta));
        }
    }
}
#endif
