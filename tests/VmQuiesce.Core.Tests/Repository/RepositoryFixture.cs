using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;
using System.Threading;
using VmQuiesce.Core.Backup;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Sources;
using VmQuiesce.Core.Sources.PlainImage;

namespace VmQuiesce.Core.Tests.Repository
{
    /// <summary>A temp folder with a small-chunk repository and helpers to make files and back them up.</summary>
    internal sealed class RepositoryFixture : IDisposable
    {
        public const int ChunkSize = 64 * 1024;

        public RepositoryFixture()
        {
            Root = Path.Combine(Path.GetTempPath(), "vmq-repo-tests-" + Guid.NewGuid().ToString("N"));
            Directory.CreateDirectory(Root);
            RepositoryPath = Path.Combine(Root, "repo");
            Repository = BackupRepository.OpenOrCreate(RepositoryPath, ChunkSize);
        }

        public string Root { get; }

        public string RepositoryPath { get; }

        public BackupRepository Repository { get; }

        public static byte[] Random(int length, int seed)
        {
            var bytes = new byte[length];
            new Random(seed).NextBytes(bytes);
            return bytes;
        }

        public static byte[] Concat(params byte[][] parts) => parts.SelectMany(part => part).ToArray();

        public static string Sha256Of(string path)
        {
            using var sha = SHA256.Create();
            using var file = File.OpenRead(path);
            return ChunkStore.ToHex(sha.ComputeHash(file));
        }

        /// <summary>
        /// The schema-2 whole-file digest of a file, written from the format's definition independently of
        /// the product: SHA-256 over each chunk's SHA-256 hex (or "zero") and a line feed.
        /// </summary>
        public static string ChunkListDigestOf(string path, int chunkSize = ChunkSize) =>
            Convert.ToHexString(SHA256.HashData(System.Text.Encoding.ASCII.GetBytes(ChunkList(path, chunkSize)))).ToLowerInvariant();

        private static string ChunkList(string path, int chunkSize)
        {
            byte[] content = File.ReadAllBytes(path);
            var list = new System.Text.StringBuilder();
            for (int offset = 0; offset < content.Length; offset += chunkSize)
            {
                byte[] chunk = content.Skip(offset).Take(chunkSize).ToArray();
                list.Append(chunk.All(b => b == 0) ? "zero" : Convert.ToHexString(SHA256.HashData(chunk)).ToLowerInvariant()).Append('\n');
            }

            return list.ToString();
        }

        /// <summary>
        /// The schema-3 whole-file digest, from the format's definition: SHA-256 over the size in decimal and each
        /// chunk's SHA-256 hex (or "zero"), each followed by a line feed.
        /// </summary>
        public static string DigestOf(string path, int chunkSize = ChunkSize)
        {
            string list = new FileInfo(path).Length.ToString(System.Globalization.CultureInfo.InvariantCulture) + "\n" + ChunkList(path, chunkSize);
            return Convert.ToHexString(SHA256.HashData(System.Text.Encoding.ASCII.GetBytes(list))).ToLowerInvariant();
        }

        /// <summary>A new encrypted repository (a key of its own) in folder <paramref name="name"/> here.</summary>
        public BackupRepository NewEncrypted(string name) =>
            BackupRepository.OpenOrCreate(Path.Combine(Root, name), ChunkSize, global::VmQuiesce.Core.Repository.Keys.RepositoryKey.Generate());

        /// <summary>A disk of text (compressible: codec S inside an encrypted seal) and random chunks (raw inside it).</summary>
        public string WriteTextAndRandomDisk(string name, int seed) => WriteFile(name, Concat(
            System.Text.Encoding.ASCII.GetBytes(string.Concat(Enumerable.Repeat("MARKER-PLAINTEXT-TEXT ", 8000))),
            Random(3 * ChunkSize, seed)));

        /// <summary>The first file of <paramref name="point"/>, read back whole from <paramref name="repository"/>.</summary>
        public static byte[] ReadFirstFile(IRestorePointSource repository, RestorePoint point)
        {
            var content = new MemoryStream();
            new RestorePointReader(repository, point).Read(point.Files[0], (offset, buffer, length) =>
            {
                content.Position = offset;
                content.Write(buffer ?? new byte[length], 0, length);
            }, CancellationToken.None);
            return content.ToArray();
        }

        public string WriteFile(string name, byte[] content)
        {
            string path = Path.Combine(Root, name);
            File.WriteAllBytes(path, content);
            return path;
        }

        public RestorePoint BackUp(string vm, params string[] paths) => BackUp(Repository, vm, paths);

        /// <summary>A crash-consistent backup of plain image files into a folder or object storage.</summary>
        internal static RestorePoint BackUp(IBackupTarget repository, string vm, params string[] paths) =>
            new BackupEngine(repository, workers: 2).Run(new PlainImageSource(vm, paths), new QuiesceOptions { Required = Consistency.Crash }, null, CancellationToken.None).RestorePoint;

        public IReadOnlyList<string> ChunkFiles() =>
            Directory.EnumerateFiles(Path.Combine(RepositoryPath, "chunks"), "*", SearchOption.AllDirectories)
                .Where(path => !Path.GetFileName(path).StartsWith(".", StringComparison.Ordinal)).ToList();

        public void Dispose()
        {
            try
            {
                Directory.Delete(Root, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }
}
