import CLibUV
import Core
import Glibc
import Testing
import TestSupport

// MARK: Helpers

/// Creates or truncates `path` with `bytes`; false when that failed.
@discardableResult
func writeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) -> Bool {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    return bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } == bytes.count
}

/// Reads changes until one matches `wanted` and returns all read so far, that one last; nil when the
/// stream finished first. After `limit` the test fails and the watcher is closed, which ends the wait.
private func changes(of watcher: DirectoryWatcher, until wanted: @escaping @Sendable (FileChange) -> Bool,
                     limit: Duration = .seconds(30),
                     sourceLocation: SourceLocation = #_sourceLocation) async throws -> [FileChange]? {
    try await withDeadline("changes of \(watcher.path)", within: limit, sourceLocation: sourceLocation,
                           unblock: { await watcher.close() }) {
        var seen: [FileChange] = []
        for await change in watcher.changes {
            seen.append(change)
            if wanted(change) { return seen }
        }
        return nil
    }
}

/// Reads changes until the stream finishes and returns them. After `limit` the test fails and the
/// watcher is closed.
private func remainingChanges(of watcher: DirectoryWatcher, limit: Duration = .seconds(30),
                              sourceLocation: SourceLocation = #_sourceLocation) async throws -> [FileChange] {
    try await withDeadline("changes of \(watcher.path)", within: limit, sourceLocation: sourceLocation,
                           unblock: { await watcher.close() }) {
        var seen: [FileChange] = []
        for await change in watcher.changes { seen.append(change) }
        return seen
    }
}

// MARK: Tests

@Suite struct DirectoryWatcherTests {
    @Test func newFileIsReportedByName() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let directory = try #require(makeTemporaryDirectory())
        defer { removeTree(directory) }
        let watcher = try await DirectoryWatcher.watch(directory, on: loop)
        #expect(watcher.path == directory)
        try #require(writeFile(directory + "/new.yaml", Array("a: 1\n".utf8)))
        let seen = try #require(try await changes(of: watcher) { $0.name == "new.yaml" })
        #expect(seen.last?.kinds.contains(.renamed) == true)  // inotify's IN_CREATE
        await watcher.close()
    }

    @Test func changedContentIsReportedAsChanged() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let directory = try #require(makeTemporaryDirectory())
        defer { removeTree(directory) }
        try #require(writeFile(directory + "/entry.yaml", Array("a: 1\n".utf8)))
        let watcher = try await DirectoryWatcher.watch(directory, on: loop)
        try #require(writeFile(directory + "/entry.yaml", Array("a: 2\n".utf8)))
        let seen = try #require(try await changes(of: watcher) { $0.kinds.contains(.changed) })
        #expect(seen.last?.name == "entry.yaml")
        await watcher.close()
    }

    @Test func renameReportsTheOldAndTheNewName() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let directory = try #require(makeTemporaryDirectory())
        defer { removeTree(directory) }
        try #require(writeFile(directory + "/old.yaml", []))
        let watcher = try await DirectoryWatcher.watch(directory, on: loop)
        try #require(rename(directory + "/old.yaml", directory + "/new.yaml") == 0)
        // inotify reports the old name (IN_MOVED_FROM) before the new one (IN_MOVED_TO).
        let seen = try #require(try await changes(of: watcher) { $0.name == "new.yaml" })
        #expect(seen.last?.kinds.contains(.renamed) == true)
        #expect(seen.contains { $0.name == "old.yaml" && $0.kinds.contains(.renamed) })
        await watcher.close()
    }

    @Test func deleteIsReported() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let directory = try #require(makeTemporaryDirectory())
        defer { removeTree(directory) }
        try #require(writeFile(directory + "/gone.yaml", []))
        let watcher = try await DirectoryWatcher.watch(directory, on: loop)
        try #require(unlink(directory + "/gone.yaml") == 0)
        let seen = try #require(try await changes(of: watcher) { $0.name == "gone.yaml" })
        #expect(seen.last?.kinds.contains(.renamed) == true)  // inotify's IN_DELETE
        await watcher.close()
    }

    @Test func entriesOfSubdirectoriesAreNotReported() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let directory = try #require(makeTemporaryDirectory())
        defer { removeTree(directory) }
        try #require(mkdir(directory + "/sub", 0o755) == 0)
        let watcher = try await DirectoryWatcher.watch(directory, on: loop)
        try #require(writeFile(directory + "/sub/inner.yaml", []))
        // Events of one watch arrive in order: once the marker is seen, an event for the nested
        // file would have been seen before it.
        try #require(writeFile(directory + "/marker", []))
        let seen = try #require(try await changes(of: watcher) { $0.name == "marker" })
        #expect(!seen.contains { $0.name == "inner.yaml" || $0.name == "sub/inner.yaml" })
        await watcher.close()
    }

    @Test func closingTheWatcherFinishesChanges() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let directory = try #require(makeTemporaryDirectory())
        defer { removeTree(directory) }
        let watcher = try await DirectoryWatcher.watch(directory, on: loop)
        await watcher.close()
        #expect(try await remainingChanges(of: watcher).isEmpty)
        #expect(try await loop.submit { openHandleCount(loop) } == 0)
        // Closing again is harmless.
        await watcher.close()
    }

    @Test func loopShutdownFinishesChanges() async throws {
        let loop = EventLoop()
        let directory = try #require(makeTemporaryDirectory())
        defer { removeTree(directory) }
        let watcher = try await DirectoryWatcher.watch(directory, on: loop)
        await loop.shutdownGracefully()
        // The loop is gone: `remainingChanges` would close the watcher on the stopped loop, so the
        // guard here only stops waiting (iterating an AsyncStream ends when its task is cancelled).
        let finished = await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                for await _ in watcher.changes {}
                return !Task.isCancelled
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(10))
                return false
            }
            let first = await group.next()!
            group.cancelAll()
            return first
        }
        #expect(finished)
    }

    @Test func watchingMissingDirectoryThrowsENOENT() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let directory = try #require(makeTemporaryDirectory())
        defer { removeTree(directory) }
        let error = await #expect(throws: UVError.self) {
            _ = try await DirectoryWatcher.watch(directory + "/missing", on: loop)
        }
        #expect(error?.code == UV_ENOENT.rawValue)
        #expect(error?.description.contains(directory + "/missing") == true)
        #expect(try await loop.submit { openHandleCount(loop) } == 0)
    }

    /// libuv reports the removal of the watched folder (IN_DELETE_SELF, IN_IGNORED) as ordinary
    /// rename events with status 0; the watcher must end its sequence rather than stay open on a
    /// watch the kernel has dropped.
    @Test func removingTheWatchedDirectoryFinishesChanges() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let parent = try #require(makeTemporaryDirectory())
        defer { removeTree(parent) }
        let directory = parent + "/watched"
        try #require(mkdir(directory, 0o755) == 0)
        let watcher = try await DirectoryWatcher.watch(directory, on: loop)
        try #require(rmdir(directory) == 0)
        // The sequence must end by itself (the deadline would close the watcher and record a failure).
        let seen = try await remainingChanges(of: watcher)
        #expect(seen.allSatisfy { $0.name != "watched" }, "the folder's own removal is not a change in it")
        #expect(try await loop.submit { openHandleCount(loop) } == 0)
    }
}

