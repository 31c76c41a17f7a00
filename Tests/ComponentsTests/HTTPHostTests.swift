import Core
import Glibc
import HTTPService
import Testing
import TestSupport


@Suite(.timeLimit(.minutes(2))) struct HTTPHostTests {
    static func site(port: Int, greeting: String, extra: String = "") -> String {
        """
        namespace: app
        entries:
          - {name: web, kind: http.service, listen: '127.0.0.1:\(port)'}
          - name: greet
            kind: swiftlet.function
            exec: [/bin/sh, -c, 'printf "Content-Type: text/plain\\r\\n\\r\\n\(greeting) %s %s\\n" "$PATH_PARAMS" "$HTTP_X_REQUEST_ID"']
          - {name: greet-route, kind: http.endpoint, method: GET, path: '/greet/:name', func: greet}
        \(extra)
        """
    }

    func get(_ live: LiveHost, port: Int, _ target: String, headers: HTTPHeaders = [:]) async throws -> HTTPResponse {
        let channel = try await StreamChannel.connect(on: live.loop, host: "127.0.0.1", port: port)
        defer { Task { await channel.close() } }
        return try await HTTPClient.send(HTTPRequest(method: "GET", target: target, headers: headers), over: channel)
    }

    @Test func endpointsServeTheirFunctionAndEachVersionReplacesTheSite() async throws {
        let port = try #require(freeTCPPort())
        let live = try LiveHost(files: ["app.yaml": Self.site(port: port, greeting: "hello")])
        #expect(try await live.start())
        var response = try await get(live, port: port, "/greet/J%C3%B6rg", headers: ["X-Request-Id": "abc-123"])
        #expect(response.status == 200)
        #expect(response.headers["X-Request-Id"] == "abc-123")
        #expect(String(decoding: response.bodyBytes, as: UTF8.self) == #"hello {"name":"Jörg"} abc-123"# + "\n")
        #expect(try await get(live, port: port, "/nothing").status == 404)

        // A version whose endpoints conflict is refused with both places; the site stays.
        live.write("app.yaml", Self.site(port: port, greeting: "hello", extra: "  - {name: twin, kind: http.endpoint, path: '/greet/:who', func: greet}"))
        var result = try await live.roost(["registry", "apply"])
        #expect(result.status.code != 0)
        let refusal = (result.out + result.err).joined(separator: "\n")
        #expect(refusal.contains("app:greet-route (/greet/:name) and app:twin (/greet/:who)"))
        #expect(refusal.contains("app.yaml:"))
        #expect(try await get(live, port: port, "/greet/x").status == 200)

        // A changed function answers from the next request on.
        live.write("app.yaml", Self.site(port: port, greeting: "bonjour"))
        result = try await live.roost(["registry", "apply"])
        #expect(result.status.code == 0)
        response = try await get(live, port: port, "/greet/x")
        #expect(String(decoding: response.bodyBytes, as: UTF8.self).hasPrefix("bonjour "))
        let lines = live.host!.lines
        let stopped = await live.stop()
        if stopped?.code != 0 {
            // What the host said last, for the failure (bounded: the output may not end).
            let tail = await withTaskGroup(of: [String]?.self) { group in
                group.addTask { var all: [String] = []; for await line in lines { all.append(line) }; return all }
                group.addTask { try? await Task.sleep(for: .seconds(2)); return nil }
                let first = await group.next()!
                group.cancelAll()
                return first ?? ["(the host's output did not end)"]
            }
            Issue.record(Comment(rawValue: "the host's last lines:\n" + tail.suffix(15).joined(separator: "\n")))
        }
        #expect(stopped?.code == 0)
        await live.close()
    }

    @Test func roostCallRunsAFunctionWithAJSONBody() async throws {
        let port = try #require(freeTCPPort())
        let extra = """
              - name: echo
                kind: swiftlet.function
                protocol: json
                exec: [/bin/sh, -c, 'envelope=$(cat); printf "{\\"status\\": 200, \\"body\\": %s}" "$envelope"']
              - name: fail
                kind: swiftlet.function
                exec: [/bin/sh, -c, 'printf "Status: 500 Broken\\r\\nContent-Type: text/plain\\r\\n\\r\\nbroken\\n"']
            """
        let live = try LiveHost(files: ["app.yaml": Self.site(port: port, greeting: "hello", extra: extra)])
        #expect(try await live.start())
        var result = try await live.roost(["call", "app:echo", #"{"n": 5}"#])
        #expect(result.status.code == 0)
        let envelope = try JSON.parse(result.out.joined(separator: "\n"))
        #expect(envelope["body"] == ["n": 5] && envelope["method"] == "POST")
        // The body from standard input.
        result = try await live.roost(["call", "app:echo", "-"], input: #"{"n": 7}"#)
        #expect(result.status.code == 0)
        #expect(try JSON.parse(result.out.joined(separator: "\n"))["body"] == ["n": 7])
        result = try await live.roost(["call", "app:fail"])
        #expect(result.status.code == 1)
        #expect(result.out == ["broken"])
        #expect(result.err.contains { $0.contains("500") })
        result = try await live.roost(["call", "app:nothing", "{}"])
        #expect(result.status.code == 1)
        result = try await live.roost(["call", "app:echo", "{not json"])
        #expect(result.status.code == 1)
        #expect(await live.stop()?.code == 0)
        await live.close()
    }

    @Test func aStaticMountServesItsFolderAndVersionsThatBreakItAreRefused() async throws {
        let port = try #require(freeTCPPort())
        func site(_ extra: String = "", root: String = "./pages") -> String {
            Self.site(port: port, greeting: "hello", extra: "  - {name: pages, kind: http.static, prefix: /pages, root: \(root)}\n" + extra)
        }
        let live = try LiveHost(files: ["app.yaml": site()])
        mkdir(live.folder.path + "/registry/pages", 0o755)
        live.write("pages/index.html", "<p>pages</p>\n")
        #expect(try await live.start())
        var response = try await get(live, port: port, "/pages/")
        #expect(response.status == 200 && String(decoding: response.bodyBytes, as: UTF8.self) == "<p>pages</p>\n")
        #expect(response.headers["Content-Type"] == "text/html; charset=utf-8")
        #expect(try await get(live, port: port, "/pages").headers["Location"] == "/pages/")

        // An endpoint for the mount's requests is refused with both places.
        live.write("app.yaml", site("  - {name: grab, kind: http.endpoint, method: GET, path: '/pages/*', func: greet}"))
        var result = try await live.roost(["registry", "apply"])
        #expect(result.status.code != 0)
        var refusal = (result.out + result.err).joined(separator: "\n")
        #expect(refusal.contains("app:grab (/pages/*)") && refusal.contains("app:pages (/pages/*)"), "\(refusal)")
        #expect(refusal.contains("app.yaml:"))

        // So is a root that is not there.
        live.write("app.yaml", site(root: "./gone"))
        result = try await live.roost(["registry", "apply"])
        #expect(result.status.code != 0)
        refusal = (result.out + result.err).joined(separator: "\n")
        #expect(refusal.contains("'root': './gone' does not exist"), "\(refusal)")

        response = try await get(live, port: port, "/pages/index.html")
        #expect(response.status == 200)
        #expect(await live.stop()?.code == 0)
        await live.close()
    }

    /// 200 MiB up to a CGI program and 200 MiB back, at once, through a live host: the host's
    /// peak memory stays a small fraction of that.
    @Test(.timeLimit(.minutes(2))) func twoHundredMebibytesGoEachWayThroughAHostInBoundedMemory() async throws {
        let port = try #require(freeTCPPort())
        let total = 200 << 20
        let extra = """
              - name: echo
                kind: swiftlet.function
                exec: [/bin/sh, -c, 'printf "Content-Type: application/octet-stream\\r\\n\\r\\n"; exec cat']
                timeout: 100s
              - {name: echo-route, kind: http.endpoint, method: POST, path: /echo, func: echo, max_body: 300MiB}
            """
        let live = try LiveHost(files: ["app.yaml": Self.site(port: port, greeting: "hello", extra: extra)])
        #expect(try await live.start())
        let pid = try #require(live.host?.child.pid)
        let before = try #require(processMemory(pid, "VmRSS"))
        let channel = try await StreamChannel.connect(on: live.loop, host: "127.0.0.1", port: port)
        let (status, received, mismatches) = try await echoPattern(over: channel, target: "/echo", total: total)
        await channel.close()
        let peak = try #require(processMemory(pid, "VmHWM"))
        #expect(status == 200)
        #expect(received == total)
        #expect(mismatches == 0)
        // Buffers on the way hold a few MiB; 200 MiB held anywhere would show many times over.
        #expect(peak - before < 32 << 20, "the host's peak memory was \((peak - before) >> 20) MiB over its resident memory before")
        #expect(await live.stop()?.code == 0)
        await live.close()
    }

    /// Memory taken by a burst of connections goes back to the system once they are gone.
    @Test func memoryOfABurstOfConnectionsIsGivenBackWhenTheyClose() async throws {
        // The test process holds the client ends: it needs more than the usual 1,024 descriptors.
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        try #require(limit.rlim_max >= 1500, "the hard open-file limit is \(limit.rlim_max)")
        if limit.rlim_cur < 1500 {
            limit.rlim_cur = limit.rlim_max
            setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        }
        let port = try #require(freeTCPPort())
        let live = try LiveHost(files: ["app.yaml": Self.site(port: port, greeting: "hello")])
        #expect(try await live.start())
        let pid = try #require(live.host?.child.pid)
        let before = try #require(processMemory(pid, "VmRSS"))
        var channels: [StreamChannel] = []
        for _ in 0..<1_200 {
            let channel = try await StreamChannel.connect(on: live.loop, host: "127.0.0.1", port: port)
            try await channel.write(Array("GET /nothing HTTP/1.1\r\nHost: t\r\n\r\n".utf8))
            _ = try await channel.read()  // the 404, and the connection stays open
            channels.append(channel)
        }
        let with = try #require(processMemory(pid, "VmRSS"))
        for channel in channels { await channel.close() }
        // The host has no event for this: its descriptors are watched until its connections are
        // gone, then its memory (both bounded).
        // The memory goes back a second after most have gone; it is read until it has, or for 20 s.
        let deadline = ContinuousClock.now + .seconds(20)
        while openDescriptors(pid) > 100, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        var after = try #require(processMemory(pid, "VmRSS"))
        while after - before >= (with - before) / 2, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(100))
            after = try #require(processMemory(pid, "VmRSS"))
        }
        #expect(with - before > 4 << 20, "1,200 connections took \((with - before) >> 10) KiB")
        #expect(after - before < (with - before) / 2,
                "before \(before >> 10) KiB, with the connections \(with >> 10) KiB, after \(after >> 10) KiB")
        #expect(await live.stop()?.code == 0)
        await live.close()
    }
}

/// How many descriptors `pid` has open.
private func openDescriptors(_ pid: Int32) -> Int {
    guard let directory = opendir("/proc/\(pid)/fd") else { return 0 }
    defer { closedir(directory) }
    var count = 0
    while readdir(directory) != nil { count += 1 }
    return count - 2  // . and ..
}
