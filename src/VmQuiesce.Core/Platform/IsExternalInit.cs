#if !NET5_0_OR_GREATER
// .NET Framework lacks this marker type (.NET 5+ has it); C# needs it for init-only setters and records.
namespace System.Runtime.CompilerServices
{
    internal static class IsExternalInit
    {
    }
}
#endif
