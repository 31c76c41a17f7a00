import Core
import Testing

// MARK: - Topic patterns

@Suite struct TopicPatternTests {
    @Test func exactPatternMatchesOnlyTheSameTopic() throws {
        let pattern = try TopicPattern("registry.entry.updated")
        #expect(pattern.matches("registry.entry.updated"))
        #expect(!pattern.matches("registry.entry"))
        #expect(!pattern.matches("registry.entry.updated.more"))
        #expect(!pattern.matches("registry.entry.created"))
        #expect(!pattern.matches("registry.entry.updatedx"))
    }

    @Test func starMatchesExactlyOneSegment() throws {
        let pattern = try TopicPattern("registry.entry.*")
        #expect(pattern.matches("registry.entry.updated"))
        #expect(pattern.matches("registry.entry.deleted"))
        #expect(!pattern.matches("registry.entry"))
        #expect(!pattern.matches("registry.entry.updated.more"))
        #expect(!pattern.matches("registry.version.committed"))

        let middle = try TopicPattern("supervisor.*.running")
        #expect(middle.matches("supervisor.state.running"))
        #expect(!middle.matches("supervisor.running"))
        #expect(!middle.matches("supervisor.a.b.running"))
    }

    @Test func doubleStarAtTheEndMatchesZeroOrMoreSegments() throws {
        let pattern = try TopicPattern("registry.**")
        #expect(pattern.matches("registry"))
        #expect(pattern.matches("registry.entry"))
        #expect(pattern.matches("registry.entry.updated"))
        #expect(!pattern.matches("registryx.entry"))
        #expect(!pattern.matches("host.started"))
    }

    @Test func doubleStarAtTheStartMatchesZeroOrMoreSegments() throws {
        let pattern = try TopicPattern("**.failed")
        #expect(pattern.matches("failed"))
        #expect(pattern.matches("build.failed"))
        #expect(pattern.matches("supervisor.state.failed"))
        #expect(!pattern.matches("build.failed.again"))
        #expect(!pattern.matches("build.succeeded"))
    }

    @Test func doubleStarInTheMiddleMatchesZeroOrMoreSegments() throws {
        let pattern = try TopicPattern("a.**.z")
        #expect(pattern.matches("a.z"))
        #expect(pattern.matches("a.b.z"))
        #expect(pattern.matches("a.b.c.z"))
        #expect(pattern.matches("a.z.z"))
        #expect(!pattern.matches("a.b"))
        #expect(!pattern.matches("b.z"))
        #expect(!pattern.matches("a.z.b"))
    }

    @Test func doubleStarAloneMatchesEveryTopic() throws {
        let pattern = try TopicPattern("**")
        #expect(pattern.matches("host"))
        #expect(pattern.matches("registry.entry.updated"))
    }

    @Test func starsCombineSegmentBySegment() throws {
        let atLeastTwo = try TopicPattern("a.*.**")
        #expect(!atLeastTwo.matches("a"))
        #expect(atLeastTwo.matches("a.b"))
        #expect(atLeastTwo.matches("a.b.c.d"))

        let lastButOne = try TopicPattern("**.*.c")
        #expect(!lastButOne.matches("c"))
        #expect(lastButOne.matches("b.c"))
        #expect(lastButOne.matches("a.b.c"))
        #expect(!lastButOne.matches("a.b.d"))

        let twoDoubleStars = try TopicPattern("**.x.**.y")
        #expect(twoDoubleStars.matches("x.y"))
        #expect(twoDoubleStars.matches("a.x.b.c.y"))
        #expect(!twoDoubleStars.matches("a.x.b.y.c"))
    }

    @Test(arguments: ["", ".", "a..b", "a.", ".a", "ab*", "*a", "a.b*.c", "***", "a.**x", "a.*.**b"])
    func invalidPatternIsRejected(_ text: String) {
        let error = #expect(throws: EventBusError.self) { try TopicPattern(text) }
        #expect(error?.code == .invalidPattern)
        #expect(error?.message.contains("'\(text)'") == true)
    }

    @Test func patternsWithTheSameTextAreEqual() throws {
        #expect(try TopicPattern("a.*") == TopicPattern("a.*"))
        #expect(try TopicPattern("a.*") != TopicPattern("a.**"))
        #expect(try TopicPattern("a.*").description == "a.*")
    }

