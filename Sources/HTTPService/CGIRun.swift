import Core
import DequeModule
import Logging
import Supervisor

#if canImport(Glibc)
import Glibc
#endif

/// One request's CGI program, seen through from its start to its end by the events of its
/// `BriefChild`, on the loop thread: its output parsed into the response's head, its body
/// handed to the server (whole when it is all there, else as a stream pulled by the server), its
/// stderr logged line by line with the request id, its timeout, and its end (group killed, output
/// closed, process reaped, `onEnd`).
///
/// - A response whose body is complete when its head is (the program declared a `Content-Length`
///   and wrote it all) goes out at once as bytes; the process is still seen to its end after.
///   A declared length the body has not reached yet frames the stream instead of chunks; the
///   server closes the connection if the program writes less or more than it declared.
/// - A streamed body is read ahead by at most `readAhead` bytes: beyond that the program's output
///   is not read until the client has taken some (the pipe fills and the program waits).
/// - The end comes with the output's end, the timeout, a failed request body, an invalid head, or
///   the client going away; it kills the group and closes the output. `onEnd` runs once the
///   process is reaped and its group is empty.
final class CGIRun: @unchecked Sendable {
    // @unchecked Sendable: everything below is touched on the loop thread only (`onLoop`).

    static let readAhead = 64 * 1024

    private enum Phase {
        /// Until the CGI head is complete.
        case head
        /// A JSON answer, read to its end.
        case json
        /// The body goes out as a stream.
        case streaming
        /// The whole body went out with the head; more output is dropped.
        case answered
    }

    let program: CGIProgram
    let requestID: String
    let logger: Logger
    let loop: EventLoop
    private let onEnd: @Sendable () -> Void
    private var child: BriefChild?

    private var phase = Phase.head
    private var parser = CGIResponseParser()
    /// With `jsonAnswers`: until the first byte that is not white space tells JSON from CGI.
    private var deciding: Bool
    private var early: [UInt8] = []
    private var answer: [UInt8] = []
    private var resolved = false
    /// The outcome until the handler takes it (not kept after: a streamed body's stream refers to
    /// this run, and must be free to go when the server drops it).
    private var result: CGIGateway.Outcome?
    /// An outcome that ends the exchange (an error, a redirect, a JSON answer): handed over once
    /// the process is gone and its place given back (`onEnd`), so a redirect to the same function
    /// finds its place free.
    private var concluded: CGIGateway.Outcome?
    /// Why the head was not valid CGI: logged once the exit status is known.
    private var invalidReason: String?
    private var resultWaiter: CheckedContinuation<CGIGateway.Outcome, Never>?

    private var chunks = Deque<[UInt8]>()
    private var buffered = 0
    private var chunkWaiter: CheckedContinuation<[UInt8]?, Never>?
    private var consumerGone = false
    private let truncation = HTTPResponse.Truncation()

    private var outputEnded = false
    private var timedOut = false
    private var bodyFailure: HTTPError?
    private var exited = false
    private var exitStatus: TerminationStatus?
    private var ending = false
    /// The end was asked for before the child was known.
    private var endWanted = false
    private var finished = false
    private var killedAt: UInt64 = 0
    private var diagnostics: [UInt8] = []

    init(program: CGIProgram, requestID: String, logger: Logger, loop: EventLoop, onEnd: @escaping @Sendable () -> Void) {
        self.program = program
        self.requestID = requestID
        self.logger = logger
        self.loop = loop
        self.onEnd = onEnd
        deciding = program.jsonAnswers
    }

    /// Runs `body` on the loop thread: now when already there. Once the loop has stopped its
    /// thread is gone, and `body` runs here (nothing else touches this run then), so no waiter is
    /// left without its answer.
    func onLoop(_ body: @escaping @Sendable () -> Void) {
        if loop.inLoop {
            body()
        } else if !loop.execute(body) {
            body()
        }
    }

    // MARK: The handler's side

