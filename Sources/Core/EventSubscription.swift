import DequeModule
import Synchronization

/// The events one subscription receives, in publish order (`seq` strictly increasing).
///
/// Meant for one consuming task. The subscription ends, and the bus forgets it, when that
/// task is cancelled (a waiting `next()` returns nil at once) or when this value and every
/// iterator made from it are gone. Events published while the consumer lags sit in a buffer
/// of `bufferSize`; when it is full the oldest buffered event is dropped, see `EventBus`.
public struct EventSubscription: AsyncSequence, Sendable {
    public typealias Element = Event
    public typealias Failure = Never

    /// Unique on its bus; the `path` of the `eventbus.overflow` events about this subscription.
    public let id: UInt64
    let subscriber: SubscriptionBuffer
    let lifetime: SubscriptionLifetime

    init(subscriber: SubscriptionBuffer, bus: EventBus) {
        self.id = subscriber.id
        self.subscriber = subscriber
        self.lifetime = SubscriptionLifetime(bus: bus, id: subscriber.id)
    }

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(subscriber: subscriber, lifetime: lifetime)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        public typealias Element = Event
        public typealias Failure = Never

        @usableFromInline let subscriber: SubscriptionBuffer
        @usableFromInline let lifetime: SubscriptionLifetime
        /// Events taken from the bus in one go, handed out here without any lock.
        @usableFromInline var batch = Deque<Event>()
        var lastBatchCount = Int.max

        init(subscriber: SubscriptionBuffer, lifetime: SubscriptionLifetime) {
            self.subscriber = subscriber
            self.lifetime = lifetime
        }

        @inlinable
        public mutating func next() async -> Event? {
            await next(isolation: nil)
        }

        /// Inlined into the consumer so that an event already taken costs no async call.
        @inlinable
        public mutating func next(isolation actor: isolated (any Actor)?) async -> Event? {
            if !batch.isEmpty, !Task.isCancelled { return batch.popFirst() }
            return await nextBatch(isolation: actor)
        }

        @usableFromInline
        mutating func nextBatch(isolation actor: isolated (any Actor)?) async -> Event? {
            // Yielding only pays on the global executor: from an actor, Task.yield() hops off
            // it and back, and a consumer on the loop's executor is woken without a syscall.
            let mayYield = actor == nil
            // A consumer that keeps up would otherwise take one or two events per lock, and
            // each take moves the buffer's cache lines between its core and the publisher's.
            // Letting other tasks run first lets a batch build up. A consumer woken from a
            // park takes its events at once, so a lone event is not delayed.
            if mayYield, lastBatchCount < 16 { await Task.yield() }
            var yields = 0
            while true {
                if Task.isCancelled { return end() }
                switch subscriber.take(into: &batch) {
                case .events:
                    lastBatchCount = batch.count
                    return batch.popFirst()
                case .closed:
                    return end()
                case .empty:
                    break
                }
                // Under a steady stream, letting other tasks run first usually finds events
                // again and skips the park/wake pair, which costs far more than a yield.
                if mayYield, yields < 2 {
                    yields += 1
                    await Task.yield()
                    continue
                }
                let subscriber = self.subscriber
                await withTaskCancellationHandler {
                    await withUnsafeContinuation(isolation: actor) { continuation in
                        subscriber.park(continuation)
                    }
                } onCancel: {
                    subscriber.close()
                }
            }
        }

        private mutating func end() -> Event? {
            subscriber.close()
            batch.removeAll()
            lifetime.bus.remove(id: subscriber.id)
            return nil
        }
    }
}

/// Removes the subscription from the bus once the sequence and all its iterators are gone.
@usableFromInline
final class SubscriptionLifetime: Sendable {
    let bus: EventBus
    let id: UInt64

    init(bus: EventBus, id: UInt64) {
        self.bus = bus
        self.id = id
    }

    deinit { bus.remove(id: id) }
}

/// One subscriber's side of the bus: its patterns, bounded buffer and counters.
///
/// Publishers append under `state`'s lock while already holding the bus lock (lock order:
/// bus, then subscriber); the consumer takes only this lock, once per batch.
@usableFromInline
final class SubscriptionBuffer: Sendable {
    typealias Waiter = UnsafeContinuation<Void, Never>

