import Core
import Glibc
import Testing

/// Runs roost with `arguments` in `directory`; returns its status, stdout and stderr lines.
func runRoost(_ arguments: [String], in directory: String, on loop: EventLoop, input: String? = nil) async throws
    -> (status: TerminationStatus, out: [String], err: [String])
{
    var options = ProcessOptions([try roostExecutable()] + arguments, workingDirectory: directory)
    // Standard input from an unlinked file holding `input`, when there is one.
    var inputFile: Int32 = -1
    defer { if inputFile >= 0 { close(inputFile) } }
    if let input {
        var template = Array((directory + "/stdin-XXXXXX").utf8CString)
        inputFile = mkstemp(&template)
        try #require(inputFile >= 0)
        unlink(template)
        let bytes = Array(input.utf8)
        try #require(write(inputFile, bytes, bytes.count) == bytes.count)
        lseek(inputFile, 0, SEEK_SET)
        options.stdin = .fileDescriptor(inputFile)
    }
    options.stdout = .pipe
    options.stderr = .pipe
    options.dieWithHost = true
    let child = try await ChildProcess.spawn(on: loop, options)
    async let errors = child.stderr!.readAll()
    let output = String(decoding: try await child.stdout!.readAll(), as: UTF8.self)
    let errorText = String(decoding: try await errors, as: UTF8.self)
    return (try await child.wait(), output.split(separator: "\n").map(String.init),
            errorText.split(separator: "\n").map(String.init))
}

/// A folder with `registry/` and a roost host serving it (state in `state/`).
final class LiveHost {
    let loop = EventLoop(name: "cli-test")
    let folder: TemporaryFolder
    var host: RoostProcess?

    init(files: [String: String]) throws {
        folder = try TemporaryFolder()
        mkdir(folder.path + "/registry", 0o755)
        for (name, text) in files { write(name, text) }
    }

