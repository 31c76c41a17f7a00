import Core

#if canImport(Glibc)
import Glibc
#endif

/// A component that owns kinds (or must follow the registry) and takes part in every apply.
///
/// What a participant may rely on:
/// - Applies are serialised: `review` and `committed` are never called for two versions at once,
///   and `committed` sees every version in order, exactly once, before the apply returns.
/// - `review` gets the whole validated change before it commits and returns the reasons to refuse
///   it (empty to accept). A refusal from any participant rejects the whole apply; nothing commits.
///   It must not act on the change: it may not be committed.
/// - `committed` is called after the version is on disk. It is a direct call, not the best-effort
///   bus: the supervisor reconciles here. It cannot undo the version; it reports its own failures.
public protocol RegistryParticipant: Sendable {
    /// A name for logs and rejection messages, such as `supervisor`.
    var name: String { get }
    /// Called once, when the participant joins, with the current state (version 0: empty): a
    /// host that boots on an unchanged folder commits no version, yet its participants must know
    /// what the registry holds.
    func adopt(_ state: [EntryID: Entry], version: Int) async
    func review(_ proposal: RegistryProposal) async -> [RegistryError]
    func committed(_ commit: RegistryCommit) async
}

extension RegistryParticipant {
    public func adopt(_ state: [EntryID: Entry], version: Int) async {}
}

/// A validated change about to become version `number`.
public struct RegistryProposal: Sendable {
    public let number: Int
    public let changes: ChangeSet
    public let order: ApplyOrder
    /// The whole state the version would have.
    public let state: [EntryID: Entry]
}

/// A committed version, its changes in the order to carry them out, and its whole state.
public struct RegistryCommit: Sendable {
    public let version: Version
    public let changes: ChangeSet
    public let order: ApplyOrder
    public let state: [EntryID: Entry]
}

/// What happened to one entry in one version; the watch API delivers these.
public struct EntryChange: Sendable, Hashable {
    public let operation: ChangeOperation
    /// The entry as it is now (for a delete: as it was).
    public let entry: Entry
    public let version: Int
}

/// How an apply ended.
public enum ApplyOutcome: Sendable {
    /// The change committed as this version.
    case committed(Version, ChangeSet)
    /// The desired state equals the current one: no version was made.
    case unchanged(version: Int)
    /// Nothing changed; every reason, sorted by location.
    case rejected([RegistryError])

    public var errors: [RegistryError] {
        if case .rejected(let errors) = self { return errors }
        return []
    }

    /// The version now current, or nil when the apply was rejected.
    public var version: Int? {
        switch self {
        case .committed(let version, _): return version.number
        case .unchanged(let number): return number
        case .rejected: return nil
        }
    }
}

/// Who asked for an apply, and why.
public struct ApplyContext: Sendable {
    public var source: VersionSource
    public var message: String?
    /// The caller's user id, where known (the admin socket knows its peer).
    public var user: String?

    public init(source: VersionSource, message: String? = nil, user: String? = nil) {
        self.source = source
        self.message = message
        self.user = user
    }
}

