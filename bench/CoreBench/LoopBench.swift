import Core

/// An actor bound to the loop, as the HTTP server and the supervisor are.
private actor LoopBound {
    nonisolated let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    var calls = 0
    init(loop: EventLoop) { self.loop = loop }
    func ping() { calls += 1 }
}

/// A second actor on the same loop, calling the first: a hop that never leaves the loop thread.
private actor LoopCaller {
    nonisolated let loop: EventLoop
    nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }
    init(loop: EventLoop) { self.loop = loop }
    func call(_ target: LoopBound, times: Int) async {
        for _ in 0..<times { await target.ping() }
    }
}

/// Round-trip cost of calling into a loop-bound actor: from a task on the global executor
/// (two thread hops per call) and from another actor on the loop (no hop).
func runLoopBench() async {
    let loop = EventLoop()
    let target = LoopBound(loop: loop)
    let caller = LoopCaller(loop: loop)
    let clock = ContinuousClock()
    print("Loop-bound actor calls: median of 5 rounds")

    var fromPool: [Double] = []
    for _ in 0..<5 {
        let n = 20_000
        let start = clock.now
        for _ in 0..<n { await target.ping() }
        fromPool.append(nanoseconds(clock.now - start) / Double(n))
    }
    var fromLoop: [Double] = []
    for _ in 0..<5 {
        let n = 1_000_000
        let start = clock.now
        await caller.call(target, times: n)
        fromLoop.append(nanoseconds(clock.now - start) / Double(n))
    }
    var submits: [Double] = []
    for _ in 0..<5 {
        let n = 20_000
        let start = clock.now
        for _ in 0..<n { _ = try? await loop.submit { 1 } }
        submits.append(nanoseconds(clock.now - start) / Double(n))
    }
    print("  from a task on the global executor: \(format(median(fromPool))) per call (round trip)")
    print("  from another actor on the loop:     \(format(median(fromLoop))) per call")
    print("  loop.submit closure round trip:     \(format(median(submits))) per call")
    await loop.shutdownGracefully()
}

private func nanoseconds(_ d: Duration) -> Double {
    Double(d.components.seconds) * 1e9 + Double(d.components.attoseconds) / 1e9
}

private func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

private func format(_ ns: Double) -> String {
    ns >= 1000 ? "\(Double(Int(ns / 10)) / 100) µs" : "\(Int(ns)) ns"
}
