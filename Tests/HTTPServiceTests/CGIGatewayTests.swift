import Core
import Logging
import Testing

@testable import HTTPService

#if canImport(Glibc)
import Glibc
#endif

private func cgiRequest(_ target: String, method: String = "GET", body: [UInt8] = [], headers: HTTPHeaders = ["Host": "test.local"]) -> CGIRequest {
    CGIRequest(request: HTTPRequest(method: method, target: target, headers: headers, body: body), serverName: "127.0.0.1",
               serverPort: 8080, remoteAddress: "127.0.0.1", remotePort: 40000, serverSoftware: "roost/test")
}

private func shell(_ script: String, timeout: Duration = .seconds(30)) -> CGIProgram {
    CGIProgram(arguments: ["/bin/sh", "-c", script], environment: ["PATH": "/usr/bin:/bin"], timeout: timeout)
}

/// The response and its whole body.
private func collect(_ outcome: CGIGateway.Outcome) async -> (status: Int, headers: HTTPHeaders, body: [UInt8])? {
    guard case .response(let response) = outcome else { return nil }
    return (response.status, response.headers, await wholeBody(of: response))
}

/// The processes whose environment carries `CGI_TEST_MARK=marker` (the test's own, so parallel
/// tests never collide).
private func processesMarked(_ marker: String) -> [Int32] {
    guard let directory = opendir("/proc") else { return [] }
    defer { closedir(directory) }
    var found: [Int32] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard let pid = Int32(name), let file = fopen("/proc/\(pid)/environ", "r") else { continue }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n <= 0 { break }
            bytes += buffer[..<n]
        }
        fclose(file)
        if bytes.split(separator: 0).contains(where: { $0.elementsEqual("CGI_TEST_MARK=\(marker)".utf8) }) { found.append(pid) }
    }
    return found
}

private func readSomeThenDrop(_ outcome: CGIGateway.Outcome) async -> Int {
    guard case .response(let response) = outcome, case .stream(let stream) = response.body else { return 0 }
    var seen = 0
    for await chunk in stream {
        seen += chunk.count
        if seen > 100_000 { break }
    }
    return seen
}

