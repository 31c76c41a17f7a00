import Core

/// The environment a CGI program gets for one request: RFC 3875's meta-variables, the request's
/// headers as `HTTP_*`, and Roost's own `REQUEST_PATH`, `REQUEST_QUERY`, `REQUEST_HEADERS` and
/// `PATH_PARAMS` (JSON objects for the last two).
///
/// - `SCRIPT_NAME` is the part of the path the endpoint matched, `PATH_INFO` what its trailing `*`
///   covered (with its leading slash; empty without one), both decoded as RFC 3875 asks;
///   `QUERY_STRING` stays encoded.
/// - A `Proxy` request header never becomes `HTTP_PROXY` (httpoxy: programs take that variable
///   for their outgoing proxy). Header names with `_` are left out, since `X_Real_IP` and
///   `X-Real-IP` would both become `HTTP_X_REAL_IP` and one could pass for the other.
///   `Content-Type` and `Content-Length` are `CONTENT_TYPE` and `CONTENT_LENGTH` only.
/// - Repeated headers are joined with ", ", as HTTP allows.
public struct CGIRequest: Sendable {
    public var request: HTTPRequest
    public var parameters: [String: String]
    /// What the endpoint's `*` matched (decoded), or nil when its path has none.
    public var rest: String?
    public var serverName: String
    public var serverPort: Int
    public var remoteAddress: String
    public var remotePort: Int
    public var serverSoftware: String

    public init(request: HTTPRequest, parameters: [String: String] = [:], rest: String? = nil, serverName: String,
                serverPort: Int, remoteAddress: String, remotePort: Int, serverSoftware: String) {
        self.request = request
        self.parameters = parameters
        self.rest = rest
        self.serverName = serverName
        self.serverPort = serverPort
        self.remoteAddress = remoteAddress
        self.remotePort = remotePort
        self.serverSoftware = serverSoftware
    }

    /// The variables, by name.
    public var variables: [String: String] {
        var block = EnvironmentBlock()
        add(to: &block)
        return block.variables
    }

    /// Adds the variables to `environment`; a name already there keeps its value (so the request's
    /// variables go in first and the function's own environment after them).
    public func add(to environment: inout EnvironmentBlock) {
        let path = request.path
        let decodedPath = path.utf8.contains(UInt8(ascii: "%")) ? HTTPRequest.percentDecoded(path) : path
        var scriptName = decodedPath
        var pathInfo = ""
        if let rest {
            pathInfo = "/" + rest
            // The script is what comes before the rest (and its slash).
            if decodedPath.hasSuffix(pathInfo) { scriptName = String(decodedPath.dropLast(pathInfo.count)) }
            if pathInfo == "/" { pathInfo = "" }
        }
        let query = request.query ?? ""
        let fields = request.headers.fields
        // The target appears four times at most, the headers twice (HTTP_*, REQUEST_HEADERS).
        let headerBytes = fields.reduce(0) { $0 + $1.name.utf8.count + $1.value.utf8.count + 8 }
        environment.reserveCapacity(bytes: 400 + 4 * request.target.utf8.count + 2 * headerBytes, entries: 20 + fields.count)
        environment.add("GATEWAY_INTERFACE", "CGI/1.1")
        environment.add("SERVER_PROTOCOL", request.version.description)
        environment.add("SERVER_SOFTWARE", serverSoftware)
        environment.add("SERVER_NAME", request.headers["Host"].map(HostPattern.withoutPort) ?? serverName)
        environment.add("SERVER_PORT", String(serverPort))
        environment.add("REQUEST_METHOD", request.method)
        environment.add("SCRIPT_NAME", scriptName)
        environment.add("PATH_INFO", pathInfo)
        environment.add("QUERY_STRING", query)
        environment.add("REMOTE_ADDR", remoteAddress)
        environment.add("REMOTE_PORT", String(remotePort))
        environment.add("REQUEST_URI", request.target)
        environment.add("REQUEST_PATH", path)
        environment.add("REQUEST_QUERY", query)
        if let type = request.headers["Content-Type"] { environment.add("CONTENT_TYPE", type) }
        if let length = request.headers["Content-Length"] {
            environment.add("CONTENT_LENGTH", length)
        } else if !request.body.isEmpty {
            environment.add("CONTENT_LENGTH", String(request.body.count))  // a chunked body, now counted
        }

        // Each header name once (names compare without case), its repeated values joined, in
        // the order of first appearance. A head may hold thousands of fields: by name, not by
        // comparing each with every other.
        var headers: [(name: [UInt8], value: String)] = []
        headers.reserveCapacity(fields.count)
        var position: [[UInt8]: Int] = [:]
        for field in fields {
            let lowered = field.name.utf8.map(Self.lowercased)
            if let at = position[lowered] {
                headers[at].value += ", " + field.value
            } else {
                position[lowered] = headers.count
                headers.append((lowered, field.value))
            }
        }
        var name: [UInt8] = []
        for header in headers {
            let lowered = header.name
            guard !lowered.contains(UInt8(ascii: "_")), !lowered.elementsEqual("proxy".utf8),
                  !lowered.elementsEqual("content-type".utf8), !lowered.elementsEqual("content-length".utf8) else { continue }
            name.removeAll(keepingCapacity: true)
            name.append(contentsOf: "HTTP_".utf8)
            for byte in lowered { name.append(byte == UInt8(ascii: "-") ? UInt8(ascii: "_") : Self.uppercased(byte)) }
            environment.add(name, header.value)
        }

        var json: [UInt8] = []
        json.append(UInt8(ascii: "{"))
        for (i, header) in headers.sorted(by: { $0.name.lexicographicallyPrecedes($1.name) }).enumerated() {
            if i > 0 { json.append(UInt8(ascii: ",")) }
            JSON.encode(string: String(decoding: header.name, as: UTF8.self), into: &json)
            json.append(UInt8(ascii: ":"))
            JSON.encode(string: header.value, into: &json)
        }
        json.append(UInt8(ascii: "}"))
        environment.add("REQUEST_HEADERS", json)
        json.removeAll(keepingCapacity: true)
        JSON.object(parameters.mapValues { .string($0) }).encode(into: &json)
        environment.add("PATH_PARAMS", json)
    }

    private static func lowercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
    }

    private static func uppercased(_ byte: UInt8) -> UInt8 {
        byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z") ? byte & ~0x20 : byte
    }
}
