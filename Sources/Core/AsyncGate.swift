import DequeModule
import Synchronization

/// Lets async sections run one at a time, in the order they asked for their turn.
///
/// An actor's methods interleave at every `await`; a section that must not (read a folder, then
/// apply it) takes a turn here. Cancellation does not skip the queue: a waiting section runs when
/// its turn comes and checks cancellation itself.
public final class AsyncGate: Sendable {
    private struct State: ~Copyable {
        var busy = false
        var waiting = Deque<CheckedContinuation<Void, Never>>()
    }

    private let state = Mutex(State())

    public init() {}

    public func withTurn<T>(
        isolation: isolated (any Actor)? = #isolation, _ body: () async throws -> T
    ) async rethrows -> T {
        await enter()
        defer { leave() }
        return try await body()
    }

    private func enter() async {
        let mustWait = state.withLock { state -> Bool in
            if !state.busy { state.busy = true; return false }
            return true
        }
        guard mustWait else { return }
        await withCheckedContinuation { continuation in
            let runNow = state.withLock { state -> Bool in
                // The holder may have left between the two locks.
                if !state.busy { state.busy = true; return true }
                state.waiting.append(continuation)
                return false
            }
            if runNow { continuation.resume() }
        }
    }

    private func leave() {
        // `busy` passes straight to the next in line; resumed outside the lock.
        let next = state.withLock { state -> CheckedContinuation<Void, Never>? in
            if let next = state.waiting.popFirst() { return next }
            state.busy = false
            return nil
        }
        next?.resume()
    }
}
