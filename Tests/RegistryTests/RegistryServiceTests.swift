import Core
import Foundation
import Synchronization
import Testing

@testable import Registry

/// A registry on a fresh history in a temporary folder, with a bus to observe it.
struct RegistryFixture {
    let folder = TempFolder()
    let bus = EventBus()
    let history: HistoryStore
    let service: RegistryService
    let events: EventSubscription

    init(kinds: KindTable = try! KindTable([RegistryEntryKind(), LinkKind()])) throws {
        history = try HistoryStore.open(path: folder.path + "/registry.db")
        let time = Mutex(1000.0)
        service = try RegistryService(kinds: kinds, history: history, bus: bus, now: {
            time.withLock { value in value += 1; return value }
        })
        events = try bus.subscribe("**", bufferSize: 100_000)
    }

    /// Applies the files given as path -> YAML text.
    func apply(_ files: [String: String], source: VersionSource = .admin) async -> ApplyOutcome {
        let load = LoadResult(files: files.keys.sorted().map { RegistryFile.parse(files[$0]!, path: $0) })
        return await service.apply(load, context: ApplyContext(source: source))
    }

    /// The events published since the last call: publishes a marker and reads up to it.
    func drain() async -> [Event] {
        bus.publish(topic: "test.marker")
        var out: [Event] = []
        var iterator = events.makeAsyncIterator()
        while let event = await iterator.next(), event.topic != "test.marker" { out.append(event) }
        return out
    }
}

/// `(topic, path)` of each event, which is what most checks compare.
func topics(_ events: [Event]) -> [String] { events.map { "\($0.topic) \($0.path)" } }

/// A participant that refuses entries whose data has `veto: true`, and records what it saw.
actor RecordingParticipant: RegistryParticipant {
    nonisolated let name = "test.owner"
    var reviewed: [Int] = []
    var committedVersions: [Int] = []

    func review(_ proposal: RegistryProposal) async -> [RegistryError] {
        reviewed.append(proposal.number)
        return (proposal.changes.creates + proposal.changes.updates).compactMap { entry in
            entry.data["veto"] == .bool(true)
                ? RegistryError(.rejectedByOwner, "test.owner refuses \(entry.id)", at: entry.location, entry: entry.id)
                : nil
        }
    }

    func committed(_ commit: RegistryCommit) async {
        committedVersions.append(commit.version.number)
    }
}

@Suite struct RegistryServiceTests {
    static let chain = """
        namespace: app
        entries:
          - {name: web, kind: test.link, target: api}
          - {name: api, kind: test.link, target: db}
          - {name: db, kind: registry.entry}
        """

