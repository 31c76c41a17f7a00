#if canImport(Glibc)
import Glibc
#endif

/// A child's environment laid out as `execve` takes it: `NAME=value` strings, each ended by a NUL,
/// back to back in one buffer, in the order they were added, each name once.
///
/// A CGI request builds one per process: appending its variables costs a few copies into one
/// array, where a dictionary of strings cost a hash per name, a sort and a C string per entry at
/// every spawn (a tenth of the host's own CPU under CGI load).
///
/// Names and values are taken as given: a name should hold no `=` and neither a NUL (the program
/// would read the string only up to it).
public struct EnvironmentBlock: Sendable, Equatable, CustomStringConvertible {
    private struct Entry: Sendable, Equatable {
        var start: Int
        var nameLength: Int
        var end: Int  // the NUL's offset
    }

    private var storage: [UInt8] = []
    private var entries: [Entry] = []
    /// Entries by name, kept once there are more than `scanLimit` (a request with thousands of
    /// headers): below that, a scan of the names is cheaper than hashing them.
    private var byName: [[UInt8]: Int]?
    private static let scanLimit = 32

    public init() {}

    /// The variables, sorted by name (so that equal dictionaries give equal environments).
    public init(_ variables: [String: String]) {
        for (name, value) in variables.sorted(by: { $0.key < $1.key }) { add(name, value) }
    }

    public var count: Int { entries.count }

    /// Room for `bytes` of text in `entries` variables without growing.
    public mutating func reserveCapacity(bytes: Int, entries count: Int) {
        storage.reserveCapacity(bytes)
        entries.reserveCapacity(count)
    }

    /// Adds `name=value` at the end, unless `name` is there already (then nothing changes and the
    /// result is false): the first value given for a name is the one that counts.
    @discardableResult
    public mutating func add(_ name: String, _ value: String) -> Bool {
        var name = name, value = value
        return name.withUTF8 { name in value.withUTF8 { add(name, $0) } }
    }

    @discardableResult
    public mutating func add(_ name: String, _ value: [UInt8]) -> Bool {
        var name = name
        return name.withUTF8 { name in value.withUnsafeBufferPointer { add(name, $0) } }
    }

    @discardableResult
    public mutating func add(_ name: [UInt8], _ value: String) -> Bool {
        var value = value
        return name.withUnsafeBufferPointer { name in value.withUTF8 { add(name, $0) } }
    }

    private mutating func add(_ name: UnsafeBufferPointer<UInt8>, _ value: UnsafeBufferPointer<UInt8>) -> Bool {
        guard index(of: name) == nil else { return false }
        let start = storage.count
        storage.append(contentsOf: name)
        storage.append(UInt8(ascii: "="))
        storage.append(contentsOf: value)
        entries.append(Entry(start: start, nameLength: name.count, end: storage.count))
        storage.append(0)
        if byName != nil {
            byName![Array(name)] = entries.count - 1
        } else if entries.count > Self.scanLimit {
            var index: [[UInt8]: Int] = [:]
            for (i, entry) in entries.enumerated() { index[Array(storage[entry.start..<entry.start + entry.nameLength])] = i }
            byName = index
        }
        return true
    }

    /// Adds each variable of `other` whose name is not here yet, in `other`'s order.
    public mutating func add(missingFrom other: EnvironmentBlock) {
        other.storage.withUnsafeBufferPointer { text in
            for entry in other.entries {
                let name = UnsafeBufferPointer(rebasing: text[entry.start..<entry.start + entry.nameLength])
                _ = add(name, UnsafeBufferPointer(rebasing: text[entry.start + entry.nameLength + 1..<entry.end]))
            }
        }
    }

    /// The value of `name`, or nil.
    public func value(of name: String) -> String? {
        var name = name
        guard let found = name.withUTF8({ index(of: $0) }) else { return nil }
        let entry = entries[found]
        return String(decoding: storage[entry.start + entry.nameLength + 1..<entry.end], as: UTF8.self)
    }

    /// Every variable, by name.
    public var variables: [String: String] {
        var out: [String: String] = [:]
        out.reserveCapacity(entries.count)
        for entry in entries {
            let name = String(decoding: storage[entry.start..<entry.start + entry.nameLength], as: UTF8.self)
            out[name] = String(decoding: storage[entry.start + entry.nameLength + 1..<entry.end], as: UTF8.self)
        }
        return out
    }

    /// The `NAME=value` strings, in order.
    public var description: String {
        entries.map { String(decoding: storage[$0.start..<$0.end], as: UTF8.self) }.joined(separator: "\n")
    }

    /// Calls `body` with a NULL-terminated array of pointers to the entries, valid during the call.
    public func withUnsafeEnvironment<R>(_ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) throws -> R) rethrows -> R {
        let pointers = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: entries.count + 1)
        defer { pointers.deallocate() }
        pointers[entries.count] = nil
        return try storage.withUnsafeBytes { raw in
            if let base = raw.baseAddress {
                let text = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: CChar.self))
                for (i, entry) in entries.enumerated() { pointers[i] = text + entry.start }
            }
            return try body(pointers)
        }
    }

    private func index(of name: UnsafeBufferPointer<UInt8>) -> Int? {
        if let byName { return byName[Array(name)] }
        return storage.withUnsafeBufferPointer { text in
            for (i, entry) in entries.enumerated() where entry.nameLength == name.count {
                if name.isEmpty || memcmp(text.baseAddress! + entry.start, name.baseAddress!, name.count) == 0 { return i }
            }
            return nil
        }
    }
}
