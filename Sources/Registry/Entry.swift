import Core

/// One declared registry entry, as written in a file.
///
/// Equality includes `location` and `fieldLocations`: two entries declared the same way at
/// different places are not equal. Compare `id`, `kind`, `meta` and `data` to ask whether the
/// declaration itself changed.
public struct Entry: Sendable, Hashable {
    public var id: EntryID
    /// The kind's name, such as `swiftlet.service`; whether a component owns it is checked later.
    public var kind: String
    /// The file's `meta` with the entry's own `meta` laid over it (the entry wins, key by key).
    public var meta: [String: JSON]
    /// Always an object: every entry key other than `name`, `kind` and `meta`, or the explicit
    /// `data:` map.
    public var data: JSON
    /// Where the entry's mapping starts.
    public var location: SourceLocation
    /// Where each top-level key of `data` is written (the key, not its value), so that later
    /// validation can point at the field.
    public var fieldLocations: [String: SourceLocation]
    /// Where the `kind` key is written, for errors about the kind itself.
    public var kindLocation: SourceLocation?

    public init(
        id: EntryID, kind: String, meta: [String: JSON] = [:], data: JSON = .object([:]),
        location: SourceLocation, fieldLocations: [String: SourceLocation] = [:],
        kindLocation: SourceLocation? = nil
    ) {
        self.id = id
        self.kind = kind
        self.meta = meta
        self.data = data
        self.location = location
        self.fieldLocations = fieldLocations
        self.kindLocation = kindLocation
    }

    /// The location of data field `field`, or of the entry when the field is not written.
    public func location(ofField field: String) -> SourceLocation {
        fieldLocations[field] ?? location
    }
}