    /// Replaces the file in one step (a temporary file renamed over it): the host's folder watcher
    /// must never read it half-written, which would be a different registry.
    func write(_ relative: String, _ text: String) {
        let path = folder.path + "/registry/" + relative
        let temporary = path + ".tmp"
        let fd = open(temporary, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        precondition(fd >= 0)
        _ = Array(text.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        Glibc.close(fd)
        precondition(rename(temporary, path) == 0)
    }

    /// Starts `roost run`; returns once it is ready (nil when it exited first: the lines read).
    func start(_ extra: [String] = []) async throws -> Bool {
        let process = try await RoostProcess(
            loop: loop, arguments: ["run", "--registry", "registry", "--state", "state", "--log-level", "debug"] + extra,
            workingDirectory: folder.path)
        host = process
        return await process.waitForLine(containing: "roost ready in") != nil
    }

    func stop() async -> TerminationStatus? {
        guard let host else { return nil }
        self.host = nil
        await host.child.signal(SIGTERM)
        return await host.exit(within: .seconds(20))
    }

    func roost(_ arguments: [String], input: String? = nil) async throws -> (status: TerminationStatus, out: [String], err: [String]) {
        try await runRoost(arguments + ["--state", "state"], in: folder.path, on: loop, input: input)
    }

    func close() async {
        _ = await stop()
        await loop.shutdownGracefully()
        folder.remove()
    }
}

let ok = TerminationStatus(code: 0, signal: 0)

@Suite(.timeLimit(.minutes(2))) struct RegistryCLITests {
    static let app = """
        namespace: app
        entries:
          - {name: db, kind: registry.entry, size: 1, meta: {owner: ops}}
          - {name: api, kind: registry.entry, requires: db}
        """

    @Test func commandsInspectRollBackAndApplyOnALiveHost() async throws {
        let live = try LiveHost(files: ["app.yaml": Self.app])
        #expect(try await live.start())
        // The admin socket is for the host's user only.
        var info = stat()
        #expect(stat(live.folder.path + "/state/admin.sock", &info) == 0)
        #expect(info.st_mode & S_IFMT == S_IFSOCK && info.st_mode & 0o777 == 0o600)

        var result = try await live.roost(["registry", "list"])
        #expect(result.status == ok)
        #expect(result.out.first?.hasPrefix("ID") == true)
        #expect(result.out.contains { $0.hasPrefix("app:api ") && $0.contains("registry.entry") && $0.contains("app.yaml:4") })
        #expect(result.out.last == "version 1: 2 entries")

        result = try await live.roost(["registry", "list", "--json", "--kind", "registry.*", "--namespace", "app"])
        let listed = try JSON.parse(result.out.joined())
        #expect(listed["version"] == .int(1))
        #expect(listed["entries"].map { if case .array(let a) = $0 { a.count } else { 0 } } == 2)

        result = try await live.roost(["registry", "show", "app:db", "--json"])
        #expect(try JSON.parse(result.out.joined())["entry"]?["data"] == ["size": 1])

        result = try await live.roost(["registry", "list", "--id", "app:d*", "--meta", "owner=ops"])
        #expect(result.out.dropFirst().first?.hasPrefix("app:db ") == true)
        #expect(result.out.last == "version 1: 1 entry")

        // A live event stream, then a change made through the admin API.
        var options = ProcessOptions(
            [try roostExecutable(), "events", "--json", "--state", "state", "registry.entry.*"],
            workingDirectory: live.folder.path)
        options.stdout = .pipe
        options.stderr = .pipe
        let events = try await ChildProcess.spawn(on: live.loop, options)
        // The client says so once the host has answered; from then on no event is missed.
        var announced: [UInt8] = []
        while !announced.contains(10), let chunk = try await events.stderr!.read() { announced += chunk }
        #expect(String(decoding: announced, as: UTF8.self) == "roost: following registry.entry.* (interrupt to stop)\n")
        live.write("app.yaml", Self.app.replacingOccurrences(of: "size: 1", with: "size: 2"))
        result = try await live.roost(["registry", "apply", "--message", "size 2"])
        #expect(result.status == ok)
        let reader = Task { () -> String? in
            var pending: [UInt8] = []
            while let chunk = try? await events.stdout!.read() {
                pending += chunk
                if let newline = pending.firstIndex(of: 10) { return String(decoding: pending[..<newline], as: UTF8.self) }
            }
            return nil
        }
        let line = try #require(await reader.value)
        let event = try JSON.parse(line)
        #expect(event["topic"] == "registry.entry.updated")
        #expect(event["path"] == "app:db")
        #expect(event["data"]?["entry"]?["data"]?["size"] != nil)
        #expect(event["seq"]?.intValue != nil && event["time"] != nil)
        await events.signal(SIGINT)
        #expect(try await events.wait().signal == SIGINT)

        result = try await live.roost(["registry", "history"])
        #expect(result.status == ok)
        let versionLines = result.out.dropFirst()
        #expect(versionLines.count >= 2)
        #expect(versionLines.first?.contains("boot") == true)

        result = try await live.roost(["registry", "diff", "1", "2"])
        #expect(result.out.first == "~ app:db")
        #expect(result.out.dropFirst().first?.contains("data.size: 1 -> ") == true)

        result = try await live.roost(["registry", "rollback", "1", "--message", "undo", "--json"])
        let rolled = try JSON.parse(result.out.joined())
        #expect(rolled["outcome"] == "committed")
        #expect(rolled["version"]?["source"] == "rollback")
        #expect(rolled["version"]?["user"] == .string(String(getuid())))
        #expect(try JSON.parse(try await live.roost(["registry", "show", "app:db", "--json"]).out.joined())["entry"]?["data"] == ["size": 1])

        result = try await live.roost(["registry", "history", "app:db"])
        #expect(result.out.last?.contains("rollback") == true && result.out.last?.contains("undo") == true)

        result = try await live.roost(["registry", "rollback", "999"])
        #expect(result.status == TerminationStatus(code: 1, signal: 0))
        #expect(result.err == ["roost: there is no version 999"])

        // A broken folder is rejected with every error; the version stays.
        live.write("broken.yaml", "namespace: app\nentries:\n  - {name: x, kind: no.such.kind}\n  - {name: y}\n")
        result = try await live.roost(["registry", "apply"])
        #expect(result.status == TerminationStatus(code: 1, signal: 0))
        #expect(result.out.contains("broken.yaml:3:15: app:x: unknown kind 'no.such.kind'"))
        #expect(result.out.contains { $0.hasPrefix("broken.yaml:4:5:") && $0.contains("kind") })
        #expect(result.out.last == "rejected: 2 problems; the running version stays")

        #expect(await live.stop() == ok)
        await live.close()
    }

    @Test func withoutAHostClientsSayItInOneLineAndHistoryWorksOffline() async throws {
        let live = try LiveHost(files: ["app.yaml": Self.app])
        var result = try await live.roost(["registry", "list"])
        #expect(result.status == TerminationStatus(code: 2, signal: 0))
        #expect(result.err == ["roost: no host is running with state folder 'state' (no one listens on state/admin.sock)"])
        result = try await live.roost(["registry", "history"])
        #expect(result.status == TerminationStatus(code: 2, signal: 0))
        #expect(result.err.count == 1)

        #expect(try await live.start())
        #expect(await live.stop() == ok)
        // A second boot on the same folder makes no version.
        #expect(try await live.start())
        #expect(await live.stop() == ok)

        result = try await live.roost(["registry", "history", "--json"])
        #expect(result.status == ok)
        let versions = try JSON.parse(result.out.joined())["versions"]
        #expect(versions.map { if case .array(let a) = $0 { a.count } else { -1 } } == 1)
        result = try await live.roost(["registry", "show", "app:api", "--version", "1"])
        #expect(result.status == ok)
        #expect(result.out.first?.hasPrefix("app:api  (registry.entry, version 1") == true)
        result = try await live.roost(["registry", "show", "app:api"])
        #expect(result.status == TerminationStatus(code: 2, signal: 0))
        result = try await live.roost(["events"])
        #expect(result.status == TerminationStatus(code: 2, signal: 0))
        await live.close()
    }

    @Test func bootWithAnInvalidFolderExitsOneAndListsEveryError() async throws {
        let live = try LiveHost(files: [
            "a.yaml": "namespace: app\nentries:\n  - {name: x, kind: registry.entry, requires: missing}\n",
            "b.yaml": "namespace: app\nentries:\n  - {name: x, kind: registry.entry}\n",
        ])
        let process = try await RoostProcess(
            loop: live.loop, arguments: ["run", "--registry", "registry", "--state", "state"], workingDirectory: live.folder.path)
        var lines: [String] = []
        for await line in process.lines { lines.append(line) }
        #expect(await process.exit(within: .seconds(20)) == TerminationStatus(code: 1, signal: 0))
        #expect(lines.contains { $0.contains("a.yaml:3:37: app:x: 'requires' references app:missing, which does not exist") })
        #expect(lines.contains { $0.contains("b.yaml:3:5: app:x: duplicate id, first declared at a.yaml:3:5") })
        #expect(lines.contains { $0.contains("boot failed") && $0.contains("2 problems") })
        #expect(!lines.contains { $0.contains("roost ready") })
        await live.close()
    }

    @Test func sighupOverridesAndDisableOnALiveHost() async throws {
        let live = try LiveHost(files: [
            "app.yaml": "namespace: app\nentries:\n  - {name: hello, kind: registry.entry, port: 80}\n",
            "debug.yaml": "namespace: app.debug\nentries:\n  - {name: trace, kind: registry.entry}\n",
        ])
        #expect(try await live.start(["-o", "app:hello:port=8081", "-o", "app:hello:tls.enabled=true", "--disable", "app.debug:*"]))
        var result = try await live.roost(["registry", "show", "app:hello", "--json"])
        #expect(try JSON.parse(result.out.joined())["entry"]?["data"] == ["port": 8081, "tls": ["enabled": true]])
        result = try await live.roost(["registry", "list", "--json"])
        #expect(!result.out.joined().contains("app.debug"))

        let host = try #require(live.host)
        await host.child.signal(SIGHUP)
        #expect(await host.waitForLine(containing: "(sighup)") != nil)
        #expect(await live.stop() == ok)

        // A malformed override is bad input: one line, exit 2, nothing started.
        result = try await runRoost(["run", "--registry", "registry", "--state", "other", "-o", "app:hello"], in: live.folder.path, on: live.loop)
        #expect(result.status == TerminationStatus(code: 2, signal: 0))
        #expect(result.err.count == 1 && result.err[0].contains("expected namespace:name:path=value"))
        #expect(access(live.folder.path + "/other", F_OK) != 0)
        await live.close()
    }
}

