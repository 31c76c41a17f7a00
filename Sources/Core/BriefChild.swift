import CLibUV
import CSpawn

#if canImport(Glibc)
import Glibc
#endif

/// A child process for one brief exchange (a CGI request), driven by callbacks on its loop
/// instead of tasks: its stdout and stderr are read when they become readable and handed to one
/// event handler, its exit is seen as its output ends (on its pidfd when it outlives the output),
/// its timeout is a loop timer. A program whose output stays open after it exited (a process it
/// left behind holds it) is reported exited only once the output ends or the owner closes it. Starting one and
/// seeing it through costs the loop a few system calls and no task per stream, which is what
/// a process per request needs; `ChildProcess` is the general form (channels, waiting tasks).
///
/// Contract (everything below runs on the loop thread):
/// - The handler gets `.output` (stdout bytes, valid during the call only) until `.outputEnd`
///   (end of file or a read error), the same for stderr with `.diagnostics`/`.diagnosticsEnd`,
///   `.exited` once (the status once reaped; nil when the loop shut down first, the child maybe
///   still running), and `.timedOut` once if the timeout passes first. Nothing of a stream the
///   owner closed (`closeOutput`, `closeDiagnostics`) is delivered after the call.
/// - The child is reaped by this object, and only by it. Once it is reaped and both pipes are closed, the
///   timer stops and the handler is released: nothing more can happen.
/// - Loop shutdown ends every stream (their end events, then `.exited(nil)`). A child still
///   running then is not reaped here (nothing watches it any more); the owner kills it (a CGI
///   child also dies with the host).
public final class BriefChild: @unchecked Sendable {
    // @unchecked Sendable: the mutable state below is touched on the loop thread only.

    public enum Event {
        case output(UnsafeRawBufferPointer)
        case outputEnd
        case diagnostics(UnsafeRawBufferPointer)
        case diagnosticsEnd
        case exited(TerminationStatus?)
        case timedOut
    }

    public typealias Handler = @Sendable (BriefChild, Event) -> Void

    enum Stream: Int { case output = 0, diagnostics = 1, exit = 2 }

    public let loop: EventLoop
    public let pid: Int32
    /// The request body's way in, when the options asked for a stdin pipe.
    public let stdin: StreamChannel?
    public let inOwnProcessGroup: Bool
    /// The exit status, once reaped.
    public private(set) var status: TerminationStatus?

    private var handler: Handler?
    /// stdout, stderr, pidfd: open descriptors, -1 once closed. A child with an output pipe has
    /// no pidfd until it outlives its output (most never do: the kernel need not make one).
    private var descriptors: [Int32]
    /// Until the child is reaped (or, at loop shutdown, left to its owner).
    private var exitPending = true
    private var tokens: [DescriptorWatch.Token?] = [nil, nil, nil]
    private var watch: DescriptorWatch?
    private var outputPaused = false
    private var timer: UnsafeMutablePointer<uv_timer_t>?
    private var groupGone = false
    private var abandoned = false

    private init(loop: EventLoop, launched: ChildProcess.Launched, group: Bool, handler: @escaping Handler) {
        self.loop = loop
        pid = launched.pid
        stdin = launched.hostEnds[0] >= 0 ? ChildProcess.pipeChannel(launched.hostEnds[0], on: loop) : nil
        inOwnProcessGroup = group
        descriptors = [launched.hostEnds[1], launched.hostEnds[2], launched.pidfd]
        self.handler = handler
    }

