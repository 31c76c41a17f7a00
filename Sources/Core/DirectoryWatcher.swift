import CLibUV

#if canImport(Glibc)
import Glibc
#endif

/// A change libuv saw in a watched directory.
public struct FileChange: Sendable, Hashable {
    public enum Kind: Sendable, Hashable { case renamed, changed }
    /// The name of the entry within the directory (not a full path), when the kernel said.
    public let name: String?
    public let kinds: Set<Kind>
}

/// Watches one directory (not its subdirectories: watch each one, as the registry does) and
/// delivers changes in order. inotify is behind it on Linux, so bursts arrive as many events; the
/// consumer debounces.
public actor DirectoryWatcher {
    public nonisolated let loop: EventLoop
    public nonisolated let path: String
    /// The changes, in order; finishes when the watcher is closed or the directory goes away.
    public nonisolated let changes: AsyncStream<FileChange>
    private let continuation: AsyncStream<FileChange>.Continuation
    private var handle: UnsafeMutablePointer<uv_fs_event_t>?
    /// The watched folder's device and inode: the watch follows them, not the path.
    private var identity: (device: UInt64, inode: UInt64)?

    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    private init(loop: EventLoop, path: String) {
        self.loop = loop
        self.path = path
        (changes, continuation) = AsyncStream.makeStream(of: FileChange.self, bufferingPolicy: .bufferingNewest(4096))
    }

    public static func watch(_ path: String, on loop: EventLoop) async throws(UVError) -> DirectoryWatcher {
        let watcher = DirectoryWatcher(loop: loop, path: path)
        try await watcher.start()
        return watcher
    }

    private func start() throws(UVError) {
        if loop.isStopped { continuation.finish(); throw UVError.closed("watch \(path)") }
        identity = Self.identity(of: path)
        let h = LoopHandle.allocate(uv_fs_event_t.self)
        let rc = uv_fs_event_init(loop.uv, h)
        guard rc == 0 else { LoopHandle.free(h); throw UVError(rc, "uv_fs_event_init") }
        LoopHandle.attach(h, owner: self) { [self] in
            assumeIsolated { $0.handle = nil; $0.continuation.finish() }
        }
        handle = h
        let started = uv_fs_event_start(h, { h, filename, events, status in
            let watcher = LoopHandle.owner(of: h!, as: DirectoryWatcher.self)
            let name = filename.map { String(cString: $0) }
            watcher.assumeIsolated { $0.changed(name: name, events: events, status: status) }
        }, path, 0)
        guard started == 0 else {
            close()
            throw UVError(started, "watch \(path)")
        }
    }

    private func changed(name: String?, events: Int32, status: Int32) {
        guard status == 0 else { close(); return }
        // inotify reports the removal (or move) of the watched folder itself as a rename named
        // after the folder; the watch is dead (or follows the moved folder) then, so the sequence
        // ends instead of going quiet. The path may already name a new folder by the time the
        // event is read (`rm -r d && mkdir d`, or another folder renamed into place): only a
        // child of that name makes the event an ordinary one.
        if events & Int32(UV_RENAME.rawValue) != 0 {
            let namesTheFolder = name == Self.lastComponent(of: path) && !Self.exists(path + "/" + (name ?? ""))
            guard let current = Self.identity(of: path), let identity, current == identity, !namesTheFolder else {
                close()
                return
            }
        }
        var kinds = Set<FileChange.Kind>()
        if events & Int32(UV_RENAME.rawValue) != 0 { kinds.insert(.renamed) }
        if events & Int32(UV_CHANGE.rawValue) != 0 { kinds.insert(.changed) }
        continuation.yield(FileChange(name: name, kinds: kinds))
    }

    private static func identity(of path: String) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    private static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    private static func lastComponent(of path: String) -> String {
        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        return trimmed.lastIndex(of: "/").map { String(trimmed[trimmed.index(after: $0)...]) } ?? String(trimmed)
    }

    public func close() {
        if let handle { LoopHandle.close(handle) }
    }
}
