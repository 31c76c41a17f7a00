/// A problem in the registry folder that a person can act on: what, where, and which entry.
///
/// Tests compare `code`; people read `description`.
public struct RegistryError: Error, Sendable, Hashable, Comparable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// The file is not valid YAML (including a key repeated in one mapping).
        case yamlSyntax
        /// `namespace`, `name` or `kind` is absent.
        case missingField
        /// A namespace or name uses characters other than `A-Z a-z 0-9 _ . -`.
        case invalidName
        /// Two entries have the same id; the message names the other place.
        case duplicateID
        /// A key or value has the wrong shape or is not allowed where it is written.
        case invalidField
        /// No component owns the entry's kind (checked by the validation layer).
        case unknownKind
        /// A reference names no entry (checked by the validation layer).
        case unresolvedReference
        /// Entries reference each other in a cycle (checked by the validation layer).
        case referenceCycle
        /// The file or folder could not be read as UTF-8 text.
        case unreadableFile
        /// The history database could not be opened, read or written.
        case historyStorage
        /// The history database was written by a newer roost (its schema version is higher).
        case historySchemaTooNew
        /// The history holds no version with that number.
        case unknownVersion
        /// A commit with no changes: it would make a version equal to the last one.
        case emptyChangeSet
        /// A command-line override (`-o`) is malformed or names no entry or field it can set.
        case invalidOverride
        /// A component that owns a kind refused the change (its reason is the message).
        case rejectedByOwner
    }

    public var code: Code
    public var message: String
    public var location: SourceLocation?
    public var entry: EntryID?

    public init(_ code: Code, _ message: String, at location: SourceLocation? = nil, entry: EntryID? = nil) {
        self.code = code
        self.message = message
        self.location = location
        self.entry = entry
    }

    /// `file:line:column: namespace:name: message`; the parts that are unknown are left out.
    public var description: String {
        var out = ""
        if let location { out += "\(location): " }
        if let entry { out += "\(entry): " }
        return out + message
    }

    /// By file, line and column; errors without a location come last.
    public static func < (a: RegistryError, b: RegistryError) -> Bool {
        switch (a.location, b.location) {
        case let (l?, r?): return l != r ? l < r : a.description < b.description
        case (.some, nil): return true
        case (nil, .some): return false
        case (nil, nil): return a.description < b.description
        }
    }
}
