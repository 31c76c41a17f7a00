import Core
import Testing
@testable import Registry

@Suite struct ChangeSetTests {
    let kinds = try! KindTable([RegistryEntryKind(), LinkKind()])

    func state(_ yaml: String, path: String = "app.yaml") throws -> [EntryID: Entry] {
        Dictionary(uniqueKeysWithValues: try entries(yaml, path: path).map { ($0.id, $0) })
    }

    func ids(_ list: [Entry]) -> [String] { list.map(\.id.description) }

    @Test func sameFolderGivesAnEmptyChangeSet() throws {
        let yaml = "namespace: app\nentries:\n  - {name: a, kind: registry.entry, x: 1}\n"
        let changes = ChangeSet.between(current: try state(yaml), desired: try state(yaml))
        #expect(changes.isEmpty)
        #expect(changes == ChangeSet())
    }

    @Test func createsUpdatesAndDeletesAreFoundAndSortedById() throws {
        let current = try state("""
            namespace: app
            entries:
              - {name: keep, kind: registry.entry, x: 1}
              - {name: zold, kind: registry.entry}
              - {name: change, kind: registry.entry, x: 1}
              - {name: gone, kind: registry.entry}
              - {name: rekind, kind: registry.entry}
            """)
        let desired = try state("""
            namespace: app
            entries:
              - {name: keep, kind: registry.entry, x: 1}
              - {name: new, kind: registry.entry}
              - {name: change, kind: registry.entry, x: 2}
              - {name: added, kind: registry.entry}
              - {name: rekind, kind: test.link}
            """)
        let changes = ChangeSet.between(current: current, desired: desired)
        #expect(!changes.isEmpty)
        #expect(ids(changes.creates) == ["app:added", "app:new"])
        #expect(ids(changes.updates) == ["app:change", "app:rekind"])
        #expect(ids(changes.deletes) == ["app:gone", "app:zold"])
        // Updates carry the desired entry, deletes the current one.
        #expect(changes.updates.first?.data["x"] == 2)
        #expect(changes.deletes.first == current[EntryID("app:gone")!])
    }

    @Test func entryOnlyMovedWithinItsFileIsNotAnUpdate() throws {
        let current = try state("""
            namespace: app
            entries:
              - name: a
                kind: registry.entry
                port: 1
              - name: b
                kind: registry.entry
            """)
        let desired = try state("""
            # a comment pushes everything down

            namespace: app
            entries:
              - name: b
                kind: registry.entry
              - kind: registry.entry
                port: 1
                name: a
            """)
        #expect(current[EntryID("app:a")!] != desired[EntryID("app:a")!])  // locations differ
        #expect(ChangeSet.between(current: current, desired: desired).isEmpty)
    }

    @Test func entryMovedToAnotherFileIsNotAnUpdate() throws {
        let current = try state("namespace: app\nentries:\n  - {name: a, kind: registry.entry}\n", path: "one.yaml")
        let desired = try state("namespace: app\nentries:\n  - {name: a, kind: registry.entry}\n", path: "two.yaml")
        #expect(ChangeSet.between(current: current, desired: desired).isEmpty)
    }

    @Test func metaChangeIsAnUpdate() throws {
        let current = try state("namespace: app\nentries:\n  - {name: a, kind: registry.entry, meta: {team: x}}\n")
        let desired = try state("namespace: app\nentries:\n  - {name: a, kind: registry.entry, meta: {team: y}}\n")
        #expect(ids(ChangeSet.between(current: current, desired: desired).updates) == ["app:a"])
    }

    @Test func fileMetaChangeIsAnUpdateOfEveryEntryInTheFile() throws {
        let current = try state("namespace: app\nmeta: {env: dev}\nentries:\n  - {name: a, kind: registry.entry}\n  - {name: b, kind: registry.entry}\n")
        let desired = try state("namespace: app\nmeta: {env: prod}\nentries:\n  - {name: a, kind: registry.entry}\n  - {name: b, kind: registry.entry}\n")
        #expect(ids(ChangeSet.between(current: current, desired: desired).updates) == ["app:a", "app:b"])
    }

    // MARK: - Apply order

    let chain = """
        namespace: app
        entries:
          - {name: a, kind: registry.entry, requires: b}
          - {name: b, kind: registry.entry, requires: c}
          - {name: c, kind: registry.entry}
        """

    @Test func chainIsCreatedReferencedFirstAndDeletedDependentsFirst() throws {
        let created = ChangeSet.between(current: [:], desired: try state(chain)).applyOrder(kinds: kinds)
        #expect(ids(created.createsAndUpdates) == ["app:c", "app:b", "app:a"])
        #expect(created.deletes.isEmpty)

        let deleted = ChangeSet.between(current: try state(chain), desired: [:]).applyOrder(kinds: kinds)
        #expect(ids(deleted.deletes) == ["app:a", "app:b", "app:c"])
        #expect(deleted.createsAndUpdates.isEmpty)
    }

