import Core
import Glibc
import Testing

@testable import Registry

private func entry(_ name: String, _ data: [String: JSON] = [:], line: Int = 1) -> Entry {
    Entry(
        id: EntryID(namespace: "app", name: name)!, kind: "registry.entry", meta: ["team": .string("core")],
        data: .object(data), location: SourceLocation(file: "app.yaml", line: line, column: 3),
        fieldLocations: Dictionary(uniqueKeysWithValues: data.keys.map {
            ($0, SourceLocation(file: "app.yaml", line: line + 1, column: 5))
        }),
        kindLocation: SourceLocation(file: "app.yaml", line: line, column: 9))
}

private func fileSize(_ path: String) -> Int {
    var info = stat()
    return stat(path, &info) == 0 ? Int(info.st_size) : 0
}

@Suite struct HistoryStoreTests {
    @Test func reopenKeepsVersions() throws {
        let folder = TempFolder()
        let path = folder.path + "/registry.db"
        do {
            let store = try HistoryStore.open(path: path)
            _ = try store.commit(ChangeSet(creates: [entry("a")]), source: .boot, time: 10)
            _ = try store.commit(
                ChangeSet(updates: [entry("a", ["x": .int(1)])]), source: .admin, message: "m", user: "alice", time: 11)
        }
        let store = try HistoryStore.open(path: path)
        let versions = try store.versions()
        #expect(versions.map(\.number) == [1, 2])
        #expect(versions[1] == Version(
            number: 2, time: 11, source: .admin, message: "m", user: "alice", created: 0, updated: 1, deleted: 0))
        #expect(try store.latest() == versions[1])
        #expect(try store.state(at: 2)[EntryID("app:a")!] == entry("a", ["x": .int(1)]))
    }

    @Test func migrationsRunOnceAndSchemaVersionIsOne() throws {
        let folder = TempFolder()
        let path = folder.path + "/registry.db"
        #expect(try HistoryStore.open(path: path).schemaVersion() == 1)
        // Version 1 uses plain CREATE TABLE: running it a second time would fail.
        let again = try HistoryStore.open(path: path)
        #expect(try again.schemaVersion() == 1)
        let db = try SQLiteConnection.open(path: path)
        let rows = try db.prepare("SELECT count(*), max(version) FROM schema_version")
        #expect(try rows.step())
        #expect(rows.int(0) == 1)
        #expect(rows.int(1) == 1)
        let mode = try db.prepare("PRAGMA journal_mode")
        #expect(try mode.step())
        #expect(mode.text(0) == "wal")
    }

    @Test func newerSchemaIsRefusedWithItsVersion() throws {
        let folder = TempFolder()
        let path = folder.path + "/registry.db"
        _ = try HistoryStore.open(path: path)
        do {
            let db = try SQLiteConnection.open(path: path)
            try db.execute("UPDATE schema_version SET version = 7")
        }
        let error = #expect(throws: RegistryError.self) { try HistoryStore.open(path: path) }
        #expect(error?.code == .historySchemaTooNew)
        #expect(error?.message.contains("schema version 7") == true)
        #expect(error?.message.contains("understands only up to 1") == true)
    }

    @Test func commitsAreNumberedFromOne() throws {
        let folder = TempFolder()
        let store = try HistoryStore.open(path: folder.path + "/registry.db")
        #expect(try store.latest() == nil)
        let first = try store.commit(ChangeSet(creates: [entry("a"), entry("b")]), source: .boot, time: 1)
        let second = try store.commit(ChangeSet(deletes: [entry("a")]), source: .fileChange, time: 2)
        let third = try store.commit(ChangeSet(creates: [entry("c")]), source: .sighup, time: 3)
        #expect([first.number, second.number, third.number] == [1, 2, 3])
        #expect((first.created, first.updated, first.deleted) == (2, 0, 0))
        #expect((second.created, second.updated, second.deleted) == (0, 0, 1))
        #expect(try store.versions().map(\.source) == [.boot, .fileChange, .sighup])
    }

    @Test func emptyChangeSetCreatesNoVersion() throws {
        let folder = TempFolder()
        let store = try HistoryStore.open(path: folder.path + "/registry.db")
        _ = try store.commit(ChangeSet(creates: [entry("a")]), source: .boot, time: 1)
        let error = #expect(throws: RegistryError.self) {
            try store.commit(ChangeSet(), source: .fileChange, time: 2)
        }
        #expect(error?.code == .emptyChangeSet)
        #expect(try store.versions().map(\.number) == [1])
    }

    @Test func failedCommitLeavesNoPartialVersion() throws {
        let folder = TempFolder()
        let store = try HistoryStore.open(path: folder.path + "/registry.db")
        _ = try store.commit(ChangeSet(creates: [entry("a")]), source: .boot, time: 1)
        // The same id twice breaks the (version, entry) key after the first row is written.
        let error = #expect(throws: RegistryError.self) {
            try store.commit(ChangeSet(creates: [entry("b")], updates: [entry("b")]), source: .admin, time: 2)
        }
        #expect(error?.code == .historyStorage)
        #expect(try store.versions().map(\.number) == [1])
        #expect(try store.history(of: EntryID("app:b")!).isEmpty)
    }

    @Test func stateAtEachVersionAcrossCheckpoints() throws {
        let folder = TempFolder()
        let store = try HistoryStore.open(path: folder.path + "/registry.db", checkpointInterval: 3)
        var current: [EntryID: Entry] = [:]
        var expected: [[EntryID: Entry]] = [[:]]
        // Ten versions: creates, updates, deletes, and an entry deleted then created again.
        for v in 1...10 {
            var desired = current
            desired[EntryID("app:e\(v)")!] = entry("e\(v)", ["v": .int(Int64(v))], line: v)
            if v % 2 == 0 { desired[EntryID("app:e\(v - 1)")!] = entry("e\(v - 1)", ["v": .string("updated")]) }
            if v % 3 == 0 { desired[EntryID("app:e\(v - 2)")!] = nil }
            if v == 7 { desired[EntryID("app:e1")!] = entry("e1", ["back": .bool(true)]) }
            if v == 8 { desired.removeAll() }
            let changes = ChangeSet.between(current: current, desired: desired)
            // Locations are not part of a change: carry the moved ones along so the state is exact.
            let version = try store.commit(changes, source: .admin, time: Double(v))
            #expect(version.number == v)
            for e in changes.updates { desired[e.id] = e }
            current = desired
            expected.append(current)
        }
        for v in 0...10 {
            #expect(try store.state(at: v) == expected[v], "state at version \(v)")
        }
        // Checkpoints exist at 3, 6, 9 and the state at 10 replays only version 10.
        let db = try SQLiteConnection.open(path: store.path)
        let marked = try db.prepare("SELECT group_concat(number) FROM versions WHERE checkpoint = 1")
        #expect(try marked.step())
        #expect(marked.text(0) == "3,6,9")
        // The copies hold the whole state (a checkpoint once stored itself empty).
        for v in [3, 6, 9] {
            let copied = try db.queryInt("SELECT count(*) FROM checkpoint_entries WHERE version = ?", .int(v))
            #expect(copied == expected[v].count, "checkpoint \(v)")
        }
        // Reopened with another interval, old checkpoints still serve.
        let reopened = try HistoryStore.open(path: store.path, checkpointInterval: 100)
        for v in 0...10 { #expect(try reopened.state(at: v) == expected[v]) }
        #expect(throws: RegistryError.self) { try store.state(at: 11) }
        #expect((try? store.state(at: 11)) == nil)
        do {
            _ = try store.state(at: 11)
        } catch {
            #expect(error.code == .unknownVersion)
        }
    }

    @Test func historyOfOneEntry() throws {
        let folder = TempFolder()
        let store = try HistoryStore.open(path: folder.path + "/registry.db")
        _ = try store.commit(ChangeSet(creates: [entry("a"), entry("b")]), source: .boot, time: 1)
        _ = try store.commit(ChangeSet(updates: [entry("b", ["x": .int(1)])]), source: .admin, time: 2)
        _ = try store.commit(ChangeSet(updates: [entry("a", ["x": .int(2)])]), source: .admin, time: 3)
        _ = try store.commit(ChangeSet(deletes: [entry("a", ["x": .int(2)])]), source: .rollback, time: 4)
        let history = try store.history(of: EntryID("app:a")!)
        #expect(history.map(\.version.number) == [1, 3, 4])
        #expect(history.map(\.operation) == [.create, .update, .delete])
        #expect(history.last?.version.source == .rollback)
        #expect(try store.history(of: EntryID("app:none")!).isEmpty)
    }

    @Test func storageGrowsWithTheChangeNotTheState() throws {
        let folder = TempFolder()
        let path = folder.path + "/registry.db"
        let store = try HistoryStore.open(path: path)
        let padding = String(repeating: "p", count: 200)
        let all = (0..<1000).map { entry("e\($0)", ["pad": .string(padding), "n": .int(Int64($0))]) }
        _ = try store.commit(ChangeSet(creates: all), source: .boot, time: 0)
        try store.truncateWAL()
        let before = fileSize(path) + fileSize(path + "-wal")
        let stateSize = before
        let count = 50
        for v in 0..<count {
            let changed = entry("e\(v)", ["pad": .string(padding), "n": .int(Int64(-v))])
            _ = try store.commit(ChangeSet(updates: [changed]), source: .fileChange, time: Double(v + 1))
        }
        try store.truncateWAL()
        let after = fileSize(path) + fileSize(path + "-wal")
        let perVersion = (after - before) / count
        print("history growth: \(perVersion) bytes per one-entry version on 1,000 entries (state \(stateSize) bytes)")
        #expect(perVersion <= 4096, "grew \(perVersion) bytes per one-entry version")
        #expect(perVersion * 20 < stateSize, "a version must cost far less than the state (\(stateSize) bytes)")
    }
}

