import Testing

import Core

/// What the mock components did, in the order they did it.
private actor EventLog {
    private(set) var entries: [String] = []
    func record(_ entry: String) { entries.append(entry) }
}

private struct MockFailure: Error, CustomStringConvertible {
    let description: String
}

/// Records "load x", "start x", "stop x" into a shared log; can be told to fail, or to run a
/// hook inside `load` (to hand values over through the context or to hold a handshake).
private struct MockComponent: Component {
    let id: String
    let dependencies: [String]
    let log: EventLog
    var failLoad = false
    var failStart = false
    var onLoad: (@Sendable (AppContext) async throws -> Void)? = nil

    init(_ id: String, _ dependencies: [String] = [], log: EventLog) {
        self.id = id
        self.dependencies = dependencies
        self.log = log
    }

    func load(_ context: AppContext) async throws {
        await log.record("load \(id)")
        try await onLoad?(context)
        if failLoad { throw MockFailure(description: "\(id) load broke") }
    }

    func start(_ context: AppContext) async throws {
        await log.record("start \(id)")
        if failStart { throw MockFailure(description: "\(id) start broke") }
    }

    func stop(_ context: AppContext) async {
        await log.record("stop \(id)")
    }
}

private func ids(_ levels: [[any Component]]) -> [[String]] {
    levels.map { $0.map(\.id) }
}

/// Runs `operation`; if it has not finished within `limit`, records a failure and cancels it,
/// so a broken implementation fails the test instead of hanging it.
private func withTimeout(
    _ limit: Duration = .seconds(30), _ operation: @escaping @Sendable () async throws -> Void
) async throws {
    try await withThrowingTaskGroup(of: Bool.self) { group in
        group.addTask {
            try await operation()
            return true
        }
        group.addTask {
            try await Task.sleep(for: limit)
            return false
        }
        let finished = try await group.next()!
        group.cancelAll()
        if !finished { Issue.record("did not finish within \(limit)") }
    }
}

@Suite struct ComponentLoaderTests {
    // MARK: Levels

    @Test func diamondSortsIntoThreeLevelsOrderedById() throws {
        let log = EventLog()
        let components: [any Component] = [
            MockComponent("d", ["c", "b"], log: log),
            MockComponent("c", ["a"], log: log),
            MockComponent("a", log: log),
            MockComponent("b", ["a"], log: log),
        ]
        #expect(ids(try ComponentLoader.levels(components)) == [["a"], ["b", "c"], ["d"]])
    }

    @Test func chainSortsIntoOneLevelPerLink() throws {
        let log = EventLog()
        let components: [any Component] = [
            MockComponent("http", ["registry"], log: log),
            MockComponent("registry", ["pidgen"], log: log),
            MockComponent("pidgen", log: log),
        ]
        #expect(ids(try ComponentLoader.levels(components)) == [["pidgen"], ["registry"], ["http"]])
    }

    @Test func componentSitsInTheLowestLevelItsDependenciesAllow() throws {
        let log = EventLog()
        let components: [any Component] = [
            MockComponent("z", log: log),
            MockComponent("c", ["b", "a"], log: log),
            MockComponent("b", ["a"], log: log),
            MockComponent("y", ["a", "a"], log: log),
            MockComponent("a", log: log),
        ]
        #expect(ids(try ComponentLoader.levels(components)) == [["a", "z"], ["b", "y"], ["c"]])
    }

    @Test func cycleIsReportedWithItsPath() {
        let log = EventLog()
        let components: [any Component] = [
            MockComponent("b", ["c"], log: log),
            MockComponent("a", ["b"], log: log),
            MockComponent("c", ["a"], log: log),
            MockComponent("d", ["a"], log: log),
            MockComponent("root", log: log),
        ]
        let error = #expect(throws: ComponentError.self) { try ComponentLoader.levels(components) }
        #expect(error == ComponentError(.cycle, component: "a", message: "dependency cycle: a -> b -> c -> a"))
    }

