using System;
using System.Collections.Generic;
using VmQuiesce.Core.Repository.Storage;

namespace VmQuiesce.Core.Tests.Storage
{
    /// <summary>Object storage that passes every call on; tests override a call to fail it or to race it.</summary>
    internal class DelegatingObjectStorage : IObjectStorage
    {
        public DelegatingObjectStorage(IObjectStorage inner) => Inner = inner;

        public string Location => Inner.Location;

        public string? Endpoint => Inner.Endpoint;

        protected IObjectStorage Inner { get; }

        public virtual bool CreateIfAbsent(string key, IReadOnlyList<ArraySegment<byte>> parts) => Inner.CreateIfAbsent(key, parts);

        public int Read(string key, byte[] buffer) => Inner.Read(key, buffer);

        public byte[] ReadAll(string key, int maxLength) => Inner.ReadAll(key, maxLength);

        public void Replace(string key, IReadOnlyList<ArraySegment<byte>> parts) => Inner.Replace(key, parts);

        public bool Exists(string key) => Inner.Exists(key);

        public IEnumerable<StoredObject> List(string prefix) => Inner.List(prefix);

        public void Delete(string key) => Inner.Delete(key);

        public void Flush() => Inner.Flush();

        public void Dispose() => Inner.Dispose();
    }
}
