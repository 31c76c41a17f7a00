import Core
import Registry
import Supervisor
import Synchronization

extension ContextKey where Value == HostLifecycle {
    /// Made by the host in boot phase 1.
    public static var hostLifecycle: Self { Self("host.lifecycle") }
}

/// Where the host is between boot and exit, as `/readyz` reports it. The host moves it forward;
/// anyone may read it from any thread.
public final class HostLifecycle: Sendable {
    public enum Stage: String, Sendable {
        /// Components loading or starting (boot phases 1 to 3).
        case starting
        /// Boot phase 4: the registry folder is being applied as the first version.
        case applying
        /// Booted: every component started, the first version applied, auto_start services begun.
        case running
        /// A stop was asked for; components are stopping.
        case stopping
    }

    private let current = Mutex(Stage.starting)

    public init() {}

    public var stage: Stage { current.withLock { $0 } }

    public func enter(_ stage: Stage) { current.withLock { $0 = stage } }
}

/// One reason the host is not ready: which part (`host`, `http`, `services`), what it is about
/// (an entry id, or empty), and what people read.
public struct NotReady: Sendable, Equatable {
    public let check: String
    public let subject: String
    public let message: String

    public init(check: String, subject: String = "", message: String) {
        self.check = check
        self.subject = subject
        self.message = message
    }

    public var json: JSON {
        var object: [String: JSON] = ["check": .string(check), "message": .string(message)]
        if !subject.isEmpty { object["id"] = .string(subject) }
        return .object(object)
    }
}

/// What `GET /readyz` checks: the host booted (components started, the first registry version
/// applied), every `http.service` listening, every `auto_start` service past its start (running,
/// or decided: exited, failed, stopped by a person). Each part that is not ready says why.
public struct ReadinessCheck: Sendable {
    public let lifecycle: HostLifecycle?
    public let supervisor: Supervisor?
    /// The `http.service` entries that should listen and do not, with why.
    public let listeners: (@Sendable () async -> [NotReady])?

    public init(lifecycle: HostLifecycle?, supervisor: Supervisor?, listeners: (@Sendable () async -> [NotReady])?) {
        self.lifecycle = lifecycle
        self.supervisor = supervisor
        self.listeners = listeners
    }

    /// Empty when the host is ready.
    public func problems() async -> [NotReady] {
        var problems: [NotReady] = []
        if let lifecycle {
            switch lifecycle.stage {
            case .running: break
            case .starting: problems.append(NotReady(check: "host", message: "the components are starting"))
            case .applying: problems.append(NotReady(check: "host", message: "the first registry version is being applied"))
            case .stopping: problems.append(NotReady(check: "host", message: "the host is stopping"))
            }
        }
        if let listeners { problems += await listeners() }
        if let supervisor {
            for start in await supervisor.undecidedStarts() {
                let message: String
                if start.state == .stopped, !start.waitingFor.isEmpty {
                    message = "waits for \(start.waitingFor.map(\.description).joined(separator: ", ")) to run"
                } else if start.state == .stopped {
                    message = "not started yet"
                } else {
                    message = "is \(start.state.rawValue)"
                }
                problems.append(NotReady(check: "services", subject: start.id.description, message: message))
            }
        }
        return problems
    }
}
