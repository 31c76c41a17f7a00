import Components
import Core
import Glibc
import Logging
import Testing
import TestSupport

/// The built `roost` executable: next to the test bundle, or `$ROOST_BIN`.
func roostExecutable() throws -> String {
    if let explicit = getenv("ROOST_BIN") { return String(cString: explicit) }
    // Absolute: the tests start roost from other working directories.
    guard let resolved = realpath(CommandLine.arguments[0], nil) else { throw UVError(-errno, "realpath") }
    let bundle = String(cString: resolved)
    free(resolved)
    let folder = bundle.lastIndex(of: "/").map { String(bundle[..<$0]) } ?? "."
    let path = folder + "/roost"
    try #require(access(path, X_OK) == 0, "build the roost product first: \(path) is missing")
    return path
}

/// A fresh temporary folder, removed by `remove()`.
struct TemporaryFolder {
    let path: String

    init() throws {
        path = try #require(makeTemporaryDirectory())
    }

    func remove() {
        removeTree(path)
    }
}

/// A `roost` process under test, with its stderr read line by line.
final class RoostProcess: Sendable {
    let child: ChildProcess
    let lines: AsyncStream<String>

    init(loop: EventLoop, arguments: [String], workingDirectory: String) async throws {
        var options = ProcessOptions([try roostExecutable()] + arguments, workingDirectory: workingDirectory)
        options.stderr = .pipe
        options.stdout = .null
        // A test run that crashes takes its hosts with it.
        options.dieWithHost = true
        child = try await ChildProcess.spawn(on: loop, options)
        let (lines, sink) = AsyncStream.makeStream(of: String.self)
        self.lines = lines
        let stderr = child.stderr!
        Task {
            var pending: [UInt8] = []
            while let chunk = try? await stderr.read() {
                pending += chunk
                while let newline = pending.firstIndex(of: 10) {
                    sink.yield(String(decoding: pending[..<newline], as: UTF8.self))
                    pending.removeSubrange(...newline)
                }
            }
            if !pending.isEmpty { sink.yield(String(decoding: pending, as: UTF8.self)) }
            sink.finish()
        }
    }

    /// Reads lines until one contains `text`; nil if the output ends first.
    func waitForLine(containing text: String) async -> String? {
        for await line in lines where line.contains(text) { return line }
        return nil
    }

    /// Waits for exit, killing the process if it takes longer than `limit` (then returns nil).
    func exit(within limit: Duration) async -> TerminationStatus? {
        let loop = child.loop
        let child = self.child
        return await withTaskGroup(of: TerminationStatus?.self) { group in
            group.addTask { try? await child.wait() }
            group.addTask {
                try? await loop.sleep(for: limit)
                return nil
            }
            let first = await group.next()!
            group.cancelAll()
            if first == nil {
                await child.signalGroup(SIGKILL)
                _ = try? await child.wait()
            }
            return first
        }
    }
}

