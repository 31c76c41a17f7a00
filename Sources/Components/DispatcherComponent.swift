import Core

/// Provides the host's command `Dispatcher` under `ContextKey.dispatcher`. Components that offer
/// commands depend on it and register during their `load`; the host freezes it at activation.
public struct DispatcherComponent: Component {
    public let id = "dispatcher"
    public let dependencies: [String] = []

    public init() {}

    public func load(_ context: AppContext) async throws {
        let dispatcher = Dispatcher()
        // The host's own commands; more arrive with each component.
        try dispatcher.register("host.commands") { _ in
            .array(dispatcher.commandNames.map { .string($0) })
        }
        try context.set(.dispatcher, dispatcher)
    }

    public func start(_ context: AppContext) async throws {}
    public func stop(_ context: AppContext) async {}
}
