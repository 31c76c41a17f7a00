import Core

/// A kind of registry entry, such as `swiftlet.service`: it checks an entry's data and names the
/// fields that reference other entries.
///
/// A kind is registered by the component that owns it, through a `KindTable`. What the caller may
/// rely on, and what a kind must provide:
/// - Both requirements are pure: no I/O, no waiting, the same answer for the same entry, from any
///   thread (the registry validates off the loop and may call them concurrently).
/// - Both are called on every entry of the kind, including entries whose data is invalid, so they
///   must never trap on unexpected shapes; `references(of:)` returns what it can find.
/// - `validate` returns every problem at once (empty when the entry is valid), each with
///   `entry.id` and the location of the field at fault (`entry.location(ofField:)`). It does not
///   check that references exist: the caller resolves them against the whole desired state.
/// - `references(of:)` returns the reference text exactly as written, with the top-level data key
///   (or a dotted path starting with one) it was found under. The caller resolves each one inside
///   the entry's namespace (`EntryID.resolve`), reports the ones that name no entry, refuses
///   cycles, and orders creates, updates and deletes by these references.
public protocol EntryKind: Sendable {
    /// The kind's name as written in entries' `kind` field, such as `registry.entry`.
    var name: String { get }

    /// Every problem in `entry`'s data; empty when the entry is valid.
    func validate(_ entry: Entry) -> [RegistryError]

    /// The references `entry` makes to other entries, as written, with the field holding each.
    func references(of entry: Entry) -> [(field: String, reference: String)]
}

/// The kinds known to the registry, looked up by name.
public struct KindTable: Sendable {
    private let kinds: [String: any EntryKind]

    /// Fails with a `duplicateID` error when two kinds have the same name: two owners for one
    /// kind is a wiring mistake, caught when the host starts rather than on the first apply.
    public init(_ kinds: [any EntryKind]) throws(RegistryError) {
        var table: [String: any EntryKind] = [:]
        for kind in kinds {
            guard table[kind.name] == nil else {
                throw RegistryError(.duplicateID, "kind '\(kind.name)' is registered more than once")
            }
            table[kind.name] = kind
        }
        self.kinds = table
    }

    /// The kind called `name`, or nil when no component owns it.
    public func kind(named name: String) -> (any EntryKind)? { kinds[name] }

    /// The names of all kinds, sorted.
    public var names: [String] { kinds.keys.sorted() }
}

/// `registry.entry`: free-form configuration data, owned by the registry itself.
///
/// Any data is valid. The one field it reads is the optional `requires` — an entry id or a list
/// of them, relative to the namespace or full — which names entries this one depends on.
public struct RegistryEntryKind: EntryKind {
    public init() {}

    public var name: String { "registry.entry" }

    public func validate(_ entry: Entry) -> [RegistryError] {
        guard case .object(let data) = entry.data else {
            return [RegistryError(.invalidField, "data must be a mapping", at: entry.location, entry: entry.id)]
        }
        // `requires` is the one field this kind gives a meaning to, so a misshapen one is reported
        // rather than silently ignored.
        guard let requires = data["requires"] else { return [] }
        switch requires {
        case .null, .string:
            return []
        case .array(let items) where items.allSatisfy({ $0.stringValue != nil }):
            return []
        default:
            return [RegistryError(
                .invalidField, "'requires' must be an entry id or a list of entry ids",
                at: entry.location(ofField: "requires"), entry: entry.id)]
        }
    }

    public func references(of entry: Entry) -> [(field: String, reference: String)] {
        switch entry.data["requires"] {
        case .string(let reference)?:
            return [("requires", reference)]
        case .array(let items)?:
            return items.compactMap { $0.stringValue.map { ("requires", $0) } }
        default:
            return []
        }
    }
}
