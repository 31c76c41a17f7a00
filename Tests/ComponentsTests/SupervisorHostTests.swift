import Core
import Glibc
import Testing

/// Whether `pid` is a live (not zombie) process.
func isAlive(_ pid: Int32) -> Bool {
    let fd = open("/proc/\(pid)/stat", O_RDONLY)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 512)
    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
    guard n > 0, let close = buffer[0..<n].lastIndex(of: UInt8(ascii: ")")), close + 2 < n else { return false }
    return buffer[close + 2] != UInt8(ascii: "Z")
}

@Suite(.timeLimit(.minutes(2))) struct SupervisorHostTests {
    static let family = """
        namespace: app
        entries:
          - name: family
            kind: swiftlet.service
            exec: [/bin/sh, -c, 'sleep 1000 & sleep 1000 & wait']
            lifecycle: {auto_start: true}
        """

    /// The service's main pid and the other members of its group, from `roost ps --tree --json`.
    func processes(_ live: LiveHost) async throws -> (main: Int32, others: [Int32]) {
        while true {
            let result = try await live.roost(["ps", "--tree", "--json"])
            let services = try JSON.parse(result.out.joined())["services"]
            if case .array(let list)? = services, let service = list.first, let main = service["pid"]?.intValue,
                case .array(let members)? = service["processes"], members.count == 3 {
                let others = members.compactMap { $0["pid"]?.intValue.map(Int32.init) }.filter { $0 != Int32(main) }
                return (Int32(main), others)
            }
            try await live.loop.sleep(for: .milliseconds(20))  // the grandchildren are being started
        }
    }

    @Test func afterAKillNineOfTheHostNoChildOrGrandchildSurvivesTheNextBoot() async throws {
        let live = try LiveHost(files: ["app.yaml": Self.family])
        #expect(try await live.start())
        let (main, grandchildren) = try await processes(live)
        #expect(grandchildren.count == 2)

        let host = try #require(live.host)
        await host.child.signal(SIGKILL)
        _ = await host.exit(within: .seconds(10))
        live.host = nil
        // The direct child dies with the host (parent-death signal); give the kernel a moment.
        var waited = 0
        while isAlive(main), waited < 2000 { try await live.loop.sleep(for: .milliseconds(1)); waited += 1 }
        #expect(!isAlive(main))
        // Its children were not the host's: they are still there until the next boot.
        #expect(grandchildren.allSatisfy(isAlive))

        #expect(try await live.start())
        #expect(grandchildren.allSatisfy { !isAlive($0) })
        let (newMain, newGrandchildren) = try await processes(live)
        #expect(await live.stop() == ok)
        #expect(!isAlive(newMain) && newGrandchildren.allSatisfy { !isAlive($0) })
        await live.close()
    }

    @Test func psStartStopRestartAndLogsOnALiveHost() async throws {
        let live = try LiveHost(files: ["app.yaml": """
            namespace: app
            entries:
              - name: talker
                kind: swiftlet.service
                exec: [/bin/sh, -c, 'echo hello from $ROOST_SERVICE; exec sleep 1000']
                lifecycle: {auto_start: true}
            """])
        #expect(try await live.start())
        var result = try await live.roost(["ps"])
        #expect(result.out.first?.split(separator: " ", omittingEmptySubsequences: true) == ["SERVICE", "STATE", "PID", "UPTIME", "RESTARTS", "LAST", "EXIT"])
        #expect(result.out.dropFirst().first?.hasPrefix("app:talker  running") == true)
        result = try await live.roost(["stop", "app:talker"])
        #expect(result.status == ok)
        #expect(result.out.first?.hasPrefix("app:talker: stopped") == true)
        result = try await live.roost(["start", "app:talker"])
        #expect(result.out.first?.hasPrefix("app:talker: running (pid ") == true)
        result = try await live.roost(["restart", "app:talker", "--json"])
        #expect(try JSON.parse(result.out.joined())["service"]?["state"] == "running")
        result = try await live.roost(["logs", "app:talker", "-n", "2"])
        #expect(result.out.count == 2)
        #expect(result.out.allSatisfy { $0.hasSuffix("hello from app:talker") })
        result = try await live.roost(["stop", "app:nothing"])
        #expect(result.status == TerminationStatus(code: 1, signal: 0))
        #expect(result.err == ["roost: there is no service app:nothing"])
        #expect(await live.stop() == ok)
        await live.close()
    }
}
