import Core
import Glibc
import Synchronization
import Testing

/// Counts how often its method runs while another run of it is still inside (which a serial
/// executor must never allow).
private actor BusyActor {
    nonisolated let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    nonisolated let inside = Atomic<Int>(0)
    nonisolated let overlaps = Atomic<Int>(0)
    init(loop: EventLoop) { self.loop = loop }

    func work() {
        if inside.add(1, ordering: .sequentiallyConsistent).newValue > 1 { overlaps.add(1, ordering: .relaxed) }
        var x = 0
        for i in 0..<2000 { x &+= i }
        if x == 42 { print("") }
        inside.subtract(1, ordering: .sequentiallyConsistent)
    }
}

private final class StopFlag: Sendable { let flag = Atomic<Bool>(false) }
private final class Counter: Sendable { let value = Atomic<Int>(0) }

/// Stress tests of shutdown racing with work from other threads. The short sleeps open the race
/// window on purpose: there is no event to await for "in the middle of a shutdown".
@Suite struct ShutdownRaceTests {
    @Test func serialExecutorStaysSerialAcrossShutdown() async {
        var overlaps = 0
        for _ in 0..<150 {
            let loop = EventLoop()
            let actor = BusyActor(loop: loop)
            let stop = StopFlag()
            let tasks = (0..<6).map { _ in
                Task.detached {
                    var n = 0
                    while !stop.flag.load(ordering: .relaxed) && n < 20000 { await actor.work(); n += 1 }
                }
            }
            try? await Task.sleep(for: .milliseconds(2))
            await loop.shutdownGracefully()
            try? await Task.sleep(for: .milliseconds(2))
            stop.flag.store(true, ordering: .relaxed)
            for t in tasks { await t.value }
            overlaps += actor.overlaps.load(ordering: .relaxed)
        }
        #expect(overlaps == 0)
    }

    @Test func sleepsStartedDuringShutdownDoNotHoldItUp() async {
        // A timer that survived the shutdown would hold the loop until it fired, and its sleep
        // would then return normally; every sleep must end with the loop's "closed" instead.
        // (Checked by outcome, not by the clock: the test runner's pool may be slow under load.)
        let completed = Counter()
        for _ in 0..<150 {
            let loop = EventLoop()
            let stop = StopFlag()
            let tasks = (0..<6).map { _ in
                Task.detached {
                    while !stop.flag.load(ordering: .relaxed) {
                        do {
                            try await loop.sleep(for: .seconds(60))
                            completed.value.add(1, ordering: .relaxed)
                        } catch {
                            if (error as? UVError)?.isClosed == true && loop.isStopped { break }
                        }
                    }
                }
            }
            try? await Task.sleep(for: .milliseconds(1))
            await loop.shutdownGracefully()
            stop.flag.store(true, ordering: .relaxed)
            for t in tasks { await t.value }
        }
        #expect(completed.value.load(ordering: .relaxed) == 0)
    }
}
