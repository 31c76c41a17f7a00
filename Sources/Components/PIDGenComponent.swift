import Core

/// Provides the host's `PIDGenerator`, named after the node, under `ContextKey.pidGenerator`.
public struct PIDGenComponent: Component {
    public let id = "pidgen"
    public let dependencies: [String] = []
    let node: String

    public init(node: String) { self.node = node }

    public func load(_ context: AppContext) async throws {
        try context.set(.pidGenerator, PIDGenerator(node: node))
    }

    public func start(_ context: AppContext) async throws {}
    public func stop(_ context: AppContext) async {}
}
