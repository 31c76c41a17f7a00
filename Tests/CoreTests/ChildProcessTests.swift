import CLibUV
import CSpawn
import Core
import Glibc
import Testing
import TestSupport

// MARK: Helpers

private enum DeadlineRace<T: Sendable>: Sendable {
    case finished(Result<T, any Error>)
    case expired
    case cancelled
}

/// Runs `body`; if it has not finished after `limit`, records a failure and runs `unblock` (kill the
/// child, close the watcher) so the body ends instead of hanging the whole run.
/// The guard sleeps on the global clock, not the loop, so it adds no handle to the loop under test.
func withDeadline<T: Sendable>(
    _ what: String,
    within limit: Duration,
    sourceLocation: SourceLocation = #_sourceLocation,
    unblock: @escaping @Sendable () async -> Void,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    let outcome = await withTaskGroup(of: DeadlineRace<T>.self) { group -> Result<T, any Error> in
        group.addTask {
            do { return .finished(.success(try await body())) } catch { return .finished(.failure(error)) }
        }
        group.addTask {
            do { try await Task.sleep(for: limit) } catch { return .cancelled }
            return .expired
        }
        var result: Result<T, any Error>?
        while let race = await group.next() {
            switch race {
            case .finished(let finished):
                result = finished
                group.cancelAll()
            case .expired:
                Issue.record("\(what): not finished after \(limit)", sourceLocation: sourceLocation)
                await unblock()
            case .cancelled:
                break
            }
        }
        return result!
    }
    return try outcome.get()
}

/// Spawns `options` for the length of `body`, under a deadline. Afterwards the child's whole group
/// is killed (nothing happens when it has already ended) and the child reaped, so no test leaves a
/// process behind, not even a failing one.
func withChild<T: Sendable>(
    on loop: EventLoop,
    _ options: ProcessOptions,
    limit: Duration = .seconds(30),
    sourceLocation: SourceLocation = #_sourceLocation,
    _ body: @escaping @Sendable (ChildProcess) async throws -> T
) async throws -> T {
    let child = try await ChildProcess.spawn(on: loop, options)
    let result: Result<T, any Error>
    do {
        result = .success(try await withDeadline("child \(options.arguments)", within: limit,
                                                 sourceLocation: sourceLocation,
                                                 unblock: { await stopAndClose(child) }) { try await body(child) })
    } catch {
        result = .failure(error)
    }
    await stopAndClose(child)
    _ = try await child.wait()
    return try result.get()
}

/// Kills the child's group and closes its pipes, which ends every read, write and `wait()` on it.
/// Stdin is closed first: a write into the pipe of a dead child would raise SIGPIPE in the test process.
private func stopAndClose(_ child: ChildProcess) async {
    await child.stdin?.close()
    await child.signalGroup(SIGKILL)
    for channel in [child.stdout, child.stderr] { await channel?.close() }
}

/// The bytes up to the first newline (without it), or nil when the stream ended before one.
private func readLine(_ channel: StreamChannel) async throws -> String? {
    var bytes: [UInt8] = []
    while !bytes.contains(UInt8(ascii: "\n")) {
        guard let chunk = try await channel.read() else { return nil }
        bytes += chunk
    }
    return String(decoding: bytes.prefix { $0 != UInt8(ascii: "\n") }, as: UTF8.self)
}

/// Handles of the loop that are open and not closing, besides the loop's two wakeups (its only async and idle handles).
/// Loop thread only.
func openHandleCount(_ loop: EventLoop) -> Int {
    var count = 0
    withUnsafeMutablePointer(to: &count) { counter in
        uv_walk(loop.uv, { handle, arg in
            // The loop's own wakeups (an async and an idle handle) are not counted.
            guard let handle, uv_is_closing(handle) == 0, handle.pointee.type != UV_ASYNC, handle.pointee.type != UV_IDLE else { return }
            arg!.assumingMemoryBound(to: Int.self).pointee += 1
        }, counter)
    }
    return count
}

