import Core
import Registry
import Supervisor

/// An `http.endpoint` as the router uses it.
public struct EndpointDefinition: Sendable, Equatable {
    public var id: EntryID
    /// Upper-case; empty: every method.
    public var methods: Set<String>
    public var path: RoutePattern
    public var host: HostPattern?
    /// The `swiftlet.function` that answers, as written (resolved against the entry's namespace).
    public var function: String
    /// The `http.service` it belongs to, as written; nil when there is only one.
    public var service: String?
    public var timeout: Duration?
    public var maxBody: Int?

    public func route(location: SourceLocation?) -> Route {
        Route(id: id, methods: methods, path: path, host: host, location: location)
    }
}

/// The kind `http.endpoint`: `method` (a method or a list; none: every method), `path`
/// (`RoutePattern`), optional `host` (`HostPattern`), `func` (a `swiftlet.function`), optional
/// `service` (an `http.service`, needed when there are several), `timeout` and `max_body` for
/// this endpoint. Two endpoints no precedence tells apart are refused when the whole proposed
/// state is checked (`Site.build`).
public struct EndpointKind: EntryKind {
    public static let name = "http.endpoint"

    public init() {}

    public var name: String { Self.name }

    public func validate(_ entry: Entry) -> [RegistryError] {
        var reader = EndpointReader(entry: entry, registryRoot: nil)
        _ = reader.read()
        return reader.errors
    }

    public func references(of entry: Entry) -> [(field: String, reference: String)] {
        var out: [(String, String)] = []
        if let function = entry.data["func"]?.stringValue { out.append(("func", function)) }
        if let service = entry.data["service"]?.stringValue { out.append(("service", service)) }
        return out
    }

    public func definition(of entry: Entry) -> EndpointDefinition? {
        var reader = EndpointReader(entry: entry, registryRoot: nil)
        return reader.read()
    }
}

struct EndpointReader: EntryFieldReading {
    let entry: Entry
    let registryRoot: String?
    var errors: [RegistryError] = []

    static let fields: Set<String> = ["method", "path", "host", "func", "service", "timeout", "max_body"]

    mutating func read() -> EndpointDefinition? {
        guard case .object(let data) = entry.data else {
            fail("data", "must be a mapping")
            return nil
        }
        refuseUnknownFields(of: data, allowed: Self.fields)
        var methods = Set<String>()
        switch data["method"] {
        case nil: break
        case .string(let one)?: methods = readMethods([one])
        case .array(let items)? where items.allSatisfy({ $0.stringValue != nil }): methods = readMethods(items.compactMap(\.stringValue))
        default: fail("method", "must be a method or a list of methods")
        }
        var path: RoutePattern?
        if let text = string(data["path"], "path") {
            do { path = try RoutePattern(text) } catch { fail("path", error.description) }
        } else if data["path"] == nil {
            errors.append(RegistryError(.missingField, "'path' is required", at: entry.location, entry: entry.id))
        }
        var host: HostPattern?
        if let text = string(data["host"], "host") {
            host = HostPattern(text)
            if host == nil { fail("host", "'\(text)' is not a host name or *.domain") }
        }
        let function = string(data["func"], "func")
        if data["func"] == nil {
            errors.append(RegistryError(.missingField, "'func' is required (the swiftlet.function that answers)",
                                        at: entry.location, entry: entry.id))
        }
        let service = string(data["service"], "service")
        let timeout = duration(data["timeout"], "timeout")
        var maxBody: Int?
        if let value = data["max_body"] {
            if let bytes = Self.byteSize(value) { maxBody = bytes } else { fail("max_body", "must be a size such as 10MiB") }
        }
        guard errors.isEmpty, let path, let function else { return nil }
        return EndpointDefinition(id: entry.id, methods: methods, path: path, host: host, function: function,
                                  service: service, timeout: timeout, maxBody: maxBody)
    }

    private mutating func readMethods(_ names: [String]) -> Set<String> {
        var out = Set<String>()
        for name in names {
            let upper = name.uppercased()
            if HTTPWire.isToken(upper) { out.insert(upper) } else { fail("method", "'\(name)' is not a method") }
        }
        return out
    }
}
