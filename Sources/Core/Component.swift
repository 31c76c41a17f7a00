/// A part of the host that boots in dependency order: it loads, starts, and stops once.
///
/// The `ComponentLoader` drives every component through these calls, and a component may rely on:
/// - **Order.** `load` runs only after every component named in `dependencies` has loaded, and
///   `start` only after every one of them has started. Components of one level (no dependency
///   between them) load concurrently, on the global executor, so `load` must not assume it runs
///   alone; `start` and `stop` run one component at a time.
/// - **The context.** During `load` the context is unsealed: attach what you provide with
///   `context.set` and read what your dependencies attached. During `start` and `stop` the context
///   is sealed: read freely, without locks; `set` throws.
/// - **Errors.** A `load` or `start` that throws aborts the boot: the loader stops every component
///   that loaded, in reverse order, and reports which component failed and why.
/// - **Stop.** `stop` is called exactly once for each component whose `load` returned without
///   throwing, in the reverse of the start order, whether or not its `start` ran or succeeded.
///   It never throws: it reports its own problems (log, events) and releases whatever `load` and
///   `start` acquired, even if `start` never ran or failed half-way.
/// - **Cancellation.** The calls inherit the cancellation of the task that drives the loader; a
///   component waiting on something slow should honour it.
public protocol Component: Sendable {
    /// Unique among the components of one host, e.g. `registry`.
    var id: String { get }
    /// The ids of the components this one needs loaded (and started) before it.
    var dependencies: [String] { get }
    /// Phase 2: attaches what this component provides to the (unsealed) context.
    func load(_ context: AppContext) async throws
    /// Phase 3: begins the component's work; the context is sealed.
    func start(_ context: AppContext) async throws
    /// Shutdown, or an aborted boot: releases what `load` and `start` acquired. Must not throw.
    func stop(_ context: AppContext) async
}

/// A boot that cannot go on: a bad dependency graph, or a component that failed to load or start.
/// `component` names the component concerned (for a cycle, the first id of the cycle path).
public struct ComponentError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        case cycle, missingDependency, duplicateId, loadFailed, startFailed
    }

    public let code: Code
    public let component: String
    public let message: String

    public init(_ code: Code, component: String, message: String) {
        self.code = code
        self.component = component
        self.message = message
    }

    public var description: String { message }
}