    /// The response (or local redirect) once the program's head is known.
    func outcome() async -> CGIGateway.Outcome {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<CGIGateway.Outcome, Never>) in
                onLoop { [self] in
                    if let result {
                        self.result = nil
                        continuation.resume(returning: result)
                    } else {
                        resultWaiter = continuation
                    }
                }
            }
        } onCancel: {
            // The client went away, or the server is stopping: nobody wants the answer.
            onLoop { [self] in
                resolve(.response(.text(status: 502, "bad gateway\n")))
                end()
            }
        }
    }

    private func resolve(_ outcome: CGIGateway.Outcome) {
        guard !resolved else { return }
        resolved = true
        if let waiter = resultWaiter {
            resultWaiter = nil
            waiter.resume(returning: outcome)
        } else {
            result = outcome
        }
    }

    /// The next piece of a streamed body; nil at its end.
    private func next() async -> [UInt8]? {
        await withCheckedContinuation { (continuation: CheckedContinuation<[UInt8]?, Never>) in
            onLoop { [self] in take(continuation) }
        }
    }

    private func take(_ continuation: CheckedContinuation<[UInt8]?, Never>) {
        if let chunk = chunks.popFirst() {
            buffered -= chunk.count
            if buffered < Self.readAhead { child?.resumeOutput() }
            continuation.resume(returning: chunk)
            return
        }
        guard outputEnded else {
            chunkWaiter = continuation
            return
        }
        if timedOut {
            truncation.mark()
            logger.warning("\(program.arguments[0]) did not finish its response within \(program.timeout)",
                           metadata: ["request": "\(requestID)"])
        } else if bodyFailure != nil {
            truncation.mark()  // killed because its request body failed
        }
        end()
        continuation.resume(returning: nil)
    }

    /// The server dropped the stream (the client went away, or the server stopped).
    private func dropConsumer() {
        consumerGone = true
        chunks.removeAll()
        buffered = 0
        if let waiter = chunkWaiter {
            chunkWaiter = nil
            waiter.resume(returning: nil)
        }
        end()
    }

    /// The request body failed while the program read it: the program is killed, and the response
    /// becomes the failure's (when its head had not come yet).
    func failBody(_ failure: HTTPError) {
        guard !ending else { return }
        bodyFailure = failure
        end()
    }

    // MARK: The program's side

    /// The child, as soon as it is known (its first event may come before `start` returns).
    func adopt(_ child: BriefChild) {
        guard self.child == nil else { return }
        self.child = child
        if endWanted { end() }
    }

    func handle(_ event: BriefChild.Event, of child: BriefChild) {
        adopt(child)
        switch event {
        case .output(let bytes):
            received(bytes)
        case .outputEnd:
            outputFinished()
            end()
        case .diagnostics(let bytes):
            diagnostics.append(contentsOf: bytes)
            logDiagnostics(final: false)
        case .diagnosticsEnd:
            logDiagnostics(final: true)
        case .exited(let status):
            exited = true
            exitStatus = status
            settle()
        case .timedOut:
            timedOut = true
            if phase == .head {
                logger.warning("\(program.arguments[0]) gave no response within \(program.timeout)", metadata: ["request": "\(requestID)"])
            }
            end()
        }
    }

    private func received(_ bytes: UnsafeRawBufferPointer) {
        switch phase {
        case .head:
            if deciding {
                early.append(contentsOf: bytes)
                guard let first = early.first(where: { ![9, 10, 13, 32].contains($0) }) else { return }
                deciding = false
                if first == UInt8(ascii: "{") {
                    phase = .json
                    answer = early
                    early = []
                    if answer.count > CGIGateway.jsonAnswerLimit { answerTooLarge() }
                    return
                }
                let taken = early
                early = []
                apply(parser.feed(taken))
            } else {
                apply(parser.feed(Array(bytes)))
            }
        case .json:
            answer.append(contentsOf: bytes)
            if answer.count > CGIGateway.jsonAnswerLimit { answerTooLarge() }
        case .streaming:
            guard !consumerGone else { return }
            chunks.append(Array(bytes))
            buffered += bytes.count
            if buffered >= Self.readAhead { child?.pauseOutput() }
            if let waiter = chunkWaiter {
                chunkWaiter = nil
                take(waiter)
            }
        case .answered:
            break
        }
    }

    private func apply(_ parsed: CGIResponseParser.Outcome) {
        switch parsed {
        case .needMore:
            return
        case .invalid(let reason):
            invalidReason = reason
            conclude(.response(.text(status: 502, "bad gateway: the function's response was not valid CGI\n")))
        case .localRedirect(let path):
            conclude(.localRedirect(path: path))
        case .response(let status, let reason, var headers, let first, let length):
            if let length, first.count >= length {
                // All of it is here: it goes out with the head, and the program is seen to its end.
                phase = .answered
                resolve(.response(HTTPResponse(status: status, reason: reason, headers: headers,
                                               body: .bytes(first.count == length ? first : Array(first.prefix(length))))))
                return
            }
            phase = .streaming
            if let length { headers.replace("Content-Length", with: String(length)) }
            if !first.isEmpty {
                chunks.append(first)
                buffered = first.count
            }
            // The server drops the stream when its client goes away: the process ends with it.
            let owner = DropOnRelease(self)
            let stream = AsyncStream<[UInt8]>(unfolding: { [self] in
                withExtendedLifetime(owner) {}
                return await next()
            }, onCancel: { [self] in
                onLoop { [self] in dropConsumer() }
            })
            var response = HTTPResponse(status: status, reason: reason, headers: headers, body: .stream(stream))
            response.truncation = truncation
            resolve(.response(response))
        }
    }

    private func answerTooLarge() {
        logger.error("\(program.arguments[0]): JSON answer over \(CGIGateway.jsonAnswerLimit) bytes", metadata: ["request": "\(requestID)"])
        conclude(.response(.text(status: 502, "bad gateway: the function's answer was too large\n")))
    }

    /// The exchange ends with `outcome` (unless one was already given): handed over in `complete`.
    private func conclude(_ outcome: CGIGateway.Outcome) {
        if !resolved && concluded == nil { concluded = outcome }
        end()
    }

    /// The output is over (its end, or the end of the exchange): what the head phase has is the answer.
    private func outputFinished() {
        guard !outputEnded else { return }
        outputEnded = true
        // An answer already given (or on its way) needs nothing more from the output.
        if (phase == .head || phase == .json) && (resolved || concluded != nil) { return }
        switch phase {
        case .head:
            if let bodyFailure { return conclude(.response(CGIGateway.failure(bodyFailure))) }
            if timedOut { return conclude(.response(.text(status: 504, "gateway timeout\n"))) }
            if deciding {
                deciding = false
                _ = parser.feed(early)
                early = []
            }
            apply(parser.finish())
            if !resolved && concluded == nil {
                conclude(.response(.text(status: 502, "bad gateway: the function's response was not valid CGI\n")))
            }
        case .json:
            if let bodyFailure { return conclude(.response(CGIGateway.failure(bodyFailure))) }
            if timedOut {
                logger.warning("\(program.arguments[0]) did not finish its answer within \(program.timeout)", metadata: ["request": "\(requestID)"])
                return conclude(.response(.text(status: 504, "gateway timeout\n")))
            }
            do {
                conclude(.response(try JSONEnvelope.response(from: answer)))
            } catch {
                logger.error("\(program.arguments[0]): invalid JSON answer: \(error)", metadata: ["request": "\(requestID)"])
                conclude(.response(.text(status: 502, "bad gateway: the function's answer was not a valid JSON response\n")))
            }
        case .streaming:
            if let waiter = chunkWaiter {
                chunkWaiter = nil
                take(waiter)
            }
        case .answered:
            break
        }
    }

    /// Idempotent: the group is killed, stdin and stdout closed; `settle` finishes once the
    /// process is reaped.
    private func end() {
        guard !ending else { return }
        guard let child else {
            endWanted = true
            return
        }
        ending = true
        // A stream cut here (the client went, or the request was cancelled) must not look complete.
        if phase == .streaming && !outputEnded { truncation.mark() }
        killedAt = ProcessTable.now()
        child.signalGroup(SIGKILL)
        child.cancelTimeout()
        child.stdin?.assumeIsolated { $0.close() }
        child.closeOutput()
        outputFinished()
        settle()
    }

    /// Once ended and reaped: waits for the rest of the group (rarely anyone: the kill above found
    /// it empty), then logs the last of stderr and lets the function's place go.
    private func settle() {
        guard ending, exited, !finished, let child else { return }
        finished = true
        // What else the program started in its group was killed too; it is gone before `onEnd`.
        // Nearly always the program was alone and is reaped now: the group is empty (ESRCH), and
        // no scan of /proc is needed.
        if exitStatus != nil, child.signalGroup(0) {
            let pid = child.pid
            let killedAt = killedAt
            Task(executorPreference: loop) { [self] in
                await Supervisor.awaitGroupGone(pid, killedAt: killedAt, loop: loop)
                onLoop { [self] in complete() }
            }
        } else {
            complete()
        }
    }

    private func complete() {
        child?.closeDiagnostics()
        logDiagnostics(final: true)
        if let invalidReason {
            logger.error("\(program.arguments[0]): invalid CGI response: \(invalidReason)\(exitStatus.map { " (\($0))" } ?? "")",
                         metadata: ["request": "\(requestID)"])
        }
        onEnd()
        if let concluded {
            self.concluded = nil
            resolve(concluded)
        }
    }

    private func logDiagnostics(final: Bool) {
        while let newline = diagnostics.firstIndex(of: 10) {
            logger.warning("\(String(decoding: diagnostics[..<newline], as: UTF8.self))",
                           metadata: ["request": "\(requestID)", "program": "\(program.arguments[0])"])
            diagnostics.removeSubrange(...newline)
        }
        if !diagnostics.isEmpty && (final || diagnostics.count > 16 * 1024) {
            logger.warning("\(String(decoding: diagnostics, as: UTF8.self))",
                           metadata: ["request": "\(requestID)", "program": "\(program.arguments[0])"])
            diagnostics = []
        }
    }

    /// Drops the stream's consumer when the stream that holds it is released.
    private final class DropOnRelease: Sendable {
        let run: CGIRun
        init(_ run: CGIRun) { self.run = run }
        deinit {
            let run = run
            run.onLoop { run.dropConsumer() }
        }
    }
}
