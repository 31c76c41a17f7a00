import Core
import Testing

@testable import HTTPService

private func parse(_ chunks: [String]) -> CGIResponseParser.Outcome {
    var parser = CGIResponseParser(maxHeadSize: 256)
    for chunk in chunks {
        let outcome = parser.feed(Array(chunk.utf8))
        if outcome != .needMore { return outcome }
    }
    return parser.finish()
}

@Suite struct CGIResponseParserTests {
    @Test func aHeadSplitAnywhereGivesTheSameResponseAndTheBodyThatCameWithIt() {
        let output = "Status: 404 Gone Fishing\r\nContent-Type: text/plain\r\nX-A: 1\r\n\r\nno fish\n"
        for cut in 1..<output.utf8.count {
            let bytes = Array(output.utf8)
            let outcome = parse([String(decoding: bytes[..<cut], as: UTF8.self), String(decoding: bytes[cut...], as: UTF8.self)])
            guard case .response(let status, let reason, let headers, let body, _) = outcome else {
                Issue.record("cut at \(cut): \(outcome)")
                return
            }
            #expect(status == 404 && reason == "Gone Fishing")
            #expect(headers["Content-Type"] == "text/plain" && headers["X-A"] == "1" && headers["Status"] == nil)
            // What follows the head in the read that completed it is the start of the body.
            let headLength = bytes.count - "no fish\n".utf8.count
            #expect(body == (cut >= headLength ? Array(bytes[headLength..<cut]) : Array("no fish\n".utf8)))
        }
    }

    @Test func plainLineFeedsAndDefaults() {
        #expect(parse(["Content-Type: text/html\n\n<p>"]) == .response(status: 200, reason: "OK", headers: ["Content-Type": "text/html"], body: Array("<p>".utf8), length: nil))
        #expect(parse(["Location: https://example.com/\n\n"]) == .response(status: 302, reason: "Found", headers: ["Location": "https://example.com/"], body: [], length: nil))
        #expect(parse(["Status: 201\nLocation: /made\n\n"]) == .response(status: 201, reason: "Created", headers: ["Location": "/made"], body: [], length: nil))
        #expect(parse(["Location: /elsewhere?x=1\r\n\r\nignored"]) == .localRedirect(path: "/elsewhere?x=1"))
        // Framing is the server's: a declared length is given apart, for it to frame the body with.
        #expect(parse(["Content-Type: a/b\nContent-Length: 5\nTransfer-Encoding: chunked\nConnection: close\n\nhello"])
            == .response(status: 200, reason: "OK", headers: ["Content-Type": "a/b"], body: Array("hello".utf8), length: 5))
        #expect(parse(["Content-Length: 3\ncontent-length: 3\n\nabc"])
            == .response(status: 200, reason: "OK", headers: [:], body: Array("abc".utf8), length: 3))
    }

    @Test(arguments: [
        ["\n\nbody"], ["no colon here\n\n"], ["Bad Name: x\n\n"], ["Status: 99 Low\n\n"], ["Status: 2000\n\n"], ["Status: 101 Switching\n\n"],
        ["Status: abc\n\n"], ["Content-Type: text/plain\n"], [],
        ["Content-Length: abc\n\n"], ["Content-Length: -1\n\n"], ["Content-Length: +5\n\n"], ["Content-Length: 5\nContent-Length: 6\n\n"],
        ["Content-Length:\n\n"], [String(repeating: "X-Long: aaaaaaaaaa\n", count: 20)],
    ])
    func malformedOutputIsInvalid(_ chunks: [String]) {
        guard case .invalid = parse(chunks) else {
            Issue.record("accepted: \(chunks)")
            return
        }
    }
}

@Suite struct CGIRequestTests {
    private func variables(_ target: String, headers: HTTPHeaders = ["Host": "example.org:8080"], method: String = "GET",
                           body: [UInt8] = [], parameters: [String: String] = [:], rest: String? = nil) -> [String: String] {
        let request = HTTPRequest(method: method, target: target, headers: headers, body: body)
        return CGIRequest(request: request, parameters: parameters, rest: rest, serverName: "127.0.0.1", serverPort: 8080,
                          remoteAddress: "127.0.0.1", remotePort: 50123, serverSoftware: "roost/test").variables
    }