/// The versioned registry: the current state, all-or-nothing applies, rollback, history, events
/// and the watch API.
///
/// An apply (`apply(_:context:)`):
/// 1. refuses the desired state when loading found problems, or when validation does;
/// 2. computes the change set against the current state (an empty one makes no version);
/// 3. offers it to every participant, any of which may refuse it;
/// 4. commits it to the history as version N+1 (on disk before anything else happens);
/// 5. publishes `registry.entry.created|updated|deleted` per entry, deletes first (dependents
///    first), then creates and updates (referenced entries first), then
///    `registry.version.committed`; hands the version to the participants and the watchers.
/// A refusal at 1, 2 or 3 publishes `registry.apply.rejected` with every error, and nothing else
/// changes: state, history, events. Applies run one at a time, in the order they are asked for.
///
/// Blocking: commits wait for the disk (`synchronous=FULL`); the actor runs on the global
/// executor, never on the event loop.
public actor RegistryService {
    public nonisolated let kinds: KindTable
    public nonisolated let history: HistoryStore
    private let bus: EventBus?
    private let now: @Sendable () -> Double

    private var participants: [any RegistryParticipant] = []
    private var state: [EntryID: Entry]
    /// The references of the current state, once it has been validated with these kinds (a state
    /// read back from the history was validated by whichever kinds the roost that wrote it had).
    private var references: ReferenceIndex?
    private var currentVersion: Int
    private var watchers: [UInt64: (pattern: Glob, continuation: AsyncStream<EntryChange>.Continuation)] = [:]
    private var nextWatcher: UInt64 = 1
    private let turns = AsyncGate()
    /// The folder read the current state was made from (folder, generation), when it was one.
    private var stateRead: (folder: ObjectIdentifier, generation: UInt64)?

    /// Opens the registry on `history`: the current state is the newest stored version.
    public init(
        kinds: KindTable, history: HistoryStore, bus: EventBus?,
        now: @escaping @Sendable () -> Double = { RegistryService.wallClock() }
    ) throws(RegistryError) {
        self.kinds = kinds
        self.history = history
        self.bus = bus
        self.now = now
        let latest = try history.latest()?.number ?? 0
        self.currentVersion = latest
        self.state = try history.state(at: latest)
    }

    public static func wallClock() -> Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }

    /// Adds a participant: it adopts the current state, then reviews and receives every version.
    public func add(_ participant: any RegistryParticipant) async {
        await turns.withTurn {
            await participant.adopt(state, version: currentVersion)
            participants.append(participant)
        }
    }

    /// The current version number (0 before the first commit).
    public var version: Int { currentVersion }

    /// A Finder over the current version.
    public func finder() -> Finder { Finder(version: currentVersion, entries: state) }

    /// The current state.
    public func entries() -> [EntryID: Entry] { state }

    // MARK: - Apply

    /// Applies a folder as read (`RegistryFolder.read()`, possibly adjusted): its problems
    /// reject the apply before anything else is looked at.
    public func apply(_ load: LoadResult, context: ApplyContext) async -> ApplyOutcome {
        await apply(entries: load.entries, problems: load.errors, context: context)
    }


    /// Makes the registry state equal version `number` by committing a new version (source
    /// `rollback`); history stays append-only, so a rollback can itself be rolled back.
    public func rollback(to number: Int, context: ApplyContext = ApplyContext(source: .rollback)) async -> ApplyOutcome {
        let target: [EntryID: Entry]
        do {
            target = try history.state(at: number)
        } catch {
            return reject([error])
        }
        var context = context
        context.source = .rollback
        if context.message == nil { context.message = "rollback to version \(number)" }
        return await apply(entries: Array(target.values), problems: [], context: context)
    }

    /// The whole apply: `entries` is the desired state, `problems` what loading it found.
    public func apply(entries: [Entry], problems: [RegistryError], context: ApplyContext) async -> ApplyOutcome {
        var desired: [EntryID: Entry] = [:]
        desired.reserveCapacity(entries.count)
        for entry in entries where desired[entry.id] == nil { desired[entry.id] = entry }
        return await turns.withTurn {
            let outcome = await apply(desired: desired, problems: problems, changed: nil, context: context)
            if outcome.version != nil { stateRead = nil }
            return outcome
        }
    }

    /// Applies a folder read. When the current state is the previous read of the same folder,
    /// only the ids the read names as changed are compared.
    public func apply(_ read: RegistryFolder.Snapshot, from folder: RegistryFolder, context: ApplyContext) async -> ApplyOutcome {
        await turns.withTurn {
            let id = ObjectIdentifier(folder)
            let known = stateRead.map { $0.folder == id && $0.generation == read.basedOn } ?? false
            let outcome = await apply(
                desired: read.entries, problems: read.errors, changed: known ? read.changedIDs : nil, context: context)
            if outcome.version != nil { stateRead = (id, read.generation) }
            return outcome
        }
    }

    /// One apply; the caller holds the turn. `changed`, when given, holds every id whose entry may
    /// differ between the current state and `desired`.
    private func apply(
        desired: [EntryID: Entry], problems: [RegistryError], changed: Set<EntryID>?, context: ApplyContext
    ) async -> ApplyOutcome {
        if !problems.isEmpty {
            // Everything at once: what loading found, and what validating the rest finds (which
            // may include references to entries of a file that did not load).
            return reject(Array(Set(problems + validate(Array(desired.values), kinds: kinds))))
        }
        let changes = changed.map { ChangeSet.between(current: state, desired: desired, among: $0) }
            ?? ChangeSet.between(current: state, desired: desired)

        // The current state is valid, so only what changed can make the desired one invalid: the
        // quick check looks at that alone. Any doubt gets the whole validation, which also gives
        // the complete, sorted list of errors.
        var graph = references
        if graph == nil || !graph!.quickCheck(changes, desired: desired, kinds: kinds) {
            let errors = validate(Array(desired.values), kinds: kinds)
            if !errors.isEmpty { return reject(errors) }
            graph = ReferenceIndex(desired, kinds: kinds)
        }
        if changes.isEmpty {
            // Locations may have moved (an entry cut and pasted to another file): keep the newest.
            state = desired
            references = graph
            return .unchanged(version: currentVersion)
        }
        let order = changes.applyOrder(kinds: kinds)

        let proposal = RegistryProposal(number: currentVersion + 1, changes: changes, order: order, state: desired)
        var refusals: [RegistryError] = []
        for participant in participants {
            for error in await participant.review(proposal) {
                var error = error
                if error.code != .rejectedByOwner, error.location == nil {
                    error.message = "\(participant.name): \(error.message)"
                }
                refusals.append(error)
            }
        }
        if !refusals.isEmpty { return reject(refusals) }

        let committed: Version
        do {
            committed = try history.commit(
                changes, source: context.source, message: context.message, user: context.user, time: now())
        } catch {
            return reject([error])
        }
        // The old state is freed after the events go out: freeing a large one takes a while.
        let previous = state
        state = desired
        graph!.update(for: changes, kinds: kinds)
        references = graph
        currentVersion = committed.number
        announce(committed, changes: changes, order: order)
        let commit = RegistryCommit(version: committed, changes: changes, order: order, state: desired)
        for participant in participants { await participant.committed(commit) }
        withExtendedLifetime(previous) {}
        return .committed(committed, changes)
    }

    private func reject(_ errors: [RegistryError]) -> ApplyOutcome {
        let sorted = errors.sorted()
        bus?.publish(topic: "registry.apply.rejected", data: [
            "errors": .array(sorted.map { $0.json }),
            "version": .int(Int64(currentVersion)),
        ])
        return .rejected(sorted)
    }

    private func announce(_ version: Version, changes set: ChangeSet, order: ApplyOrder) {
        let number = Int64(version.number)
        let createdIDs = Set(set.creates.lazy.map(\.id))
        var changes: [EntryChange] = []
        changes.reserveCapacity(order.deletes.count + order.createsAndUpdates.count)
        for entry in order.deletes { changes.append(EntryChange(operation: .delete, entry: entry, version: version.number)) }
        for entry in order.createsAndUpdates {
            changes.append(EntryChange(
                operation: createdIDs.contains(entry.id) ? .create : .update, entry: entry, version: version.number))
        }
        if let bus {
            for change in changes {
                let topic: String
                switch change.operation {
                case .create: topic = "registry.entry.created"
                case .update: topic = "registry.entry.updated"
                case .delete: topic = "registry.entry.deleted"
                }
                bus.publish(topic: topic, path: change.entry.id.description,
                            data: ["entry": change.entry.json, "version": .int(number)])
            }
            bus.publish(topic: "registry.version.committed", path: String(version.number), data: version.json)
        }
        for change in changes {
            let id = change.entry.id.description
            for (_, watcher) in watchers where watcher.pattern.matches(id) {
                watcher.continuation.yield(change)
            }
        }
    }

    // MARK: - Watch

    /// Every change to the entries whose id matches `pattern` (`app:hello`, `app:*`), from the
    /// next version on, in order. Nothing is dropped: the stream buffers until read. It ends when
    /// the caller stops iterating (or drops the stream).
    public func watch(_ pattern: Glob) -> AsyncStream<EntryChange> {
        let id = nextWatcher
        nextWatcher += 1
        let (stream, continuation) = AsyncStream.makeStream(of: EntryChange.self, bufferingPolicy: .unbounded)
        watchers[id] = (pattern, continuation)
        continuation.onTermination = { [weak self] _ in
            guard let self else { return }
            Task { await self.unwatch(id) }
        }
        return stream
    }

    private func unwatch(_ id: UInt64) { watchers[id] = nil }

    /// Ends every watch stream (the host is stopping).
    public func finishWatchers() {
        for (_, watcher) in watchers { watcher.continuation.finish() }
        watchers.removeAll()
    }
}

