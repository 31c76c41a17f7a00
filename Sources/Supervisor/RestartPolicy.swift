import Core

/// When and how fast a service is started again after its process ends.
///
/// - `mode`: `always` restarts after any exit; `on-failure` (the default) only after an exit that
///   is not a success (code 0 or one of `successExitCodes`; a signal is never a success); `never`
///   leaves the service `exited`.
/// - Delays: the first restart waits `initialDelay`, each next one `factor` times longer, up to
///   `maxDelay`, each spread by ±`jitter` (a fraction) so that services that failed together do
///   not restart together. The delay returns to `initialDelay` after `stableAfter` of running.
/// - Give-up: more than `maxRestarts` restarts within `window` puts the service in `failed`.
public struct RestartPolicy: Sendable, Hashable {
    public enum Mode: String, Sendable, Hashable, CaseIterable {
        case always
        case onFailure = "on-failure"
        case never
    }

    public var mode: Mode = .onFailure
    public var initialDelay: Duration = .milliseconds(100)
    public var factor: Double = 2
    public var maxDelay: Duration = .seconds(30)
    public var jitter: Double = 0.1
    public var maxRestarts: Int = 5
    public var window: Duration = .seconds(60)
    public var stableAfter: Duration = .seconds(10)
    public var successExitCodes: Set<Int32> = []

    public init() {}

    /// True when `status` counts as a success (never for a signal).
    public func isSuccess(_ status: TerminationStatus) -> Bool {
        status.signal == 0 && (status.code == 0 || successExitCodes.contains(status.code))
    }
}

/// How a service is stopped: `signal` to its whole process group, then SIGKILL to the group when
/// it is still there after `timeout`.
public struct StopPolicy: Sendable, Hashable {
    public var signal: Int32 = 15  // SIGTERM
    public var timeout: Duration = .seconds(10)

    public init() {}
}
