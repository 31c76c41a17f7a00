import Core
import HTTPService
import Logging
import Registry

#if canImport(Glibc)
import Glibc
#endif

/// The admin API on a unix socket in the state folder (mode 0600: only the host's user, and
/// root, can connect), and optionally on a TCP address where every request must carry the admin
/// bearer token. The `roost` client commands talk to the socket; see docs/ADMIN-API.md.
///
/// The socket exists from `start` to `stop`. A socket file left by a host that was killed is
/// removed first: the state folder's lock says no other host owns it. A TCP address that cannot
/// be bound fails the start (and so the boot).
public struct AdminComponent: Component {
    public let id = "admin"
    public let dependencies = ["registry", "supervisor", "http"]
    public let socketPath: String
    public let tcp: TCP?

    /// The optional TCP listener: exactly `address` is bound (no other interface).
    public struct TCP: Sendable {
        public let address: SocketAddress
        public let token: AdminToken

        public init(address: SocketAddress, token: AdminToken) {
            self.address = address
            self.token = token
        }
    }

    private let running = ServerBox()

    public init(socketPath: String, tcp: TCP? = nil) {
        self.socketPath = socketPath
        self.tcp = tcp
    }

    public func load(_ context: AppContext) async throws {}

    public func start(_ context: AppContext) async throws {
        let loop = try context.require(.loop)
        let logger = try context.require(.logger)
        var listeners: (@Sendable () async -> [NotReady])?
        if let site: HTTPSite = context.get(.httpSite) {
            listeners = { await site.notListening() }
        }
        let readiness = ReadinessCheck(
            lifecycle: context.get(.hostLifecycle), supervisor: context.get(.supervisor), listeners: listeners)
        let api = AdminAPI(
            registry: try context.require(.registry), reloader: try context.require(.registryReloader),
            bus: try context.require(.eventBus), supervisor: context.get(.supervisor), functions: context.get(.functions),
            readiness: readiness, metrics: context.get(.metrics))
        unlink(socketPath)
        let listener = try await StreamListener.unix(on: loop, path: socketPath, mode: 0o600)
        let server = HTTPServer(listener: listener) { request in
            await api.handle(request, user: request.peer.map { String($0.uid) })
        }
        running.add(server, Task(executorPreference: loop) { await server.run() })
        logger.debug("admin API listening on \(socketPath)")

        guard let tcp else { return }
        let tcpListener: StreamListener
        do {
            tcpListener = try await StreamListener.tcp(on: loop, host: tcp.address.host, port: tcp.address.port)
        } catch {
            throw HostError(.bootFailed, "the admin API cannot listen on \(tcp.address): \(error)")
        }
        let token = tcp.token
        // The token is checked once the head is in, before any body is read: a client without it
        // never gets a body buffered (the body, 1 MiB at most, is read only for a caller with it).
        var configuration = HTTPServer.Configuration()
        configuration.streamsBodies = true
        configuration.maxBodySize = 1 << 20
        let tcpServer = HTTPServer(listener: tcpListener, configuration: configuration) { request in
            // One Authorization header with the token; several are refused rather than guessed at.
            let given = request.headers.values(for: "Authorization")
            guard given.count == 1, token.authorizes(given[0]) else {
                return AdminToken.unauthorized(tokenGiven: !given.isEmpty)
            }
            var request = request
            if let body = request.streamedBody {
                do throws(HTTPError) {
                    request.body = try await body.collect()
                } catch {
                    return .json(status: error.status, ["error": ["code": "bad_body", "message": .string(error.message)]])
                }
                request.streamedBody = nil
            }
            return await api.handle(request, user: "token")
        }
        running.add(tcpServer, Task(executorPreference: loop) { await tcpServer.run() })
        logger.info("admin API listening on http://\(tcpListener.localAddress?.description ?? tcp.address.description) (bearer token required)")
    }

    public func stop(_ context: AppContext) async {
        let logger = context.get(.logger)
        // Event streams never finish by themselves: a short grace period, then they are closed.
        for (server, task) in running.takeAll() {
            logger?.debug("admin API: draining a server")
            await server.shutdown(gracePeriod: .milliseconds(500))
            await task.value
            logger?.debug("admin API: server stopped")
        }
        unlink(socketPath)
    }
}

import Synchronization

/// The running servers, added by `start` and taken by `stop` (components are values; this is
/// the one piece of state the admin component keeps between the two).
final class ServerBox: Sendable {
    private let servers = Mutex<[(HTTPServer, Task<Void, Never>)]>([])

    func add(_ server: HTTPServer, _ task: Task<Void, Never>) { servers.withLock { $0.append((server, task)) } }
    func takeAll() -> [(HTTPServer, Task<Void, Never>)] { servers.withLock { value in defer { value = [] }; return value } }
}
