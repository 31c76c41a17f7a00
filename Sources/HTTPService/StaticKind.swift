import Core
import Registry
import Supervisor

#if canImport(Glibc)
import Glibc
#endif

/// An `http.static` mount as the router uses it.
public struct StaticDefinition: Sendable, Equatable {
    public var id: EntryID
    /// An absolute URL path without a trailing slash (`/` for the whole site).
    public var prefix: String
    /// The folder served, as an absolute path (links in it are resolved when requests come).
    public var root: String
    /// File names tried, in order, for a request of a folder.
    public var index: [String]
    /// The `http.service` it belongs to, as written; nil when there is only one.
    public var service: String?
    public var host: HostPattern?

    /// The routes of the mount: GET and HEAD of the prefix itself and of everything below it.
    /// For `/` that is `/*` alone, which covers `/` too.
    public func routes(location: SourceLocation?) -> [Route] {
        let methods: Set<String> = ["GET", "HEAD"]
        // The prefix was checked when it was read, so these patterns parse.
        if prefix == "/" {
            return [Route(id: id, methods: methods, path: try! RoutePattern("/*"), host: host, location: location)]
        }
        return [
            Route(id: id, methods: methods, path: try! RoutePattern(prefix), host: host, location: location),
            Route(id: id, methods: methods, path: try! RoutePattern(prefix + "/*"), host: host, location: location),
        ]
    }
}

/// The kind `http.static`: files of a folder served under a URL prefix. Fields: `prefix`
/// (required; an absolute URL path of literal segments, such as `/` or `/assets`), `root`
/// (required; a folder, relative to the declaring file's folder like `exec` paths; it must
/// exist), `index` (a file name or a list, tried in order for a folder; `index.html`), `service`
/// (an `http.service`, needed when there are several) and `host` (`HostPattern`). The mount
/// takes GET and HEAD of the prefix and of every path below it, so an endpoint that answers the
/// same requests is a conflict refused at apply (`Site.build`); an endpoint with a more
/// specific path (`/assets/:name`) takes precedence over it as usual.
public struct StaticKind: EntryKind {
    public static let name = "http.static"
    public let registryRoot: String?

    public init(registryRoot: String? = nil) {
        self.registryRoot = registryRoot
    }

    public var name: String { Self.name }

    public func validate(_ entry: Entry) -> [RegistryError] {
        var reader = StaticReader(entry: entry, registryRoot: registryRoot)
        _ = reader.read()
        return reader.errors
    }

    public func references(of entry: Entry) -> [(field: String, reference: String)] {
        entry.data["service"]?.stringValue.map { [("service", $0)] } ?? []
    }

    /// The definition of a valid entry; nil when it has problems.
    public func definition(of entry: Entry) -> StaticDefinition? {
        var reader = StaticReader(entry: entry, registryRoot: registryRoot)
        return reader.read()
    }
}

struct StaticReader: EntryFieldReading {
    let entry: Entry
    let registryRoot: String?
    var errors: [RegistryError] = []

    static let fields: Set<String> = ["prefix", "root", "index", "service", "host"]

    mutating func read() -> StaticDefinition? {
        guard case .object(let data) = entry.data else {
            fail("data", "must be a mapping")
            return nil
        }
        refuseUnknownFields(of: data, allowed: Self.fields)
        var prefix: String?
        if let text = string(data["prefix"], "prefix") {
            prefix = Self.prefix(text)
            if prefix == nil {
                fail("prefix", "'\(text)' is not an absolute URL path of plain segments (such as / or /assets)")
            }
        } else if data["prefix"] == nil {
            errors.append(RegistryError(.missingField, "'prefix' is required (the URL path served, such as /assets)",
                                        at: entry.location, entry: entry.id))
        }
        var root: String?
        if let text = string(data["root"], "root") {
            root = resolveRoot(text)
        } else if data["root"] == nil {
            errors.append(RegistryError(.missingField, "'root' is required (the folder served)", at: entry.location, entry: entry.id))
        }
        var index = ["index.html"]
        switch data["index"] {
        case nil: break
        case .string(let name)?: index = [name]
        case .array(let items)? where !items.isEmpty && items.allSatisfy({ $0.stringValue != nil }):
            index = items.compactMap(\.stringValue)
        default: fail("index", "must be a file name or a list of file names")
        }
        for name in index where name.isEmpty || name.contains("/") || name == "." || name == ".." || name.utf8.contains(0) {
            fail("index", "'\(name)' is not a file name")
        }
        let service = string(data["service"], "service")
        var host: HostPattern?
        if let text = string(data["host"], "host") {
            host = HostPattern(text)
            if host == nil { fail("host", "'\(text)' is not a host name or *.domain") }
        }
        guard errors.isEmpty, let prefix, let root else { return nil }
        return StaticDefinition(id: entry.id, prefix: prefix, root: root, index: index, service: service, host: host)
    }

    /// `text` without a trailing slash when it is `/` followed by plain segments: no `:param`,
    /// no `*`, no empty, `.` or `..` segment, nothing percent-encoded or outside printable ASCII.
    static func prefix(_ text: String) -> String? {
        guard text.hasPrefix("/") else { return nil }
        if text == "/" { return "/" }
        let trimmed = text.hasSuffix("/") ? String(text.dropLast()) : text
        for segment in trimmed.dropFirst().split(separator: "/", omittingEmptySubsequences: false) {
            guard !segment.isEmpty, segment != ".", segment != "..", !segment.hasPrefix(":") else { return nil }
            let plain = segment.utf8.allSatisfy { byte in
                byte > 0x20 && byte < 0x7F && !"*%?#\\\"<>".utf8.contains(byte)
            }
            guard plain else { return nil }
        }
        return trimmed
    }

    /// The folder as an absolute path; an error when it is not a folder.
    private mutating func resolveRoot(_ text: String) -> String? {
        let path = pathFromDeclaringFile(text)
        var info = stat()
        guard stat(path, &info) == 0 else {
            fail("root", "'\(text)' does not exist" + (path == text ? "" : " (looked at \(path))"))
            return nil
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            fail("root", "'\(text)' is not a folder")
            return nil
        }
        return Self.absolute(path)
    }
}
