import Core
import Registry

/// The kind `swiftlet.service`: a long-running swiftlet the supervisor starts, watches and restarts.
///
/// Validation reads the whole definition (`ServiceReader`): unknown fields, bad durations, bad
/// values, and an `exec` that does not exist or is not executable are errors at the field. This
/// last check looks at the file system, unlike other kinds' pure checks: a missing program is
/// better refused at apply than found at start. `lifecycle.requires` names other services.
public struct ServiceKind: EntryKind {
    public static let name = "swiftlet.service"
    /// The registry folder, to resolve relative `exec` paths (against the declaring file's folder).
    public let registryRoot: String?

    public init(registryRoot: String? = nil) {
        self.registryRoot = registryRoot
    }

    public var name: String { Self.name }

    public func validate(_ entry: Entry) -> [RegistryError] {
        var reader = ServiceReader(entry: entry, registryRoot: registryRoot)
        _ = reader.read()
        return reader.errors
    }

    public func references(of entry: Entry) -> [(field: String, reference: String)] {
        Self.requires(in: entry).map { ("lifecycle.requires", $0) }
    }

    /// The definition of a valid entry; nil when it has problems (`validate` lists them).
    public func definition(of entry: Entry) -> ServiceDefinition? {
        var reader = ServiceReader(entry: entry, registryRoot: registryRoot)
        return reader.read()
    }

    static func requires(in entry: Entry) -> [String] {
        switch entry.data["lifecycle"]?["requires"] {
        case .string(let one)?: return [one]
        case .array(let items)?: return items.compactMap(\.stringValue)
        default: return []
        }
    }
}
