import DequeModule
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Something that happened in the host, as seen on the `EventBus`.
public struct Event: Sendable {
    /// Dot-separated, most general part first: `registry.entry.updated`.
    public let topic: String
    /// What the event is about (an entry id, a pid, a version), or "".
    public let path: String
    public let data: JSON
    /// Wall-clock seconds since 1970, taken when the event was published.
    public let time: Double
    /// Bus-wide publish order: starts at 1 and strictly increases.
    public let seq: UInt64

    public init(topic: String, path: String, data: JSON, time: Double, seq: UInt64) {
        self.topic = topic
        self.path = path
        self.data = data
        self.time = time
        self.seq = seq
    }
}

/// What `EventBus.stats()` says about one subscription.
public struct SubscriberStats: Sendable, Equatable {
    public let id: UInt64
    public let name: String
    public let patterns: [TopicPattern]
    public let bufferSize: Int
    /// Waiting in the bus, not yet taken by the subscription's iterator.
    public let buffered: Int
    /// Taken by the iterator (in batches, so some may still be ahead of the consumer).
    public let delivered: UInt64
    /// Lost because the buffer was full when a newer event arrived.
    public let dropped: UInt64
}

/// Publish/subscribe for observing the host: topics matched by `TopicPattern`, delivered to
/// each subscription through its own bounded buffer.
///
/// - Thread safety: every method may be called from any thread or task.
/// - Publishing never blocks on, and never awaits, a subscriber: it appends to the buffers
///   of the matching subscriptions and returns. The locks it takes are never held across a
///   consumer's work, only across a few buffer operations; concurrent publishers queue on
///   the bus lock for that long.
/// - Ordering: `seq` is assigned and the event appended to every buffer under one bus lock,
///   so each subscription sees events in publish order with `seq` strictly increasing, even
///   with concurrent publishers.
/// - Dropping: when a subscription's buffer is full, its oldest buffered event is dropped to
///   make room; the newest event is always kept. Drops are counted per subscription (`stats()`)
///   and, once per overflow episode (from the first drop until the consumer next takes what
///   is buffered), announced as `eventbus.overflow` with path = the subscription id and data
///   `{subscription, name, total_dropped}` (the report comes at an episode's first drop; `stats()`
///   has the running counts) to every other matching subscription.
///   A slow subscription never delays the publisher or any other subscription.
/// - The bus is for observing. Code that must not miss a change is called directly instead.
public final class EventBus: Sendable {
    public static let overflowTopic = "eventbus.overflow"

    struct State: ~Copyable {
        var seq: UInt64 = 0
        var nextID: UInt64 = 1
        var subscribers: [SubscriptionBuffer] = []
        /// topic -> subscriptions matching it; emptied on every (un)subscribe.
        var routes: [String: [SubscriptionBuffer]] = [:]
        /// Publishers tend to repeat a topic; comparing strings is cheaper than hashing one.
        var lastTopic: String? = nil
        var lastRoute: [SubscriptionBuffer] = []
        /// Since the bus was made, over every subscription it ever had (see `overflowTotals`).
        var overflowEpisodes: UInt64 = 0
        var droppedEvents: UInt64 = 0

        mutating func route(for topic: String) -> [SubscriptionBuffer] {
            if let lastTopic, lastTopic == topic { return lastRoute }
            let route: [SubscriptionBuffer]
            if let cached = routes[topic] {
                route = cached
            } else {
                let segments = TopicPattern.split(topic)
                route = subscribers.filter { $0.matches(segments) }
                // Topics are few in practice; the cap only guards against a caller that
                // puts ids into topics.
                if routes.count >= 4096 { routes.removeAll() }
                routes[topic] = route
            }
            lastTopic = topic
            lastRoute = route
            return route
        }

        mutating func forgetRoutes() {
            routes.removeAll()
            lastTopic = nil
            lastRoute = []
        }
    }

    let defaultBufferSize: Int
    let state = Mutex(State())

    /// `bufferSize` is the buffer capacity of a subscription that does not name its own
    /// (at least 1).
    public init(bufferSize: Int = 1024) {
        self.defaultBufferSize = max(1, bufferSize)
    }

