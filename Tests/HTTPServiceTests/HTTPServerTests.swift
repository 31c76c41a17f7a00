import Core
import HTTPService
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Answers with what it received: `METHOD target body`.
private let echo: HTTPServer.Handler = { request in
    .text("\(request.method) \(request.target) \(text(request.body))")
}

private func get(_ target: String, headers: HTTPHeaders = [:]) -> HTTPRequest {
    HTTPRequest(method: "GET", target: target, headers: headers)
}

@Suite struct HTTPServerTests {
    @Test func pipelinedRequestsInOneWriteAreAnsweredInOrder() async throws {
        try await withServer(handler: echo) { harness in
            let answers = try await exchange("""
                GET /one HTTP/1.1\r
                Host: x\r
                \r
                POST /two HTTP/1.1\r
                Host: x\r
                Content-Length: 3\r
                \r
                abcPUT /three HTTP/1.1\r
                Host: x\r
                Connection: close\r
                Content-Length: 0\r
                \r

                """, with: harness)
            #expect(answers.map { text($0.body) } == ["GET /one ", "POST /two abc", "PUT /three "])
            #expect(answers.map(\.status) == [200, 200, 200])
            #expect(answers.allSatisfy { $0.head.headers["Date"]?.hasSuffix(" GMT") == true })
            #expect(answers.allSatisfy { $0.head.headers["Server"] == "roost/\(RoostVersion.string)" })
            #expect(answers[0].head.headers["Content-Length"] == "9")
            #expect(answers[2].head.headers["Connection"] == "close")
        }
    }

    @Test func chunkedRequestWrittenByteByByteIsAnswered() async throws {
        // Ninety writes, each an await: on a loaded test runner they can outlast the 10 s a head
        // normally gets, which is not what this test is about.
        var configuration = HTTPServer.Configuration()
        configuration.headerTimeout = .seconds(120)
        try await withServer(configuration, handler: echo) { harness in
            let channel = try await harness.connect()
            let request = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                + "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            for byte in bytes(request) { try await channel.write([byte]) }
            let answer = try await readResponse(from: channel)
            #expect(text(answer.body) == "POST /up hello world")
            #expect(answer.head.keepAlive)
            await channel.close()
        }
    }