    /// Starts the child (the clone on a spawn thread, as `ChildProcess.spawn` does) and watches it
    /// on `loop`. `options.stdout`/`.stderr` should be `.pipe` for their events. Throws when the
    /// child cannot be started or watched; nothing is left behind then.
    public static func start(on loop: EventLoop, _ options: ProcessOptions, timeout: Duration?,
                             handler: @escaping Handler) async throws -> BriefChild {
        guard !options.arguments.isEmpty else { throw UVError(UV_EINVAL.rawValue, "spawn: no program given") }
        if loop.isStopped { throw UVError.closed("spawn \(options.arguments[0])") }
        var outputPiped = false
        if case .pipe = options.stdout { outputPiped = true }
        let child: BriefChild = try await withCheckedThrowingContinuation { [outputPiped] continuation in
            SpawnThreads.shared.submit {
                let launched: ChildProcess.Launched
                do {
                    launched = try ChildProcess.launch(options, pollableOutput: true, pidfd: !outputPiped)
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                let accepted = loop.execute {
                    continuation.resume(with: Result {
                        try attach(launched, on: loop, options: options, timeout: timeout, handler: handler)
                    })
                }
                if !accepted {
                    discard(launched)
                    continuation.resume(throwing: UVError.closed("spawn \(options.arguments[0])"))
                }
            }
        }
        loop.spawnObserver.notify(options)
        return child
    }

    /// Kills and reaps a child nobody can watch, and closes its descriptors.
    private static func discard(_ launched: ChildProcess.Launched) {
        kill(launched.pid, SIGKILL)
        var raw: Int32 = 0
        while waitpid(launched.pid, &raw, 0) < 0 && errno == EINTR {}
        for fd in launched.hostEnds + [launched.pidfd] where fd >= 0 { Glibc.close(fd) }
    }

    private static func attach(_ launched: ChildProcess.Launched, on loop: EventLoop, options: ProcessOptions,
                               timeout: Duration?, handler: @escaping Handler) throws -> BriefChild {
        loop.preconditionInLoop()
        guard let watch = DescriptorWatch.of(loop) else {
            let error = errno
            discard(launched)
            throw UVError(-error, "spawn \(options.arguments[0]): epoll")
        }
        let child = BriefChild(loop: loop, launched: launched, group: options.grouping != .host, handler: handler)
        child.watch = watch
        // The exit is watched from the output's end on (see `followExit`), or at once without an output.
        let streams = child.descriptors[Stream.output.rawValue] >= 0 ? [Stream.output, .diagnostics] : [.diagnostics, .exit]
        for stream in streams where child.descriptors[stream.rawValue] >= 0 {
            guard let token = watch.add(child.descriptors[stream.rawValue], stream: stream, of: child) else {
                let error = errno
                child.abandon()
                throw UVError(-error, "spawn \(options.arguments[0]): epoll_ctl")
            }
            child.tokens[stream.rawValue] = token
        }
        if let timeout { child.arm(timeout) }
        return child
    }

    /// A child that could not be watched after all: killed, reaped, everything closed, no events.
    private func abandon() {
        handler = nil
        killAndReap()
        for stream in [Stream.output, .diagnostics, .exit] { close(stream) }
        if let stdin { stdin.assumeIsolated { $0.close() } }
        stopTimer()
    }

    // MARK: Owner's calls (loop thread)

    /// Stops reading stdout until `resumeOutput`: the program blocks once the pipe is full.
    public func pauseOutput() {
        guard !outputPaused, tokens[Stream.output.rawValue] != nil else { return }
        outputPaused = true
        watch?.suspend(descriptor: descriptors[Stream.output.rawValue])
    }

    public func resumeOutput() {
        guard outputPaused, let token = tokens[Stream.output.rawValue] else { return }
        outputPaused = false
        if watch?.resume(token, descriptor: descriptors[Stream.output.rawValue]) != true {
            // Cannot watch it again: the output ends here.
            close(.output)
            deliver(.outputEnd)
            followExit()
        }
    }

    /// Stops reading stdout for good; the program gets EPIPE on its next write.
    public func closeOutput() {
        guard descriptors[Stream.output.rawValue] >= 0 else { return }
        close(.output)
        followExit()
        releaseIfDone()
    }

    /// Reads what stderr holds now (delivered as `.diagnostics`), then closes it.
    public func closeDiagnostics() {
        let fd = descriptors[Stream.diagnostics.rawValue]
        guard fd >= 0 else { return }
        for _ in 0..<16 {
            let count = read(fd, loop.readScratch.baseAddress!, loop.readScratch.count)
            guard count > 0 else { break }
            deliver(.diagnostics(UnsafeRawBufferPointer(rebasing: loop.readScratch[..<count])))
            guard descriptors[Stream.diagnostics.rawValue] >= 0 else { return }
        }
        close(.diagnostics)
        releaseIfDone()
    }

    /// Sends `signal` to the child; false once it has been reaped.
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        guard status == nil, !abandoned else { return false }
        return kill(pid, signal) == 0
    }

    /// Sends `signal` to the child's process group (see `ChildProcess.signalGroup`: once the group
    /// is found empty it is never signalled again). True when some member was signalled.
    @discardableResult
    public func signalGroup(_ signal: Int32) -> Bool {
        guard inOwnProcessGroup else { return self.signal(signal) }
        guard !groupGone else { return false }
        if kill(-pid, signal) == 0 { return true }
        if errno == ESRCH { groupGone = true }
        return false
    }

    /// No `.timedOut` from now on.
    public func cancelTimeout() {
        stopTimer()
    }

    // MARK: Events