    /// Delivers an event to every subscription with a matching pattern and returns at once.
    ///
    /// `topic` must be a valid topic (see `validate(topic:)`); topics are written in code,
    /// so this is not checked on every publish. An invalid one is still delivered, matched
    /// segment by segment as written: only wildcards match an empty segment or one with `*`.
    public func publish(topic: String, path: String = "", data: JSON = .null) {
        let time = Self.now()
        var reports = deliver(topic: topic, path: path, data: data, time: time, excluding: 0)
        // Overflow events are published only after every lock is released; delivering one
        // may overflow another subscriber, whose report then follows in turn.
        while !reports.isEmpty {
            var next: [OverflowReport] = []
            for report in reports {
                let data: JSON = [
                    "subscription": .int(Int64(report.id)),
                    "name": .string(report.name),
                    "total_dropped": .int(Int64(report.totalDropped)),
                ]
                next += deliver(
                    topic: Self.overflowTopic, path: String(report.id), data: data, time: time,
                    excluding: report.id)
            }
            reports = next
        }
    }

    private func deliver(
        topic: String, path: String, data: JSON, time: Double, excluding excluded: UInt64
    ) -> [OverflowReport] {
        var wakeups = PendingWakeups()
        var reports: [OverflowReport] = []
        state.withLock { state in
            state.seq += 1
            let event = Event(topic: topic, path: path, data: data, time: time, seq: state.seq)
            for subscriber in state.route(for: topic) where subscriber.id != excluded {
                if subscriber.enqueue(event, wakeups: &wakeups, reports: &reports) { state.droppedEvents += 1 }
            }
            // Each report is the first drop of a new episode.
            state.overflowEpisodes += UInt64(reports.count)
        }
        wakeups.resumeAll()
        return reports
    }

    /// Subscribes to every topic that matches any of `patterns`. The subscription buffers up
    /// to `bufferSize` events (the bus default if nil); `name` appears in stats and overflow
    /// reports.
    public func subscribe(
        _ patterns: [TopicPattern], bufferSize: Int? = nil, name: String = ""
    ) -> EventSubscription {
        let subscriber = state.withLock { state in
            let subscriber = SubscriptionBuffer(
                id: state.nextID, name: name, patterns: patterns,
                capacity: max(1, bufferSize ?? defaultBufferSize))
            state.nextID += 1
            state.subscribers.append(subscriber)
            state.forgetRoutes()
            return subscriber
        }
        return EventSubscription(subscriber: subscriber, bus: self)
    }

    /// Subscribes to one pattern; throws `.invalidPattern` if it does not parse.
    public func subscribe(
        _ pattern: String, bufferSize: Int? = nil, name: String = ""
    ) throws(EventBusError) -> EventSubscription {
        subscribe([try TopicPattern(pattern)], bufferSize: bufferSize, name: name)
    }

    /// Overflow episodes (each announced once as `eventbus.overflow`) and events dropped, since
    /// the bus was made, counting subscriptions that have ended since. Never decrease.
    public func overflowTotals() -> (episodes: UInt64, dropped: UInt64) {
        state.withLock { ($0.overflowEpisodes, $0.droppedEvents) }
    }

    public var subscriberCount: Int {
        state.withLock { $0.subscribers.count }
    }

    /// One entry per live subscription, by id.
    public func stats() -> [SubscriberStats] {
        let subscribers = state.withLock { $0.subscribers }
        return subscribers.map { $0.stats() }
    }

    /// Forgets subscription `id`; publishing no longer touches it. Idempotent.
    func remove(id: UInt64) {
        let removed: SubscriptionBuffer? = state.withLock { state in
            guard let index = state.subscribers.firstIndex(where: { $0.id == id }) else {
                return nil
            }
            state.forgetRoutes()
            return state.subscribers.remove(at: index)
        }
        removed?.close()
    }

    /// Throws `.invalidTopic` unless `topic` is non-empty segments joined by dots, with no `*`.
    /// For topics built from outside input; the host's own topics are constants.
    public static func validate(topic: String) throws(EventBusError) {
        for (index, part) in TopicPattern.split(topic).enumerated() {
            if part.isEmpty {
                throw EventBusError(
                    code: .invalidTopic,
                    message: "invalid topic '\(topic)': segment \(index + 1) is empty")
            }
            if part.contains(UInt8(ascii: "*")) {
                throw EventBusError(
                    code: .invalidTopic,
                    message: "invalid topic '\(topic)': segment \(index + 1) contains '*'")
            }
        }
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1_000_000_000
    }
}
