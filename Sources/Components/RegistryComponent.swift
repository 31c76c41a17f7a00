import Core
import Logging
import Registry

extension ContextKey where Value == RegistryService {
    /// Provided by the registry component: the versioned registry.
    public static var registry: Self { Self("registry.service") }
}

extension ContextKey where Value == RegistryReloader {
    /// Provided by the registry component: applies the folder (boot, file changes, SIGHUP, admin).
    public static var registryReloader: Self { Self("registry.reloader") }
}

/// The registry: opens the history (`registry.db` in the state folder), provides the
/// `RegistryService` and its `RegistryReloader`. The folder itself is applied in boot phase 4
/// (`Host`), after every component has started, so that kind owners see the first version.
public struct RegistryComponent: Component {
    public let id = "registry"
    public let dependencies = ["pidgen", "dispatcher"]
    public let registryPath: String
    public let databasePath: String
    public let adjustments: FolderAdjustments
    public let kinds: KindTable
    public let quiet: Duration

    public init(registryPath: String, databasePath: String, adjustments: FolderAdjustments, kinds: KindTable,
                quiet: Duration = .milliseconds(5)) {
        self.registryPath = registryPath
        self.databasePath = databasePath
        self.adjustments = adjustments
        self.kinds = kinds
        self.quiet = quiet
    }

    public func load(_ context: AppContext) async throws {
        let path = databasePath
        let history = try await Task.detached { () throws(RegistryError) -> HistoryStore in
            try HistoryStore.open(path: path)
        }.value
        let service = try RegistryService(kinds: kinds, history: history, bus: try context.require(.eventBus))
        let reloader = RegistryReloader(
            loop: try context.require(.loop), folder: RegistryFolder(root: registryPath, adjustments: adjustments),
            registry: service, logger: try context.require(.logger), quiet: quiet)
        try context.set(.registry, service)
        try context.set(.registryReloader, reloader)
    }

    public func start(_ context: AppContext) async throws {}

    public func stop(_ context: AppContext) async {
        if let reloader = context.get(.registryReloader) { await reloader.stop() }
        if let service = context.get(.registry) { await service.finishWatchers() }
    }
}