@Suite struct CGIGatewayTests {
    @Test func aScriptSeesItsVariablesAndItsResponseIsParsed() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        try await withHangGuard {
            let script = #"printf 'Status: 201 Made\r\nContent-Type: text/plain\r\nX-Q: %s\r\n\r\n' "$QUERY_STRING"; echo "$REQUEST_METHOD $SCRIPT_NAME $SERVER_NAME""#
            let outcome = await CGIGateway.run(shell(script), for: cgiRequest("/hi?a=1"), requestID: "r1", on: loop, logger: quietLogger)
            let response = try #require(await collect(outcome))
            #expect(response.status == 201)
            #expect(response.headers["X-Q"] == "a=1" && response.headers["Content-Type"] == "text/plain")
            #expect(String(decoding: response.body, as: UTF8.self) == "GET /hi test.local\n")
        }
    }

    @Test func aLargeBodyGoesInAndComesBackWhileBothFlow() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        try await withHangGuard {
            // 8 MiB: far over the pipes' buffers, so writing all before reading would deadlock.
            var body = [UInt8](repeating: 0, count: 8 << 20)
            body.withUnsafeMutableBytes { raw in for i in 0..<raw.count { raw[i] = UInt8(truncatingIfNeeded: i &* 31 &+ i >> 9) } }
            let outcome = await CGIGateway.run(shell("printf 'Content-Type: application/octet-stream\\n\\n'; exec cat"),
                                               for: cgiRequest("/echo", method: "POST", body: body), requestID: "r2", on: loop, logger: quietLogger)
            let response = try #require(await collect(outcome))
            #expect(response.status == 200)
            #expect(response.body.count == body.count)
            #expect(response.body == body)
        }
    }

    @Test func noHeadInTimeIs504AndNothingIsLeft() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let marker = "timeout-\(getpid())"
        try await withHangGuard {
            var program = shell("sleep 1000 & sleep 1000; wait", timeout: .milliseconds(200))
            program.environment["CGI_TEST_MARK"] = marker
            let started = ContinuousClock.now
            let response = try #require(await collect(await CGIGateway.run(program, for: cgiRequest("/slow"), requestID: "r3", on: loop, logger: quietLogger)))
            #expect(response.status == 504)
            #expect(ContinuousClock.now - started < .seconds(10))
            #expect(processesMarked(marker).isEmpty)
        }
    }

    @Test(arguments: ["exit 3", "echo 'not a header'", "printf 'Content-Type: text/plain\\n'; exit 0"])
    func endingOrGarbageBeforeAValidHeadIs502(_ script: String) async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        try await withHangGuard {
            let response = try #require(await collect(await CGIGateway.run(shell(script), for: cgiRequest("/x"), requestID: "r4", on: loop, logger: quietLogger)))
            #expect(response.status == 502)
        }
        let missing = CGIProgram(arguments: ["/nonexistent/program"])
        let response = try #require(await collect(await CGIGateway.run(missing, for: cgiRequest("/x"), requestID: "r5", on: loop, logger: quietLogger)))
        #expect(response.status == 502)
    }

    /// A declared `Content-Length` the first read completes: the body is handed over whole (the
    /// server writes head and body at once). One the output has not reached yet with its head
    /// (200,000 bytes: more than a pipe holds) frames the stream instead of chunks.
    @Test func aDeclaredLengthIsAnsweredWholeWhenCompleteElseItFramesTheStream() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        try await withHangGuard {
            // printf writes once, under PIPE_BUF: the first read takes all of it.
            let whole = await CGIGateway.run(shell("printf 'Content-Type: text/plain\\r\\nContent-Length: 6\\r\\n\\r\\nhello\\n'"),
                                             for: cgiRequest("/whole"), requestID: "r7", on: loop, logger: quietLogger)
            guard case .response(let response) = whole, case .bytes(let body) = response.body else {
                Issue.record("not a whole body: \(whole)")
                return
            }
            #expect(text(body) == "hello\n")
            #expect(response.headers["Content-Type"] == "text/plain" && response.headers["Content-Length"] == nil)

            let streamed = await CGIGateway.run(shell("printf 'Content-Length: 200000\\r\\n\\r\\n'; head -c 200000 /dev/zero"),
                                                for: cgiRequest("/long"), requestID: "r8", on: loop, logger: quietLogger)
            guard case .response(let long) = streamed, case .stream = long.body else {
                Issue.record("not a stream: \(streamed)")
                return
            }
            #expect(long.headers["Content-Length"] == "200000")
            #expect(await wholeBody(of: long).count == 200_000)
        }
    }

    /// On the wire: the program's length frames the response (no chunks), and the connection
    /// serves the next request.
    @Test func aProgramsDeclaredLengthFramesTheResponseOnTheWire() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let program = shell("printf 'Content-Type: text/plain\\r\\nContent-Length: 3\\r\\n\\r\\nabc'")
        try await withServer(handler: { request in
            guard case .response(let response) = await CGIGateway.run(program, for: cgiRequest(request.target), requestID: "r9",
                                                                        on: loop, logger: quietLogger) else {
                return .text(status: 500, "not a response\n")
            }
            return response
        }) { harness in
            let channel = try await harness.connect()
            for _ in 0..<2 {
                try await channel.write(bytes("GET /x HTTP/1.1\r\nHost: t\r\n\r\n"))
                let response = try await readResponse(from: channel)
                #expect(response.status == 200)
                #expect(response.head.headers["Content-Length"] == "3" && response.head.headers["Transfer-Encoding"] == nil)
                #expect(text(response.body) == "abc")
            }
            await channel.close()
        }
    }

    @Test func aClientThatStopsReadingEndsTheProgram() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let marker = "gone-\(getpid())"
        try await withHangGuard {
            var program = shell("printf 'Content-Type: text/plain\\n\\n'; exec yes")
            program.environment["CGI_TEST_MARK"] = marker
            // Read a little, then drop the stream as a server does when its client goes away
            // (no reference to it is left once this call returns).
            let seen = await readSomeThenDrop(await CGIGateway.run(program, for: cgiRequest("/endless"), requestID: "r6", on: loop, logger: quietLogger))
            #expect(seen > 100_000)
            // The end is asynchronous: wait for the process to be gone.
            while !processesMarked(marker).isEmpty { try await loop.sleep(for: .milliseconds(10)) }
        }
    }
}