@Suite struct HostEndToEndTests {
    @Test func runLogsReadyAndExitsZeroOnSIGTERM() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        mkdir(folder.path + "/registry", 0o755)
        let roost = try await RoostProcess(loop: loop, arguments: ["run", "--state", "state"], workingDirectory: folder.path)
        let ready = await roost.waitForLine(containing: "roost ready in")
        #expect(ready != nil)
        await roost.child.signal(SIGTERM)
        // The 2 s limit is checked on the host's own clock, from the signal to the end of its stop:
        // measured from here it would include this test process's scheduling under a loaded run.
        let stopped = try #require(await roost.waitForLine(containing: "roost stopped in"))
        let milliseconds = try #require(stopped.split(separator: " ").drop { $0 != "in" }.dropFirst().first.flatMap { Double($0) })
        #expect(milliseconds < 2000)
        let status = await roost.exit(within: .seconds(30))
        #expect(status == TerminationStatus(code: 0, signal: 0))
        // The state folder was created and locked by the run.
        #expect(access(folder.path + "/state/run/host.lock", F_OK) == 0)
    }

    @Test func secondSignalDuringSlowStopExitsAtOnce() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        mkdir(folder.path + "/registry", 0o755)
        let roost = try await RoostProcess(
            loop: loop, arguments: ["run", "--state", "state", "--debug-stop-delay-ms", "30000"],
            workingDirectory: folder.path)
        #expect(await roost.waitForLine(containing: "roost ready in") != nil)
        await roost.child.signal(SIGTERM)
        #expect(await roost.waitForLine(containing: "stopping") != nil)
        let clock = ContinuousClock()
        let sent = clock.now
        await roost.child.signal(SIGINT)
        let status = await roost.exit(within: .seconds(30))
        #expect(status == TerminationStatus(code: 128 + SIGINT, signal: 0))
        // Far below the 30 s the first stop would take; generous for a loaded test runner.
        #expect(clock.now - sent < .seconds(10))
    }

    @Test func jsonLogFormatWritesOneObjectPerLine() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        mkdir(folder.path + "/registry", 0o755)
        let roost = try await RoostProcess(loop: loop, arguments: ["run", "--state", "s", "--log-format", "json"],
                                           workingDirectory: folder.path)
        let line = try #require(await roost.waitForLine(containing: "ready"))
        let object = try JSON.parse(line)
        #expect(object["level"] == "info")
        #expect(object["message"]?.stringValue?.hasPrefix("roost ready in") == true)
        #expect(object["state"] == "s")
        await roost.child.signal(SIGTERM)
        #expect(await roost.exit(within: .seconds(30)) == TerminationStatus(code: 0, signal: 0))
    }

    @Test(arguments: [
        (["run", "--bogus"], "Unknown option '--bogus'"),
        (["run", "--registry", "missing"], "registry folder 'missing' cannot be read"),
        (["run", "--state", "blocker/state"], "state folder 'blocker/state'"),
        (["run", "--log-format", "xml"], "--log-format"),
        (["run", "--log-level", "LOUD"], "one of the following: trace, debug, info, notice, warning, error, critical"),
    ])
    func badInputExitsTwoWithOneLine(arguments: [String], message: String) async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        mkdir(folder.path + "/registry", 0o755)
        // A plain file where the state folder's parent should be.
        let blocker = open(folder.path + "/blocker", O_CREAT | O_WRONLY, 0o644)
        close(blocker)
        let roost = try await RoostProcess(loop: loop, arguments: arguments, workingDirectory: folder.path)
        var output: [String] = []
        for await line in roost.lines { output.append(line) }
        let status = await roost.exit(within: .seconds(30))
        #expect(status == TerminationStatus(code: 2, signal: 0))
        #expect(output.count == 1)
        #expect(output.first?.contains(message) == true, "\(output)")
        // Nothing half-created: only what the test made is in the folder.
        let entries = try listFolder(folder.path)
        #expect(entries == ["blocker", "registry"])
    }

    @Test func secondHostOnTheSameStateFolderIsRefused() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        mkdir(folder.path + "/registry", 0o755)
        let first = try await RoostProcess(loop: loop, arguments: ["run", "--state", "state"], workingDirectory: folder.path)
        #expect(await first.waitForLine(containing: "roost ready in") != nil)
        let second = try await RoostProcess(loop: loop, arguments: ["run", "--state", "state"], workingDirectory: folder.path)
        let refusal = await second.waitForLine(containing: "in use by another roost host")
        #expect(refusal?.contains("pid \(first.child.pid)") == true)
        #expect(await second.exit(within: .seconds(30)) == TerminationStatus(code: 2, signal: 0))
        await first.child.signal(SIGTERM)
        #expect(await first.exit(within: .seconds(30)) == TerminationStatus(code: 0, signal: 0))
    }

    @Test func versionAndHelpExitZero() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        for arguments in [["version"], ["--help"], ["run", "--help"]] {
            var options = ProcessOptions([try roostExecutable()] + arguments)
            options.stdout = .pipe
            let child = try await ChildProcess.spawn(on: loop, options)
            let text = String(decoding: try await child.stdout!.readAll(), as: UTF8.self)
            #expect(try await child.wait() == TerminationStatus(code: 0, signal: 0))
            if arguments == ["version"] { #expect(text == "roost \(RoostVersion.string)\n") }
            if arguments == ["run", "--help"] {
                for option in ["--registry", "--state", "--log-level", "--log-format"] { #expect(text.contains(option)) }
                #expect(!text.contains("debug-stop-delay"))
            }
        }
    }
}

func listFolder(_ path: String) throws -> [String] {
    guard let dir = opendir(path) else { throw UVError(-errno, "opendir \(path)") }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names.sorted()
}
