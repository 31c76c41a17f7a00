import Core
import Logging
import Supervisor
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How a CGI function runs: its program and what it gets besides the request's variables.
public struct CGIProgram: Sendable {
    public var arguments: [String]
    /// The function's own environment (the request's variables are laid over it).
    public var environment: [String: String]
    public var workingDirectory: String?
    /// From the start of the process until the response is complete; then its group is killed.
    public var timeout: Duration
    /// Whether an answer may also be a JSON object `{status, headers, body}` (`protocol: json`).
    public var jsonAnswers = false

    public init(arguments: [String], environment: [String: String] = [:], workingDirectory: String? = nil,
                timeout: Duration = .seconds(30)) {
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.timeout = timeout
    }
}

/// Runs one request through a CGI program (RFC 3875): a process per request, in a process group
/// of its own, the request body on its stdin, its stdout parsed as a CGI response and streamed
/// to the client as the program writes it, its stderr logged line by line with the request id.
///
/// - Memory stays bounded both ways: the body is written while the output is read, and the output
///   is read only as fast as the client takes it (the stream is pulled; the pipe's read limit
///   stops reading, and the program blocks on its next write).
/// - The timeout covers the whole exchange: before the head is complete it is a 504; later the
///   stream ends marked as truncated (the server then closes without the body's proper end). Either way, and whenever the client goes away, the group is killed.
/// - A program that cannot be started, or ends or writes garbage before a valid head, is a 502.
/// - A local redirect (`Location: /path`) is returned as such for the caller to route again.
public enum CGIGateway {
    public enum Outcome: Sendable {
        case response(HTTPResponse)
        case localRedirect(path: String)
    }

    /// `onEnd` runs once, when the process is gone and its output closed (after the whole streamed
    /// body, or at once when there is no response to stream).
    public static func run(_ program: CGIProgram, for request: CGIRequest, requestID: String, on loop: EventLoop,
                           logger: Logger, onEnd: @escaping @Sendable () -> Void = {}) async -> Outcome {
        var request = request
        let streamed = request.request.streamedBody
        // A chunked body has no length, which CGI needs (CONTENT_LENGTH): it is spooled to an
        // unlinked temporary file first, which becomes the program's stdin.
        var spooled: Int32 = -1
        if let streamed, streamed.declaredLength == nil {
            do {
                let (descriptor, length) = try await spool(streamed)
                spooled = descriptor
                request.request.headers.remove("Transfer-Encoding")
                request.request.headers.replace("Content-Length", with: String(length))
            } catch {
                onEnd()
                return .response(failure(error))
            }
        }
        defer { if spooled >= 0 { close(spooled) } }
        var environment = program.environment
        for (key, value) in request.variables { environment[key] = value }
        var options = ProcessOptions(program.arguments, environment: environment, workingDirectory: program.workingDirectory)
        // No body, no stdin pipe: the program reads end-of-file at once from /dev/null.
        let hasBody = streamed != nil || !request.request.body.isEmpty
        options.stdin = spooled >= 0 ? .fileDescriptor(spooled) : hasBody ? .pipe : .null
        options.stdout = .pipe
        options.stderr = .pipe
        options.newProcessGroup = true
        options.dieWithHost = true
        options.role = .function
        let child: ChildProcess
        do {
            child = try await ChildProcess.spawn(on: loop, options)
        } catch {
            logger.error("cannot start \(program.arguments[0]): \(error)", metadata: ["request": "\(requestID)"])
            onEnd()
            return .response(.text(status: 502, "bad gateway: the function could not be started\n"))
        }
        let exchange = Exchange(child: child, loop: loop, onEnd: onEnd)
        exchange.armTimeout(program.timeout)
        logStderr(child, program: program.arguments[0], requestID: requestID, logger: logger, loop: loop)
        if spooled >= 0 {
            close(spooled)
            spooled = -1
        }
        let body = request.request.body
        if let stdin = child.stdin {
            Task(executorPreference: loop) {
                // The body goes in while the output comes out: neither side waits for the other.
                guard let streamed, streamed.declaredLength != nil else {
                    try? await stdin.write(body)
                    try? await stdin.shutdownWrite()
                    return
                }
                do throws(HTTPError) {
                    while let chunk = try await streamed.next() {
                        do {
                            try await stdin.write(chunk)
                        } catch {
                            // The program closed its stdin or ended: it wants no more.
                            streamed.discard()
                            return
                        }
                    }
                    try? await stdin.shutdownWrite()
                } catch {
                    // The body failed (too large, cut short): the program must not take a part for the whole.
                    await exchange.failBody(error)
                }
            }
        }

        guard let stdout = child.stdout else {
            await exchange.end()
            return .response(.text(status: 502, "bad gateway\n"))
        }
        var parser = CGIResponseParser()
        var outcome = CGIResponseParser.Outcome.needMore
        // With `jsonAnswers`, output that begins with `{` is a JSON answer; it is told apart from
        // CGI by its first byte that is not white space.
        var deciding = program.jsonAnswers
        var early: [UInt8] = []
        while outcome == .needMore {
            let chunk = try? await stdout.read()
            if let failed = exchange.bodyFailure {
                await exchange.end()
                return .response(failure(failed))
            }
            if exchange.timedOut.load(ordering: .acquiring) {
                await exchange.end()
                logger.warning("\(program.arguments[0]) gave no response within \(program.timeout)", metadata: ["request": "\(requestID)"])
                return .response(.text(status: 504, "gateway timeout\n"))
            }
            guard let chunk else {
                if deciding { _ = parser.feed(early) }
                outcome = parser.finish()
                break
            }
            if deciding {
                early += chunk
                guard let first = early.first(where: { ![9, 10, 13, 32].contains($0) }) else { continue }
                deciding = false
                if first == UInt8(ascii: "{") {
                    return .response(await jsonAnswer(early, from: stdout, exchange: exchange, program: program, requestID: requestID,
                                                      logger: logger))
                }
                outcome = parser.feed(early)
                continue
            }
            outcome = parser.feed(chunk)
        }
        switch outcome {
        case .needMore:
            preconditionFailure("the loop above ends only with an outcome")
        case .invalid(let reason):
            await exchange.end()
            let status = await child.exitStatus
            logger.error("\(program.arguments[0]): invalid CGI response: \(reason)\(status.map { " (\($0))" } ?? "")",
                         metadata: ["request": "\(requestID)"])
            return .response(.text(status: 502, "bad gateway: the function's response was not valid CGI\n"))
        case .localRedirect(let path):
            await exchange.end()
            return .localRedirect(path: path)
        case .response(let status, let reason, let headers, let first):
            // The stream is pulled by one reader at a time; the lock only satisfies the compiler.
            let pending = Mutex<[UInt8]?>(first.isEmpty ? nil : first)
            // The server drops the stream when its client goes away: the process ends with it.
            let owner = EndOnRelease(exchange)
            let truncation = HTTPResponse.Truncation()
            let stream = AsyncStream<[UInt8]>(unfolding: {
                withExtendedLifetime(owner) {}
                if let chunk = pending.withLock({ $0.take() }) { return chunk }
                if let chunk = try? await stdout.read() { return chunk }
                await exchange.end()
                if exchange.timedOut.load(ordering: .acquiring) {
                    truncation.mark()
                    logger.warning("\(program.arguments[0]) did not finish its response within \(program.timeout)",
                                   metadata: ["request": "\(requestID)"])
                } else if exchange.bodyFailure != nil {
                    truncation.mark()  // killed because its request body failed
                }
                return nil
            }, onCancel: {
                // The client went away (or the server shut down): nothing more is wanted.
                Task(executorPreference: loop) { await exchange.end() }
            })
            var response = HTTPResponse(status: status, reason: reason, headers: headers, body: .stream(stream))
            response.truncation = truncation
            return .response(response)
        }
    }

