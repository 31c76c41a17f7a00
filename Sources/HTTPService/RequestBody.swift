import DequeModule
import Synchronization

/// The body of a request, handed from the connection to the handler as it arrives.
///
/// Contract:
/// - The server (`HTTPServer` with `streamsBodies`) calls the handler as soon as the head is
///   complete and `push`es the body's chunks while the handler runs; `next()` returns them in
///   order, then `nil` after the last one.
/// - Memory stays bounded: `push` waits while `highWater` bytes wait unread, and while it waits
///   the connection is not read, so the client is held back by TCP itself.
/// - `limit` (set by the handler before it reads; the server's `maxBodySize` at first) caps the
///   body: a declared `Content-Length` over it fails the first `next()`, a chunked body fails
///   once it passes it (and the rest is dropped as it comes). Failures are `HTTPError`s (`.bodyTooLarge`, `.malformed`, `.incomplete`
///   when the client went away), the same for every later call.
/// - A client that sent `Expect: 100-continue` gets its `100 Continue` at the first `next()`,
///   so a handler that answers without reading (404, 413 from the declared length) never asks
///   for the body.
/// - `abandon(_:)` gives up on a body that comes too slowly (`next()` throws); `discard()` says
///   the handler will not read any more: what is buffered is dropped, later
///   pushes are dropped at once, and the server closes the connection after its answer.
public final class RequestBody: Sendable {
    /// The body's length when the request declared it (`Content-Length`); nil for a chunked body.
    public let declaredLength: Int?

    private let highWater: Int
    private let sendContinue: (@Sendable () async -> Void)?

    private struct State {
        var chunks = Deque<[UInt8]>()
        var buffered = 0
        var received = 0
        var limit: Int
        var finished = false
        var failure: HTTPError?
        /// More than `limit` bytes came; what comes after is dropped.
        var overLimit = false
        /// Why the handler gave up on the body (`abandon`).
        var abandoned: HTTPError?
        var discarded = false
        var askedToContinue = false
        var reader: CheckedContinuation<Void, Never>?
        var pusher: CheckedContinuation<Void, Never>?
    }
    private let state: Mutex<State>

    public init(declaredLength: Int?, limit: Int, highWater: Int = 256 * 1024,
                sendContinue: (@Sendable () async -> Void)? = nil) {
        self.declaredLength = declaredLength
        self.highWater = highWater
        self.sendContinue = sendContinue
        state = Mutex(State(limit: limit))
    }

    /// A body that is complete already (tests, and callers that have the bytes).
    public convenience init(bytes: [UInt8]) {
        self.init(declaredLength: bytes.count, limit: .max)
        if !bytes.isEmpty { state.withLock { $0.chunks.append(bytes); $0.buffered = bytes.count; $0.received = bytes.count } }
        finish()
    }

    /// The most bytes the handler accepts; set it before the first `next()`.
    public var limit: Int {
        get { state.withLock { $0.limit } }
        set { state.withLock { $0.limit = newValue } }
    }

    // MARK: Reading (the handler)

    /// The next chunk, nil at the end; throws the body's failure.
    public func next() async throws(HTTPError) -> [UInt8]? {
        let (askContinue, tooLong) = state.withLock { state -> (Bool, Int?) in
            let ask = !state.askedToContinue
            state.askedToContinue = true
            if let declaredLength, declaredLength > state.limit { return (ask, state.limit) }
            return (ask, nil)
        }
        if let tooLong {
            let failure = HTTPError(.bodyTooLarge, "the body (\(declaredLength!) bytes) is larger than \(tooLong) bytes")
            discard()
            throw failure
        }
        if askContinue, let sendContinue { await sendContinue() }
        while true {
            enum Step { case chunk([UInt8]), end, failed(HTTPError), wait }
            let step = state.withLock { state -> Step in
                if let failure = state.abandoned ?? state.failure { return .failed(failure) }
                if state.overLimit { return .failed(HTTPError(.bodyTooLarge, "the body is larger than \(state.limit) bytes")) }
                if let chunk = state.chunks.popFirst() {
                    state.buffered -= chunk.count
                    if state.buffered < highWater, let pusher = state.pusher {
                        state.pusher = nil
                        pusher.resume()
                    }
                    return .chunk(chunk)
                }
                return state.finished ? .end : .wait
            }
            switch step {
            case .chunk(let chunk): return chunk
            case .end: return nil
            case .failed(let failure): throw failure
            case .wait:
                await withCheckedContinuation { continuation in
                    let ready = state.withLock { state -> Bool in
                        if state.failure != nil || state.abandoned != nil || state.overLimit || state.finished
                            || !state.chunks.isEmpty { return true }
                        state.reader = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            }
        }
    }

    /// Reads the rest of the body into one array (failing past `limit`).
    public func collect() async throws(HTTPError) -> [UInt8] {
        var bytes: [UInt8] = []
        while let chunk = try await next() { bytes += chunk }
        return bytes
    }

    /// The handler gives up on the body (it came too slowly): `next()` throws `failure` from now
    /// on, a waiting one at once, and the rest is dropped as for `discard`.
    public func abandon(_ failure: HTTPError) {
        end { state in
            state.abandoned = state.abandoned ?? failure
            state.discarded = true
            state.chunks.removeAll()
            state.buffered = 0
        }
    }

    /// The handler will read no more; see the type's contract.
    public func discard() {
        let pusher = state.withLock { state -> CheckedContinuation<Void, Never>? in
            state.discarded = true
            state.chunks.removeAll()
            state.buffered = 0
            defer { state.pusher = nil }
            return state.pusher
        }
        pusher?.resume()
    }

    // MARK: Writing (the server)

    /// Whether the handler said it reads no more.
    public var isDiscarded: Bool { state.withLock { $0.discarded } }
    /// Whether the server has read the body to its end, or stopped at a failure (`finish` or `fail`).
    public var isComplete: Bool { state.withLock { $0.finished || $0.failure != nil } }

    /// Adds a chunk; waits while the handler is `highWater` bytes behind.
    public func push(_ bytes: [UInt8]) async {
        let reader = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard !state.discarded, !state.overLimit, state.failure == nil else { return nil }
            state.received += bytes.count
            if state.received > state.limit {
                state.overLimit = true
                state.chunks.removeAll()
                state.buffered = 0
            } else {
                state.chunks.append(bytes)
                state.buffered += bytes.count
            }
            defer { state.reader = nil }
            return state.reader
        }
        reader?.resume()
        await withCheckedContinuation { continuation in
            let go = state.withLock { state -> Bool in
                if state.discarded || state.overLimit || state.failure != nil || state.buffered < highWater { return true }
                state.pusher = continuation
                return false
            }
            if go { continuation.resume() }
        }
    }

    /// The body is complete.
    public func finish() {
        end { $0.finished = true }
    }

    /// The body cannot be completed (client gone, malformed chunk, over the server's limit).
    public func fail(_ failure: HTTPError) {
        end { if !$0.finished && $0.failure == nil { $0.failure = failure } }
    }

    /// The failure, if the body failed.
    public var failure: HTTPError? { state.withLock { $0.failure } }

    private func end(_ change: (inout State) -> Void) {
        let (reader, pusher) = state.withLock { state in
            change(&state)
            defer {
                state.reader = nil
                state.pusher = nil
            }
            return (state.reader, state.pusher)
        }
        reader?.resume()
        pusher?.resume()
    }
}
