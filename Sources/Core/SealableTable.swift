import Synchronization

/// A name -> value table that is written under a lock until it is sealed, and read without any
/// lock afterwards. The storage behind `AppContext` and `Dispatcher`.
///
/// Sealing wraps the finished dictionary in an immutable `Snapshot` and publishes it with a single
/// release store; a reader that sees it with an acquire load also sees every write made before the
/// store. The snapshot is published once, never replaced, and released only in `deinit`, so a
/// reader may use it without retaining it.
final class SealableTable<Value: Sendable>: Sendable {
    private final class Snapshot: Sendable {
        let values: [String: Value]
        init(_ values: [String: Value]) { self.values = values }
    }

    private struct Pending {
        var values: [String: Value] = [:]
        var isSealed = false
    }

    enum InsertOutcome { case inserted, duplicate, sealed }

    /// Writes and the seal itself; reads before the seal also take it.
    private let pending = Mutex(Pending())
    /// nil until `seal()`; then the snapshot, retained once by this table.
    private let published = Atomic<Unmanaged<Snapshot>?>(nil)

    init() {}

    deinit {
        published.load(ordering: .acquiring)?.release()
    }

    func insert(_ name: String, _ value: Value) -> InsertOutcome {
        pending.withLock { state in
            if state.isSealed { return .sealed }
            if state.values[name] != nil { return .duplicate }
            state.values[name] = value
            return .inserted
        }
    }

    /// Idempotent: the second and later calls change nothing.
    func seal() {
        pending.withLock { state in
            guard !state.isSealed else { return }
            state.isSealed = true
            // The dictionary is copy-on-write: the snapshot shares its storage, nothing is copied.
            let snapshot = Unmanaged.passRetained(Snapshot(state.values))
            published.store(snapshot, ordering: .releasing)
        }
    }

    var isSealed: Bool { published.load(ordering: .acquiring) != nil }

    func value(_ name: String) -> Value? {
        if let snapshot = published.load(ordering: .acquiring) {
            // Lock-free path. The table holds the snapshot's only retain until deinit, and a
            // caller reaching this method keeps the table alive, so no retain/release is needed
            // (which also keeps concurrent readers off a shared reference count).
            return snapshot._withUnsafeGuaranteedRef { $0.values[name] }
        }
        return pending.withLock { $0.values[name] }
    }

    var names: [String] {
        if let snapshot = published.load(ordering: .acquiring) {
            return snapshot._withUnsafeGuaranteedRef { $0.values.keys.sorted() }
        }
        return pending.withLock { $0.values.keys.sorted() }
    }
}
