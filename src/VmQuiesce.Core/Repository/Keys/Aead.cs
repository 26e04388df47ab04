using System;
using System.Security.Cryptography;
#if NETFRAMEWORK
using Org.BouncyCastle.Crypto;
using Org.BouncyCastle.Crypto.Modes;
using Org.BouncyCastle.Crypto.Parameters;
#endif

namespace VmQuiesce.Core.Repository.Keys
{
    /// <summary>
    /// AES-256-GCM, sealed as nonce (12 random bytes), ciphertext, tag (16 bytes). PowerShell 7 uses .NET's AesGcm
    /// (the platform's AES instructions); Windows PowerShell 5.1's .NET Framework has none, so its build uses
    /// BouncyCastle's GCM. Both write the same bytes (NIST SP 800-38D), so either reads what the other wrote.
    /// </summary>
    internal static class Aead
    {
        public const string Algorithm = "AES-256-GCM";
        public const int KeyLength = 32;
        public const int NonceLength = 12;
        public const int TagLength = 16;
        public const int Overhead = NonceLength + TagLength;

        /// <summary>Seals <paramref name="length"/> bytes of <paramref name="plaintext"/> into <paramref name="output"/> at <paramref name="outputOffset"/>; returns the sealed length. In place when the plaintext already sits where its ciphertext goes (the same array, at outputOffset + NonceLength): both ciphers allow that exact overlap.</summary>
        public static int Seal(byte[] key, byte[] plaintext, int offset, int length, byte[] associated, byte[] output, int outputOffset)
        {
            var nonce = new byte[NonceLength];
            Random.Fill(nonce);
            Buffer.BlockCopy(nonce, 0, output, outputOffset, NonceLength);
#if NETFRAMEWORK
            var gcm = new GcmBlockCipher(new Org.BouncyCastle.Crypto.Engines.AesEngine());
            gcm.Init(true, new AeadParameters(new KeyParameter(key), TagLength * 8, nonce, associated));
            int written = gcm.ProcessBytes(plaintext, offset, length, output, outputOffset + NonceLength);
            gcm.DoFinal(output, outputOffset + NonceLength + written);
#else
            using var gcm = new AesGcm(key, TagLength);
            gcm.Encrypt(nonce, plaintext.AsSpan(offset, length), output.AsSpan(outputOffset + NonceLength, length), output.AsSpan(outputOffset + NonceLength + length, TagLength), associated);
#endif
            return length + Overhead;
        }

        /// <summary>
        /// Opens what <see cref="Seal"/> made into <paramref name="output"/>; returns the plaintext length. Throws
        /// <see cref="CryptographicException"/> when anything was changed, the key differs, or the associated data
        /// (what the sealed bytes claim to be) is not what they were sealed as.
        /// </summary>
        public static int Open(byte[] key, byte[] sealedBytes, int offset, int length, byte[] associated, byte[] output)
        {
            int plainLength = length - Overhead;
            if (plainLength < 0 || output.Length < plainLength)
            {
                throw new CryptographicException($"The sealed data is {length} bytes; expected {Overhead} to {output.Length + Overhead}.");
            }

            var nonce = new byte[NonceLength];
            Buffer.BlockCopy(sealedBytes, offset, nonce, 0, NonceLength);
#if NETFRAMEWORK
            var gcm = new GcmBlockCipher(new Org.BouncyCastle.Crypto.Engines.AesEngine());
            gcm.Init(false, new AeadParameters(new KeyParameter(key), TagLength * 8, nonce, associated));
            try
            {
                int written = gcm.ProcessBytes(sealedBytes, offset + NonceLength, plainLength + TagLength, output, 0);
                gcm.DoFinal(output, written);
            }
            catch (InvalidCipherTextException e)
            {
                throw new CryptographicException("The authentication tag does not match.", e);
            }
#else
            using var gcm = new AesGcm(key, TagLength);
            gcm.Decrypt(nonce, sealedBytes.AsSpan(offset + NonceLength, plainLength), sealedBytes.AsSpan(offset + NonceLength + plainLength, TagLength), output.AsSpan(0, plainLength), associated);
#endif
            return plainLength;
        }
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
