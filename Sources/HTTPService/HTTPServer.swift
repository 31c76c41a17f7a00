import Core
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// An HTTP/1.1 server over the connections a `StreamListener` accepts.
///
/// Contract:
/// - `run()` accepts connections until the listener closes (or `shutdown()` is called, or its
///   task is cancelled, which shuts down), then returns once every connection has ended.
/// - Each connection is served in its own task on the listener's loop (the handler runs there
///   too unless it hops elsewhere). Requests on one connection are answered one at a time, in
///   order, so pipelined requests get their responses in order; keep-alive follows HTTP/1.1
///   (and `Connection: keep-alive` for 1.0).
/// - Responses get `Date` and `Server` headers when they lack them, `Content-Length` for byte bodies, and
///   `Transfer-Encoding: chunked` for streamed bodies to HTTP/1.1 clients (HTTP/1.0 clients get
///   the stream close-delimited), unless the handler gave a streamed body's `Content-Length`:
///   then exactly that many bytes are sent, and a stream that is shorter or longer ends with the
///   connection closed. HEAD, 1xx, 204 and 304 responses carry no body.
/// - A streamed body stops when the client goes away: the server reads while it streams, and at
///   end of input or a failed write it ends its iteration of the stream, so the stream's
///   `onTermination` runs and the producer can stop. A client that half-closes its side while a
///   stream runs is taken as gone too (bytes it sends meanwhile are kept for the next request).
/// - A request that breaks a limit or is malformed is answered with `HTTPError.status` and
///   `Connection: close`, and the connection is closed (after reading what the client still
///   sends for a moment, so the answer is not lost to a reset).
/// - `shutdown()` stops accepting, closes connections that wait for a request, lets requests
///   already handed to the handler finish, ends streamed bodies (with their last chunk), and
///   returns when no connection is left.
/// - With `streamsBodies`, the handler is called once a request's head is complete and reads the
///   body as it arrives (`HTTPRequest.streamedBody`, see `RequestBody`); the answer may go out
///   while the body still comes. A body the handler did not read to its end is dropped for at
///   most `lingerTimeout` and the connection closed after the answer.
/// - A streamed response whose producer marked it truncated (`HTTPResponse.truncation`) ends
///   with the connection closed, without the body's proper end.
/// - Timeouts: a connection waiting for its next request is closed after `idleTimeout`; one
///   whose request head is not complete `headerTimeout` after its first byte is closed too
///   (slowloris), after a 408 answer, and so is one whose buffered body is not complete
///   `bodyTimeout` after its head. A connection whose client takes none of the response bytes
///   waiting for it for `sendTimeout` is closed (a slow reader that keeps taking some is not).
/// - At most `maxConnections` are served at once; more wait in the listen backlog.
public actor HTTPServer {
    public typealias Handler = @Sendable (HTTPRequest) async -> HTTPResponse

    public struct Configuration: Sendable {
        public var maxHeaderSize = HTTPMessageParser.defaultMaxHeaderSize
        public var maxBodySize = HTTPMessageParser.defaultMaxBodySize
        /// From the first byte of a request until its headers are complete.
        public var headerTimeout: Duration = .seconds(10)
        /// How long a connection may wait for its next request.
        public var idleTimeout: Duration = .seconds(60)
        /// From a request's complete head until its body is complete, when the body is buffered
        /// (without `streamsBodies`); 408 when it passes.
        public var bodyTimeout: Duration = .seconds(60)
        /// How long a connection being closed after an error is read from before it is closed.
        public var lingerTimeout: Duration = .seconds(2)
        /// How long response bytes may wait for a client that takes none of them before the
        /// connection is closed (the handler's stream, if any, is ended with it).
        public var sendTimeout: Duration = .seconds(60)
        /// Whether a request's body is handed to the handler as it arrives (`HTTPRequest.streamedBody`,
        /// the handler called once the head is complete) instead of whole in `body`. `maxBodySize`
        /// is then the body's first `limit`, which the handler may change before it reads.
        public var streamsBodies = false
        /// Connections served at once; at the limit, new ones wait in the listen backlog (the
        /// kernel's queue) until one closes.
        public var maxConnections = Int.max
        /// The `Server` header of every response that has none; nil sends none.
        public var serverHeader: String? = "roost/\(RoostVersion.string)"

        public init() {}
    }

    public nonisolated let loop: EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    public nonisolated let configuration: Configuration

    private let listener: StreamListener
    private let handler: Handler
    private var connections: [Int: Connection] = [:]
    private var nextID = 0
    /// The most connections open at once since memory was last given back.
    private var peakConnections = 0
    private static let burst = 1024
    /// When to give free memory back after a burst (see `remove`).
    private var trimAt: ContinuousClock.Instant?
    private var shuttingDown = false
    /// The open connections' count and who waits for none to be left. Behind a lock, not actor
    /// state: the body of `withCheckedContinuation` may run after a hop off the actor, by when
    /// the last connection may have gone already; the lock makes the check and the wait one step.
    private let drain = Mutex(Counts())

    private struct Counts {
        var open = 0
        /// Waiting for no connection to be left.
        var waiters: [CheckedContinuation<Void, Never>] = []
        /// The accept loop, waiting for a connection to go (at `maxConnections`).
        var acceptor: CheckedContinuation<Void, Never>?
    }
    private var ticker: LoopTimer?
    private var cachedDate: (second: Int, text: String) = (0, "")

    private enum Phase { case waiting, responding, streaming }

    /// What of a begun request did not come in time.
    private enum LateRequestPart { case head, body }

    private struct Connection {
        let channel: StreamChannel
        var task: Task<Void, Never>?
        var phase = Phase.waiting
        var deadline: ContinuousClock.Instant?
        /// The deadline is that of a request begun (its head, or its buffered body): when it passes
        /// it is answered 408.
        var deadlineAnswer: LateRequestPart?
        /// That deadline passed: the 408 and the close are under way; what the client sends now
        /// is not served.
        var expired = false
        /// Response bytes wait for the client: how many it had taken when it last took some, and when.
        var sending: (sent: Int, since: ContinuousClock.Instant)?
        var writer: Task<(StreamOutcome, Int), Never>?
    }

    private enum StreamOutcome { case finished, stopped }

    public init(listener: StreamListener, configuration: Configuration = Configuration(),
                handler: @escaping Handler) {
        self.loop = listener.loop
        self.listener = listener
        self.configuration = configuration
        self.handler = handler
    }

    /// The number of open connections.
    public var connectionCount: Int { connections.count }

    /// Serves until the listener closes; see the type's contract.
    public func run() async {
        startTicker()
        while !shuttingDown {
            await waitForRoom()
            if shuttingDown { break }
            let channel: StreamChannel
            do {
                channel = try await listener.accept()
            } catch {
                if Task.isCancelled { beginShutdown() }
                break
            }
            if shuttingDown {
                await channel.close()
                break
            }
            let id = nextID
            nextID += 1
            connections[id] = Connection(channel: channel, deadline: .now + configuration.idleTimeout)
            peakConnections = max(peakConnections, connections.count)
            drain.withLock { $0.open += 1 }
            connections[id]?.task = Task(executorPreference: loop) { await self.serve(channel, id: id) }
        }
        await waitForConnections()
        await ticker?.close()
        ticker = nil
    }

    /// Stops the server; see the type's contract. With a `gracePeriod`, connections still open
    /// after it are closed and their tasks cancelled (a handler sees the cancellation).
    public func shutdown(gracePeriod: Duration? = nil) async {
        beginShutdown()
        if let gracePeriod, !connections.isEmpty {
            let force = Task(executorPreference: loop) {
                try? await self.loop.sleep(for: gracePeriod)
                if !Task.isCancelled { await self.closeAll() }
            }
            await waitForConnections()
            force.cancel()
        } else {
            await waitForConnections()
        }
    }

    private func beginShutdown() {
        guard !shuttingDown else { return }
        shuttingDown = true
        listener.assumeIsolated { $0.close() }
        wakeAcceptor()
        for connection in connections.values {
            switch connection.phase {
            case .waiting: connection.channel.assumeIsolated { $0.close() }
            case .streaming: connection.writer?.cancel()
            case .responding: break  // closes once its response is written
            }
        }
    }

    private func closeAll() {
        for connection in connections.values {
            connection.writer?.cancel()
            connection.task?.cancel()
            connection.channel.assumeIsolated { $0.close() }
        }
    }

    private func waitForConnections() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let drained = drain.withLock { state -> Bool in
                if state.open == 0 { return true }
                state.waiters.append(continuation)
                return false
            }
            if drained { continuation.resume() }
        }
    }

    /// Returns at once below `maxConnections`, else when a connection has gone (or at shutdown).
    private func waitForRoom() async {
        let limit = configuration.maxConnections
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let room = drain.withLock { state -> Bool in
                if state.open < limit { return true }
                state.acceptor = continuation
                return false
            }
            if room { continuation.resume() }
        }
    }

    private func wakeAcceptor() {
        drain.withLock { state in defer { state.acceptor = nil }; return state.acceptor }?.resume()
    }

    private func remove(_ id: Int) {
        guard connections.removeValue(forKey: id) != nil else { return }
        // After a burst of connections (thousands) has mostly gone, the memory malloc kept for
        // them goes back to the system, once per burst: a second later, on the ticker, when the
        // connections' tasks and channels have been freed too.
        if peakConnections >= Self.burst, connections.count <= peakConnections / 8 {
            peakConnections = connections.count
            trimAt = .now + .seconds(1)
        }
        let (waiters, acceptor) = drain.withLock { state -> ([CheckedContinuation<Void, Never>], CheckedContinuation<Void, Never>?) in
            state.open -= 1
            defer { state.acceptor = nil }
            guard state.open == 0 else { return ([], state.acceptor) }
            defer { state.waiters = [] }
            return (state.waiters, state.acceptor)
        }
        acceptor?.resume()
        for waiter in waiters { waiter.resume() }
    }

    // MARK: Deadlines

    /// One timer for the whole server checks every connection's deadline, so arming and
    /// clearing a timeout per request is a plain assignment.
    private func startTicker() {
        guard ticker == nil else { return }
        let timeouts = [configuration.headerTimeout, configuration.bodyTimeout, configuration.idleTimeout,
                        configuration.lingerTimeout, configuration.sendTimeout]
        let tick = max(.milliseconds(10), min(.seconds(1), timeouts.min()! / 4))
        let timer = LoopTimer(loop: loop)
        ticker = timer
        timer.assumeIsolated { timer in
            try? timer.start(after: tick, repeating: tick) { [weak self] in
                self?.assumeIsolated { $0.expireDeadlines() }
            }
        }
    }

    private func expireDeadlines() {
        let now = ContinuousClock.now
        if let trimAt, trimAt <= now {
            self.trimAt = nil
            MemoryRelease.returnFreeMemory()
        }
        for (id, connection) in connections {
            closeIfClientTakesNothing(id, connection, now: now)
            guard let deadline = connection.deadline, deadline <= now else { continue }
            connections[id]?.deadline = nil
            let channel = connection.channel
            guard let answer = connection.deadlineAnswer else {
                channel.assumeIsolated { $0.close() }
                continue
            }
            // A request begun and not completed in time: 408, then the connection closes (which
            // ends the connection's task, waiting for the rest of the request).
            connections[id]?.expired = true
            let late = switch answer {
            case .head: "the request head did not come within \(configuration.headerTimeout)"
            case .body: "the request body did not come within \(configuration.bodyTimeout)"
            }
            let timeout = HTTPError(.timeout, late)
            Task(executorPreference: loop) {
                await self.refuse(timeout, on: channel)
                try? await channel.flush()
                await channel.close()
            }
        }
    }

    /// Closes the connection once response bytes have waited `sendTimeout` for a client that took
    /// none of them. Closing fails the writes under way, which ends the response and its stream.
    private func closeIfClientTakesNothing(_ id: Int, _ connection: Connection, now: ContinuousClock.Instant) {
        // Most connections have nothing waiting to go out: one look at a counter for them.
        guard let sent = connection.channel.assumeIsolated({ $0.unsentByteCount > 0 ? $0.deliveredByteCount : nil }) else {
            if connection.sending != nil { connections[id]?.sending = nil }
            return
        }
        guard let sending = connection.sending, sending.sent == sent else {
            connections[id]?.sending = (sent, now)
            return
        }
        guard now - sending.since >= configuration.sendTimeout else { return }
        connections[id]?.sending = nil
        connection.channel.assumeIsolated { $0.close() }
        // A writer waiting for its stream's next piece would hear of the close only with it.
        connection.writer?.cancel()
    }

    /// `answer`: the deadline is a request's, answered 408 with it (see `Connection.deadlineAnswer`).
    private func setDeadline(_ id: Int, after duration: Duration?, answer: LateRequestPart? = nil) {
        connections[id]?.deadline = duration.map { .now + $0 }
        connections[id]?.deadlineAnswer = duration == nil ? nil : answer
    }

    // MARK: One connection

    private func serve(_ channel: StreamChannel, id: Int) async {
        // A streamed body's limit is the handler's to set (`RequestBody.limit`).
        let parser = HTTPMessageParser(kind: .request, maxHeaderSize: configuration.maxHeaderSize,
                                       maxBodySize: configuration.streamsBodies ? .max : configuration.maxBodySize)
        var request: HTTPRequest?
        let peer = await channel.peerCredentials()
        var peerClosed = false
        var closeGently = false
        var expired = false
        serving: while true {
            let parts: [HTTPMessageParser.Part]
            do {
                parts = try parser.next()
            } catch {
                await refuse(error, on: channel)
                closeGently = true
                break serving
            }
            if parts.isEmpty {
                let startsRequest = !parser.isInMessage && parser.bufferedByteCount == 0
                do {
                    guard let bytes = try await channel.read() else {
                        peerClosed = true
                        break serving
                    }
                    // Came after the header timeout: the 408 is being sent, and it closes.
                    if connections[id]?.expired == true {
                        expired = true
                        break serving
                    }
                    if startsRequest && connections[id]?.phase == .waiting {
                        setDeadline(id, after: configuration.headerTimeout, answer: .head)
                    }
                    parser.append(bytes)
                } catch {
                    peerClosed = true  // closed by a deadline or shutdown, or reset by the peer
                    break serving
                }
                continue
            }
            for (index, part) in parts.enumerated() {
                switch part {
                case .requestHead(let head):
                    request = head
                    request?.peer = peer
                    request?.remoteAddress = channel.remoteAddress
                    // The head is complete. A streamed body is the handler's to time; a buffered
                    // one must be complete within `bodyTimeout`.
                    setDeadline(id, after: nil)
                    let expectsContinue = head.version == .http1_1 && head.headers.hasToken("100-continue", in: "Expect")
                    // A body follows when the message is still open, or parts of it came in this batch.
                    let hasBody = parser.isInMessage || parts[(index + 1)...].contains {
                        if case .body = $0 { true } else { false }
                    }
                    if configuration.streamsBodies && hasBody && !shuttingDown {
                        let disposition = await serveStreaming(request!, expectsContinue: expectsContinue,
                                                               ahead: parts[(index + 1)...], on: channel, id: id, parser: parser)
                        request = nil
                        let next = settle(disposition, id: id, parser: parser)
                        (closeGently, peerClosed) = (next.closeGently, next.peerClosed)
                        guard next.goOn else { break serving }
                        continue serving
                    }
                    if parser.isInMessage {
                        setDeadline(id, after: configuration.bodyTimeout, answer: .body)
                        if expectsContinue { try? await channel.write(HTTPWire.continueResponse) }
                    }
                case .body(let bytes):
                    request?.body += bytes
                case .end:
                    guard let complete = request, !shuttingDown else { break serving }
                    request = nil
                    setDeadline(id, after: nil)
                    connections[id]?.phase = .responding
                    // In a task of its own: a task keeps the memory its deepest call needed until
                    // it ends, and this connection's task may then wait idle for a long time.
                    // (Cancelling the connection cancels the handler too.)
                    let work = Task(executorPreference: loop) { await self.answer(complete) }
                    let response = await withTaskCancellationHandler { await work.value } onCancel: { work.cancel() }
                    let next = settle(await respond(response, to: complete, on: channel, id: id, parser: parser),
                                      id: id, parser: parser)
                    (closeGently, peerClosed) = (next.closeGently, next.peerClosed)
                    guard next.goOn else { break serving }
                case .responseHead:
                    break  // a request parser never produces one
                }
            }
        }
        if !expired {
            if closeGently && !peerClosed { await linger(on: channel, id: id) }
            await channel.close()
        }
        remove(id)
    }

    /// Runs the handler isolated to this server, whose executor is the loop: the handler's
    /// nonisolated code (nonsending) runs there with it, so its calls to the loop's actors and
    /// back need no trip through the executor's queue each way.
    private func answer(_ request: HTTPRequest) async -> HTTPResponse {
        await handler(request)
    }

    /// What a connection does after an answer: wait for the next request (`goOn`), or end, gently
    /// (lingering) or at once.
    private func settle(_ disposition: Disposition, id: Int,
                        parser: HTTPMessageParser) -> (goOn: Bool, closeGently: Bool, peerClosed: Bool) {
        switch disposition {
        case .keepOpen:
            if shuttingDown { return (false, true, false) }
            connections[id]?.phase = .waiting
            // Bytes of the next request already here start its header clock now.
            let begun = parser.bufferedByteCount > 0
            setDeadline(id, after: begun ? configuration.headerTimeout : configuration.idleTimeout,
                        answer: begun ? .head : nil)
            return (true, false, false)
        case .close: return (false, true, false)
        case .closed: return (false, false, false)
        case .peerGone: return (false, false, true)
        }
    }

    /// Half-closes, then reads and drops what the client still sends until it closes or the
    /// linger timeout passes. Closing at once with unread input would send a reset, which can
    /// destroy the response in flight before the client has read it.
    private func linger(on channel: StreamChannel, id: Int) async {
        connections[id]?.phase = .waiting
        setDeadline(id, after: configuration.lingerTimeout)
        if shuttingDown { return }
        do {
            try await channel.shutdownWrite()
            while try await channel.read() != nil {}
        } catch {}
    }

    /// `closed`: the connection is done with and needs no lingering.
    private enum Disposition { case keepOpen, close, closed, peerGone }

    private func refuse(_ error: HTTPError, on channel: StreamChannel) async {
        let body = Array((error.message + "\n").utf8)
        let headers: HTTPHeaders = [
            "Date": date(), "Content-Type": "text/plain; charset=utf-8",
            "Content-Length": String(body.count), "Connection": "close",
        ]
        var all = headers
        if let server = configuration.serverHeader { all.add("Server", server) }
        let head = HTTPWire.responseHead(status: error.status, reason: HTTPResponse.reasonPhrase(for: error.status),
                                         headers: all)
        try? await channel.write(head + body)
    }

    /// `watchClient`: read the connection while a streamed body goes out, to see the client go
    /// away (not while a request body's reader reads it).
    private func respond(_ response: HTTPResponse, to request: HTTPRequest, on channel: StreamChannel,
                         id: Int, parser: HTTPMessageParser, forceClose: Bool = false, watchClient: Bool = true) async -> Disposition {
        let status = response.status
        let bodyless = request.method == "HEAD" || (100..<200).contains(status) || status == 204 || status == 304
        var close = forceClose || !request.keepAlive || shuttingDown || response.headers.hasToken("close", in: "Connection")
        var headers = response.headers
        headers.remove("Content-Length")
        headers.remove("Transfer-Encoding")
        headers.remove("Connection")
        if !headers.contains("Date") { headers.add("Date", date()) }
        if let server = configuration.serverHeader, !headers.contains("Server") { headers.add("Server", server) }

        switch response.body {
        case .bytes(let bytes):
            if !((100..<200).contains(status) || status == 204 || status == 304) {
                headers.add("Content-Length", String(bytes.count))
            }
            addConnection(&headers, close: close, version: request.version)
            var out = HTTPWire.responseHead(status: status, reason: response.reason, headers: headers)
            if !bodyless { out += bytes }
            do { try await channel.write(out) } catch { return .peerGone }
            return close ? .close : .keepOpen

        case .stream(let stream):
            // A handler that knows the stream's length says so; the stream is then sent as it is.
            let length = response.headers["Content-Length"].flatMap { Int($0) }.flatMap { $0 >= 0 ? $0 : nil }
            let chunked = length == nil && request.version.minor >= 1
            if let length {
                if !((100..<200).contains(status) || status == 204 || status == 304) {
                    headers.add("Content-Length", String(length))
                }
            } else if chunked {
                if !((100..<200).contains(status) || status == 204 || status == 304) {
                    headers.add("Transfer-Encoding", "chunked")
                }
            } else if !bodyless {
                close = true  // an HTTP/1.0 client reads to the end of the connection
            }
            addConnection(&headers, close: close, version: request.version)
            let head = HTTPWire.responseHead(status: status, reason: response.reason, headers: headers)
            if bodyless {
                Self.abandon(stream)
                do { try await channel.write(head) } catch { return .peerGone }
                return close ? .close : .keepOpen
            }
            do {
                try await channel.write(head)
            } catch {
                Self.abandon(stream)
                return .peerGone
            }
            let (outcome, ahead, peerGone, sent) = await sendStream(stream, on: channel, id: id, chunked: chunked,
                                                                   length: length, watchClient: watchClient)
            parser.append(ahead)
            if peerGone { return .peerGone }
            // Ended short: no proper end, so the client cannot take the part for the whole.
            if response.truncation?.isMarked == true || (length != nil && sent != length) { return .closed }
            if length != nil { return close || outcome == .stopped ? .close : .keepOpen }
            if chunked {
                do { try await channel.write(HTTPWire.lastChunk) } catch { return .peerGone }
            }
            return close || !chunked || outcome == .stopped ? .close : .keepOpen
        }
    }

    // MARK: Streamed request bodies

    /// How the body's reading ended.
    private enum BodyEnd { case complete, failed(HTTPError), peerGone }

    /// The parser, lent to the task that reads a streamed body while the handler runs. Both run
    /// on the loop, and the connection's task does not touch the parser until that task is done.
    private struct LentParser: @unchecked Sendable {
        let parser: HTTPMessageParser
    }

    /// Serves one request whose body is streamed to the handler: the handler runs while the body
    /// is read. When the handler answers before the body is complete (it read no further), the
    /// rest is read and dropped for at most `lingerTimeout` and the connection is closed; a body
    /// that fails (malformed, over its limit) is answered with its error instead of the handler's
    /// response, unless that response had already begun.
    private func serveStreaming(_ head: HTTPRequest, expectsContinue: Bool, ahead: ArraySlice<HTTPMessageParser.Part>,
                                on channel: StreamChannel, id: Int, parser: HTTPMessageParser) async -> Disposition {
        var request = head
        var sendContinue: (@Sendable () async -> Void)?
        if expectsContinue {
            sendContinue = { @Sendable in _ = try? await channel.write(HTTPWire.continueResponse) }
        }
        let declaredLength = head.headers["Content-Length"].flatMap { Int($0) }
        let body = RequestBody(declaredLength: declaredLength, limit: configuration.maxBodySize, sendContinue: sendContinue)
        request.streamedBody = body
        connections[id]?.phase = .responding
        let answering = Task(executorPreference: loop) { [request] in await self.answer(request) }
        let lent = LentParser(parser: parser)
        let first = Array(ahead)
        let reading = Task(executorPreference: loop) { await self.readBody(into: body, first: first, parser: lent, from: channel) }
        // A forced shutdown cancels the connection's task: the handler and the reader with it.
        let response = await withTaskCancellationHandler { await answering.value } onCancel: {
            answering.cancel()
            reading.cancel()
        }
        if body.isComplete {
            // The reader has reached the body's end (or its failure): it returns at once.
            switch await reading.value {
            case .complete:
                return await respond(response, to: request, on: channel, id: id, parser: parser)
            case .failed(let failure):
                Self.abandon(response)
                await refuse(failure, on: channel)
                return .close
            case .peerGone:
                // Maybe only half-closed: the answer is still sent.
                // The reader saw the end of input already: no watching for it again.
                return await respond(response, to: request, on: channel, id: id, parser: parser, forceClose: true,
                                     watchClient: false) == .peerGone ? .peerGone : .close
            }
        }
        // The body is still coming. A streamed answer may still be reading it (a CGI program
        // answers while it reads), so the reader goes on while the answer goes out; a handler
        // that answered with bytes is done and read no further.
        if case .bytes = response.body { body.discard() }
        let disposition = await respond(response, to: request, on: channel, id: id, parser: parser,
                                        forceClose: body.isDiscarded, watchClient: false)
        if disposition == .peerGone {
            body.discard()
            await channel.close()
            _ = await reading.value
            return .peerGone
        }
        if disposition == .keepOpen, body.isComplete, case .complete = await reading.value { return .keepOpen }
        // The answer is out and the body unfinished (or the connection ends anyway): the reader
        // drops what still comes, for at most the linger timeout, and the connection closes.
        body.discard()
        setDeadline(id, after: configuration.lingerTimeout)
        try? await channel.shutdownWrite()
        _ = await reading.value
        return .closed
    }

    /// Reads the body of the current request from the channel into `body` (dropping it once
    /// discarded), starting with parts already parsed.
    private func readBody(into body: RequestBody, first: [HTTPMessageParser.Part], parser lent: LentParser,
                          from channel: StreamChannel) async -> BodyEnd {
        let parser = lent.parser
        var parts = first
        while true {
            for part in parts {
                switch part {
                case .body(let bytes):
                    await body.push(bytes)
                case .end:
                    body.finish()
                    return .complete
                case .requestHead, .responseHead:
                    break  // the parser stops at the end of a message: it cannot come before `.end`
                }
            }
            do {
                parts = try parser.next()
            } catch {
                body.fail(error)
                return .failed(error)
            }
            if parts.isEmpty {
                let bytes: [UInt8]?
                do { bytes = try await channel.read() } catch { bytes = nil }
                guard let bytes else {
                    body.fail(HTTPError(.incomplete, "the client went away before the body was complete"))
                    return .peerGone
                }
                parser.append(bytes)
            }
        }
    }

    private static func abandon(_ response: HTTPResponse) {
        if case .stream(let stream) = response.body { abandon(stream) }
    }

    private func addConnection(_ headers: inout HTTPHeaders, close: Bool, version: HTTPVersion) {
        if close {
            headers.add("Connection", "close")
        } else if version == .http1_0 {
            headers.add("Connection", "keep-alive")
        }
    }

    /// Sends the stream's chunks while watching the client: returns how the stream ended, the
    /// bytes the client sent meanwhile, and whether it went away.
    /// With a `length`, at most that many bytes are sent. Returns how the stream ended, the bytes
    /// the client sent meanwhile, whether it went away, and the body bytes sent.
    private func sendStream(_ body: AsyncStream<[UInt8]>, on channel: StreamChannel, id: Int, chunked: Bool,
                            length: Int?, watchClient: Bool) async -> (StreamOutcome, [UInt8], Bool, Int) {
        let writer = Task(executorPreference: loop) { () -> (StreamOutcome, Int) in
            var sent = 0
            do {
                // Iteration ends (nil) when this task is cancelled, which runs the stream's onTermination.
                for await chunk in body where !chunk.isEmpty {
                    if let length {
                        let room = length - sent
                        if chunk.count > room {
                            if room > 0 { try await channel.write(Array(chunk[..<room])) }
                            return (.stopped, length + 1)  // longer than it said: cut, and the connection closed
                        }
                    }
                    try await channel.write(chunked ? HTTPWire.chunk(chunk) : chunk)
                    sent += chunk.count
                }
            } catch {
                return (.stopped, sent)
            }
            return (Task.isCancelled ? .stopped : .finished, sent)
        }
        connections[id]?.phase = .streaming
        connections[id]?.writer = writer
        if shuttingDown { writer.cancel() }
        let watcher = Task(executorPreference: loop) { () -> ([UInt8], Bool) in
            var ahead: [UInt8] = []
            guard watchClient else { return (ahead, false) }
            // Bounded: past this, the client is not read until the stream ends.
            while ahead.count < 64 * 1024 {
                do {
                    guard let bytes = try await channel.read() else {
                        writer.cancel()
                        return (ahead, true)
                    }
                    ahead += bytes
                } catch is CancellationError {
                    return (ahead, false)
                } catch {
                    writer.cancel()
                    return (ahead, true)
                }
            }
            return (ahead, false)
        }
        let (outcome, sent) = await writer.value
        watcher.cancel()
        let (ahead, peerGone) = await watcher.value
        connections[id]?.writer = nil
        connections[id]?.phase = .responding
        // A write that failed, or a cancellation that came before iteration began, leaves the
        // stream unterminated; this ends it so the producer hears of it either way.
        if outcome == .stopped { Self.abandon(body) }
        return (outcome, ahead, peerGone, sent)
    }

    /// Ends a stream nobody will read: a next() in a cancelled task terminates it, which runs
    /// its onTermination. Harmless on a stream that has already ended.
    private static func abandon(_ stream: AsyncStream<[UInt8]>) {
        Task {
            // Cancelled before it asks, never after: a stream made with `unfolding:` hears of it
            // (its `onCancel`) only when a request for its next piece is cancelled, and a task
            // cancelled from outside may already have asked, been answered and ended.
            withUnsafeCurrentTask { $0?.cancel() }
            var iterator = stream.makeAsyncIterator()
            _ = await iterator.next()
        }
    }

    private func date() -> String {
        let now = Int(time(nil))
        if now != cachedDate.second { cachedDate = (now, HTTPWire.date(now)) }
        return cachedDate.text
    }
}
