import Core

/// What must change to turn the current state into the desired one: entries to create, update
/// and delete, each list sorted by id.
///
/// Entries compare by declaration only — id, kind, meta and data — so moving an entry within its
/// file, or to another file, is not a change.
public struct ChangeSet: Sendable, Hashable {
    /// Entries of the desired state that the current state lacks.
    public var creates: [Entry]
    /// Entries of the desired state whose declaration differs from the current one (the new one).
    public var updates: [Entry]
    /// Entries of the current state that the desired state lacks (as they are now).
    public var deletes: [Entry]

    public init(creates: [Entry] = [], updates: [Entry] = [], deletes: [Entry] = []) {
        self.creates = creates
        self.updates = updates
        self.deletes = deletes
    }

    public var isEmpty: Bool { creates.isEmpty && updates.isEmpty && deletes.isEmpty }

    /// The changes from `current` to `desired`; dictionaries are keyed by each entry's id.
    public static func between(current: [EntryID: Entry], desired: [EntryID: Entry]) -> ChangeSet {
        var changes = ChangeSet()
        for (id, entry) in desired {
            if let old = current[id] {
                if !old.declaresTheSame(as: entry) { changes.updates.append(entry) }
            } else {
                changes.creates.append(entry)
            }
        }
        for (id, entry) in current where desired[id] == nil {
            changes.deletes.append(entry)
        }
        changes.creates.sort { $0.id < $1.id }
        changes.updates.sort { $0.id < $1.id }
        changes.deletes.sort { $0.id < $1.id }
        return changes
    }

    /// The changes from `current` to `desired` when only the entries of `ids` can differ (the
    /// caller knows every other entry is the same in both): costs the size of `ids`, not of the
    /// states.
    public static func between(current: [EntryID: Entry], desired: [EntryID: Entry], among ids: Set<EntryID>) -> ChangeSet {
        var changes = ChangeSet()
        for id in ids {
            switch (current[id], desired[id]) {
            case (let old?, let new?):
                if !old.declaresTheSame(as: new) { changes.updates.append(new) }
            case (nil, let new?):
                changes.creates.append(new)
            case (let old?, nil):
                changes.deletes.append(old)
            case (nil, nil):
                break
            }
        }
        changes.creates.sort { $0.id < $1.id }
        changes.updates.sort { $0.id < $1.id }
        changes.deletes.sort { $0.id < $1.id }
        return changes
    }

    /// The order in which to carry the changes out.
    ///
    /// Deletes come dependents first (an entry before the entries it references), using the
    /// references of the current state, which the deleted entries belong to. Creates and updates
    /// come referenced entries first, using the references of the desired state. Only references
    /// between entries of the same list decide the order; otherwise the smaller id comes first,
    /// so the order is always the same. Entries of an unknown kind reference nothing. A cycle
    /// (which `validate` refuses) does not stop the ordering: its smallest id goes first.
    public func applyOrder(kinds: KindTable) -> ApplyOrder {
        let upserts = (creates + updates).sorted { $0.id < $1.id }
        return ApplyOrder(
            deletes: dependencyOrder(deletes, kinds: kinds, referencedFirst: false),
            createsAndUpdates: dependencyOrder(upserts, kinds: kinds, referencedFirst: true))
    }
}

/// A change set in the order to carry it out; see `ChangeSet.applyOrder(kinds:)`.
public struct ApplyOrder: Sendable, Hashable {
    /// Dependents first.
    public var deletes: [Entry]
    /// Referenced entries first; whether each is a create or an update is in the change set.
    public var createsAndUpdates: [Entry]
}

extension Entry {
    /// True when both declare the same entry, wherever each is written.
    fileprivate func declaresTheSame(as other: Entry) -> Bool {
        id == other.id && kind == other.kind && meta == other.meta && data == other.data
    }
}

/// `entries` (sorted by id) in dependency order: Kahn's algorithm, taking the smallest ready id
/// each time.
private func dependencyOrder(_ entries: [Entry], kinds: KindTable, referencedFirst: Bool) -> [Entry] {
    var graph = ReferenceGraph()
    for entry in entries {
        let references = kinds.kind(named: entry.kind)?.references(of: entry) ?? []
        graph.add(entry, references: references.compactMap { field, reference in
            EntryID.resolve(reference, in: entry.id.namespace).map { (field, $0) }
        })
    }
    // An edge a -> b means a must come before b.
    var after = [[Int]](repeating: [], count: entries.count)
    var waitingOn = [Int](repeating: 0, count: entries.count)
    for (entry, targets) in graph.targets().enumerated() {
        for target in targets where target != entry {
            let (first, then) = referencedFirst ? (target, entry) : (entry, target)
            after[first].append(then)
            waitingOn[then] += 1
        }
    }
    // Indexes follow id order, so the smallest index is the smallest id.
    var ready = MinHeap(waitingOn.indices.filter { waitingOn[$0] == 0 })
    var placed = [Bool](repeating: false, count: entries.count)
    var order: [Entry] = []
    order.reserveCapacity(entries.count)
    var nextUnplaced = 0
    while order.count < entries.count {
        guard let node = ready.popMin() else {
            // Only a cycle leaves entries waiting with none ready: release the smallest one.
            while placed[nextUnplaced] { nextUnplaced += 1 }
            waitingOn[nextUnplaced] = 0
            ready.insert(nextUnplaced)
            continue
        }
        if placed[node] { continue }
        placed[node] = true
        order.append(entries[node])
        for next in after[node] where !placed[next] {
            waitingOn[next] -= 1
            if waitingOn[next] == 0 { ready.insert(next) }
        }
    }
    return order
}

/// A binary min-heap of indexes.
private struct MinHeap {
    private var items: [Int] = []

    init(_ values: [Int]) { for value in values { insert(value) } }

    mutating func insert(_ value: Int) {
        items.append(value)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child] < items[parent] else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func popMin() -> Int? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let min = items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1, right = left + 1
            var smallest = parent
            if left < items.count, items[left] < items[smallest] { smallest = left }
            if right < items.count, items[right] < items[smallest] { smallest = right }
            if smallest == parent { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return min
    }
}
