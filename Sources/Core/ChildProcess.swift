import CLibUV

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
    public var environment: [String: String]?
    public var workingDirectory: String?
    public var stdin: Stdio = .null
    public var stdout: Stdio = .inherit
    public var stderr: Stdio = .inherit
    /// Starts the child in a new session and process group (led by the child), so that a signal
    /// to the group reaches everything it started.
    public var newProcessGroup = true

    public init(_ arguments: [String], environment: [String: String]? = nil, workingDirectory: String? = nil) {
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
    }
}

/// A child process started through libuv, so the loop's SIGCHLD handling is the only reaper.
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

    private var handle: UnsafeMutablePointer<uv_process_t>?
    private var status: TerminationStatus?
    private var waiters = Waiters<TerminationStatus>()
    /// The loop closed the process handle before the child exited: its status cannot be known.
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

    /// Starts a child. Throws when it cannot be started (no such program, not executable, bad
    /// working directory); nothing is left open then.
    public static func spawn(on loop: EventLoop, _ options: ProcessOptions) async throws -> ChildProcess {
        guard !options.arguments.isEmpty else { throw UVError(UV_EINVAL.rawValue, "spawn: no program given") }
        return try await loop.submit { try spawnOnLoop(loop, options) }
    }

    private static func spawnOnLoop(_ loop: EventLoop, _ options: ProcessOptions) throws -> ChildProcess {
        loop.preconditionInLoop()
        var pipes: [UnsafeMutablePointer<uv_pipe_t>?] = [nil, nil, nil]
        var containers = [uv_stdio_container_t](repeating: uv_stdio_container_t(), count: 3)
        for (fd, mode) in [options.stdin, options.stdout, options.stderr].enumerated() {
            switch mode {
            case .null:
                containers[fd].flags = UV_IGNORE
            case .inherit:
                containers[fd].flags = UV_INHERIT_FD
                containers[fd].data.fd = Int32(fd)
            case .fileDescriptor(let descriptor):
                containers[fd].flags = UV_INHERIT_FD
                containers[fd].data.fd = descriptor
            case .pipe:
                let p = LoopHandle.allocate(uv_pipe_t.self)
                uv_pipe_init(loop.uv, p, 0)
                pipes[fd] = p
                let direction = fd == 0 ? UV_READABLE_PIPE : UV_WRITABLE_PIPE
                containers[fd].flags = uv_stdio_flags(UV_CREATE_PIPE.rawValue | direction.rawValue)
                containers[fd].data.stream = LoopHandle.stream(p)
            }
        }

        let argv = CStringArray(options.arguments)
        let envp = options.environment.map { env in CStringArray(env.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }) }
        let process = LoopHandle.allocate(uv_process_t.self)
        var uvOptions = uv_process_options_t()
        uvOptions.exit_cb = { h, exitStatus, signal in
            let child = LoopHandle.owner(of: h!, as: ChildProcess.self)
            child.assumeIsolated { $0.exited(TerminationStatus(code: Int32(truncatingIfNeeded: exitStatus), signal: signal)) }
        }
        uvOptions.flags = options.newProcessGroup ? UV_PROCESS_DETACHED.rawValue : 0
        uvOptions.stdio_count = 3
        let rc: Int32 = options.arguments[0].withCString { file in
            (options.workingDirectory ?? "").withCString { cwd in
                containers.withUnsafeMutableBufferPointer { stdio in
                    uvOptions.file = file
                    uvOptions.args = argv.pointer
                    uvOptions.env = envp?.pointer
                    uvOptions.cwd = options.workingDirectory == nil ? nil : cwd
                    uvOptions.stdio = stdio.baseAddress
                    return uv_spawn(loop.uv, process, &uvOptions)
                }
            }
        }
        // Pipes become channels either way, so they are closed through the usual path.
        let channels: [StreamChannel?] = pipes.map { p in
            p.map { StreamChannel(loop: loop, kind: .pipe, handle: UnsafeStream($0)) }
        }
        guard rc == 0 else {
            // libuv has initialised the process handle even on failure; it must be closed.
            LoopHandle.close(process)
            for channel in channels { channel?.assumeIsolated { $0.close() } }
            let error = UVError(rc, "spawn \(options.arguments[0])")
            throw error
        }
        let child = ChildProcess(loop: loop, pid: process.pointee.pid, arguments: options.arguments,
                                 stdio: channels, group: options.newProcessGroup)
        LoopHandle.attach(process, owner: child) {
            child.assumeIsolated { $0.handleClosed() }
        }
        child.assumeIsolated { $0.handle = process }
        return child
    }

    private func exited(_ status: TerminationStatus) {
        self.status = status
        if let handle { LoopHandle.close(handle) }
        handle = nil
        for waiter in waiters.takeAll() { waiter.resume(returning: status) }
    }

    /// The handle closed: after an exit, or at loop shutdown while the child still ran.
    private func handleClosed() {
        handle = nil
        guard status == nil else { return }
        abandoned = true
        for waiter in waiters.takeAll() { waiter.resume(throwing: UVError.closed("wait for pid \(pid)")) }
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
