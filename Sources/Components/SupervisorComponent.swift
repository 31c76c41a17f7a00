import Core
import Logging
import Registry
import Supervisor

#if canImport(Glibc)
import Glibc
#endif

extension ContextKey where Value == Supervisor {
    /// Provided by the supervisor component.
    public static var supervisor: Self { Self("supervisor") }
}

/// The supervisor: runs `swiftlet.service` entries. It takes part in every registry apply (a
/// direct call, so no version is missed), kills what a crashed host left running before anything
/// starts, and at shutdown stops every service, dependents first.
public struct SupervisorComponent: Component {
    public let id = "supervisor"
    public let dependencies = ["registry", "pidgen"]
    public let runPath: String
    public let registryRoot: String

    public init(runPath: String, registryRoot: String) {
        self.runPath = runPath
        self.registryRoot = registryRoot
    }

    static func runningExecutable() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func load(_ context: AppContext) async throws {
        var configuration = Supervisor.Configuration(runPath: runPath, kind: ServiceKind(registryRoot: registryRoot))
        configuration.logRingSize = 1000
        configuration.hostExecutable = Self.runningExecutable()
        if let metrics = context.get(.metrics) {
            configuration.onRestart = { metrics.serviceRestarted($0) }
        }
        let supervisor = Supervisor(
            loop: try context.require(.loop), bus: try context.require(.eventBus),
            pids: try context.require(.pidGenerator), logger: try context.require(.logger), configuration: configuration)
        await supervisor.prepare()
        await (try context.require(.registry)).add(supervisor)
        try context.set(.supervisor, supervisor)
    }

    public func start(_ context: AppContext) async throws {}

    public func stop(_ context: AppContext) async {
        await context.get(.supervisor)?.shutdown()
    }
}
