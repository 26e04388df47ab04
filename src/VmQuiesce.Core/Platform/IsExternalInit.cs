// netstandard2.0 lacks this marker type; C# needs it for init-only setters and records.
namespace System.Runtime.CompilerServices
{
    internal static class IsExternalInit
    {
    }
}
