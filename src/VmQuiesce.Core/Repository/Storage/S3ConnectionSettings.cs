using System;
using System.Security;

namespace VmQuiesce.Core.Repository.Storage
{
    /// <summary>
    /// How to reach an S3-compatible store. Everything is optional: the endpoint then comes from
    /// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (as the AWS CLI and SDKs read them), the region from
    /// AWS_REGION or AWS_DEFAULT_REGION, and the credentials from the AWS SDK's chain (environment, shared
    /// credentials file and profile, instance roles). A secret is held only as a <see cref="SecureString"/>
    /// and never printed.
    /// </summary>
    public sealed class S3ConnectionSettings
    {
        public const string EndpointVariable = "AWS_ENDPOINT_URL_S3";
        public const string GenericEndpointVariable = "AWS_ENDPOINT_URL";

        /// <summary>The endpoint of a non-AWS store (http or https, no user name or password in it), or null.</summary>
        public Uri? Endpoint { get; set; }

        /// <summary>The signing region; with an endpoint and none set anywhere, us-east-1 (what Ceph RGW, MinIO and most stores accept).</summary>
        public string? Region { get; set; }

        /// <summary>A profile of the shared AWS credentials/config files, instead of the default chain.</summary>
        public string? ProfileName { get; set; }

        /// <summary>An access key id given directly (a PSCredential's user name), with <see cref="SecretAccessKey"/>.</summary>
        public string? AccessKeyId { get; set; }

        public SecureString? SecretAccessKey { get; set; }

        /// <summary>The endpoint to use: the setting, else the environment, else null (AWS itself).</summary>
        public Uri? ResolveEndpoint()
        {
            if (Endpoint != null)
            {
                return CheckEndpoint(Endpoint, "the -Endpoint parameter");
            }

            foreach (string variable in new[] { EndpointVariable, GenericEndpointVariable })
            {
                string? value = Environment.GetEnvironmentVariable(variable);
                if (!string.IsNullOrWhiteSpace(value))
                {
                    if (!Uri.TryCreate(value!.Trim(), UriKind.Absolute, out Uri? uri))
                    {
                        throw InvalidEndpoint(value, $"the environment variable {variable}", "it is not an absolute URL");
                    }

                    return CheckEndpoint(uri, $"the environment variable {variable}");
                }
            }

            return null;
        }

        public string? ResolveRegion()
        {
            foreach (string? candidate in new[] { Region, Environment.GetEnvironmentVariable("AWS_REGION"), Environment.GetEnvironmentVariable("AWS_DEFAULT_REGION") })
            {
                if (!string.IsNullOrWhiteSpace(candidate))
                {
                    return candidate!.Trim();
                }
            }

            return null;
        }

        private static Uri CheckEndpoint(Uri endpoint, string source)
        {
            if (!endpoint.IsAbsoluteUri || (endpoint.Scheme != Uri.UriSchemeHttp && endpoint.Scheme != Uri.UriSchemeHttps))
            {
                throw InvalidEndpoint(endpoint.OriginalString, source, "expected an http:// or https:// URL");
            }

            if (!string.IsNullOrEmpty(endpoint.UserInfo))
            {
                // Never echo it: the user part may be a secret.
                throw InvalidEndpoint(endpoint.GetComponents(UriComponents.SchemeAndServer, UriFormat.SafeUnescaped), source, "it holds a user name or password; give credentials with -S3Credential or the AWS credential chain instead");
            }

            return endpoint;
        }

        private static VmQuiesceException InvalidEndpoint(string value, string source, string why) =>
            new VmQuiesceException("InvalidS3Endpoint", FailureKind.InvalidArgument, $"The S3 endpoint '{value}' from {source} is not usable: {why}.", value);
    }
}
