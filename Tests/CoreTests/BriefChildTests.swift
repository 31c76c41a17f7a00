import Core
import Glibc
import Synchronization
import Testing

/// What a brief child's handler was told, in a form that outlives the call.
private enum Seen: Sendable, Equatable {
    case output([UInt8])
    case outputEnd
    case diagnostics([UInt8])
    case diagnosticsEnd
    case exited(TerminationStatus?)
    case timedOut
}

/// The events of one child as a stream; `release` finishes when the handler is let go.
private final class Recorder: Sendable {
    let events: AsyncStream<Seen>
    private let sink: AsyncStream<Seen>.Continuation

    init() {
        (events, sink) = AsyncStream.makeStream(of: Seen.self)
    }

    /// The handler keeps the recorder; when the child lets the handler go, the stream ends.
    /// `pauseAtFirstOutput`: the handler pauses the output as the first bytes come (in that turn).
    func handler(pauseAtFirstOutput: Bool = false) -> BriefChild.Handler {
        let box = ReleaseSignal(sink)
        let paused = Atomic<Bool>(false)
        return { child, event in
            withExtendedLifetime(box) {}
            if pauseAtFirstOutput, case .output = event, !paused.exchange(true, ordering: .relaxed) { child.pauseOutput() }
            switch event {
            case .output(let bytes): box.sink.yield(.output(Array(bytes)))
            case .outputEnd: box.sink.yield(.outputEnd)
            case .diagnostics(let bytes): box.sink.yield(.diagnostics(Array(bytes)))
            case .diagnosticsEnd: box.sink.yield(.diagnosticsEnd)
            case .exited(let status): box.sink.yield(.exited(status))
            case .timedOut: box.sink.yield(.timedOut)
            }
        }
    }
}

private final class ReleaseSignal: Sendable {
    let sink: AsyncStream<Seen>.Continuation
    init(_ sink: AsyncStream<Seen>.Continuation) { self.sink = sink }
    deinit { sink.finish() }
}

private func shellOptions(_ script: String) -> ProcessOptions {
    var options = ProcessOptions(["/bin/sh", "-c", script])
    options.stdout = .pipe
    options.stderr = .pipe
    options.dieWithHost = true
    return options
}

/// Kills what is left of a test's child and its group, and reaps it if nobody did.
private func cleanUp(_ pid: Int32) {
    kill(-pid, SIGKILL)
    kill(pid, SIGKILL)
    var status: Int32 = 0
    _ = waitpid(pid, &status, WNOHANG)
}

/// How many of this process's descriptors are pidfds of `pid` (their fdinfo names the pid).
private func pidfds(of pid: Int32) -> Int {
    guard let folder = opendir("/proc/self/fdinfo") else { return -1 }
    defer { closedir(folder) }
    var count = 0
    while let entry = readdir(folder) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        guard let info = try? String(contentsOfFile: "/proc/self/fdinfo/\(name)", encoding: .utf8) else { continue }
        if info.split(separator: "\n").contains("Pid:\t\(pid)") { count += 1 }
    }
    return count
}

