import CHTTPParser

/// An incremental HTTP/1.x parser for requests or responses, over http_parser.
///
/// Contract:
/// - `append` adds received bytes; `next()` parses what is buffered and returns the parts of at
///   most one message: its head, its body in chunks as they arrive (chunked encoding already
///   decoded), and `.end`. It stops after `.end` (http_parser is paused at each message boundary),
///   so pipelined messages come out one at a time, in order, and the caller can answer each one
///   before the next is even parsed. An empty result means more input is needed.
/// - At end of input call `finish()` (after `next()` returned no parts): it ends a body that runs
///   until the connection closes, and throws `.incomplete` when a message was cut short.
/// - Errors are `HTTPError`s and sticky: once `next()` threw, every later call throws the same.
///   Parts of the failing message that were returned before are not taken back.
/// - Limits: the request line (or status line) and headers together may hold `maxHeaderSize`
///   bytes (`.headersTooLarge`; counted as the target or reason, the field names and values, and
///   4 bytes per field, so a little under the raw size); a body may hold `maxBodySize` bytes (`.bodyTooLarge`, raised
///   from `Content-Length` before the body arrives when it can be). Both Content-Length and
///   Transfer-Encoding, or more than one Content-Length, are `.malformed` (request smuggling).
/// - Trailer fields of a chunked body are counted against the header limit and dropped.
///
/// Not Sendable: one connection's task owns it. The http_parser callbacks reach the instance
/// through `parser.data`, set to an unretained pointer to `self`: the C parser is owned by the
/// instance and only runs inside its methods, so the pointer never outlives it.
public final class HTTPMessageParser {
    public enum Kind: Sendable { case request, response }

    /// A piece of a message, in the order received.
    public enum Part: Sendable {
        /// A request's line and headers; its `body` is empty (the body follows as `.body` parts).
        case requestHead(HTTPRequest)
        case responseHead(HTTPResponseHead)
        case body([UInt8])
        case end
    }

    public static let defaultMaxHeaderSize = 16 * 1024
    public static let defaultMaxBodySize = 10 * 1024 * 1024

    public let kind: Kind
    public let maxHeaderSize: Int
    public let maxBodySize: Int
    /// For a client that sent HEAD: the next response has no body, whatever its headers say.
    public var skipsNextBody = false

    private let parser: UnsafeMutablePointer<http_parser>
    private var settings = http_parser_settings()
    private var input: [UInt8] = []
    private var consumed = 0
    private var parts: [Part] = []
    private var failure: HTTPError?
    /// Set after a message that switches protocols (CONNECT, Upgrade): nothing after it is HTTP.
    private var stopped = false

    // The message being parsed.
    private var inMessage = false
    private var headerBytes = 0
    private var bodyBytes = 0
    private var headersDone = false
    private var url: [UInt8] = []
    private var reason: [UInt8] = []
    private var fields: [(String, String)] = []
    private var field: [UInt8] = []
    private var value: [UInt8] = []
    private var lastWasValue = false

    public init(kind: Kind, maxHeaderSize: Int = HTTPMessageParser.defaultMaxHeaderSize,
                maxBodySize: Int = HTTPMessageParser.defaultMaxBodySize) {
        self.kind = kind
        self.maxHeaderSize = maxHeaderSize
        self.maxBodySize = maxBodySize
        parser = .allocate(capacity: 1)
        http_parser_init(parser, kind == .request ? HTTP_REQUEST : HTTP_RESPONSE)
        http_parser_settings_init(&settings)
        settings.on_message_begin = { p in HTTPMessageParser.of(p).messageBegin() }
        settings.on_url = { p, at, length in HTTPMessageParser.of(p).collect(at, length, into: \.url) }
        settings.on_status = { p, at, length in HTTPMessageParser.of(p).collect(at, length, into: \.reason) }
        settings.on_header_field = { p, at, length in HTTPMessageParser.of(p).headerField(at, length) }
        settings.on_header_value = { p, at, length in HTTPMessageParser.of(p).headerValue(at, length) }
        settings.on_headers_complete = { p in HTTPMessageParser.of(p).headersComplete() }
        settings.on_body = { p, at, length in HTTPMessageParser.of(p).body(at, length) }
        settings.on_message_complete = { p in HTTPMessageParser.of(p).messageComplete() }
        parser.pointee.data = Unmanaged.passUnretained(self).toOpaque()
    }

