import Core

/// The JSON side of `protocol: json` functions.
///
/// The request goes to the program's stdin as one object:
/// `{"method", "path", "query", "headers", "params", "body"}` — `path` decoded; `query` an object
/// of the decoded query items (a name given more than once has an array of its values);
/// `headers` with lower-case names (repeated ones joined with ", "); `params` the route's `:param`
/// values; `body` the request body: its JSON value when the request says `Content-Type:
/// application/json` (or `+json`) and it parses, else its text (invalid UTF-8 replaced), or null
/// when there is none. The CGI variables are set as for `protocol: cgi`, with `CONTENT_TYPE`
/// `application/json` and the envelope's `CONTENT_LENGTH`.
///
/// The program answers with CGI, or with one object `{"status", "headers", "body"}`: `status`
/// (200-599) defaults to 200; `headers` maps names to strings; a string `body` is sent as it is
/// (`text/plain; charset=utf-8` unless `headers` says otherwise), any other JSON value encoded
/// (`application/json`), no `body` means an empty one.
public enum JSONEnvelope {
    public static func request(_ request: HTTPRequest, body: [UInt8], parameters: [String: String]) -> [UInt8] {
        var query: [String: JSON] = [:]
        for (name, value) in request.queryItems {
            switch query[name] {
            case nil: query[name] = .string(value)
            case .array(var values)?:
                values.append(.string(value))
                query[name] = .array(values)
            case let first?: query[name] = .array([first, .string(value)])
            }
        }
        var headers: [String: JSON] = [:]
        for (name, value) in request.headers {
            let lowered = name.lowercased()
            headers[lowered] = headers[lowered].flatMap(\.stringValue).map { .string($0 + ", " + value) } ?? .string(value)
        }
        var bodyValue = JSON.null
        if !body.isEmpty {
            let type = request.headers["Content-Type"].map { trimmed($0.lowercased().prefix { $0 != ";" }) } ?? ""
            if type == "application/json" || type.hasSuffix("+json"), let parsed = try? JSON.parse(bytes: body) {
                bodyValue = parsed
            } else {
                bodyValue = .string(String(decoding: body, as: UTF8.self))
            }
        }
        let envelope: JSON = .object([
            "method": .string(request.method),
            "path": .string(HTTPRequest.percentDecoded(request.path)),
            "query": .object(query),
            "headers": .object(headers),
            "params": .object(parameters.mapValues { .string($0) }),
            "body": bodyValue,
        ])
        return Array(envelope.encoded().utf8)
    }

    public struct InvalidAnswer: Error, CustomStringConvertible {
        public let description: String
    }

    /// The response of a JSON answer; see the type's contract.
    public static func response(from output: [UInt8]) throws -> HTTPResponse {
        guard case .object(let answer) = try JSON.parse(bytes: output) else { throw InvalidAnswer(description: "not an object") }
        var status = 200
        if let value = answer["status"] {
            // A 1xx is not a final answer: the client would wait for one that never comes.
            guard let number = value.intValue, (200...599).contains(number) else {
                throw InvalidAnswer(description: "'status' must be a number from 200 to 599")
            }
            status = Int(number)
        }
        var headers = HTTPHeaders()
        if let value = answer["headers"] {
            guard case .object(let fields) = value else { throw InvalidAnswer(description: "'headers' must be an object") }
            for (name, value) in fields.sorted(by: { $0.key < $1.key }) {
                guard let text = value.stringValue, HTTPWire.isToken(name), !text.contains(where: { $0 == "\r" || $0 == "\n" || $0 == "\r\n" || $0 == "\0" }) else {
                    throw InvalidAnswer(description: "header '\(name)' must be a valid name with a string value")
                }
                headers.add(name, text)
            }
        }
        var body: [UInt8] = []
        switch answer["body"] {
        case nil, .null?: break
        case .string(let text)?:
            body = Array(text.utf8)
            if !headers.contains("Content-Type") { headers.add("Content-Type", "text/plain; charset=utf-8") }
        case let value?:
            body = Array(value.encoded().utf8)
            if !headers.contains("Content-Type") { headers.add("Content-Type", "application/json") }
        }
        return HTTPResponse(status: status, headers: headers, body: .bytes(body))
    }
}
