using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Runtime.InteropServices;
using System.Security;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using System.Threading.Tasks;
using Amazon;
using Amazon.Runtime;
using Amazon.Runtime.CredentialManagement;
using Amazon.Runtime.Credentials;
using Amazon.Runtime.Internal;
using Amazon.Runtime.Internal.Transform;
using Amazon.S3;
using Amazon.S3.Internal;
using Amazon.S3.Model;
using VmQuiesce.Core.Platform;
using VmQuiesce.Core.Sources;

namespace VmQuiesce.Core.Repository.Storage
{
    /// <summary>
    /// Objects in a bucket of S3-compatible storage, key "a/b" at "&lt;prefix&gt;/a/b". A PUT is atomic in S3 (an
    /// object is whole or absent), so no temp names are needed. Exclusive create is a conditional PUT with
    /// <c>If-None-Match: *</c>, which AWS S3 (since 2024), Ceph RGW 16+ and MinIO make atomic: of several hosts
    /// creating one key, exactly one succeeds and the others get 412. Multipart uploads are never used: RGW 16
    /// ignores the condition on CompleteMultipartUpload, and no object here is larger than a chunk.
    /// </summary>
    public sealed class S3ObjectStorage : IObjectStorage
    {
        /// <summary>How many times a conditional PUT that collided with a concurrent one (409) is retried.</summary>
        private const int ConflictRetries = 4;

        /// <summary>How many times a GET is sent when the connection ends before its body is whole.</summary>
        internal const int BodyAttempts = 3;

        /// <summary>A pebibyte: larger than any object an S3 store accepts, so a listed size above it is not one.</summary>
        private const long MaxObjectSize = 1L << 50;

        /// <summary>The most characters of a store's error text that a message quotes.</summary>
        private const int MaxStoreTextLength = 500;

        private readonly AmazonS3Client _client;
        private readonly string _keyPrefix;
        private readonly string _endpointText;

        /// <summary>Whether the bucket was seen to exist: a HEAD's 404 then means a missing object (a bucket removed since fails the next PUT clearly).</summary>
        private volatile bool _accessChecked;

        public S3ObjectStorage(S3RepositoryAddress address, S3ConnectionSettings settings)
        {
            Address = address;
            _keyPrefix = address.Prefix.Length == 0 ? string.Empty : address.Prefix + "/";
            Uri? endpoint = settings.ResolveEndpoint();
            string? region = settings.ResolveRegion();
            _endpointText = endpoint?.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.SafeUnescaped) ?? "AWS S3";
            var config = new AmazonS3Config
            {
                // Most S3-compatible stores (Ceph RGW 16 among them) reject the SDK's default trailing checksums
                // with 400 XAmzContentSHA256Mismatch; the SigV4 streaming signature still covers every byte sent.
                RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
                ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
                MaxErrorRetry = 3,
                // Until the response headers arrive; a body is bounded by ResponseLimits.
                Timeout = TimeSpan.FromSeconds(60),
            };
#if NETFRAMEWORK
            // The SDK reads with HttpWebRequest here and takes no HTTP client of ours: RedirectRefusingClient gives it
            // requests whose bodies ResponseLimits bounds. A read that waits this long for a byte fails anyway, later
            // than the bound's watchdog cuts it off (and names the stall).
            config.ReadWriteTimeout = TimeSpan.FromTicks(2 * ResponseLimits.StallTime.Ticks);
#else
            config.HttpClientFactory = new BoundedHttpClientFactory(ResponseLimits);
#endif
            if (endpoint != null)
            {
                // A non-AWS store: path-style addressing (no bucket DNS names) and a fixed signing region.
                config.ServiceURL = endpoint.AbsoluteUri;
                config.ForcePathStyle = true;
                config.AuthenticationRegion = region ?? "us-east-1";
            }
            else if (region != null)
            {
                config.RegionEndpoint = RegionEndpoint.GetBySystemName(region);
            }

            _client = new RedirectRefusingClient(ResolveCredentials(settings), config, ResponseLimits);
        }

        public S3RepositoryAddress Address { get; }

