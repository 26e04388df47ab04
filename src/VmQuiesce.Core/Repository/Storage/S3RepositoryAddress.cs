using System;
using System.Text.RegularExpressions;

namespace VmQuiesce.Core.Repository.Storage
{
    /// <summary>
    /// A repository on S3-compatible object storage, written s3://bucket/prefix (prefix optional): the bucket
    /// must follow S3's naming rules, the prefix is a repository key (<see cref="ObjectKeys"/>).
    /// </summary>
    public sealed class S3RepositoryAddress
    {
        public const string Scheme = "s3://";

        private static readonly Regex BucketPattern = new Regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", RegexOptions.CultureInvariant);

        private S3RepositoryAddress(string bucket, string prefix)
        {
            Bucket = bucket;
            Prefix = prefix;
        }

        public string Bucket { get; }

        /// <summary>"" or the key prefix without a trailing '/'.</summary>
        public string Prefix { get; }

        /// <summary>Whether <paramref name="location"/> names an S3 repository (it may still be malformed).</summary>
        public static bool IsS3(string? location) => location != null && location.StartsWith(Scheme, StringComparison.OrdinalIgnoreCase);

        public static S3RepositoryAddress Parse(string location)
        {
            if (!IsS3(location))
            {
                throw Invalid(location, "it does not start with s3://");
            }

            string rest = location.Substring(Scheme.Length).TrimEnd('/');
            int slash = rest.IndexOf('/');
            string bucket = slash < 0 ? rest : rest.Substring(0, slash);
            string prefix = slash < 0 ? string.Empty : rest.Substring(slash + 1);
            if (!BucketPattern.IsMatch(bucket) || bucket.Contains("..") || Regex.IsMatch(bucket, @"^\d+\.\d+\.\d+\.\d+$"))
            {
                throw Invalid(location, $"'{bucket}' is not a bucket name (3 to 63 lowercase letters, digits, '.' or '-', starting and ending with a letter or digit)");
            }

            if (prefix.Length > 0 && !ObjectKeys.IsValid(prefix))
            {
                throw Invalid(location, $"the prefix '{prefix}' is not '/'-separated names of letters, digits, '.', '_' or '-'");
            }

            return new S3RepositoryAddress(bucket, prefix);
        }

        public override string ToString() => Scheme + Bucket + (Prefix.Length > 0 ? "/" + Prefix : string.Empty);

        private static VmQuiesceException Invalid(string location, string why) =>
            new VmQuiesceException("InvalidS3Repository", FailureKind.InvalidArgument, $"'{location}' is not an S3 repository address: {why}. Expected s3://bucket/prefix.", location);
    }
}
