import Core
import Logging
import Registry
import Synchronization

/// Runs `swiftlet.function`s: the one path by which the HTTP router and `roost call` (and any
/// other component) start a function.
///
/// - A function's `concurrency` and `queue` limit its runs under way (`FunctionGate`, kept per
///   function across versions); beyond them the answer is 503 with `Retry-After: 1`. The gate is
///   held until the function's process is gone. A request body still coming must come within the
///   function's timeout (else 408), so a slow client cannot hold a place of the gate for ever.
/// - `protocol: cgi` goes through `CGIGateway` with the request as it comes (a streamed body
///   flows to stdin). `protocol: json` reads the whole body first (within the limit the caller
///   set on it) and sends `JSONEnvelope.request` instead; the answer may be CGI or JSON.
/// - `call` runs a function by id with a JSON body, as `roost call` does: a `POST /` whose body is
///   the JSON, from the functions of the current registry version (`replace`).
public final class FunctionRunner: Sendable {
    /// Where a function runs for one request.
    public struct Call: Sendable {
        public var request: HTTPRequest
        public var parameters: [String: String] = [:]
        /// What the endpoint's `*` matched, if it has one.
        public var rest: String?
        public var serverName: String
        public var serverPort: Int
        public var requestID: String
        /// The endpoint's timeout, when it has its own.
        public var timeout: Duration?

        public init(request: HTTPRequest, parameters: [String: String] = [:], rest: String? = nil, serverName: String,
                    serverPort: Int, requestID: String, timeout: Duration? = nil) {
            self.request = request
            self.parameters = parameters
            self.rest = rest
            self.serverName = serverName
            self.serverPort = serverPort
            self.requestID = requestID
            self.timeout = timeout
        }
    }

    private let gates = Mutex<[EntryID: FunctionGate]>([:])
    private let functions = Mutex<[EntryID: FunctionDefinition]>([:])
    private let loop: EventLoop
    private let logger: Logger
    private let software: String

    public init(loop: EventLoop, logger: Logger, software: String) {
        self.loop = loop
        self.logger = logger
        self.software = software
    }

    /// The functions `call` finds: those of the current registry version.
    public func replace(_ functions: [EntryID: FunctionDefinition]) {
        self.functions.withLock { $0 = functions }
    }

    public func function(_ id: EntryID) -> FunctionDefinition? {
        functions.withLock { $0[id] }
    }

    /// Runs `function` for `call` once its gate lets it; see the type's contract.
    public func run(_ function: FunctionDefinition, _ call: Call) async -> CGIGateway.Outcome {
        var program = function.program
        if let timeout = call.timeout { program.timeout = timeout }
        var request = call.request
        let gate = gates.withLock { gates in
            if let gate = gates[function.id] { return gate }
            let gate = FunctionGate()
            gates[function.id] = gate
            return gate
        }
        guard await gate.enter(concurrency: function.concurrency, queue: function.queue) else {
            request.streamedBody?.discard()
            return .response(HTTPResponse(status: 503, headers: ["Retry-After": "1"], body: .bytes(Array("busy: try again\n".utf8))))
        }
        // A body that is still coming must come within the function's timeout, whether the
        // program reads it or it is gathered first (a chunked body spooled, a JSON envelope).
        let deadline = request.streamedBody.map { BodyDeadline($0, after: program.timeout, on: loop) }
        let onEnd: @Sendable () -> Void = {
            deadline?.cancel()
            gate.leave()
        }
        if function.wireProtocol == .json {
            var body = request.body
            if let streamed = request.streamedBody {
                do {
                    body = try await streamed.collect()
                } catch {
                    onEnd()
                    return .response(HTTPResponse(status: error.status, headers: ["Connection": "close"],
                                                  body: .bytes(Array((error.message + "\n").utf8))))
                }
            }
            let envelope = JSONEnvelope.request(request, body: body, parameters: call.parameters)
            request.streamedBody = nil
            request.body = envelope
            request.headers.remove("Transfer-Encoding")
            request.headers.replace("Content-Type", with: "application/json")
            request.headers.replace("Content-Length", with: String(envelope.count))
            program.jsonAnswers = true
        }
        let cgi = CGIRequest(request: request, parameters: call.parameters, rest: call.rest, serverName: call.serverName,
                             serverPort: call.serverPort, remoteAddress: request.remoteAddress?.host ?? "",
                             remotePort: request.remoteAddress?.port ?? 0, serverSoftware: software)
        return await CGIGateway.run(program, for: cgi, requestID: call.requestID, on: loop, logger: logger, onEnd: onEnd)
    }

    /// Runs the function `id` with `body` as a JSON request body; nil when there is no such function.
    public func call(_ id: EntryID, body: JSON?, requestID: String) async -> HTTPResponse? {
        guard let function = function(id) else { return nil }
        let bytes = body.map { Array($0.encoded().utf8) } ?? []
        var headers: HTTPHeaders = ["Host": "localhost", "X-Request-Id": requestID, "Content-Length": String(bytes.count)]
        if body != nil { headers.add("Content-Type", "application/json") }
        let request = HTTPRequest(method: "POST", target: "/", headers: headers, body: bytes)
        switch await run(function, Call(request: request, serverName: "localhost", serverPort: 0, requestID: requestID)) {
        case .response(let response):
            return response
        case .localRedirect(let path):
            return .text(status: 502, "the function answered with a local redirect to \(path), which a call does not follow\n")
        }
    }
}

/// Gives up on a request body that has not come within `after` (408); `cancel` once it is not
/// needed.
final class BodyDeadline: Sendable {
    private let timer: LoopTimer

    init(_ body: RequestBody, after timeout: Duration, on loop: EventLoop) {
        timer = LoopTimer(loop: loop)
        let timer = timer
        Task(executorPreference: loop) {
            try? await timer.start(after: timeout) {
                if !body.isComplete { body.abandon(HTTPError(.timeout, "the request body did not come within \(timeout)")) }
            }
        }
    }

    func cancel() {
        let timer = timer
        Task(executorPreference: timer.loop) { await timer.close() }
    }
}
