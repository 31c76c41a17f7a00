import Core
import Registry

/// Answers queries over the registry's current version, for the components that look entries up
/// (the supervisor its services, the HTTP service its endpoints).
public struct RegistryFinder: Sendable {
    public let registry: RegistryService

    /// The entries of the current version matching `query`, in id order.
    public func find(_ query: EntryQuery) async -> [Entry] {
        await registry.finder().find(query)
    }

    /// A Finder fixed on the current version, for several questions that must agree.
    public func snapshot() async -> Finder {
        await registry.finder()
    }
}

extension ContextKey where Value == RegistryFinder {
    /// Provided by the Finder component.
    public static var finder: Self { Self("registry.finder") }
}

/// Provides the `RegistryFinder` under `ContextKey.finder`.
public struct FinderComponent: Component {
    public let id = "finder"
    public let dependencies = ["registry"]

    public init() {}

    public func load(_ context: AppContext) async throws {
        try context.set(.finder, RegistryFinder(registry: try context.require(.registry)))
    }

    public func start(_ context: AppContext) async throws {}
    public func stop(_ context: AppContext) async {}
}
