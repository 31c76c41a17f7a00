import Logging

/// Boots a fixed set of components: `load()` (phase 2), then — after the host has frozen the
/// dispatcher and sealed the context — `start()` (phase 3), and at shutdown `stop()`.
///
/// The three calls are meant to come in that order from the host's boot task. `stop()` may come
/// at any time, from any task: during a `load()` or `start()` it waits for that call to finish
/// and then stops everything that loaded; a `load()` or `start()` after `stop()` throws without
/// running anything. Calling `load()` twice, or `start()` before `load()`, is a programming error.
///
/// Order: `levels(_:)` sorts the components into levels; level by level, the components of one
/// level load concurrently. They start one at a time in level order, by id within a level, and
/// stop one at a time in the reverse of that order.
public actor ComponentLoader {
    public nonisolated let context: AppContext
    private let components: [any Component]
    private let logger: Logger?

    private enum Phase { case idle, loading, loaded, starting, started, stopping, stopped }
    private var phase = Phase.idle
    /// Components whose `load` returned, in start order; emptied by stopping them.
    private var loaded: [any Component] = []
    /// `stop()` calls waiting for a `load()`, `start()` or another `stop()` to finish.
    private var waiters: [CheckedContinuation<Void, Never>] = []

    /// Ids of the components whose `load` returned, in start order (level, then id).
    public private(set) var loadedIDs: [String] = []
    /// Ids of the components whose `start` returned, in the order they started.
    public private(set) var startedIDs: [String] = []
    /// Ids of the components stopped, in the order they were stopped.
    public private(set) var stoppedIDs: [String] = []

    public init(components: [any Component], context: AppContext, logger: Logger? = nil) {
        self.components = components
        self.context = context
        self.logger = logger
    }

    // MARK: - Levels

    /// Sorts into levels: level 0 has no dependencies; level k depends only on levels < k, and
    /// each component sits in the lowest level it can. Within a level, order by id (deterministic).
    ///
    /// Throws `.duplicateId` when two components share an id, `.missingDependency` naming both ends
    /// when a dependency is not among `components`, and `.cycle` with the cycle's path
    /// (`a -> b -> c -> a`, each depending on the next, starting at its smallest id).
    public static func levels(_ components: [any Component]) throws(ComponentError) -> [[any Component]] {
        let sorted = components.sorted { $0.id < $1.id }
        var byID: [String: any Component] = [:]
        for component in sorted {
            if byID[component.id] != nil {
                throw ComponentError(
                    .duplicateId, component: component.id,
                    message: "two components have the id '\(component.id)'")
            }
            byID[component.id] = component
        }
        for component in sorted {
            for dependency in component.dependencies where byID[dependency] == nil {
                throw ComponentError(
                    .missingDependency, component: component.id,
                    message: "component '\(component.id)' depends on '\(dependency)', which is not registered")
            }
        }

        var unplaced = Dictionary(uniqueKeysWithValues: sorted.map { ($0.id, Set($0.dependencies)) })
        var placed = Set<String>()
        var result: [[any Component]] = []
        while !unplaced.isEmpty {
            let ready = unplaced.filter { $0.value.isSubset(of: placed) }.keys.sorted()
            if ready.isEmpty { throw cycleError(unplaced) }
            result.append(ready.map { byID[$0]! })
            for id in ready {
                unplaced[id] = nil
                placed.insert(id)
            }
        }
        return result
    }

    /// `unplaced`: the components no level could take, each with at least one dependency that is
    /// itself unplaced. Following such dependencies must come back to a component already seen.
    private static func cycleError(_ unplaced: [String: Set<String>]) -> ComponentError {
        var path: [String] = []
        var seenAt: [String: Int] = [:]
        var current = unplaced.keys.min()!
        while seenAt[current] == nil {
            seenAt[current] = path.count
            path.append(current)
            current = unplaced[current]!.filter { unplaced[$0] != nil }.min()!
        }
        let cycle = Array(path[seenAt[current]!...])
        let start = cycle.indices.min { cycle[$0] < cycle[$1] }!
        let rotated = Array(cycle[start...] + cycle[..<start])
        let text = (rotated + [rotated[0]]).joined(separator: " -> ")
        return ComponentError(.cycle, component: rotated[0], message: "dependency cycle: \(text)")
    }

    // MARK: - Boot

    /// Loads level by level, each level concurrently, waiting for the whole level even when one of
    /// its components fails. Does not seal the context.
    ///
    /// On a failure, stops (in reverse) every component that loaded and throws `.loadFailed` naming
    /// the failed component (the first by id if several in one level failed) and its error.
    /// A bad dependency graph throws as `levels(_:)` does, before anything loads.
    public func load() async throws(ComponentError) {
        switch phase {
        case .idle: break
        case .stopping, .stopped:
            throw ComponentError(.loadFailed, component: "", message: "the components were stopped before they loaded")
        case .loading, .loaded, .starting, .started:
            preconditionFailure("ComponentLoader.load() called twice")
        }
        let levels: [[any Component]]
        do {
            levels = try Self.levels(components)
        } catch {
            logger?.error("\(error.message)")
            finish(.stopped)
            throw error
        }

        phase = .loading
        let context = self.context
        for (number, level) in levels.enumerated() {
            logger?.debug("loading level \(number): \(level.map(\.id).joined(separator: ", "))")
            let failures = await withTaskGroup(of: (Int, (any Error)?).self) { group in
                for (index, component) in level.enumerated() {
                    group.addTask {
                        do {
                            try await component.load(context)
                            return (index, nil)
                        } catch {
                            return (index, error)
                        }
                    }
                }
                var failures = [(any Error)?](repeating: nil, count: level.count)
                for await (index, error) in group { failures[index] = error }
                return failures
            }

            var firstFailure: (id: String, error: any Error)?
            for (component, failure) in zip(level, failures) {
                if let failure {
                    logger?.error("component failed to load: \(failure)", metadata: ["component": "\(component.id)"])
                    if firstFailure == nil { firstFailure = (component.id, failure) }
                } else {
                    logger?.debug("component loaded", metadata: ["component": "\(component.id)"])
                    loaded.append(component)
                    loadedIDs.append(component.id)
                }
            }
            if let (id, failure) = firstFailure {
                await stopLoaded()
                throw ComponentError(.loadFailed, component: id, message: "component '\(id)' failed to load: \(failure)")
            }
        }
        finish(.loaded)
    }

    /// Starts the loaded components one at a time, in level order and by id within a level.
    ///
    /// On a failure, stops every loaded component in reverse — the failed one too, since it
    /// loaded — and throws `.startFailed` naming it and its error.
    public func start() async throws(ComponentError) {
        switch phase {
        case .loaded: break
        case .stopping, .stopped:
            throw ComponentError(.startFailed, component: "", message: "the components were stopped before they started")
        case .idle, .loading, .starting, .started:
            preconditionFailure("ComponentLoader.start() needs one completed load() and may run once")
        }
        phase = .starting
        for component in loaded {
            do {
                try await component.start(context)
            } catch {
                logger?.error("component failed to start: \(error)", metadata: ["component": "\(component.id)"])
                await stopLoaded()
                throw ComponentError(
                    .startFailed, component: component.id,
                    message: "component '\(component.id)' failed to start: \(error)")
            }
            startedIDs.append(component.id)
            logger?.debug("component started", metadata: ["component": "\(component.id)"])
        }
        finish(.started)
    }

    /// Stops every loaded component, one at a time, in the reverse of the start order. Idempotent:
    /// a later call stops nothing, and returns once the first one has finished.
    public func stop() async {
        while true {
            switch phase {
            case .loading, .starting, .stopping:
                await withCheckedContinuation { waiters.append($0) }
            case .stopped:
                return
            case .idle:
                finish(.stopped)
                return
            case .loaded, .started:
                await stopLoaded()
                return
            }
        }
    }

    private func stopLoaded() async {
        phase = .stopping
        for component in loaded.reversed() {
            await component.stop(context)
            stoppedIDs.append(component.id)
            logger?.debug("component stopped", metadata: ["component": "\(component.id)"])
        }
        loaded = []
        finish(.stopped)
    }

    private func finish(_ newPhase: Phase) {
        phase = newPhase
        let waiting = waiters
        waiters = []
        for waiter in waiting { waiter.resume() }
    }
}