@Suite(.timeLimit(.minutes(1))) struct BriefChildTests {
    @Test func outputDiagnosticsAndExitArriveAndTheHandlerIsLetGoAfter() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let recorder = Recorder()
        let child = try await BriefChild.start(on: loop, shellOptions("printf hello; printf oops >&2; exit 3"),
                                               timeout: .seconds(30), handler: recorder.handler())
        defer { cleanUp(child.pid) }
        var output: [UInt8] = []
        var diagnostics: [UInt8] = []
        var ends = 0
        var status: TerminationStatus?
        // The stream ends only when the child has let its handler go: once reaped, both pipes closed.
        for await event in recorder.events {
            switch event {
            case .output(let bytes): output += bytes
            case .diagnostics(let bytes): diagnostics += bytes
            case .outputEnd, .diagnosticsEnd: ends += 1
            case .exited(let exit): status = exit
            case .timedOut: Issue.record("timed out")
            }
        }
        #expect(String(decoding: output, as: UTF8.self) == "hello")
        #expect(String(decoding: diagnostics, as: UTF8.self) == "oops")
        #expect(ends == 2)
        #expect(status == TerminationStatus(code: 3, signal: 0))
        #expect(try await loop.submit { child.status } == TerminationStatus(code: 3, signal: 0))
    }

    @Test func theTimeoutIsToldAndTheGroupCanBeKilledThen() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let recorder = Recorder()
        let child = try await BriefChild.start(on: loop, shellOptions("sleep 100 & sleep 100; wait"),
                                               timeout: .milliseconds(100), handler: recorder.handler())
        defer { cleanUp(child.pid) }
        var events: [Seen] = []
        for await event in recorder.events {
            events.append(event)
            if event == .timedOut {
                // As a gateway does: the whole group goes, and so do the pipes it held.
                #expect(try await loop.submit { child.signalGroup(SIGKILL) })
            }
        }
        #expect(events.first == .timedOut)
        #expect(events.contains(.exited(TerminationStatus(code: 0, signal: SIGKILL))))
        #expect(events.contains(.outputEnd) && events.contains(.diagnosticsEnd))
    }

    @Test func pausedOutputIsNotReadAndNothingIsLostOnceResumed() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let recorder = Recorder()
        let total = 1_000_000
        let child = try await BriefChild.start(on: loop, shellOptions("head -c \(total) /dev/zero"),
                                               timeout: .seconds(30), handler: recorder.handler(pauseAtFirstOutput: true))
        defer { cleanUp(child.pid) }
        var received = 0
        var iterator = recorder.events.makeAsyncIterator()
        // Paused at the first bytes, in the loop's turn that delivered them: the program cannot
        // write the rest of a megabyte into a pipe nobody reads, so it cannot have ended.
        guard case .output(let first) = await iterator.next() else {
            Issue.record("no output first")
            return
        }
        received += first.count
        try await loop.sleep(for: .milliseconds(200))
        let pausedAt = try await loop.submit { child.status }
        #expect(pausedAt == nil)
        try await loop.submit { child.resumeOutput() }
        var status: TerminationStatus?
        while let event = await iterator.next() {
            switch event {
            case .output(let bytes): received += bytes.count
            case .exited(let exit): status = exit
            default: break
            }
        }
        #expect(received == total)
        #expect(status == TerminationStatus(code: 0, signal: 0))
    }

    /// The exit is usually seen as the output ends; a program that closes its output and goes
    /// on is still seen to its exit, after the output's end.
    @Test func aProgramThatOutlivesItsOutputIsSeenToItsExit() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let recorder = Recorder()
        let child = try await BriefChild.start(on: loop, shellOptions("printf bye; exec >&-; sleep 0.3; exit 5"),
                                               timeout: .seconds(30), handler: recorder.handler())
        defer { cleanUp(child.pid) }
        var events: [Seen] = []
        for await event in recorder.events where event != .diagnosticsEnd { events.append(event) }
        #expect(events == [.output(Array("bye".utf8)), .outputEnd, .exited(TerminationStatus(code: 5, signal: 0))])
    }

    /// A child with an output pipe costs no pidfd while its output is open (its end nearly always
    /// comes with the exit, which is then reaped at once); one that outlives its output gets a
    /// pidfd at that moment, and its exit is seen through it.
    @Test func aPidfdIsOpenedOnlyOnceAProgramOutlivesItsOutput() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let flag = "/tmp/roost-brief-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(flag) }
        let recorder = Recorder()
        let child = try await BriefChild.start(
            on: loop, shellOptions("printf up; while [ ! -e \(flag) ]; do sleep 0.01; done; exec >&-; exec sleep 30"),
            timeout: .seconds(30), handler: recorder.handler())
        defer { cleanUp(child.pid) }
        var events = recorder.events.makeAsyncIterator()
        #expect(await events.next() == .output(Array("up".utf8)))
        #expect(pidfds(of: child.pid) == 0)
        #expect(creat(flag, 0o600) >= 0)
        #expect(await events.next() == .outputEnd)
        // Counted on the loop, after the turn that told the end (and opened the pidfd).
        #expect(try await loop.submit { pidfds(of: child.pid) } == 1)
        _ = loop.execute { child.signal(SIGKILL) }
        var rest: [Seen] = []
        while let event = await events.next() { rest.append(event) }
        #expect(rest.contains(.exited(TerminationStatus(code: 0, signal: SIGKILL))))
        #expect(pidfds(of: child.pid) == 0)
    }

    /// Without an output pipe there is no output's end to wait for: the exit is watched at once.
    @Test func aProgramWithoutAnOutputPipeIsSeenToItsExit() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let recorder = Recorder()
        var options = shellOptions("exit 7")
        options.stdout = .null
        let child = try await BriefChild.start(on: loop, options, timeout: .seconds(30), handler: recorder.handler())
        defer { cleanUp(child.pid) }
        var events: [Seen] = []
        for await event in recorder.events { events.append(event) }
        #expect(events.contains(.exited(TerminationStatus(code: 7, signal: 0))))
        #expect(!events.contains(.outputEnd))
    }

    @Test func theLoopShuttingDownEndsEveryStream() async throws {
        let loop = EventLoop()
        let recorder = Recorder()
        let child = try await BriefChild.start(on: loop, shellOptions("sleep 100"), timeout: nil, handler: recorder.handler())
        defer { cleanUp(child.pid) }
        await loop.shutdownGracefully()
        var events: [Seen] = []
        for await event in recorder.events { events.append(event) }
        #expect(events.contains(.outputEnd) && events.contains(.diagnosticsEnd))
        #expect(events.contains(.exited(nil)))
    }

    @Test func aProgramThatCannotStartThrowsAndLeavesNothingOpen() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        // One child first, so the loop's epoll set exists before the count.
        let warm = Recorder()
        _ = try await BriefChild.start(on: loop, shellOptions("exit 0"), timeout: nil, handler: warm.handler())
        for await _ in warm.events {}
        let before = try await loop.submit { openHandleCount(loop) }
        await #expect(throws: UVError.self) {
            _ = try await BriefChild.start(on: loop, shellOptions("").with(program: "/nonexistent/program"),
                                           timeout: .seconds(1)) { _, _ in }
        }
        #expect(try await loop.submit { openHandleCount(loop) } == before)
    }
}

private extension ProcessOptions {
    func with(program: String) -> ProcessOptions {
        var options = self
        options.arguments = [program]
        return options
    }
}
