import Components
import Core
import Foundation
import Glibc
import Logging
import Registry
import Testing

/// A reloader on a real folder and loop, with the bus events it causes.
final class ReloaderFixture {
    let loop = EventLoop(name: "reloader-test")
    let folder: TemporaryFolder
    let bus = EventBus()
    let registry: RegistryService
    let reloader: RegistryReloader
    let events: EventSubscription
    var iterator: EventSubscription.AsyncIterator

    init(quiet: Duration = .milliseconds(10)) throws {
        folder = try TemporaryFolder()
        mkdir(folder.path + "/registry", 0o755)
        let history = try HistoryStore.open(path: folder.path + "/registry.db")
        registry = try RegistryService(kinds: RegistryKinds.standard(), history: history, bus: bus)
        reloader = RegistryReloader(
            loop: loop, folder: RegistryFolder(root: folder.path + "/registry"),
            registry: registry, logger: Logger(label: "test"), quiet: quiet)
        events = try bus.subscribe("registry.**")
        iterator = events.makeAsyncIterator()
    }

    func close() async {
        await reloader.stop()
        await loop.shutdownGracefully()
        folder.remove()
    }

    func write(_ relative: String, _ text: String) {
        let path = folder.path + "/registry/" + relative
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        precondition(fd >= 0, "cannot write \(path)")
        _ = Array(text.utf8).withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        Glibc.close(fd)
    }

    /// The next committed version or rejection (entry events are skipped).
    func nextOutcome() async -> Event? {
        while let event = await iterator.next() {
            if event.topic == "registry.version.committed" || event.topic == "registry.apply.rejected" { return event }
        }
        return nil
    }

    /// As `nextOutcome()`, or nil when none comes within `limit` (for a change that may be lost).
    func nextOutcome(within limit: Duration) async -> Event? {
        let bus = self.bus
        let deadline = Task {
            try? await Task.sleep(for: limit)
            if !Task.isCancelled { bus.publish(topic: "registry.test.deadline") }
        }
        defer { deadline.cancel() }
        while let event = await iterator.next() {
            if event.topic == "registry.test.deadline" { return nil }
            if event.topic == "registry.version.committed" || event.topic == "registry.apply.rejected" { return event }
        }
        return nil
    }
}

func entryFile(_ namespace: String, _ names: [String], value: Int = 0) -> String {
    "namespace: \(namespace)\nentries:\n" + names.map { "  - {name: \($0), kind: registry.entry, v: \(value)}\n" }.joined()
}

/// A participant that, once armed, holds the next review until released.
actor HoldingParticipant: RegistryParticipant {
    nonisolated let name = "holding"
    nonisolated let entered: AsyncStream<Void>
    private let enteredSink: AsyncStream<Void>.Continuation
    private var armed = false
    private var released = false
    private var waiting: CheckedContinuation<Void, Never>?

    init() { (entered, enteredSink) = AsyncStream.makeStream(of: Void.self) }

    func arm() { armed = true }

    func release() {
        released = true
        waiting?.resume()
        waiting = nil
    }

    func review(_ proposal: RegistryProposal) async -> [RegistryError] {
        guard armed else { return [] }
        enteredSink.yield()
        if !released { await withCheckedContinuation { waiting = $0 } }
        return []
    }

    private(set) var committedCount = 0

    func committed(_ commit: RegistryCommit) async { committedCount += 1 }
}