        public string Location => Address.ToString();

        public string? Endpoint => _endpointText;

        /// <summary>Objects per ListObjectsV2 page (S3 allows at most 1000); tests make it small to exercise paging.</summary>
        internal int ListPageSize { get; set; } = 1000;

        /// <summary>
        /// The most pages one listing follows: a billion objects in full pages, far past any repository (a petabyte of
        /// 1 MiB chunks). A bound of its own, never taken from what the store says, so a listing that never ends stops
        /// with an error; tests make it small.
        /// </summary>
        internal int MaxListPages { get; set; } = 1000000;

        /// <summary>How slow a response body may be and how large one that is not an object's bytes; tests make them small.</summary>
        internal S3ResponseLimits ResponseLimits { get; } = new S3ResponseLimits();

        /// <summary>
        /// Checks that the endpoint answers, the credentials are accepted and the bucket exists, by listing at most
        /// one object under the prefix: the permission a repository needs anyway.
        /// </summary>
        public void CheckAccess()
        {
            Call(null, () => _client.ListObjectsV2Async(new ListObjectsV2Request { BucketName = Address.Bucket, Prefix = _keyPrefix, MaxKeys = 1 }));
            _accessChecked = true;
        }

        /// <summary>
        /// As <see cref="IObjectStorage.Read"/>, with a GET of bytes 0 to the buffer's length (one more than fits): the
        /// SDK checks a whole-object GET against its ETag with a managed MD5, which cost a restore a fifth of its CPU,
        /// and a ranged one not. What is read this way is a chunk, checked against its hash (and its AEAD tag) anyway.
        /// </summary>
        public int Read(string key, byte[] buffer) => Read(key, buffer.Length, length => buffer, ranged: true);

        public byte[] ReadAll(string key, int maxLength)
        {
            byte[]? content = null;
            Read(key, maxLength, length => content = new byte[length], ranged: false);
            return content!;
        }

        /// <summary>
        /// Reads the object; a GET whose body the connection ended before it was whole (the SDK retries only until the
        /// headers) is sent again, <see cref="BodyAttempts"/> times in all: one dropped connection must not end a restore
        /// of many gigabytes. After the last, the connection failed, not the object: S3EndpointUnreachable, never an
        /// I/O error a caller would take for a damaged object. A body that stalls, is too large or does not match its
        /// ETag is not read again.
        /// </summary>
        private int Read(string key, int maxLength, Func<int, byte[]> bufferFor, bool ranged)
        {
            for (int attempt = 1; ; attempt++)
            {
                try
                {
                    return ReadOnce(key, maxLength, bufferFor, ranged);
                }
                catch (BodyCutException e)
                {
                    if (attempt == BodyAttempts)
                    {
                        throw Unreachable(key, $"the connection ended before the body was whole, {BodyAttempts} times ({Innermost(e).Message})", e);
                    }

                    System.Threading.Thread.Sleep(100 << attempt);
                }
            }
        }