    @Test func keepAliveCarriesTwoRequestsOnOneConnection() async throws {
        let recorder = Recorder()
        try await withServer(handler: { request in
            await recorder.record(request)
            return .json(#"{"n":\#(await recorder.requests.count)}"#)
        }) { harness in
            let channel = try await harness.connect()
            let first = try await HTTPClient.send(get("/a"), over: channel)
            let second = try await HTTPClient.send(
                HTTPRequest(method: "POST", target: "/b", body: bytes("{}")), over: channel)
            #expect(text(first.bodyBytes) == #"{"n":1}"#)
            #expect(text(second.bodyBytes) == #"{"n":2}"#)
            #expect(second.headers["content-type"] == "application/json")
            #expect(await harness.server.connectionCount == 1)
            #expect(await recorder.requests.map(\.target) == ["/a", "/b"])
            #expect(await recorder.requests.last?.body == bytes("{}"))
            await channel.close()
        }
    }

    @Test(arguments: [
        RequestCase(name: "17 KiB of headers",
                    request: "GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "b", count: 17 * 1024))\r\n\r\n", status: 431),
        RequestCase(name: "declared body over the limit",
                    request: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\n\r\n", status: 413),
        RequestCase(name: "chunked body over the limit",
                    request: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n"
                        + String(repeating: "c", count: 2048) + "\r\n0\r\n\r\n", status: 413),
        RequestCase(name: "Content-Length and Transfer-Encoding",
                    request: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        RequestCase(name: "two Content-Lengths",
                    request: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc"),
        RequestCase(name: "not HTTP", request: "NOT HTTP AT ALL\r\n\r\n"),
        RequestCase(name: "HTTP/3.0", request: "GET / HTTP/3.0\r\nHost: x\r\n\r\n", status: 505),
    ])
    func refusedRequestGetsItsStatusAndTheConnectionCloses(_ test: RequestCase) async throws {
        let recorder = Recorder()
        var configuration = HTTPServer.Configuration()
        configuration.maxBodySize = 1024
        try await withServer(configuration, handler: { request in
            await recorder.record(request)
            return .text("handled")
        }) { harness in
            // exchange returns only once the server has closed the connection.
            let answers = try await exchange(test.request, with: harness)
            #expect(answers.map(\.status) == [test.status])
            #expect(answers.first?.head.headers["Connection"] == "close")
            #expect(answers.first?.head.headers["Server"] == "roost/\(RoostVersion.string)")
            #expect(await recorder.requests.isEmpty)
        }
    }

    @Test func requestsBeforeARefusedOneAreAnsweredFirst() async throws {
        try await withServer(handler: echo) { harness in
            let answers = try await exchange("GET /fine HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n\r\n", with: harness)
            #expect(answers.map(\.status) == [200, 400])
        }
    }

    @Test func streamedResponseIsReadIncrementallyByTheClient() async throws {
        let body = ControlledStream()
        try await withServer(handler: { _ in HTTPResponse(status: 200, body: .stream(body.stream)) }) { harness in
            let channel = try await harness.connect()
            let response = try await HTTPClient.stream(get("/stream"), over: channel)
            #expect(response.head.status == 200)
            #expect(response.head.headers["Transfer-Encoding"] == "chunked")
            var chunks = response.body.makeAsyncIterator()
            // Each chunk arrives before the next one even exists.
            body.feed.yield(bytes("first"))
            #expect(try await read(5, from: &chunks) == bytes("first"))
            body.feed.yield(bytes("second"))
            #expect(try await read(6, from: &chunks) == bytes("second"))
            body.feed.finish()
            #expect(try await chunks.next() == nil)
            // The connection stays usable after the stream's last chunk.
            let after = try await HTTPClient.send(get("/after"), over: channel)
            #expect(after.status == 200)
            await channel.close()
        }
    }

    @Test func clientDisconnectDuringAStreamEndsTheHandlersStream() async throws {
        let body = ControlledStream()
        try await withServer(handler: { _ in HTTPResponse(status: 200, body: .stream(body.stream)) }) { harness in
            let channel = try await harness.connect()
            let response = try await HTTPClient.stream(get("/events"), over: channel)
            var chunks = response.body.makeAsyncIterator()
            body.feed.yield(bytes("tick"))
            #expect(try await read(4, from: &chunks) == bytes("tick"))
            await channel.close()
            // Nothing more is produced: only the server seeing the close can end the stream.
            await body.waitForTermination()
        }
    }

    @Test func serverSentEventsArriveAsSentAndStopWhenTheClientLeaves() async throws {
        let (events, feed) = AsyncStream.makeStream(of: ServerSentEvent.self)
        let (ended, endedSignal) = AsyncStream.makeStream(of: Void.self)
        feed.onTermination = { _ in endedSignal.finish() }
        try await withServer(handler: { _ in .serverSentEvents(events) }) { harness in
            let channel = try await harness.connect()
            let response = try await HTTPClient.stream(get("/events"), over: channel)
            #expect(response.head.headers["Content-Type"] == "text/event-stream")
            var parser = SSEParser()
            var received: [ServerSentEvent] = []
            let sent = [ServerSentEvent(event: "registry.version.committed", data: #"{"version":1}"#, id: "1"),
                        ServerSentEvent(data: "second")]
            for event in sent { feed.yield(event) }
            for try await chunk in response.body {
                received += parser.feed(chunk)
                if received.count == sent.count { break }
            }
            #expect(received == sent)
            await channel.close()
            for await _ in ended {}
        }
    }

    @Test func shutdownWithAnIdleConnectionOpenFinishesPromptly() async throws {
        let loop = EventLoop(name: "http-shutdown")
        let folder = "/tmp/roost-http-shutdown-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        mkdir(folder, 0o700)
        let listener = try await StreamListener.unix(on: loop, path: folder + "/http.sock")
        let server = HTTPServer(listener: listener, handler: echo)
        let running = Task { await server.run() }
        let channel = try await StreamChannel.connect(on: loop, unixPath: folder + "/http.sock")
        let answer = try await HTTPClient.send(get("/"), over: channel)
        #expect(answer.status == 200)
        let started = ContinuousClock.now
        try await withHangGuard {
            await server.shutdown()
            await running.value
        }
        // The idle timeout is 60 s; the shutdown must not wait for it.
        #expect(ContinuousClock.now - started < .seconds(5))
        #expect(try await channel.read() == nil)
        #expect(await server.connectionCount == 0)
        await channel.close()
        await loop.shutdownGracefully()
        rmdir(folder)
    }

    @Test func shutdownEndsAStreamedResponseWithItsLastChunk() async throws {
        let body = ControlledStream()
        try await withServer(handler: { _ in HTTPResponse(status: 200, body: .stream(body.stream)) }) { harness in
            let channel = try await harness.connect()
            let response = try await HTTPClient.stream(get("/events"), over: channel)
            var chunks = response.body.makeAsyncIterator()
            body.feed.yield(bytes("tick"))
            #expect(try await read(4, from: &chunks) == bytes("tick"))
            await harness.server.shutdown()
            await body.waitForTermination()
            // A clean end: the body finishes without an error.
            #expect(try await chunks.next() == nil)
            await channel.close()
        }
    }

    @Test func idleConnectionIsClosedAfterTheIdleTimeout() async throws {
        var configuration = HTTPServer.Configuration()
        configuration.idleTimeout = .milliseconds(100)
        try await withServer(configuration, handler: echo) { harness in
            let channel = try await harness.connect()
            #expect(try await channel.read() == nil)
            await channel.close()
        }
    }

    @Test func slowRequestHeadIsAnswered408AndClosedAfterTheHeaderTimeout() async throws {
        var configuration = HTTPServer.Configuration()
        configuration.headerTimeout = .milliseconds(100)
        try await withServer(configuration, handler: echo) { harness in
            let channel = try await harness.connect()
            try await channel.write(bytes("GET / HTTP/1.1\r\nHost: x\r\n"))
            // Answered 408, then closed.
            let data = try await channel.readAll()
            await channel.close()
            let answers = try responses(in: data)
            #expect(answers.map(\.status) == [408])
            #expect(answers.first?.head.headers["Connection"] == "close")
        }
    }

    @Test func slowBufferedBodyIsAnswered408AndClosedAfterTheBodyTimeout() async throws {
        var configuration = HTTPServer.Configuration()
        configuration.bodyTimeout = .milliseconds(100)
        // A generous header timeout: only the body's clock may end this request.
        configuration.headerTimeout = .seconds(30)
        try await withServer(configuration, handler: echo) { harness in
            let channel = try await harness.connect()
            try await channel.write(bytes("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"))
            let data = try await channel.readAll()
            await channel.close()
            let answers = try responses(in: data)
            #expect(answers.map(\.status) == [408])
            let message = String(decoding: answers.first?.body ?? [], as: UTF8.self)
            #expect(message.contains("request body did not come"))
        }
    }

    @Test func aBufferedBodyInTimeIsServedAndTheConnectionStaysOpen() async throws {
        var configuration = HTTPServer.Configuration()
        // Long enough that a loaded machine's stall between the two writes does not expire it
        // (with 100 ms, a parallel test run once did: 408, and the next write met a closed socket).
        configuration.bodyTimeout = .seconds(1)
        try await withServer(configuration, handler: echo) { harness in
            let channel = try await harness.connect()
            // The body in two parts, then a second request past the first one's body clock: the
            // clock stopped when the body was complete.
            try await channel.write(bytes("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc"))
            try await channel.write(bytes("def"))
            let first = try await readResponse(from: channel)
            #expect(first.head.status == 200)
            try await harness.loop.sleep(for: .milliseconds(1500))
            let second = try await HTTPClient.send(HTTPRequest(method: "GET", target: "/b"), over: channel)
            #expect(second.status == 200)
            await channel.close()
        }
    }

    /// Serves a response of `total` bytes, made as it is taken in 64 KiB pieces, to a client that
    /// has asked for it on `channel`; `ended` gets a value when the server lets the response's
    /// stream go before its end.
    private func withLargeResponse(total: Int, sendTimeout: Duration, request: String = "GET /big HTTP/1.1\r\nHost: x\r\n\r\n",
                                   _ body: @escaping @Sendable (Harness, StreamChannel, AsyncStream<Void>) async throws -> Void) async throws {
        var configuration = HTTPServer.Configuration()
        configuration.sendTimeout = sendTimeout
        configuration.streamsBodies = true  // the handler answers as soon as a head is in
        let (ended, feed) = AsyncStream.makeStream(of: Void.self)
        let handler: HTTPServer.Handler = { _ in
            let made = Mutex(0)
            let stream = AsyncStream<[UInt8]>(unfolding: {
                let piece = made.withLock { made -> Int in
                    let piece = min(64 * 1024, total - made)
                    made += piece
                    return piece
                }
                return piece > 0 ? [UInt8](repeating: UInt8(ascii: "x"), count: piece) : nil
            }, onCancel: { feed.yield() })
            return HTTPResponse(status: 200, headers: ["Content-Length": String(total)], body: .stream(stream))
        }
        try await withServer(configuration, handler: handler) { harness in
            let channel = try await harness.connect()
            try await channel.write(bytes(request))
            try await body(harness, channel, ended)
            await channel.close()
        }
    }

    /// A client that takes none of the response is closed once the bytes have waited
    /// `sendTimeout`, and the response's stream is let go.
    @Test func aClientThatTakesNothingIsClosedAfterTheSendTimeout() async throws {
        let total = 64 << 20
        try await withLargeResponse(total: total, sendTimeout: .milliseconds(300)) { _, channel, ended in
            var iterator = ended.makeAsyncIterator()
            await iterator.next()  // the server let the stream go: it closed the connection
            var received = 0
            while let chunk = try? await channel.read() { received += chunk.count }
            #expect(received < total)
        }
    }

    /// The same while the request's body is still coming (the answer goes out as the body is read,
    /// so the connection is not watched for the client going): the send timeout's close lets the
    /// response's stream go as well.
    @Test func aClientThatTakesNothingWhileItsBodyIsUnfinishedIsClosedAfterTheSendTimeout() async throws {
        let total = 64 << 20
        let request = "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\npart of the body"
        try await withLargeResponse(total: total, sendTimeout: .milliseconds(300), request: request) { _, channel, ended in
            var iterator = ended.makeAsyncIterator()
            await iterator.next()
            var received = 0
            while let chunk = try? await channel.read() { received += chunk.count }
            #expect(received < total)
        }
    }

    /// A slow client that keeps taking some of the response, never pausing as long as the send
    /// timeout (by far: a loaded machine stretches the pauses), gets all of it.
    @Test func aSlowClientThatKeepsTakingGetsTheWholeResponse() async throws {
        let total = 8 << 20
        try await withLargeResponse(total: total, sendTimeout: .seconds(2)) { harness, channel, _ in
            var received = 0
            let started = ContinuousClock.now
            while received < total + 20, let chunk = try await channel.read() {
                received += chunk.count
                // Pauses far shorter than the timeout, for more than the timeout in all.
                if ContinuousClock.now - started < .milliseconds(2500) { try await harness.loop.sleep(for: .milliseconds(50)) }
            }
            #expect(received > total)  // the body and its head
        }
    }

    @Test func headResponseHasHeadersButNoBody() async throws {
        try await withServer(handler: echo) { harness in
            let channel = try await harness.connect()
            let head = try await HTTPClient.send(HTTPRequest(method: "HEAD", target: "/x"), over: channel)
            #expect(head.headers["Content-Length"] == "8")
            #expect(head.bodyBytes.isEmpty)
            // Had a body been sent, this answer would be read as garbage.
            let get = try await HTTPClient.send(get("/x"), over: channel)
            #expect(text(get.bodyBytes) == "GET /x ")
            await channel.close()
        }
    }

    @Test func http10ClientGetsAStreamDelimitedByClose() async throws {
        try await withServer(handler: { _ in
            let (stream, feed) = AsyncStream.makeStream(of: [UInt8].self)
            feed.yield(bytes("ab"))
            feed.yield(bytes("cd"))
            feed.finish()
            return HTTPResponse(status: 200, body: .stream(stream))
        }) { harness in
            let answers = try await exchange("GET / HTTP/1.0\r\n\r\n", with: harness)
            #expect(answers.count == 1)
            #expect(text(answers[0].body) == "abcd")
            #expect(answers[0].head.headers["Transfer-Encoding"] == nil)
        }
    }

    @Test func expectContinueGetsTheInterimAnswerBeforeTheBodyIsSent() async throws {
        try await withServer(handler: echo) { harness in
            let channel = try await harness.connect()
            try await channel.write(bytes("PUT /f HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"))
            let interim = try await readResponse(from: channel)
            #expect(interim.status == 100)
            try await channel.write(bytes("data"))
            let answer = try await readResponse(from: channel)
            #expect(text(answer.body) == "PUT /f data")
            await channel.close()
        }
    }

    @Test func handlerHeadersCannotSplitTheResponse() async throws {
        try await withServer(handler: { _ in
            HTTPResponse(status: 200, headers: ["X-Ok": "yes", "X-Evil": "a\r\nSet-Cookie: stolen"],
                         body: .bytes(bytes("body")))
        }) { harness in
            let answers = try await exchange("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", with: harness)
            #expect(answers.count == 1)
            #expect(answers[0].head.headers["X-Ok"] == "yes")
            #expect(answers[0].head.headers["X-Evil"] == nil)
            #expect(answers[0].head.headers["Set-Cookie"] == nil)
        }
    }

    @Test func atTheConnectionLimitANewClientWaitsUntilOneCloses() async throws {
        var configuration = HTTPServer.Configuration()
        configuration.maxConnections = 2
        try await withServer(configuration, handler: echo) { harness in
            let first = try await harness.connect()
            let second = try await harness.connect()
            for channel in [first, second] {
                try await channel.write(bytes("GET /kept HTTP/1.1\r\nHost: x\r\n\r\n"))
                #expect(try await readResponse(from: channel).status == 200)
            }
            // The third is connected by the kernel and its request sent, but not served...
            let third = try await harness.connect()
            try await third.write(bytes("GET /third HTTP/1.1\r\nHost: x\r\n\r\n"))
            // ...while the first two still are (a round trip on each: the server has seen it all).
            for channel in [first, second] {
                try await channel.write(bytes("GET /again HTTP/1.1\r\nHost: x\r\n\r\n"))
                #expect(try await readResponse(from: channel).status == 200)
            }
            #expect(await harness.server.connectionCount == 2)
            // One goes: the third is taken and answered.
            await first.close()
            let answer = try await readResponse(from: third)
            #expect(answer.status == 200 && text(answer.body).hasPrefix("GET /third"))
            #expect(await harness.server.connectionCount == 2)
            await second.close()
            await third.close()
        }
    }
}
