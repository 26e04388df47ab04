using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Net;
using System.Net.Sockets;
using System.Security;
using Amazon.S3;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Repository.Storage;
using VmQuiesce.Core.Tests.TestGuest;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// A real Ceph RADOS Gateway (Debian's radosgw, one mon, one memstore OSD) started for the test run by
    /// tests/s3/start-rgw.sh on free loopback ports and purged at the end; build.ps1 installs its packages.
    /// Tests get a fresh bucket each, so they never see each other's objects.
    /// </summary>
    public sealed class RgwServer : IDisposable
    {
        public const string VariableName = "VMQUIESCE_TEST_S3";

        /// <summary>Set to 1 (CI does) to make an unavailable server fail the S3 tests instead of skipping them.</summary>
        public const string RequireVariableName = "VMQUIESCE_REQUIRE_S3";

        private static readonly Lazy<string?> s_unavailableReason = new Lazy<string?>(FindUnavailableReason);
        private readonly string _folder;
        private int _buckets;

        public RgwServer()
        {
            if (UnavailableReason is string reason)
            {
                if (IsRequired)
                {
                    throw new InvalidOperationException($"{RequireVariableName}=1 requires the real S3 server, and it is unavailable: {reason}");
                }

                _folder = string.Empty;
                return;
            }

            _folder = Path.Combine(Path.GetTempPath(), "vmq-rgw-" + Guid.NewGuid().ToString("N").Substring(0, 8));
            var environment = new Dictionary<string, string>(StringComparer.Ordinal);
            for (int attempt = 1; ; attempt++)
            {
                int port = FreePortPair();
                HostCommandResult result = HostCommand.Run("/bin/bash", new[] { "-c", "RGW_NO_INSTALL=1 RGW_OWNER_PID=$3 exec /bin/bash \"$0\" \"$1\" \"$2\"", Script("start-rgw.sh"), _folder, port.ToString(System.Globalization.CultureInfo.InvariantCulture), Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture) }, TimeSpan.FromSeconds(180));
                if (result.ExitCode == 0)
                {
                    foreach (string line in result.StandardOutput.Split('\n').Where(line => line.Contains('=')))
                    {
                        environment[line.Substring(0, line.IndexOf('='))] = line.Substring(line.IndexOf('=') + 1).Trim();
                    }

                    break;
                }

                // Another test run may have taken the port between our probe and the gateway's bind.
                if (attempt == 3 || !result.StandardError.Contains("in use"))
                {
                    Stop();
                    throw new InvalidOperationException($"start-rgw.sh failed with exit code {result.ExitCode}: {result.StandardError.Trim()}");
                }

                Stop();
            }

            Endpoint = new Uri(environment["S3_ENDPOINT"]);
            AccessKeyId = environment["AWS_ACCESS_KEY_ID"];
            SecretAccessKey = environment["AWS_SECRET_ACCESS_KEY"];
        }

        /// <summary>Null when the server runs here; otherwise why it cannot.</summary>
        public static string? UnavailableReason => s_unavailableReason.Value;

        /// <summary>What S3 tests skip with: the reason, unless the server is required.</summary>
        public static string? SkipReason => IsRequired ? null : UnavailableReason;

        public Uri Endpoint { get; } = new Uri("http://127.0.0.1:1");

        public string AccessKeyId { get; } = string.Empty;

        public string SecretAccessKey { get; } = string.Empty;

        private static bool IsRequired => Environment.GetEnvironmentVariable(RequireVariableName) == "1";

        /// <summary>Settings that reach this server with its keys (given as a PSCredential would give them).</summary>
        public S3ConnectionSettings Settings(string? secret = null) => new S3ConnectionSettings
        {
            Endpoint = Endpoint,
            AccessKeyId = AccessKeyId,
            SecretAccessKey = Secure(secret ?? SecretAccessKey),
        };

        /// <summary>A new, empty bucket.</summary>
        public string NewBucket()
        {
            string bucket = $"vmq-test-{System.Threading.Interlocked.Increment(ref _buckets)}-{Guid.NewGuid().ToString("N").Substring(0, 8)}";
            using var client = new AmazonS3Client(AccessKeyId, SecretAccessKey, new AmazonS3Config
            {
                ServiceURL = Endpoint.AbsoluteUri,
                ForcePathStyle = true,
                AuthenticationRegion = "us-east-1",
                RequestChecksumCalculation = Amazon.Runtime.RequestChecksumCalculation.WHEN_REQUIRED,
                ResponseChecksumValidation = Amazon.Runtime.ResponseChecksumValidation.WHEN_REQUIRED,
            });
            client.PutBucketAsync(bucket).GetAwaiter().GetResult();
            return bucket;
        }

        /// <summary>A storage over a new bucket (and <paramref name="prefix"/>) of this server.</summary>
        public S3ObjectStorage NewStorage(string prefix = "repo") =>
            new S3ObjectStorage(S3RepositoryAddress.Parse($"s3://{NewBucket()}/{prefix}"), Settings());

        public void Dispose()
        {
            if (_folder.Length > 0)
            {
                Stop();
            }
        }

        internal static SecureString Secure(string text)
        {
            var secure = new SecureString();
            foreach (char c in text)
            {
                secure.AppendChar(c);
            }

            secure.MakeReadOnly();
            return secure;
        }

        private void Stop()
        {
            HostCommand.Run("/bin/bash", new[] { Script("stop-rgw.sh"), _folder, "--purge" }, TimeSpan.FromSeconds(60));
            if (Directory.Exists(_folder))
            {
                Directory.Delete(_folder, recursive: true);
            }
        }

        private static string Script(string name) => Path.Combine(AppContext.BaseDirectory, "s3", name);

        /// <summary>A loopback port that is free, with the next one (the monitor's) free too.</summary>
        private static int FreePortPair()
        {
            for (int attempt = 0; ; attempt++)
            {
                var first = new TcpListener(IPAddress.Loopback, 0);
                first.Start();
                int port = ((IPEndPoint)first.LocalEndpoint).Port;
                try
                {
                    var second = new TcpListener(IPAddress.Loopback, port + 1);
                    second.Start();
                    second.Stop();
                    return port;
                }
                catch (SocketException) when (attempt < 20)
                {
                }
                finally
                {
                    first.Stop();
                }
            }
        }

        private static string? FindUnavailableReason()
        {
            if (!HostPlatform.IsLinux)
            {
                return "The S3 test server (Ceph RGW) runs on Linux only.";
            }

            string? folder = Environment.GetEnvironmentVariable(VariableName);
            if (!string.IsNullOrEmpty(folder) && File.Exists(Path.Combine(folder, "unavailable.txt")))
            {
                return File.ReadAllText(Path.Combine(folder, "unavailable.txt")).Trim();
            }

            if (!File.Exists("/usr/bin/radosgw") || !File.Exists("/usr/bin/ceph-osd") || !File.Exists("/usr/bin/ceph-mon"))
            {
                return "radosgw, ceph-mon and ceph-osd are not installed: run through build.ps1 -Task Test as root on Debian (it installs them), or apt-get install --no-install-recommends radosgw ceph-mon ceph-osd.";
            }

            return VmQuiesce.Core.Native.Libc.geteuid() == 0 ? null : "The S3 test server (Ceph RGW) must be started as root.";
        }
    }

    [CollectionDefinition(Name)]
    public sealed class RgwCollection : ICollectionFixture<RgwServer>
    {
        public const string Name = "Ceph RGW";
    }

    /// <summary>A fact that needs the real S3 server: skipped, with the reason, where it is unavailable (failed where it is required).</summary>
    public sealed class RgwFactAttribute : FactAttribute
    {
        public RgwFactAttribute()
        {
            if (RgwServer.SkipReason is string reason)
            {
                Skip = reason;
            }
        }
    }
}
