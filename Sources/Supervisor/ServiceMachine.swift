import Core

/// The states of a service, as published on `supervisor.state.<state>`.
public enum ServiceState: String, Sendable, Hashable, CaseIterable {
    /// Not running, and not asked to run.
    case stopped
    /// The process is started and not yet ready (readiness pending).
    case starting
    /// Ready.
    case running
    /// Asked to stop; the stop signal is sent and the process not yet gone.
    case stopping
    /// Exited and waiting out the restart delay.
    case backoff
    /// Exited, and the policy says not to restart.
    case exited
    /// Restarted too often within the window: given up until a person or a new version starts it.
    case failed
}

/// One service's restart logic as a pure state machine: `(state, event) -> (state, actions)`, in
/// the manner of s6's supervise. No I/O, no clock of its own: every event carries the time, and
/// the jitter comes from a seeded generator, so every rule is a one-line test.
///
/// The caller (the supervisor) performs the actions in order and feeds back what happens:
/// the process spawned or failed to, became ready, exited; a timer it was asked to start fired.
/// A timer of a kind replaces any running timer of that kind; events of timers that were
/// cancelled or replaced must not be delivered (the caller checks a generation, say).
public struct ServiceMachine: Sendable {
    public enum Timer: String, Sendable, Hashable {
        /// Backoff before the next start.
        case restart
        /// `stableAfter` of running: the delay returns to the initial one.
        case stable
        /// `start_timeout`: not ready in time.
        case startTimeout
        /// The stop signal's grace period: then SIGKILL.
        case stopTimeout
    }

    public enum Event: Sendable, Hashable {
        /// Start now (auto_start, `roost start`, a new version). Clears `failed`.
        case start
        /// The process could not be started (the message says why); counts as a failed run.
        case spawnFailed(String)
        /// The process is ready (at once when the service declares no readiness check).
        case ready
        /// The process ended.
        case exited(TerminationStatus)
        /// Stop and stay stopped.
        case stop
        case timerFired(Timer)
        /// The readiness watchdog was not fed in time: kill, then restart as after a failure.
        case watchdogMissed
    }

    public enum Action: Sendable, Hashable {
        case spawn
        /// To the service's whole process group.
        case signal(Int32)
        case startTimer(Timer, Duration)
        case cancelTimer(Timer)
        /// The state changed; publish it (with `restarts` and, in backoff, `nextDelay`).
        case publish(ServiceState)
    }

    public let policy: RestartPolicy
    public let stopPolicy: StopPolicy
    public let startTimeout: Duration

    public private(set) var state: ServiceState = .stopped
    /// Restarts since the service was last started by hand or by a version.
    public private(set) var restarts = 0
    /// The delay of the backoff under way (when in `backoff`).
    public private(set) var currentDelay: Duration?
    /// Why the last run ended, for people.
    public private(set) var lastExit: String?
    /// The un-jittered delay the next restart will use.
    private var baseDelay: Duration
    /// When the restarts within the window happened.
    private var recentRestarts: [Duration] = []
    /// A kill is under way to restart (readiness or watchdog failure), not to stop.
    private var killingForRestart = false
    /// The process is to be killed (start timeout, missed watchdog): one that was still being
    /// spawned when that was decided must be killed as soon as it exists.
    public var killPending: Bool { killingForRestart }
    private var random: SplitMix64

    public init(policy: RestartPolicy, stopPolicy: StopPolicy = StopPolicy(), startTimeout: Duration = .seconds(30),
                seed: UInt64 = 0x5EED) {
        self.policy = policy
        self.stopPolicy = stopPolicy
        self.startTimeout = startTimeout
        self.baseDelay = policy.initialDelay
        self.random = SplitMix64(seed: seed)
    }

