using System;
using System.Collections.Generic;
using System.Linq;
using System.Management.Automation;
using System.Security;
using VmQuiesce.Core;
using VmQuiesce.Core.Repository;
using VmQuiesce.Core.Repository.Keys;
using VmQuiesce.Core.Repository.Storage;

namespace VmQuiesce.Commands
{
    /// <summary>
    /// A cmdlet that reads repositories that may live on S3-compatible object storage (s3://bucket/prefix): how to
    /// reach the store, and opening a repository by its folder path or its s3:// address.
    /// </summary>
    public abstract class RepositoryCmdlet : VmQuiesceCmdlet
    {
        /// <summary>The endpoint of a non-AWS S3 store; else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, or AWS itself.</summary>
        [Parameter]
        [ValidateNotNull]
        public virtual Uri? S3Endpoint { get; set; }

        /// <summary>The access key id (user name) and secret access key (password); else the AWS credential chain.</summary>
        [Parameter]
        [Credential]
        [ValidateNotNull]
        public virtual PSCredential? S3Credential { get; set; }

        /// <summary>A profile of the shared AWS credentials and config files.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public virtual string? S3ProfileName { get; set; }

        /// <summary>The signing region; else AWS_REGION, AWS_DEFAULT_REGION, or us-east-1 with an endpoint.</summary>
        [Parameter]
        [ValidateNotNullOrEmpty]
        public virtual string? S3Region { get; set; }

        /// <summary>
        /// RepositoryKeys' rule for a new passphrase copy, checked before anything is opened or made: a short passphrase
        /// (of -Passphrase or -Credential, as the parameter set says) ends the command.
        /// </summary>
        protected void RequireLongEnough(SecureString? passphrase)
        {
            if (passphrase != null && passphrase.Length < RepositoryKeys.MinPassphraseLength)
            {
                ThrowInvalidArgument("PassphraseTooShort", $"The passphrase (-{ParameterSetName}) has {passphrase.Length} characters; expected at least {RepositoryKeys.MinPassphraseLength}. Nothing was changed.", ParameterSetName);
            }
        }

        /// <summary>
        /// The object storage at an s3:// address, checked (endpoint answers, keys accepted, bucket exists) before
        /// anything else happens.
        /// </summary>
        internal S3ObjectStorage OpenS3Storage(string location)
        {
            var settings = new S3ConnectionSettings
            {
                Endpoint = S3Endpoint,
                Region = S3Region,
                ProfileName = S3ProfileName,
                AccessKeyId = S3Credential?.UserName,
                SecretAccessKey = S3Credential?.Password,
            };
            var storage = new S3ObjectStorage(S3RepositoryAddress.Parse(location), settings);
            try
            {
                storage.CheckAccess();
                return storage;
            }
            catch
            {
                storage.Dispose();
                throw;
            }
        }

        /// <summary>
        /// An existing repository: a folder, or an s3:// address; when it is encrypted, with its key from this host's
        /// key file (RepositoryKeyNotFound otherwise, before anything is read). Every failure, a path that does not
        /// resolve too, is a VmQuiesceException about this one repository: the callers write it and go on.
        /// </summary>
        internal IRestorePointSource OpenRestorePointSource(string location, string parameterName) =>
            OpenResolvedRestorePointSource(S3RepositoryAddress.IsS3(location) ? location : ResolveItemFileSystemPath(location, parameterName));

        /// <summary>
        /// <see cref="OpenRestorePointSource"/> for a folder's full path or an s3:// address as a record keeps it:
        /// nothing is resolved against this session, so it may run off the pipeline thread.
        /// </summary>
        internal IRestorePointSource OpenResolvedRestorePointSource(string location)
        {
            IRestorePointSource source = S3RepositoryAddress.IsS3(location)
                ? ObjectRepository.Open(OpenS3Storage(location))
                : BackupRepository.Open(location);
            try
            {
                source.Encryption.RequireKey();
                return source;
            }
            catch
            {
                (source as IDisposable)?.Dispose();
                throw;
            }
        }
    
