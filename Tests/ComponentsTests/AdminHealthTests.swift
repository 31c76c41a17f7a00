import Components
import Core
import Glibc
import HTTPService
import Registry
import Testing
import TestSupport


private func loopbackAddress(port: Int) -> sockaddr_in {
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    return address
}

/// A socket bound and listening on 127.0.0.1:`port`, so that nothing else can listen there.
private func occupy(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    try #require(fd >= 0)
    var address = loopbackAddress(port: port)
    let bound = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    try #require(bound == 0)
    try #require(listen(fd, 1) == 0)
    return fd
}

/// A request to the live host's admin socket.
private func admin(_ live: LiveHost, _ target: String, method: String = "GET") async throws -> HTTPResponse {
    let channel = try await StreamChannel.connect(on: live.loop, unixPath: live.folder.path + "/state/admin.sock")
    defer { Task { await channel.close() } }
    return try await HTTPClient.send(HTTPRequest(method: method, target: target), over: channel)
}

private func body(_ response: HTTPResponse) -> String { String(decoding: response.bodyBytes, as: UTF8.self) }

/// The value of one sample in a Prometheus text exposition: `series` is the metric name with its
/// labels exactly as written (`name{a="b"}`), or the bare name. Nil when the series is not there.
private func sample(_ text: String, _ series: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}

/// Stops the host, expecting exit code 0; on anything else the host's last lines are recorded.
private func stopCleanly(_ live: LiveHost, sourceLocation: Testing.SourceLocation = #_sourceLocation) async {
    guard let lines = live.host?.lines else { return }
    let stopped = await live.stop()
    if stopped?.code != 0 || stopped?.signal != 0 {
        // Bounded: the output of a host that did not exit may not end.
        let tail = await withTaskGroup(of: [String]?.self) { group in
            group.addTask { var all: [String] = []; for await line in lines { all.append(line) }; return all }
            group.addTask { try? await Task.sleep(for: .seconds(2)); return nil }
            let first = await group.next()!
            group.cancelAll()
            return first ?? ["(the host's output did not end)"]
        }
        Issue.record(Comment(rawValue: "the host stopped with \(String(describing: stopped)); its last lines:\n"
            + tail.suffix(30).joined(separator: "\n")), sourceLocation: sourceLocation)
    }
    await live.close()
}

