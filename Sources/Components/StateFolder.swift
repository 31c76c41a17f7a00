#if canImport(Glibc)
import Glibc
#endif

/// The host's state folder (`.roost/` by default): created on first use, and locked so that two
/// hosts never share one.
///
/// `prepare` creates what is missing (the folder, `run/`), and on failure removes exactly what it
/// created, so a failed start leaves nothing half-made. The lock is an `flock` on `run/host.lock`,
/// held for the life of the process (the kernel drops it if the host dies, even by SIGKILL).
public final class StateFolder: Sendable {
    public let path: String
    private let lockFD: Int32

    private init(path: String, lockFD: Int32) {
        self.path = path
        self.lockFD = lockFD
    }

    deinit { close(lockFD) }

    public var runPath: String { path + "/run" }

    public static func prepare(_ path: String) throws(HostError) -> StateFolder {
        var created: [String] = []
        func undo() { for dir in created.reversed() { rmdir(dir) } }
        do {
            try makeDirectories(path, for: path, created: &created)
            try makeDirectories(path + "/run", for: path, created: &created)
        } catch {
            undo()
            throw error
        }
        let lockPath = path + "/run/host.lock"
        let fd = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            undo()
            throw HostError(.badInput, "state folder '\(path)': cannot open \(lockPath): \(reason)")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var holder = [UInt8](repeating: 0, count: 32)
            let n = read(fd, &holder, holder.count)
            close(fd)
            let pid = n > 0 ? String(decoding: holder[..<n], as: UTF8.self).trimmingWhitespace : "?"
            throw HostError(.badInput, "state folder '\(path)' is in use by another roost host (pid \(pid))")
        }
        ftruncate(fd, 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return StateFolder(path: path, lockFD: fd)
    }

    /// `mkdir -p`, recording each directory it made.
    private static func makeDirectories(_ path: String, for top: String, created: inout [String]) throws(HostError) {
        var info = stat()
        if stat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) == S_IFDIR else {
                throw HostError(.badInput, "state folder '\(top)': '\(path)' exists and is not a directory")
            }
            guard access(path, R_OK | W_OK | X_OK) == 0 else {
                throw HostError(.badInput, "state folder '\(top)': '\(path)' is not writable: \(String(cString: strerror(errno)))")
            }
            return
        }
        let parent = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        if !parent.isEmpty, parent != path { try makeDirectories(parent, for: top, created: &created) }
        if mkdir(path, 0o700) == 0 {
            created.append(path)
        } else if errno != EEXIST {  // EEXIST: made meanwhile by someone else, so not ours to remove
            let reason = String(cString: strerror(errno))
            throw HostError(.badInput, "state folder '\(top)' cannot be created: mkdir '\(path)': \(reason)")
        }
    }
}

extension String {
    var trimmingWhitespace: String {
        String(drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
    }
}
