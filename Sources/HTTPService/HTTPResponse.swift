import CHTTPParser
import Core
import Synchronization

/// The body of a response: all bytes at once, or a stream of chunks.
///
/// A server sends `.bytes` with `Content-Length`, and `.stream` with `Transfer-Encoding: chunked`
/// to HTTP/1.1 clients (close-delimited to HTTP/1.0 ones). It ends the stream's iteration when the
/// client goes away or the server shuts down, so the stream's `onTermination` tells the producer
/// to stop. Empty chunks are skipped (an empty chunk would end a chunked body).
public enum HTTPBody: Sendable {
    case bytes([UInt8])
    case stream(AsyncStream<[UInt8]>)
}

/// An HTTP response: what a handler returns, and what `HTTPClient.send` gives back.
///
/// The server owns the framing: it sets `Content-Length`, `Transfer-Encoding`, `Connection` and
/// (when missing) `Date` itself, so a handler's own values for the first three are dropped. A
/// handler that sets `Connection: close` gets the connection closed after this response.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var reason: String
    public var headers: HTTPHeaders
    public var body: HTTPBody
    /// For a streamed body: set by its producer when the stream ended short (a function timed out
    /// in the middle of its output). The server then closes the connection without the body's
    /// proper end, so the client can tell the body is incomplete.
    public var truncation: Truncation?

    /// A mark a stream's producer sets when the stream ends short.
    public final class Truncation: Sendable {
        private let marked = Atomic<Bool>(false)
        public init() {}
        public func mark() { marked.store(true, ordering: .releasing) }
        public var isMarked: Bool { marked.load(ordering: .acquiring) }
    }

    public init(status: Int, reason: String? = nil, headers: HTTPHeaders = [:], body: HTTPBody = .bytes([])) {
        self.status = status
        self.reason = reason ?? HTTPResponse.reasonPhrase(for: status)
        self.headers = headers
        self.body = body
    }

    /// The body's bytes; empty for a streamed body.
    public var bodyBytes: [UInt8] {
        if case .bytes(let bytes) = body { return bytes }
        return []
    }

    /// A response whose body is JSON text, already encoded.
    public static func json(status: Int = 200, _ json: [UInt8]) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": "application/json"], body: .bytes(json))
    }

    public static func json(status: Int = 200, _ json: String) -> HTTPResponse {
        .json(status: status, Array(json.utf8))
    }

    public static func json(status: Int = 200, _ value: JSON) -> HTTPResponse {
        .json(status: status, value.encoded())
    }

    /// A plain UTF-8 text response.
    public static func text(status: Int = 200, _ text: String) -> HTTPResponse {
        HTTPResponse(status: status, headers: ["Content-Type": "text/plain; charset=utf-8"], body: .bytes(Array(text.utf8)))
    }

    /// A `text/event-stream` response that sends each event as it comes. When the client goes
    /// away, iteration of `events` is cancelled, so its `onTermination` runs.
    public static func serverSentEvents(_ events: AsyncStream<ServerSentEvent>, headers: HTTPHeaders = [:]) -> HTTPResponse {
        let (bytes, continuation) = AsyncStream.makeStream(of: [UInt8].self)
        let forward = Task {
            for await event in events { continuation.yield(event.encoded()) }
            continuation.finish()
        }
        continuation.onTermination = { _ in forward.cancel() }
        return eventStream(.stream(bytes), headers: headers)
    }

    /// A `text/event-stream` response that asks `next` for each event only when the client has
    /// taken the previous one (nil ends the stream): a client that stops reading stops the asking,
    /// so nothing piles up here and the producer's own buffer decides what is kept. `next` runs
    /// in the task that writes to the client, one call at a time; when the client goes away
    /// while it waits, that task is cancelled.
    public static func serverSentEvents(
        pulling next: @escaping @Sendable () async -> ServerSentEvent?, headers: HTTPHeaders = [:]
    ) -> HTTPResponse {
        eventStream(.stream(AsyncStream(unfolding: { await next()?.encoded() })), headers: headers)
    }

    private static func eventStream(_ body: HTTPBody, headers: HTTPHeaders) -> HTTPResponse {
        var headers = headers
        headers["Content-Type"] = "text/event-stream"
        if !headers.contains("Cache-Control") { headers["Cache-Control"] = "no-cache" }
        return HTTPResponse(status: 200, headers: headers, body: body)
    }

    /// The standard reason phrase for `status` (http_parser's table), or "" for an unknown one.
    public static func reasonPhrase(for status: Int) -> String {
        guard (100...999).contains(status) else { return "" }
        let phrase = String(cString: http_status_str(http_status(UInt32(status))))
        return phrase == "<unknown>" ? "" : phrase
    }
}

/// The status line and headers of a response read by `HTTPClient`.
public struct HTTPResponseHead: Sendable {
    public var status: Int
    public var reason: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders
    /// Whether the connection may carry another request after this response's body.
    public var keepAlive: Bool
}
