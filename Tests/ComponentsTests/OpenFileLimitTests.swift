import Core
import Glibc
import Testing

@Suite(.timeLimit(.minutes(1))) struct OpenFileLimitTests {
    /// "Max open files" of /proc/PID/limits: (soft, hard).
    static func openFileLimits(of pid: Int32) throws -> (soft: String, hard: String) {
        let file = try #require(fopen("/proc/\(pid)/limits", "r"))
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard text.hasPrefix("Max open files") else { continue }
            let fields = text.dropFirst("Max open files".count).split(separator: " ")
            return (String(fields[0]), String(fields[1]))
        }
        Issue.record("no 'Max open files' line for \(pid)")
        return ("", "")
    }

    /// Runs `roost run` on an empty registry through `prefix` (a program that execs it), waits
    /// until it is ready, hands its pid to `body`, then stops it and expects a clean exit.
    private func withReadyHost(prefix: [String] = [], _ body: (Int32) throws -> Void) async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        mkdir(folder.path + "/registry", 0o755)
        var options = ProcessOptions(prefix + [try roostExecutable(), "run", "--state", "state"], workingDirectory: folder.path)
        options.stderr = .pipe
        options.stdout = .null
        options.dieWithHost = true
        let roost = try await ChildProcess.spawn(on: loop, options)
        var said: [UInt8] = []
        while !String(decoding: said, as: UTF8.self).contains("roost ready in"), let chunk = try await roost.stderr!.read() {
            said += chunk
        }
        #expect(String(decoding: said, as: UTF8.self).contains("roost ready in"))
        try body(roost.pid)
        await roost.signal(SIGTERM)
        _ = try? await roost.stderr!.readAll()
        #expect(try await roost.wait() == TerminationStatus(code: 0, signal: 0))
    }

    @Test func runRaisesTheOpenFileSoftLimitToTheHardLimit() async throws {
        // prlimit sets a low soft limit on itself and execs roost (same pid), as a login shell's
        // default of 1,024 would.
        try await withReadyHost(prefix: ["/usr/bin/prlimit", "--nofile=256:4096"]) { pid in
            let limits = try Self.openFileLimits(of: pid)
            #expect(limits.soft == "4096" && limits.hard == "4096")
        }
    }

    /// The spawn threads take their descriptor slots (a /dev/null and three slots each, at least
    /// two threads) before the host opens anything: eight descriptors or more right above the two
    /// the runtime's executor opens before `main` (an epoll and an eventfd), so that each child
    /// copies and closes no more of the host's table than those.
    @Test func theSpawnThreadsSlotsAreTheLowestDescriptors() async throws {
        try await withReadyHost { pid in
            var null: Set<Int> = []
            for fd in 3..<64 {
                var target = [CChar](repeating: 0, count: 256)
                let length = readlink("/proc/\(pid)/fd/\(fd)", &target, target.count - 1)
                if length > 0 && String(cString: target) == "/dev/null" { null.insert(fd) }
            }
            #expect(null.filter { $0 < 16 }.count >= 8, "descriptors on /dev/null: \(null.sorted())")
        }
    }
}
