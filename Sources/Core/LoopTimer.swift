import CLibUV

extension EventLoop {
    /// Suspends the caller for `duration` (millisecond resolution, rounded up) on a loop timer.
    /// Cancelling the task ends the wait at once with `CancellationError`.
    public func sleep(for duration: Duration) async throws {
        let sleeper = Sleeper(loop: self, milliseconds: Self.milliseconds(duration))
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                if !execute({ sleeper.start(continuation) }) {
                    continuation.resume(throwing: UVError.closed("sleep"))
                }
            }
        } onCancel: {
            execute { sleeper.cancel() }
        }
    }

    static func milliseconds(_ duration: Duration) -> UInt64 {
        let (seconds, attoseconds) = duration.components
        if seconds < 0 { return 0 }
        let millis = UInt64(seconds) * 1000 + UInt64((attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000)
        return millis
    }
}

/// One `sleep`: a timer and the continuation it resumes. `start` and `cancel` both run on the loop
/// thread (through `execute`, in submission order), which is what makes the unchecked state safe.
private final class Sleeper: @unchecked Sendable {
    let loop: EventLoop
    let milliseconds: UInt64
    var continuation: CheckedContinuation<Void, Error>?
    var handle: UnsafeMutablePointer<uv_timer_t>?
    var cancelled = false

    init(loop: EventLoop, milliseconds: UInt64) {
        self.loop = loop
        self.milliseconds = milliseconds
    }

    func start(_ continuation: CheckedContinuation<Void, Error>) {
        loop.preconditionInLoop()
        if cancelled { continuation.resume(throwing: CancellationError()); return }
        let handle = LoopHandle.allocate(uv_timer_t.self)
        let rc = uv_timer_init(loop.uv, handle)
        guard rc == 0 else {
            LoopHandle.free(handle)
            continuation.resume(throwing: UVError(rc, "uv_timer_init"))
            return
        }
        self.continuation = continuation
        self.handle = handle
        // onClose covers a loop shutdown that closes the timer before it fires.
        LoopHandle.attach(handle, owner: self) { [self] in
            finish(throwing: UVError.closed("sleep"))
        }
        // libuv counts from the time cached at the start of this iteration; refresh it so the
        // sleep is never shorter than asked.
        uv_update_time(loop.uv)
        uv_timer_start(handle, { h in
            let sleeper = LoopHandle.owner(of: h!, as: Sleeper.self)
            sleeper.finish(throwing: nil)
        }, milliseconds, 0)
    }

    func cancel() {
        cancelled = true
        finish(throwing: CancellationError())
    }

    private func finish(throwing error: Error?) {
        if let handle {
            self.handle = nil
            LoopHandle.close(handle)
        }
        guard let continuation else { return }
        self.continuation = nil
        if let error { continuation.resume(throwing: error) } else { continuation.resume() }
    }
}

/// A one-shot or repeating timer whose action runs on the loop thread.
///
/// Create it anywhere; its handle is made on the loop at the first `start`. `close()` releases it;
/// until then the timer (and this object) stay alive, since the handle holds its owner.
public actor LoopTimer {
    public nonisolated let loop: EventLoop
    private var handle: UnsafeMutablePointer<uv_timer_t>?
    private var action: (@Sendable () -> Void)?

    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    public init(loop: EventLoop) {
        self.loop = loop
    }

    /// (Re)starts the timer: `action` runs after `delay`, then every `interval` if one is given.
    public func start(after delay: Duration, repeating interval: Duration? = nil,
                      _ action: @escaping @Sendable () -> Void) throws(UVError) {
        if handle == nil {
            if loop.isStopped { throw UVError.closed("timer") }
            let h = LoopHandle.allocate(uv_timer_t.self)
            let rc = uv_timer_init(loop.uv, h)
            guard rc == 0 else { LoopHandle.free(h); throw UVError(rc, "uv_timer_init") }
            LoopHandle.attach(h, owner: self) { [self] in
                assumeIsolated { $0.handle = nil; $0.action = nil }
            }
            handle = h
        }
        self.action = action
        guard let handle else { throw UVError.closed("timer") }
        uv_update_time(loop.uv)
        let rc = uv_timer_start(handle, { h in
            let timer = LoopHandle.owner(of: h!, as: LoopTimer.self)
            timer.assumeIsolated { $0.action?() }
        }, EventLoop.milliseconds(delay), interval.map(EventLoop.milliseconds) ?? 0)
        try UVError.check(rc, "uv_timer_start")
    }

    public func stop() {
        if let handle { uv_timer_stop(handle) }
    }

    public func close() {
        if let handle { LoopHandle.close(handle) }
        handle = nil
        action = nil
    }
}
