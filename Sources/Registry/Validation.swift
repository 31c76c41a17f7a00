import Core

/// Checks a whole desired state: every entry's kind, each kind's own rules, that every reference
/// names an entry, and that no entries reference each other in a cycle.
///
/// All problems are returned together, sorted by location; empty means the state is valid.
/// Entries are assumed to have unique ids (`LoadResult` reports duplicates); a later duplicate is
/// ignored. A cycle is reported once for each group of entries that reach each other (a strongly
/// connected component), with one circular path through the group: breaking it and validating
/// again shows any other cycle in the group.
public func validate(_ entries: [Entry], kinds: KindTable) -> [RegistryError] {
    var errors: [RegistryError] = []
    var ids = Set<EntryID>()
    for entry in entries { ids.insert(entry.id) }

    var graph = ReferenceGraph()
    for entry in entries where graph.index[entry.id] == nil {
        guard let kind = kinds.kind(named: entry.kind) else {
            // The loader keeps no location for the `kind` key, so this falls back to the entry's.
            errors.append(RegistryError(
                .unknownKind, "unknown kind '\(entry.kind)'", at: entry.kindLocation ?? entry.location, entry: entry.id))
            graph.add(entry, references: [])
            continue
        }
        errors += kind.validate(entry)
        var edges: [(field: String, target: EntryID)] = []
        for (field, reference) in kind.references(of: entry) {
            let at = entry.location(ofReferenceField: field)
            guard let target = EntryID.resolve(reference, in: entry.id.namespace) else {
                errors.append(RegistryError(
                    .invalidField, "'\(field)': '\(reference)' is not an entry id (namespace:name or name)",
                    at: at, entry: entry.id))
                continue
            }
            guard ids.contains(target) else {
                errors.append(RegistryError(
                    .unresolvedReference, "'\(field)' references \(target), which does not exist",
                    at: at, entry: entry.id))
                continue
            }
            edges.append((field, target))
        }
        graph.add(entry, references: edges)
    }

    for cycle in graph.cycles() {
        let first = graph.entries[cycle[0]]
        let second = graph.entries[cycle[1]].id
        let field = graph.references[cycle[0]].first { $0.target == second }?.field ?? ""
        let path = cycle.map { graph.entries[$0].id.description }.joined(separator: " -> ")
        errors.append(RegistryError(
            .referenceCycle, "reference cycle: \(path)", at: first.location(ofReferenceField: field), entry: first.id))
    }
    return errors.sorted()
}

extension Entry {
    /// The location of a reference field, which may be a dotted path (`routes.0.target`): the
    /// loader knows only where top-level keys are written.
    func location(ofReferenceField field: String) -> SourceLocation {
        let topLevel = field.split(separator: ".", maxSplits: 1, omittingEmptySubsequences: false).first
        return location(ofField: topLevel.map(String.init) ?? field)
    }
}

/// Entries and the existing entries each one references, by index.
struct ReferenceGraph {
    var entries: [Entry] = []
    var index: [EntryID: Int] = [:]
    /// Per entry, in the order the kind named them; targets are ids, resolved to indexes lazily
    /// because a target may be added after the entry that references it.
    var references: [[(field: String, target: EntryID)]] = []

    mutating func add(_ entry: Entry, references: [(field: String, target: EntryID)]) {
        index[entry.id] = entries.count
        entries.append(entry)
        self.references.append(references)
    }

    /// Per entry, the indexes it references, unique and sorted by id; targets not in the graph
    /// are left out.
    func targets() -> [[Int]] {
        references.map { refs in
            Set(refs.compactMap { index[$0.target] }).sorted { entries[$0].id < entries[$1].id }
        }
    }

    /// One closed path per strongly connected component that holds a cycle, as indexes: it
    /// starts and ends at the component's smallest id and is a shortest such path, so the
    /// report is the same whatever order entries came in.
    func cycles() -> [[Int]] {
        let targets = targets()
        var result: [[Int]] = []
        for component in stronglyConnectedComponents(targets) {
            let members = Set(component)
            let start = component.min { entries[$0].id < entries[$1].id }!
            guard component.count > 1 || targets[start].contains(start) else { continue }
            // Breadth-first from the start, inside the component, back to the start.
            var parent: [Int: Int] = [:]
            var queue = [start]
            var head = 0
            var last: Int?
            search: while head < queue.count {
                let node = queue[head]
                head += 1
                for next in targets[node] where members.contains(next) {
                    if next == start { last = node; break search }
                    if parent[next] == nil { parent[next] = node; queue.append(next) }
                }
            }
            guard var node = last else { continue }  // unreachable: a component is strongly connected
            var backwards: [Int] = []
            while node != start { backwards.append(node); node = parent[node]! }
            result.append([start] + backwards.reversed() + [start])
        }
        return result
    }
}

/// Tarjan's algorithm without recursion, so a long chain of references cannot exhaust the stack.
func stronglyConnectedComponents(_ targets: [[Int]]) -> [[Int]] {
    let count = targets.count
    var order = [Int](repeating: -1, count: count)
    var low = [Int](repeating: 0, count: count)
    var onStack = [Bool](repeating: false, count: count)
    var stack: [Int] = []
    var components: [[Int]] = []
    var counter = 0
    for root in 0..<count where order[root] == -1 {
        // Each frame: a node and how many of its targets have been visited.
        var frames: [(node: Int, next: Int)] = [(root, 0)]
        order[root] = counter; low[root] = counter; counter += 1
        stack.append(root); onStack[root] = true
        while let (node, next) = frames.last {
            if next < targets[node].count {
                frames[frames.count - 1].next += 1
                let target = targets[node][next]
                if order[target] == -1 {
                    order[target] = counter; low[target] = counter; counter += 1
                    stack.append(target); onStack[target] = true
                    frames.append((target, 0))
                } else if onStack[target] {
                    low[node] = min(low[node], order[target])
                }
                continue
            }
            frames.removeLast()
            if let parent = frames.last?.node { low[parent] = min(low[parent], low[node]) }
            if low[node] == order[node] {
                var component: [Int] = []
                while true {
                    let member = stack.removeLast()
                    onStack[member] = false
                    component.append(member)
                    if member == node { break }
                }
                components.append(component)
            }
        }
    }
    return components
}