    /// The most a JSON answer may hold.
    static let jsonAnswerLimit = 16 << 20

    /// Reads a JSON answer to its end and makes it the response (`JSONEnvelope.response`).
    private static func jsonAnswer(_ first: [UInt8], from stdout: StreamChannel, exchange: Exchange, program: CGIProgram,
                                   requestID: String, logger: Logger) async -> HTTPResponse {
        var output = first
        while output.count <= jsonAnswerLimit, let chunk = try? await stdout.read() { output += chunk }
        let timedOut = exchange.timedOut.load(ordering: .acquiring)
        await exchange.end()
        if let failed = exchange.bodyFailure { return failure(failed) }
        if timedOut {
            logger.warning("\(program.arguments[0]) did not finish its answer within \(program.timeout)", metadata: ["request": "\(requestID)"])
            return .text(status: 504, "gateway timeout\n")
        }
        guard output.count <= jsonAnswerLimit else {
            logger.error("\(program.arguments[0]): JSON answer over \(jsonAnswerLimit) bytes", metadata: ["request": "\(requestID)"])
            return .text(status: 502, "bad gateway: the function's answer was too large\n")
        }
        do {
            return try JSONEnvelope.response(from: output)
        } catch {
            logger.error("\(program.arguments[0]): invalid JSON answer: \(error)", metadata: ["request": "\(requestID)"])
            return .text(status: 502, "bad gateway: the function's answer was not a valid JSON response\n")
        }
    }

    private static func failure(_ error: HTTPError) -> HTTPResponse {
        HTTPResponse(status: error.status, headers: ["Content-Type": "text/plain; charset=utf-8", "Connection": "close"],
                     body: .bytes(Array((error.message + "\n").utf8)))
    }

