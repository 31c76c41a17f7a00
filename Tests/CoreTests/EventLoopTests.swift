import Core
import Glibc
import Synchronization
import Testing

/// An actor whose code runs on the loop thread.
actor LoopBoundCounter {
    nonisolated let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    private(set) var count = 0
    private(set) var offLoopRuns = 0

    init(loop: EventLoop) { self.loop = loop }

    func increment() {
        if !loop.inLoop { offLoopRuns += 1 }
        count += 1
    }

    func runsOnLoopThread() -> Bool { loop.inLoop }
}

@Suite struct EventLoopTests {
    @Test func loopBoundActorRunsOnLoopThread() async {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let counter = LoopBoundCounter(loop: loop)
        #expect(await counter.runsOnLoopThread())
        #expect(!loop.inLoop)
    }

    @Test func concurrentEnqueuesAllRunExactlyOnce() async {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let counter = LoopBoundCounter(loop: loop)
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<64 {
                group.addTask {
                    for _ in 0..<500 { await counter.increment() }
                }
            }
        }
        #expect(await counter.count == 64 * 500)
        #expect(await counter.offLoopRuns == 0)
    }

    @Test func executeRunsClosuresInSubmissionOrder() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let seen = Mutex<[Int]>([])
        for i in 0..<1000 { loop.execute { seen.withLock { $0.append(i) } } }
        let onLoop = try await loop.submit { loop.inLoop }
        #expect(onLoop)
        #expect(seen.withLock { $0 } == Array(0..<1000))
    }

    @Test func taskWithLoopPreferenceRunsOnLoop() async {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let onLoop = await Task(executorPreference: loop) { loop.inLoop }.value
        #expect(onLoop)
    }

    @Test func sleepWaitsAtLeastTheDuration() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let clock = ContinuousClock()
        let start = clock.now
        try await loop.sleep(for: .milliseconds(30))
        #expect(clock.now - start >= .milliseconds(30))
    }

    @Test func cancelledSleepThrowsCancellation() async {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let task = Task { try await loop.sleep(for: .seconds(60)) }
        task.cancel()
        await #expect(throws: CancellationError.self) { try await task.value }
    }

    @Test func shutdownFailsPendingSleep() async {
        let loop = EventLoop()
        let started = AsyncStream.makeStream(of: Void.self)
        let task = Task {
            started.continuation.yield()
            try await loop.sleep(for: .seconds(60))
        }
        for await _ in started.stream { break }
        // The sleep may not have reached the loop yet; either way the task must end, not hang, and
        // end with the loop's "closed".
        await loop.shutdownGracefully()
        let error = await #expect(throws: UVError.self) { try await task.value }
        #expect(error?.isClosed == true)
    }

    @Test func repeatingTimerFiresUntilStopped() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let timer = LoopTimer(loop: loop)
        let (ticks, tick) = AsyncStream.makeStream(of: Bool.self)
        try await timer.start(after: .milliseconds(1), repeating: .milliseconds(2)) {
            tick.yield(loop.inLoop)
        }
        var fired = 0
        for await onLoop in ticks {
            #expect(onLoop)
            fired += 1
            if fired == 5 { break }
        }
        await timer.close()
        #expect(fired == 5)
    }

    @Test func signalArrivesThroughWatcher() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let watcher = try await SignalWatcher.watch([SIGUSR2], on: loop)
        kill(getpid(), SIGUSR2)
        var iterator = watcher.signals.makeAsyncIterator()
        #expect(await iterator.next() == SIGUSR2)
        await watcher.close()
        #expect(await iterator.next() == nil)
    }
}
