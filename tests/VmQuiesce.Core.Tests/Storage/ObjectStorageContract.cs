using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using System.Threading;
using System.Threading.Tasks;
using VmQuiesce.Core.Repository.Storage;
using Xunit;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>
    /// What the repository relies on from every <see cref="IObjectStorage"/>, run against each implementation:
    /// a folder and a real Ceph RGW. A subclass says how to make a new, empty storage.
    /// </summary>
    public abstract class ObjectStorageContract
    {
        protected abstract IObjectStorage NewStorage();

        protected static IReadOnlyList<ArraySegment<byte>> Parts(params string[] texts) =>
            texts.Select(text => new ArraySegment<byte>(Encoding.UTF8.GetBytes(text))).ToList();

        protected static string ReadText(IObjectStorage storage, string key, int max = 1024)
        {
            var buffer = new byte[max];
            int length = storage.Read(key, buffer);
            return Encoding.UTF8.GetString(buffer, 0, length);
        }

        protected void CreatesReadsListsAndDeletes()
        {
            using IObjectStorage storage = NewStorage();
            Assert.True(storage.CreateIfAbsent("chunks/ab/ab01", Parts("VQC", "R", "payload")));
            Assert.True(storage.CreateIfAbsent("points/p1.json", Parts("{}")));
            storage.Flush();

            Assert.Equal("VQCRpayload", ReadText(storage, "chunks/ab/ab01"));
            Assert.True(storage.Exists("chunks/ab/ab01"));
            Assert.False(storage.Exists("chunks/ab/ab02"));
            StoredObject listed = Assert.Single(storage.List("chunks/"));
            Assert.Equal("chunks/ab/ab01", listed.Key);
            Assert.Equal(11, listed.Size);
            Assert.Equal(new[] { "chunks/ab/ab01", "points/p1.json" }, storage.List(string.Empty).Select(item => item.Key).OrderBy(key => key, StringComparer.Ordinal));

            storage.Delete("chunks/ab/ab01");
            storage.Delete("chunks/ab/ab01");
            Assert.False(storage.Exists("chunks/ab/ab01"));
            Assert.Empty(storage.List("chunks/"));
            Assert.Throws<FileNotFoundException>(() => storage.Read("chunks/ab/ab01", new byte[64]));
        }

        protected void CreateIfAbsentNeverReplaces()
        {
            using IObjectStorage storage = NewStorage();
            Assert.True(storage.CreateIfAbsent("locks/exclusive.lock", Parts("first")));
            Assert.False(storage.CreateIfAbsent("locks/exclusive.lock", Parts("second")));
            Assert.Equal("first", ReadText(storage, "locks/exclusive.lock"));
        }

        protected void OfConcurrentCreatesExactlyOneWins()
        {
            using IObjectStorage storage = NewStorage();
            const int Writers = 8;
            using var start = new Barrier(Writers);
            Task<bool>[] writers = Enumerable.Range(0, Writers).Select(writer => Task.Factory.StartNew(() =>
            {
                start.SignalAndWait();
                return storage.CreateIfAbsent("locks/exclusive.lock", Parts("writer " + writer));
            }, TaskCreationOptions.LongRunning)).ToArray();
            bool[] won = writers.Select(task => task.Result).ToArray();

            Assert.Equal(1, won.Count(x => x));
            Assert.Equal("writer " + Array.IndexOf(won, true), ReadText(storage, "locks/exclusive.lock"));
        }

        protected void ReplaceSwapsTheWholeObject()
        {
            using IObjectStorage storage = NewStorage();
            storage.Replace("config.json", Parts("old"));
            storage.Replace("config.json", Parts("new ", "content"));
            Assert.Equal("new content", ReadText(storage, "config.json"));
            Assert.Single(storage.List(string.Empty));
        }

        protected void ReadIsBoundedByTheBuffer()
        {
            using IObjectStorage storage = NewStorage();
            storage.CreateIfAbsent("points/big.json", Parts(new string('x', 100)));
            Assert.Throws<InvalidDataException>(() => storage.Read("points/big.json", new byte[99]));
            Assert.Equal(100, storage.Read("points/big.json", new byte[100]));
        }

        protected void AnEmptyObjectReadsAsEmpty()
        {
            using IObjectStorage storage = NewStorage();
            storage.CreateIfAbsent("chunks/00/0000", Parts(string.Empty));
            Assert.Equal(0, storage.Read("chunks/00/0000", new byte[64]));
            Assert.Empty(storage.ReadAll("chunks/00/0000", 64));
        }

        protected void KeysThatClimbOutAreRefused()
        {
            using IObjectStorage storage = NewStorage();
            foreach (string key in new[] { "../outside", "a/../../b", "/abs", "a//b", "a/./b", "a\\b", "sp ace", string.Empty })
            {
                Assert.Throws<ArgumentException>(() => storage.CreateIfAbsent(key, Parts("x")));
                Assert.Throws<ArgumentException>(() => storage.Read(key, new byte[8]));
            }
        }

        protected void ListsOnlyUnderThePrefix()
        {
            using IObjectStorage storage = NewStorage();
            foreach (string key in new[] { "points/a.json", "points/b.json", "pointsx/c.json", "chunks/00/00aa" })
            {
                storage.CreateIfAbsent(key, Parts(key));
            }

            Assert.Equal(new[] { "points/a.json", "points/b.json" }, storage.List("points/").Select(item => item.Key).OrderBy(key => key, StringComparer.Ordinal));
        }
    }
}
