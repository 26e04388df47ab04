using System;
using System.Linq;
using System.Text;
using System.Threading.Tasks;
using VmQuiesce.Core.Repository.Storage;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// Response bodies an S3 endpoint stalls, dribbles or makes too long (<see cref="S3ResponseLimits"/>), against
    /// <see cref="S3Double"/>, which paces what it sends. The bounds are made small; a call that never returns fails
    /// the test after <see cref="Hung"/> instead of hanging the run. On .NET Framework (not run here) they go through
    /// BoundedWebRequest instead of the HTTP client (see <see cref="BoundedResponseDataTests"/>).
    /// </summary>
    public sealed class S3ResponseBoundsTests
    {
        private static readonly TimeSpan Hung = TimeSpan.FromSeconds(30);
        private static readonly byte[] Json = Encoding.UTF8.GetBytes("{\"a\":\"" + new string('x', 4000) + "\"}");

        public static TheoryData<string> Requests => new TheoryData<string> { "whole object", "ranged object", "listing" };

        [Theory]
        [MemberData(nameof(Requests))]
        public void A_body_that_stops_coming_is_cut_off_naming_the_endpoint_and_object(string request)
        {
            using var endpoint = new S3Double(_ => WithBody(request, reply => reply.StallAfter = 100));
            using S3ObjectStorage storage = endpoint.NewStorage();
            storage.ResponseLimits.StallTime = TimeSpan.FromMilliseconds(300);

            VmQuiesceException error = Refused(() => Call(storage, request));

            Assert.Equal("S3ResponseStalled", error.ErrorId);
            Assert.Equal(FailureKind.OperationTimeout, error.Kind);
            Assert.Single(endpoint.Requests); // Refused, not retried.
            Assert.Contains(endpoint.Endpoint.GetComponents(UriComponents.SchemeAndServer, UriFormat.SafeUnescaped), error.Message);
            Assert.Contains(request == "listing" ? "/bucket" : "(object 'points/a.json')", error.Message);
            Assert.Contains("0.3 seconds", error.Message);
            Assert.Contains("every 0.3 seconds", error.Remedy);
        }

        [Theory]
        [InlineData(false)]
        [InlineData(true)]
        public void An_error_answer_whose_body_stalls_or_dribbles_ends_as_the_failed_request_it_is(bool dribbled)
        {
            // The SDK reads an error's body itself and, when that read fails, reports the status alone.
            using var endpoint = new S3Double(_ => WithBody("error answer", reply =>
            {
                if (dribbled)
                {
                    reply.DribbleInterval = TimeSpan.FromMilliseconds(20);
                }
                else
                {
                    reply.StallAfter = 100;
                }
            }));
            using S3ObjectStorage storage = endpoint.NewStorage();
            storage.ResponseLimits.StallTime = TimeSpan.FromMilliseconds(300);
            storage.ResponseLimits.MinBytesPerStallTime = 1024;

            VmQuiesceException error = Refused(() => storage.ReadAll("points/a.json", 1024));

            Assert.Equal("S3RequestFailed", error.ErrorId);
            Assert.Contains("(object 'points/a.json'): 500", error.Message);
        }

        [Theory]
        [MemberData(nameof(Requests))]
        public void A_body_dribbled_slower_than_the_floor_is_cut_off(string request)
        {
            // A byte every 20 ms: never idle as long as the stall time, and still far from a kilobyte in it.
            using var endpoint = new S3Double(_ => WithBody(request, reply => reply.DribbleInterval = TimeSpan.FromMilliseconds(20)));
            using S3ObjectStorage storage = endpoint.NewStorage();
            storage.ResponseLimits.StallTime = TimeSpan.FromMilliseconds(400);
            storage.ResponseLimits.MinBytesPerStallTime = 1024;

            Assert.Equal("S3ResponseStalled", Refused(() => Call(storage, request)).ErrorId);
        }

        [Fact]
        public void A_slow_body_that_keeps_up_with_the_floor_is_read_whole()
        {
            // 256 bytes every 50 ms for 3 s: longer than one stall time, but each one sees its 256 bytes. Room for a
            // loaded machine: only a pause of 2 s in the double's pacing would fail it.
            using var endpoint = new S3Double(_ => new S3Double.Reply(200, Encoding.ASCII.GetBytes(new string('x', 60 * 256))) { DribbleInterval = TimeSpan.FromMilliseconds(50), DribbleBytes = 256 });
            using S3ObjectStorage storage = endpoint.NewStorage();
            storage.ResponseLimits.StallTime = TimeSpan.FromSeconds(2);
            storage.ResponseLimits.MinBytesPerStallTime = 256;

            Assert.Equal(60 * 256, storage.ReadAll("points/a.json", 1 << 20).Length);
        }

        [Theory]
        [InlineData(true)]
        [InlineData(false)]
        public void A_listing_longer_than_any_is_refused_before_it_is_read(bool announced)
        {
            // Past the bound: refused on the header when announced (a terabyte never sent), else as it goes past it.
            string keys = string.Concat(Enumerable.Range(0, 2000).Select(i => $"<Contents><Key>repo/chunks/ab/ab{i:0000}</Key><Size>1</Size></Contents>"));
            S3Double.Reply listing = S3Double.Reply.Xml(200, "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><IsTruncated>false</IsTruncated>" + keys + "</ListBucketResult>");
            listing.ContentLength = announced ? 1L << 40 : (long?)null;
            using var endpoint = new S3Double(_ => listing);
            using S3ObjectStorage storage = endpoint.NewStorage();
            storage.ResponseLimits.MaxNonObjectBytes = 64 * 1024;

            VmQuiesceException error = Refused(() => storage.List("chunks/").ToList());

            Assert.Equal("S3ResponseInvalid", error.ErrorId);
            Assert.Contains(announced ? "1099511627776 bytes" : "past 65536 bytes", error.Message);
            Assert.Single(endpoint.Requests); // Refused, not retried.
        }

        [Fact]
        public void An_error_answer_longer_than_any_is_refused()
        {
            using var endpoint = new S3Double(_ => S3Double.Reply.Xml(400, "<Error><Code>InvalidArgument</Code><Message>" + new string('x', 200000) + "</Message></Error>"));
            using S3ObjectStorage storage = endpoint.NewStorage();
            storage.ResponseLimits.MaxNonObjectBytes = 64 * 1024;

            VmQuiesceException error = Refused(() => storage.ReadAll("points/a.json", 1024));

            Assert.Equal("S3ResponseInvalid", error.ErrorId);
            Assert.Contains("(object 'points/a.json')", error.Message);
        }

        [Fact]
        public void An_object_longer_than_the_bound_of_other_answers_is_read()
        {
            // The bound is for listings, errors and metadata; an object's length is its reader's to bound.
            byte[] chunk = new byte[256 * 1024];
            new Random(1).NextBytes(chunk);
            using var endpoint = new S3Double(_ => new S3Double.Reply(200, chunk));
            using S3ObjectStorage storage = endpoint.NewStorage();
            storage.ResponseLimits.MaxNonObjectBytes = 64 * 1024;

            Assert.Equal(chunk, storage.ReadAll("chunks/ab/ab01", 1 << 20));
            Assert.Equal(chunk.Length, storage.Read("chunks/ab/ab01", new byte[1 << 20]));
        }

        [Fact]
        public void The_length_a_head_answer_gives_is_the_objects_not_a_body_to_bound()
        {
            using var endpoint = new S3Double(_ => new S3Double.Reply(200) { ContentLength = 1L << 40 });
            using S3ObjectStorage storage = endpoint.NewStorage();
            storage.ResponseLimits.MaxNonObjectBytes = 64 * 1024;

            Assert.True(storage.Exists("points/a.json"));
        }

        private static S3Double.Reply WithBody(string request, Action<S3Double.Reply> pace)
        {
            S3Double.Reply reply = request switch
            {
                "listing" => S3Double.ListPage(Enumerable.Range(0, 100).Select(i => ($"repo/chunks/ab/ab{i:00}", 1L))),
                "error answer" => S3Double.Reply.Xml(500, "<Error><Code>InternalError</Code><Message>" + new string('x', 4000) + "</Message></Error>"),
                _ => new S3Double.Reply(200, Json),
            };
            pace(reply);
            return reply;
        }

        private static void Call(S3ObjectStorage storage, string request)
        {
            switch (request)
            {
                case "ranged object":
                    storage.Read("points/a.json", new byte[1 << 20]);
                    break;
                case "listing":
                    storage.List("chunks/").ToList();
                    break;
                default:
                    storage.ReadAll("points/a.json", 1 << 20);
                    break;
            }
        }

        /// <summary>The error <paramref name="call"/> ends with; a failure of the test when it does not end within <see cref="Hung"/>.</summary>
        private static VmQuiesceException Refused(Action call)
        {
            Task<Exception> task = Task.Run(() => Record.Exception(call));
            Assert.True(task.Wait(Hung), $"The call did not end within {Hung.TotalSeconds} seconds.");
            return Assert.IsType<VmQuiesceException>(task.Result);
        }
    }
}
