import CLibUV
import CSpawn

#if canImport(Glibc)
import Glibc
#endif

/// How a child process exited: an exit code, or the signal that ended it.
public struct TerminationStatus: Sendable, Hashable, CustomStringConvertible {
    /// The exit code; meaningful when `signal` is 0.
    public let code: Int32
    /// The terminating signal, or 0 when the process exited by itself.
    public let signal: Int32

    public init(code: Int32, signal: Int32) {
        self.code = code
        self.signal = signal
    }

    public var succeeded: Bool { signal == 0 && code == 0 }

    public var description: String {
        if signal != 0 { return "killed by signal \(signal)" + (TerminationStatus.signalName(signal).map { " (SIG\($0))" } ?? "") }
        return "exit code \(code)"
    }

    /// Reaps `pid` if it has exited (without waiting): its status, or nil when it has not exited
    /// yet. A child someone else reaped (ECHILD) reads as exit code -1.
    static func reap(_ pid: Int32) -> TerminationStatus? {
        var raw: Int32 = 0
        let reaped = waitpid(pid, &raw, WNOHANG)
        if reaped == 0 || (reaped < 0 && errno == EINTR) { return nil }
        if reaped < 0 { return TerminationStatus(code: -1, signal: 0) }
        if raw & 0x7f == 0 { return TerminationStatus(code: (raw >> 8) & 0xff, signal: 0) }
        return TerminationStatus(code: 0, signal: raw & 0x7f)
    }

    public static func signalName(_ signal: Int32) -> String? {
        switch signal {
        case SIGHUP: "HUP"
        case SIGINT: "INT"
        case SIGQUIT: "QUIT"
        case SIGABRT: "ABRT"
        case SIGKILL: "KILL"
        case SIGSEGV: "SEGV"
        case SIGPIPE: "PIPE"
        case SIGALRM: "ALRM"
        case SIGTERM: "TERM"
        case SIGUSR1: "USR1"
        case SIGUSR2: "USR2"
        default: nil
        }
    }
}

/// What to start and how.
public struct ProcessOptions: Sendable {
    /// What a child's standard descriptor is connected to.
    public enum Stdio: Sendable, Equatable {
        /// `/dev/null`.
        case null
        /// A pipe to the host, exposed as a `StreamChannel`.
        case pipe
        /// The host's own descriptor of the same number.
        case inherit
        /// A descriptor of the host (it stays the host's to close).
        case fileDescriptor(Int32)
    }

    /// `argv`, with the program as `argv[0]`; a program without a `/` is looked up in `PATH`.
    public var arguments: [String]
    /// The whole environment of the child; `nil` passes the host's.
    public var environment: EnvironmentBlock?
    public var workingDirectory: String?
    public var stdin: Stdio = .null
    public var stdout: Stdio = .inherit
    public var stderr: Stdio = .inherit
    /// Where the child stands among the host's processes. In a group of its own (by default in a
    /// session of its own too), a signal to the group reaches everything it started.
    public var grouping = Grouping.newSession
    /// The user and group the child runs as (supplementary groups are dropped); needs a host
    /// running as root. `nil`: the host's.
    public var credentials: Credentials?
    /// Resource limits, each set as both the soft and the hard limit.
    public var limits = Limits()
    /// The kernel kills the child (SIGKILL) when the host process ends, however it ends.
    public var dieWithHost = false
    /// What the child is to the host; only counted (`ProcessSpawnObserver`), never acted on.
    public var role: ProcessRole?

    /// Where a child stands among the host's processes.
    public enum Grouping: Sendable, Equatable {
        /// In the host's process group.
        case host
        /// Leading a new process group, in the host's session (setpgid).
        case newGroup
        /// Leading a new session and its process group (setsid): nothing ties it to the host's
        /// terminal, if any. The kernel also gives each new session a scheduling group of its own.
        case newSession
    }

    public struct Credentials: Sendable, Hashable {
        public var uid: uid_t
        public var gid: gid_t
        public init(uid: uid_t, gid: gid_t) {
            self.uid = uid
            self.gid = gid
        }
    }

    public struct Limits: Sendable, Hashable {
        /// RLIMIT_NOFILE.
        public var openFiles: UInt64?
        /// RLIMIT_AS, in bytes.
        public var memoryBytes: UInt64?
        /// RLIMIT_CPU, in seconds.
        public var cpuSeconds: UInt64?
        public init(openFiles: UInt64? = nil, memoryBytes: UInt64? = nil, cpuSeconds: UInt64? = nil) {
            self.openFiles = openFiles
            self.memoryBytes = memoryBytes
            self.cpuSeconds = cpuSeconds
        }
    }