        /// <summary>
        /// The keys of the repository at <paramref name="location"/>, a folder or an s3:// address (which they then own);
        /// failures as <see cref="OpenRestorePointSource"/>.
        /// </summary>
        internal RepositoryKeys OpenRepositoryKeys(string location, string parameterName) =>
            S3RepositoryAddress.IsS3(location)
                ? new RepositoryKeys(ObjectRepository.Open(OpenS3Storage(location)))
                : new RepositoryKeys(BackupRepository.Open(ResolveItemFileSystemPath(location, parameterName)));

        /// <summary>
        /// The shared lock a reader holds on <paramref name="source"/>, so a prune waits: a lock file in a folder, a lock
        /// object on object storage (see about_VmQuiesce_ObjectStorage).
        /// </summary>
        internal IDisposable LockForReading(IRestorePointSource source, string purpose) =>
            source is BackupRepository folder ? folder.LockForReading(purpose, WriteWarning) : source.LockShared(purpose, WriteWarning);

        /// <summary>
        /// The restore points named by <paramref name="ids"/> (unknown ones reported), or else every point, of the VMs
        /// matching <paramref name="vmNames"/>, only each VM's newest with <paramref name="latest"/>; oldest first.
        /// </summary>
        internal List<RestorePoint> SelectRestorePoints(IRestorePointSource source, string[]? ids, string[]? vmNames, bool latest)
        {
            IEnumerable<RestorePoint> points;
            if (ids != null)
            {
                var found = new List<RestorePoint>();
                foreach (string id in ids)
                {
                    try
                    {
                        found.Add(source.GetRestorePoint(id));
                    }
                    catch (VmQuiesceException e)
                    {
                        WriteFailure(e);
                    }
                }

                points = found;
            }
            else
            {
                points = source.ListRestorePoints(WriteFailure);
            }

            if (vmNames != null)
            {
                List<RestorePoint> all = points.ToList();
                ReportUnmatchedVmNames(source.Location, vmNames, all.Select(point => point.VmName), ids != null ? "among the ids given" : null);
                Func<string, bool> named = VmNameFilter(vmNames);
                points = all.Where(point => named(point.VmName));
            }

            if (latest)
            {
                points = points.GroupBy(point => point.VmKey, StringComparer.Ordinal).Select(vm => vm.OrderByDescending(point => point.StartTime).First());
            }

            return points.OrderBy(point => point.StartTime).ThenBy(point => point.Id, StringComparer.Ordinal).ToList();
        }

        /// <summary>Whether a VM name is one of <paramref name="vmNames"/> (wildcards allowed, case ignored).</summary>
        protected static Func<string, bool> VmNameFilter(IEnumerable<string> vmNames)
        {
            var patterns = vmNames.Select(name => new WildcardPattern(name, WildcardOptions.IgnoreCase)).ToList();
            return vm => patterns.Any(pattern => pattern.IsMatch(vm));
        }

        /// <summary>
        /// A name of <paramref name="vmNames"/> without wildcards that matches none of <paramref name="vmsThere"/> (the VMs of
        /// the repository's points, or of those <paramref name="among"/> says) is most often a typo: a non-terminating
        /// RestorePointNotFound naming the VMs there, as Get-BackupVm says it.
        /// </summary>
        protected void ReportUnmatchedVmNames(string location, IEnumerable<string> vmNames, IEnumerable<string> vmsThere, string? among)
        {
            const int shown = 10;
            List<string> vms = vmsThere.Distinct(StringComparer.OrdinalIgnoreCase).OrderBy(name => name, StringComparer.OrdinalIgnoreCase).ToList();
            string which = among
                ?? (vms.Count == 0 ? "it has none" : $"its VMs: {string.Join(", ", vms.Take(shown).Select(name => $"'{name}'"))}{(vms.Count > shown ? $" and {vms.Count - shown} more" : string.Empty)}");
            foreach (string missing in vmNames.Where(name => !WildcardPattern.ContainsWildcardCharacters(name) && !vms.Any(VmNameFilter(new[] { name }))))
            {
                WriteFailure(new VmQuiesceException("RestorePointNotFound", FailureKind.ObjectNotFound,
                    $"The repository '{location}' has no restore point of a VM named '{missing}' ({which}).", missing));
            }
        }
    }
}
