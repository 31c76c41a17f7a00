import CLibUV

/// Delivers the given signals as an async sequence, through libuv (so the loop, not a signal
/// handler, runs the code). Several watchers of one signal each receive it.
public actor SignalWatcher {
    public nonisolated let loop: EventLoop
    /// Each received signal number, in arrival order. Finishes when the watcher is closed.
    public nonisolated let signals: AsyncStream<Int32>
    private let continuation: AsyncStream<Int32>.Continuation
    private var handles: [UnsafeMutablePointer<uv_signal_t>] = []
    private var open = 0

    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    private init(loop: EventLoop) {
        self.loop = loop
        (signals, continuation) = AsyncStream.makeStream(of: Int32.self)
    }

    /// Starts watching `signals` on `loop`.
    public static func watch(_ signals: [Int32], on loop: EventLoop) async throws(UVError) -> SignalWatcher {
        let watcher = SignalWatcher(loop: loop)
        try await watcher.start(signals)
        return watcher
    }

    private func start(_ signals: [Int32]) throws(UVError) {
        if loop.isStopped { continuation.finish(); throw UVError.closed("watch signals") }
        for signum in signals {
            let h = LoopHandle.allocate(uv_signal_t.self)
            let rc = uv_signal_init(loop.uv, h)
            guard rc == 0 else { LoopHandle.free(h); close(); throw UVError(rc, "uv_signal_init") }
            LoopHandle.attach(h, owner: self) { [self] in
                assumeIsolated { $0.handleClosed() }
            }
            open += 1
            handles.append(h)
            let started = uv_signal_start(h, { h, signum in
                let watcher = LoopHandle.owner(of: h!, as: SignalWatcher.self)
                watcher.assumeIsolated { _ = $0.continuation.yield(signum) }
            }, signum)
            guard started == 0 else { close(); throw UVError(started, "uv_signal_start(\(signum))") }
        }
    }

    private func handleClosed() {
        open -= 1
        if open == 0 { continuation.finish() }
    }

    /// Stops watching; the sequence finishes once every handle has closed.
    public func close() {
        for h in handles { LoopHandle.close(h) }
        handles.removeAll()
        if open == 0 { continuation.finish() }
    }
}
