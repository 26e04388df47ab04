namespace VmQuiesce.Core.Platform
{
    /// <summary>Big-endian fields in byte arrays (.NET Framework 4.7.2 has no BinaryPrimitives): the NBD protocol, qcow2 headers.</summary>
    internal static class BigEndianBytes
    {
        public static ushort ReadUInt16(byte[] buffer, int offset) => (ushort)((buffer[offset] << 8) | buffer[offset + 1]);

        public static uint ReadUInt32(byte[] buffer, int offset) =>
            ((uint)buffer[offset] << 24) | ((uint)buffer[offset + 1] << 16) | ((uint)buffer[offset + 2] << 8) | buffer[offset + 3];

        public static ulong ReadUInt64(byte[] buffer, int offset) => ((ulong)ReadUInt32(buffer, offset) << 32) | ReadUInt32(buffer, offset + 4);

        public static void Write(byte[] buffer, int offset, ushort value)
        {
            buffer[offset] = (byte)(value >> 8);
            buffer[offset + 1] = (byte)value;
        }

        public static void Write(byte[] buffer, int offset, uint value)
        {
            buffer[offset] = (byte)(value >> 24);
            buffer[offset + 1] = (byte)(value >> 16);
            buffer[offset + 2] = (byte)(value >> 8);
            buffer[offset + 3] = (byte)value;
        }

        public static void Write(byte[] buffer, int offset, ulong value)
        {
            Write(buffer, offset, (uint)(value >> 32));
            Write(buffer, offset + 4, (uint)value);
        }
    }
}
