import CLibUV
import CSpawn
import DequeModule
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One libuv loop on one dedicated thread, usable as a Swift executor.
///
/// Contract:
/// - Every libuv handle of this loop is created, used and closed on the loop thread. From other
///   threads the only libuv call made is `uv_async_send`, through `enqueue` and `execute`.
/// - As a `SerialExecutor`, jobs run one at a time in the order they were enqueued (FIFO across
///   threads as far as the queue lock orders them). Actors that own handles return
///   `asUnownedSerialExecutor()` as their `unownedExecutor`, so their code runs on the loop thread.
/// - As a `TaskExecutor`, `Task(executorPreference: loop)` runs nonisolated code on the loop.
/// - `shutdown()` closes every handle still open (their owners see the close and fail their
///   waiters), keeps running jobs until nothing is left, then stops the thread. Jobs enqueued after
///   the loop has stopped still run, one at a time, on a fallback thread shared by all stopped loops:
///   a task woken by a closing handle may need a last turn on its actor. Such code finds its
///   handles closed and fails with `UVError.closed`; handle creation goes through `execute`,
///   `submit` or a check of `isStopped`, all of which refuse once the loop has stopped. Closures given to `execute` are
///   refused instead (`submit` and `sleep` then throw `UVError.closed`). While shutdown runs,
///   handles that jobs open are closed after each batch, so nothing holds the shutdown up.
/// - Cancellation: a task cancelled while it waits in a handle wrapper (a read, a write waiting
///   for the queue to drain, an accept, a process wait, a sleep) ends that wait with
///   `CancellationError`; the handle stays open and usable.
public final class EventLoop: SerialExecutor, TaskExecutor, @unchecked Sendable {
    // @unchecked Sendable: `uv` and `wakeup` are only dereferenced on the loop thread (checked with
    // `preconditionInLoop` in debug builds); the cross-thread state is behind `queue` (a Mutex) or atomic.

    /// The libuv loop. Only touch it on the loop thread.
    public let uv: UnsafeMutablePointer<uv_loop_t>
    private let wakeup: UnsafeMutablePointer<uv_async_t>
    /// Work queued on the loop thread itself needs no wakeup through the kernel: this idle handle,
    /// active while such work waits, runs it on the loop's next turn (and keeps that turn's poll
    /// from blocking). An eventfd write and read per queued job was a third of the loop's system
    /// calls per CGI request. Loop thread only.
    private let localWakeup: UnsafeMutablePointer<uv_idle_t>
    private var localWakeupUsable = true
    /// Where every stream of this loop reads into: libuv asks for a buffer, reads, and hands the
    /// bytes to the read callback (which copies them out) before the next stream reads, so one
    /// buffer serves them all (an idle connection or service pipe holds no buffer). Loop thread only.
    let readScratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
    private let queue = Mutex(Queue())
    private let threadID = Atomic<UInt>(0)
    private let state = Atomic<Int>(LoopState.running.rawValue)
    private let threadDone = Mutex<Bool>(false)
    private var thread: pthread_t = 0
    public let name: String
    /// The epoll set of the loop's brief children (`BriefChild`), made on first use. Loop thread only.
    var descriptorWatch: DescriptorWatch?
    /// Told of each child started on this loop; see `observeSpawns`.
    let spawnObserver = SpawnObserverSlot()

    private enum LoopState: Int { case running, shuttingDown, stopped }

    private struct Queue {
        var work = Deque<Work>()
        var stopped = false
    }

    private enum Work: Sendable {
        case job(UnownedJob)
        case closure(@Sendable () -> Void)
    }

    /// Starts the loop thread; returns once the loop is ready to take work.
    public init(name: String = "roost-loop") {
        // A peer that goes away must be an EPIPE on that write, never the end of the process.
        signal(SIGPIPE, SIG_IGN)
        roost_spawn_signals_changed()
        self.name = name
        uv = .allocate(capacity: 1)
        wakeup = .allocate(capacity: 1)
        localWakeup = .allocate(capacity: 1)
        let rc = uv_loop_init(uv)
        precondition(rc == 0, "uv_loop_init failed: \(String(cString: uv_strerror(rc)))")
        let arc = uv_async_init(uv, wakeup) { handle in
            let loop = Unmanaged<EventLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            loop.runQueuedWork()
            if loop.state.load(ordering: .acquiring) != LoopState.running.rawValue { loop.closeAllHandles() }
        }
        precondition(arc == 0, "uv_async_init failed: \(String(cString: uv_strerror(arc)))")
        // Unretained: the loop object outlives its thread (`shutdown` joins before deinit can run).
        wakeup.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        uv_idle_init(uv, localWakeup)
        localWakeup.pointee.data = Unmanaged.passUnretained(self).toOpaque()

        let box = Unmanaged.passRetained(self)
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        let created = pthread_create(&thread, &attributes, { raw in
            let loop = Unmanaged<EventLoop>.fromOpaque(raw!).takeRetainedValue()
            loop.threadMain()
            return nil
        }, box.toOpaque())
        precondition(created == 0, "pthread_create failed: \(created)")
        // The thread publishes its id too, first thing: whichever store comes first, `inLoop` is
        // right on the loop thread from its start and (being false) on every other thread before.
        // Nothing waits for the thread to be scheduled: work queued meanwhile runs when it is.
        threadID.store(UInt(thread), ordering: .releasing)
    }

