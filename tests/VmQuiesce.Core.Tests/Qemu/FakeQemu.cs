using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using VmQuiesce.Core.Json;
using VmQuiesce.Core.Sources.Qemu;

namespace VmQuiesce.Core.Tests.Qemu
{
    /// <summary>
    /// A QMP monitor with a small model of QEMU's block layer: drives with image chains, the snapshot
    /// transaction (which really creates the overlay files), commit jobs with their events, snapshot-save.
    /// Tests replace any command with <see cref="Override"/>.
    /// </summary>
    public sealed class FakeQemu : FakeSocketServer
    {
        private readonly object _model = new object();
        private readonly List<FakeJob> _jobs = new List<FakeJob>();
        private readonly List<FileStream> _openImages = new List<FileStream>();

        public FakeQemu(string? path)
            : base(path)
        {
        }

        /// <summary>
        /// Trusts the test process as QEMU (it serves this fake's socket): the same user and file checks as for
        /// a real QEMU, with this process's own program standing in for the QEMU binary.
        /// </summary>
        public static QemuProcessTrust TrustThisProcess { get; } =
            QemuProcessTrust.WithExecutable(VmQuiesce.Core.Platform.HostPlatform.IsLinux ? VmQuiesce.Core.Native.Libc.RealPath("/proc/self/exe")! : "");

        public List<FakeDrive> Drives { get; } = new List<FakeDrive>();

        public List<string> InternalSnapshots { get; } = new List<string>();

        /// <summary>Answers a command instead of the model: return true when handled.</summary>
        public Func<string, JsonObject, FakeQemu, bool>? Override { get; set; }

        public bool SendGreeting { get; set; } = true;

        /// <summary>What query-uuid answers; QEMU answers all zeroes for a VM started without -uuid.</summary>
        public string Uuid { get; set; } = "00000000-0000-0000-0000-000000000000";

        /// <summary>When true, block-commit jobs end with an error instead of becoming ready.</summary>
        public bool FailCommits { get; set; }

        /// <summary>Adds a drive whose image this fake holds open, as QEMU does (the trust checks look for it).</summary>
        public FakeDrive AddDrive(string device, string image, string format = "qcow2")
        {
            File.WriteAllText(image, "base image of " + device);
            _openImages.Add(new FileStream(image, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete));
            var drive = new FakeDrive(device, device + "fmt", format);
            drive.Chain.Add(image);
            Drives.Add(drive);
            return drive;
        }

        public override void Dispose()
        {
            base.Dispose();
            _openImages.ForEach(image => image.Dispose());
        }

        public void SendEvent(string name, JsonObject data) =>
            Send(new JsonObject().With("event", name).With("data", data).With("timestamp", new JsonObject().With("seconds", 1700000000L).With("microseconds", 5L)).ToString());

        public void Answer(JsonObject request, object? value) => Reply(request, value);

        public void AnswerError(JsonObject request, string errorClass, string description) => ReplyError(request, errorClass, description);

        protected override void OnConnected()
        {
            if (SendGreeting)
            {
                Send("{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 22, \"minor\": 2, \"major\": 7}, \"package\": \"Debian 1:7.2+dfsg-7+deb12u18+b3\"}, \"capabilities\": [\"oob\"]}}");
            }
        }

        protected override void OnLine(string line, bool afterReset)
        {
            if (line == "\uFFFD")
            {
                return;
            }

            JsonObject request = JsonText.ParseObject(line);
            string command = request.GetString("execute");
            Record(command);
            JsonObject args = request.GetOptionalObject("arguments") ?? new JsonObject();
            if (Override != null && Override(command, request, this))
            {
                return;
            }

            lock (_model)
            {
                Handle(command, request, args);
            }
        }

