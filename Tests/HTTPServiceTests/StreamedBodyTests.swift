import Core
import Logging
import Synchronization
import Testing
import TestSupport

@testable import HTTPService

#if canImport(Glibc)
import Glibc
#endif

private func streaming() -> HTTPServer.Configuration {
    var configuration = HTTPServer.Configuration()
    configuration.streamsBodies = true
    configuration.lingerTimeout = .milliseconds(500)
    return configuration
}

/// Answers with the number of body bytes the handler read, or the body's failure as its status.
private let counting: HTTPServer.Handler = { request in
    guard let body = request.streamedBody else { return .text(status: 200, "0 \(request.body.count)\n") }
    do throws(HTTPError) {
        var count = 0
        while let chunk = try await body.next() { count += chunk.count }
        return .text(status: 200, "\(count)\n")
    } catch {
        return .text(status: error.status, "\(error.code)\n")
    }
}

/// A handler that runs `script` (sh) as a CGI program on `loop` for every request, with the
/// request body's limit raised to `limit` when given.
private func cgi(_ script: String, on loop: EventLoop, timeout: Duration = .seconds(30), limit: Int? = nil) -> HTTPServer.Handler {
    { request in
        if let limit { request.streamedBody?.limit = limit }
        let program = CGIProgram(arguments: ["/bin/sh", "-c", script], environment: ["PATH": "/usr/bin:/bin"], timeout: timeout)
        let cgi = CGIRequest(request: request, serverName: "t", serverPort: 80, remoteAddress: "", remotePort: 0,
                             serverSoftware: "roost/test")
        guard case .response(let response) = await CGIGateway.run(program, for: cgi, requestID: "test", on: loop,
                                                                     logger: quietLogger) else {
            return .text(status: 500, "redirect\n")
        }
        return response
    }
}

@Suite struct StreamedBodyTests {
    @Test func theHandlerReadsTheBodyWhileItArrives() async throws {
        let (seen, signal) = AsyncStream.makeStream(of: Int.self)
        let handler: HTTPServer.Handler = { request in
            guard let body = request.streamedBody else { return .text(status: 200, "0 \(request.body.count)\n") }
            var count = 0
            do throws(HTTPError) {
                while let chunk = try await body.next() {
                    count += chunk.count
                    signal.yield(count)
                }
            } catch {
                return .text(status: error.status, "\(error)\n")
            }
            return .text(status: 200, "\(count)\n")
        }
        try await withServer(streaming(), handler: handler) { harness in
            let channel = try await harness.connect()
            try await channel.write(bytes("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello"))
            // The second half is sent only once the handler has read the first: a server that
            // waited for the whole body would never answer.
            var iterator = seen.makeAsyncIterator()
            #expect(await iterator.next() == 5)
            try await channel.write(bytes("world"))
            let response = try await readResponse(from: channel)
            #expect(response.status == 200 && text(response.body) == "10\n")
            // Kept alive: the next request on the same connection is answered.
            try await channel.write(bytes("GET /again HTTP/1.1\r\nHost: t\r\n\r\n"))
            let again = try await readResponse(from: channel)
            #expect(again.status == 200 && text(again.body) == "0 0\n")
            await channel.close()
        }
    }

    @Test func pipelinedRequestsWithBodiesAreAnsweredInOrder() async throws {
        try await withServer(streaming(), handler: counting) { harness in
            let responses = try await exchange(
                "POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
                    + "POST /b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n2\r\n12\r\n0\r\n\r\n"
                    + "GET /c HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", with: harness)
            #expect(responses.map(\.status) == [200, 200, 200])
            #expect(responses.map { text($0.body) } == ["3\n", "6\n", "0 0\n"])
        }
    }

    @Test func continueIsSentOnlyWhenTheHandlerReads() async throws {
        let handler: HTTPServer.Handler = { request in
            if request.path == "/refuse" { return .text(status: 404, "no\n") }
            return await counting(request)
        }
        try await withServer(streaming(), handler: handler) { harness in
            // Read: 100 Continue first, then the answer once the body came.
            let channel = try await harness.connect()
            try await channel.write(bytes("PUT /take HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"))
            let interim = try await readResponse(from: channel)
            #expect(interim.status == 100)
            try await channel.write(bytes("data"))
            let final = try await readResponse(from: channel)
            #expect(final.status == 200 && text(final.body) == "4\n")
            await channel.close()

            // Not read: the answer comes without a 100, and the connection closes after it.
            let refused = try await exchange("PUT /refuse HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n",
                                             with: harness)
            #expect(refused.map(\.status) == [404])
            #expect(refused.first?.head.headers["Connection"] == "close")
        }
    }

    @Test func anAnswerBeforeTheBodyEndsClosesTheConnection() async throws {
        let handler: HTTPServer.Handler = { _ in .text(status: 403, "forbidden\n") }
        try await withServer(streaming(), handler: handler) { harness in
            let channel = try await harness.connect()
            try await channel.write(bytes("POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000\r\n\r\n"))
            try await channel.write([UInt8](repeating: 65, count: 100_000))
            let response = try await readResponse(from: channel)
            #expect(response.status == 403)
            #expect(response.head.headers["Connection"] == "close")
            // The server closes (after the linger timeout at the latest) though the body is unfinished.
            var ended = false
            while true {
                guard (try? await channel.read()) != nil else {
                    ended = true
                    break
                }
            }
            #expect(ended)
            await channel.close()
        }
    }