    @Test func topicValidationRejectsEmptySegmentsAndStars() throws {
        try EventBus.validate(topic: "registry.entry.updated")
        for bad in ["", "a..b", "a.", "a.*", "a.b*"] {
            let error = #expect(throws: EventBusError.self) { try EventBus.validate(topic: bad) }
            #expect(error?.code == .invalidTopic)
        }
    }
}

// MARK: - Delivery

/// Reads exactly `count` events, or fewer if the subscription ends first.
private func read(
    _ count: Int, from iterator: inout EventSubscription.AsyncIterator
) async -> [Event] {
    var events: [Event] = []
    while events.count < count, let event = await iterator.next() {
        events.append(event)
    }
    return events
}

private func isStrictlyIncreasing(_ events: [Event]) -> Bool {
    zip(events, events.dropFirst()).allSatisfy { $0.seq < $1.seq }
}

/// Consumes on its own executor, where the iterator parks instead of yielding.
private actor Collector {
    var events: [Event] = []

    func collect(_ subscription: EventSubscription, count: Int) async {
        for await event in subscription {
            events.append(event)
            if events.count == count { return }
        }
    }
}

@Suite(.timeLimit(.minutes(1))) struct EventBusTests {
    @Test func subscriberSeesEventsInPublishOrder() async throws {
        let bus = EventBus()
        var iterator = try bus.subscribe("t.*").makeAsyncIterator()
        for i in 0..<500 {
            bus.publish(topic: "t.\(i % 3)", path: "p\(i)", data: .int(Int64(i)))
        }
        let events = await read(500, from: &iterator)
        #expect(events.count == 500)
        #expect(events.map(\.seq) == Array(1...500))
        #expect(events.map(\.data) == (0..<500).map { JSON.int(Int64($0)) })
        #expect(events[7].topic == "t.1")
        #expect(events[7].path == "p7")
        #expect(events[0].time > 1_600_000_000)  // wall clock, seconds since 1970
    }

    @Test func subscriptionReceivesOnlyMatchingTopics() async throws {
        let bus = EventBus()
        let patterns = [try TopicPattern("registry.entry.*"), try TopicPattern("host.started")]
        var iterator = bus.subscribe(patterns).makeAsyncIterator()
        bus.publish(topic: "registry.entry.updated", path: "app:hello")
        bus.publish(topic: "registry.version.committed")
        bus.publish(topic: "host.started")
        bus.publish(topic: "host.stopping")
        bus.publish(topic: "registry.entry.deleted", path: "app:old")
        let events = await read(3, from: &iterator)
        #expect(events.map(\.topic) == ["registry.entry.updated", "host.started", "registry.entry.deleted"])
        #expect(events.map(\.seq) == [1, 3, 5])
        #expect(bus.stats().first?.buffered == 0)
    }

    @Test func stalledSubscriberDropsItsOldestEvents() async throws {
        let bus = EventBus()
        let published = 10_000
        let stalledBuffer = 16
        let stalled = try bus.subscribe("t.*", bufferSize: stalledBuffer, name: "stalled")
        let reader = try bus.subscribe("t.*", bufferSize: published, name: "reader")

        let readerTask = Task {
            var iterator = reader.makeAsyncIterator()
            return await read(published, from: &iterator)
        }
        // Returns although `stalled` never reads: the publisher is never held up by it.
        for i in 0..<published {
            bus.publish(topic: "t.x", data: .int(Int64(i)))
        }

        let received = await readerTask.value
        #expect(received.count == published)
        let allInOrder = received.map(\.data) == (0..<published).map { JSON.int(Int64($0)) }
        #expect(allInOrder)
        #expect(isStrictlyIncreasing(received))

        let stats = try #require(bus.stats().first { $0.name == "stalled" })
        #expect(stats.buffered == stalledBuffer)
        #expect(stats.dropped == UInt64(published - stalledBuffer))
        #expect(stats.delivered == 0)

        var iterator = stalled.makeAsyncIterator()
        let late = await read(stalledBuffer, from: &iterator)
        #expect(late.map(\.data) == (published - stalledBuffer..<published).map { JSON.int(Int64($0)) })
        #expect(isStrictlyIncreasing(late))
        #expect(bus.stats().first { $0.name == "stalled" }?.delivered == UInt64(stalledBuffer))
    }

    @Test func overflowIsReportedToOtherSubscribersOncePerEpisode() async throws {
        let bus = EventBus()
        // The slow subscriber also matches the overflow topic, yet never hears about itself.
        let slow = bus.subscribe(
            [try TopicPattern("t"), try TopicPattern("eventbus.*")], bufferSize: 4, name: "slow")
        var observer = try bus.subscribe("eventbus.**", bufferSize: 100).makeAsyncIterator()

        for _ in 0..<100 { bus.publish(topic: "t") }
        bus.publish(topic: "eventbus.mark")

        let first = await read(2, from: &observer)
        #expect(first.map(\.topic) == [EventBus.overflowTopic, "eventbus.mark"])
        let report = first[0]
        #expect(report.path == String(slow.id))
        #expect(report.data["subscription"] == .int(Int64(slow.id)))
        #expect(report.data["name"] == "slow")
        #expect(report.data["dropped"] == nil)
        #expect(report.data["total_dropped"] == 1)
        // 96 "t" plus one more to make room for the mark, all in the same episode.
        #expect(bus.stats().first { $0.name == "slow" }?.dropped == 97)

        // The slow buffer holds the newest events and no report about itself; reading it
        // ends the episode.
        var slowIterator = slow.makeAsyncIterator()
        let drained = await read(4, from: &slowIterator)
        #expect(drained.map(\.topic) == ["t", "t", "t", "eventbus.mark"])

        for _ in 0..<100 { bus.publish(topic: "t") }
        bus.publish(topic: "eventbus.mark")
        let second = await read(2, from: &observer)
        #expect(second.map(\.topic) == [EventBus.overflowTopic, "eventbus.mark"])
        #expect(second[0].data["total_dropped"] == 98)
        #expect(bus.stats().first { $0.name == "slow" }?.dropped == 97 + 97)
    }

    @Test func cancellingTheConsumingTaskEndsTheSubscription() async throws {
        let bus = EventBus()
        let subscription = try bus.subscribe("t.*")
        let (started, startedContinuation) = AsyncStream.makeStream(of: Void.self)
        let consumer = Task {
            var count = 0
            for await _ in subscription {
                count += 1
                startedContinuation.yield()
            }
            return count
        }
        bus.publish(topic: "t.a")
        var startedIterator = started.makeAsyncIterator()
        await startedIterator.next()
        #expect(bus.subscriberCount == 1)

        // The consumer is now waiting for its next event, or about to.
        consumer.cancel()
        #expect(await consumer.value == 1)
        #expect(bus.subscriberCount == 0)

        // `subscription` is still alive here, but the bus no longer touches it.
        bus.publish(topic: "t.b")
        #expect(bus.stats().isEmpty)
        var iterator = subscription.makeAsyncIterator()
        #expect(await iterator.next() == nil)
    }

    @Test func subscriptionInAnAlreadyCancelledTaskEndsAtOnce() async throws {
        let bus = EventBus()
        let subscription = try bus.subscribe("t")
        bus.publish(topic: "t")
        let consumer = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            var iterator = subscription.makeAsyncIterator()
            return await iterator.next()
        }
        #expect(await consumer.value == nil)
        #expect(bus.subscriberCount == 0)
    }

    @Test func droppingTheSubscriptionUnsubscribes() throws {
        let bus = EventBus()
        do {
            let subscription = try bus.subscribe("a.*")
            #expect(bus.subscriberCount == 1)
            #expect(bus.stats().map(\.id) == [subscription.id])
        }
        #expect(bus.subscriberCount == 0)
        bus.publish(topic: "a.b")
        #expect(bus.stats().isEmpty)
    }

    @Test func anIteratorKeepsItsSubscriptionUntilItIsDropped() async throws {
        let bus = EventBus()
        var iterator: EventSubscription.AsyncIterator? = try bus.subscribe("a").makeAsyncIterator()
        #expect(bus.subscriberCount == 1)
        bus.publish(topic: "a")
        let event = await iterator?.next()
        #expect(event?.seq == 1)
        iterator = nil
        #expect(bus.subscriberCount == 0)
    }

    @Test func consumerIsolatedToAnActorReceivesEveryEventInOrder() async throws {
        let bus = EventBus()
        let subscription = try bus.subscribe("t", bufferSize: 5_000)
        let collector = Collector()
        let collecting = Task { await collector.collect(subscription, count: 5_000) }
        for i in 0..<5_000 { bus.publish(topic: "t", data: .int(Int64(i))) }
        await collecting.value
        let events = await collector.events
        let inOrder = events.map(\.data) == (0..<5_000).map { JSON.int(Int64($0)) }
        #expect(inOrder)
    }

    @Test func concurrentPublishersKeepSeqIncreasingForEverySubscriber() async throws {
        let bus = EventBus()
        let publishers = 4
        let perPublisher = 5_000
        let total = publishers * perPublisher
        let everything = try bus.subscribe("p.*", bufferSize: total)
        let everythingToo = try bus.subscribe("**", bufferSize: total)
        let some = bus.subscribe([try TopicPattern("p.1"), try TopicPattern("p.3")], bufferSize: total)

        let results = await withTaskGroup(of: [Event].self) { group in
            let expectations = [(everything, total), (everythingToo, total), (some, 2 * perPublisher)]
            for (subscription, expected) in expectations {
                group.addTask {
                    var iterator = subscription.makeAsyncIterator()
                    return await read(expected, from: &iterator)
                }
            }
            for p in 0..<publishers {
                group.addTask {
                    for i in 0..<perPublisher {
                        bus.publish(topic: "p.\(p)", data: .int(Int64(i)))
                    }
                    return []
                }
            }
            return await group.reduce(into: [[Event]]()) { if !$1.isEmpty { $0.append($1) } }
        }

        #expect(results.count == 3)
        #expect(results.map(\.count).sorted() == [2 * perPublisher, total, total])
        for events in results {
            #expect(isStrictlyIncreasing(events))
            // Each publisher's own events keep their order too.
            for p in 0..<publishers {
                let data = events.filter { $0.topic == "p.\(p)" }.map(\.data)
                #expect(data.isEmpty || data == (0..<perPublisher).map { JSON.int(Int64($0)) })
            }
        }
        #expect(bus.stats().allSatisfy { $0.dropped == 0 && $0.buffered == 0 })
    }

    @Test func concurrentPublishersAndSlowSubscribersAccountForEveryEvent() async throws {
        let bus = EventBus()
        let publishers = 3
        let perPublisher = 4_000
        let subscriptions = try (0..<4).map { i in
            try bus.subscribe("p.*", bufferSize: 8 << i, name: "s\(i)")
        }

        let consumers = subscriptions.map { subscription in
            Task {
                var received: [Event] = []
                for await event in subscription {
                    received.append(event)
                    if event.topic == "p.end" { break }
                }
                return received
            }
        }
        await withTaskGroup(of: Void.self) { group in
            for p in 0..<publishers {
                group.addTask {
                    for i in 0..<perPublisher { bus.publish(topic: "p.\(p)", data: .int(Int64(i))) }
                }
            }
        }
        // A full buffer loses its oldest event, never the newest: the end mark always arrives.
        bus.publish(topic: "p.end")

        let stats = bus.stats()
        for (index, consumer) in consumers.enumerated() {
            let received = await consumer.value
            #expect(received.last?.topic == "p.end")
            #expect(isStrictlyIncreasing(received))
            let dropped = try #require(stats.first { $0.name == "s\(index)" }).dropped
            #expect(UInt64(received.count) + dropped == UInt64(publishers * perPublisher + 1))
        }
    }

    @Test func statsDescribeEachSubscription() throws {
        let bus = EventBus(bufferSize: 32)
        let a = try bus.subscribe("a.*", name: "first")
        let b = bus.subscribe([try TopicPattern("b"), try TopicPattern("c.**")], bufferSize: 2)
        for _ in 0..<5 { bus.publish(topic: "b") }
        bus.publish(topic: "a.x")

        let stats = bus.stats()
        #expect(stats.map(\.id) == [a.id, b.id])
        #expect(stats[0].name == "first")
        #expect(stats[0].patterns == [try TopicPattern("a.*")])
        #expect(stats[0].bufferSize == 32)
        #expect(stats[0].buffered == 1)
        #expect(stats[1].patterns.map(\.description) == ["b", "c.**"])
        #expect(stats[1].bufferSize == 2)
        #expect(stats[1].buffered == 2)
        #expect(stats[1].dropped == 3)
    }

    @Test func overflowWithNobodyListeningStillCountsDrops() throws {
        let bus = EventBus()
        let subscription = try bus.subscribe("t", bufferSize: 1)
        for _ in 0..<3 { bus.publish(topic: "t") }
        #expect(bus.stats().first?.dropped == 2)
        withExtendedLifetime(subscription) {}
    }
}
