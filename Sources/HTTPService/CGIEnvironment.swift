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

    /// The variables, to be laid over the function's own environment.
    public var variables: [String: String] {
        let path = request.path
        let decodedPath = HTTPRequest.percentDecoded(path)
        var scriptName = decodedPath
        var pathInfo = ""
        if let rest {
            pathInfo = "/" + rest
            // The script is what comes before the rest (and its slash).
            if decodedPath.hasSuffix(pathInfo) { scriptName = String(decodedPath.dropLast(pathInfo.count)) }
            if pathInfo == "/" { pathInfo = "" }
        }
        var out: [String: String] = [
            "GATEWAY_INTERFACE": "CGI/1.1",
            "SERVER_PROTOCOL": request.version.description,
            "SERVER_SOFTWARE": serverSoftware,
            "SERVER_NAME": request.headers["Host"].map(HostPattern.withoutPort) ?? serverName,
            "SERVER_PORT": String(serverPort),
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": scriptName,
            "PATH_INFO": pathInfo,
            "QUERY_STRING": request.query ?? "",
            "REMOTE_ADDR": remoteAddress,
            "REMOTE_PORT": String(remotePort),
            "REQUEST_URI": request.target,
            "REQUEST_PATH": path,
            "REQUEST_QUERY": request.query ?? "",
        ]
        if let type = request.headers["Content-Type"] { out["CONTENT_TYPE"] = type }
        if let length = request.headers["Content-Length"] {
            out["CONTENT_LENGTH"] = length
        } else if !request.body.isEmpty {
            out["CONTENT_LENGTH"] = String(request.body.count)  // a chunked body, now counted
        }
        var headers: [String: JSON] = [:]
        var joined: [String: String] = [:]
        for (name, value) in request.headers {
            let lowered = name.lowercased()
            headers[lowered] = headers[lowered].flatMap(\.stringValue).map { .string($0 + ", " + value) } ?? .string(value)
            guard !name.contains("_"), lowered != "proxy", lowered != "content-type", lowered != "content-length" else { continue }
            let key = "HTTP_" + name.uppercased().map { $0 == "-" ? "_" : $0 }.map(String.init).joined()
            joined[key] = joined[key].map { $0 + ", " + value } ?? value
        }
        for (key, value) in joined { out[key] = value }
        out["REQUEST_HEADERS"] = JSON.object(headers).encoded()
        out["PATH_PARAMS"] = JSON.object(parameters.mapValues { .string($0) }).encoded()
        return out
    }
}
