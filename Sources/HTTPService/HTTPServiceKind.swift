import Core
import Registry
import Supervisor

/// An `http.service` as the HTTP component runs it.
public struct HTTPServiceDefinition: Sendable, Equatable {
    public var id: EntryID
    public var listen: SocketAddress
    public var maxHeaderSize: Int
    /// For endpoints without their own `max_body`.
    public var maxBody: Int
    public var headerTimeout: Duration
    public var idleTimeout: Duration
    /// How long response bytes may wait for a client that takes none of them.
    public var sendTimeout: Duration = .seconds(60)
    public var maxConnections: Int
    /// The `swiftlet.function` that answers requests no endpoint takes, as written; nil: a plain 404.
    public var notFound: String?

    public var serverConfiguration: HTTPServer.Configuration {
        var configuration = HTTPServer.Configuration()
        configuration.maxHeaderSize = maxHeaderSize
        configuration.maxBodySize = maxBody
        configuration.headerTimeout = headerTimeout
        configuration.idleTimeout = idleTimeout
        configuration.sendTimeout = sendTimeout
        configuration.maxConnections = maxConnections
        // Functions read bodies as they arrive (to a CGI program's stdin) with the route's limit.
        configuration.streamsBodies = true
        return configuration
    }
}

/// The kind `http.service`: `listen` (`127.0.0.1:8080`, `[::1]:8080`; a numeric address),
/// `max_header` (16KiB), `max_body` (10MiB), `header_timeout` (10s), `idle_timeout` (60s),
/// `send_timeout` (60s: a client that takes none of a response for that long is closed),
/// `max_connections` (16384; more wait in the listen backlog), `not_found` (a `swiftlet.function`). Several may exist, each on its own address.
public struct HTTPServiceKind: EntryKind {
    public static let name = "http.service"

    public init() {}

    public var name: String { Self.name }

    public func validate(_ entry: Entry) -> [RegistryError] {
        var reader = HTTPServiceReader(entry: entry, registryRoot: nil)
        _ = reader.read()
        return reader.errors
    }

    public func references(of entry: Entry) -> [(field: String, reference: String)] {
        entry.data["not_found"]?.stringValue.map { [("not_found", $0)] } ?? []
    }

    public func definition(of entry: Entry) -> HTTPServiceDefinition? {
        var reader = HTTPServiceReader(entry: entry, registryRoot: nil)
        return reader.read()
    }

    /// `host:port` or `[v6]:port`, numeric.
    public static func address(_ text: String) -> SocketAddress? {
        let host: Substring
        let port: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            port = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            port = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let number = Int(port), (1...65535).contains(number) else { return nil }
        let isNumeric = host.allSatisfy { $0.isHexDigit || $0 == "." || $0 == ":" } || host == "localhost"
        return isNumeric ? SocketAddress(host: String(host), port: number) : nil
    }
}

struct HTTPServiceReader: EntryFieldReading {
    let entry: Entry
    let registryRoot: String?
    var errors: [RegistryError] = []

    static let fields: Set<String> = ["listen", "max_header", "max_body", "header_timeout", "idle_timeout", "send_timeout",
                                      "max_connections", "not_found"]

    mutating func read() -> HTTPServiceDefinition? {
        guard case .object(let data) = entry.data else {
            fail("data", "must be a mapping")
            return nil
        }
        refuseUnknownFields(of: data, allowed: Self.fields)
        var listen: SocketAddress?
        if let text = string(data["listen"], "listen") {
            listen = HTTPServiceKind.address(text)
            if listen == nil { fail("listen", "'\(text)' is not a numeric address and port such as 127.0.0.1:8080") }
        } else if data["listen"] == nil {
            errors.append(RegistryError(.missingField, "'listen' is required (such as 127.0.0.1:8080)", at: entry.location, entry: entry.id))
        }
        let maxHeader = size(data["max_header"], "max_header") ?? HTTPMessageParser.defaultMaxHeaderSize
        let maxBody = size(data["max_body"], "max_body") ?? HTTPMessageParser.defaultMaxBodySize
        let headerTimeout = timeout(data["header_timeout"], "header_timeout") ?? .seconds(10)
        let idleTimeout = timeout(data["idle_timeout"], "idle_timeout") ?? .seconds(60)
        let sendTimeout = timeout(data["send_timeout"], "send_timeout") ?? .seconds(60)
        var maxConnections = 16_384
        if let value = data["max_connections"] {
            if let number = value.intValue, number >= 1, number <= 1_000_000 { maxConnections = Int(number) } else {
                fail("max_connections", "must be a number from 1 to 1000000")
            }
        }
        let notFound = string(data["not_found"], "not_found")
        guard errors.isEmpty, let listen else { return nil }
        return HTTPServiceDefinition(id: entry.id, listen: listen, maxHeaderSize: maxHeader, maxBody: maxBody,
                                     headerTimeout: headerTimeout, idleTimeout: idleTimeout, sendTimeout: sendTimeout,
                                     maxConnections: maxConnections, notFound: notFound)
    }

    /// A duration more than zero: a timeout of nothing would close every connection at once.
    private mutating func timeout(_ value: JSON?, _ field: String) -> Duration? {
        guard let duration = duration(value, field) else { return nil }
        guard duration > .zero else {
            fail(field, "must be more than 0 (like 10s)")
            return nil
        }
        return duration
    }

    private mutating func size(_ value: JSON?, _ field: String) -> Int? {
        guard let value else { return nil }
        guard let bytes = Self.byteSize(value) else {
            fail(field, "must be a size such as 16KiB")
            return nil
        }
        return bytes
    }
}
