using System;
using System.Collections;
using System.Collections.Generic;

namespace VmQuiesce.Core.Json
{
    /// <summary>
    /// A JSON object that keeps its members in order, with typed getters whose errors name the
    /// member and what was expected. Values are: null, bool, long, double, string, JsonObject, JsonArray.
    /// </summary>
    public sealed class JsonObject : IEnumerable<KeyValuePair<string, object?>>
    {
        private readonly List<KeyValuePair<string, object?>> _members = new List<KeyValuePair<string, object?>>();
        private readonly Dictionary<string, int> _index = new Dictionary<string, int>(StringComparer.Ordinal);

        public int Count => _members.Count;

        public object? this[string name]
        {
            get => _index.TryGetValue(name, out int i) ? _members[i].Value : null;
            set
            {
                if (_index.TryGetValue(name, out int i))
                {
                    _members[i] = new KeyValuePair<string, object?>(name, value);
                }
                else
                {
                    _index[name] = _members.Count;
                    _members.Add(new KeyValuePair<string, object?>(name, value));
                }
            }
        }

        /// <summary>
        /// The member of <paramref name="enumType"/> named exactly <paramref name="name"/> (no numbers, no other case), or
        /// null. Not Enum.TryParse&lt;T&gt;: that is compiled at run time for each enum, as a manifest is read.
        /// </summary>
        public static object? EnumMemberNamed(Type enumType, string name) => Enum.IsDefined(enumType, name) ? Enum.Parse(enumType, name) : null;

        /// <summary>Adds a member and returns this object, for building messages fluently.</summary>
        public JsonObject With(string name, object? value)
        {
            this[name] = value;
            return this;
        }

        public bool Contains(string name) => _index.ContainsKey(name);

        public string GetString(string name) => Get<string>(name, "a string");

        public string? GetOptionalString(string name) => GetOptional<string>(name, "a string");

        public long GetInt64(string name) => Required(name) is long whole ? whole : NumberAsLong(name);

        public long? GetOptionalInt64(string name) => Contains(name) && this[name] != null ? GetInt64(name) : (long?)null;

        public double GetDouble(string name) => Required(name) switch
        {
            long l => l,
            double d => d,
            _ => throw Invalid(name, "a number"),
        };

        public bool GetBoolean(string name) => Get<bool>(name, "true or false");

        public bool? GetOptionalBoolean(string name) => Contains(name) && this[name] != null ? GetBoolean(name) : (bool?)null;

        public JsonObject GetObject(string name) => Get<JsonObject>(name, "an object");

        public JsonObject? GetOptionalObject(string name) => GetOptional<JsonObject>(name, "an object");

        public JsonArray GetArray(string name) => Get<JsonArray>(name, "an array");

        public JsonArray? GetOptionalArray(string name) => GetOptional<JsonArray>(name, "an array");

        public IEnumerator<KeyValuePair<string, object?>> GetEnumerator() => _members.GetEnumerator();

        IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

        public override string ToString() => JsonText.Serialize(this, indented: false);

        private long NumberAsLong(string name)
        {
            if (this[name] is double d && Math.Floor(d) == d && d >= long.MinValue && d <= long.MaxValue)
            {
                return (long)d;
            }

            throw Invalid(name, "a whole number");
        }

        private object? Required(string name) =>
            _index.TryGetValue(name, out int i) ? _members[i].Value : throw new JsonFormatException($"The JSON member '{name}' is missing.");

        private T Get<T>(string name, string expected) => Required(name) is T value ? value : throw Invalid(name, expected);

        private T? GetOptional<T>(string name, string expected)
            where T : class
        {
            object? value = this[name];
            return value == null ? null : value as T ?? throw Invalid(name, expected);
        }

        private JsonFormatException Invalid(string name, string expected) =>
            new JsonFormatException($"The JSON member '{name}' is {JsonText.Describe(this[name])}; expected {expected}.");
    }

    /// <summary>A JSON array; elements use the same value types as <see cref="JsonObject"/>.</summary>
    public sealed class JsonArray : List<object?>
    {
        public JsonArray()
        {
        }

        public JsonArray(IEnumerable<object?> items)
            : base(items)
        {
        }
    }

    /// <summary>Malformed JSON text or a document of the wrong shape.</summary>
    public sealed class JsonFormatException : FormatException
    {
        public JsonFormatException(string message)
            : base(message)
        {
        }
    }
}
