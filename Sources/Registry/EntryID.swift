/// The identity of an entry: `namespace:name`.
///
/// Namespaces and names are made of `A-Z a-z 0-9 _ . -`, at least one character. Ids order by
/// namespace, then name, so entries of one namespace stay together.
public struct EntryID: Sendable, Hashable, Comparable, CustomStringConvertible {
    public let namespace: String
    public let name: String

    /// An id from its two parts, or nil when either part is not a valid name.
    public init?(namespace: String, name: String) {
        guard EntryID.isValidName(namespace), EntryID.isValidName(name) else { return nil }
        self.namespace = namespace
        self.name = name
    }

    /// Parses a full id `namespace:name`; nil for anything else.
    public init?(_ text: String) {
        guard let colon = text.utf8.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        let namespace = String(text[..<colon])
        let name = String(text[text.utf8.index(after: colon)...])
        self.init(namespace: namespace, name: name)
    }

    /// Resolves a reference written inside namespace `namespace`: `hello` means
    /// `namespace:hello`, `other:x` stays as written. Nil when the reference is not a valid id.
    public static func resolve(_ reference: String, in namespace: String) -> EntryID? {
        if reference.utf8.contains(UInt8(ascii: ":")) { return EntryID(reference) }
        return EntryID(namespace: namespace, name: reference)
    }

    /// True when `text` is a valid namespace or name: one or more of `A-Z a-z 0-9 _ . -`.
    public static func isValidName(_ text: String) -> Bool {
        guard !text.isEmpty else { return false }
        for b in text.utf8 {
            switch b {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "-"):
                continue
            default:
                return false
            }
        }
        return true
    }

    public var description: String { "\(namespace):\(name)" }

    public static func < (a: EntryID, b: EntryID) -> Bool {
        (a.namespace, a.name) < (b.namespace, b.name)
    }
}