/// The references between the entries of a valid state, both ways, so that a change can be
/// validated by looking at the entries it touches rather than at the whole state.
struct ReferenceIndex: Sendable {
    /// Entry -> the entries it references (resolved, existing).
    private(set) var targets: [EntryID: [EntryID]] = [:]
    /// Entry -> the entries that reference it.
    private(set) var referrers: [EntryID: Set<EntryID>] = [:]

    /// The index of `state`, which must be valid.
    init(_ state: [EntryID: Entry], kinds: KindTable) {
        for entry in state.values { add(entry, targets: Self.resolvedTargets(of: entry, kinds: kinds) ?? []) }
    }

    /// The references `entry` makes, resolved; nil when one does not parse as an id.
    static func resolvedTargets(of entry: Entry, kinds: KindTable) -> [EntryID]? {
        guard let kind = kinds.kind(named: entry.kind) else { return [] }
        var out: [EntryID] = []
        for (_, reference) in kind.references(of: entry) {
            guard let target = EntryID.resolve(reference, in: entry.id.namespace) else { return nil }
            out.append(target)
        }
        return out
    }

    private mutating func add(_ entry: Entry, targets list: [EntryID]) {
        targets[entry.id] = list
        for target in list { referrers[target, default: []].insert(entry.id) }
    }