    @Test func applyCommitsVersionAndPublishesEachEntryThenTheVersion() async throws {
        let fixture = try RegistryFixture()
        let outcome = await fixture.apply(["app.yaml": Self.chain], source: .boot)
        guard case .committed(let version, let changes) = outcome else { Issue.record("\(outcome)"); return }
        #expect(version.number == 1 && version.source == .boot && version.created == 3)
        #expect(changes.creates.map(\.id.description) == ["app:api", "app:db", "app:web"])
        let events = await fixture.drain()
        // Referenced entries first: db, then api, then web.
        #expect(topics(events) == [
            "registry.entry.created app:db", "registry.entry.created app:api", "registry.entry.created app:web",
            "registry.version.committed 1",
        ])
        #expect(events[0].data["version"] == .int(1))
        #expect(events[0].data["entry"]?["kind"] == .string("registry.entry"))
        #expect(events[0].data["entry"]?["location"]?["line"] == .int(5))
        #expect(events[3].data["created"] == .int(3))
        #expect(events[3].data["source"] == .string("boot"))
        #expect(await fixture.service.version == 1)
        #expect(try fixture.history.versions().count == 1)
    }

    @Test func applyingTheSameFolderAgainMakesNoVersion() async throws {
        let fixture = try RegistryFixture()
        _ = await fixture.apply(["app.yaml": Self.chain])
        _ = await fixture.drain()
        // The same entries, written in another order and file: not a change.
        let moved = """
            namespace: app
            entries:
              - {name: db, kind: registry.entry}
              - {name: api, kind: test.link, target: db}
              - {name: web, kind: test.link, target: api}
            """
        let outcome = await fixture.apply(["other.yaml": moved])
        guard case .unchanged(let number) = outcome else { Issue.record("\(outcome)"); return }
        #expect(number == 1)
        #expect(await fixture.drain().isEmpty)
        #expect(try fixture.history.versions().count == 1)
        // The newest locations are kept for later errors and events.
        #expect(await fixture.service.entries()[EntryID("app:db")!]?.location.file == "other.yaml")
    }

    @Test func rejectedApplyChangesNothingAndReportsEveryError() async throws {
        let fixture = try RegistryFixture()
        _ = await fixture.apply(["app.yaml": Self.chain])
        _ = await fixture.drain()
        let before = await fixture.service.entries()
        let broken = """
            namespace: app
            entries:
              - {name: web, kind: test.link, target: nowhere}
              - {name: api, kind: test.unknown}
              - {name: db, kind: registry.entry, changed: true}
            """
        let outcome = await fixture.apply(["app.yaml": broken])
        #expect(outcome.errors.map(\.code) == [.unresolvedReference, .unknownKind])
        #expect(outcome.errors.map(\.description) == [
            "app.yaml:3:34: app:web: 'target' references app:nowhere, which does not exist",
            "app.yaml:4:17: app:api: unknown kind 'test.unknown'",
        ])
        #expect(outcome.version == nil)
        #expect(await fixture.service.entries() == before)
        #expect(await fixture.service.version == 1)
        #expect(try fixture.history.versions().count == 1)
        let events = await fixture.drain()
        #expect(topics(events) == ["registry.apply.rejected "])
        guard case .array(let errors)? = events[0].data["errors"] else { Issue.record("no errors"); return }
        #expect(errors.count == 2)
        #expect(errors[0]["location"]?["line"] == .int(3))
        #expect(errors[0]["entry"] == .string("app:web"))
    }

    @Test func loadProblemsAndValidationErrorsAreReportedTogether() async throws {
        let fixture = try RegistryFixture()
        let broken = Self.chain + "\n  - {name: odd, kind: test.unknown}\n"
        let outcome = await fixture.apply(["a.yaml": "namespace: app\nentries: [", "b.yaml": broken])
        #expect(outcome.errors.map(\.code) == [.yamlSyntax, .unknownKind])
        #expect(outcome.errors.map(\.location?.file) == ["a.yaml", "b.yaml"])
        #expect(await fixture.service.version == 0)
        #expect(try fixture.history.versions().isEmpty)
    }

    @Test func ownerRefusalRejectsTheWholeChangeAndOwnersSeeEveryVersionInOrder() async throws {
        let fixture = try RegistryFixture()
        let owner = RecordingParticipant()
        await fixture.service.add(owner)
        _ = await fixture.apply(["app.yaml": Self.chain])
        let vetoed = Self.chain.replacingOccurrences(
            of: "{name: db, kind: registry.entry}", with: "{name: db, kind: registry.entry, veto: true}")
            + "\n  - {name: extra, kind: registry.entry}\n"
        _ = await fixture.drain()
        let outcome = await fixture.apply(["app.yaml": vetoed])
        #expect(outcome.errors.map(\.code) == [.rejectedByOwner])
        #expect(outcome.errors.first?.message == "test.owner refuses app:db")
        #expect(await fixture.service.entries()[EntryID("app:extra")!] == nil)
        #expect(topics(await fixture.drain()) == ["registry.apply.rejected "])
        _ = await fixture.apply(["app.yaml": Self.chain + "\n  - {name: extra, kind: registry.entry}\n"])
        #expect(await owner.reviewed == [1, 2, 2])
        #expect(await owner.committedVersions == [1, 2])
    }

    @Test func rollbackCommitsANewVersionEqualToTheOldOneInDependencyOrder() async throws {
        let fixture = try RegistryFixture()
        _ = await fixture.apply(["app.yaml": Self.chain])  // v1: web -> api -> db
        let other = """
            namespace: app
            entries:
              - {name: solo, kind: registry.entry}
            """
        _ = await fixture.apply(["app.yaml": other])  // v2: only solo
        let v1 = try fixture.history.state(at: 1)
        _ = await fixture.drain()

        let outcome = await fixture.service.rollback(to: 1)
        guard case .committed(let version, _) = outcome else { Issue.record("\(outcome)"); return }
        #expect(version.number == 3 && version.source == .rollback)
        #expect(version.message == "rollback to version 1")
        #expect(try fixture.history.state(at: 3).mapValues(\.data) == v1.mapValues(\.data))
        #expect(topics(await fixture.drain()) == [
            "registry.entry.deleted app:solo",
            "registry.entry.created app:db", "registry.entry.created app:api", "registry.entry.created app:web",
            "registry.version.committed 3",
        ])

        // Rolling the rollback back: deletes go dependents first.
        let again = await fixture.service.rollback(to: 2, context: ApplyContext(source: .admin, message: "undo", user: "1000"))
        #expect(again.version == 4)
        #expect(try fixture.history.latest()?.source == .rollback)
        #expect(try fixture.history.latest()?.message == "undo")
        #expect(try fixture.history.latest()?.user == "1000")
        #expect(topics(await fixture.drain()) == [
            "registry.entry.deleted app:web", "registry.entry.deleted app:api", "registry.entry.deleted app:db",
            "registry.entry.created app:solo", "registry.version.committed 4",
        ])
        #expect(Set(await fixture.service.entries().keys) == [EntryID("app:solo")!])
    }

    @Test func rollbackToTheCurrentStateMakesNoVersionAndToAnUnknownOneIsRejected() async throws {
        let fixture = try RegistryFixture()
        _ = await fixture.apply(["app.yaml": Self.chain])
        guard case .unchanged(1) = await fixture.service.rollback(to: 1) else { Issue.record("expected unchanged"); return }
        let unknown = await fixture.service.rollback(to: 7)
        #expect(unknown.errors.map(\.code) == [.unknownVersion])
        #expect(try fixture.history.versions().count == 1)
    }

    @Test func observerSeesExactlyTheChangeSetOfEveryVersion() async throws {
        let fixture = try RegistryFixture()
        var generator = SplitMix64(seed: 7)
        for round in 0..<25 {
            // A random subset of 12 names, each with a random value.
            var lines: [String] = []
            for i in 0..<12 where generator.next() % 3 != 0 {
                lines.append("  - {name: e\(i), kind: registry.entry, v: \(generator.next() % 3)}")
            }
            let yaml = "namespace: app\nentries:\n" + (lines.isEmpty ? "  []" : lines.joined(separator: "\n")) + "\n"
            let outcome = await fixture.apply(["app.yaml": lines.isEmpty ? "namespace: app\nentries: []\n" : yaml])
            let events = await fixture.drain()
            switch outcome {
            case .committed(let version, let changes):
                let seen = Dictionary(grouping: events.filter { $0.topic.hasPrefix("registry.entry.") }, by: \.topic)
                    .mapValues { Set($0.map(\.path)) }
                #expect(seen["registry.entry.created", default: []] == Set(changes.creates.map(\.id.description)), "round \(round)")
                #expect(seen["registry.entry.updated", default: []] == Set(changes.updates.map(\.id.description)), "round \(round)")
                #expect(seen["registry.entry.deleted", default: []] == Set(changes.deletes.map(\.id.description)), "round \(round)")
                #expect(events.last?.topic == "registry.version.committed")
                #expect(events.allSatisfy { $0.topic == "registry.version.committed" || $0.data["version"] == .int(Int64(version.number)) })
            case .unchanged:
                #expect(events.isEmpty)
            case .rejected(let errors):
                Issue.record("round \(round): \(errors)")
            }
        }
    }

    @Test func changesToAValidStateAreJudgedExactlyLikeTheWholeState() async throws {
        // Applies after the first validate only what changed; random edits of a linked graph
        // (new links, removed targets, cycles, unknown kinds) must be accepted or refused exactly
        // when validating the whole desired state finds no error or some.
        let fixture = try RegistryFixture()
        let kinds = fixture.service.kinds
        var generator = SplitMix64(seed: 11)
        var accepted = 0, refused = 0
        for round in 0..<300 {
            var lines: [String] = []
            for i in 0..<8 where generator.next() % 4 != 0 {
                switch generator.next() % 10 {
                case 0: lines.append("  - {name: n\(i), kind: test.unknown}")
                case 1...5: lines.append("  - {name: n\(i), kind: test.link, target: n\(generator.next() % 8)}")
                default: lines.append("  - {name: n\(i), kind: registry.entry}")
                }
            }
            let yaml = "namespace: app\nentries:\n" + lines.joined(separator: "\n") + "\n"
            let file = RegistryFile.parse(lines.isEmpty ? "namespace: app\nentries: []\n" : yaml, path: "app.yaml")
            let expected = validate(file.entries, kinds: kinds)
            let outcome = await fixture.service.apply(LoadResult(files: [file]), context: ApplyContext(source: .admin))
            #expect(outcome.errors == expected, "round \(round): \(yaml)")
            if expected.isEmpty { accepted += 1 } else { refused += 1 }
        }
        // Both paths were exercised many times.
        #expect(accepted > 30 && refused > 30, "accepted \(accepted), refused \(refused)")
    }

    @Test func watchDeliversChangesForOneIdOrAPattern() async throws {
        let fixture = try RegistryFixture()
        let one = await fixture.service.watch(Glob("app:db"))
        let all = await fixture.service.watch(Glob("app:*"))
        _ = await fixture.apply(["app.yaml": Self.chain])
        _ = await fixture.apply(["app.yaml": "namespace: app\nentries:\n  - {name: db, kind: registry.entry, x: 1}\n"])
        var oneIterator = one.makeAsyncIterator()
        let first = await oneIterator.next()
        let second = await oneIterator.next()
        #expect(first?.operation == .create && first?.version == 1)
        #expect(second?.operation == .update && second?.version == 2)
        #expect(second?.entry.data["x"] == .int(1))
        var allIterator = all.makeAsyncIterator()
        var seen: [String] = []
        for _ in 0..<5 {
            if let change = await allIterator.next() { seen.append("\(change.version) \(change.operation) \(change.entry.id)") }
        }
        #expect(seen == [
            "1 create app:db", "1 create app:api", "1 create app:web",
            "2 delete app:web", "2 delete app:api",
        ])
        await fixture.service.finishWatchers()
        #expect(await oneIterator.next() == nil)
    }

    @Test func concurrentAppliesCommitOneAtATime() async throws {
        let fixture = try RegistryFixture()
        let service = fixture.service
        await withTaskGroup(of: Void.self) { group in
            for i in 0..<20 {
                group.addTask {
                    let yaml = "namespace: app\nentries:\n  - {name: n, kind: registry.entry, v: \(i)}\n"
                    let load = LoadResult(files: [RegistryFile.parse(yaml, path: "app.yaml")])
                    _ = await service.apply(load, context: ApplyContext(source: .admin))
                }
            }
        }
        let versions = try fixture.history.versions()
        #expect(versions.map(\.number) == Array(1...versions.count))
        // Every version but the first is one update of app:n, and the stored state is the live one.
        #expect(versions.dropFirst().allSatisfy { $0.updated == 1 && $0.created == 0 })
        let last = try fixture.history.state(at: versions.count)
        #expect(await fixture.service.entries()[EntryID("app:n")!]?.data == last[EntryID("app:n")!]?.data)
    }

    @Test func reopeningTheHistoryRestoresTheCurrentVersion() async throws {
        let fixture = try RegistryFixture()
        _ = await fixture.apply(["app.yaml": Self.chain])
        let reopened = try RegistryService(kinds: fixture.service.kinds, history: fixture.history, bus: nil)
        #expect(await reopened.version == 1)
        #expect(await reopened.entries().count == 3)
        guard case .unchanged = await fixture.apply(["app.yaml": Self.chain]) else { Issue.record("expected unchanged"); return }
    }
}