    @Test func diamondPutsTheSharedEntryFirstAndBreaksTiesById() throws {
        // top needs left and right; both need base.
        let diamond = try state("""
            namespace: app
            entries:
              - {name: top, kind: registry.entry, requires: [right, left]}
              - {name: right, kind: test.link, target: base}
              - {name: left, kind: registry.entry, requires: base}
              - {name: base, kind: registry.entry}
            """)
        let created = ChangeSet.between(current: [:], desired: diamond).applyOrder(kinds: kinds)
        #expect(ids(created.createsAndUpdates) == ["app:base", "app:left", "app:right", "app:top"])
        let deleted = ChangeSet.between(current: diamond, desired: [:]).applyOrder(kinds: kinds)
        #expect(ids(deleted.deletes) == ["app:top", "app:left", "app:right", "app:base"])
    }

    @Test func unrelatedEntriesApplyInIdOrderWhateverTheInputOrder() throws {
        let forward = try state("namespace: app\nentries:\n  - {name: x, kind: registry.entry}\n  - {name: m, kind: registry.entry}\n  - {name: b, kind: registry.entry}\n")
        for _ in 0..<5 {
            let shuffled = Dictionary(uniqueKeysWithValues: forward.shuffled())
            let order = ChangeSet.between(current: [:], desired: shuffled).applyOrder(kinds: kinds)
            #expect(ids(order.createsAndUpdates) == ["app:b", "app:m", "app:x"])
            let deletes = ChangeSet.between(current: shuffled, desired: [:]).applyOrder(kinds: kinds)
            #expect(ids(deletes.deletes) == ["app:b", "app:m", "app:x"])
        }
    }

    @Test func smallestReadyIdGoesFirstAmongIndependentChains() throws {
        // z needs a; b stands alone. a is ready with b, and a < b, so z may follow only after b.
        let desired = try state("""
            namespace: app
            entries:
              - {name: z, kind: registry.entry, requires: a}
              - {name: a, kind: registry.entry}
              - {name: b, kind: registry.entry}
            """)
        let order = ChangeSet.between(current: [:], desired: desired).applyOrder(kinds: kinds)
        #expect(ids(order.createsAndUpdates) == ["app:a", "app:b", "app:z"])
    }

    @Test func createsAndUpdatesAreOrderedTogetherByDesiredReferences() throws {
        // a exists and now requires the new entry n; in the current state it required nothing.
        let current = try state("namespace: app\nentries:\n  - {name: a, kind: registry.entry}\n  - {name: old, kind: registry.entry, requires: a}\n")
        let desired = try state("namespace: app\nentries:\n  - {name: a, kind: registry.entry, requires: n}\n  - {name: n, kind: registry.entry}\n")
        let changes = ChangeSet.between(current: current, desired: desired)
        #expect(ids(changes.creates) == ["app:n"])
        #expect(ids(changes.updates) == ["app:a"])
        #expect(ids(changes.deletes) == ["app:old"])
        let order = changes.applyOrder(kinds: kinds)
        #expect(ids(order.createsAndUpdates) == ["app:n", "app:a"])
        #expect(ids(order.deletes) == ["app:old"])
    }

    @Test func deletesFollowTheCurrentReferencesNotTheDesiredOnes() throws {
        // In the current state b requires a; both go. Desired state has neither.
        let current = try state("namespace: app\nentries:\n  - {name: a, kind: registry.entry}\n  - {name: b, kind: registry.entry, requires: a}\n  - {name: keep, kind: registry.entry}\n")
        let desired = try state("namespace: app\nentries:\n  - {name: keep, kind: registry.entry}\n")
        let order = ChangeSet.between(current: current, desired: desired).applyOrder(kinds: kinds)
        #expect(ids(order.deletes) == ["app:b", "app:a"])
    }

    @Test func cycleStillGivesACompleteDeterministicOrder() throws {
        let desired = try state("""
            namespace: app
            entries:
              - {name: a, kind: registry.entry, requires: b}
              - {name: b, kind: registry.entry, requires: a}
              - {name: c, kind: registry.entry, requires: a}
            """)
        let order = ChangeSet.between(current: [:], desired: desired).applyOrder(kinds: kinds)
        #expect(ids(order.createsAndUpdates) == ["app:a", "app:b", "app:c"])
    }

    @Test func unknownKindReferencesNothingWhenOrdering() throws {
        let desired = try state("namespace: app\nentries:\n  - {name: a, kind: mystery, requires: b}\n  - {name: b, kind: registry.entry}\n")
        let order = ChangeSet.between(current: [:], desired: desired).applyOrder(kinds: kinds)
        #expect(ids(order.createsAndUpdates) == ["app:a", "app:b"])
    }
}
