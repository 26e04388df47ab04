using System;
using System.IO;

namespace VmQuiesce.HelpCompiler
{
    internal static class Program
    {
        private static int Main(string[] args)
        {
            if (args.Length != 3)
            {
                Console.Error.WriteLine("usage: VmQuiesce.HelpCompiler <markdown folder> <output folder> <assembly file name, e.g. VmQuiesce.dll>");
                return 2;
            }

            if (!Directory.Exists(args[0]))
            {
                Console.Error.WriteLine($"The markdown folder '{args[0]}' does not exist.");
                return 2;
            }

            var errors = HelpCompiler.Compile(args[0], args[1], args[2]);
            foreach (HelpSchemaException error in errors)
            {
                Console.Error.WriteLine(error.ToString());
            }

            return errors.Count == 0 ? 0 : 1;
        }
    }
}
