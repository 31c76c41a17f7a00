import Core
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// EventBus throughput. The calling thread publishes (as the loop thread does in the host);
/// every subscription is consumed concurrently by its own task on the global executor.
///
/// A delivery is one event handed to one consumer. Events a consumer lost because it fell
/// more than a buffer behind are not deliveries; they are printed beside the rate. Each case
/// runs `rounds` times after a warm-up; the median is the figure to quote.
func runEventBusBench() {
    let rounds = 5
    print("EventBus bench: \(cpuCount()) cores, \(rounds) rounds per case after a warm-up, median first")
    #if DEBUG
    print("(debug build: build with -c release for figures worth quoting)")
    #endif
    _ = oneToOne(events: 200_000, bufferSize: 1024)
    _ = fanOut(subscribers: 100, publishes: 20_000, bufferSize: 1024)

    report("1 -> 1, buffer 1024", (0..<rounds).map { _ in
        oneToOne(events: 2_000_000, bufferSize: 1024)
    })
    report("1 -> 1, buffer 65536", (0..<rounds).map { _ in
        oneToOne(events: 2_000_000, bufferSize: 65_536)
    })
    report("1 -> 100 wildcards, buffer 1024", (0..<rounds).map { _ in
        fanOut(subscribers: 100, publishes: 200_000, bufferSize: 1024)
    })
    report("1 -> 100, nobody reading (publisher cost)", (0..<rounds).map { _ in
        publishOnly(subscribers: 100, publishes: 100_000)
    })
}

private struct Run {
    /// Events handed to consumers, or enqueued when nobody reads.
    var delivered: Int
    var dropped: Int
    var publishes: Int
    var seconds: Double
    var publishSeconds: Double
}

private func report(_ name: String, _ runs: [Run]) {
    let rates = runs.map { Double($0.delivered) / $0.seconds }
    let median = rates.sorted()[rates.count / 2]
    let dropped = runs.map(\.dropped).reduce(0, +)
    let offered = runs.map { $0.delivered + $0.dropped }.reduce(0, +)
    let publishRate = runs.map { Double($0.publishes) / $0.publishSeconds }.sorted()[runs.count / 2]
    print(
        "\(name): \(millions(median)) deliveries/s"
            + " (runs: \(rates.map(millions).joined(separator: " ")));"
            + " dropped \(percent(dropped, of: offered)); publish \(millions(publishRate)) events/s")
}

private func millions(_ rate: Double) -> String {
    let hundredths = Int((rate / 10_000).rounded())
    let fraction = hundredths % 100
    return "\(hundredths / 100).\(fraction < 10 ? "0" : "")\(fraction)M"
}

private func percent(_ part: Int, of whole: Int) -> String {
    guard whole > 0 else { return "0%" }
    let tenths = Int((Double(part) * 1000 / Double(whole)).rounded())
    return "\(tenths / 10).\(tenths % 10)%"
}

private func cpuCount() -> Int {
    #if canImport(Glibc)
    return Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    #else
    return 0
    #endif
}

private func seconds(_ duration: Duration) -> Double {
    let (whole, atto) = duration.components
    return Double(whole) + Double(atto) / 1e18
}

private let endTopic = "bench.end"

private final class Tally: Sendable {
    let received = Atomic<Int>(0)
    let finished = DispatchSemaphore(value: 0)
}

/// One task per subscription counts events until the end mark, which is never lost:
/// a full buffer drops its oldest event, not its newest.
private func consume(_ subscriptions: [EventSubscription], into tally: Tally) {
    for subscription in subscriptions {
        Task.detached {
            var count = 0
            for await event in subscription {
                if event.topic == endTopic { break }
                count += 1
            }
            tally.received.add(count, ordering: .relaxed)
            tally.finished.signal()
        }
    }
}

private func oneToOne(events: Int, bufferSize: Int) -> Run {
    let bus = EventBus(bufferSize: bufferSize)
    let subscription = bus.subscribe([try! TopicPattern("a.b.c"), try! TopicPattern(endTopic)])
    let tally = Tally()
    let clock = ContinuousClock()
    let start = clock.now
    consume([subscription], into: tally)
    for i in 0..<events {
        bus.publish(topic: "a.b.c", path: "app:bench", data: .int(Int64(i)))
    }
    let published = clock.now
    bus.publish(topic: endTopic)
    tally.finished.wait()
    let received = tally.received.load(ordering: .relaxed)
    return Run(
        delivered: received, dropped: events - received, publishes: events,
        seconds: seconds(clock.now - start), publishSeconds: seconds(published - start))
}

/// Patterns cycled over the subscribers: wildcards in every position, and exact topics.
private let fanOutPatterns = ["a.*.c", "a.**", "**", "x.y.*", "a.b.c", "x.y.z", "**.c", "a.b.*"]
private let fanOutTopics = ["a.b.c", "x.y.z", "a.q.c", "x.y.w", "m.n"]

private func fanOut(subscribers: Int, publishes: Int, bufferSize: Int) -> Run {
    let bus = EventBus(bufferSize: bufferSize)
    let patterns = (0..<subscribers).map { try! TopicPattern(fanOutPatterns[$0 % fanOutPatterns.count]) }
    let subscriptions = patterns.map { bus.subscribe([$0, try! TopicPattern(endTopic)]) }
    // What the consumers would receive if none fell behind (publishes cycle over the topics).
    let perTopic = publishes / fanOutTopics.count
    let offered = fanOutTopics.reduce(0) { sum, topic in
        sum + patterns.filter { $0.matches(topic) }.count * perTopic
    }
    let tally = Tally()
    let clock = ContinuousClock()
    let start = clock.now
    consume(subscriptions, into: tally)
    for i in 0..<publishes {
        bus.publish(topic: fanOutTopics[i % fanOutTopics.count], data: .int(Int64(i)))
    }
    let published = clock.now
    bus.publish(topic: endTopic)
    for _ in 0..<subscribers { tally.finished.wait() }
    let received = tally.received.load(ordering: .relaxed)
    return Run(
        delivered: received, dropped: offered - received, publishes: publishes,
        seconds: seconds(clock.now - start), publishSeconds: seconds(published - start))
}

/// The publisher alone: nobody reads, so after the first 1024 every enqueue also drops.
private func publishOnly(subscribers: Int, publishes: Int) -> Run {
    let bus = EventBus(bufferSize: 1024)
    let subscriptions = (0..<subscribers).map { i in
        try! bus.subscribe(fanOutPatterns[i % fanOutPatterns.count])
    }
    let clock = ContinuousClock()
    let start = clock.now
    for i in 0..<publishes {
        bus.publish(topic: fanOutTopics[i % fanOutTopics.count], data: .int(Int64(i)))
    }
    let elapsed = seconds(clock.now - start)
    let enqueued = bus.stats().reduce(0) { $0 + $1.buffered + Int($1.dropped) }
    withExtendedLifetime(subscriptions) {}
    return Run(
        delivered: enqueued, dropped: 0, publishes: publishes,
        seconds: elapsed, publishSeconds: elapsed)
}