    func ready(_ stream: Stream) {
        switch stream {
        case .output, .diagnostics:
            let fd = descriptors[stream.rawValue]
            guard fd >= 0 else { return }
            let count = read(fd, loop.readScratch.baseAddress!, loop.readScratch.count)
            if count > 0 {
                let bytes = UnsafeRawBufferPointer(rebasing: loop.readScratch[..<count])
                deliver(stream == .output ? .output(bytes) : .diagnostics(bytes))
                return
            }
            if count < 0 && (errno == EAGAIN || errno == EINTR) { return }
            close(stream)
            guard stream == .output else {
                deliver(.diagnosticsEnd)
                break
            }
            // The end is told before the child is reaped: until then its zombie holds its pid and
            // group id, so an owner that kills the group now cannot hit another's.
            deliver(.outputEnd)
            followExit()
        case .exit:
            guard let termination = TerminationStatus.reap(pid) else { return }  // not yet: the poll fires again
            status = termination
            exitPending = false
            close(.exit)
            deliver(.exited(termination))
        }
        releaseIfDone()
    }

    /// The loop's watch closed (shutdown): every stream ends.
    func watchClosed(_ stream: Stream) {
        guard descriptors[stream.rawValue] >= 0 else { return }
        tokens[stream.rawValue] = nil
        Glibc.close(descriptors[stream.rawValue])
        descriptors[stream.rawValue] = -1
        switch stream {
        case .output:
            deliver(.outputEnd)
            // The exit was not watched yet, and cannot be now: reaped if the child has exited,
            // else it is left to its owner, as a watched one is.
            if let termination = reapIfExited() {
                deliver(.exited(termination))
            } else if exitPending && tokens[Stream.exit.rawValue] == nil {
                close(.exit)
                exitPending = false
                abandoned = true
                deliver(.exited(nil))
            }
        case .diagnostics: deliver(.diagnosticsEnd)
        case .exit:
            exitPending = false
            abandoned = true
            deliver(.exited(nil))
        }
        releaseIfDone()
    }

    /// Reaps the child if it has exited and its exit is not watched yet: its status then (to be
    /// delivered by the caller), else nil.
    private func reapIfExited() -> TerminationStatus? {
        guard exitPending, tokens[Stream.exit.rawValue] == nil,
              let termination = TerminationStatus.reap(pid) else { return nil }
        status = termination
        exitPending = false
        close(.exit)
        return termination
    }

    /// The output has ended, and with it, nearly always, the program: reaped here if it has
    /// exited, else a pidfd is opened (the child is not reaped, so its pid is still its own) and
    /// watched from now on. Most programs end with their output, so most spawns never have a
    /// pidfd at all (a kernel file made and closed less each, an `epoll_ctl` and an event less).
    private func followExit() {
        guard exitPending, tokens[Stream.exit.rawValue] == nil else { return }
        if let termination = reapIfExited() {
            deliver(.exited(termination))
            return
        }
        if descriptors[Stream.exit.rawValue] < 0 {
            let opened = roost_pidfd_open(pid)
            if opened >= 0 { descriptors[Stream.exit.rawValue] = opened } else { errno = -opened }
        }
        let pidfd = descriptors[Stream.exit.rawValue]
        if pidfd >= 0, let watch, let token = watch.add(pidfd, stream: .exit, of: self) {
            tokens[Stream.exit.rawValue] = token
            return
        }
        // No pidfd, or it cannot be watched (the kernel's limits): the child is not left running
        // unwatched, it is killed and reaped now.
        killAndReap()
        close(.exit)
        deliver(.exited(status))
    }

    /// Kills the child (its group first, while the child still holds the group id) and waits for it.
    private func killAndReap() {
        signalGroup(SIGKILL)
        kill(pid, SIGKILL)
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        status = TerminationStatus(code: 0, signal: SIGKILL)
        exitPending = false
    }

    private func deliver(_ event: Event) {
        handler?(self, event)
    }

    private func close(_ stream: Stream) {
        let fd = descriptors[stream.rawValue]
        guard fd >= 0 else { return }
        if let token = tokens[stream.rawValue] {
            watch?.remove(token)
            tokens[stream.rawValue] = nil
        }
        // Closing takes the descriptor out of the watch's epoll set as well.
        Glibc.close(fd)
        descriptors[stream.rawValue] = -1
    }

    private func releaseIfDone() {
        guard !exitPending, descriptors.allSatisfy({ $0 < 0 }) else { return }
        stopTimer()
        handler = nil
        watch = nil
    }

    private func arm(_ timeout: Duration) {
        let handle = LoopHandle.allocate(uv_timer_t.self)
        uv_timer_init(loop.uv, handle)
        LoopHandle.attach(handle, owner: self) { [self] in timer = nil }
        timer = handle
        uv_timer_start(handle, { h in
            let child = LoopHandle.owner(of: h!, as: BriefChild.self)
            child.stopTimer()
            child.deliver(.timedOut)
        }, EventLoop.milliseconds(timeout), 0)
    }

