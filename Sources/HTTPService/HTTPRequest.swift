import Core

/// An HTTP protocol version as sent on the wire (`HTTP/1.1`).
public struct HTTPVersion: Sendable, Hashable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }
    public static let http1_0 = HTTPVersion(major: 1, minor: 0)
    public static let http1_1 = HTTPVersion(major: 1, minor: 1)
    public var description: String { "HTTP/\(major).\(minor)" }
}

/// One complete HTTP request: what the server hands its handler, and what the client sends.
///
/// `target` is the request target exactly as received (origin form `/a%20b?x=1`, or absolute form
/// for proxies). `path` and `query` split it without decoding, so a router can tell `%2F` from
/// `/`; `queryItems` decodes the query. `keepAlive` says whether the connection may carry another
/// request after this one (from the version and the `Connection` header).
public struct HTTPRequest: Sendable {
    public var method: String
    public var target: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    public var body: [UInt8]
    /// The body as it arrives, when the server streams bodies (`HTTPServer.Configuration
    /// .streamsBodies`) and the request has one; `body` is empty then.
    public var streamedBody: RequestBody?
    public var keepAlive: Bool
    /// The client process, when the request came over a unix socket (set by `HTTPServer`).
    public var peer: PeerCredentials?
    /// The client's address, when the request came over TCP (set by `HTTPServer`).
    public var remoteAddress: SocketAddress?

    public init(method: String, target: String, version: HTTPVersion = .http1_1,
                headers: HTTPHeaders = [:], body: [UInt8] = [], keepAlive: Bool = true) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
        self.body = body
        self.keepAlive = keepAlive
    }

    /// The path of the target, still percent-encoded; "/" for an absolute target without one,
    /// and the target itself for the authority form of CONNECT and for `*`.
    public var path: String {
        // The usual origin form, scanned as bytes: up to the first `?` or `#`.
        let utf8 = target.utf8
        if utf8.first == UInt8(ascii: "/") {
            guard let end = utf8.firstIndex(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }) else { return target }
            return String(target[..<end])
        }
        var rest = Substring(target)
        if let hash = rest.firstIndex(of: "#") { rest = rest[..<hash] }
        if let question = rest.firstIndex(of: "?") { rest = rest[..<question] }
        if !rest.hasPrefix("/"), let scheme = rest.firstRange(of: "://") {
            let afterAuthority = rest[scheme.upperBound...]
            guard let slash = afterAuthority.firstIndex(of: "/") else { return "/" }
            return String(afterAuthority[slash...])
        }
        return String(rest)
    }

    /// The query of the target without the `?`, still encoded; nil when the target has none.
    public var query: String? {
        // Scanned as bytes: `?` and `#` are ASCII, so their indices are those of the string too.
        let utf8 = target.utf8
        guard let question = utf8.firstIndex(where: { $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "#") }),
              utf8[question] == UInt8(ascii: "?") else { return nil }
        let start = utf8.index(after: question)
        let end = utf8[start...].firstIndex(of: UInt8(ascii: "#")) ?? utf8.endIndex
        return String(target[start..<end])
    }

    /// The query's `name=value` pairs, decoded (`+` is a space), in order; a name without `=` has
    /// an empty value, and empty pairs (`a=1&&b=2`) are skipped.
    public var queryItems: [(name: String, value: String)] {
        guard let query else { return [] }
        return query.split(separator: "&", omittingEmptySubsequences: true).map { pair in
            if let equals = pair.firstIndex(of: "=") {
                return (Self.percentDecoded(pair[..<equals], plusIsSpace: true),
                        Self.percentDecoded(pair[pair.index(after: equals)...], plusIsSpace: true))
            }
            return (Self.percentDecoded(pair, plusIsSpace: true), "")
        }
    }

    /// `text` with `%XX` escapes decoded as UTF-8 (invalid sequences become U+FFFD). A `%` not
    /// followed by two hex digits is kept as it is, as browsers do, rather than failing the request.
    public static func percentDecoded(_ text: some StringProtocol, plusIsSpace: Bool = false) -> String {
        let utf8 = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(utf8.count)
        var i = 0
        while i < utf8.count {
            let byte = utf8[i]
            if byte == UInt8(ascii: "%"), i + 2 < utf8.count, let high = hexValue(utf8[i + 1]), let low = hexValue(utf8[i + 2]) {
                out.append(high << 4 | low)
                i += 3
                continue
            }
            out.append(plusIsSpace && byte == UInt8(ascii: "+") ? UInt8(ascii: " ") : byte)
            i += 1
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The value of an ASCII hex digit.
    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
