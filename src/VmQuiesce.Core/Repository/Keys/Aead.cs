using System;
using System.Security.Cryptography;
#if NETFRAMEWORK
using Org.BouncyCastle.Crypto;
using Org.BouncyCastle.Crypto.Modes;
using Org.BouncyCastle.Crypto.Parameters;
#endif

namespace VmQuiesce.Core.Repository.Keys
{
    /// <summary>The AEAD an encrypted repository seals its chunks and manifests with; its repository file records which.</summary>
    public enum RepositoryCipher
    {
        /// <summary>AES-256-GCM: the fastest where the CPU has AES instructions (what repositories made before the choice use).</summary>
        Aes256Gcm,

        /// <summary>ChaCha20-Poly1305 (RFC 8439): the fastest where the CPU has no AES instructions, and constant-time without them.</summary>
        ChaCha20Poly1305,
    }

    /// <summary>
    /// AES-256-GCM or ChaCha20-Poly1305, sealed alike as nonce (12 random bytes), ciphertext, tag (16 bytes), with a
    /// 32-byte key. PowerShell 7 uses .NET's AesGcm and ChaCha20Poly1305 (the platform's: AES instructions, OpenSSL or
    /// CNG); Windows PowerShell 5.1's .NET Framework has neither, so its build uses BouncyCastle's GCM and
    /// ChaCha20-Poly1305. Both builds write the same bytes (NIST SP 800-38D, RFC 8439), so either reads what the other wrote.
    /// </summary>
    internal static class Aead
    {
        public const string AesGcmName = "AES-256-GCM";
        public const string ChaChaName = "ChaCha20-Poly1305";
        public const int KeyLength = 32;
        public const int NonceLength = 12;
        public const int TagLength = 16;
        public const int Overhead = NonceLength + TagLength;

        /// <summary>The name a repository file records: "AES-256-GCM" or "ChaCha20-Poly1305".</summary>
        public static string NameOf(RepositoryCipher cipher) => cipher == RepositoryCipher.ChaCha20Poly1305 ? ChaChaName : AesGcmName;

        /// <summary>The cipher a recorded name stands for; null for a name this VmQuiesce does not know.</summary>
        public static RepositoryCipher? FromName(string name) =>
            name == AesGcmName ? RepositoryCipher.Aes256Gcm : name == ChaChaName ? RepositoryCipher.ChaCha20Poly1305 : (RepositoryCipher?)null;

        /// <summary>
        /// The cipher of a new repository when none is asked for: AES-256-GCM on a CPU with AES instructions,
        /// ChaCha20-Poly1305 on one without (where this host can run it). Windows PowerShell 5.1 cannot ask the CPU
        /// and computes both in software: AES-256-GCM, as before the choice.
        /// </summary>
        public static RepositoryCipher Preferred =>
#if NETFRAMEWORK
            RepositoryCipher.Aes256Gcm;
#else
            System.Runtime.Intrinsics.X86.Aes.IsSupported || System.Runtime.Intrinsics.Arm.Aes.IsSupported || !ChaCha20Poly1305.IsSupported
                ? RepositoryCipher.Aes256Gcm
                : RepositoryCipher.ChaCha20Poly1305;
#endif

        /// <summary>Throws RepositoryCipherNotSupported when this host cannot run <paramref name="cipher"/> (its crypto library has no ChaCha20-Poly1305).</summary>
        public static void RequireSupported(RepositoryCipher cipher, string target)
        {
#if !NETFRAMEWORK
            if (cipher == RepositoryCipher.ChaCha20Poly1305 && !ChaCha20Poly1305.IsSupported)
            {
                throw new VmQuiesceException("RepositoryCipherNotSupported", FailureKind.NotSupported,
                    $"The repository '{target}' uses {ChaChaName}, which this host's crypto library does not offer.", target)
                {
                    Remedy = "Use it from a host whose OpenSSL (1.1.0 or later) or Windows (10 build 20142 or later) offers ChaCha20-Poly1305, or from Windows PowerShell 5.1; for a new repository, choose -Cipher Aes256Gcm.",
                };
            }
#endif
        }

