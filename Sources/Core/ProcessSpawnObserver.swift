import Synchronization

/// What a child process is to the host, for counting: the supervisor names its service processes
/// and readiness probes; a CGI gateway names its function processes.
public struct ProcessRole: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }

    /// The main process of a `swiftlet.service`.
    public static let service = ProcessRole(rawValue: "service")
    /// An `exec` readiness probe of a service.
    public static let readiness = ProcessRole(rawValue: "readiness")
    /// The process of one `swiftlet.function` run (one request, or one call).
    public static let function = ProcessRole(rawValue: "function")

    public var description: String { rawValue }
}

/// Told of every child process a loop starts (`EventLoop.observeSpawns`).
///
/// Contract: `processSpawned` is called once per child that was started (never for a spawn that
/// failed), after its exec, on whatever thread or task spawned it; it must be quick and must not
/// block or await. It is called before `ChildProcess.spawn` returns to its caller.
public protocol ProcessSpawnObserver: Sendable {
    func processSpawned(_ options: ProcessOptions)
}

/// The observer of one loop: a host owns its loop, so two hosts in one process (tests) count apart.
final class SpawnObserverSlot: Sendable {
    private let observer = Mutex<(any ProcessSpawnObserver)?>(nil)

    func set(_ value: any ProcessSpawnObserver) { observer.withLock { $0 = value } }
    func notify(_ options: ProcessOptions) {
        let current = observer.withLock { $0 }
        current?.processSpawned(options)
    }
}