/// The whole content of a (small) file, or nil when it cannot be opened.
func readTextFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes += buffer[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// State, process group and session of `pid` from /proc, or nil when there is no such process.
func processStat(_ pid: Int32) -> (state: Character, pgid: Int32, session: Int32)? {
    // The command name in parentheses may hold spaces; the fields after it do not.
    guard let text = readTextFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 4, let state = fields[0].first,
          let pgid = Int32(fields[2]), let session = Int32(fields[3]) else { return nil }
    return (state, pgid, session)
}

/// True once `pid` runs no more: there is no such process, or only its zombie is left.
/// A zombie counts: it has ended, and only waits for PID 1 to reap it, which some containers' PID 1
/// does late (this one: about a second) or never.
func hasEnded(_ pid: Int32) -> Bool {
    if kill(pid, 0) == -1 && errno == ESRCH { return true }
    return processStat(pid).map { $0.state == "Z" } ?? true
}

/// Whether a grandchild ends within `limit`.
/// Polling only here: a grandchild is the shell's child, not ours. Once the shell dies it is
/// re-parented (to PID 1), so no `wait()` of ours and no SIGCHLD of the loop can report its end.
func grandchildEnds(_ pid: Int32, on loop: EventLoop, within limit: Duration = .seconds(10)) async throws -> Bool {
    let deadline = ContinuousClock.now + limit
    while ContinuousClock.now < deadline {
        if hasEnded(pid) { return true }
        try await loop.sleep(for: .milliseconds(10))
    }
    return hasEnded(pid)
}

/// Starts `count` waiters on the child's own executor. They run, and park in `wait()`, before any
/// job enqueued on the loop after this call (the loop runs jobs in FIFO order).
private func startWaiters(_ child: isolated ChildProcess, count: Int) -> [Task<TerminationStatus, Error>] {
    (0..<count).map { _ in Task { try await child.wait() } }
}

private func options(_ arguments: [String], stdin: ProcessOptions.Stdio = .null,
                     stdout: ProcessOptions.Stdio = .null, stderr: ProcessOptions.Stdio = .null,
                     environment: [String: String]? = nil, workingDirectory: String? = nil) -> ProcessOptions {
    var options = ProcessOptions(arguments, environment: environment, workingDirectory: workingDirectory)
    options.stdin = stdin
    options.stdout = stdout
    options.stderr = stderr
    return options
}

// MARK: Tests

@Suite struct ChildProcessTests {
    // MARK: Exit status

    @Test func exitCodeIsReported() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        try await withChild(on: loop, options(["/bin/sh", "-c", "exit 3"])) { child in
            let status = try await child.wait()
            #expect(status == TerminationStatus(code: 3, signal: 0))
            #expect(!status.succeeded)
            #expect(status.description == "exit code 3")
            #expect(await child.exitStatus == status)
        }
        try await withChild(on: loop, options(["/bin/true"])) { child in
            let status = try await child.wait()
            #expect(status == TerminationStatus(code: 0, signal: 0))
            #expect(status.succeeded)
        }
    }

    @Test func killedProcessReportsTheSignal() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        try await withChild(on: loop, options(["/bin/sleep", "30"])) { child in
            #expect(await child.exitStatus == nil)
            #expect(await child.signal(SIGKILL))
            let status = try await child.wait()
            #expect(status == TerminationStatus(code: 0, signal: SIGKILL))
            #expect(!status.succeeded)
            #expect(status.description == "killed by signal 9 (SIGKILL)")
        }
    }

    @Test func signalAfterExitReturnsFalse() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        try await withChild(on: loop, options(["/bin/true"])) { child in
            _ = try await child.wait()
            #expect(await child.signal(SIGTERM) == false)
            // Its group was the child alone, so nothing is left to signal there either.
            #expect(await child.signalGroup(SIGTERM) == false)
        }
    }


    @Test func exitCallbacksRunOnTheLoopBeforeAndAfterTheExit() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        try await withChild(on: loop, options(["/bin/sh", "-c", "read line; exit 7"], stdin: .pipe)) { child in
            // One registered while the child runs, one after it has been reaped.
            let (early, earlyDone) = AsyncStream.makeStream(of: TerminationStatus?.self)
            await child.onExit { status in
                #expect(loop.inLoop)
                earlyDone.yield(status)
            }
            try await child.stdin!.write(Array("go\n".utf8))
            var statuses = early.makeAsyncIterator()
            let first = await statuses.next()
            #expect(first == TerminationStatus(code: 7, signal: 0))
            let (late, lateDone) = AsyncStream.makeStream(of: TerminationStatus?.self)
            await child.onExit { lateDone.yield($0) }
            var lateStatuses = late.makeAsyncIterator()
            #expect(await lateStatuses.next() == TerminationStatus(code: 7, signal: 0))
        }
    }

    @Test func anExitCallbackHearsNilWhenTheLoopShutsDownFirst() async throws {
        let loop = EventLoop()
        let child = try await ChildProcess.spawn(on: loop, options(["/bin/sleep", "30"]))
        let (heard, done) = AsyncStream.makeStream(of: TerminationStatus?.self)
        await child.onExit { done.yield($0) }
        await loop.shutdownGracefully()
        var iterator = heard.makeAsyncIterator()
        let status = await iterator.next()
        #expect(status == .some(nil))
        // The owner stops what it started.
        kill(child.pid, SIGKILL)
        var raw: Int32 = 0
        while waitpid(child.pid, &raw, 0) < 0 && errno == EINTR {}
    }
    // MARK: Failing to start

    @Test func spawningMissingProgramThrowsENOENTAndLeavesNothingOpen() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }  // must return: nothing of the failed spawn is left to wait for
        // The count sees a live child and its pipes, so zero below means they were closed.
        let live = options(["/bin/cat"], stdin: .pipe, stdout: .pipe, stderr: .pipe)
        try await withChild(on: loop, live) { child in
            let open = try await loop.submit { openHandleCount(loop) }
            #expect(open == 4)
            await child.stdin?.close()
            _ = try await child.wait()
        }

        let missing = options(["/nonexistent/roost-no-such-program"], stdin: .pipe, stdout: .pipe, stderr: .pipe)
        let error = await #expect(throws: UVError.self) { _ = try await ChildProcess.spawn(on: loop, missing) }
        #expect(error?.code == UV_ENOENT.rawValue)
        #expect(error?.description.contains("/nonexistent/roost-no-such-program") == true)
        #expect(try await loop.submit { openHandleCount(loop) } == 0)

        // Looked up in PATH, too.
        let unknown = options(["roost-no-such-program-\(getpid())"])
        let lookup = await #expect(throws: UVError.self) { _ = try await ChildProcess.spawn(on: loop, unknown) }
        #expect(lookup?.code == UV_ENOENT.rawValue)
        #expect(try await loop.submit { openHandleCount(loop) } == 0)
    }

    @Test func spawningNonExecutableFileThrowsEACCES() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let directory = try #require(makeTemporaryDirectory())
        defer { removeTree(directory) }
        let script = directory + "/script"
        try #require(writeFile(script, Array("#!/bin/sh\nexit 0\n".utf8), mode: 0o644))
        let error = await #expect(throws: UVError.self) {
            _ = try await ChildProcess.spawn(on: loop, options([script]))
        }
        #expect(error?.code == UV_EACCES.rawValue)
        #expect(try await loop.submit { openHandleCount(loop) } == 0)
    }

    @Test func missingWorkingDirectoryThrowsENOENT() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let directory = try #require(makeTemporaryDirectory())
        defer { removeTree(directory) }
        let error = await #expect(throws: UVError.self) {
            _ = try await ChildProcess.spawn(on: loop, options(["/bin/true"], stdout: .pipe,
                                                                workingDirectory: directory + "/missing"))
        }
        #expect(error?.code == UV_ENOENT.rawValue)
        #expect(try await loop.submit { openHandleCount(loop) } == 0)
    }

    // MARK: What reaches the child

    @Test func argumentsReachTheChildVerbatim() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let arguments = ["/bin/sh", "-c", #"printf '%s|' "$0" "$@""#, "zero", "a", "b c", "", "ünï", "$HOME"]
        try await withChild(on: loop, options(arguments, stdout: .pipe)) { child in
            #expect(child.arguments == arguments)
            let output = try await #require(child.stdout).readAll()
            #expect(String(decoding: output, as: UTF8.self) == "zero|a|b c||ünï|$HOME|")
            #expect(try await child.wait().succeeded)
        }
    }

    @Test func environmentIsExactlyWhatWasGiven() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let environment = ["A": "1", "B": "two words", "EMPTY": ""]
        try await withChild(on: loop, options(["/usr/bin/env"], stdout: .pipe, environment: environment)) { child in
            let output = String(decoding: try await #require(child.stdout).readAll(), as: UTF8.self)
            let lines = output.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            #expect(lines.sorted() == ["", "A=1", "B=two words", "EMPTY="])
            #expect(try await child.wait().succeeded)
        }
        // Through a shell: the variable arrives and the host's HOME does not. (PATH is no test here:
        // dash sets a default PATH of its own when none is given.)
        let shell = options(["/bin/sh", "-c", "echo $A; echo ${HOME-unset}"], stdout: .pipe, environment: ["A": "1"])
        try await withChild(on: loop, shell) { child in
            let output = String(decoding: try await #require(child.stdout).readAll(), as: UTF8.self)
            #expect(output == "1\nunset\n")
            #expect(try await child.wait().succeeded)
        }
    }

    @Test func noEnvironmentPassesTheHosts() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let path = try #require(getenv("PATH").map { String(cString: $0) })
        try await withChild(on: loop, options(["/usr/bin/env"], stdout: .pipe)) { child in
            let output = String(decoding: try await #require(child.stdout).readAll(), as: UTF8.self)
            #expect(output.split(separator: "\n").contains("PATH=\(path)"[...]))
            #expect(try await child.wait().succeeded)
        }
    }

    @Test func workingDirectoryIsTheChildsCurrentDirectory() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let directory = try #require(makeTemporaryDirectory())
        defer { removeTree(directory) }
        let resolved = try #require(realpath(directory, nil))
        let expected = String(cString: resolved)
        free(resolved)
        try await withChild(on: loop, options(["/bin/sh", "-c", "pwd -P"], stdout: .pipe,
                                              workingDirectory: directory)) { child in
            let output = String(decoding: try await #require(child.stdout).readAll(), as: UTF8.self)
            #expect(output == expected + "\n")
            #expect(try await child.wait().succeeded)
        }
    }

    // MARK: Pipes

    @Test func stdinPipeReachesTheChild() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        try await withChild(on: loop, options(["/bin/cat"], stdin: .pipe, stdout: .pipe)) { child in
            let stdin = try #require(child.stdin)
            let stdout = try #require(child.stdout)
            #expect(child.stderr == nil)
            let message = Array("hello, child\nsecond line without newline".utf8)
            try await stdin.write(message)
            try await stdin.shutdownWrite()
            #expect(try await stdout.readAll() == message)
            #expect(try await child.wait() == TerminationStatus(code: 0, signal: 0))
        }
    }

    @Test func pipesStreamTenMebibytesBothWaysWithoutDeadlock() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let total = 10 * 1024 * 1024
        // `cat` echoes stdin while a sibling floods stderr at the same time; the shell waits for both.
        let script = "head -c \(total) /dev/zero >&2 & cat; wait"
        let payload = pattern(total)
        try await withChild(on: loop, options(["/bin/sh", "-c", script], stdin: .pipe, stdout: .pipe, stderr: .pipe),
                            limit: .seconds(60)) { child in
            let stdin = try #require(child.stdin)
            let stdout = try #require(child.stdout)
            let stderr = try #require(child.stderr)
            async let sent: Void = {
                var offset = 0
                while offset < total {
                    let end = min(offset + 100_000, total)
                    try await stdin.write(Array(payload[offset..<end]))
                    offset = end
                }
                try await stdin.shutdownWrite()
            }()
            async let echoed = stdout.readAll(limit: total)
            async let flooded = stderr.readAll(limit: total)
            let (out, err) = try await (echoed, flooded)
            try await sent
            #expect(out.count == total)
            #expect(firstDifference(out, payload) == nil)
            #expect(err.count == total)
            #expect(err.allSatisfy { $0 == 0 })
            #expect(try await child.wait() == TerminationStatus(code: 0, signal: 0))
        }
    }

    @Test func defaultStdinIsDevNull() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        #expect(ProcessOptions(["/bin/cat"]).stdin == .null)
        var catOptions = ProcessOptions(["/bin/cat"])
        catOptions.stdout = .pipe
        try await withChild(on: loop, catOptions) { child in
            #expect(child.stdin == nil)
            let output = try await #require(child.stdout).readAll()
            #expect(output.isEmpty)
            #expect(try await child.wait() == TerminationStatus(code: 0, signal: 0))
        }
        var shellOptions = ProcessOptions(["/bin/sh", "-c", "readlink /proc/$$/fd/0"])
        shellOptions.stdout = .pipe
        try await withChild(on: loop, shellOptions) { child in
            let output = String(decoding: try await #require(child.stdout).readAll(), as: UTF8.self)
            #expect(output == "/dev/null\n")
            #expect(try await child.wait().succeeded)
        }
    }

    // MARK: Process groups

    @Test func childLeadsItsOwnProcessGroupAndSession() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        // `cat` blocks on its stdin pipe, so it is alive while /proc is read.
        try await withChild(on: loop, options(["/bin/cat"], stdin: .pipe)) { child in
            #expect(child.inOwnProcessGroup)
            let stat = try #require(processStat(child.pid))
            #expect(stat.pgid == child.pid)
            #expect(stat.session == child.pid)
            try await #require(child.stdin).shutdownWrite()
            #expect(try await child.wait().succeeded)
        }
    }

    @Test func childWithNewGroupLeadsAGroupInTheHostsSession() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        var catOptions = options(["/bin/cat"], stdin: .pipe)
        catOptions.grouping = .newGroup
        try await withChild(on: loop, catOptions) { child in
            #expect(child.inOwnProcessGroup)
            let stat = try #require(processStat(child.pid))
            #expect(stat.pgid == child.pid)
            #expect(stat.session == getsid(0))
            try await #require(child.stdin).shutdownWrite()
            #expect(try await child.wait().succeeded)
        }
    }

    @Test func childWithoutNewProcessGroupStaysInTheHostsGroup() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        var catOptions = options(["/bin/cat"], stdin: .pipe)
        catOptions.grouping = .host
        try await withChild(on: loop, catOptions) { child in
            #expect(!child.inOwnProcessGroup)
            let stat = try #require(processStat(child.pid))
            #expect(stat.pgid == getpgrp())
            try await #require(child.stdin).shutdownWrite()
            #expect(try await child.wait().succeeded)
        }
    }

    @Test func signalGroupEndsTheShellAndItsBackgroundGrandchild() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let shell = options(["/bin/sh", "-c", "sleep 30 & echo $!; wait"], stdout: .pipe)
        try await withChild(on: loop, shell) { child in
            let stdout = try #require(child.stdout)
            let grandchild = try #require(try await readLine(stdout).flatMap { Int32($0) })
            #expect(processStat(grandchild)?.pgid == child.pid)
            #expect(await child.signalGroup(SIGTERM))
            #expect(try await child.wait() == TerminationStatus(code: 0, signal: SIGTERM))
            // The grandchild shares the stdout pipe: its end of stream means the grandchild has exited.
            #expect(try await stdout.readAll().isEmpty)
            #expect(try await grandchildEnds(grandchild, on: loop))
        }
    }

    @Test func signalGroupReachesTheGroupAfterTheLeaderExited() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let shell = options(["/bin/sh", "-c", "sleep 30 & echo $!"], stdout: .pipe)
        try await withChild(on: loop, shell) { child in
            let stdout = try #require(child.stdout)
            let grandchild = try #require(try await readLine(stdout).flatMap { Int32($0) })
            #expect(try await child.wait() == TerminationStatus(code: 0, signal: 0))
            #expect(!hasEnded(grandchild))
            #expect(await child.signal(SIGTERM) == false)  // the leader is reaped: never signalled again
            #expect(await child.signalGroup(SIGTERM))
            #expect(try await stdout.readAll().isEmpty)
            #expect(try await grandchildEnds(grandchild, on: loop))
        }
    }

    // MARK: Waiting

    @Test func everyWaiterGetsTheSameStatusBeforeAndAfterExit() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        // The shell ends, with code 7, once it has read one line.
        let shell = options(["/bin/sh", "-c", "read line; exit 7"], stdin: .pipe)
        try await withChild(on: loop, shell) { child in
            let early = await startWaiters(child, count: 5)
            // Runs after the waiters' first jobs: they are all parked, and the child still runs.
            #expect(await child.exitStatus == nil)
            try await #require(child.stdin).write(Array("go\n".utf8))
            var statuses: [TerminationStatus] = []
            for waiter in early { statuses.append(try await waiter.value) }
            let late = try await withThrowingTaskGroup(of: TerminationStatus.self) { group in
                for _ in 0..<5 { group.addTask { try await child.wait() } }
                return try await group.reduce(into: [TerminationStatus]()) { $0.append($1) }
            }
            statuses += late
            #expect(statuses.count == 10)
            #expect(statuses.allSatisfy { $0 == TerminationStatus(code: 7, signal: 0) })
            #expect(await child.exitStatus == TerminationStatus(code: 7, signal: 0))
        }
    }

    /// When the loop shuts down under a running child, its status cannot be known: parked and later
    /// `wait()` calls fail with `UVError.closed` instead of hanging.
    @Test func loopShutdownFailsWaitersOfARunningChild() async throws {
        let loop = EventLoop()
        let child = try await ChildProcess.spawn(on: loop, options(["/bin/sleep", "30"]))
        let waiters = await startWaiters(child, count: 1)
        #expect(await child.exitStatus == nil)  // the waiter is parked
        await loop.shutdownGracefully()

        // A hang guard only: the waiter must end well before it.
        let (ends, end) = AsyncStream.makeStream(of: Result<TerminationStatus, Error>?.self)
        Task { end.yield(await waiters[0].result) }
        Task { try? await Task.sleep(for: .seconds(10)); end.yield(nil) }
        var first = ends.makeAsyncIterator()
        let outcome = try #require(await first.next() ?? nil, "wait() still suspended 10 s after the loop shut down")
        let error = #expect(throws: UVError.self) { try outcome.get() }
        #expect(error?.isClosed == true)

        // The loop is gone, so nobody reaps the child but us.
        kill(child.pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(child.pid, &status, 0) == -1 && errno == EINTR {}
    }

    /// The threads that start children leave SIGCHLD unblocked, so the kernel drops each child's
    /// exit signal (the host has no handler) instead of queueing it for the process, where it woke
    /// the main thread, a context switch per CGI request, only to be discarded.
    @Test func spawningThreadsLeaveSIGCHLDUnblocked() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let child = try await ChildProcess.spawn(on: loop, ProcessOptions(["/bin/true"]))
        _ = try await child.wait()
        var spawners = 0
        for task in listDirectory("/proc/self/task") ?? [] {
            let folder = "/proc/self/task/\(task)"
            guard readSmallFile(folder + "/comm")?.hasPrefix("roost-spawn-") == true,
                  let status = readSmallFile(folder + "/status"),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("SigBlk:") }),
                  let blocked = UInt64(line.dropFirst("SigBlk:".count).trimmingPrefix(while: { $0 == "\t" || $0 == " " }), radix: 16)
            else { continue }
            spawners += 1
            #expect(blocked & (1 << UInt64(SIGCHLD - 1)) == 0, "\(folder) blocks SIGCHLD: SigBlk \(line)")
        }
        #expect(spawners >= 2)
    }

    /// Writing to the stdin of a child that has exited is an EPIPE error, not a SIGPIPE that ends the
    /// writing process (the loop ignores SIGPIPE). Runs as an exit test, in a process of its own,
    /// so a regression cannot end the whole test run.
    @Test func writingToStdinOfExitedChildThrowsEPIPE() async {
        await #expect(processExitsWith: .success) {
            let loop = EventLoop()
            defer { loop.shutdown() }
            var options = ProcessOptions(["/bin/true"])
            options.stdin = .pipe
            let child = try await ChildProcess.spawn(on: loop, options)
            _ = try await child.wait()
            guard let stdin = child.stdin else { exit(2) }
            do {
                try await stdin.write(Array("too late".utf8))
                exit(3)
            } catch let error as UVError where error.name == "EPIPE" {
                await stdin.close()
            }
        }
    }
}

