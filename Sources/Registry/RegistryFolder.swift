import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A registry folder read again and again (at boot, on every file change, on SIGHUP), with the
/// command line's adjustments laid over it, re-parsing only the files that changed.
///
/// A file counts as unchanged while its device, inode, size and nanosecond modification and
/// status-change times stay the same (see `FileSignature`); the folder is walked anew each time,
/// so added, removed and renamed files and folders are always seen.
///
/// When the previous read was clean (no problem anywhere) and this one finds none either, the
/// desired state is derived from the previous one by replacing the entries of the changed files
/// only, and the snapshot names the ids that may differ (`changedIDs`), so that an edit of one
/// entry costs the same whatever the size of the folder. Otherwise everything is combined anew,
/// exactly as `RegistryLoader.load` and `FolderAdjustments.apply` do, with every problem.
///
/// Safe to call from any thread; reads are serialised. Each read blocks on the file system:
/// keep it off the loop.
public final class RegistryFolder: Sendable {
    public let root: String
    public let adjustments: FolderAdjustments
    /// See `racyMarginNanoseconds`.
    public let racyMargin: Duration

    /// What one read found.
    public struct Snapshot: Sendable {
        /// The desired state: every entry, adjusted, by id (with problems: those that loaded).
        public var entries: [EntryID: Entry]
        /// Every problem, sorted; empty when the folder is valid as files.
        public var errors: [RegistryError]
        /// Every folder under the root that was read, as full paths, the root first.
        public var folders: [String]
        /// How many files were parsed for this read (the rest came from the cache).
        public var parsedFiles: Int
        public var totalFiles: Int
        /// Numbers this read; `basedOn` is the read that `changedIDs` is relative to.
        public var generation: UInt64
        public var basedOn: UInt64?
        /// The ids whose entry may differ from read `basedOn`'s (added, removed or re-parsed);
        /// nil when not known (the whole state must be compared).
        public var changedIDs: Set<EntryID>?

        /// As `RegistryLoader.load` reports it: entries sorted by id, and the problems.
        public var load: LoadResult {
            var result = LoadResult(files: [], errors: errors)
            result.entries = entries.values.sorted { $0.id < $1.id }
            return result
        }
    }

    private struct Cached {
        let signature: FileSignature
        let file: RegistryFile
        /// Wall-clock time (ns since 1970) when the read that parsed the file began.
        let readAt: Int64
    }

    /// What the last read left, for the next one.
    private struct Memory {
        var files: [String: Cached] = [:]
        var generation: UInt64 = 0
        /// The last read's desired state and where each id is declared, when it was clean.
        var clean: CleanState?
    }

    private struct CleanState {
        var entries: [EntryID: Entry]
        /// Every id each file declares, disabled ones included (they still collide with others).
        var idsByFile: [String: [EntryID]]
        var declared: Set<EntryID>
    }

    /// File times come from a coarse kernel clock (a tick of up to 10 ms), so two writes within
    /// one tick leave the same times. A cached parse is trusted only when the file's times are
    /// older than the read that made it by more than this margin ("racy" files are parsed again,
    /// the way git treats racily clean index entries).
    private let racyMarginNanoseconds: Int64
    private let memory = Mutex(Memory())

    public init(root: String, adjustments: FolderAdjustments = FolderAdjustments(), racyMargin: Duration = .milliseconds(50)) {
        var trimmed = root
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.root = trimmed
        self.adjustments = adjustments
        self.racyMargin = racyMargin
        racyMarginNanoseconds = racyMargin.components.seconds * 1_000_000_000
            + racyMargin.components.attoseconds / 1_000_000_000
    }

