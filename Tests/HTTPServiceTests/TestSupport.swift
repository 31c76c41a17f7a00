import Core
import HTTPService
import Logging
import Registry
import Testing

#if canImport(Glibc)
import Glibc
#endif

struct HangError: Error, CustomStringConvertible {
    let limit: Duration
    var description: String { "not finished after \(limit)" }
}

/// Runs `operation`; if it has not finished within `limit`, records a failure and cancels it, so
/// a broken implementation fails the test instead of hanging the run. A hang guard only: 30 s
/// is far beyond what any of these tests takes.
func withHangGuard<T: Sendable>(_ limit: Duration = .seconds(30), sourceLocation: Testing.SourceLocation = #_sourceLocation,
                                _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await operation() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let result = try await group.next()! else {
            Issue.record("hang: not finished after \(limit)", sourceLocation: sourceLocation)
            throw HangError(limit: limit)
        }
        return result
    }
}

/// A running server on a unix socket in a fresh temporary folder.
struct Harness: Sendable {
    let loop: EventLoop
    let path: String
    let server: HTTPServer

    func connect() async throws -> StreamChannel {
        try await StreamChannel.connect(on: loop, unixPath: path)
    }
}

/// Starts a server with `handler`, runs `body` under a hang guard, then shuts the server and
/// its loop down and removes the folder, whether `body` failed or not.
func withServer(_ configuration: HTTPServer.Configuration = HTTPServer.Configuration(),
                hangLimit: Duration = .seconds(30), sourceLocation: Testing.SourceLocation = #_sourceLocation,
                handler: @escaping HTTPServer.Handler,
                _ body: @escaping @Sendable (Harness) async throws -> Void) async throws {
    var template = Array("/tmp/roost-http-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw HangError(limit: .zero) }
    let folder = String(cString: made)
    let loop = EventLoop(name: "http-test")
    var failure: (any Error)?
    do {
        let listener = try await StreamListener.unix(on: loop, path: folder + "/http.sock")
        let server = HTTPServer(listener: listener, configuration: configuration, handler: handler)
        let running = Task { await server.run() }
        let harness = Harness(loop: loop, path: folder + "/http.sock", server: server)
        do {
            try await withHangGuard(hangLimit, sourceLocation: sourceLocation) { try await body(harness) }
        } catch {
            failure = error
        }
        _ = try? await withHangGuard(sourceLocation: sourceLocation) {
            await server.shutdown(gracePeriod: .seconds(5))
            await running.value
        }
    } catch {
        failure = error
    }
    await loop.shutdownGracefully()
    unlink(folder + "/http.sock")
    rmdir(folder)
    if let failure { throw failure }
}

func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

/// A response's whole body, its stream read to the end.
func wholeBody(of response: HTTPResponse) async -> [UInt8] {
    switch response.body {
    case .bytes(let bytes): return bytes
    case .stream(let stream):
        var all: [UInt8] = []
        for await chunk in stream { all += chunk }
        return all
    }
}
func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

/// A response as read off the wire.
struct RawResponse: Sendable {
    let head: HTTPResponseHead
    var body: [UInt8]
    var status: Int { head.status }
}

/// Splits the bytes of whole responses (the last one may run to the end) into responses.
func responses(in data: [UInt8]) throws -> [RawResponse] {
    let parser = HTTPMessageParser(kind: .response)
    parser.append(data)
    var out: [RawResponse] = []
    var current: RawResponse?
    func take(_ parts: [HTTPMessageParser.Part]) {
        for part in parts {
            switch part {
            case .responseHead(let head): current = RawResponse(head: head, body: [])
            case .body(let chunk): current?.body += chunk
            case .end: out.append(current!)
            case .requestHead: break
            }
        }
    }
    while true {
        let parts = try parser.next()
        if parts.isEmpty { break }
        take(parts)
    }
    take(try parser.finish())
    return out
}

/// Writes `request` in one write, half-closes, and reads until the server closes.
func exchange(_ request: String, with harness: Harness) async throws -> [RawResponse] {
    let channel = try await harness.connect()
    try await channel.write(bytes(request))
    try await channel.shutdownWrite()
    let data = try await channel.readAll()
    await channel.close()
    return try responses(in: data)
}

/// Reads one response from `channel`, leaving the connection open.
func readResponse(from channel: StreamChannel) async throws -> RawResponse {
    let parser = HTTPMessageParser(kind: .response)
    var current: RawResponse?
    while true {
        for part in try parser.next() {
            switch part {
            case .responseHead(let head): current = RawResponse(head: head, body: [])
            case .body(let chunk): current?.body += chunk
            case .end: return current!
            case .requestHead: break
            }
        }
        guard let data = try await channel.read() else {
            throw HTTPError(.incomplete, "closed before the response ended")
        }
        parser.append(data)
    }
}

/// What handlers saw, for tests to check afterwards.
actor Recorder {
    private(set) var requests: [HTTPRequest] = []
    func record(_ request: HTTPRequest) { requests.append(request) }
}

/// A stream a test feeds by hand, and a signal that its consumer has terminated it.
struct ControlledStream: Sendable {
    let stream: AsyncStream<[UInt8]>
    let feed: AsyncStream<[UInt8]>.Continuation
    let terminated: AsyncStream<Void>

    init() {
        (stream, feed) = AsyncStream.makeStream(of: [UInt8].self)
        let (terminated, signal) = AsyncStream.makeStream(of: Void.self)
        self.terminated = terminated
        feed.onTermination = { _ in
            signal.yield()
            signal.finish()
        }
    }

    /// Returns once the stream has been terminated (by its consumer, or by `finish`).
    func waitForTermination() async {
        for await _ in terminated { return }
    }
}

/// Reads from a body stream until `count` bytes have come.
func read(_ count: Int, from body: inout AsyncThrowingStream<[UInt8], Error>.AsyncIterator) async throws -> [UInt8] {
    var out: [UInt8] = []
    while out.count < count {
        guard let chunk = try await body.next() else { break }
        out += chunk
    }
    return out
}

/// A request for a parameterized test, shown by its name rather than its (long) text.
struct RequestCase: Sendable, CustomTestStringConvertible {
    let name: String
    let request: String
    var status = 400
    var testDescription: String { name }
}

/// A logger that says only what is critical: the tests check outcomes, not log lines.
let quietLogger: Logger = {
    var logger = Logger(label: "http-test")
    logger.logLevel = .critical
    return logger
}()

/// A function runner on `loop`, logging quietly.
func testRunner(_ loop: EventLoop) -> FunctionRunner {
    FunctionRunner(loop: loop, logger: quietLogger, software: "roost/test")
}

/// A router on `loop` with its own runner, logging quietly.
func testRouter(_ loop: EventLoop) -> SiteRouter {
    SiteRouter(runner: testRunner(loop), logger: quietLogger)
}

/// The site of a registry file's text (relative paths against `root`); the test fails when the
/// site has problems.
func site(fromYAML yaml: String, root: String?, sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> Site {
    let file = RegistryFile.parse(yaml, path: "site.yaml")
    try #require(file.errors.isEmpty, "\(file.errors)", sourceLocation: sourceLocation)
    let (site, problems) = Site.build(from: Dictionary(uniqueKeysWithValues: file.entries.map { ($0.id, $0) }), registryRoot: root)
    try #require(problems.isEmpty, "\(problems)", sourceLocation: sourceLocation)
    return site
}

/// The one entry `data` declares, named `name` of kind `kind` in namespace `app` (a parse error fails the test).
func declaredEntry(_ name: String, kind: String, _ data: String) -> Entry {
    let file = RegistryFile.parse("namespace: app\nentries:\n  - name: \(name)\n    kind: \(kind)\n" + data, path: "\(name).yaml")
    #expect(file.errors.isEmpty, "\(file.errors)")
    return file.entries[0]
}