    @Test func aBrokenChunkIs400AndABodyOverTheLimitIs413() async throws {
        let limited: HTTPServer.Handler = { request in
            request.streamedBody?.limit = 8
            return await counting(request)
        }
        try await withServer(streaming(), handler: limited) { harness in
            let broken = try await exchange("POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n", with: harness)
            #expect(broken.map(\.status) == [400])
            let chunked = try await exchange(
                "POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n5\r\nfghij\r\n0\r\n\r\n", with: harness)
            #expect(chunked.map(\.status) == [413])
            let declared = try await exchange("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n\r\n123456789", with: harness)
            #expect(declared.map(\.status) == [413])
            let fits = try await exchange("POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 8\r\nConnection: close\r\n\r\n12345678",
                                          with: harness)
            #expect(fits.map(\.status) == [200] && fits.first.map { text($0.body) } == "8\n")
        }
    }

    @Test func aChunkedBodyReachesACGIProgramWithItsLength() async throws {
        let gatewayLoop = EventLoop(name: "cgi")
        defer { gatewayLoop.shutdown() }
        let handler = cgi(#"printf 'Content-Type: text/plain\n\n%s:' "$CONTENT_LENGTH"; exec cat"#, on: gatewayLoop)
        try await withServer(streaming(), handler: handler) { harness in
            // Not half-closed: a client that closes its side while a streamed answer runs is gone.
            let channel = try await harness.connect()
            try await channel.write(bytes("POST /a HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))
            let response = try await readResponse(from: channel)
            await channel.close()
            #expect(response.status == 200)
            #expect(text(response.body) == "11:hello world")
        }
    }

    /// 64 MiB up to a CGI program and back at once, through the server, checked byte for byte.
    /// (The host's memory while 200 MiB go each way is measured on a live host, in
    /// ComponentsTests: this process runs other tests at the same time.)
    @Test func aLargeBodyGoesThroughACGIProgramBothWaysAtOnce() async throws {
        let total = 64 << 20
        let gatewayLoop = EventLoop(name: "cgi")
        defer { gatewayLoop.shutdown() }
        let handler = cgi("printf 'Content-Type: application/octet-stream\\n\\n'; exec cat", on: gatewayLoop, timeout: .seconds(120), limit: total)
        try await withServer(streaming(), hangLimit: .seconds(120), handler: handler) { harness in
            let channel = try await harness.connect()
            let (status, received, mismatches) = try await echoPattern(over: channel, target: "/echo", total: total)
            await channel.close()
            #expect(status == 200)
            #expect(received == total)
            #expect(mismatches == 0)
        }
    }

    @Test func aFunctionThatTimesOutMidResponseLeavesTheBodyVisiblyIncomplete() async throws {
        let gatewayLoop = EventLoop(name: "cgi")
        defer { gatewayLoop.shutdown() }
        let handler = cgi("printf 'Content-Type: text/plain\\n\\npart'; exec sleep 100077", on: gatewayLoop, timeout: .milliseconds(300))
        try await withServer(streaming(), handler: handler) { harness in
            let channel = try await harness.connect()
            try await channel.write(bytes("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"))
            let data = try await channel.readAll()
            await channel.close()
            // The head and the first chunk came; the connection then closed without the last chunk.
            #expect(text(data).contains("\r\n4\r\npart\r\n"))
            #expect(!text(data).hasSuffix("0\r\n\r\n"))
            #expect(throws: HTTPError.self) { try responses(in: data) }
        }
    }

    @Test func aStreamWithItsLengthIsSentAsItIsAndCutWhenItRunsOver() async throws {
        let handler: HTTPServer.Handler = { request in
            let (stream, feed) = AsyncStream.makeStream(of: [UInt8].self)
            feed.yield(bytes("abc"))
            feed.yield(bytes("def"))
            feed.finish()
            let length = request.path == "/exact" ? "6" : "4"
            return HTTPResponse(status: 200, headers: ["Content-Length": length], body: .stream(stream))
        }
        try await withServer(streaming(), handler: handler) { harness in
            let channel = try await harness.connect()
            try await channel.write(bytes("GET /exact HTTP/1.1\r\nHost: t\r\n\r\n"))
            let exact = try await readResponse(from: channel)
            #expect(exact.head.headers["Content-Length"] == "6" && exact.head.headers["Transfer-Encoding"] == nil)
            #expect(text(exact.body) == "abcdef")
            // Kept alive after an exact length; cut and closed after one that runs over.
            try await channel.write(bytes("GET /short HTTP/1.1\r\nHost: t\r\n\r\n"))
            let short = try await readResponse(from: channel)
            #expect(text(short.body) == "abcd")
            #expect(try await channel.read() == nil)
            await channel.close()
        }
    }
}
