import Logging

// The keys under which the host's infrastructure (phase 1) sits in the AppContext.

extension ContextKey where Value == EventLoop {
    /// The loop every libuv handle of the host lives on.
    public static var loop: Self { Self("core.loop") }
}

extension ContextKey where Value == EventBus {
    public static var eventBus: Self { Self("core.eventbus") }
}

extension ContextKey where Value == Logger {
    public static var logger: Self { Self("core.logger") }
}

extension ContextKey where Value == Dispatcher {
    /// Provided by the Dispatcher component; frozen when the host activates.
    public static var dispatcher: Self { Self("core.dispatcher") }
}

extension ContextKey where Value == PIDGenerator {
    /// Provided by the PIDGen component.
    public static var pidGenerator: Self { Self("core.pidgen") }
}
