import DequeModule

/// Continuations parked in a loop-bound actor, each under an id so that one can be cancelled on
/// its own. Loop thread only (it lives in the actor's isolated state).
///
/// The pattern: reserve an id, park inside `withTaskCancellationHandler`, and in `onCancel` hand
/// the id back to the loop (`EventLoop.execute`) to `cancel` it. A waiter that was resumed before
/// its cancellation arrived is not there any more, so a late cancel never undoes a result.
struct Waiters<Value: Sendable> {
    private var parked = Deque<(id: UInt64, continuation: CheckedContinuation<Value, Error>)>()
    private var lastID: UInt64 = 0

    var isEmpty: Bool { parked.isEmpty }
    var count: Int { parked.count }

    mutating func reserveID() -> UInt64 {
        lastID &+= 1
        return lastID
    }

    mutating func park(_ id: UInt64, _ continuation: CheckedContinuation<Value, Error>) {
        parked.append((id, continuation))
    }

    /// The longest-waiting continuation, taken out.
    mutating func popFirst() -> CheckedContinuation<Value, Error>? {
        parked.popFirst()?.continuation
    }

    /// Every continuation, taken out, in parking order.
    mutating func takeAll() -> [CheckedContinuation<Value, Error>] {
        defer { parked.removeAll() }
        return parked.map(\.continuation)
    }

    /// Resumes waiter `id` with `CancellationError`, if it still waits.
    mutating func cancel(_ id: UInt64) {
        guard let index = parked.firstIndex(where: { $0.id == id }) else { return }
        parked.remove(at: index).continuation.resume(throwing: CancellationError())
    }
}
