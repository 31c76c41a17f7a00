import Core
import Logging
import Registry
import Testing

@testable import HTTPService

#if canImport(Glibc)
import Glibc
#endif

private func jsonFunction(_ script: String) -> FunctionDefinition {
    FunctionDefinition(id: EntryID("app:f")!, exec: ["/bin/sh", "-c", script], workdir: nil, env: ["PATH": "/usr/bin:/bin"],
                       wireProtocol: .json, timeout: .seconds(10), concurrency: 2, queue: 2)
}

private func body(of outcome: CGIGateway.Outcome) async -> (Int, HTTPHeaders, String)? {
    guard case .response(let response) = outcome else { return nil }
    return (response.status, response.headers, text(await wholeBody(of: response)))
}

@Suite struct JSONFunctionTests {
    @Test func theEnvelopeCarriesTheRequest() throws {
        var request = HTTPRequest(method: "POST", target: "/a%20b/c?x=1&y=2&x=3&flag",
                                  headers: ["Content-Type": "application/json; charset=utf-8", "X-Thing": "one"])
        request.headers.add("x-thing", "two")
        let bytes = JSONEnvelope.request(request, body: Array(#"{"n": [1, 2]}"#.utf8), parameters: ["id": "7"])
        let envelope = try JSON.parse(bytes: bytes)
        #expect(envelope["method"] == "POST")
        #expect(envelope["path"] == "/a b/c")
        #expect(envelope["query"] == ["x": ["1", "3"], "y": "2", "flag": ""])
        #expect(envelope["headers"]?["x-thing"] == "one, two")
        #expect(envelope["params"] == ["id": "7"])
        #expect(envelope["body"] == ["n": [1, 2]])
        // Not declared JSON: the text; no body: null.
        let text = try JSON.parse(bytes: JSONEnvelope.request(HTTPRequest(method: "PUT", target: "/"), body: Array("{x".utf8), parameters: [:]))
        #expect(text["body"] == "{x")
        let none = try JSON.parse(bytes: JSONEnvelope.request(HTTPRequest(method: "GET", target: "/"), body: [], parameters: [:]))
        #expect(none["body"] == .null)
    }

    @Test func anAnswerObjectBecomesTheResponse() throws {
        let text = try JSONEnvelope.response(from: Array(#"{"status": 201, "headers": {"X-A": "b"}, "body": "made\n"}"#.utf8))
        #expect(text.status == 201 && text.headers["X-A"] == "b" && text.headers["Content-Type"] == "text/plain; charset=utf-8")
        #expect(text.bodyBytes == Array("made\n".utf8))
        let object = try JSONEnvelope.response(from: Array(#"{"body": {"ok": true}}"#.utf8))
        #expect(object.status == 200 && object.headers["Content-Type"] == "application/json")
        #expect(try JSON.parse(bytes: object.bodyBytes) == ["ok": true])
        for bad in [#"[1]"#, #"{"status": 42}"#, #"{"status": 100}"#, #"{"headers": {"Bad Name": "x"}}"#, #"{"headers": {"X": "a\r\nb"}}"#, #"{"status": "#] {
            #expect(throws: (any Error).self, "\(bad)") { try JSONEnvelope.response(from: Array(bad.utf8)) }
        }
    }

    @Test func aJSONFunctionGetsTheEnvelopeOnStdinAndAnswersJSONOrCGI() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let functions = testRunner(loop)
        try await withHangGuard {
            // Echoes the envelope back as its body, with a status and a header of its own.
            let echo = jsonFunction(#"envelope=$(cat); printf '  {"status": 202, "headers": {"X-Len": "%s"}, "body": %s}' "$CONTENT_LENGTH" "$envelope""#)
            let request = HTTPRequest(method: "POST", target: "/items/9?q=z", headers: ["Content-Type": "application/json"],
                                      body: Array(#"{"name": "x"}"#.utf8))
            let call = FunctionRunner.Call(request: request, parameters: ["id": "9"], serverName: "t", serverPort: 80, requestID: "j1")
            let (status, headers, text) = try #require(await body(of: await functions.run(echo, call)))
            #expect(status == 202)
            let envelope = try JSON.parse(text)
            #expect(envelope["params"] == ["id": "9"] && envelope["query"] == ["q": "z"] && envelope["body"] == ["name": "x"])
            #expect(headers["X-Len"] == String(text.utf8.count))

            // The same protocol may answer in CGI.
            let cgi = jsonFunction(#"cat >/dev/null; printf 'Status: 418 Teapot\r\nContent-Type: text/plain\r\n\r\nshort and stout'"#)
            let (cgiStatus, _, cgiText) = try #require(await body(of: await functions.run(cgi, call)))
            #expect(cgiStatus == 418 && cgiText == "short and stout")

            // A broken JSON answer is the function's fault: 502.
            let broken = jsonFunction(#"cat >/dev/null; printf '{"status": 200, "body": '"#)
            let (brokenStatus, _, _) = try #require(await body(of: await functions.run(broken, call)))
            #expect(brokenStatus == 502)
        }
    }

    @Test func callRunsAFunctionOfTheCurrentTableWithAJSONBody() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let functions = testRunner(loop)
        try await withHangGuard {
            functions.replace([EntryID("app:f")!: jsonFunction(#"envelope=$(cat); printf '{"body": %s}' "$envelope""#)])
            let response = try #require(await functions.call(EntryID("app:f")!, body: ["a": 1], requestID: "c1"))
            #expect(response.status == 200)
            let envelope = try JSON.parse(bytes: response.bodyBytes)
            #expect(envelope["method"] == "POST" && envelope["body"] == ["a": 1] && envelope["headers"]?["x-request-id"] == "c1")
            #expect(await functions.call(EntryID("app:missing")!, body: nil, requestID: "c2") == nil)
        }
    }

    /// A chunked body that stops coming cannot hold the function's only place: after the function's
    /// timeout the request is answered 408, and the next one runs.
    @Test func aBodyThatStopsComingIs408AndFreesTheFunctionsPlace() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let functions = testRunner(loop)
        let echo = FunctionDefinition(id: EntryID("app:cat")!, exec: ["/bin/sh", "-c", "printf 'Content-Type: text/plain\\n\\n'; exec cat"],
                                      workdir: nil, env: ["PATH": "/usr/bin:/bin"], wireProtocol: .cgi, timeout: .milliseconds(300),
                                      concurrency: 1, queue: 0)
        var configuration = HTTPServer.Configuration()
        configuration.streamsBodies = true
        configuration.lingerTimeout = .milliseconds(200)
        try await withServer(configuration, handler: { request in
            let call = FunctionRunner.Call(request: request, serverName: "t", serverPort: 80, requestID: "slow")
            guard case .response(let response) = await functions.run(echo, call) else { return .text(status: 500, "redirect\n") }
            return response
        }) { harness in
            let slow = try await harness.connect()
            try await slow.write(bytes("POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"))
            // ...and nothing more.
            let answer = try await readResponse(from: slow)
            #expect(answer.status == 408)
            await slow.close()
            let channel = try await harness.connect()
            try await channel.write(bytes("POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nok"))
            let next = try await readResponse(from: channel)
            await channel.close()
            #expect(next.status == 200 && text(next.body) == "ok")
        }
    }
}