    deinit {
        precondition(state.load(ordering: .acquiring) == LoopState.stopped.rawValue,
                     "EventLoop '\(name)' deinitialised without shutdown()")
        uv.deallocate()
        wakeup.deallocate()
        localWakeup.deallocate()
        readScratch.deallocate()
    }

    /// Tells `observer` of every child process started on this loop from now on (it replaces the
    /// one set before, if any). The host's metrics count spawns this way.
    public func observeSpawns(_ observer: any ProcessSpawnObserver) {
        spawnObserver.set(observer)
    }

    // MARK: Thread identity

    /// True when called on this loop's thread.
    public var inLoop: Bool {
        threadID.load(ordering: .relaxed) == UInt(pthread_self())
    }

    /// Stops the process in debug builds when not called on the loop thread.
    @inlinable
    public func preconditionInLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(inLoop, "not on the loop thread of '\(name)'", file: file, line: line)
    }

    // MARK: Executor

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        if !submit(.job(unowned)) {
            // A dropped job would leave its task suspended forever.
            LateWork.shared.run(unowned, on: asUnownedSerialExecutor())
        }
    }

    /// True once the loop has closed: no handle may be created any more.
    public var isStopped: Bool { queue.withLock { $0.stopped } }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    public func checkIsolated() {
        precondition(inLoop, "expected to run on the loop thread of '\(name)'")
    }

    /// Runs `body` on the loop thread, after the work already queued. Callable from any thread.
    /// Returns false, without running `body`, once the loop has stopped.
    @discardableResult
    public func execute(_ body: @escaping @Sendable () -> Void) -> Bool {
        submit(.closure(body))
    }

    /// Runs `body` on the loop thread and returns its result to the caller.
    public func submit<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let accepted = execute { continuation.resume(with: Result { try body() }) }
            if !accepted { continuation.resume(throwing: UVError.closed("submit to loop '\(name)'")) }
        }
    }

    private func submit(_ work: Work) -> Bool {
        // The send happens under the lock: the loop thread sets `stopped` under the same lock before
        // it closes the wakeup handle, so the handle is always open here.
        let local = inLoop
        let accepted = queue.withLock { queue -> Bool in
            if queue.stopped { return false }
            queue.work.append(work)
            if !local { uv_async_send(wakeup) }
            return true
        }
        if accepted && local { wakeLocally() }
        return accepted
    }

    /// On the loop thread: the queued work runs on the loop's next turn.
    private func wakeLocally() {
        guard localWakeupUsable else {
            uv_async_send(wakeup)
            return
        }
        if uv_is_active(UnsafeRawPointer(localWakeup).assumingMemoryBound(to: uv_handle_t.self)) != 0 { return }
        uv_idle_start(localWakeup) { handle in
            let loop = Unmanaged<EventLoop>.fromOpaque(handle!.pointee.data).takeUnretainedValue()
            loop.runQueuedWork()
            if loop.queue.withLock({ $0.work.isEmpty }) { uv_idle_stop(handle) }
            if loop.state.load(ordering: .acquiring) != LoopState.running.rawValue { loop.closeAllHandles() }
        }
    }

    /// Runs what is queued now; work queued meanwhile waits for the next wakeup so I/O is not starved.
    private func runQueuedWork() {
        var batch = queue.withLock { queue in
            let batch = queue.work
            queue.work.removeAll(keepingCapacity: true)
            return batch
        }
        while let work = batch.popFirst() {
            switch work {
            case .job(let job):
                // Run as the serial executor only. Naming the loop as task executor too would make
                // every task without that preference look foreign to the runtime, so each actor hop
                // would go back through the queue (slower, and it lets libuv callbacks interleave).
                job.runSynchronously(on: asUnownedSerialExecutor())
            case .closure(let body):
                body()
            }
        }
    }

    // MARK: Lifecycle

    private func threadMain() {
        threadID.store(UInt(pthread_self()), ordering: .releasing)
        roost_set_thread_name(name)
        while true {
            uv_run(uv, UV_RUN_DEFAULT)
            // uv_run returns only once shutdown has unreferenced the wakeup handle.
            runQueuedWork()
            if uv_loop_alive(uv) != 0 {
                closeAllHandles()
                continue
            }
            // Stop only when nothing is queued, in the same lock that refuses new work: a job either
            // runs here, on the loop thread, or goes to LateWork, never both at once.
            let done = queue.withLock { q -> Bool in
                if q.work.isEmpty { q.stopped = true; return true }
                return false
            }
            if done { break }
        }
        uv_close(UnsafeMutableRawPointer(wakeup).assumingMemoryBound(to: uv_handle_t.self), nil)
        localWakeupUsable = false
        uv_close(UnsafeMutableRawPointer(localWakeup).assumingMemoryBound(to: uv_handle_t.self), nil)
        uv_run(uv, UV_RUN_DEFAULT)
        let rc = uv_loop_close(uv)
        assert(rc == 0, "uv_loop_close: \(String(cString: uv_err_name(rc)))")
        state.store(LoopState.stopped.rawValue, ordering: .releasing)
        threadDone.withLock { $0 = true }
    }

    private func closeAllHandles() {
        let wakeupHandle = UnsafeMutableRawPointer(wakeup).assumingMemoryBound(to: uv_handle_t.self)
        uv_walk(uv, { handle, arg in
            guard let handle, let arg else { return }
            let loop = Unmanaged<EventLoop>.fromOpaque(arg).takeUnretainedValue()
            // The loop's own two wakeups stay until the thread ends.
            if handle == UnsafeMutableRawPointer(loop.wakeup).assumingMemoryBound(to: uv_handle_t.self)
                || handle == UnsafeMutableRawPointer(loop.localWakeup).assumingMemoryBound(to: uv_handle_t.self) { return }
            LoopHandle.close(handle)
        }, Unmanaged.passUnretained(self).toOpaque())
        uv_unref(wakeupHandle)
    }

    /// Closes every handle, runs until nothing is left, and stops the loop thread. Waits for the
    /// thread to end. Must not be called on the loop thread. Calling it twice is harmless.
    public func shutdown() {
        precondition(!inLoop, "shutdown() called on the loop thread of '\(name)'")
        if state.compareExchange(expected: LoopState.running.rawValue,
                                 desired: LoopState.shuttingDown.rawValue,
                                 ordering: .acquiringAndReleasing).exchanged {
            execute { [self] in closeAllHandles() }
            pthread_join(thread, nil)
        } else {
            // Another caller is shutting down: wait for the thread to end.
            while !threadDone.withLock({ $0 }) { sched_yield() }
        }
    }

    /// Shuts down without blocking a cooperative thread.
    public func shutdownGracefully() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            var attributes = pthread_attr_t()
            pthread_attr_init(&attributes)
            defer { pthread_attr_destroy(&attributes) }
            let box = Unmanaged.passRetained(ShutdownRequest(loop: self, continuation: continuation))
            var helper: pthread_t = 0
            let rc = pthread_create(&helper, &attributes, { raw in
                let request = Unmanaged<ShutdownRequest>.fromOpaque(raw!).takeRetainedValue()
                request.loop.shutdown()
                request.continuation.resume()
                return nil
            }, box.toOpaque())
            precondition(rc == 0, "pthread_create failed: \(rc)")
            pthread_detach(helper)
        }
    }
}