    @Test func cyclePathLeavesOutComponentsThatOnlyDependOnTheCycle() {
        let log = EventLog()
        let components: [any Component] = [
            MockComponent("a", ["n"], log: log),
            MockComponent("m", ["o"], log: log),
            MockComponent("n", ["m"], log: log),
            MockComponent("o", ["n"], log: log),
        ]
        let error = #expect(throws: ComponentError.self) { try ComponentLoader.levels(components) }
        #expect(error?.message == "dependency cycle: m -> o -> n -> m")
        #expect(error?.component == "m")
    }

    @Test func selfDependencyIsACycle() {
        let log = EventLog()
        let error = #expect(throws: ComponentError.self) {
            try ComponentLoader.levels([MockComponent("a", ["a"], log: log)])
        }
        #expect(error?.code == .cycle)
        #expect(error?.message == "dependency cycle: a -> a")
    }

    @Test func missingDependencyNamesBothEnds() {
        let log = EventLog()
        let error = #expect(throws: ComponentError.self) {
            try ComponentLoader.levels([MockComponent("http", ["registry"], log: log)])
        }
        #expect(
            error
                == ComponentError(
                    .missingDependency, component: "http",
                    message: "component 'http' depends on 'registry', which is not registered"))
    }

    @Test func duplicateIdIsAnError() {
        let log = EventLog()
        let error = #expect(throws: ComponentError.self) {
            try ComponentLoader.levels([MockComponent("a", log: log), MockComponent("b", log: log), MockComponent("a", log: log)])
        }
        #expect(error == ComponentError(.duplicateId, component: "a", message: "two components have the id 'a'"))
    }

    @Test func loadWithABadGraphThrowsBeforeLoadingAnything() async {
        let log = EventLog()
        let loader = ComponentLoader(
            components: [MockComponent("ok", log: log), MockComponent("a", ["b"], log: log), MockComponent("b", ["a"], log: log)],
            context: AppContext())
        let error = await #expect(throws: ComponentError.self) { try await loader.load() }
        #expect(error?.code == .cycle)
        #expect(await log.entries.isEmpty)
    }

    // MARK: Boot

    @Test func componentsOfOneLevelLoadConcurrently() async throws {
        let log = EventLog()
        let (aEntered, aSignal) = AsyncStream.makeStream(of: Void.self)
        let (bEntered, bSignal) = AsyncStream.makeStream(of: Void.self)
        // Each load announces itself, then waits for the other: sequential loading never gets past
        // the first one, and the timeout guard fails the test.
        var a = MockComponent("a", log: log)
        a.onLoad = { _ in
            aSignal.yield()
            var other = bEntered.makeAsyncIterator()
            guard await other.next() != nil else { throw CancellationError() }
        }
        var b = MockComponent("b", log: log)
        b.onLoad = { _ in
            bSignal.yield()
            var other = aEntered.makeAsyncIterator()
            guard await other.next() != nil else { throw CancellationError() }
        }
        let loader = ComponentLoader(components: [a, b, MockComponent("c", ["a", "b"], log: log)], context: AppContext())
        try await withTimeout { try await loader.load() }
        #expect(await loader.loadedIDs == ["a", "b", "c"])
        #expect(await log.entries.last == "load c")
        await loader.stop()
    }

    @Test func lifecycleRunsInLevelOrderAndStopsInReverse() async throws {
        let log = EventLog()
        let loader = ComponentLoader(
            components: [
                MockComponent("http", ["registry", "pidgen"], log: log),
                MockComponent("registry", ["pidgen"], log: log),
                MockComponent("pidgen", log: log),
            ],
            context: AppContext())
        try await loader.load()
        try await loader.start()
        #expect(await loader.startedIDs == ["pidgen", "registry", "http"])
        await loader.stop()
        #expect(
            await log.entries == [
                "load pidgen", "load registry", "load http",
                "start pidgen", "start registry", "start http",
                "stop http", "stop registry", "stop pidgen",
            ])
    }

    @Test func loadSeesWhatItsDependenciesAttached() async throws {
        let log = EventLog()
        let port = ContextKey<Int>("http.port")
        let seen = ContextKey<String>("seen")
        var provider = MockComponent("config", log: log)
        provider.onLoad = { context in try context.set(port, 8080) }
        var consumer = MockComponent("http", ["config"], log: log)
        consumer.onLoad = { context in try context.set(seen, "port \(try context.require(port))") }
        let context = AppContext()
        let loader = ComponentLoader(components: [consumer, provider], context: context)
        try await loader.load()
        #expect(context.get(seen) == "port 8080")
        await loader.stop()
    }

    @Test func failedStartStopsEveryLoadedComponentInReverseAndNamesTheFailure() async {
        let log = EventLog()
        var c = MockComponent("c", ["b"], log: log)
        c.failStart = true
        let loader = ComponentLoader(
            components: [MockComponent("d", ["c"], log: log), c, MockComponent("b", ["a"], log: log), MockComponent("a", log: log)],
            context: AppContext())
        await #expect(throws: Never.self) { try await loader.load() }
        let error = await #expect(throws: ComponentError.self) { try await loader.start() }
        #expect(error == ComponentError(.startFailed, component: "c", message: "component 'c' failed to start: c start broke"))
        #expect(
            await log.entries == [
                "load a", "load b", "load c", "load d",
                "start a", "start b", "start c",
                "stop d", "stop c", "stop b", "stop a",
            ])
        #expect(await loader.startedIDs == ["a", "b"])
        await loader.stop()
        #expect(await log.entries.count == 11, "a later stop() stops nothing again")
    }

    @Test func failedLoadStopsWhatLoadedInReverseAndNamesTheFailure() async {
        let log = EventLog()
        var c = MockComponent("c", ["b"], log: log)
        c.failLoad = true
        let loader = ComponentLoader(
            components: [
                MockComponent("a", log: log), MockComponent("b", log: log), c,
                MockComponent("d", ["a"], log: log), MockComponent("e", ["c"], log: log),
            ],
            context: AppContext())
        let error = await #expect(throws: ComponentError.self) { try await loader.load() }
        #expect(error == ComponentError(.loadFailed, component: "c", message: "component 'c' failed to load: c load broke"))
        let entries = await log.entries
        #expect(entries.count == 7)
        #expect(Set(entries.prefix(2)) == ["load a", "load b"])
        #expect(Set(entries.dropFirst(2).prefix(2)) == ["load c", "load d"])
        #expect(Array(entries.suffix(3)) == ["stop d", "stop b", "stop a"])
        #expect(!entries.contains("load e"), "nothing loads after a failed level")
        #expect(await loader.stoppedIDs == ["d", "b", "a"])
    }

    @Test func twoLoadFailuresInOneLevelReportTheFirstById() async {
        let log = EventLog()
        var c = MockComponent("c", ["a"], log: log)
        c.failLoad = true
        var d = MockComponent("d", ["a"], log: log)
        d.failLoad = true
        let loader = ComponentLoader(
            components: [d, MockComponent("e", ["a"], log: log), c, MockComponent("a", log: log)], context: AppContext())
        let error = await #expect(throws: ComponentError.self) { try await loader.load() }
        #expect(error?.code == .loadFailed)
        #expect(error?.component == "c")
        #expect(await loader.stoppedIDs == ["e", "a"])
    }

    @Test func stopTwiceStopsEachComponentOnce() async throws {
        let log = EventLog()
        let loader = ComponentLoader(
            components: [MockComponent("a", log: log), MockComponent("b", ["a"], log: log)], context: AppContext())
        try await loader.load()
        try await loader.start()
        await loader.stop()
        await loader.stop()
        #expect(await log.entries.filter { $0.hasPrefix("stop") } == ["stop b", "stop a"])
    }

    @Test func loadedButNeverStartedComponentsStillStopInReverse() async throws {
        let log = EventLog()
        let loader = ComponentLoader(
            components: [MockComponent("b", ["a"], log: log), MockComponent("a", log: log), MockComponent("c", log: log)],
            context: AppContext())
        try await loader.load()
        await loader.stop()
        #expect(await loader.stoppedIDs == ["b", "c", "a"])
        #expect(await loader.startedIDs.isEmpty)
    }

    @Test func startAfterStopThrowsAndStartsNothing() async throws {
        let log = EventLog()
        let loader = ComponentLoader(components: [MockComponent("a", log: log)], context: AppContext())
        try await loader.load()
        await loader.stop()
        let error = await #expect(throws: ComponentError.self) { try await loader.start() }
        #expect(error?.code == .startFailed)
        #expect(await log.entries == ["load a", "stop a"])
    }
}