    @Test func theRFC3875VariablesAndRoostsOwn() throws {
        let env = variables("/hello/J%C3%B6rg?lang=de&x=%20", headers: ["Host": "example.org:8080", "Accept": "text/html", "X-Trace": "a", "x-trace": "b"],
                            parameters: ["name": "Jörg"])
        #expect(env["GATEWAY_INTERFACE"] == "CGI/1.1")
        #expect(env["SERVER_PROTOCOL"] == "HTTP/1.1")
        #expect(env["SERVER_SOFTWARE"] == "roost/test")
        #expect(env["SERVER_NAME"] == "example.org")
        #expect(env["SERVER_PORT"] == "8080")
        #expect(env["REQUEST_METHOD"] == "GET")
        #expect(env["SCRIPT_NAME"] == "/hello/Jörg")
        #expect(env["PATH_INFO"] == "")
        #expect(env["QUERY_STRING"] == "lang=de&x=%20")
        #expect(env["REMOTE_ADDR"] == "127.0.0.1" && env["REMOTE_PORT"] == "50123")
        #expect(env["HTTP_ACCEPT"] == "text/html")
        #expect(env["HTTP_X_TRACE"] == "a, b")
        #expect(env["CONTENT_TYPE"] == nil && env["CONTENT_LENGTH"] == nil)
        #expect(env["REQUEST_PATH"] == "/hello/J%C3%B6rg" && env["REQUEST_QUERY"] == "lang=de&x=%20")
        #expect(env["PATH_PARAMS"] == #"{"name":"Jörg"}"#)
        let headers = try JSON.parse(bytes: Array(try #require(env["REQUEST_HEADERS"]).utf8))
        #expect(headers["x-trace"] == "a, b" && headers["host"] == "example.org:8080")
    }

    @Test func theRestIsPathInfoAndTheBodyHasItsType() {
        let env = variables("/cgit/repo/log/?h=main", headers: ["Host": "h", "Content-Type": "text/plain", "Content-Length": "3"],
                            method: "POST", body: Array("abc".utf8), rest: "repo/log/")
        #expect(env["SCRIPT_NAME"] == "/cgit")
        #expect(env["PATH_INFO"] == "/repo/log/")
        #expect(env["CONTENT_TYPE"] == "text/plain" && env["CONTENT_LENGTH"] == "3")
        #expect(env["HTTP_CONTENT_TYPE"] == nil && env["HTTP_CONTENT_LENGTH"] == nil)
        #expect(variables("/cgit/", rest: "")["SCRIPT_NAME"] == "/cgit")
        #expect(variables("/cgit/", rest: "")["PATH_INFO"] == "")
    }

    @Test func theRequestsVariablesComeFirstAndWinOverTheFunctionsOwn() {
        let request = HTTPRequest(method: "GET", target: "/a?q=1", headers: ["Host": "h", "X-Note": "say \"hi\"", "accept": "*/*"])
        let cgi = CGIRequest(request: request, serverName: "127.0.0.1", serverPort: 8080, remoteAddress: "127.0.0.1",
                             remotePort: 50123, serverSoftware: "roost/test")
        let program = CGIProgram(arguments: ["/bin/true"], environment: ["QUERY_STRING": "forged", "HTTP_HOST": "forged", "LANG": "C.UTF-8"])
        var environment = EnvironmentBlock()
        cgi.add(to: &environment)
        environment.add(missingFrom: program.encodedEnvironment)
        let env = environment.variables
        #expect(env["QUERY_STRING"] == "q=1" && env["HTTP_HOST"] == "h" && env["LANG"] == "C.UTF-8")
        #expect(environment.description.hasPrefix("GATEWAY_INTERFACE=CGI/1.1\n"))
        #expect(environment.description.hasSuffix("\nLANG=C.UTF-8"))
        #expect(env["HTTP_X_NOTE"] == "say \"hi\"" && env["HTTP_ACCEPT"] == "*/*")
        #expect(env["REQUEST_HEADERS"] == #"{"accept":"*/*","host":"h","x-note":"say \"hi\""}"#)
        #expect(env["PATH_PARAMS"] == "{}")
    }

    /// A head of thousands of fields (16 KiB allows about 2,000) is taken by name: each repeated
    /// name is joined once, in the order of its first field.
    @Test func thousandsOfHeadersAreJoinedByName() throws {
        var headers: HTTPHeaders = ["Host": "h"]
        for i in 0..<2000 { headers.add("X-\(i)", "a\(i)") }
        for i in stride(from: 0, to: 2000, by: 100) { headers.add("x-\(i)", "b\(i)") }
        let env = variables("/", headers: headers)
        #expect(env["HTTP_X_0"] == "a0, b0" && env["HTTP_X_1"] == "a1" && env["HTTP_X_1900"] == "a1900, b1900")
        #expect(env.keys.filter { $0.hasPrefix("HTTP_X_") }.count == 2000)
        let json = try JSON.parse(bytes: Array(try #require(env["REQUEST_HEADERS"]).utf8))
        #expect(json["x-100"] == "a100, b100" && json["x-1999"] == "a1999")
    }

    @Test func httpoxyAndUnderscoreHeadersNeverBecomeVariables() {
        let env = variables("/", headers: ["Host": "h", "Proxy": "http://evil:1", "X_Real_IP": "6.6.6.6", "X-Real-IP": "1.2.3.4"])
        #expect(env["HTTP_PROXY"] == nil)
        #expect(env["HTTP_X_REAL_IP"] == "1.2.3.4")
    }
}
