import Core

/// A value laid over an entry's data from the command line: `roost run -o app:hello:port=8081`.
///
/// Written `namespace:name:path=value`, where `path` is a dotted path into the entry's data
/// (`limits.memory`, or `exec.0` for an item of a list) and `value` is read like a plain YAML
/// scalar: `8081` is a number, `true` a boolean, `~` null, anything else text. Missing mappings on
/// the way are created; a list index must exist. Overrides apply to the folder on every apply
/// (boot, file change, SIGHUP), before validation, so an override that makes an entry invalid is
/// reported like a bad edit.
public struct EntryOverride: Sendable, Hashable, CustomStringConvertible {
    public let id: EntryID
    public let path: [String]
    public let value: JSON
    /// As written on the command line.
    public let text: String

    /// Parses `namespace:name:path=value`; the error says what is wrong with it.
    public init(parsing text: String) throws(RegistryError) {
        self.text = text
        guard let equals = text.firstIndex(of: "=") else {
            throw RegistryError(.invalidOverride, "override '\(text)': expected namespace:name:path=value")
        }
        let target = text[..<equals]
        let parts = target.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, let id = EntryID(namespace: String(parts[0]), name: String(parts[1])) else {
            throw RegistryError(.invalidOverride, "override '\(text)': '\(target)' is not namespace:name:path")
        }
        let path = parts[2].split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        guard !path.contains(where: \.isEmpty) else {
            throw RegistryError(.invalidOverride, "override '\(text)': the field path '\(parts[2])' has an empty part")
        }
        self.id = id
        self.path = path
        self.value = JSON.coreSchema(plain: String(text[text.index(after: equals)...]))
    }

    public var description: String { text }

    /// Sets the value in `entry`'s data; the error says why it cannot.
    func apply(to entry: inout Entry) throws(RegistryError) {
        var data = entry.data
        try set(&data, at: path[...])
        entry.data = data
    }

    private func set(_ node: inout JSON, at path: ArraySlice<String>) throws(RegistryError) {
        guard let key = path.first else {
            node = value
            return
        }
        let rest = path.dropFirst()
        switch node {
        case .object(var members):
            var child = members[key] ?? (rest.isEmpty ? .null : .object([:]))
            node = .null  // so that `members` is the only reference while it changes
            try set(&child, at: rest)
            members[key] = child
            node = .object(members)
        case .array(var items):
            guard let index = Int(key), items.indices.contains(index) else {
                throw RegistryError(
                    .invalidOverride, "override '\(text)': '\(key)' is not an index of the list (0..<\(items.count))",
                    entry: id)
            }
            node = .null
            try set(&items[index], at: rest)
            node = .array(items)
        case .null:
            // A field written empty (`limits:`) takes a mapping like a missing one.
            var child: JSON = .object([:])
            try set(&child, at: path)
            node = child
        default:
            throw RegistryError(
                .invalidOverride, "override '\(text)': '\(key)' is inside a value that is neither a mapping nor a list",
                entry: id)
        }
    }
}

/// What `roost run` lays over the folder: overrides and disabled entries.
public struct FolderAdjustments: Sendable, Hashable {
    public var overrides: [EntryOverride]
    /// Entries whose id matches one of these are left out, as if they were not written.
    public var disabled: [Glob]

    public init(overrides: [EntryOverride] = [], disabled: [Glob] = []) {
        self.overrides = overrides
        self.disabled = disabled
    }

    public var isEmpty: Bool { overrides.isEmpty && disabled.isEmpty }

    /// True when `id` matches a `--disable` glob.
    public func isDisabled(_ id: EntryID) -> Bool {
        guard !disabled.isEmpty else { return false }
        let text = id.description
        return disabled.contains { $0.matches(text) }
    }

    /// The overrides of entry `id`, in command-line order.
    public func overrides(for id: EntryID) -> [EntryOverride] {
        overrides.isEmpty ? [] : overrides.filter { $0.id == id }
    }

    /// `load` with disabled entries removed and overrides applied. An override naming an entry that
    /// is not there (or disabled) is an error, so a typo never goes unnoticed.
    public func apply(to load: LoadResult) -> LoadResult {
        guard !isEmpty else { return load }
        var result = load
        if !disabled.isEmpty {
            result.entries.removeAll { entry in
                let id = entry.id.description
                return disabled.contains { $0.matches(id) }
            }
        }
        guard !overrides.isEmpty else { return result }
        var index: [EntryID: Int] = [:]
        for (i, entry) in result.entries.enumerated() { index[entry.id] = i }
        for override in overrides {
            guard let i = index[override.id] else {
                result.errors.append(RegistryError(
                    .invalidOverride, "override '\(override.text)': there is no entry \(override.id)"
                        + (disabled.isEmpty ? "" : " (or it is disabled)")))
                continue
            }
            do {
                try override.apply(to: &result.entries[i])
            } catch {
                result.errors.append(RegistryError(
                    error.code, error.message, at: result.entries[i].location, entry: override.id))
            }
        }
        result.errors.sort()
        return result
    }
}
