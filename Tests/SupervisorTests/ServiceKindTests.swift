import Core
import Foundation
import Registry
import Testing

@testable import Supervisor

private func entries(_ yaml: String, path: String = "svc.yaml") -> [Entry] {
    let file = RegistryFile.parse(yaml, path: path)
    #expect(file.errors.isEmpty, "\(file.errors)")
    return file.entries
}

@Suite struct ServiceKindTests {
    let kind = ServiceKind()

    @Test func aFullDefinitionIsReadWithItsValues() throws {
        let entry = entries("""
            namespace: app
            entries:
              - name: clock
                kind: swiftlet.service
                exec: "/bin/sh -c 'echo \\"tick tock\\"; sleep 1'"
                workdir: /tmp
                env: {GREETING: hi, COUNT: 3}
                limits: {open_files: 256, memory: 64MiB, cpu: 5m}
                lifecycle:
                  auto_start: true
                  restart: {policy: always, initial_delay: 250ms, factor: 3, max_delay: 5s, jitter: 0, max_restarts: 2, window: 1m, stable_after: 2s, success_exit_codes: [3]}
                  stop: {signal: INT, timeout: 1.5s}
                  start_timeout: 2s
                  readiness: notify
                  watchdog: 10s
                  requires: [db, other:cache]
            """)[0]
        #expect(kind.validate(entry).isEmpty, "\(kind.validate(entry))")
        let definition = try #require(kind.definition(of: entry))
        #expect(definition.exec == ["/bin/sh", "-c", "echo \"tick tock\"; sleep 1"])
        #expect(definition.env == ["GREETING": "hi", "COUNT": "3"])
        #expect(definition.limits.memoryBytes == 64 << 20 && definition.limits.cpuSeconds == 300 && definition.limits.openFiles == 256)
        #expect(definition.autoStart)
        #expect(definition.restart.mode == .always && definition.restart.initialDelay == .milliseconds(250))
        #expect(definition.restart.factor == 3 && definition.restart.maxDelay == .seconds(5) && definition.restart.window == .seconds(60))
        #expect(definition.restart.successExitCodes == [3] && definition.restart.maxRestarts == 2)
        #expect(definition.stop.signal == SIGINT && definition.stop.timeout == .milliseconds(1500))
        #expect(definition.readiness == .notify && definition.watchdog == .seconds(10))
        #expect(definition.requires == [EntryID("app:db")!, EntryID("other:cache")!])
        #expect(kind.references(of: entry).map(\.reference) == ["db", "other:cache"])
    }

    @Test func defaultsMatchTheDocumentedOnes() throws {
        let entry = entries("namespace: app\nentries:\n  - {name: s, kind: swiftlet.service, exec: [sh, -c, 'true']}\n")[0]
        let definition = try #require(kind.definition(of: entry))
        #expect(definition.exec[0].hasSuffix("/sh"))
        #expect(!definition.autoStart)
        #expect(definition.restart == RestartPolicy())
        #expect(definition.restart.mode == .onFailure && definition.restart.initialDelay == .milliseconds(100))
        #expect(definition.restart.maxDelay == .seconds(30) && definition.restart.jitter == 0.1 && definition.restart.maxRestarts == 5)
        #expect(definition.stop.signal == SIGTERM && definition.stop.timeout == .seconds(10))
        #expect(definition.startTimeout == .seconds(30) && definition.readiness == .none)
    }