@Suite(.timeLimit(.minutes(2))) struct AdminHealthTests {
    // MARK: - /readyz

    /// Not ready names each part that is not (a listener that cannot bind, a service still
    /// starting); once both are resolved by a new version the host is ready.
    @Test func readyzNamesWhatIsNotReadyUntilEverythingIs() async throws {
        let port = try #require(freeTCPPort())
        let blocker = try occupy(port: port)
        var blockerOpen = true
        defer { if blockerOpen { close(blocker) } }
        let web = "  - {name: web, kind: http.service, listen: '127.0.0.1:\(port)'}"
        // Started, never says READY=1: it stays `starting` for the whole test.
        let slow = """
              - name: slow
                kind: swiftlet.service
                exec: [/bin/sh, -c, 'exec sleep 60']
                lifecycle: {auto_start: true, readiness: notify, start_timeout: 60s}
            """
        let live = try LiveHost(files: ["app.yaml": "namespace: app\nentries:\n\(web)\n\(slow)\n"])
        #expect(try await live.start())

        var response = try await admin(live, "/readyz")
        #expect(response.status == 503)
        let answer = try JSON.parse(body(response))
        #expect(answer["status"] == "not_ready")
        guard case .array(let problems)? = answer["not_ready"] else {
            Issue.record("no not_ready list in \(body(response))")
            await live.close()
            return
        }
        let http = problems.first { $0["check"] == "http" }
        #expect(http?["id"] == "app:web")
        #expect(http?["message"]?.stringValue?.contains("cannot listen on 127.0.0.1:\(port)") == true)
        let service = problems.first { $0["check"] == "services" }
        #expect(service?["id"] == "app:slow")
        #expect(service?["message"] == "is starting")
        #expect(problems.count == 2, "\(problems)")
        #expect(try await admin(live, "/healthz").status == 200, "alive, though not ready")
        #expect(try await admin(live, "/readyz", method: "POST").status == 405)

        // The port is free again and the slow service goes away: the next version binds the
        // listener and stops the service.
        close(blocker)
        blockerOpen = false
        live.write("app.yaml", "namespace: app\nentries:\n\(web)\n")
        let applied = try await live.roost(["registry", "apply"])
        #expect(applied.status.code == 0)
        // No event says "ready"; the service's stop is carried out after the version commits.
        var polls = 0
        repeat {
            response = try await admin(live, "/readyz")
            if response.status == 200 { break }
            polls += 1
            try await Task.sleep(for: .milliseconds(20))
        } while polls < 500
        #expect(response.status == 200, "\(body(response))")
        #expect(try JSON.parse(body(response)) == ["status": "ready"])
        await stopCleanly(live)
    }

    @Test func readinessReportsTheBootStageBeforeAnythingElse() async {
        let lifecycle = HostLifecycle()
        let check = ReadinessCheck(lifecycle: lifecycle, supervisor: nil, listeners: nil)
        #expect(await check.problems() == [NotReady(check: "host", message: "the components are starting")])
        lifecycle.enter(.applying)
        #expect(await check.problems() == [NotReady(check: "host", message: "the first registry version is being applied")])
        lifecycle.enter(.running)
        #expect(await check.problems().isEmpty)
        lifecycle.enter(.stopping)
        #expect(await check.problems().map(\.message) == ["the host is stopping"])
    }

    // MARK: - /metrics

    static func site(port: Int) -> String {
        """
        namespace: app
        entries:
          - {name: web, kind: http.service, listen: '127.0.0.1:\(port)'}
          - name: greet
            kind: swiftlet.function
            exec: [/bin/sh, -c, 'printf "Content-Type: text/plain\\r\\n\\r\\nhi\\n"']
          - {name: greet-route, kind: http.endpoint, method: GET, path: '/greet/:name', func: greet}
          - name: crash
            kind: swiftlet.service
            exec: [/bin/sh, -c, 'exit 3']
            lifecycle:
              auto_start: false
              restart: {policy: always, initial_delay: 10ms, jitter: 0, max_restarts: 2, window: 60s}
        """
    }

    /// Requests by route and status, their latency, function and service spawns and service
    /// restarts all move with real traffic, by exactly what happened.
    @Test func metricsCountRequestsSpawnsAndRestarts() async throws {
        let port = try #require(freeTCPPort())
        let live = try LiveHost(files: ["app.yaml": Self.site(port: port)])
        #expect(try await live.start())

        var response = try await admin(live, "/metrics")
        #expect(response.status == 200)
        #expect(response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8")
        var text = body(response)
        #expect(sample(text, #"roost_process_spawns_total{role="function"}"#) == 0)
        #expect(sample(text, #"roost_process_spawns_total{role="service"}"#) == 0)
        #expect(sample(text, "roost_eventbus_overflows_total") == 0)
        #expect(!text.contains("roost_http_requests_total{"))

        func send(_ method: String, _ target: String) async throws -> Int {
            let channel = try await StreamChannel.connect(on: live.loop, host: "127.0.0.1", port: port)
            defer { Task { await channel.close() } }
            return try await HTTPClient.send(HTTPRequest(method: method, target: target), over: channel).status
        }
        for name in ["a", "b", "c"] { #expect(try await send("GET", "/greet/\(name)") == 200) }
        #expect(try await send("GET", "/nothing/here") == 404)
        #expect(try await send("POST", "/greet/a") == 405)

        // The crashing service: started by hand, restarted twice by its policy, then failed.
        let events = try await StreamChannel.connect(on: live.loop, unixPath: live.folder.path + "/state/admin.sock")
        let stream = try await HTTPClient.stream(
            HTTPRequest(method: "GET", target: "/v1/events?pattern=supervisor.state.failed"), over: events)
        try #require(stream.head.status == 200)
        #expect(try await admin(live, "/v1/services/app:crash/start", method: "POST").status == 200)
        var parser = SSEParser()
        var failed = false
        reading: for try await chunk in stream.body {
            for event in parser.feed(chunk) where event.event == "supervisor.state.failed" {
                failed = (try? JSON.parse(event.data))?["path"] == "app:crash"
                if failed { break reading }
            }
        }
        #expect(failed)
        await events.close()

        response = try await admin(live, "/metrics")
        text = body(response)
        #expect(sample(text, #"roost_http_requests_total{service="app:web",route="app:greet-route",status="200"}"#) == 3)
        #expect(sample(text, #"roost_http_requests_total{service="app:web",route="not_found",status="404"}"#) == 1)
        #expect(sample(text, #"roost_http_requests_total{service="app:web",route="none",status="405"}"#) == 1)
        #expect(sample(text, #"roost_http_request_duration_seconds_count{service="app:web",route="app:greet-route"}"#) == 3)
        #expect(sample(text, #"roost_http_request_duration_seconds_bucket{service="app:web",route="app:greet-route",le="+Inf"}"#) == 3)
        #expect((sample(text, #"roost_http_request_duration_seconds_sum{service="app:web",route="app:greet-route"}"#) ?? 0) > 0)
        #expect(sample(text, #"roost_process_spawns_total{role="function"}"#) == 3)
        // The first start and two restarts.
        #expect(sample(text, #"roost_process_spawns_total{role="service"}"#) == 3)
        #expect(sample(text, #"roost_service_restarts_total{service="app:crash"}"#) == 2)
        #expect(text.contains("# TYPE roost_http_request_duration_seconds histogram"))
        await stopCleanly(live)
    }

    /// A subscriber that never reads loses its oldest events; the metrics count the episode once
    /// and every event lost, over scrapes that may come at any time.
    @Test func metricsCountEventBusOverflows() throws {
        let bus = EventBus(bufferSize: 2)
        let metrics = HostMetrics(bus: bus)
        let subscription = try bus.subscribe("test.*", name: "slow")
        for n in 0..<5 { bus.publish(topic: "test.tick", data: ["n": .int(Int64(n))]) }
        var text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(sample(text, "roost_eventbus_overflows_total") == 1)
        #expect(sample(text, "roost_eventbus_dropped_events_total") == 3)
        // A second scrape adds nothing that did not happen.
        text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(sample(text, "roost_eventbus_dropped_events_total") == 3)
        bus.publish(topic: "test.tick")
        text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(sample(text, "roost_eventbus_overflows_total") == 1, "still the same episode: nothing was read")
        #expect(sample(text, "roost_eventbus_dropped_events_total") == 4)
        withExtendedLifetime(subscription) {}
    }

    @Test func spawnsAreCountedByTheRoleTheSpawnerNamed() {
        let metrics = HostMetrics(bus: nil)
        var service = ProcessOptions(["/bin/true"])
        service.role = .service
        var probe = ProcessOptions(["/bin/true"])
        probe.role = .readiness
        var cgi = ProcessOptions(["/bin/true"], environment: ["GATEWAY_INTERFACE": "CGI/1.1"])
        cgi.role = .function
        // Without a role, even a CGI environment is not taken for a function's.
        let tool = ProcessOptions(["/bin/true"], environment: ["GATEWAY_INTERFACE": "CGI/1.1"])
        for options in [service, service, probe, cgi, tool] { metrics.processSpawned(options) }
        let text = String(decoding: metrics.render(), as: UTF8.self)
        #expect(sample(text, #"roost_process_spawns_total{role="service"}"#) == 2)
        #expect(sample(text, #"roost_process_spawns_total{role="readiness"}"#) == 1)
        #expect(sample(text, #"roost_process_spawns_total{role="function"}"#) == 1)
        #expect(sample(text, #"roost_process_spawns_total{role="other"}"#) == 1)
    }

    /// Two hosts in one process keep their own counts.
    @Test func eachMetricsObjectCountsAlone() {
        let first = HostMetrics(bus: nil)
        let second = HostMetrics(bus: nil)
        first.requestAnswered(service: EntryID("app:web")!, route: "app:r", method: "GET", status: 200, duration: .milliseconds(3))
        let a = String(decoding: first.render(), as: UTF8.self)
        let b = String(decoding: second.render(), as: UTF8.self)
        #expect(sample(a, #"roost_http_requests_total{service="app:web",route="app:r",status="200"}"#) == 1)
        #expect(sample(b, #"roost_http_requests_total{service="app:web",route="app:r",status="200"}"#) == nil)
        #expect(sample(a, #"roost_http_request_duration_seconds_bucket{service="app:web",route="app:r",le="0.0025"}"#) == 0)
        #expect(sample(a, #"roost_http_request_duration_seconds_bucket{service="app:web",route="app:r",le="0.005"}"#) == 1)
    }

    // MARK: - The TCP admin listener

    @Test func theBearerTokenMustMatchExactly() throws {
        let token = try AdminToken("s3cret-Token")
        #expect(token.authorizes("Bearer s3cret-Token"))
        #expect(token.authorizes("bearer s3cret-Token"))
        #expect(token.authorizes("BEARER  s3cret-Token"))
        #expect(!token.authorizes(nil))
        #expect(!token.authorizes("Bearer s3cret-token"))
        #expect(!token.authorizes("Bearer s3cret-Toke"))
        #expect(!token.authorizes("Bearer s3cret-Token2"))
        #expect(!token.authorizes("Bearer "))
        #expect(!token.authorizes("Basic s3cret-Token"))
        #expect(!token.authorizes("s3cret-Token"))
        #expect(throws: HostError.self) { try AdminToken("") }
        #expect(throws: HostError.self) { try AdminToken("two words") }
    }

    /// Without a usable token file the host does not start, and creates nothing.
    @Test func theTCPListenerIsRefusedWithoutAGoodTokenFile() async throws {
        let folder = try TemporaryFolder()
        mkdir(folder.path + "/registry", 0o755)
        let loop = EventLoop(name: "admin-tcp-refusals")
        func write(_ name: String, _ text: String, mode: mode_t) {
            let fd = open(folder.path + "/" + name, O_CREAT | O_WRONLY | O_TRUNC, mode)
            precondition(fd >= 0)
            _ = Array(text.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            close(fd)
            chmod(folder.path + "/" + name, mode)
        }
        write("open-token", "abc\n", mode: 0o640)
        write("empty-token", "\n", mode: 0o600)
        let run = ["run", "--registry", "registry", "--state", "state", "--admin-listen", "127.0.0.1:9"]
        let cases: [(arguments: [String], says: String)] = [
            (run, "--admin-listen needs --admin-token-file"),
            (run + ["--admin-token-file", "open-token"], "is open to group or others (mode 640); chmod 600 it"),
            (run + ["--admin-token-file", "empty-token"], "admin token file 'empty-token' is empty"),
            (run + ["--admin-token-file", "missing-token"], "admin token file 'missing-token' cannot be read"),
        ]
        for (arguments, says) in cases {
            let result = try await runRoost(arguments, in: folder.path, on: loop)
            #expect(result.status.code == 2, "\(arguments)")
            #expect(result.err.joined(separator: "\n").contains(says), "\(result.err)")
            #expect(access(folder.path + "/state", F_OK) != 0, "a refused start created the state folder")
        }
        await loop.shutdownGracefully()
        folder.remove()
    }

    /// Over TCP every request needs the token; the unix socket stays as it was; only the asked
    /// address is bound.
    @Test func theTCPListenerAnswersOnlyWithTheBearerToken() async throws {
        let port = try #require(freeTCPPort())
        let live = try LiveHost(files: ["app.yaml": "namespace: app\nentries:\n  - {name: note, kind: registry.entry}\n"])
        let tokenPath = live.folder.path + "/admin-token"
        let fd = open(tokenPath, O_CREAT | O_WRONLY | O_TRUNC, 0o600)
        try #require(fd >= 0)
        _ = Array("s3cret-Token\n".utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        close(fd)
        #expect(try await live.start(["--admin-listen", "127.0.0.1:\(port)", "--admin-token-file", tokenPath]))

        func tcp(_ target: String, authorization: String?) async throws -> HTTPResponse {
            let channel = try await StreamChannel.connect(on: live.loop, host: "127.0.0.1", port: port)
            defer { Task { await channel.close() } }
            var headers: HTTPHeaders = [:]
            if let authorization { headers.add("Authorization", authorization) }
            return try await HTTPClient.send(HTTPRequest(method: "GET", target: target, headers: headers), over: channel)
        }
        var response = try await tcp("/healthz", authorization: nil)
        #expect(response.status == 401)
        #expect(response.headers["WWW-Authenticate"] == #"Bearer realm="roost""#)
        #expect(try JSON.parse(body(response))["error"]?["code"] == "unauthorized")
        response = try await tcp("/v1/registry", authorization: "Bearer wrong")
        #expect(response.status == 401)
        #expect(response.headers["WWW-Authenticate"] == #"Bearer realm="roost", error="invalid_token""#)
        #expect(try await tcp("/v1/registry", authorization: "Bearer s3cret-Toke").status == 401)
        #expect(try await tcp("/v1/registry", authorization: "Basic czNjcmV0LVRva2Vu").status == 401)

        response = try await tcp("/v1/registry", authorization: "Bearer s3cret-Token")
        #expect(response.status == 200)
        #expect(try JSON.parse(body(response)) == ["version": 1, "entries": 1])
        #expect(try await tcp("/readyz", authorization: "bearer s3cret-Token").status == 200)
        #expect(try await tcp("/metrics", authorization: "Bearer s3cret-Token").status == 200)

        // Without the token, a body is never read: the answer comes at once although the body
        // it announces has not been sent.
        let unread = try await StreamChannel.connect(on: live.loop, host: "127.0.0.1", port: port)
        try await unread.write(Array("POST /v1/registry/apply HTTP/1.1\r\nHost: t\r\nContent-Length: 5000000\r\n\r\n".utf8))
        let refusedHead = String(decoding: try #require(try await unread.read()), as: UTF8.self)
        #expect(refusedHead.hasPrefix("HTTP/1.1 401"))
        await unread.close()
        // With it, a body is read and used.
        let channel = try await StreamChannel.connect(on: live.loop, host: "127.0.0.1", port: port)
        let apply = HTTPRequest(method: "POST", target: "/v1/registry/apply",
                                headers: ["Authorization": "Bearer s3cret-Token", "Content-Type": "application/json"],
                                body: Array(#"{"message": "over tcp"}"#.utf8))
        response = try await HTTPClient.send(apply, over: channel)
        await channel.close()
        #expect(response.status == 200)
        #expect(try JSON.parse(body(response))["outcome"] == "unchanged")

        // The unix socket needs no token.
        #expect(try await admin(live, "/v1/registry").status == 200)
        // Bound to 127.0.0.1 only: another loopback address of this machine finds nothing there.
        await #expect(throws: (any Error).self) {
            let channel = try await StreamChannel.connect(on: live.loop, host: "127.0.0.2", port: port)
            await channel.close()
        }
        await stopCleanly(live)
    }
}
