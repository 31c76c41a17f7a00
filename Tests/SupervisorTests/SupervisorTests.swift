import Core
import Foundation
import Logging
import Registry
import Testing

@testable import Supervisor

/// A built executable next to the test bundle (`roost`).
func builtExecutable(_ name: String) throws -> String {
    guard let resolved = realpath(CommandLine.arguments[0], nil) else { throw UVError(-errno, "realpath") }
    let bundle = String(cString: resolved)
    free(resolved)
    let path = (bundle.lastIndex(of: "/").map { String(bundle[..<$0]) } ?? ".") + "/" + name
    try #require(access(path, X_OK) == 0, "build the \(name) product first: \(path) is missing")
    return path
}

/// A registry with the service kind and a supervisor taking part in it, on a real loop.
final class SupervisorFixture {
    let loop = EventLoop(name: "supervisor-test")
    let bus = EventBus()
    let folder: String
    let registry: RegistryService
    let supervisor: Supervisor
    let events: EventSubscription

    init() async throws {
        var template = Array("/tmp/roost-supervisor-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        folder = String(cString: try #require(made))
        let kinds = try KindTable([RegistryEntryKind(), ServiceKind(registryRoot: folder)])
        registry = try RegistryService(kinds: kinds, history: try HistoryStore.open(path: folder + "/registry.db"), bus: bus)
        var configuration = Supervisor.Configuration(
            runPath: folder + "/run", kind: ServiceKind(registryRoot: folder))
        configuration.hostExecutable = try builtExecutable("roost")
        var logger = Logger(label: "supervisor-test")
        logger.logLevel = .critical
        supervisor = Supervisor(loop: loop, bus: bus, pids: PIDGenerator(node: "test"), logger: logger, configuration: configuration)
        await supervisor.prepare()
        await registry.add(supervisor)
        await supervisor.boot()
        events = try bus.subscribe("**", bufferSize: 100_000)
    }

    /// Applies `yaml` as the folder's one file.
    @discardableResult
    func apply(_ yaml: String) async -> ApplyOutcome {
        let outcome = await registry.apply(LoadResult(files: [RegistryFile.parse(yaml, path: "svc.yaml")]), context: ApplyContext(source: .admin))
        #expect(outcome.errors.isEmpty, "\(outcome.errors)")
        return outcome
    }

    func status(_ id: String) async -> ServiceStatus? { await supervisor.status(of: EntryID(id)!) }

    func waitFor(_ id: String, _ states: Set<ServiceState>) async { await supervisor.waitFor(EntryID(id)!, states) }

    func close() async {
        await supervisor.shutdown()
        await loop.shutdownGracefully()
        try? FileManager.default.removeItem(atPath: folder)
    }
}

func service(_ name: String, _ exec: String, _ lifecycle: String = "{auto_start: true}", env: String = "{}") -> String {
    "  - {name: \(name), kind: swiftlet.service, exec: \(exec), env: \(env), lifecycle: \(lifecycle)}\n"
}

func processExists(_ pid: Int32) -> Bool { kill(pid, 0) == 0 || errno == EPERM }

@Suite(.timeLimit(.minutes(1))) struct SupervisorTests {
    @Test func killNineRestartsTheService() async throws {
        let fixture = try await SupervisorFixture()
        await fixture.apply("namespace: app\nentries:\n" + service("sleeper", "[/bin/sleep, '1000']"))
        await fixture.waitFor("app:sleeper", [.running])
        let first = try #require(await fixture.status("app:sleeper")?.pid)
        kill(first, SIGKILL)
        // From the events: the backoff is 100 ms, over before a slow test could look at it.
        var iterator = fixture.events.makeAsyncIterator()
        var backoff: Event?
        var restarted: Event?
        while restarted == nil, let event = await iterator.next() {
            guard event.path == "app:sleeper" else { continue }
            if event.topic == "supervisor.state.backoff" { backoff = event }
            if backoff != nil, event.topic == "supervisor.state.running" { restarted = event }
        }
        #expect(backoff?.data["exit"] == "killed by signal 9 (SIGKILL)")
        let pid = try #require(restarted?.data["pid"]?.intValue.map(Int32.init))
        #expect(pid != first)
        #expect(restarted?.data["restarts"] == .int(1))
        #expect(await fixture.status("app:sleeper")?.pid == pid)
        await fixture.close()
        #expect(!processExists(pid))
    }

    @Test func neverPolicyStaysExited() async throws {
        let fixture = try await SupervisorFixture()
        await fixture.apply("namespace: app\nentries:\n" + service("once", "[/bin/sh, -c, 'exit 4']", "{auto_start: true, restart: {policy: never}}"))
        await fixture.waitFor("app:once", [.exited])
        let status = try #require(await fixture.status("app:once"))
        #expect(status.state == .exited && status.restarts == 0 && status.lastExit == "exit code 4")
        await fixture.close()
    }

    @Test func stopEscalatesToKillForAChildThatIgnoresTerm() async throws {
        let fixture = try await SupervisorFixture()
        let stubborn = #"[/bin/sh, -c, 'trap "" TERM; echo up; while :; do sleep 0.05; done']"#
        await fixture.apply("namespace: app\nentries:\n" + service("stubborn", stubborn, "{auto_start: true, stop: {timeout: 300ms}}"))
        await fixture.waitFor("app:stubborn", [.running])
        // Its trap is set once it says so.
        var output = try await fixture.supervisor.followLogs(EntryID("app:stubborn")!, last: 10).makeAsyncIterator()
        #expect(await output.next()?.text == "up")
        let pid = try #require(await fixture.status("app:stubborn")?.pid)
        let started = ContinuousClock.now
        try await fixture.supervisor.stop(EntryID("app:stubborn")!)
        let elapsed = ContinuousClock.now - started
        let status = try #require(await fixture.status("app:stubborn"))
        #expect(status.state == .stopped)
        #expect(status.lastExit == "killed by signal 9 (SIGKILL)")
        #expect(elapsed >= .milliseconds(300))
        #expect(ProcessTable.members(of: pid).isEmpty)
        await fixture.close()
    }

    @Test func theWholeGroupIsGoneAfterStopAndAfterTheMainProcessExits() async throws {
        let fixture = try await SupervisorFixture()
        let family = "[/bin/sh, -c, 'sleep 1000 & sleep 1000 & echo started; wait']"
        await fixture.apply("namespace: app\nentries:\n" + service("family", family) + service("parent", "[/bin/sh, -c, 'sleep 1000 & exit 0']", "{auto_start: true, restart: {policy: never}}"))
        await fixture.waitFor("app:family", [.running])
        let pid = try #require(await fixture.status("app:family")?.pid)
        // Wait for the two grandchildren to exist.
        var lines = try await fixture.supervisor.followLogs(EntryID("app:family")!, last: 10).makeAsyncIterator()
        _ = await lines.next()
        #expect(ProcessTable.members(of: pid).count == 3)
        try await fixture.supervisor.stop(EntryID("app:family")!)
        #expect(ProcessTable.members(of: pid).isEmpty)

        // A main process that exits leaves no grandchild behind either.
        await fixture.waitFor("app:parent", [.exited])
        var iterator = fixture.events.makeAsyncIterator()
        var parentPID: Int32?
        while parentPID == nil, let event = await iterator.next() {
            if event.topic == "process.exited", event.data["service"] == "app:parent" { parentPID = event.data["pid"]?.intValue.map(Int32.init) }
        }
        #expect(ProcessTable.members(of: try #require(parentPID)).isEmpty)
        await fixture.close()
    }

    @Test func notifyReadinessAndAMissedWatchdog() async throws {
        let fixture = try await SupervisorFixture()
        let ready = #"[/bin/sh, -c, 'sleep 0.2; "$ROOST_BIN" notify --ready --status warming; exec sleep 1000']"#
        let silent = #"[/bin/sh, -c, '"$ROOST_BIN" notify --ready; exec sleep 1000']"#
        await fixture.apply("namespace: app\nentries:\n"
            + service("ready", ready, "{auto_start: true, readiness: notify}")
            + service("silent", silent, "{auto_start: true, readiness: notify, watchdog: 300ms, restart: {initial_delay: 10ms, jitter: 0}}"))
        // Starting until it says READY=1, then running, with its STATUS shown.
        #expect(await fixture.status("app:ready")?.state == .starting)
        await fixture.waitFor("app:ready", [.running])
        #expect(await fixture.status("app:ready")?.status == "warming")
        // The silent one never feeds its watchdog: killed and restarted.
        // Read from the events: its backoff is 10 ms, and on a loaded machine the test may look
        // only after the next missed watchdog.
        var iterator = fixture.events.makeAsyncIterator()
        var sawBackoff = false
        while let event = await iterator.next() {
            guard event.path == "app:silent" else { continue }
            if event.topic == "supervisor.state.backoff", !sawBackoff {
                sawBackoff = true
                #expect(event.data["exit"] == "watchdog not fed in time")
            }
            if sawBackoff, event.topic == "supervisor.state.running" {
                #expect(event.data["restarts"]?.intValue == 1)
                break
            }
        }
        await fixture.close()
    }

    @Test func execProbesAreProcessesOfTheServiceAndNeverOutliveItsStart() async throws {
        let fixture = try await SupervisorFixture()
        let flag = fixture.folder + "/ready"
        await fixture.apply("namespace: app\nentries:\n"
            + service("checked", "[/bin/sleep, '1000']", "{auto_start: true, readiness: {exec: [/bin/sh, -c, 'test -e \(flag)']}}")
            + service("hung", "[/bin/sleep, '1000']",
                      "{auto_start: true, start_timeout: 1500ms, restart: {policy: never}, readiness: {exec: [/bin/sleep, '1000']}}"))
        var iterator = fixture.events.makeAsyncIterator()
        var mains: [String: String] = [:]  // service -> its main process's PID
        var probes: [String: [(pid: Int32, parent: String)]] = [:]
        var exitedProbes = Set<Int32>()
        func note(_ event: Event) {
            guard let service = event.data["service"]?.stringValue, let pid = event.data["pid"]?.intValue else { return }
            let isProbe = event.data["role"]?.stringValue == "readiness"
            if event.topic == "process.started" {
                if isProbe { probes[service, default: []].append((Int32(pid), event.data["parent"]?.stringValue ?? "")) }
                else { mains[service] = event.path }
            }
            if event.topic == "process.exited", isProbe { exitedProbes.insert(Int32(pid)) }
        }
        // A probe of "checked" has failed at least once before the flag exists.
        while (probes["app:checked"]?.count ?? 0) < 2, let event = await iterator.next() { note(event) }
        #expect(FileManager.default.createFile(atPath: flag, contents: nil))
        await fixture.waitFor("app:checked", [.running])
        await fixture.waitFor("app:hung", [.exited, .failed])
        #expect(await fixture.status("app:hung")?.lastExit == "not ready within 1.5s")
        // Every probe started ends, and says so.
        func allEnded() -> Bool { probes.values.joined().allSatisfy { exitedProbes.contains($0.pid) } }
        while !allEnded(), let event = await iterator.next() { note(event) }
        for service in ["app:checked", "app:hung"] {
            let started = probes[service] ?? []
            #expect(!started.isEmpty)
            for probe in started {
                #expect(probe.parent == mains[service])
                #expect(exitedProbes.contains(probe.pid))
                #expect(!processExists(probe.pid))
            }
        }
        await fixture.close()
    }

    @Test func outputIsCapturedInOrderAndLongLinesAreSplitNotLost() async throws {
        let fixture = try await SupervisorFixture()
        // 200 numbered lines, one 40,000-byte line, then a last line without a newline.
        let script = #"[/bin/sh, -c, 'i=1; while [ $i -le 200 ]; do echo line $i; i=$((i+1)); done; head -c 40000 /dev/zero | tr "\0" x; echo; echo err >&2; printf end']"#
        await fixture.apply("namespace: app\nentries:\n" + service("talker", script, "{auto_start: true, restart: {policy: never}}"))
        await fixture.waitFor("app:talker", [.exited])
        let lines = try await fixture.supervisor.logs(EntryID("app:talker")!, last: 1000)
        let stdout = lines.filter { $0.stream == .stdout }
        #expect(stdout.prefix(200).map(\.text) == (1...200).map { "line \($0)" })
        let long = stdout.dropFirst(200).prefix(3)
        #expect(long.map(\.text.count) == [16384, 16384, 40000 - 2 * 16384])
        #expect(long.map(\.continued) == [true, true, false])
        #expect(stdout.last?.text == "end")
        #expect(lines.filter { $0.stream == .stderr }.map(\.text) == ["err"])
        await fixture.close()
    }

    @Test func aVersionChangingOneServiceRestartsOnlyThatOneAndRollbackRestoresIt() async throws {
        let fixture = try await SupervisorFixture()
        let echo = #"[/bin/sh, -c, 'echo value=$VALUE; exec sleep 1000']"#
        await fixture.apply("namespace: app\nentries:\n" + service("a", echo, env: "{VALUE: a1}") + service("b", echo, env: "{VALUE: b1}"))
        await fixture.waitFor("app:a", [.running])
        await fixture.waitFor("app:b", [.running])
        let a1 = await fixture.status("app:a")?.pid, b1 = await fixture.status("app:b")?.pid
        var follow = try await fixture.supervisor.followLogs(EntryID("app:b")!, last: 10).makeAsyncIterator()
        #expect(await follow.next()?.text == "value=b1")
        await fixture.apply("namespace: app\nentries:\n" + service("a", echo, env: "{VALUE: a1}") + service("b", echo, env: "{VALUE: b2}"))
        // The new process says which definition it runs.
        #expect(await follow.next()?.text == "value=b2")
        #expect(await fixture.status("app:a")?.pid == a1)
        let b2 = await fixture.status("app:b")?.pid
        #expect(b2 != b1 && b2 != nil)
        // Rollback is just another version: b gets its first definition back.
        _ = await fixture.registry.rollback(to: 1)
        #expect(await follow.next()?.text == "value=b1")
        #expect(await fixture.status("app:a")?.pid == a1)
        // Deleting a service stops it.
        let b3 = try #require(await fixture.status("app:b")?.pid)
        await fixture.apply("namespace: app\nentries:\n" + service("a", echo, env: "{VALUE: a1}"))
        #expect(await fixture.status("app:b") == nil)
        await fixture.supervisor.settled()
        #expect(!processExists(b3))
        await fixture.close()
    }

    @Test func aVersionStopsDependentsFirstAndAStopInProgressDoesNotHoldTheApply() async throws {
        let fixture = try await SupervisorFixture()
        let gate = fixture.folder + "/go"
        // api finishes its stop only once the test lets it.
        let holding = "[/bin/sh, -c, 'trap \"while [ ! -e \(gate) ]; do sleep 0.02; done; exit 0\" TERM; echo up; while :; do sleep 0.05; done']"
        await fixture.apply("namespace: app\nentries:\n" + service("db", "[/bin/sleep, '1000']")
            + service("api", holding, "{auto_start: true, requires: db}"))
        await fixture.waitFor("app:api", [.running])
        var output = try await fixture.supervisor.followLogs(EntryID("app:api")!, last: 10).makeAsyncIterator()
        #expect(await output.next()?.text == "up")
        let db = try #require(await fixture.status("app:db")?.pid)
        let api = try #require(await fixture.status("app:api")?.pid)

        // The version deleting both is committed while api is still stopping.
        let outcome = await fixture.apply("namespace: app\nentries: []\n")
        guard case .committed = outcome else { Issue.record("not committed: \(outcome)"); return }
        #expect(await fixture.status("app:api") == nil)
        #expect(await fixture.status("app:db") == nil)
        var iterator = fixture.events.makeAsyncIterator()
        while let event = await iterator.next(), !(event.topic == "supervisor.state.stopping" && event.path == "app:api") {}
        // What api requires is left alone until api is gone.
        #expect(processExists(api) && processExists(db))
        let created = FileManager.default.createFile(atPath: gate, contents: nil)
        #expect(created)
        await fixture.supervisor.settled()
        #expect(!processExists(api) && !processExists(db))
        var order: [String] = []
        while order.count < 2, let event = await iterator.next() {
            if event.topic == "process.exited", let name = event.data["service"]?.stringValue { order.append(name) }
        }
        #expect(order == ["app:api", "app:db"])
        await fixture.close()
    }

    @Test func servicesStoppedWhileTheirStartsWaitInLineNeverRunAndNothingIsLeft() async throws {
        let fixture = try await SupervisorFixture()
        // More services than spawns are let under way at once: most wait in line.
        let many = (1...40).map { service("s\($0)", "[/bin/sleep, '1000']") }.joined()
        await fixture.apply("namespace: app\nentries:\n" + many)
        var iterator = fixture.events.makeAsyncIterator()
        var started: [Int32] = []
        var starting = 0, stopped = 0
        func count(_ event: Event) {
            if event.topic == "process.started", let pid = event.data["pid"]?.intValue { started.append(Int32(pid)) }
            if event.topic == "supervisor.state.starting" { starting += 1 }
            if event.topic == "supervisor.state.stopped" { stopped += 1 }
        }
        // The first process runs: the others are under way or waiting in line. Stop everything.
        while started.isEmpty, let event = await iterator.next() { count(event) }
        await fixture.close()
        fixture.bus.publish(topic: "test.end", path: "", data: [:])
        while let event = await iterator.next(), event.topic != "test.end" { count(event) }
        #expect(starting == 40)
        #expect(stopped == 40)
        #expect(started.count < 40)
        for pid in started { #expect(!processExists(pid)) }
    }

    @Test func aStartThatTimesOutBeforeItsProcessExistsStillEndsIt() async throws {
        let fixture = try await SupervisorFixture()
        // The timeout fires while most spawns wait in line or are under way.
        let many = (1...20).map {
            service("s\($0)", "[/bin/sleep, '1000']",
                    "{auto_start: true, start_timeout: 1ms, restart: {policy: never}, readiness: {exec: [/bin/false]}}")
        }.joined()
        await fixture.apply("namespace: app\nentries:\n" + many)
        for i in 1...20 { await fixture.waitFor("app:s\(i)", [.exited]) }
        fixture.bus.publish(topic: "test.end")
        var iterator = fixture.events.makeAsyncIterator()
        var started: [Int32] = []
        while let event = await iterator.next(), event.topic != "test.end" {
            if event.topic == "process.started", event.data["role"] == nil, let pid = event.data["pid"]?.intValue { started.append(Int32(pid)) }
        }
        for i in 1...20 { #expect(await fixture.status("app:s\(i)")?.lastExit == "not ready within 1ms") }
        for pid in started { #expect(ProcessTable.members(of: pid).isEmpty) }
        await fixture.close()
    }

    @Test func aServiceStartsOnlyOnceWhatItRequiresIsRunning() async throws {
        let fixture = try await SupervisorFixture()
        let slow = #"[/bin/sh, -c, 'sleep 0.3; "$ROOST_BIN" notify --ready; exec sleep 1000']"#
        await fixture.apply("namespace: app\nentries:\n"
            + service("db", slow, "{auto_start: true, readiness: notify}")
            + service("api", "[/bin/sleep, '1000']", "{auto_start: true, requires: db}"))
        #expect(await fixture.status("app:api")?.state == .stopped)
        await fixture.waitFor("app:api", [.running])
        #expect(await fixture.status("app:db")?.state == .running)
        // Starting events came in order: db's process first.
        var started: [String] = []
        var iterator = fixture.events.makeAsyncIterator()
        while started.count < 2, let event = await iterator.next() {
            if event.topic == "process.started", let service = event.data["service"]?.stringValue { started.append(service) }
        }
        #expect(started == ["app:db", "app:api"])
        await fixture.close()
    }

    @Test func stateChangesArePublishedWithTheirDetails() async throws {
        let fixture = try await SupervisorFixture()
        await fixture.apply("namespace: app\nentries:\n"
            + service("flaky", "[/bin/sh, -c, 'exit 7']", "{auto_start: true, restart: {initial_delay: 50ms, jitter: 0, max_restarts: 1}}"))
        await fixture.waitFor("app:flaky", [.failed])
        var iterator = fixture.events.makeAsyncIterator()
        var states: [String] = []
        var backoff: Event?
        while let event = await iterator.next() {
            guard event.topic.hasPrefix("supervisor.state.") else { continue }
            #expect(event.path == "app:flaky")
            states.append(String(event.topic.dropFirst("supervisor.state.".count)))
            if event.topic == "supervisor.state.backoff" { backoff = event }
            if event.topic == "supervisor.state.failed" { break }
        }
        #expect(states == ["starting", "running", "backoff", "starting", "running", "failed"])
        #expect(backoff?.data["delay_ms"] == .double(50))
        #expect(backoff?.data["exit_code"] == .int(7))
        #expect(backoff?.data["restarts"] == .int(1))
        // A person can start a failed service again.
        try await fixture.supervisor.start(EntryID("app:flaky")!)
        await fixture.waitFor("app:flaky", [.backoff, .failed])
        #expect(await fixture.status("app:flaky")?.restarts ?? 0 <= 1)
        await fixture.close()
    }
}

extension SupervisorTests {
    @Test func limitsApplyInTheServiceProcess() async throws {
        let fixture = try await SupervisorFixture()
        let probe = #"[/bin/sh, -c, 'echo files=$(ulimit -n) cpu=$(ulimit -t) memory=$(ulimit -v)']"#
        await fixture.apply("namespace: app\nentries:\n"
            + service("limited", probe, "{auto_start: true, restart: {policy: never}}")
                .replacingOccurrences(of: "env: {}", with: "env: {}, limits: {open_files: 64, cpu: 7s, memory: 512MiB}"))
        await fixture.waitFor("app:limited", [.exited])
        let lines = try await fixture.supervisor.logs(EntryID("app:limited")!, last: 10).map(\.text)
        #expect(lines == ["files=64 cpu=7 memory=\(512 * 1024)"])
        await fixture.close()
    }

    @Test func aUserOtherThanTheHostsNeedsRootAndOtherwiseRunsAsThatUser() async throws {
        let fixture = try await SupervisorFixture()
        await fixture.apply("namespace: app\nentries:\n"
            + "  - {name: who, kind: swiftlet.service, exec: [/bin/sh, -c, 'id -un'], user: nobody, lifecycle: {auto_start: true, restart: {policy: never}}}\n")
        if getuid() == 0 {
            await fixture.waitFor("app:who", [.exited])
            #expect(try await fixture.supervisor.logs(EntryID("app:who")!, last: 10).map(\.text) == ["nobody"])
        } else {
            await fixture.waitFor("app:who", [.backoff, .failed])
            #expect(await fixture.status("app:who")?.lastExit == "user 'nobody' needs a host running as root")
        }
        await fixture.close()
    }
}