    private func stopTimer() {
        guard let timer else { return }
        self.timer = nil
        LoopHandle.close(timer)
    }
}

/// The descriptors of a loop's brief children, in an epoll set of their own that the loop polls
/// through one handle. Adding a descriptor is one `epoll_ctl`, and closing it takes it out; a libuv
/// poll handle per descriptor would cost five system calls (a probing add and delete, a
/// non-blocking ioctl, the add, the delete). Loop thread only.
final class DescriptorWatch {
    struct Token {
        let slot: Int
        let generation: UInt32
    }

    private struct Entry {
        let child: BriefChild
        let stream: BriefChild.Stream
    }

    private let epoll: Int32
    private let loop: EventLoop
    private var handle: UnsafeMutablePointer<uv_poll_t>?
    private var entries: [Entry?] = []
    private var generations: [UInt32] = []
    private var freeSlots: [Int] = []
    private let tags = UnsafeMutablePointer<UInt64>.allocate(capacity: 64)

    private init?(loop: EventLoop) {
        epoll = roost_watch_create()
        guard epoll >= 0 else {
            errno = -epoll
            tags.deallocate()
            return nil
        }
        self.loop = loop
        let poll = LoopHandle.allocate(uv_poll_t.self)
        let initialised = uv_poll_init(loop.uv, poll, epoll)
        guard initialised == 0 else {
            // `tags` goes with deinit, which runs for a failed init once everything is set.
            LoopHandle.free(poll)
            Glibc.close(epoll)
            errno = -initialised
            return nil
        }
        handle = poll
        LoopHandle.attach(poll, owner: self) { [self] in closed() }
        uv_poll_start(poll, Int32(UV_READABLE.rawValue)) { h, _, _ in
            LoopHandle.owner(of: h!, as: DescriptorWatch.self).dispatch()
        }
    }

    deinit { tags.deallocate() }

    /// The loop's watch, made on first use (nil when it cannot be made).
    static func of(_ loop: EventLoop) -> DescriptorWatch? {
        loop.preconditionInLoop()
        if let watch = loop.descriptorWatch { return watch }
        guard let watch = DescriptorWatch(loop: loop) else { return nil }
        loop.descriptorWatch = watch
        return watch
    }

    func add(_ descriptor: Int32, stream: BriefChild.Stream, of child: BriefChild) -> Token? {
        let slot: Int
        if let free = freeSlots.popLast() {
            slot = free
        } else {
            slot = entries.count
            entries.append(nil)
            generations.append(0)
        }
        let token = Token(slot: slot, generation: generations[slot])
        guard control(add: descriptor, token) else {
            freeSlots.append(slot)
            return nil
        }
        entries[slot] = Entry(child: child, stream: stream)
        return token
    }

    /// Forgets the descriptor's entry; the caller closes the descriptor (which leaves the set).
    func remove(_ token: Token) {
        guard token.slot < generations.count, generations[token.slot] == token.generation else { return }
        entries[token.slot] = nil
        generations[token.slot] &+= 1
        freeSlots.append(token.slot)
    }

    /// Out of the set for now; the entry stays.
    func suspend(descriptor: Int32) {
        _ = roost_watch_remove(epoll, descriptor)
    }

    func resume(_ token: Token, descriptor: Int32) -> Bool {
        control(add: descriptor, token)
    }

    private func control(add descriptor: Int32, _ token: Token) -> Bool {
        let rc = roost_watch_add(epoll, descriptor, UInt64(token.generation) << 32 | UInt64(token.slot))
        if rc < 0 { errno = -rc }
        return rc == 0
    }

    private func dispatch() {
        let count = roost_watch_ready(epoll, tags, 64)
        guard count > 0 else { return }
        for index in 0..<Int(count) {
            let data = tags[index]
            let slot = Int(data & 0xffff_ffff)
            // An entry removed by an earlier event of this batch is skipped, even if its slot was reused.
            guard slot < entries.count, generations[slot] == UInt32(data >> 32), let entry = entries[slot] else { continue }
            entry.child.ready(entry.stream)
        }
    }

    /// The loop closed the handle (shutdown): every child's streams end.
    private func closed() {
        handle = nil
        if loop.descriptorWatch === self { loop.descriptorWatch = nil }
        let remaining = entries.compactMap { $0 }
        entries = []
        generations = []
        freeSlots = []
        Glibc.close(epoll)
        for entry in remaining { entry.child.watchClosed(entry.stream) }
    }
}