    public init(_ arguments: [String], environment: [String: String]? = nil, workingDirectory: String? = nil) {
        self.arguments = arguments
        self.environment = environment.map(EnvironmentBlock.init)
        self.workingDirectory = workingDirectory
    }
}

/// A child process, started with `roost_spawn` (a vfork-style clone: the host is not copied) and
/// watched through its pidfd on the loop, so its exit is seen without a SIGCHLD handler and
/// without asking every other child. Only this object reaps it.
///
/// Contract: `wait()` returns the exit status once the child has been reaped (any number of callers,
/// before or after the exit). `signal` is sent only while the child has not been reaped, so a
/// recycled pid is never signalled; see `signalGroup` for groups. Pipes in `stdin`/`stdout`/`stderr` are independent channels the
/// caller reads, writes and closes. If the loop shuts down first, the child is not killed here (the
/// owner, the supervisor, decides that) and `wait()` throws `UVError.closed`.
public actor ChildProcess {
    public nonisolated let loop: EventLoop
    public nonisolated let pid: Int32
    public nonisolated let arguments: [String]
    public nonisolated let stdin: StreamChannel?
    public nonisolated let stdout: StreamChannel?
    public nonisolated let stderr: StreamChannel?
    public nonisolated let inOwnProcessGroup: Bool
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    /// Polls the pidfd; closed once the child is reaped (or the loop shuts down).
    private var handle: UnsafeMutablePointer<uv_poll_t>?
    private var status: TerminationStatus?
    private var waiters = Waiters<TerminationStatus>()
    /// Loop-confined exit callbacks (see `onExit`).
    private var exitHandlers: [@Sendable (TerminationStatus?) -> Void] = []
    /// The loop closed the handle before the child exited: its status cannot be known.
    private var abandoned = false
    /// The process group was found empty.
    private var groupGone = false

    private init(loop: EventLoop, pid: Int32, arguments: [String], stdio: [StreamChannel?], group: Bool) {
        self.loop = loop
        self.pid = pid
        self.arguments = arguments
        stdin = stdio[0]
        stdout = stdio[1]
        stderr = stdio[2]
        inOwnProcessGroup = group
    }

    /// Starts the threads that spawn children, if they have not started yet. A host calls it
    /// first thing, before it opens any descriptor: each thread reserves a few descriptor numbers
    /// for its children's standard streams, and the lower they are, the less of the host's
    /// descriptor table every spawn copies and closes again.
    public static func prepareSpawning() {
        SpawnThreads.start()
    }

    /// Starts a child. Throws when it cannot be started (no such program, not executable, bad
    /// working directory, a user or limit the host may not set); nothing is left open then.
    public static func spawn(on loop: EventLoop, _ options: ProcessOptions) async throws -> ChildProcess {
        guard !options.arguments.isEmpty else { throw UVError(UV_EINVAL.rawValue, "spawn: no program given") }
        if loop.isStopped { throw UVError.closed("spawn \(options.arguments[0])") }
        // The clone blocks until the child has exec'd: on a spawn thread, not on the loop.
        let launched = try await SpawnThreads.shared.run { try launch(options) }
        do {
            let child = try await loop.submit { attach(launched, on: loop, options: options) }
            loop.spawnObserver.notify(options)
            return child
        } catch {
            // The loop is gone: nobody would watch this child, so it does not stay.
            kill(launched.pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(launched.pid, &status, 0) < 0 && errno == EINTR {}
            Glibc.close(launched.pidfd)
            for fd in launched.hostEnds where fd >= 0 { Glibc.close(fd) }
            throw error
        }
    }

    /// A started child before the loop watches it.
    struct Launched: Sendable {
        let pid: Int32
        let pidfd: Int32
        /// The host's ends of the stdin, stdout and stderr pipes (-1 where there is none).
        let hostEnds: [Int32]
    }

    /// Starts the child (blocking until it has exec'd). With `pollableOutput`, the host's ends of
    /// the stdout and stderr pipes are non-blocking, for a reader that polls them itself. Without
    /// `pidfd`, `Launched.pidfd` is -1 (the caller opens one when it needs it).
    static func launch(_ options: ProcessOptions, pollableOutput: Bool = false, pidfd: Bool = true) throws -> Launched {
        // Pipes: the host's end is close-on-exec (no other child inherits it), the child's end
        // becomes its standard descriptor and is closed here once the child has it.
        var hostEnds: [Int32] = [-1, -1, -1]
        var childEnds: [Int32] = [-1, -1, -1]
        var stdio: [Int32] = [-1, -1, -1]
        func closeAll(_ fds: [Int32]) { for fd in fds where fd >= 0 { Glibc.close(fd) } }
        for (fd, mode) in [options.stdin, options.stdout, options.stderr].enumerated() {
            switch mode {
            case .null:
                stdio[fd] = -1
            case .inherit:
                stdio[fd] = Int32(fd)
            case .fileDescriptor(let descriptor):
                stdio[fd] = descriptor
            case .pipe:
                var ends: [Int32] = [-1, -1]
                // stdin: a socket pair, so the host can half-close it; stdout and stderr: a plain
                // pipe (cheaper to make and to move bytes through), read end the host's.
                let piped = fd == 0 ? roost_stdio_pair(&ends)
                    : pollableOutput ? roost_output_pipe_nonblocking(&ends) : roost_output_pipe(&ends)
                guard piped == 0 else {
                    closeAll(hostEnds + childEnds)
                    throw UVError(piped, "spawn \(options.arguments[0]): pipe")
                }
                (hostEnds[fd], childEnds[fd]) = (ends[0], ends[1])
                stdio[fd] = childEnds[fd]
            }
        }

        let argv = CStringArray(options.arguments)
        let searchPath = options.environment.map { $0.value(of: "PATH") } ?? getenv("PATH").map { String(cString: $0) }
        var request = roost_spawn_request()
        request.argv = UnsafePointer(argv.pointer)
        request.stdio = (stdio[0], stdio[1], stdio[2])
        let grouping = switch options.grouping {
        case .host: ROOST_SPAWN_HOST_GROUP
        case .newGroup: ROOST_SPAWN_NEW_GROUP
        case .newSession: ROOST_SPAWN_NEW_SESSION
        }
        request.grouping = Int32(grouping.rawValue)
        if let credentials = options.credentials {
            request.set_ids = 1
            request.uid = credentials.uid
            request.gid = credentials.gid
        }
        request.die_with_parent = options.dieWithHost ? 1 : 0
        request.without_pidfd = pidfd ? 0 : 1
        let limits: [(Int32, UInt64?)] = [
            (Int32(RLIMIT_NOFILE.rawValue), options.limits.openFiles),
            (Int32(RLIMIT_AS.rawValue), options.limits.memoryBytes),
            (Int32(RLIMIT_CPU.rawValue), options.limits.cpuSeconds),
        ]
        withUnsafeMutableBytes(of: &request.limits) { raw in
            let slots = raw.bindMemory(to: roost_spawn_limit.self)
            for (resource, value) in limits {
                guard let value else { continue }
                slots[Int(request.limit_count)] = roost_spawn_limit(resource: resource, value: value)
                request.limit_count += 1
            }
        }
        var result = roost_spawn_result()
        func spawn(environment: UnsafePointer<UnsafeMutablePointer<CChar>?>?) {
            options.arguments[0].withCString { file in
                (searchPath ?? "").withCString { path in
                    (options.workingDirectory ?? "").withCString { cwd in
                        request.file = file
                        request.search_path = searchPath == nil ? nil : path
                        request.cwd = options.workingDirectory == nil ? nil : cwd
                        request.envp = environment
                        roost_spawn(&request, &result)
                    }
                }
            }
        }
        if let environment = options.environment {
            environment.withUnsafeEnvironment { spawn(environment: $0) }
        } else {
            spawn(environment: nil)
        }
        closeAll(childEnds)
        guard result.error == 0 else {
            closeAll(hostEnds)
            throw UVError(-result.error, "spawn \(options.arguments[0])" + Self.stepName(result.step))
        }
        return Launched(pid: result.pid, pidfd: result.pidfd, hostEnds: hostEnds)
    }

    /// Wraps the pipes in channels and starts watching the pidfd, on the loop.
    private static func attach(_ launched: Launched, on loop: EventLoop, options: ProcessOptions) -> ChildProcess {
        loop.preconditionInLoop()
        var channels: [StreamChannel?] = [nil, nil, nil]
        for fd in 0..<3 where launched.hostEnds[fd] >= 0 {
            channels[fd] = pipeChannel(launched.hostEnds[fd], on: loop)
        }
        let child = ChildProcess(loop: loop, pid: launched.pid, arguments: options.arguments,
                                 stdio: channels, group: options.grouping != .host)
        let pidfd = launched.pidfd
        let poll = LoopHandle.allocate(uv_poll_t.self)
        let initialised = uv_poll_init(loop.uv, poll, pidfd)
        precondition(initialised == 0, "uv_poll_init on a pidfd: \(String(cString: uv_strerror(initialised)))")
        LoopHandle.attach(poll, owner: child) {
            Glibc.close(pidfd)
            child.assumeIsolated { $0.handleClosed() }
        }
        uv_poll_start(poll, Int32(UV_READABLE.rawValue)) { h, _, _ in
            let child = LoopHandle.owner(of: h!, as: ChildProcess.self)
            child.assumeIsolated { $0.reap() }
        }
        child.assumeIsolated { $0.handle = poll }
        return child
    }

    /// A channel for the host's end of a child's pipe (closed at once when libuv refuses it).
    static func pipeChannel(_ descriptor: Int32, on loop: EventLoop) -> StreamChannel {
        loop.preconditionInLoop()
        let p = LoopHandle.allocate(uv_pipe_t.self)
        uv_pipe_init(loop.uv, p, 0)
        let opened = uv_pipe_open(p, descriptor)
        let channel = StreamChannel(loop: loop, kind: .pipe, handle: UnsafeStream(p))
        if opened != 0 { Glibc.close(descriptor); channel.assumeIsolated { $0.close() } }
        return channel
    }

    static func stepName(_ step: Int32) -> String {
        switch UInt32(step) {
        case ROOST_SPAWN_STEP_SESSION.rawValue: ": new session or process group"
        case ROOST_SPAWN_STEP_STDIO.rawValue: ": standard descriptors"
        case ROOST_SPAWN_STEP_CWD.rawValue: ": working directory"
        case ROOST_SPAWN_STEP_LIMIT.rawValue: ": resource limit"
        case ROOST_SPAWN_STEP_USER.rawValue: ": user change"
        case ROOST_SPAWN_STEP_PARENT.rawValue: ": parent-death signal"
        default: ""
        }
    }

    /// The pidfd is readable: the child has exited; collect its status.
    private func reap() {
        guard status == nil else { return }
        guard let termination = TerminationStatus.reap(pid) else { return }  // not yet: the poll fires again
        exited(termination)
    }

    private func exited(_ status: TerminationStatus) {
        self.status = status
        if let handle { LoopHandle.close(handle) }
        handle = nil
        for waiter in waiters.takeAll() { waiter.resume(returning: status) }
        let handlers = exitHandlers
        exitHandlers = []
        for handler in handlers { handler(status) }
    }

    /// The handle closed: after an exit, or at loop shutdown while the child still ran.
    private func handleClosed() {
        handle = nil
        guard status == nil else { return }
        abandoned = true
        for waiter in waiters.takeAll() { waiter.resume(throwing: UVError.closed("wait for pid \(pid)")) }
        let handlers = exitHandlers
        exitHandlers = []
        for handler in handlers { handler(nil) }
    }

    /// Calls `handler` on the loop thread once the child has been reaped, with its status, or with
    /// nil when the loop shut down first (as `wait()` throws then). At once if either already
    /// happened. The callback form of `wait()`: an owner watching many children keeps no waiting
    /// task per child.
    public func onExit(_ handler: @escaping @Sendable (TerminationStatus?) -> Void) {
        if let status { handler(status) }
        else if abandoned { handler(nil) }
        else { exitHandlers.append(handler) }
    }

    /// The exit status, once the child has exited.
    public var exitStatus: TerminationStatus? { status }

    /// Waits for the child to exit. Throws `UVError.closed` when the loop shut down first (the
    /// child may still be running then; its owner must have stopped it before), and
    /// `CancellationError` when the waiting task is cancelled (the child is left alone).
    public func wait() async throws -> TerminationStatus {
        let id = waiters.reserveID()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if let status { continuation.resume(returning: status) }
                else if abandoned { continuation.resume(throwing: UVError.closed("wait for pid \(pid)")) }
                else { waiters.park(id, continuation) }
            }
        } onCancel: {
            loop.execute { self.assumeIsolated { $0.waiters.cancel(id) } }
        }
    }

    /// Sends `signal` to the child; returns false when it has already exited.
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        guard status == nil, !abandoned else { return false }
        return Glibc.kill(pid, signal) == 0
    }

    /// Sends `signal` to the child's whole process group (everything it started that stayed in the
    /// group). Works after the leader exited while others of the group live on. Once the group is
    /// found empty (ESRCH) it is never signalled again, so a recycled group id is never hit; the
    /// small window between the group emptying and that first ESRCH remains (a pidfd or cgroup
    /// closes it, for the supervisor).
    @discardableResult
    public func signalGroup(_ signal: Int32) -> Bool {
        guard inOwnProcessGroup else { return self.signal(signal) }
        guard !groupGone, !abandoned else { return false }
        if Glibc.kill(-pid, signal) == 0 { return true }
        if errno == ESRCH { groupGone = true }
        return false
    }
}

/// A NULL-terminated `char*[]` for the lifetime of the object.
private final class CStringArray {
    let pointer: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    private let count: Int

    init(_ strings: [String]) {
        count = strings.count
        pointer = .allocate(capacity: count + 1)
        for (i, s) in strings.enumerated() { pointer[i] = strdup(s) }
        pointer[count] = nil
    }

    deinit {
        for i in 0..<count { free(pointer[i]) }
        pointer.deallocate()
    }
}