    private mutating func remove(_ id: EntryID) {
        for target in targets.removeValue(forKey: id) ?? [] {
            referrers[target]?.remove(id)
            if referrers[target]?.isEmpty == true { referrers[target] = nil }
        }
    }

    /// True when the state this index describes, changed by `changes` into `desired`, is certainly
    /// valid; false means "validate the whole state" (it may or may not be valid).
    ///
    /// Valid already: every unchanged entry, its kind's rules and its references. So it suffices
    /// that each created or updated entry passes its kind and references existing entries, that
    /// no remaining entry references a deleted one, and that no cycle appears — any new cycle runs
    /// through a created or updated entry, so a search from those finds it.
    func quickCheck(_ changes: ChangeSet, desired: [EntryID: Entry], kinds: KindTable) -> Bool {
        var newTargets: [EntryID: [EntryID]] = [:]
        for entry in changes.creates + changes.updates {
            guard let kind = kinds.kind(named: entry.kind), kind.validate(entry).isEmpty,
                let list = Self.resolvedTargets(of: entry, kinds: kinds),
                list.allSatisfy({ desired[$0] != nil })
            else { return false }
            newTargets[entry.id] = list
        }
        for entry in changes.deletes {
            for referrer in referrers[entry.id] ?? [] where desired[referrer] != nil && newTargets[referrer] == nil {
                return false
            }
        }
        // Depth-first search from the changed entries over the desired graph; an edge back to an
        // entry on the current path is a cycle.
        var color: [EntryID: UInt8] = [:]  // 1 on the path, 2 done
        for start in newTargets.keys where color[start] == nil {
            var stack: [(id: EntryID, next: Int)] = [(start, 0)]
            color[start] = 1
            while let (id, next) = stack.last {
                let list = newTargets[id] ?? targets[id] ?? []
                if next < list.count {
                    stack[stack.count - 1].next += 1
                    let target = list[next]
                    switch color[target] {
                    case 1?: return false
                    case 2?: continue
                    default:
                        color[target] = 1
                        stack.append((target, 0))
                    }
                } else {
                    color[id] = 2
                    stack.removeLast()
                }
            }
        }
        return true
    }

    /// Brings the index from the old state to the new one.
    mutating func update(for changes: ChangeSet, kinds: KindTable) {
        for entry in changes.deletes { remove(entry.id) }
        for entry in changes.updates { remove(entry.id) }
        for entry in changes.creates + changes.updates {
            add(entry, targets: Self.resolvedTargets(of: entry, kinds: kinds) ?? [])
        }
    }
}
