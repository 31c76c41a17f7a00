import Core
import HTTPService
import Logging
import Registry

#if canImport(Glibc)
import Glibc
#endif

/// The admin API on a unix socket in the state folder (mode 0600: only the host's user, and
/// root, can connect). The `roost` client commands talk to it; see docs/ADMIN-API.md.
///
/// The socket exists from `start` to `stop`. A socket file left by a host that was killed is
/// removed first: the state folder's lock says no other host owns it.
public struct AdminComponent: Component {
    public let id = "admin"
    public let dependencies = ["registry", "supervisor"]
    public let socketPath: String

    private let running = ServerBox()

    public init(socketPath: String) {
        self.socketPath = socketPath
    }

    public func load(_ context: AppContext) async throws {}

    public func start(_ context: AppContext) async throws {
        let loop = try context.require(.loop)
        let api = AdminAPI(
            registry: try context.require(.registry), reloader: try context.require(.registryReloader),
            bus: try context.require(.eventBus), supervisor: context.get(.supervisor), functions: context.get(.functions))
        unlink(socketPath)
        let listener = try await StreamListener.unix(on: loop, path: socketPath, mode: 0o600)
        let server = HTTPServer(listener: listener) { request in
            await api.handle(request, user: request.peer.map { String($0.uid) })
        }
        let task = Task(executorPreference: loop) { await server.run() }
        running.set(server, task)
        try context.require(.logger).debug("admin API listening on \(socketPath)")
    }

    public func stop(_ context: AppContext) async {
        guard let (server, task) = running.take() else { return }
        // Event streams never finish by themselves: a short grace period, then they are closed.
        await server.shutdown(gracePeriod: .milliseconds(500))
        await task.value
        unlink(socketPath)
    }
}

import Synchronization

/// The running server, set by `start` and taken by `stop` (components are values; this is the
/// one piece of state the admin component keeps between the two).
final class ServerBox: Sendable {
    private let state = Mutex<(HTTPServer, Task<Void, Never>)?>(nil)

    func set(_ server: HTTPServer, _ task: Task<Void, Never>) { state.withLock { $0 = (server, task) } }
    func take() -> (HTTPServer, Task<Void, Never>)? { state.withLock { value in defer { value = nil }; return value } }
}
