import Core
import Glibc
import Testing

@testable import Supervisor

@Suite struct SurvivorRecordTests {
    /// Processes with the recorded token die; one without it, even with a token of another
    /// host, is left alone; the record is gone afterwards.
    @Test func killsExactlyTheProcessesCarryingTheRecordedToken() async throws {
        var template = Array("/tmp/roost-survivors-XXXXXX".utf8CString)
        let folder = String(cString: try #require(template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }))
        defer { unlink(folder + "/host-token"); rmdir(folder) }
        let loop = EventLoop()
        defer { loop.shutdown() }
        func sleeper(_ token: String?) async throws -> ChildProcess {
            var environment = ["PATH": "/bin:/usr/bin", "ROOST_SERVICE": "app:left"]
            environment["ROOST_HOST_TOKEN"] = token
            return try await ChildProcess.spawn(on: loop, ProcessOptions(["/bin/sleep", "60"], environment: environment))
        }
        // Random tokens: the scan sees every process on the machine, and another run of this
        // test at the same time must not find its sleepers carrying ours (nor we theirs).
        let token = String(UInt64.random(in: 1 ... .max), radix: 16)
        let marked = try await sleeper(token)
        let otherHost = try await sleeper(String(UInt64.random(in: 1 ... .max), radix: 16))
        let unmarked = try await sleeper(nil)
        defer { for child in [marked, otherHost, unmarked] { kill(child.pid, SIGKILL) } }

        let record = SurvivorRecord(runPath: folder)
        record.begin(token: token)
        #expect(access(record.path, F_OK) == 0)
        let killed = record.killSurvivors()
        #expect(killed.map(\.pid) == [marked.pid])
        #expect(killed.map(\.service) == ["app:left"])
        #expect(try await marked.wait() == TerminationStatus(code: 0, signal: SIGKILL))
        #expect(await otherHost.exitStatus == nil)
        #expect(await unmarked.exitStatus == nil)
        #expect(access(record.path, F_OK) != 0)
        // Nothing recorded: nothing to do.
        #expect(record.killSurvivors().isEmpty)

        record.begin(token: token)
        record.end()
        #expect(access(record.path, F_OK) != 0)
    }
}
