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
    public let execHelper: String

    public init(runPath: String, registryRoot: String, execHelper: String = SupervisorComponent.defaultExecHelper()) {
        self.runPath = runPath
        self.registryRoot = registryRoot
        self.execHelper = execHelper
    }

    /// `roost-exec` next to the running executable.
    public static func defaultExecHelper() -> String {
        let exe = runningExecutable() ?? "./roost"
        let folder = exe.lastIndex(of: "/").map { String(exe[..<$0]) } ?? "."
        return folder + "/roost-exec"
    }

    static func runningExecutable() -> String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    public func load(_ context: AppContext) async throws {
        guard access(execHelper, X_OK) == 0 else {
            throw HostError(.bootFailed, "the supervisor needs \(execHelper) (build the roost-exec product)")
        }
        var configuration = Supervisor.Configuration(
            execHelper: execHelper, runPath: runPath, kind: ServiceKind(registryRoot: registryRoot))
        configuration.logRingSize = 1000
        configuration.hostExecutable = Self.runningExecutable()
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
