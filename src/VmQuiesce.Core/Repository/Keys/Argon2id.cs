using System;
using System.Runtime.CompilerServices;
using Org.BouncyCastle.Crypto.Generators;
using Org.BouncyCastle.Crypto.Parameters;

namespace VmQuiesce.Core.Repository.Keys
{
    /// <summary>Argon2id (RFC 9106, version 1.3) from BouncyCastle: what turns a passphrase into the key that wraps a repository key.</summary>
    public static class Argon2id
    {
        /// <summary>
        /// Under PowerShell 7 the module sets this to <see cref="Compute"/> of a second copy of this assembly, loaded into
        /// VmQuiesce's own AssemblyLoadContext, where BouncyCastle is the copy VmQuiesce ships. Every BouncyCastle 2.x
        /// has assembly version 2.0.0.0, so another module's older copy, loaded first, would otherwise answer for ours
        /// (and an older one has no Argon2). Null elsewhere: <see cref="Compute"/> runs here.
        /// </summary>
        public static Func<char[], byte[], int, int, int, int, byte[]>? Isolated { get; set; }

        internal static byte[] Derive(char[] passphrase, byte[] salt, KdfCost cost, int length) =>
            Isolated is { } isolated
                ? isolated(passphrase, salt, cost.MemoryKiB, cost.Iterations, cost.Parallelism, length)
                : Compute(passphrase, salt, cost.MemoryKiB, cost.Iterations, cost.Parallelism, length);

        /// <summary>
        /// <paramref name="length"/> bytes of Argon2id over the passphrase (UTF-8). Never inlined: only this method names
        /// BouncyCastle's types, so only calling it (not <see cref="Derive"/>) binds this assembly's BouncyCastle.
        /// </summary>
        [MethodImpl(MethodImplOptions.NoInlining)]
        public static byte[] Compute(char[] passphrase, byte[] salt, int memoryKiB, int iterations, int parallelism, int length)
        {
            var generator = new Argon2BytesGenerator();
            generator.Init(new Argon2Parameters.Builder(Argon2Parameters.Argon2id)
                .WithVersion(Argon2Parameters.Version13)
                .WithMemoryAsKB(memoryKiB)
                .WithIterations(iterations)
                .WithParallelism(parallelism)
                .WithSalt(salt)
                .Build());
            var derived = new byte[length];
            generator.GenerateBytes(passphrase, derived);
            return derived;
        }
    }
}
