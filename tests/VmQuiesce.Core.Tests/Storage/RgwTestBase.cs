using System;
using System.IO;
using VmQuiesce.Core.Repository.Keys;
using VmQuiesce.Core.Tests.Repository;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// What every test against the real Ceph RGW starts from: the shared server, a local folder of its own (disks,
    /// folder repositories), and host key files in a folder of this test run, never the host's.
    /// </summary>
    public abstract class RgwTestBase : IDisposable
    {
        protected const int Chunk = RepositoryFixture.ChunkSize;

        protected RgwTestBase(RgwServer server) => Server = server;

        protected RgwServer Server { get; }

        private protected RepositoryFixture Local { get; } = new RepositoryFixture();

        public void Dispose() => Local.Dispose();
    }
}