private final class ShutdownRequest: Sendable {
    let loop: EventLoop
    let continuation: CheckedContinuation<Void, Never>
    init(loop: EventLoop, continuation: CheckedContinuation<Void, Never>) {
        self.loop = loop
        self.continuation = continuation
    }
}

/// Runs jobs that reach a loop after it stopped, one at a time, on one thread for the process.
// @unchecked Sendable: `queue` is a Mutex; `wakeup` is a POSIX semaphore, made for use across threads.
private final class LateWork: @unchecked Sendable {
    static let shared = LateWork()

    private struct Pending: Sendable {
        let job: UnownedJob
        let executor: UnownedSerialExecutor
    }

    private let queue = Mutex(Deque<Pending>())
    private let wakeup: UnsafeMutablePointer<sem_t>  // never freed: lives as long as the process

    private init() {
        wakeup = .allocate(capacity: 1)
        sem_init(wakeup, 0, 0)
        var thread: pthread_t = 0
        let rc = pthread_create(&thread, nil, { _ in
            LateWork.shared.drain()
        }, nil)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        pthread_detach(thread)
    }

    func run(_ job: UnownedJob, on executor: UnownedSerialExecutor) {
        queue.withLock { $0.append(Pending(job: job, executor: executor)) }
        sem_post(wakeup)
    }

    private func drain() -> Never {
        while true {
            while sem_wait(wakeup) != 0 {}
            while let next = queue.withLock({ $0.popFirst() }) {
                next.job.runSynchronously(on: next.executor)
            }
        }
    }
}
