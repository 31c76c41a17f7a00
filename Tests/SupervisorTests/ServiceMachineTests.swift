import Core
import Testing

@testable import Supervisor

/// A machine driven with a manual clock: `at` advances time, `feed` handles events.
struct Driver {
    var machine: ServiceMachine
    var now: Duration = .zero

    init(_ configure: (inout RestartPolicy) -> Void = { _ in }, jitter: Double = 0) {
        var policy = RestartPolicy()
        policy.jitter = jitter
        configure(&policy)
        machine = ServiceMachine(policy: policy, startTimeout: .seconds(30))
    }

    @discardableResult
    mutating func feed(_ event: ServiceMachine.Event, after elapsed: Duration = .zero) -> [ServiceMachine.Action] {
        now += elapsed
        return machine.handle(event, at: now)
    }

    /// Starts, becomes ready, and crashes; returns the actions of the crash.
    mutating func crash(code: Int32 = 1, signal: Int32 = 0, after elapsed: Duration = .zero) -> [ServiceMachine.Action] {
        feed(.exited(TerminationStatus(code: code, signal: signal)), after: elapsed)
    }

    /// The restart delay the last actions asked for.
    static func delay(_ actions: [ServiceMachine.Action]) -> Duration? {
        for case .startTimer(.restart, let delay) in actions { return delay }
        return nil
    }
}

let killed = TerminationStatus(code: 0, signal: 9)

@Suite struct ServiceMachineTests {
    @Test func startSpawnsWithAStartTimeoutAndReadyMeansRunning() {
        var d = Driver()
        #expect(d.feed(.start) == [.spawn, .startTimer(.startTimeout, .seconds(30)), .publish(.starting)])
        #expect(d.machine.state == .starting)
        #expect(d.feed(.ready) == [.cancelTimer(.startTimeout), .startTimer(.stable, .seconds(10)), .publish(.running)])
        #expect(d.machine.state == .running)
    }

    @Test func backoffDoublesUntilMaxDelay() {
        var d = Driver { $0.maxRestarts = 100; $0.maxDelay = .seconds(1) }
        d.feed(.start)
        var delays: [Duration] = []
        for _ in 0..<7 {
            d.feed(.ready)
            let actions = d.crash(after: .milliseconds(1))
            #expect(actions.last == .publish(.backoff))
            delays.append(Driver.delay(actions)!)
            #expect(d.feed(.timerFired(.restart), after: delays.last!).first == .spawn)
        }
        #expect(delays == [100, 200, 400, 800, 1000, 1000, 1000].map { Duration.milliseconds($0) })
        #expect(d.machine.restarts == 7)
    }

    @Test func jitterStaysWithinItsFractionAndVaries() {
        var d = Driver({ $0.maxRestarts = 1000; $0.window = .seconds(1); $0.maxDelay = .milliseconds(100) }, jitter: 0.1)
        d.feed(.start)
        var seen = Set<Duration>()
        for _ in 0..<200 {
            let delay = Driver.delay(d.crash(after: .seconds(2)))!
            #expect(delay >= .milliseconds(90) && delay <= .milliseconds(110))
            seen.insert(delay)
            d.feed(.timerFired(.restart), after: delay)
        }
        #expect(seen.count > 50)
    }

    @Test func delayResetsAfterStableRunning() {
        var d = Driver { $0.maxRestarts = 100 }
        d.feed(.start)
        for _ in 0..<3 {
            let delay = Driver.delay(d.crash(after: .milliseconds(1)))!
            d.feed(.timerFired(.restart), after: delay)
        }
        d.feed(.ready)
        #expect(Driver.delay(d.crash())! == .milliseconds(800))
        d.feed(.timerFired(.restart), after: .milliseconds(800))
        d.feed(.ready)
        // Ten seconds of healthy running: the stable timer fires and the delay is back to 100 ms.
        #expect(d.feed(.timerFired(.stable), after: .seconds(10)) == [])
        #expect(Driver.delay(d.crash())! == .milliseconds(100))
    }

    @Test func moreThanMaxRestartsWithinTheWindowGivesUp() {
        var d = Driver { $0.maxRestarts = 5; $0.window = .seconds(60) }
        d.feed(.start)
        for i in 0..<5 {
            let actions = d.crash(after: .seconds(1))
            #expect(actions.last == .publish(.backoff), "restart \(i + 1)")
            d.feed(.timerFired(.restart), after: Driver.delay(actions)!)
        }
        #expect(d.crash(after: .seconds(1)) == [.cancelTimer(.startTimeout), .cancelTimer(.stable), .publish(.failed)])
        #expect(d.machine.state == .failed)
        // Failed stays failed: a late timer does nothing; a start by hand clears it.
        #expect(d.feed(.timerFired(.restart)) == [])
        #expect(d.feed(.start).first == .spawn)
        #expect(d.machine.restarts == 0)
    }

