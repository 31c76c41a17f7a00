import HTTPService
import Testing

/// Feeds `chunks` in order and returns every complete request, body included.
private func requests(from chunks: [[UInt8]], parser: HTTPMessageParser = HTTPMessageParser(kind: .request)) throws -> [HTTPRequest] {
    var done: [HTTPRequest] = []
    var current: HTTPRequest?
    for chunk in chunks {
        parser.append(chunk)
        while true {
            let parts = try parser.next()
            if parts.isEmpty { break }
            for part in parts {
                switch part {
                case .requestHead(let head): current = head
                case .body(let bytes): current?.body += bytes
                case .end: done.append(current!)
                case .responseHead: Issue.record("a response head from a request parser")
                }
            }
            // At most one message per call: the parser stops at each boundary.
            #expect(parts.filter { if case .end = $0 { true } else { false } }.count <= 1)
        }
    }
    return done
}

/// The error the parser raises for `text`, fed in one piece.
private func failure(_ text: String, maxBodySize: Int = HTTPMessageParser.defaultMaxBodySize) -> HTTPError? {
    do {
        _ = try requests(from: [bytes(text)], parser: HTTPMessageParser(kind: .request, maxBodySize: maxBodySize))
        return nil
    } catch let error as HTTPError {
        return error
    } catch {
        Issue.record("not an HTTPError: \(error)")
        return nil
    }
}

private let pipeline = """
    GET /one HTTP/1.1\r
    Host: x\r
    \r
    POST /two?a=1 HTTP/1.1\r
    Host: x\r
    Content-Type: text/plain\r
    Content-Length: 5\r
    \r
    hello\
    DELETE /three HTTP/1.1\r
    Host: x\r
    Connection: close\r
    \r

    """

@Suite struct HTTPMessageParserTests {
    @Test func pipelinedRequestsInOneBufferComeOutInOrder() throws {
        let parsed = try requests(from: [bytes(pipeline)])
        #expect(parsed.map(\.method) == ["GET", "POST", "DELETE"])
        #expect(parsed.map(\.target) == ["/one", "/two?a=1", "/three"])
        #expect(parsed[1].body == bytes("hello"))
        #expect(parsed[1].headers["content-type"] == "text/plain")
        #expect(parsed.map(\.keepAlive) == [true, true, false])
    }

    @Test func requestsSplitByteByByteComeOutWhole() throws {
        let parsed = try requests(from: bytes(pipeline).map { [$0] })
        #expect(parsed.map(\.method) == ["GET", "POST", "DELETE"])
        #expect(parsed[1].body == bytes("hello"))
        #expect(parsed[0].headers.count == 1)
    }

    @Test func chunkedBodyIsDecodedAndTrailersDropped() throws {
        let text = "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-Trailer: sneaky\r\n\r\n"
        for chunks in [[bytes(text)], bytes(text).map { [$0] }] {
            let parsed = try requests(from: chunks)
            #expect(parsed.count == 1)
            #expect(String(decoding: parsed[0].body, as: UTF8.self) == "hello, world")
            #expect(parsed[0].headers["X-Trailer"] == nil)
        }
    }

    @Test func versionAndKeepAliveFollowTheRequest() throws {
        let parsed = try requests(from: [bytes("GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")])
        #expect(parsed.map(\.version) == [.http1_0, .http1_0])
        #expect(parsed.map(\.keepAlive) == [false, true])
    }

    @Test func headerValuesAreTrimmedAndLookupIgnoresCase() throws {
        let parsed = try requests(from: [bytes("GET / HTTP/1.1\r\nHost: x\r\nX-A:   one  \r\nx-a: two\r\n\r\n")])
        #expect(parsed[0].headers["X-A"] == "one")
        #expect(parsed[0].headers.values(for: "X-a") == ["one", "two"])
    }

    @Test func targetSplitsIntoRawPathAndDecodedQueryItems() {
        let request = HTTPRequest(method: "GET", target: "/a%20b/c%2Fd?x=1&name=hello+world&e=%C3%A9&&flag#top")
        #expect(request.path == "/a%20b/c%2Fd")
        #expect(request.query == "x=1&name=hello+world&e=%C3%A9&&flag")
        #expect(request.queryItems.map(\.name) == ["x", "name", "e", "flag"])
        #expect(request.queryItems.map(\.value) == ["1", "hello world", "é", ""])
        #expect(HTTPRequest(method: "GET", target: "http://host:8080/p?q").path == "/p")
        #expect(HTTPRequest(method: "GET", target: "/plain").query == nil)
        #expect(HTTPRequest(method: "GET", target: "/a#frag?not-a-query").query == nil)
        #expect(HTTPRequest(method: "GET", target: "/a?").query == "")
        #expect(HTTPRequest(method: "GET", target: "/é?q=é?x#y").query == "q=é?x")
        #expect(HTTPRequest(method: "GET", target: "http://host/p?q#f").query == "q")
        #expect(HTTPRequest.percentDecoded("100%") == "100%")
    }

