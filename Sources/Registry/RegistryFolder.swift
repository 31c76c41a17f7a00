import Dispatch

#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A registry folder read again and again (at boot, on every file change, on SIGHUP), re-parsing
/// only the files that changed since the last read.
///
/// A file counts as unchanged while its device, inode, size and nanosecond modification and
/// status-change times stay the same (see `FileSignature`); the folder is walked anew each time,
/// so added, removed and renamed files and folders are always seen. Safe to call from any thread;
/// concurrent reads are serialised. Each read blocks on the file system: keep it off the loop.
public final class RegistryFolder: Sendable {
    public let root: String

    /// What one read found.
    public struct Snapshot: Sendable {
        public var load: LoadResult
        /// Every folder under the root that was read, as full paths, the root first.
        public var folders: [String]
        /// How many files were parsed for this read (the rest came from the cache).
        public var parsedFiles: Int
        public var totalFiles: Int
    }

    private struct Cached {
        let signature: FileSignature
        let file: RegistryFile
        /// Wall-clock time (ns since 1970) when the read that parsed the file began.
        let readAt: Int64
    }

    /// File times come from a coarse kernel clock (a tick of up to 10 ms), so two writes within
    /// one tick leave the same times. A cached parse is trusted only when the file's times are
    /// older than the read that made it by more than this margin ("racy" files are parsed again,
    /// the way git treats racily clean index entries).
    public let racyMargin: Duration
    private let racyMarginNanoseconds: Int64

    private let cache = Mutex<[String: Cached]>([:])

    public init(root: String, racyMargin: Duration = .milliseconds(50)) {
        self.racyMargin = racyMargin
        racyMarginNanoseconds = racyMargin.components.seconds * 1_000_000_000
            + racyMargin.components.attoseconds / 1_000_000_000
        var trimmed = root
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.root = trimmed
    }

    /// Reads the folder: every entry and every problem, as `RegistryLoader.load` would report them.
    public func read() -> Snapshot {
        cache.withLock { cache in
            let readAt = RegistryFolder.wallClockNanoseconds()
            var walk = FolderWalk(root: root)
            walk.run()
            let found = walk.files.sorted { $0.path < $1.path }
            var files = [RegistryFile?](repeating: nil, count: found.count)
            var toParse: [Int] = []
            for (i, item) in found.enumerated() {
                if let signature = item.signature, let cached = cache[item.path], cached.signature == signature,
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
                    let parsedAt = parsedNow[i] ? readAt : cache[item.path]?.readAt ?? readAt
                    next[item.path] = Cached(signature: signature, file: file, readAt: parsedAt)
                }
            }
            cache = next
            return Snapshot(
                load: LoadResult(files: files.map { $0! }, errors: walk.errors),
                folders: walk.folders.map { $0.isEmpty ? root : root + "/" + $0 },
                parsedFiles: toParse.count, totalFiles: found.count)
        }
    }
}

extension RegistryFolder {
    static func wallClockNanoseconds() -> Int64 {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Int64(now.tv_sec) * 1_000_000_000 + Int64(now.tv_nsec)
    }
}