    /// Handles `event` at time `now` (any monotonic origin) and returns what to do, in order.
    public mutating func handle(_ event: Event, at now: Duration) -> [Action] {
        switch (state, event) {
        case (.stopped, .start), (.exited, .start), (.failed, .start):
            restarts = 0
            recentRestarts = []
            baseDelay = policy.initialDelay
            return begin()
        case (.backoff, .start):
            restarts = 0
            recentRestarts = []
            baseDelay = policy.initialDelay
            return [.cancelTimer(.restart)] + begin()
        case (.backoff, .timerFired(.restart)):
            return begin()

        case (.starting, .ready):
            state = .running
            return [.cancelTimer(.startTimeout), .startTimer(.stable, policy.stableAfter), .publish(.running)]
        case (.running, .timerFired(.stable)):
            baseDelay = policy.initialDelay
            return []

        case (.starting, .timerFired(.startTimeout)):
            lastExit = "not ready within \(DurationText.format(startTimeout))"
            killingForRestart = true
            return [.signal(9)]
        case (.running, .watchdogMissed):
            lastExit = "watchdog not fed in time"
            killingForRestart = true
            return [.signal(9)]

        case (.starting, .spawnFailed(let reason)):
            lastExit = reason
            return [.cancelTimer(.startTimeout)] + ended(failed: true, at: now)
        case (.starting, .exited(let status)), (.running, .exited(let status)):
            let forced = killingForRestart
            killingForRestart = false
            if !forced { lastExit = status.description }
            let failed = forced || !policy.isSuccess(status)
            return [.cancelTimer(.startTimeout), .cancelTimer(.stable)] + ended(failed: failed, at: now)

        case (.starting, .stop), (.running, .stop):
            state = .stopping
            killingForRestart = false
            return [
                .cancelTimer(.startTimeout), .cancelTimer(.stable), .signal(stopPolicy.signal),
                .startTimer(.stopTimeout, stopPolicy.timeout), .publish(.stopping),
            ]
        case (.backoff, .stop):
            state = .stopped
            currentDelay = nil
            return [.cancelTimer(.restart), .publish(.stopped)]
        case (.stopping, .timerFired(.stopTimeout)):
            return [.signal(9)]
        case (.stopping, .exited(let status)):
            state = .stopped
            lastExit = status.description
            return [.cancelTimer(.stopTimeout), .publish(.stopped)]
        case (.stopping, .spawnFailed(let reason)):
            // Stopped while it was being started, and it never started.
            state = .stopped
            lastExit = reason
            return [.cancelTimer(.stopTimeout), .publish(.stopped)]

        default:
            // Everything else changes nothing: a second start while running, a stop of a stopped
            // service, a late timer, readiness after a stop was asked for.
            return []
        }
    }

    private mutating func begin() -> [Action] {
        state = .starting
        currentDelay = nil
        return [.spawn, .startTimer(.startTimeout, startTimeout), .publish(.starting)]
    }

    /// The process ended (or never started) while it was meant to run.
    private mutating func ended(failed: Bool, at now: Duration) -> [Action] {
        let restart: Bool
        switch policy.mode {
        case .always: restart = true
        case .onFailure: restart = failed
        case .never: restart = false
        }
        guard restart else {
            state = .exited
            return [.publish(.exited)]
        }
        recentRestarts = recentRestarts.filter { now - $0 < policy.window }
        if recentRestarts.count >= policy.maxRestarts {
            state = .failed
            return [.publish(.failed)]
        }
        recentRestarts.append(now)
        restarts += 1
        let delay = jittered(baseDelay)
        baseDelay = min(policy.maxDelay, baseDelay * policy.factor)
        state = .backoff
        currentDelay = delay
        return [.startTimer(.restart, delay), .publish(.backoff)]
    }

    private mutating func jittered(_ delay: Duration) -> Duration {
        guard policy.jitter > 0 else { return delay }
        let spread = (random.nextUnit() * 2 - 1) * policy.jitter
        return delay * max(0, 1 + spread)
    }
}