    @Test func everyProblemIsReportedAtItsField() {
        let entry = entries("""
            namespace: app
            entries:
              - name: bad
                kind: swiftlet.service
                exec: [/no/such/program]
                colour: red
                lifecycle:
                  auto_start: maybe
                  restart: {policy: sometimes, initial_delay: soon, jitter: 2}
                  stop: {signal: TERMINATE}
                  readiness: {tcp: 70000}
                  requires: [1]
            """)[0]
        // The validation layer sorts every error of an apply by location; compared sorted here too.
        let messages = kind.validate(entry).map(\.description).sorted()
        #expect(messages == [
            "svc.yaml:5:5: app:bad: 'exec': '/no/such/program' does not exist",
            "svc.yaml:6:5: app:bad: 'colour': unknown field (allowed: env, exec, lifecycle, limits, user, workdir)",
            "svc.yaml:7:5: app:bad: 'lifecycle.auto_start': must be true or false",
            "svc.yaml:7:5: app:bad: 'lifecycle.readiness.tcp': must be a port number (1-65535)",
            "svc.yaml:7:5: app:bad: 'lifecycle.requires': must be a service id or a list of them",
            "svc.yaml:7:5: app:bad: 'lifecycle.restart.initial_delay': 'soon' is not a duration (like 250ms, 10s, 5m)",
            "svc.yaml:7:5: app:bad: 'lifecycle.restart.jitter': must be a fraction from 0 to 1",
            "svc.yaml:7:5: app:bad: 'lifecycle.restart.policy': must be always, on-failure or never",
            "svc.yaml:7:5: app:bad: 'lifecycle.stop.signal': must be a signal name such as TERM, INT, QUIT, HUP, USR1",
        ].sorted())
    }

    @Test func aProgramThatIsNotExecutableOrMissingFromPathIsRefused() throws {
        let folder = NSTemporaryDirectory() + "svc-kind-\(getpid())"
        try FileManager.default.createDirectory(atPath: folder + "/bin", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        #expect(FileManager.default.createFile(atPath: folder + "/bin/plain", contents: Data("x".utf8), attributes: [.posixPermissions: 0o644]))
        #expect(FileManager.default.createFile(atPath: folder + "/bin/run", contents: Data("#!/bin/sh\n".utf8), attributes: [.posixPermissions: 0o755]))
        let kind = ServiceKind(registryRoot: folder)
        let yaml = """
            namespace: app
            entries:
              - {name: a, kind: swiftlet.service, exec: [./bin/plain]}
              - {name: b, kind: swiftlet.service, exec: no-such-program-anywhere}
              - {name: c, kind: swiftlet.service, exec: ./bin/run}
            """
        let list = entries(yaml)
        #expect(kind.validate(list[0]).map(\.message) == ["'exec': './bin/plain' is not an executable file"])
        #expect(kind.validate(list[1]).map(\.message) == ["'exec': 'no-such-program-anywhere' is not found in PATH"])
        #expect(kind.validate(list[2]).isEmpty)
        #expect(kind.definition(of: list[2])?.exec.first?.hasSuffix("/svc-kind-\(getpid())/bin/run") == true)
        #expect(kind.definition(of: list[2])?.exec.first?.hasPrefix("/") == true)
    }

    @Test func requiresCyclesAreRefusedByTheRegistry() throws {
        let list = entries("""
            namespace: app
            entries:
              - {name: a, kind: swiftlet.service, exec: [sh], lifecycle: {requires: b}}
              - {name: b, kind: swiftlet.service, exec: [sh], lifecycle: {requires: [a]}}
            """)
        let errors = validate(list, kinds: try KindTable([ServiceKind()]))
        #expect(errors.map(\.code) == [.referenceCycle])
        #expect(errors.first?.message == "reference cycle: app:a -> app:b -> app:a")
    }

    @Test(arguments: [
        ("250ms", Duration.milliseconds(250)), ("10s", .seconds(10)), ("5m", .seconds(300)), ("1h", .seconds(3600)),
        ("1.5s", .milliseconds(1500)), ("0", .zero),
    ])
    func durationsParse(text: String, expected: Duration) {
        #expect(DurationText.parse(text) == expected)
    }

    @Test func badDurationsAreRefused() {
        for text in ["", "10", "-1s", "1d", "ms", "1.2.3s", "s10"] { #expect(DurationText.parse(text) == nil, "\(text)") }
        #expect(DurationText.format(.milliseconds(250)) == "250ms")
        #expect(DurationText.format(.seconds(30)) == "30s")
        #expect(DurationText.format(.seconds(300)) == "5m")
    }

    @Test func commandLinesSplitLikeAShellWithoutOne() {
        #expect(ShellWords.split("a b  c") == ["a", "b", "c"])
        #expect(ShellWords.split("sh -c 'echo $HOME; ls'") == ["sh", "-c", "echo $HOME; ls"])
        #expect(ShellWords.split(#"say "a \"b\" c" d\ e"#) == ["say", #"a "b" c"#, "d e"])
        #expect(ShellWords.split("x ''") == ["x", ""])
        #expect(ShellWords.split("unterminated 'quote") == nil)
    }
}