/// The `history-crash-helper` executable built next to the test bundle.
private func crashHelper() throws -> String {
    guard let resolved = realpath(CommandLine.arguments[0], nil) else { throw UVError(-errno, "realpath") }
    let bundle = String(cString: resolved)
    free(resolved)
    let folder = bundle.lastIndex(of: "/").map { String(bundle[..<$0]) } ?? "."
    let path = folder + "/history-crash-helper"
    try #require(access(path, X_OK) == 0, "build all targets first: \(path) is missing")
    return path
}

@Suite struct HistoryDurabilityTests {
    /// Kills a committing child with SIGKILL at random points, five times over one database:
    /// every version it reported survives, and every version on disk is whole.
    @Test func killedCommitterLosesNoReturnedVersionAndLeavesNoPartialOne() async throws {
        let folder = TempFolder()
        let path = folder.path + "/registry.db"
        let loop = EventLoop()
        defer { loop.shutdown() }
        var generator = SystemRandomNumberGenerator()
        for round in 1...5 {
            var options = ProcessOptions([try crashHelper(), path])
            options.stdout = .pipe
            let child = try await ChildProcess.spawn(on: loop, options)
            let stdout = try #require(child.stdout)
            let wanted = Int.random(in: 1...12, using: &generator)
            var reported: [Int] = []
            var pending: [UInt8] = []
            while reported.count < wanted, let chunk = try? await stdout.read() {
                pending += chunk
                while let newline = pending.firstIndex(of: 10) {
                    reported.append(Int(String(decoding: pending[..<newline], as: UTF8.self))!)
                    pending.removeSubrange(...newline)
                }
            }
            // Kill somewhere inside a later commit, not always right after a line.
            try await loop.sleep(for: .microseconds(Int.random(in: 0...3000, using: &generator)))
            await child.signal(SIGKILL)
            let status = try await child.wait()
            #expect(status.signal == SIGKILL, "round \(round): the helper ended on its own: \(status)")
            let lastReported = try #require(reported.last, "round \(round): the helper reported nothing")

            let store = try HistoryStore.open(path: path, checkpointInterval: 5)
            let versions = try store.versions()
            #expect(versions.map(\.number) == Array(1...(versions.last?.number ?? 0)), "round \(round): numbering has gaps")
            #expect((versions.last?.number ?? 0) >= lastReported, "round \(round): version \(lastReported) was lost")
            // Whole versions only: each state follows from the previous by exactly its counts.
            var previous = 0
            for version in versions {
                let state = try store.state(at: version.number)
                #expect(state.count == previous + version.created - version.deleted, "round \(round): version \(version.number)")
                #expect(version.created + version.updated + version.deleted == (version.number == 1 ? 11 : 12))
                #expect(state[EntryID("crash:counter")!]?.data == .object(["n": .int(Int64(version.number))]))
                previous = state.count
            }
        }
    }
}