/// What the child starts with besides its arguments: the spawn happens in the host's memory, so
/// these check that nothing of the host's state leaks into the program. One at a time: one of them
/// changes the process's signal dispositions for a moment, which another's child must not see.
@Suite(.serialized) struct ChildProcessStartStateTests {
    /// The fields of the child's /proc/self/status.
    private func childStatus(on loop: EventLoop) async throws -> [String: String] {
        try await withChild(on: loop, options(["/bin/cat", "/proc/self/status"], stdout: .pipe)) { child in
            let status = String(decoding: try await #require(child.stdout).readAll(), as: UTF8.self)
            #expect(try await child.wait().succeeded)
            return Dictionary(status.split(separator: "\n").compactMap { line -> (String, String)? in
                guard let colon = line.firstIndex(of: ":") else { return nil }
                return (String(line[..<colon]), line[line.index(after: colon)...].split(whereSeparator: \.isWhitespace).first.map(String.init) ?? "")
            }, uniquingKeysWith: { a, _ in a })
        }
    }

    /// The host ignores SIGPIPE and its threads block signals; the program gets neither, whether
    /// the kernel cleared the host's handlers at the clone (clone3) or the child reset each signal.
    @Test(arguments: [true, false]) func signalsStartAtTheirDefaults(clone3: Bool) async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        _ = signal(SIGPIPE, SIG_IGN)  // as every roost host does
        roost_spawn_use_clone3(clone3 ? 1 : 0)
        defer { roost_spawn_use_clone3(1) }
        let fields = try await childStatus(on: loop)
        #expect(fields["SigIgn"] == "0000000000000000")
        #expect(fields["SigBlk"] == "0000000000000000")
    }