    deinit {
        parser.deallocate()
    }

    /// Bytes appended but not parsed yet (the rest of a pipeline, say).
    public var bufferedByteCount: Int { input.count - consumed }

    /// True between the first byte of a message and its end.
    public var isInMessage: Bool { inMessage }

    public func append(_ bytes: [UInt8]) {
        if consumed == input.count {
            input = bytes
            consumed = 0
        } else {
            input += bytes
        }
    }

    /// Parses buffered input up to the end of the next message; see the type's contract.
    public func next() throws(HTTPError) -> [Part] {
        if let failure { throw failure }
        guard !stopped, consumed < input.count else { return [] }
        http_parser_pause(parser, 0)
        let count = input.count - consumed
        let parsed = input.withUnsafeBytes { raw in
            http_parser_execute(parser, &settings,
                                raw.baseAddress!.advanced(by: consumed).assumingMemoryBound(to: CChar.self), count)
        }
        consumed += parsed
        try check()
        if parser.pointee.upgrade == 1 { stopped = true }
        // Compact once the parsed prefix dominates, so a long pipeline is not copied per message.
        if consumed == input.count {
            input.removeAll(keepingCapacity: true)
            consumed = 0
        } else if consumed > 4096 && consumed * 2 > input.count {
            input.removeFirst(consumed)
            consumed = 0
        }
        return takeParts()
    }

    /// Tells the parser that no more input will come; see the type's contract.
    public func finish() throws(HTTPError) -> [Part] {
        if let failure { throw failure }
        guard !stopped else { return [] }
        http_parser_pause(parser, 0)
        _ = http_parser_execute(parser, &settings, nil, 0)
        try check()
        if inMessage {
            _ = fail(HTTPError(.incomplete, "the connection closed in the middle of a message"))
            try check()
        }
        return takeParts()
    }

    private func takeParts() -> [Part] {
        defer { parts.removeAll(keepingCapacity: true) }
        return parts
    }

    private func check() throws(HTTPError) {
        let code = http_errno(parser.pointee.http_errno)
        if code == HPE_OK || code == HPE_PAUSED {
            if let failure { throw failure }
            return
        }
        if failure == nil {
            failure = switch code {
            case HPE_HEADER_OVERFLOW:
                HTTPError(.headersTooLarge, "the header block is larger than \(maxHeaderSize) bytes")
            case HPE_INVALID_EOF_STATE:
                HTTPError(.incomplete, "the connection closed in the middle of a message")
            case HPE_UNEXPECTED_CONTENT_LENGTH:
                HTTPError(.malformed, "Content-Length together with Transfer-Encoding, or more than one Content-Length")
            default:
                HTTPError(.malformed, String(cString: http_errno_description(code)))
            }
        }
        // The C parser stays in its error state; later calls throw the stored failure.
        parts.removeAll()
        throw failure!
    }

    /// Records the first failure and returns the value that stops http_parser.
    private func fail(_ error: HTTPError) -> Int32 {
        if failure == nil { failure = error }
        return 1
    }

    // MARK: Callbacks (inside http_parser_execute)

    private static func of(_ p: UnsafeMutablePointer<http_parser>?) -> HTTPMessageParser {
        Unmanaged<HTTPMessageParser>.fromOpaque(p!.pointee.data).takeUnretainedValue()
    }

    private func messageBegin() -> Int32 {
        inMessage = true
        headersDone = false
        headerBytes = 0
        bodyBytes = 0
        url.removeAll()
        reason.removeAll()
        fields.removeAll()
        field.removeAll()
        value.removeAll()
        lastWasValue = false
        return 0
    }

    private func countHeaderBytes(_ length: Int) -> Int32 {
        headerBytes += length
        if headerBytes > maxHeaderSize {
            return fail(HTTPError(.headersTooLarge, "the header block is larger than \(maxHeaderSize) bytes"))
        }
        return 0
    }

    private func collect(_ at: UnsafePointer<CChar>?, _ length: Int,
                         into buffer: ReferenceWritableKeyPath<HTTPMessageParser, [UInt8]>) -> Int32 {
        if countHeaderBytes(length) != 0 { return 1 }
        self[keyPath: buffer].append(contentsOf: UnsafeRawBufferPointer(start: at, count: length))
        return 0
    }