        /// <summary>Seals <paramref name="length"/> bytes of <paramref name="plaintext"/> into <paramref name="output"/> at <paramref name="outputOffset"/>; returns the sealed length. In place when the plaintext already sits where its ciphertext goes (the same array, at outputOffset + NonceLength): every cipher here allows that exact overlap.</summary>
        public static int Seal(RepositoryCipher cipher, byte[] key, byte[] plaintext, int offset, int length, byte[] associated, byte[] output, int outputOffset)
        {
            var nonce = new byte[NonceLength];
            Random.Fill(nonce);
            Buffer.BlockCopy(nonce, 0, output, outputOffset, NonceLength);
#if NETFRAMEWORK
            IAeadCipher aead = NewCipher(cipher, true, key, nonce, associated);
            int written = aead.ProcessBytes(plaintext, offset, length, output, outputOffset + NonceLength);
            aead.DoFinal(output, outputOffset + NonceLength + written);
#else
            var ciphertext = output.AsSpan(outputOffset + NonceLength, length);
            var tag = output.AsSpan(outputOffset + NonceLength + length, TagLength);
            if (cipher == RepositoryCipher.ChaCha20Poly1305)
            {
                using var chacha = new ChaCha20Poly1305(key);
                chacha.Encrypt(nonce, plaintext.AsSpan(offset, length), ciphertext, tag, associated);
            }
            else
            {
                using var gcm = new AesGcm(key, TagLength);
                gcm.Encrypt(nonce, plaintext.AsSpan(offset, length), ciphertext, tag, associated);
            }
#endif
            return length + Overhead;
        }

        /// <summary>
        /// Opens what <see cref="Seal"/> made into <paramref name="output"/>; returns the plaintext length. Throws
        /// <see cref="CryptographicException"/> when anything was changed, the key or cipher differs, or the associated
        /// data (what the sealed bytes claim to be) is not what they were sealed as.
        /// </summary>
        public static int Open(RepositoryCipher cipher, byte[] key, byte[] sealedBytes, int offset, int length, byte[] associated, byte[] output) =>
            Open(cipher, key, sealedBytes, offset, length, associated, output, 0);

        /// <summary>
        /// As the other overload, into <paramref name="output"/> from <paramref name="outputOffset"/>. In place when that is
        /// where the ciphertext sits (the same array, at offset + NonceLength): every cipher here allows that exact overlap.
        /// </summary>
        public static int Open(RepositoryCipher cipher, byte[] key, byte[] sealedBytes, int offset, int length, byte[] associated, byte[] output, int outputOffset)
        {
            int plainLength = length - Overhead;
            if (plainLength < 0 || output.Length - outputOffset < plainLength)
            {
                throw new CryptographicException($"The sealed data is {length} bytes; expected {Overhead} to {output.Length - outputOffset + Overhead}.");
            }

            var nonce = new byte[NonceLength];
            Buffer.BlockCopy(sealedBytes, offset, nonce, 0, NonceLength);
#if NETFRAMEWORK
            IAeadCipher aead = NewCipher(cipher, false, key, nonce, associated);
            try
            {
                int written = aead.ProcessBytes(sealedBytes, offset + NonceLength, plainLength + TagLength, output, outputOffset);
                aead.DoFinal(output, outputOffset + written);
            }
            catch (InvalidCipherTextException e)
            {
                throw new CryptographicException("The authentication tag does not match.", e);
            }
#else
            var ciphertext = sealedBytes.AsSpan(offset + NonceLength, plainLength);
            var tag = sealedBytes.AsSpan(offset + NonceLength + plainLength, TagLength);
            if (cipher == RepositoryCipher.ChaCha20Poly1305)
            {
                using var chacha = new ChaCha20Poly1305(key);
                chacha.Decrypt(nonce, ciphertext, tag, output.AsSpan(outputOffset, plainLength), associated);
            }
            else
            {
                using var gcm = new AesGcm(key, TagLength);
                gcm.Decrypt(nonce, ciphertext, tag, output.AsSpan(outputOffset, plainLength), associated);
            }
#endif
            return plainLength;
        }

#if NETFRAMEWORK
        private static IAeadCipher NewCipher(RepositoryCipher cipher, bool forSealing, byte[] key, byte[] nonce, byte[] associated)
        {
            IAeadCipher aead = cipher == RepositoryCipher.ChaCha20Poly1305
                ? new Org.BouncyCastle.Crypto.Modes.ChaCha20Poly1305()
                : new GcmBlockCipher(new Org.BouncyCastle.Crypto.Engines.AesEngine());
            aead.Init(forSealing, new AeadParameters(new KeyParameter(key), TagLength * 8, nonce, associated));
            return aead;
        }
#endif
    }

    /// <summary>The operating system's random numbers, on both builds (.NET Framework has no RandomNumberGenerator.Fill).</summary>
    internal static class Random
    {
        private static readonly RandomNumberGenerator s_generator = RandomNumberGenerator.Create();

        public static void Fill(byte[] buffer) => s_generator.GetBytes(buffer);

        public static byte[] Bytes(int count)
        {
            var bytes = new byte[count];
            Fill(bytes);
            return bytes;
        }
    }
}