    /// Reads the folder: every entry and every problem.
    public func read() -> Snapshot {
        memory.withLock { memory in
            let readAt = RegistryFolder.wallClockNanoseconds()
            var walk = FolderWalk(root: root)
            walk.run()
            let found = walk.files.sorted { $0.path < $1.path }
            var files = [RegistryFile?](repeating: nil, count: found.count)
            var toParse: [Int] = []
            for (i, item) in found.enumerated() {
                if let signature = item.signature, let cached = memory.files[item.path], cached.signature == signature,
                    signature.newestTimeNanoseconds + racyMarginNanoseconds < cached.readAt {
                    files[i] = cached.file
                } else {
                    toParse.append(i)
                }
            }
            if !toParse.isEmpty {
                let slots = Slots<RegistryFile>(count: toParse.count)
                let root = self.root
                let paths = toParse.map { found[$0].path }
                if paths.count == 1 {
                    slots[0] = RegistryLoader.readAndParse(root: root, path: paths[0])
                } else {
                    DispatchQueue.concurrentPerform(iterations: paths.count) { k in
                        slots[k] = RegistryLoader.readAndParse(root: root, path: paths[k])
                    }
                }
                for (k, i) in toParse.enumerated() { files[i] = slots[k] }
            }
            var parsedNow = [Bool](repeating: false, count: found.count)
            for i in toParse { parsedNow[i] = true }
            var next: [String: Cached] = [:]
            for (i, item) in found.enumerated() {
                // A file that could not be stat'ed, or failed to read, is read again next time.
                if let signature = item.signature, let file = files[i],
                    !file.errors.contains(where: { $0.code == .unreadableFile }) {
                    let parsedAt = parsedNow[i] ? readAt : memory.files[item.path]?.readAt ?? readAt
                    next[item.path] = Cached(signature: signature, file: file, readAt: parsedAt)
                }
            }
            let allFiles = files.map { $0! }
            let previousFiles = memory.files
            memory.files = next
            memory.generation += 1
            let previousClean = memory.clean
            memory.clean = nil

            var snapshot = Snapshot(
                entries: [:], errors: [], folders: walk.folders.map { $0.isEmpty ? root : root + "/" + $0 },
                parsedFiles: toParse.count, totalFiles: found.count, generation: memory.generation,
                basedOn: nil, changedIDs: nil)

            // The quick way: the previous read was clean, and so is every file of this one.
            let foundPaths = Set(found.map(\.path))
            let removedPaths = previousFiles.keys.filter { !foundPaths.contains($0) }
            if var clean = previousClean, walk.errors.isEmpty, allFiles.allSatisfy({ $0.errors.isEmpty }),
                let changed = incrementalUpdate(&clean, changed: toParse.map { allFiles[$0] }, removed: removedPaths)
            {
                snapshot.entries = clean.entries
                snapshot.basedOn = memory.generation - 1
                snapshot.changedIDs = changed
                memory.clean = clean
                return snapshot
            }

            // The whole way.
            let load = adjustments.apply(to: LoadResult(files: allFiles, errors: walk.errors))
            var entries: [EntryID: Entry] = [:]
            entries.reserveCapacity(load.entries.count)
            for entry in load.entries { entries[entry.id] = entry }
            snapshot.entries = entries
            snapshot.errors = load.errors
            if load.errors.isEmpty {
                var clean = CleanState(entries: entries, idsByFile: [:], declared: [])
                for file in allFiles {
                    clean.idsByFile[file.path] = file.entries.map(\.id)
                    for entry in file.entries { clean.declared.insert(entry.id) }
                }
                memory.clean = clean
            }
            return snapshot
        }
    }

    /// Replaces the entries of `changed` and `removed` files in `clean`; returns the ids that may
    /// differ, or nil when the result could have a problem (a duplicate id, an override that fails
    /// or names no entry), which only the whole way reports properly.
    private func incrementalUpdate(_ clean: inout CleanState, changed: [RegistryFile], removed: [String]) -> Set<EntryID>? {
        var touched = Set<EntryID>()
        for path in removed + changed.map(\.path) {
            for id in clean.idsByFile.removeValue(forKey: path) ?? [] {
                clean.entries[id] = nil
                clean.declared.remove(id)
                touched.insert(id)
            }
        }
        for file in changed {
            clean.idsByFile[file.path] = file.entries.map(\.id)
            for var entry in file.entries {
                guard clean.declared.insert(entry.id).inserted else { return nil }  // a duplicate id
                if adjustments.isDisabled(entry.id) { continue }
                for override in adjustments.overrides(for: entry.id) {
                    do { try override.apply(to: &entry) } catch { return nil }
                }
                clean.entries[entry.id] = entry
                touched.insert(entry.id)
            }
        }
        for override in adjustments.overrides where clean.entries[override.id] == nil { return nil }
        return touched
    }
}

extension RegistryFolder {
    static func wallClockNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}