    private func headerField(_ at: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        if lastWasValue, storeField() != 0 { return 1 }
        lastWasValue = false
        // A field also costs its ": " and line end.
        if field.isEmpty, countHeaderBytes(4) != 0 { return 1 }
        return collect(at, length, into: \.field)
    }

    private func headerValue(_ at: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        lastWasValue = true
        return collect(at, length, into: \.value)
    }

    private func storeField() -> Int32 {
        let name = String(decoding: field, as: UTF8.self)
        // http_parser lets `Content-Length : 5` through as a field named "Content-Length ";
        // a proxy that reads it as Content-Length would frame the message differently.
        guard HTTPWire.isToken(name) else {
            return fail(HTTPError(.malformed, "the header name '\(name)' is not a token"))
        }
        // Trailer fields (after the head) are dropped: nothing here reads them, and merging them
        // into the head's headers would let a body rewrite what was already acted on.
        if !headersDone {
            fields.append((name, String(trimmed(String(decoding: value, as: UTF8.self)))))
        }
        field.removeAll(keepingCapacity: true)
        value.removeAll(keepingCapacity: true)
        return 0
    }

    private func headersComplete() -> Int32 {
        if lastWasValue || !field.isEmpty, storeField() != 0 { return 1 }
        lastWasValue = false
        headersDone = true
        let headers = HTTPHeaders(fields)
        let version = HTTPVersion(major: Int(parser.pointee.http_major), minor: Int(parser.pointee.http_minor))
        guard version.major == 1 else {
            return fail(HTTPError(.versionNotSupported, "\(version) is not supported (only HTTP/1.0 and HTTP/1.1)"))
        }
        // http_parser refuses these too; checked here as well because the safety of every proxy
        // behind this server rests on them.
        let lengths = headers.values(for: "Content-Length")
        if lengths.count > 1 {
            return fail(HTTPError(.malformed, "more than one Content-Length"))
        }
        if !lengths.isEmpty && headers.contains("Transfer-Encoding") {
            return fail(HTTPError(.malformed, "both Content-Length and Transfer-Encoding"))
        }
        if let length = lengths.first, let declared = UInt64(length), declared > UInt64(maxBodySize) {
            return fail(HTTPError(.bodyTooLarge, "the body (\(declared) bytes) is larger than \(maxBodySize) bytes"))
        }
        var keepAlive = http_should_keep_alive(parser) != 0
        // A switch to another protocol is not followed; the connection ends after this message.
        if parser.pointee.upgrade == 1 || headers.contains("Upgrade") && headers.hasToken("upgrade", in: "Connection") {
            keepAlive = false
        }
        switch kind {
        case .request:
            let hosts = headers.values(for: "Host")
            if hosts.count > 1 || (hosts.isEmpty && version.minor >= 1) {
                return fail(HTTPError(.malformed, "an HTTP/1.1 request needs exactly one Host header"))
            }
            let method = String(cString: http_method_str(http_method(UInt32(parser.pointee.method))))
            parts.append(.requestHead(HTTPRequest(method: method, target: String(decoding: url, as: UTF8.self),
                                                  version: version, headers: headers, keepAlive: keepAlive)))
            return 0
        case .response:
            let status = Int(parser.pointee.status_code)
            parts.append(.responseHead(HTTPResponseHead(status: status, reason: String(decoding: reason, as: UTF8.self),
                                                        version: version, headers: headers, keepAlive: keepAlive)))
            // 1 tells http_parser that this response has no body (the answer to a HEAD).
            return skipsNextBody && status >= 200 ? 1 : 0
        }
    }

    private func body(_ at: UnsafePointer<CChar>?, _ length: Int) -> Int32 {
        bodyBytes += length
        if bodyBytes > maxBodySize {
            return fail(HTTPError(.bodyTooLarge, "the body is larger than \(maxBodySize) bytes"))
        }
        let bytes = UnsafeRawBufferPointer(start: at, count: length)
        if case .body(var last) = parts.last {
            parts.removeLast()
            last.append(contentsOf: bytes)
            parts.append(.body(last))
        } else {
            parts.append(.body(Array(bytes)))
        }
        return 0
    }

    private func messageComplete() -> Int32 {
        inMessage = false
        if kind == .response && parser.pointee.status_code >= 200 { skipsNextBody = false }
        parts.append(.end)
        http_parser_pause(parser, 1)
        return 0
    }
}