    @Test func restartsOutsideTheWindowDoNotCount() {
        var d = Driver { $0.maxRestarts = 2; $0.window = .seconds(10); $0.maxRestarts = 2 }
        d.feed(.start)
        for _ in 0..<10 {
            // One crash every 6 s: never more than two within 10 s.
            let actions = d.crash(after: .seconds(6))
            #expect(actions.last == .publish(.backoff))
            d.feed(.timerFired(.restart), after: Driver.delay(actions)!)
        }
        #expect(d.machine.state == .starting)
    }

    @Test func onFailureRestartsOnlyFailuresAndHonoursSuccessExitCodes() {
        var d = Driver { $0.successExitCodes = [3] }
        d.feed(.start)
        #expect(d.crash(code: 0).last == .publish(.exited))
        d.feed(.start)
        #expect(d.crash(code: 3).last == .publish(.exited))
        d.feed(.start)
        #expect(d.crash(code: 4).last == .publish(.backoff))
        d.feed(.timerFired(.restart))
        // A signal is never a success, whatever the code.
        #expect(d.crash(code: 0, signal: 15).last == .publish(.backoff))
    }

    @Test func alwaysRestartsAfterSuccessAndNeverStaysExited() {
        var always = Driver { $0.mode = .always }
        always.feed(.start)
        #expect(always.crash(code: 0).last == .publish(.backoff))
        var never = Driver { $0.mode = .never }
        never.feed(.start)
        never.feed(.ready)
        #expect(never.feed(.exited(killed)).last == .publish(.exited))
        #expect(never.machine.state == .exited)
        #expect(never.machine.lastExit == "killed by signal 9 (SIGKILL)")
    }

    @Test func stopSignalsTheGroupThenKillsAfterTheTimeout() {
        var d = Driver()
        d.feed(.start)
        d.feed(.ready)
        #expect(d.feed(.stop) == [
            .cancelTimer(.startTimeout), .cancelTimer(.stable), .signal(15), .startTimer(.stopTimeout, .seconds(10)),
            .publish(.stopping),
        ])
        #expect(d.feed(.timerFired(.stopTimeout), after: .seconds(10)) == [.signal(9)])
        #expect(d.feed(.exited(killed)) == [.cancelTimer(.stopTimeout), .publish(.stopped)])
        #expect(d.machine.state == .stopped)
        // Stopping is not a failure: nothing restarts it.
        #expect(d.feed(.timerFired(.restart)) == [])
    }

    @Test func stopDuringBackoffCancelsTheRestart() {
        var d = Driver()
        d.feed(.start)
        #expect(d.crash().last == .publish(.backoff))
        #expect(d.feed(.stop) == [.cancelTimer(.restart), .publish(.stopped)])
        #expect(d.feed(.timerFired(.restart)) == [])
    }

    @Test func notReadyInTimeIsKilledAndRestartedAsAFailure() {
        var d = Driver { $0.mode = .onFailure }
        d.feed(.start)
        #expect(d.feed(.timerFired(.startTimeout), after: .seconds(30)) == [.signal(9)])
        // Even a clean exit after that kill is a failure.
        #expect(d.feed(.exited(TerminationStatus(code: 0, signal: 0))).last == .publish(.backoff))
        #expect(d.machine.lastExit == "not ready within 30s")
    }

    @Test func missedWatchdogKillsAndRestarts() {
        var d = Driver()
        d.feed(.start)
        d.feed(.ready)
        #expect(d.feed(.watchdogMissed) == [.signal(9)])
        #expect(d.feed(.exited(killed)).last == .publish(.backoff))
    }

    @Test func spawnFailureBacksOffLikeACrash() {
        var d = Driver { $0.maxRestarts = 1 }
        d.feed(.start)
        #expect(d.feed(.spawnFailed("no such file")).last == .publish(.backoff))
        d.feed(.timerFired(.restart))
        #expect(d.feed(.spawnFailed("no such file")).last == .publish(.failed))
        #expect(d.machine.lastExit == "no such file")
    }
}

extension ServiceMachineTests {
    @Test func stopWhileStartingThatNeverStartedEndsStopped() {
        var d = Driver()
        d.feed(.start)
        d.feed(.stop)
        #expect(d.feed(.spawnFailed("no such file")) == [.cancelTimer(.stopTimeout), .publish(.stopped)])
        #expect(d.machine.state == .stopped)
    }
}