    @Test func headerBlockOverTheLimitIs431() {
        let error = failure("GET / HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 17 * 1024))\r\n\r\n")
        #expect(error?.code == .headersTooLarge)
        #expect(error?.status == 431)
    }

    @Test func declaredBodyOverTheLimitIs413BeforeTheBodyArrives() {
        let error = failure("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n", maxBodySize: 1000)
        #expect(error?.code == .bodyTooLarge)
        #expect(error?.status == 413)
    }

    @Test func chunkedBodyOverTheLimitIs413() {
        let chunk = "100\r\n" + String(repeating: "z", count: 256) + "\r\n"
        let error = failure("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + String(repeating: chunk, count: 5), maxBodySize: 1000)
        #expect(error?.code == .bodyTooLarge)
    }

    @Test(arguments: [
        RequestCase(name: "Content-Length then Transfer-Encoding",
                    request: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        RequestCase(name: "Transfer-Encoding then Content-Length",
                    request: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n"),
        RequestCase(name: "repeated equal Content-Length",
                    request: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello"),
        RequestCase(name: "conflicting Content-Length",
                    request: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        RequestCase(name: "Content-Length list",
                    request: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello!"),
        RequestCase(name: "Transfer-Encoding not ending in chunked",
                    request: "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello"),
        RequestCase(name: "space before the colon of Content-Length",
                    request: "POST / HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello"),
    ])
    func ambiguousFramingIsRefusedAs400(_ test: RequestCase) {
        let error = failure(test.request)
        #expect(error?.code == .malformed)
        #expect(error?.status == 400)
    }

    @Test(arguments: [
        RequestCase(name: "not HTTP", request: "GARBAGE\r\n\r\n"),
        RequestCase(name: "HTTP/1.1 without Host", request: "GET / HTTP/1.1\r\n\r\n"),
        RequestCase(name: "two Hosts", request: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
        RequestCase(name: "control byte in the target", request: "GET /\u{1} HTTP/1.1\r\nHost: x\r\n\r\n"),
    ])
    func malformedRequestIs400(_ test: RequestCase) {
        #expect(failure(test.request)?.code == .malformed)
    }

    @Test func otherMajorVersionIs505() {
        #expect(failure("GET / HTTP/2.0\r\nHost: x\r\n\r\n")?.status == 505)
    }

    @Test func requestsBeforeAnErrorStillComeOutAndTheErrorSticks() throws {
        let parser = HTTPMessageParser(kind: .request)
        parser.append(bytes("GET /ok HTTP/1.1\r\nHost: x\r\n\r\nBROKEN LINE\r\n\r\n"))
        let first = try parser.next()
        guard case .requestHead(let head) = first.first else {
            Issue.record("no head first: \(first)")
            return
        }
        #expect(head.target == "/ok")
        #expect(throws: HTTPError.self) { try parser.next() }
        #expect(throws: HTTPError.self) { try parser.next() }
    }

    @Test func responseBodyRunningToEndOfInputEndsAtFinish() throws {
        let parser = HTTPMessageParser(kind: .response)
        parser.append(bytes("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nstream"))
        var parts = try parser.next()
        parser.append(bytes("ing"))
        parts += try parser.next()
        #expect(parts.count == 3)
        guard case .responseHead(let head) = parts.first else {
            Issue.record("no response head")
            return
        }
        #expect(head.status == 200)
        #expect(head.reason == "OK")
        #expect(!head.keepAlive)
        let end = try parser.finish()
        guard case .end = end.last else {
            Issue.record("no end at finish: \(end)")
            return
        }
    }

    @Test func responseCutShortIsIncomplete() throws {
        let parser = HTTPMessageParser(kind: .response)
        parser.append(bytes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort"))
        _ = try parser.next()
        #expect(throws: HTTPError(.incomplete, "the connection closed in the middle of a message")) { try parser.finish() }
    }

    @Test func responseToHEADHasNoBodyDespiteItsLength() throws {
        let parser = HTTPMessageParser(kind: .response)
        parser.skipsNextBody = true
        parser.append(bytes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"))
        let first = try parser.next()
        #expect(first.count == 2)  // head, end
        let second = try parser.next()
        guard case .responseHead(let head) = second.first else {
            Issue.record("the second response is not parsed as one: \(second)")
            return
        }
        #expect(head.status == 204)
    }

    @Test func headersKeepOrderAndReplaceKeepsFirstPlace() {
        var headers: HTTPHeaders = ["A": "1", "B": "2", "a": "3"]
        headers["A"] = "9"
        #expect(headers.fields.map(\.name) == ["A", "B"])
        #expect(headers["a"] == "9")
        headers.add("Connection", "keep-alive, Upgrade")
        #expect(headers.hasToken("upgrade", in: "connection"))
        headers["b"] = nil
        #expect(!headers.contains("B"))
    }
}
