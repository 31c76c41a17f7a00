import Core

/// A response whose body is read as it arrives.
///
/// `body` yields the body's chunks (chunked encoding already decoded) and finishes at the end of
/// the response; it throws `HTTPError` when the response is cut short or breaks a limit. It reads
/// the channel only while it is iterated, so a slow reader slows the sender instead of growing a
/// buffer. Once it has finished and `head.keepAlive` is true, the channel may carry another
/// request; a caller that stops early must close the channel.
public struct HTTPStreamingResponse: Sendable {
    public let head: HTTPResponseHead
    public let body: AsyncThrowingStream<[UInt8], Error>
}

/// A minimal HTTP/1.1 client over a connected `StreamChannel` (the `roost` CLI's side of the
/// admin API).
///
/// One request at a time per channel: a call writes the request, then reads its response;
/// interim 1xx responses are skipped. The request goes out with `Content-Length` (set from its
/// body; the caller's `Content-Length` and `Transfer-Encoding` are replaced) and with
/// `Host: localhost` when it has no Host. Errors are `HTTPError` (the response was malformed,
/// too large or cut short) or the channel's own (`UVError`). Not done: sending while reading,
/// so a server that answers early and stops reading a large request body fails the write.
public enum HTTPClient {
    /// Sends `request` and returns the whole response (its body as `.bytes`).
    public static func send(_ request: HTTPRequest, over channel: StreamChannel,
                            maxBodySize: Int = HTTPMessageParser.defaultMaxBodySize) async throws -> HTTPResponse {
        let reader = ResponseReader(channel: channel, maxBodySize: maxBodySize)
        let head = try await reader.start(request)
        var body: [UInt8] = []
        while let chunk = try await reader.nextBodyChunk() { body += chunk }
        return HTTPResponse(status: head.status, reason: head.reason, headers: head.headers, body: .bytes(body))
    }

    /// Sends `request` and returns once the response head has arrived; see `HTTPStreamingResponse`.
    /// The body has no size limit unless one is given (an event stream never ends).
    public static func stream(_ request: HTTPRequest, over channel: StreamChannel,
                              maxBodySize: Int = .max) async throws -> HTTPStreamingResponse {
        let reader = ResponseReader(channel: channel, maxBodySize: maxBodySize)
        let head = try await reader.start(request)
        let body = AsyncThrowingStream<[UInt8], Error>(unfolding: { try await reader.nextBodyChunk() })
        return HTTPStreamingResponse(head: head, body: body)
    }

    /// The request as bytes on the wire.
    static func encode(_ request: HTTPRequest) -> [UInt8] {
        var headers = request.headers
        headers.remove("Content-Length")
        headers.remove("Transfer-Encoding")
        if !headers.contains("Host") { headers.add("Host", "localhost") }
        if !request.body.isEmpty || ["POST", "PUT", "PATCH"].contains(request.method) {
            headers.add("Content-Length", String(request.body.count))
        }
        return HTTPWire.requestHead(method: request.method, target: request.target, headers: headers) + request.body
    }
}

/// Reads one response from a channel: parts come from the parser, input from the channel when
/// the parser needs more. An actor on the channel's loop, so the body stream can pull from it
/// from any task while the parser stays owned by one place.
private actor ResponseReader {
    nonisolated let channel: StreamChannel
    nonisolated var unownedExecutor: UnownedSerialExecutor { channel.loop.asUnownedSerialExecutor() }
    private let parser: HTTPMessageParser
    private var queued: [HTTPMessageParser.Part] = []
    private var atEOF = false
    private var ended = false

    init(channel: StreamChannel, maxBodySize: Int) {
        self.channel = channel
        self.parser = HTTPMessageParser(kind: .response, maxBodySize: maxBodySize)
    }

    /// Writes the request and reads up to the final response head.
    func start(_ request: HTTPRequest) async throws -> HTTPResponseHead {
        parser.skipsNextBody = request.method == "HEAD"
        try await channel.write(HTTPClient.encode(request))
        while true {
            guard case .responseHead(let head) = try await nextPart() else {
                throw HTTPError(.malformed, "a response without a head")
            }
            // Interim responses (100 Continue, 103 Early Hints) precede the real one.
            if (100..<200).contains(head.status) && head.status != 101 {
                while case .body = try await nextPart() {}
                continue
            }
            return head
        }
    }

    /// The next chunk of the body, or nil at its end.
    func nextBodyChunk() async throws -> [UInt8]? {
        if ended { return nil }
        switch try await nextPart() {
        case .body(let bytes): return bytes
        case .end:
            ended = true
            return nil
        case .requestHead, .responseHead:
            throw HTTPError(.malformed, "a head inside a response body")
        }
    }

    // Swift 6.3.1's optimizer crashes (signal 11 while splitting this coroutine) in release
    // builds; unoptimised, this small loop costs nothing that matters to a client.
    @_optimize(none)
    private func nextPart() async throws -> HTTPMessageParser.Part {
        while queued.isEmpty {
            let parts = try parsedParts()
            if !parts.isEmpty {
                queued = parts
                break
            }
            if atEOF { throw HTTPError(.incomplete, "the connection closed before the response was complete") }
            let bytes = try await channel.read()
            if let bytes { parser.append(bytes) } else { atEOF = true }
        }
        return queued.removeFirst()
    }

    /// What the parser has, as an untyped throw.
    private func parsedParts() throws -> [HTTPMessageParser.Part] {
        atEOF ? try parser.finish() : try parser.next()
    }
}