// Serialized: one test sends SIGHUP to this process, which every started reloader would act on.
@Suite(.serialized, .timeLimit(.minutes(1))) struct RegistryReloaderTests {
    @Test func editingAddingAndDeletingFilesAndFoldersEachCommitAVersion() async throws {
        let fixture = try ReloaderFixture()
        fixture.write("a.yaml", entryFile("app", ["one", "two"]))
        #expect(await fixture.reloader.reload(ApplyContext(source: .boot)).version == 1)
        await fixture.reloader.startWatching()
        _ = await fixture.nextOutcome()  // version 1

        fixture.write("a.yaml", entryFile("app", ["one", "two"], value: 1))
        var event = await fixture.nextOutcome()
        #expect(event?.path == "2" && event?.data["updated"] == .int(2) && event?.data["source"] == .string("file-change"))

        // A new folder, and a file in it at once: the folder's watcher comes after the file.
        mkdir(fixture.folder.path + "/registry/more", 0o755)
        fixture.write("more/b.yaml", entryFile("more", ["three"]))
        event = await fixture.nextOutcome()
        #expect(event?.path == "3" && event?.data["created"] == .int(1))

        // Within the new folder, a later change is seen by its own watcher.
        fixture.write("more/b.yaml", entryFile("more", ["three", "four"]))
        event = await fixture.nextOutcome()
        #expect(event?.path == "4" && event?.data["created"] == .int(1))
        #expect(await fixture.reloader.watchedFolders == [fixture.folder.path + "/registry", fixture.folder.path + "/registry/more"])

        unlink(fixture.folder.path + "/registry/a.yaml")
        event = await fixture.nextOutcome()
        #expect(event?.path == "5" && event?.data["deleted"] == .int(2))

        unlink(fixture.folder.path + "/registry/more/b.yaml")
        rmdir(fixture.folder.path + "/registry/more")
        event = await fixture.nextOutcome()
        #expect(event?.path == "6" && event?.data["deleted"] == .int(2))
        #expect(await fixture.registry.entries().isEmpty)
        // Version 6 may have been read between the unlink and the rmdir; the folder's removal
        // then brings one more read, which commits nothing and publishes nothing. A read of our
        // own is ordered after it.
        _ = await fixture.reloader.reload(ApplyContext(source: .admin))
        #expect(await fixture.reloader.watchedFolders == [fixture.folder.path + "/registry"])
        await fixture.close()
    }

    @Test func aBurstOfFiftyWritesCommitsOneVersion() async throws {
        // Quiet for 50 ms: a burst from one writer is far tighter than that, even on a loaded machine.
        let fixture = try ReloaderFixture(quiet: .milliseconds(50))
        #expect(await fixture.reloader.reload(ApplyContext(source: .boot)).version == 0)
        await fixture.reloader.startWatching()
        for i in 0..<50 {
            fixture.write("burst\(i % 5).yaml", entryFile("burst\(i % 5)", ["e"], value: i))
        }
        let event = await fixture.nextOutcome()
        #expect(event?.path == "1")
        #expect(event?.data["created"] == .int(5))
        // The final content of each file, and no second version: the next change is version 2.
        let values = await fixture.registry.entries().values.map { $0.data["v"] }
        #expect(Set(values) == Set((45..<50).map { JSON.int(Int64($0)) }))
        fixture.write("probe.yaml", entryFile("probe", ["p"]))
        let next = await fixture.nextOutcome()
        #expect(next?.path == "2" && next?.data["created"] == .int(1))
        await fixture.close()
    }

    @Test func aBrokenFileIsRejectedAndTheRunningVersionStays() async throws {
        let fixture = try ReloaderFixture()
        fixture.write("a.yaml", entryFile("app", ["one"]))
        _ = await fixture.reloader.reload(ApplyContext(source: .boot))
        await fixture.reloader.startWatching()
        _ = await fixture.nextOutcome()

        fixture.write("a.yaml", "namespace: app\nentries:\n  - {name: one, kind: registry.entry, v: [}\n")
        let rejected = await fixture.nextOutcome()
        #expect(rejected?.topic == "registry.apply.rejected")
        guard case .array(let errors)? = rejected?.data["errors"] else { Issue.record("no errors"); return }
        #expect(errors.first?["code"] == .string("yamlSyntax"))
        #expect(errors.first?["location"]?["file"] == .string("a.yaml"))
        #expect(await fixture.registry.version == 1)
        #expect(await fixture.registry.entries()[EntryID("app:one")!]?.data["v"] == .int(0))

        fixture.write("a.yaml", entryFile("app", ["one"], value: 2))
        let fixed = await fixture.nextOutcome()
        #expect(fixed?.topic == "registry.version.committed" && fixed?.path == "2")
        await fixture.close()
    }

    /// `rm -r sub && mkdir sub` (or a new folder renamed over it) faster than the loop reads the
    /// kernel's events: the new folder is watched like the old one was.
    @Test func aFolderRemovedAndMadeAgainIsStillWatched() async throws {
        let fixture = try ReloaderFixture()
        let sub = fixture.folder.path + "/registry/sub"
        mkdir(sub, 0o755)
        fixture.write("sub/a.yaml", entryFile("app", ["one"]))
        #expect(await fixture.reloader.reload(ApplyContext(source: .boot)).version == 1)
        await fixture.reloader.startWatching()
        _ = await fixture.nextOutcome()  // version 1

        let remade = try await fixture.loop.submit {
            unlink(sub + "/a.yaml") == 0 && rmdir(sub) == 0 && mkdir(sub, 0o755) == 0
        }
        try #require(remade)
        fixture.write("sub/a.yaml", entryFile("app", ["one"], value: 1))
        let first = await fixture.nextOutcome(within: .seconds(10))
        #expect(first?.path == "2")

        fixture.write("sub/a.yaml", entryFile("app", ["one"], value: 2))
        let second = await fixture.nextOutcome(within: .seconds(5))
        #expect(second?.path == "3", "a write into the new folder was not seen")
        #expect(await fixture.registry.entries()[EntryID("app:one")!]?.data["v"] == .int(2))
        await fixture.close()
    }

    /// The whole folder removed (the running version stays), then made again, as a deployment that
    /// replaces it does: the new folder is applied and watched.
    @Test func aRegistryFolderRemovedAndMadeAgainIsAppliedAndWatched() async throws {
        let fixture = try ReloaderFixture()
        let root = fixture.folder.path + "/registry"
        fixture.write("a.yaml", entryFile("app", ["one"]))
        #expect(await fixture.reloader.reload(ApplyContext(source: .boot)).version == 1)
        await fixture.reloader.startWatching()
        _ = await fixture.nextOutcome()  // version 1

        let removed = try await fixture.loop.submit { unlink(root + "/a.yaml") == 0 && rmdir(root) == 0 }
        try #require(removed)
        let rejected = await fixture.nextOutcome(within: .seconds(10))
        #expect(rejected?.topic == "registry.apply.rejected")
        #expect(await fixture.registry.version == 1)

        // Made again whole, elsewhere, and renamed into place.
        let next = fixture.folder.path + "/.next"
        #expect(mkdir(next, 0o755) == 0)
        let text = Array(entryFile("app", ["one"], value: 1).utf8)
        let fd = open(next + "/a.yaml", O_WRONLY | O_CREAT, 0o644)
        #expect(text.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == text.count)
        Glibc.close(fd)
        #expect(rename(next, root) == 0)
        var back = await fixture.nextOutcome(within: .seconds(5))
        while back?.topic == "registry.apply.rejected" { back = await fixture.nextOutcome(within: .seconds(5)) }
        #expect(back?.topic == "registry.version.committed" && back?.path == "2", "the folder made again was not seen")

        fixture.write("a.yaml", entryFile("app", ["one"], value: 2))
        let edited = await fixture.nextOutcome(within: .seconds(5))
        #expect(edited?.path == "3")
        #expect(await fixture.reloader.watchedFolders == [root])
        await fixture.close()
    }

    /// `stop()` while a reload is still adding watchers for the folders it read: once both have
    /// returned, no folder is watched (a watcher added after the stop would live on, unowned).
    @Test func stopDuringAReloadLeavesNoFolderWatched() async throws {
        let fixture = try ReloaderFixture()
        for i in 0..<200 { mkdir(fixture.folder.path + "/registry/d\(i)", 0o755) }
        let reloader = fixture.reloader
        // Not a boot reload: at boot the host starts watching separately (`startWatching`).
        let reload = Task { await reloader.reload(ApplyContext(source: .admin)) }
        // The reload is adding watchers once the first is there (it adds them one at a time).
        while await reloader.watchedFolders.isEmpty { await Task.yield() }
        await reloader.stop()
        _ = await reload.value
        #expect(await reloader.watchedFolders.isEmpty)
        await fixture.close()
    }

    /// "Stops watching; an apply under way finishes": that holds for a reload SIGHUP started too,
    /// so that no version is committed once the registry has stopped.
    @Test func stopWaitsForAReloadThatSIGHUPStarted() async throws {
        let fixture = try ReloaderFixture()
        // No bursts during the test: only SIGHUP reloads.
        let reloader = RegistryReloader(
            loop: fixture.loop, folder: RegistryFolder(root: fixture.folder.path + "/registry"),
            registry: fixture.registry, logger: Logger(label: "test"), quiet: .seconds(60), maxDelay: .seconds(60))
        fixture.write("a.yaml", entryFile("app", ["one"]))
        #expect(await reloader.reload(ApplyContext(source: .boot)).version == 1)
        await reloader.startWatching()
        let holding = HoldingParticipant()
        await fixture.registry.add(holding)
        #expect(await fixture.registry.rollback(to: 0).version == 2)

        await holding.arm()
        var entered = holding.entered.makeAsyncIterator()
        kill(getpid(), SIGHUP)
        _ = await entered.next()  // the SIGHUP reload is in review

        let stopping = Task { () -> Int in
            await reloader.stop()
            return await holding.committedCount
        }
        // A stop that waits for the reload waits for this release too: it comes after a while.
        let releasing = Task {
            try? await Task.sleep(for: .milliseconds(300))
            await holding.release()
        }
        // Version 2 (the rollback) was committed before; version 3 is the SIGHUP reload's.
        #expect(await stopping.value == 2, "stop returned while the SIGHUP reload was still applying")
        await holding.release()
        releasing.cancel()
        await fixture.close()
    }
}
