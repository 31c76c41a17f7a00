import DequeModule
import Synchronization

/// The per-function limit on requests under way: up to `concurrency` run, up to `queue` more wait
/// (first come, first served), and the rest are turned away (the router answers 503 with
/// `Retry-After`). The limits are read at each request, so a new version's values apply at once.
public final class FunctionGate: Sendable {
    private struct State {
        var running = 0
        var waiting: Deque<(id: UInt64, continuation: CheckedContinuation<Bool, Never>)> = []
        var nextID: UInt64 = 0
    }

    private let state = Mutex(State())

    public init() {}

    /// True once the request may run (call `leave()` when it is done); false when it must be
    /// turned away: the queue is full, or the waiting task was cancelled.
    public func enter(concurrency: Int, queue: Int) async -> Bool {
        // A free place is taken at once, without suspending (which would cost a trip through the
        // executor's queue).
        let ticket: UInt64? = state.withLock { state in
            if state.running < concurrency && state.waiting.isEmpty {
                state.running += 1
                return nil
            }
            state.nextID += 1
            return state.nextID
        }
        guard let ticket else { return true }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                // One decision under the lock: a slot freed meanwhile is seen here.
                let decided: Bool? = state.withLock { state in
                    if state.running < concurrency && state.waiting.isEmpty {
                        state.running += 1
                        return true
                    }
                    if state.waiting.count >= queue || Task.isCancelled { return false }
                    state.waiting.append((ticket, continuation))
                    return nil
                }
                if let decided { continuation.resume(returning: decided) }
            }
        } onCancel: {
            let cancelled = state.withLock { state -> CheckedContinuation<Bool, Never>? in
                guard let index = state.waiting.firstIndex(where: { $0.id == ticket }) else { return nil }
                return state.waiting.remove(at: index).continuation
            }
            cancelled?.resume(returning: false)
        }
    }

    /// A request that entered is done: the next waiting one runs.
    public func leave() {
        let next = state.withLock { state -> CheckedContinuation<Bool, Never>? in
            if let next = state.waiting.popFirst() { return next.continuation }  // its slot passes on
            state.running -= 1
            return nil
        }
        next?.resume(returning: true)
    }

    /// Requests running and waiting now.
    public var load: (running: Int, waiting: Int) { state.withLock { ($0.running, $0.waiting.count) } }
}
