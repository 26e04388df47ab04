namespace VmQuiesce.Core.Nbd
{
    /// <summary>
    /// The server answered one request with an error (error id NbdRequestFailed): the connection stays
    /// usable. <see cref="ErrorOffset"/> is where the server says the failure is, when it says.
    /// </summary>
    public sealed class NbdRequestException : VmQuiesceException
    {
        public NbdRequestException(string message, string exportName, uint errorCode, long requestOffset, long requestLength, long? errorOffset)
            : base("NbdRequestFailed", errorCode == NbdProtocol.ErrInvalid || errorCode == NbdProtocol.ErrOverflow ? FailureKind.InvalidArgument : FailureKind.ReadError, message, exportName)
        {
            ErrorCode = errorCode;
            RequestOffset = requestOffset;
            RequestLength = requestLength;
            ErrorOffset = errorOffset;
        }

        /// <summary>The protocol's error value (errno numbering: 5 EIO, 22 EINVAL, 1 EPERM, 108 ESHUTDOWN, ...).</summary>
        public uint ErrorCode { get; }

        public long RequestOffset { get; }

        public long RequestLength { get; }

        public long? ErrorOffset { get; }
    }
}