    /// Writes the whole body to a temporary file (in `TMPDIR`, else /tmp; unlinked at once), and returns
    /// it rewound with the body's length. The writes block the calling thread briefly (page cache).
    private static func spool(_ body: RequestBody) async throws(HTTPError) -> (Int32, Int) {
        let folder = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array((folder + "/roost-body-XXXXXX").utf8CString)
        let descriptor = mkstemp(&template)
        guard descriptor >= 0 else {
            throw HTTPError(.incomplete, "cannot hold the request body: \(String(cString: strerror(errno)))")
        }
        unlink(template)
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        var length = 0
        do throws(HTTPError) {
            while let chunk = try await body.next() {
                let written = chunk.withUnsafeBytes { buffer in
                    var offset = 0
                    while offset < buffer.count {
                        let count = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                        if count < 0 { if errno == EINTR { continue }; return false }
                        offset += count
                    }
                    return true
                }
                guard written else {
                    throw HTTPError(.incomplete, "cannot hold the request body: \(String(cString: strerror(errno)))")
                }
                length += chunk.count
            }
        } catch {
            close(descriptor)
            body.discard()
            throw error
        }
        lseek(descriptor, 0, SEEK_SET)
        return (descriptor, length)
    }

    private static func logStderr(_ child: ChildProcess, program: String, requestID: String, logger: Logger, loop: EventLoop) {
        guard let stderr = child.stderr else { return }
        Task(executorPreference: loop) {
            var pending: [UInt8] = []
            while let chunk = try? await stderr.read() {
                pending += chunk
                while let newline = pending.firstIndex(of: 10) {
                    logger.warning("\(String(decoding: pending[..<newline], as: UTF8.self))",
                                   metadata: ["request": "\(requestID)", "program": "\(program)"])
                    pending.removeSubrange(...newline)
                }
                if pending.count > 16 * 1024 {
                    logger.warning("\(String(decoding: pending, as: UTF8.self))", metadata: ["request": "\(requestID)", "program": "\(program)"])
                    pending = []
                }
            }
            if !pending.isEmpty {
                logger.warning("\(String(decoding: pending, as: UTF8.self))", metadata: ["request": "\(requestID)", "program": "\(program)"])
            }
            await stderr.close()
        }
    }
}

/// Ends the exchange when the stream that holds it is released.
private final class EndOnRelease: Sendable {
    let exchange: Exchange
    init(_ exchange: Exchange) { self.exchange = exchange }
    deinit {
        let exchange = exchange
        Task(executorPreference: exchange.loop) { await exchange.end() }
    }
}

/// One request's process: its timeout and its end (group killed, pipes closed, child reaped).
private final class Exchange: Sendable {
    let child: ChildProcess
    let loop: EventLoop
    let timedOut = Atomic<Bool>(false)
    private let ended = Atomic<Bool>(false)
    private let failedBody = Mutex<HTTPError?>(nil)
    private let timer: LoopTimer
    private let onEnd: @Sendable () -> Void

    init(child: ChildProcess, loop: EventLoop, onEnd: @escaping @Sendable () -> Void) {
        self.child = child
        self.loop = loop
        self.onEnd = onEnd
        timer = LoopTimer(loop: loop)
    }

    func armTimeout(_ timeout: Duration) {
        let child = child
        let loop = loop
        Task(executorPreference: loop) { [timer] in
            try? await timer.start(after: timeout) { [self] in
                timedOut.store(true, ordering: .releasing)
                // Killing the group ends its output, which wakes whoever reads it; closing the pipe
                // covers a process that left the group with the pipe still open.
                Task(executorPreference: loop) {
                    await child.signalGroup(SIGKILL)
                    await child.stdout?.close()
                }
            }
        }
    }

    /// Why the request body could not be delivered, if it could not.
    var bodyFailure: HTTPError? { failedBody.withLock { $0 } }

    /// The body failed while the program read it: the program is killed, and the response becomes
    /// the failure's (when its head had not come yet).
    func failBody(_ failure: HTTPError) async {
        failedBody.withLock { $0 = failure }
        // Once ended, the group is gone and its id may be another's.
        guard !ended.load(ordering: .acquiring) else { return }
        await child.signalGroup(SIGKILL)
        await child.stdout?.close()
    }

    /// Idempotent.
    func end() async {
        guard !ended.exchange(true, ordering: .acquiringAndReleasing) else { return }
        await timer.close()
        let killed = ProcessTable.now()
        let groupLeft = await child.signalGroup(SIGKILL)
        await child.stdin?.close()
        await child.stdout?.close()
        _ = try? await child.wait()
        // What else the program started in its group was killed too; it is gone when this returns.
        // Nearly always the program was alone and is reaped now: the group is empty (ESRCH), and
        // no scan of /proc is needed.
        if groupLeft, await child.signalGroup(0) {
            await Supervisor.awaitGroupGone(child.pid, killedAt: killed, loop: loop)
        }
        onEnd()
    }
}
