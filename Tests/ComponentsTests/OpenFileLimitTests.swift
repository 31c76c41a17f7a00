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

    @Test func runRaisesTheOpenFileSoftLimitToTheHardLimit() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        mkdir(folder.path + "/registry", 0o755)
        // prlimit sets a low soft limit on itself and execs roost (same pid), as a login shell's
        // default of 1,024 would.
        var options = ProcessOptions(["/usr/bin/prlimit", "--nofile=256:4096", try roostExecutable(), "run", "--state", "state"],
                                     workingDirectory: folder.path)
        options.stderr = .pipe
        options.stdout = .null
        let roost = try await ChildProcess.spawn(on: loop, options)
        var said: [UInt8] = []
        while !String(decoding: said, as: UTF8.self).contains("roost ready in"), let chunk = try await roost.stderr!.read() {
            said += chunk
        }
        #expect(String(decoding: said, as: UTF8.self).contains("roost ready in"))
        let limits = try Self.openFileLimits(of: roost.pid)
        #expect(limits.soft == "4096" && limits.hard == "4096")
        await roost.signal(SIGTERM)
        _ = try? await roost.stderr!.readAll()
        #expect(try await roost.wait() == TerminationStatus(code: 0, signal: 0))
    }
}