@Suite struct DirectoryWatcherReplacementTests {
    /// A folder removed and made again (or another one renamed into its place) before the loop
    /// reads the kernel's events: the watch followed the old folder, so the sequence must end,
    /// even though the path exists again, or changes in the new folder are never seen.
    @Test func replacingTheWatchedDirectoryFinishesChanges() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let parent = try #require(makeTemporaryDirectory())
        defer { removeTree(parent) }
        let directory = parent + "/watched"
        try #require(mkdir(directory, 0o755) == 0)
        let watcher = try await DirectoryWatcher.watch(directory, on: loop)
        // On the loop, so that both steps happen before it reads the events.
        let replaced = try await loop.submit { rmdir(directory) == 0 && mkdir(directory, 0o755) == 0 }
        try #require(replaced)
        _ = try await remainingChanges(of: watcher)
        #expect(try await loop.submit { openHandleCount(loop) } == 0)
    }

    @Test func renamingAnotherDirectoryIntoItsPlaceFinishesChanges() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let parent = try #require(makeTemporaryDirectory())
        defer { removeTree(parent) }
        let directory = parent + "/watched"
        try #require(mkdir(directory, 0o755) == 0)
        try #require(mkdir(parent + "/.next", 0o755) == 0)
        let watcher = try await DirectoryWatcher.watch(directory, on: loop)
        let swapped = try await loop.submit {
            rename(directory, parent + "/.old") == 0 && rename(parent + "/.next", directory) == 0
        }
        try #require(swapped)
        _ = try await remainingChanges(of: watcher)
        #expect(try await loop.submit { openHandleCount(loop) } == 0)
    }

    /// A file named like the folder inside it is an ordinary change, not the folder going away.
    @Test func aChildNamedLikeTheFolderIsAnOrdinaryChange() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let parent = try #require(makeTemporaryDirectory())
        defer { removeTree(parent) }
        let directory = parent + "/watched"
        try #require(mkdir(directory, 0o755) == 0)
        let watcher = try await DirectoryWatcher.watch(directory, on: loop)
        try #require(writeFile(directory + "/watched", []))
        try #require(writeFile(directory + "/marker", []))
        let seen = try await changes(of: watcher, until: { $0.name == "marker" }, limit: .seconds(5))
        #expect(seen?.contains { $0.name == "watched" } == true)
        await watcher.close()
    }
}
