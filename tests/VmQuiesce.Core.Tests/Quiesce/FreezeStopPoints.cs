using System;
using System.Linq;
using VmQuiesce.Core.Quiesce;
using Xunit;

namespace VmQuiesce.Core.Tests.Quiesce
{
    /// <summary>Where the freeze tests inject a stop: every step boundary of the freeze, plus the test's own points inside steps, each with a cancel and with the deadline.</summary>
    internal static class FreezeStopPoints
    {
        public static TheoryData<string, string> With(params string[] insideSteps)
        {
            var data = new TheoryData<string, string>();
            foreach (string point in Enum.GetNames(typeof(FreezeStep)).Concat(insideSteps))
            {
                data.Add(point, "Cancel");
                data.Add(point, "Deadline");
            }

            return data;
        }
    }
}