        private void Handle(string command, JsonObject request, JsonObject args)
        {
            switch (command)
            {
                case "qmp_capabilities":
                    Reply(request, new JsonObject());
                    break;
                case "query-name":
                    Reply(request, new JsonObject().With("name", "fakevm"));
                    break;
                case "query-uuid":
                    Reply(request, new JsonObject().With("UUID", Uuid));
                    break;
                case "query-block":
                    Reply(request, new JsonArray(Drives.Select(d => (object?)d.ToQueryBlock())));
                    break;
                case "query-jobs":
                    Reply(request, new JsonArray(_jobs.Select(j => (object?)j.ToQueryJobs())));
                    break;
                case "transaction":
                    var actions = args.GetArray("actions").Cast<JsonObject>().ToList();
                    var targets = actions.Select(a => (Drive: FindDrive(a.GetObject("data")), Data: a.GetObject("data"))).ToList();
                    if (targets.Any(t => t.Drive == null))
                    {
                        ReplyError(request, "DeviceNotFound", "Device 'nope' not found");
                        return;
                    }

                    foreach (var (drive, data) in targets)
                    {
                        string overlay = data.GetString("snapshot-file");
                        File.WriteAllText(overlay, "overlay");
                        drive!.Chain.Insert(0, overlay);
                        drive.TopNodeName = data.GetOptionalString("snapshot-node-name") ?? "#block" + Drives.IndexOf(drive) + "01";
                    }

                    Reply(request, new JsonObject());
                    break;
                case "block-commit":
                    FakeDrive? committed = FindDrive(args);
                    if (committed == null || committed.Chain.Count < 2)
                    {
                        ReplyError(request, "GenericError", "Top image has no backing file");
                        return;
                    }

                    var job = new FakeJob(args.GetString("job-id"), "commit", committed);
                    _jobs.Add(job);
                    Status(job, "created");
                    Status(job, "running");
                    Reply(request, new JsonObject());
                    if (FailCommits)
                    {
                        job.Error = "Input/output error";
                        Status(job, "aborting");
                        Status(job, "concluded");
                    }
                    else
                    {
                        Status(job, "ready");
                        SendEvent("BLOCK_JOB_READY", new JsonObject().With("device", job.Id).With("type", "commit"));
                    }

                    break;
                case "block-job-complete":
                    FakeJob? ready = _jobs.FirstOrDefault(j => j.Id == args.GetString("device"));
                    if (ready == null || ready.Status != "ready")
                    {
                        ReplyError(request, "GenericError", "The active block job cannot be completed");
                        return;
                    }

                    Reply(request, new JsonObject());
                    ready.Drive.Chain.RemoveAt(0);
                    ready.Drive.TopNodeName = null;
                    Status(ready, "waiting");
                    Status(ready, "pending");
                    Status(ready, "concluded");
                    break;
                case "job-cancel":
                    FakeJob? cancelled = _jobs.FirstOrDefault(j => j.Id == args.GetString("id"));
                    Reply(request, new JsonObject());
                    if (cancelled != null)
                    {
                        Status(cancelled, "concluded");
                    }

                    break;
                case "job-dismiss":
                    FakeJob? dismissed = _jobs.FirstOrDefault(j => j.Id == args.GetString("id"));
                    if (dismissed == null || dismissed.Status != "concluded")
                    {
                        ReplyError(request, "GenericError", "Job not in a state to be dismissed");
                        return;
                    }

                    _jobs.Remove(dismissed);
                    Status(dismissed, "null");
                    Reply(request, new JsonObject());
                    break;
                case "snapshot-save":
                    var save = new FakeJob(args.GetString("job-id"), "snapshot-save", Drives[0]);
                    _jobs.Add(save);
                    Status(save, "created");
                    Status(save, "running");
                    Reply(request, new JsonObject());
                    InternalSnapshots.Add(args.GetString("tag"));
                    Status(save, "concluded");
                    break;
                case "snapshot-delete":
                    var delete = new FakeJob(args.GetString("job-id"), "snapshot-delete", Drives[0]);
                    _jobs.Add(delete);
                    Status(delete, "created");
                    Reply(request, new JsonObject());
                    if (!InternalSnapshots.Remove(args.GetString("tag")))
                    {
                        delete.Error = "Snapshot '" + args.GetString("tag") + "' not found";
                    }

                    Status(delete, "concluded");
                    break;
                default:
                    ReplyError(request, "CommandNotFound", $"The command {command} has not been found");
                    break;
            }
        }

        private FakeDrive? FindDrive(JsonObject args)
        {
            string? name = args.GetOptionalString("device") ?? args.GetOptionalString("node-name");
            return Drives.FirstOrDefault(d => d.Device == name || d.NodeName == name || d.TopNodeName == name);
        }

        private void Status(FakeJob job, string status)
        {
            job.Status = status;
            SendEvent("JOB_STATUS_CHANGE", new JsonObject().With("status", status).With("id", job.Id));
        }

        public sealed class FakeDrive
        {
            public FakeDrive(string device, string nodeName, string format)
            {
                Device = device;
                NodeName = nodeName;
                Format = format;
            }

            public string Device { get; }

            public string NodeName { get; }

            public string Format { get; }

            public string? TopNodeName { get; set; }

            /// <summary>Top first.</summary>
            public List<string> Chain { get; } = new List<string>();

            public JsonObject ToQueryBlock()
            {
                JsonObject? image = null;
                for (int i = Chain.Count - 1; i >= 0; i--)
                {
                    var layer = new JsonObject().With("filename", Chain[i]).With("format", i == Chain.Count - 1 ? Format : "qcow2").With("virtual-size", 1073741824L);
                    if (image != null)
                    {
                        layer["backing-image"] = image;
                    }

                    image = layer;
                }

                var inserted = new JsonObject().With("ro", false).With("drv", Chain.Count > 1 ? "qcow2" : Format).With("node-name", TopNodeName ?? NodeName)
                    .With("file", Chain[0]).With("backing_file_depth", (long)(Chain.Count - 1)).With("image", image);
                if (Chain.Count > 1)
                {
                    inserted["backing_file"] = Chain[1];
                }

                return new JsonObject().With("device", Device).With("qdev", "/machine/peripheral-anon/device[0]/virtio-backend")
                    .With("locked", false).With("removable", false).With("inserted", inserted).With("type", "unknown");
            }
        }

        private sealed class FakeJob
        {
            public FakeJob(string id, string type, FakeDrive drive)
            {
                Id = id;
                Type = type;
                Drive = drive;
            }

            public string Id { get; }

            public string Type { get; }

            public FakeDrive Drive { get; }

            public string Status { get; set; } = "created";

            public string? Error { get; set; }

            public JsonObject ToQueryJobs()
            {
                var job = new JsonObject().With("current-progress", 1L).With("status", Status).With("total-progress", 1L).With("type", Type).With("id", Id);
                if (Error != null)
                {
                    job["error"] = Error;
                }

                return job;
            }
        }
    }
}