        private int ReadOnce(string key, int maxLength, Func<int, byte[]> bufferFor, bool ranged)
        {
            var request = new GetObjectRequest { BucketName = Address.Bucket, Key = FullKey(key) };
            if (ranged)
            {
                request.ByteRange = new ByteRange(0, maxLength);
            }

            try
            {
                using GetObjectResponse response = Call(key, () => _client.GetObjectAsync(request), ranged ? new[] { HttpStatusCode.NotFound, HttpStatusCode.RequestedRangeNotSatisfiable } : new[] { HttpStatusCode.NotFound });
                if (response.ContentLength > maxLength || response.ContentLength < 0)
                {
                    // A ranged GET sends at most one byte more than fits: enough to know the object is too long.
                    string held = ranged ? $"more than {maxLength}" : response.ContentLength.ToString(System.Globalization.CultureInfo.InvariantCulture);
                    throw new InvalidDataException($"'{Describe(key)}' holds {held} bytes; at most {maxLength} were expected.");
                }

                int expected = (int)response.ContentLength;
                byte[] buffer = bufferFor(expected);
                using Stream body = response.ResponseStream;
                int length;
                bool longer;
                try
                {
                    length = body.ReadFully(buffer, expected);
                    longer = body.ReadByte() >= 0;
                }
                catch (Exception e) when (S3ResponseRefusedException.Find(e) is S3ResponseRefusedException refused)
                {
                    throw Refused(key, refused, e);
                }
                catch (AmazonClientException e)
                {
                    // The SDK checks a whole object against an MD5 ETag as its end is read: a body that does not match
                    // is damaged data, as a chunk whose hash differs is, not an error of the client.
                    throw new InvalidDataException($"'{Describe(key)}' does not match the ETag the store gave with it: {e.Message}", e);
                }
                catch (IOException e)
                {
                    throw new BodyCutException($"The connection to {_endpointText} ended before the body of '{Describe(key)}' was whole: {e.Message}", e);
                }

                if (length != expected || longer)
                {
                    throw new InvalidDataException($"'{Describe(key)}' did not hold the {expected} bytes its length said.");
                }

                return length;
            }
            catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound && e.ErrorCode != "NoSuchBucket")
            {
                throw new FileNotFoundException($"'{Describe(key)}' does not exist.", Describe(key), e);
            }
            catch (AmazonS3Exception e) when (ranged && e.StatusCode == HttpStatusCode.RequestedRangeNotSatisfiable)
            {
                // No byte 0 to start the range at: the object is empty.
                bufferFor(0);
                return 0;
            }
        }

        public bool CreateIfAbsent(string key, IReadOnlyList<ArraySegment<byte>> parts)
        {
            for (int attempt = 0; ; attempt++)
            {
                try
                {
                    Put(key, parts, ifNoneMatch: "*");
                    return true;
                }
                catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.PreconditionFailed)
                {
                    return false;
                }
                catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.Conflict)
                {
                    if (attempt == ConflictRetries)
                    {
                        throw RequestFailed(key, e);
                    }

                    // ConditionalRequestConflict: another conditional PUT of this key is in flight; one of us will
                    // win, and the retry learns which (412 when it was the other).
                    System.Threading.Thread.Sleep(50 << attempt);
                }
            }
        }

        public void Replace(string key, IReadOnlyList<ArraySegment<byte>> parts) => Put(key, parts, ifNoneMatch: null);

        public bool Exists(string key)
        {
            try
            {
                Call(key, () => _client.GetObjectMetadataAsync(Address.Bucket, FullKey(key)), HttpStatusCode.NotFound);
                return true;
            }
            catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.NotFound)
            {
                if (!_accessChecked)
                {
                    CheckAccess(); // A HEAD's 404 has no body: tell a missing bucket from a missing object.
                }

                return false;
            }
        }

        public IEnumerable<StoredObject> List(string prefix)
        {
            ObjectKeys.CheckPrefix(prefix);
            string listed = _keyPrefix + prefix;
            var request = new ListObjectsV2Request { BucketName = Address.Bucket, Prefix = listed, MaxKeys = ListPageSize };
            // Digests of the tokens, not the tokens: the store chooses their length, and a listing may have many pages.
            var tokensSeen = new HashSet<string>(StringComparer.Ordinal);
            using SHA256 digest = SHA256.Create();
            for (int pages = 1; ; pages++)
            {
                ListObjectsV2Response page = Call(null, () => _client.ListObjectsV2Async(request));
                foreach (S3Object item in page.S3Objects ?? new List<S3Object>())
                {
                    // A key under the prefix that no repository writes is someone else's object, skipped below as a
                    // folder repository skips a stray file. A key outside the prefix asked for is another matter: no S3
                    // store lists one, so the listing is not of this repository (a proxy or store that ignores the
                    // prefix) and none of it is trusted; a prune deletes what a listing of chunks/ names.
                    if (item.Key == null || !item.Key.StartsWith(listed, StringComparison.Ordinal))
                    {
                        throw InvalidListing($"the key {GuestText.Quote(item.Key)}, which is not under '{listed}'");
                    }

                    string key = item.Key.Substring(_keyPrefix.Length);
                    if (ObjectKeys.IsValid(key))
                    {
                        // Sizes are added up into what a prune frees and a repository stores.
                        long size = item.Size ?? 0;
                        if (size < 0 || size > MaxObjectSize)
                        {
                            throw InvalidListing($"the object {GuestText.Quote(key)} of {size.ToString(System.Globalization.CultureInfo.InvariantCulture)} bytes, a size no object has");
                        }

                        yield return new StoredObject(key, size, (item.LastModified ?? DateTime.MinValue).ToUniversalTime());
                    }
                }

                if (page.IsTruncated != true || string.IsNullOrEmpty(page.NextContinuationToken))
                {
                    yield break;
                }

                if (!tokensSeen.Add(Convert.ToBase64String(digest.ComputeHash(Encoding.UTF8.GetBytes(page.NextContinuationToken)))))
                {
                    throw InvalidListing($"the continuation token {GuestText.Quote(page.NextContinuationToken)} a second time, which would list the same pages forever");
                }

                if (pages == MaxListPages)
                {
                    throw InvalidListing($"{MaxListPages} pages and still more, past any repository's objects");
                }

                request.ContinuationToken = page.NextContinuationToken;
            }
        }

        public void Delete(string key) => Call(key, () => _client.DeleteObjectAsync(Address.Bucket, FullKey(key)));

        public void Flush()
        {
        }

        public void Dispose() => _client.Dispose();

        private void Put(string key, IReadOnlyList<ArraySegment<byte>> parts, string? ifNoneMatch)
        {
            // One buffer for the body: the SDK needs a seekable stream of known length to sign it and to retry.
            ArraySegment<byte> body = parts.Count == 1 ? parts[0] : Join(parts);
            Call(key, () =>
            {
                var request = new PutObjectRequest
                {
                    BucketName = Address.Bucket,
                    Key = FullKey(key),
                    InputStream = new MemoryStream(body.Array!, body.Offset, body.Count, writable: false),
                    AutoCloseStream = true,
                    // The body is in memory: signed whole (its SHA-256 in the signature), without the chunked
                    // encoding's per-request buffers.
                    UseChunkEncoding = false,
                };
                if (ifNoneMatch != null)
                {
                    request.IfNoneMatch = ifNoneMatch;
                }

                return _client.PutObjectAsync(request);
            }, ifNoneMatch == null ? Array.Empty<HttpStatusCode>() : new[] { HttpStatusCode.PreconditionFailed, HttpStatusCode.Conflict });
        }

        private static ArraySegment<byte> Join(IReadOnlyList<ArraySegment<byte>> parts)
        {
            var joined = new byte[ObjectKeys.LengthOf(parts)];
            int position = 0;
            foreach (ArraySegment<byte> part in parts)
            {
                Buffer.BlockCopy(part.Array!, part.Offset, joined, position, part.Count);
                position += part.Count;
            }

            return new ArraySegment<byte>(joined);
        }

        private string FullKey(string key) => _keyPrefix + ObjectKeys.Check(key);

        private string Describe(string key) => Location + "/" + key;

        /// <summary>
        /// Runs one request to completion on the calling thread (the SDK is asynchronous only on .NET) and turns
        /// what says the store is unusable (unreachable, keys refused, no bucket) into a clear error naming the
        /// repository. The answers about an object that the caller handles (<paramref name="handledByCaller"/>: 404,
        /// 412, 409, 416) stay <see cref="AmazonS3Exception"/>; any other error answer is S3RequestFailed.
        /// </summary>
        private T Call<T>(string? key, Func<Task<T>> request, params HttpStatusCode[] handledByCaller)
        {
            try
            {
                return Task.Run(request).GetAwaiter().GetResult();
            }
            catch (Exception e) when (S3ResponseRefusedException.Find(e) is S3ResponseRefusedException refused)
            {
                throw Refused(key, refused, e);
            }
            catch (AmazonS3Exception e) when (e.ErrorCode == "NoSuchBucket")
            {
                throw new VmQuiesceException("S3BucketNotFound", FailureKind.ObjectNotFound, $"The bucket '{Address.Bucket}' of the repository '{Location}' does not exist at {_endpointText}.", Location, e)
                {
                    Remedy = "Check the bucket name and the endpoint, or create the bucket (VmQuiesce never creates buckets: their policy and lifecycle are yours to choose).",
                };
            }
            catch (AmazonS3Exception e) when (e.StatusCode == HttpStatusCode.Forbidden || e.ErrorCode == "InvalidAccessKeyId" || e.ErrorCode == "SignatureDoesNotMatch")
            {
                throw new VmQuiesceException("S3AccessDenied", FailureKind.PermissionDenied, $"{_endpointText} refused access to the repository '{Location}'{ObjectText(key)}: {StoreText(e.ErrorCode ?? "403 Forbidden")}.", Location, e)
                {
                    Remedy = "Check the access key and secret (-S3Credential, -S3ProfileName, or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and that they may read, write, list and delete under the prefix.",
                };
            }
            catch (AmazonS3Exception e) when (IsRedirect(e.StatusCode))
            {
                throw Redirected(key, e);
            }
            catch (AmazonS3Exception e) when (Array.IndexOf(handledByCaller, e.StatusCode) >= 0)
            {
                throw;
            }
            catch (Exception e) when (!(e is AmazonS3Exception) && IsTransportFailure(e))
            {
                throw Unreachable(key, Innermost(e).Message, e);
            }
            catch (AmazonServiceException e)
            {
                throw RequestFailed(key, e);
            }
        }

        /// <summary>
        /// A request whose connection failed (refused, reset, hung up before the answer, cut off in its body) after the
        /// retries: the store or the network failed, not the object, whatever the caller does with an I/O error.
        /// </summary>
        private VmQuiesceException Unreachable(string? key, string why, Exception e) =>
            new VmQuiesceException("S3EndpointUnreachable", FailureKind.ConnectionError, $"The S3 endpoint {_endpointText} of the repository '{Location}' cannot be reached{ObjectText(key)}: {why}", Location, e)
            {
                Remedy = $"Check the endpoint (-S3Endpoint, {S3ConnectionSettings.EndpointVariable} or {S3ConnectionSettings.GenericEndpointVariable}), the network and the proxy, then run the command again.",
            };

        private VmQuiesceException RequestFailed(string? key, AmazonServiceException e) =>
            new VmQuiesceException("S3RequestFailed", FailureKind.ProtocolError, $"{_endpointText} failed a request on the repository '{Location}'{ObjectText(key)}: {(int)e.StatusCode} {StoreText(e.ErrorCode)} {StoreText(e.Message)}", Location, e);

        private static bool IsRedirect(HttpStatusCode status) =>
            status == HttpStatusCode.MovedPermanently || status == HttpStatusCode.Found || status == HttpStatusCode.SeeOther || status == HttpStatusCode.TemporaryRedirect || (int)status == 308;

        /// <summary>
        /// A redirect <see cref="RedirectRefusingHandler"/> refused, with where it pointed and the bucket's region when
        /// the store named one (AWS does, in x-amz-bucket-region). AWS answers 307 for a bucket made in the last hours
        /// outside us-east-1 until its DNS name has spread, and 301 for a bucket asked for in the wrong region.
        /// </summary>
        private VmQuiesceException Redirected(string? key, AmazonS3Exception e)
        {
            IWebResponseData? answer = (e.InnerException as HttpErrorResponseException)?.Response;
            string? location = answer?.GetHeaderValue("Location");
            string target = Uri.TryCreate(location, UriKind.Absolute, out Uri? pointed) ? pointed.Authority : string.IsNullOrEmpty(location) ? "no place it named" : GuestText.Quote(location);
            string? region = answer?.GetHeaderValue("x-amz-bucket-region");
            // The remedy puts it on a command line: only a name a region can have, never the store's text as it came.
            bool knownRegion = region != null && Regex.IsMatch(region, "^[a-z]{2}(-[a-z0-9]+){2,3}$");
            bool temporary = e.StatusCode == HttpStatusCode.TemporaryRedirect;
            return new VmQuiesceException("S3RequestRedirected", FailureKind.ResourceUnavailable,
                $"{_endpointText} answered a request on the bucket '{Address.Bucket}' of the repository '{Location}'{ObjectText(key)} with {(int)e.StatusCode} {StoreText(e.ErrorCode)}, a redirect to {target}{(knownRegion ? $" (the bucket is in region '{region}')" : string.Empty)}. It was not followed: the request, signed again, would go wherever a redirect points.", Location, e)
            {
                Remedy = (knownRegion
                    ? $"Give the bucket's region: -S3Region {region} (with -S3Endpoint, also that region's endpoint, such as https://s3.{region}.amazonaws.com on AWS)."
                    : "Give the endpoint and region the bucket is served at (-S3Endpoint, -S3Region).")
                    + (temporary ? " AWS answers 307 for a bucket made in the last hours outside us-east-1 until its name has spread through DNS: run the command again in a few minutes." : string.Empty),
            };
        }

        private static string ObjectText(string? key) => key == null ? string.Empty : $" (object '{key}')";

        /// <summary>A response body <see cref="ResponseLimits"/> cut off (it stalled) or refused (too long for what it answers).</summary>
        private VmQuiesceException Refused(string? key, S3ResponseRefusedException refused, Exception e) => refused.Stalled
            ? new VmQuiesceException("S3ResponseStalled", FailureKind.OperationTimeout, $"{_endpointText} stalled in a response on the repository '{Location}'{ObjectText(key)}, which was cut off: {refused.Message}.", Location, e)
            {
                Remedy = $"Check the endpoint, the network and any proxy in between: a store that works sends at least {S3ResponseRefusedException.Bytes(ResponseLimits.MinBytesPerStallTime)} bytes of a response every {S3ResponseRefusedException.Seconds(ResponseLimits.StallTime)} seconds. Run the command again once it does.",
            }
            : new VmQuiesceException("S3ResponseInvalid", FailureKind.ProtocolError, $"{_endpointText} answered a request on the repository '{Location}'{ObjectText(key)} at a length no S3 store answers it with, so it was not read: {refused.Message}.", Location, e)
            {
                Remedy = "Check the endpoint and any proxy in between: an S3 listing, error or metadata answer is a few kilobytes to a few megabytes.",
            };

        /// <summary>Text of the store's error answer (the SDK quotes a body it cannot parse), escaped and cut short: it reaches terminals and logs.</summary>
        private static string StoreText(string? text) => GuestText.Escape(text == null || text.Length <= MaxStoreTextLength ? text : text.Substring(0, MaxStoreTextLength) + "...");

        /// <summary>A listing no S3 store would send: the endpoint (or a proxy before it) is broken or hostile, and nothing it listed is used.</summary>
        private VmQuiesceException InvalidListing(string what) =>
            new VmQuiesceException("S3ResponseInvalid", FailureKind.ProtocolError, $"{_endpointText} answered a listing of the repository '{Location}' with {what}.", Location)
            {
                Remedy = "Check the endpoint and any proxy in between: an S3 store lists only keys under the prefix asked for, and each continuation token once.",
            };

        /// <summary>
        /// Whether a request failed in its connection: the SDK passes on the IOException inside .NET's
        /// HttpRequestException (a connection dropped before the status line is an HttpIOException) and .NET
        /// Framework's WebException; a response body is bounded and read elsewhere.
        /// </summary>
        private static bool IsTransportFailure(Exception e)
        {
            for (Exception? inner = e; inner != null; inner = inner.InnerException)
            {
                if (inner is System.Net.Http.HttpRequestException || inner is System.Net.Sockets.SocketException || inner is WebException || inner is IOException || inner is TaskCanceledException || inner is TimeoutException)
                {
                    return true;
                }
            }

            return false;
        }

        private static Exception Innermost(Exception e)
        {
            while (e.InnerException != null)
            {
                e = e.InnerException;
            }

            return e;
        }

        /// <summary>
        /// The SDK's client, except that a 307 is an error answer: the SDK follows one to wherever its Location points,
        /// signing the request (a PUT's data included) again for that host. The endpoint is where the repository is.
        /// On .NET Framework its requests' answers are also bounded by the limits it is given (on .NET, the HTTP client
        /// of the config's factory bounds them).
        /// </summary>
        private sealed class RedirectRefusingClient : AmazonS3Client
        {
            public RedirectRefusingClient(AWSCredentials credentials, AmazonS3Config config, S3ResponseLimits limits)
                : base(credentials, config)
            {
#if NETFRAMEWORK
                RuntimePipeline.ReplaceHandler<HttpHandler<Stream>>(new HttpHandler<Stream>(new BoundedWebRequestFactory(limits), this));
#endif
            }

            protected override void CustomizeRuntimePipeline(RuntimePipeline pipeline)
            {
                base.CustomizeRuntimePipeline(pipeline);
                pipeline.ReplaceHandler<AmazonS3RedirectHandler>(new RedirectRefusingHandler());
            }
        }

        /// <summary>Answers a redirect as the SDK answers every other 3xx: an error, which its error handler turns into an <see cref="AmazonS3Exception"/>.</summary>
        private sealed class RedirectRefusingHandler : RedirectHandler
        {
            protected override void FinalizeForRedirect(IExecutionContext executionContext, string redirectedLocation)
            {
                IWebResponseData response = executionContext.ResponseContext.HttpResponse;
                executionContext.ResponseContext.HttpResponse = null;
                throw new HttpErrorResponseException(response);
            }
        }

        private static AWSCredentials ResolveCredentials(S3ConnectionSettings settings)
        {
            if (settings.AccessKeyId != null || settings.SecretAccessKey != null)
            {
                if (string.IsNullOrEmpty(settings.AccessKeyId) || settings.SecretAccessKey == null || settings.SecretAccessKey.Length == 0)
                {
                    throw new VmQuiesceException("S3CredentialsIncomplete", FailureKind.InvalidArgument, "The S3 credential needs both an access key id (the user name) and a secret access key (the password).", null);
                }

                return new BasicAWSCredentials(settings.AccessKeyId, Unprotect(settings.SecretAccessKey));
            }

            if (settings.ProfileName != null)
            {
                if (new CredentialProfileStoreChain().TryGetAWSCredentials(settings.ProfileName, out AWSCredentials? profile) && profile != null)
                {
                    return profile;
                }

                throw new VmQuiesceException("S3CredentialsNotFound", FailureKind.ObjectNotFound, $"The AWS profile '{settings.ProfileName}' was not found in the shared credentials or config file.", settings.ProfileName)
                {
                    Remedy = "Check the profile name, or AWS_SHARED_CREDENTIALS_FILE and AWS_CONFIG_FILE.",
                };
            }

            try
            {
                return DefaultAWSCredentialsIdentityResolver.GetCredentials();
            }
            catch (AmazonClientException e)
            {
                throw new VmQuiesceException("S3CredentialsNotFound", FailureKind.ObjectNotFound, "No S3 credentials were found: none were given, and the AWS credential chain (environment, shared credentials file, profile) has none.", null, e)
                {
                    Remedy = "Give -S3Credential (access key id as user name, secret as password), or -S3ProfileName, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment.",
                };
            }
        }

        /// <summary>The secret in clear, for the one call that signs with it; the unmanaged copy is zeroed at once.</summary>
        private static string Unprotect(SecureString secret)
        {
            IntPtr pointer = Marshal.SecureStringToGlobalAllocUnicode(secret);
            try
            {
                return Marshal.PtrToStringUni(pointer) ?? string.Empty;
            }
            finally
            {
                Marshal.ZeroFreeGlobalAllocUnicode(pointer);
            }
        }

        /// <summary>The connection ended while a response body was read: the request may be sent again.</summary>
        private sealed class BodyCutException : IOException
        {
            public BodyCutException(string message, Exception inner)
                : base(message, inner)
            {
            }
        }
    }
}