    struct State: ~Copyable {
        var buffer: Deque<Event>
        /// The consumer parked in `next()`; more than one only if several tasks share it.
        var waiter: Waiter?
        var moreWaiters: [Waiter] = []
        var closed = false
        /// In an overflow episode: dropped since the consumer last emptied the buffer.
        var episodeDropped = 0
        var dropped: UInt64 = 0
        var delivered: UInt64 = 0
    }

    enum Take { case events, empty, closed }

    let id: UInt64
    let name: String
    let patterns: [TopicPattern]
    let capacity: Int
    let state: Mutex<State>

    init(id: UInt64, name: String, patterns: [TopicPattern], capacity: Int) {
        self.id = id
        self.name = name
        self.patterns = patterns
        self.capacity = capacity
        self.state = Mutex(State(buffer: Deque(minimumCapacity: min(capacity, 256))))
    }

    func matches(_ topic: [Substring.UTF8View]) -> Bool {
        patterns.contains { $0.matches(segments: topic) }
    }

    /// Called by a publisher holding the bus lock. Never blocks beyond this short lock and
    /// never waits for the consumer: a full buffer loses its oldest event instead.
    /// Returns whether the oldest buffered event was dropped to make room.
    @inline(__always) @discardableResult
    func enqueue(_ event: Event, wakeups: inout PendingWakeups, reports: inout [OverflowReport]) -> Bool {
        state.withLock { state in
            if state.closed { return false }
            var dropped = false
            if state.buffer.count >= capacity {
                dropped = true
                state.buffer.removeFirst()
                state.dropped += 1
                state.episodeDropped += 1
                if state.episodeDropped == 1 {
                    reports.append(
                        OverflowReport(
                            id: id, name: name, totalDropped: state.dropped))
                }
            }
            state.buffer.append(event)
            if let waiter = state.waiter {
                state.waiter = nil
                wakeups.add(waiter)
                if !state.moreWaiters.isEmpty {
                    for other in state.moreWaiters { wakeups.add(other) }
                    state.moreWaiters.removeAll()
                }
            }
            return dropped
        }
    }

    /// Swaps the whole buffer into the consumer's empty `batch`, so the consumer locks once
    /// per batch and the bus gets back the batch's storage (no allocation in steady state).
    func take(into batch: inout Deque<Event>) -> Take {
        state.withLock { state in
            if state.closed { return .closed }
            if state.buffer.isEmpty { return .empty }
            swap(&state.buffer, &batch)
            state.delivered += UInt64(batch.count)
            // The consumer has drained what was buffered: the overflow episode is over.
            state.episodeDropped = 0
            return .events
        }
    }

    func park(_ waiter: Waiter) {
        let resumeNow = state.withLock { state in
            if state.closed || !state.buffer.isEmpty { return true }
            if state.waiter == nil {
                state.waiter = waiter
            } else {
                state.moreWaiters.append(waiter)
            }
            return false
        }
        if resumeNow { waiter.resume() }
    }

    /// Ends the subscription for its consumers: waiting ones wake and get nil.
    func close() {
        var wakeups = PendingWakeups()
        state.withLock { state in
            if state.closed { return }
            state.closed = true
            state.buffer = Deque()
            if let waiter = state.waiter { wakeups.add(waiter) }
            for other in state.moreWaiters { wakeups.add(other) }
            state.waiter = nil
            state.moreWaiters = []
        }
        wakeups.resumeAll()
    }

    func stats() -> SubscriberStats {
        state.withLock { state in
            SubscriberStats(
                id: id, name: name, patterns: patterns, bufferSize: capacity,
                buffered: state.buffer.count, delivered: state.delivered, dropped: state.dropped)
        }
    }
}

/// Consumers to resume once the publisher has released its locks. Holds the usual single
/// waiter inline so a publish that wakes one consumer allocates nothing.
struct PendingWakeups {
    private var first: SubscriptionBuffer.Waiter?
    private var more: [SubscriptionBuffer.Waiter] = []

    @inline(__always)
    mutating func add(_ waiter: SubscriptionBuffer.Waiter) {
        if first == nil { first = waiter } else { more.append(waiter) }
    }

    @inline(__always)
    func resumeAll() {
        guard let first else { return }
        first.resume()
        for waiter in more { waiter.resume() }
    }
}

/// An overflow noticed under a lock, to be published once the lock is released.
struct OverflowReport {
    let id: UInt64
    let name: String
    let totalDropped: UInt64
}

