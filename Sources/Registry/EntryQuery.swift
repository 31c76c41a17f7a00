import Core

/// What the Finder looks for: every condition given must hold. An empty query matches every entry.
public struct EntryQuery: Sendable, Hashable {
    /// The entry's kind, as a glob (`swiftlet.*`).
    public var kind: Glob?
    /// The entry's namespace, exactly.
    public var namespace: String?
    /// The entry's id `namespace:name`, as a glob (`app:hello-*`).
    public var id: Glob?
    /// Meta keys and the values they must have; a value matches a string meta value as written,
    /// and any other value by its JSON text (`true`, `8080`).
    public var meta: [String: String]

    public init(kind: Glob? = nil, namespace: String? = nil, id: Glob? = nil, meta: [String: String] = [:]) {
        self.kind = kind
        self.namespace = namespace
        self.id = id
        self.meta = meta
    }

    public func matches(_ entry: Entry) -> Bool {
        if let namespace, entry.id.namespace != namespace { return false }
        if let kind, !kind.matches(entry.kind) { return false }
        if let id, !id.matches(entry.id.description) { return false }
        for (key, wanted) in meta {
            guard let value = entry.meta[key] else { return false }
            let text = value.stringValue ?? value.encoded()
            if text != wanted { return false }
        }
        return true
    }
}

/// Queries a registry state: the entries matching a query, in id order.
///
/// A Finder holds one state (one version), so a caller that asks several questions gets answers
/// that agree with each other; `RegistryService.finder()` gives one for the current version.
public struct Finder: Sendable {
    /// The version the state belongs to (0 before the first commit).
    public let version: Int
    private let entries: [EntryID: Entry]

    public init(version: Int, entries: [EntryID: Entry]) {
        self.version = version
        self.entries = entries
    }

    /// The entries matching `query`, sorted by id.
    public func find(_ query: EntryQuery) -> [Entry] {
        if let id = query.id, id.isLiteral {
            // One id: a lookup, not a scan.
            return EntryID(id.pattern).flatMap { entries[$0] }.map { query.matches($0) ? [$0] : [] } ?? []
        }
        return entries.values.filter(query.matches).sorted { $0.id < $1.id }
    }

    /// The entry `id`, or nil.
    public func entry(_ id: EntryID) -> Entry? { entries[id] }

    public var count: Int { entries.count }
}