    /// A signal the host comes to ignore after its first spawns is not ignored by the programs it
    /// starts next, once the host has said so (`roost_spawn_signals_changed`).
    @Test func aSignalIgnoredLaterIsResetToo() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        _ = try await childStatus(on: loop)  // the ignored signals are known from here on
        let previous = signal(SIGURG, SIG_IGN)
        roost_spawn_signals_changed()
        defer {
            signal(SIGURG, previous)
            roost_spawn_signals_changed()
        }
        #expect(try await childStatus(on: loop)["SigIgn"] == "0000000000000000")
    }

    /// A descriptor the host opened without close-on-exec does not reach the program. `ls` lists
    /// its own descriptors: 0, 1 and 2, and 3 for the directory it reads; an inherited one would
    /// be a fifth (the program's own listing, because a look from outside could catch the dynamic
    /// loader with a library open).
    @Test func onlyTheStandardDescriptorsReachTheProgram() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let leaky = open("/dev/null", O_RDONLY)  // no O_CLOEXEC on purpose
        try #require(leaky >= 0)
        defer { close(leaky) }
        try await withChild(on: loop, options(["/bin/ls", "/proc/self/fd"], stdout: .pipe)) { child in
            let listing = String(decoding: try await #require(child.stdout).readAll(), as: UTF8.self)
            #expect(listing.split(separator: "\n") == ["0", "1", "2", "3"])
            #expect(try await child.wait().succeeded)
        }
    }

    /// A program name without a slash is looked up in the child's own PATH when it has one.
    @Test func programIsFoundInTheChildsPath() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let folder = try #require(makeTemporaryDirectory())
        defer { removeTree(folder) }
        try #require(writeFile(folder + "/roost-only-here", Array("#!/bin/sh\nexit 7\n".utf8)))
        try #require(chmod(folder + "/roost-only-here", 0o755) == 0)
        let found = options(["roost-only-here"], environment: ["PATH": "/nonexistent:" + folder])
        let status = try await withChild(on: loop, found) { child in try await child.wait() }
        #expect(status == TerminationStatus(code: 7, signal: 0))
    }

    /// A limit and the parent-death signal are in place when the program starts.
    @Test func limitsAndParentDeathSignalApply() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        var limited = options(["/bin/sh", "-c", "ulimit -n; grep -c . /proc/self/status"], stdout: .pipe)
        limited.limits.openFiles = 77
        limited.dieWithHost = true
        try await withChild(on: loop, limited) { child in
            let output = String(decoding: try await #require(child.stdout).readAll(), as: UTF8.self)
            #expect(output.split(separator: "\n").first == "77")
            #expect(try await child.wait().succeeded)
        }
    }
}
