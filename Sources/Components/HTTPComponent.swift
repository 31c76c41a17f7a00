import Core
import HTTPService
import Logging
import Registry

/// The HTTP side: one server per `http.service` entry, answering from the registry's current
/// `Site` through the CGI gateway. It takes part in every apply: a version whose endpoints
/// conflict, or name a function or service that is not there, is refused with the places at
/// fault; a committed version replaces the site whole (requests under way finish with the one they
/// started with) and starts, moves or stops listeners as their entries change.
public struct HTTPComponent: Component {
    public let id = "http"
    public let dependencies = ["registry", "functions"]
    public let registryRoot: String
    private let box = HTTPSiteBox()

    public init(registryRoot: String) {
        self.registryRoot = registryRoot
    }

    public func load(_ context: AppContext) async throws {
        let loop = try context.require(.loop)
        let logger = try context.require(.logger)
        let router = SiteRouter(runner: try context.require(.functions), logger: logger, observer: context.get(.metrics))
        let host = HTTPSite(loop: loop, router: router, logger: logger, registryRoot: registryRoot)
        box.set(host)
        try context.set(.httpSite, host)
        await (try context.require(.registry)).add(host)
    }

    public func start(_ context: AppContext) async throws {
        await box.get()?.begin()
    }

    public func stop(_ context: AppContext) async {
        await box.get()?.end()
    }
}

import Synchronization

extension ContextKey where Value == HTTPSite {
    /// The HTTP component's servers (for `/readyz`).
    static var httpSite: Self { Self("http.site") }
}

final class HTTPSiteBox: Sendable {
    private let site = Mutex<HTTPSite?>(nil)
    func set(_ value: HTTPSite) { site.withLock { $0 = value } }
    func get() -> HTTPSite? { site.withLock { $0 } }
}

/// The servers of the `http.service` entries and the registry participant that feeds the router.
/// Not on the loop: building a site checks every function's program on disk.
actor HTTPSite: RegistryParticipant {
    nonisolated let name = "http"
    nonisolated let loop: EventLoop
    private let router: SiteRouter
    private let logger: Logger
    private let registryRoot: String
    private var running: [EntryID: (definition: HTTPServiceDefinition, server: HTTPServer, task: Task<Void, Never>)] = [:]
    private var serving = false
    /// Why a service's listener could not be started, until it is.
    private var bindFailures: [EntryID: String] = [:]
    /// The site built for the last proposal, reused when that state is committed.
    private var reviewed: (state: [EntryID: Entry], site: Site)?

    init(loop: EventLoop, router: SiteRouter, logger: Logger, registryRoot: String) {
        self.loop = loop
        self.router = router
        self.logger = logger
        self.registryRoot = registryRoot
    }

    func adopt(_ state: [EntryID: Entry], version: Int) async {
        router.replace(Site.build(from: state, registryRoot: registryRoot).0)
    }

    func review(_ proposal: RegistryProposal) async -> [RegistryError] {
        let (site, problems) = Site.build(from: proposal.state, registryRoot: registryRoot)
        reviewed = problems.isEmpty ? (proposal.state, site) : nil
        return problems
    }

    func committed(_ commit: RegistryCommit) async {
        // The proposal reviewed last is nearly always this commit; another participant may have
        // refused it, so the states are compared rather than the numbers.
        let site = reviewed.flatMap { $0.state == commit.state ? $0.site : nil }
            ?? Site.build(from: commit.state, registryRoot: registryRoot).0
        reviewed = nil
        router.replace(site)
        if serving { await reconcileServers() }
    }

    /// Starts a server for every `http.service`.
    func begin() async {
        serving = true
        await reconcileServers()
    }

    func end() async {
        serving = false
        let all = running
        running = [:]
        for (id, item) in all {
            logger.debug("\(id): stopping the server on \(item.definition.listen)")
            await item.server.shutdown(gracePeriod: .seconds(5))
            await item.task.value
            logger.debug("\(id): server stopped")
        }
    }

    /// The `http.service` entries of the current site that do not listen as they are defined
    /// (their listener could not be bound, or is not started yet); nothing before `begin`.
    func notListening() -> [NotReady] {
        guard serving else { return [] }
        return router.site.services.sorted { $0.key < $1.key }.compactMap { id, service in
            guard running[id]?.definition != service.definition else { return nil }
            let message = bindFailures[id].map { "cannot listen on \(service.definition.listen): \($0)" }
                ?? "not listening on \(service.definition.listen) yet"
            return NotReady(check: "http", subject: id.description, message: message)
        }
    }

    private func reconcileServers() async {
        let wanted = router.site.services.mapValues(\.definition)
        for (id, item) in running where wanted[id] != item.definition {
            running[id] = nil
            await item.server.shutdown(gracePeriod: .seconds(5))
            await item.task.value
            logger.info("\(id): stopped listening on \(item.definition.listen)")
        }
        for (id, definition) in wanted.sorted(by: { $0.key < $1.key }) where running[id] == nil {
            do {
                let listener = try await StreamListener.tcp(on: loop, host: definition.listen.host, port: definition.listen.port)
                let router = self.router
                let server = HTTPServer(listener: listener, configuration: definition.serverConfiguration) { request in
                    await router.handle(request, service: id)
                }
                let task = Task(executorPreference: loop) { await server.run() }
                running[id] = (definition, server, task)
                bindFailures[id] = nil
                logger.info("\(id): listening on http://\(listener.localAddress?.description ?? definition.listen.description)")
            } catch {
                bindFailures[id] = "\(error)"
                logger.error("\(id): cannot listen on \(definition.listen): \(error)")
            }
        }
    }
}
