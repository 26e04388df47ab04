using System;
using System.Collections.Concurrent;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Nbd;
using VmQuiesce.Core.Tests.Qemu;

namespace VmQuiesce.Core.Tests.Nbd
{
    /// <summary>An <see cref="NbdServer"/> serving one backend as "disk" on a unix socket in a temporary folder, collecting what it reports.</summary>
    public sealed class ServedExport : IDisposable
    {
        public const string ExportName = "disk";
        private readonly TempFolder _folder = new TempFolder();

        public ServedExport(INbdExportBackend backend, NbdServerOptions? options = null, string exportName = ExportName)
        {
            options ??= new NbdServerOptions();
            options.OnError = Errors.Enqueue;
            Server = NbdServer.Start(NbdEndpoint.UnixSocket(_folder.File("nbd.sock")), new[] { new NbdExport(exportName, backend) }, options);
            Name = exportName;
        }

        public NbdServer Server { get; }

        public string Name { get; }

        public NbdEndpoint Endpoint => Server.Endpoint;

        public string Uri => Server.GetUri(Name);

        public ConcurrentQueue<NbdServerError> Errors { get; } = new ConcurrentQueue<NbdServerError>();

        public string Folder => _folder.Path;

        public string ErrorText => string.Join(Environment.NewLine, Errors.Select(e => e.ToString()));

        public Task<NbdClient> ConnectAsync(params string[] contexts) => ConnectAsync(new NbdClientOptions(), contexts);

        public Task<NbdClient> ConnectAsync(NbdClientOptions options, params string[] contexts)
        {
            options.ExportName = Name;
            foreach (string context in contexts)
            {
                options.MetaContexts.Add(context);
            }

            return Task.Run(() => NbdClient.Connect(Endpoint, options));
        }

        /// <summary>Waits until the server has noticed that clients left (it learns it from their sockets, not from the test).</summary>
        public async Task WaitForConnectionCountAsync(int count)
        {
            DateTime deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (Server.ConnectionCount != count)
            {
                if (DateTime.UtcNow > deadline)
                {
                    throw new TimeoutException($"The server still has {Server.ConnectionCount} connection(s), not {count}.");
                }

                await Task.Delay(10);
            }
        }

        public void Dispose()
        {
            Server.Dispose();
            _folder.Dispose();
        }
    }
}
