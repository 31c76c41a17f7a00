import Core

#if canImport(Glibc)
import Glibc
#endif

/// What a host that did not stop cleanly left running, found and killed at the next boot.
///
/// The direct child of the host dies with it (PR_SET_PDEATHSIG); its children may not. Every
/// service process carries `ROOST_HOST_TOKEN=<token>` in its environment, a random token of this
/// host run, and the token is written to `run/host-token` before the first service starts and
/// removed once the last one has stopped. A token file found at boot means the host before did
/// not get that far: every process whose environment carries that token is killed. A pid reused
/// by an unrelated process never carries it. (One file per host run, not per process: starting a
/// service writes nothing to disk.)
public struct SurvivorRecord: Sendable {
    public let path: String

    public init(runPath: String) {
        path = runPath + "/host-token"
    }

    /// Records `token` as the running host's (replacing an older record atomically).
    public func begin(token: String) {
        let temporary = path + ".new"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        _ = Array((token + "\n").utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        rename(temporary, path)
    }

    /// Every service has stopped: nothing is left to find.
    public func end() {
        unlink(path)
    }

    /// Kills every process carrying the recorded token and removes the record; returns what was
    /// killed, as (pid, service).
    @discardableResult
    public func killSurvivors() -> [(pid: Int32, service: String)] {
        let token = ProcessTable.read(path).split(separator: "\n").first.map(String.init) ?? ""
        unlink(path)
        guard !token.isEmpty else { return [] }
        let mark = "ROOST_HOST_TOKEN=" + token
        var killed: [(Int32, String)] = []
        for pid in ProcessTable.allPIDs() where pid != getpid() {
            let environment = ProcessTable.environment(of: pid)
            guard environment.contains(mark) else { continue }
            kill(pid, SIGKILL)
            let service = environment.first { $0.hasPrefix("ROOST_SERVICE=") }.map { String($0.dropFirst(14)) }
            killed.append((pid, service ?? "?"))
        }
        return killed
    }
}

/// Reads of /proc: which processes exist, their groups, environments and command lines. Each
/// call reads a file per process: keep it off the loop thread.
public enum ProcessTable {
    static func allPIDs() -> [Int32] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var pids: [Int32] = []
        while let item = readdir(dir) {
            let name = withUnsafePointer(to: &item.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if let pid = Int32(name) { pids.append(pid) }
        }
        return pids
    }

    static func read(_ path: String) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "" }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { break }
            bytes += chunk[0..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The process group id (field 5 of /proc/PID/stat), for listing what runs in a service's
    /// group; nil for a zombie (dead, waiting to be reaped by whoever inherited it), which runs
    /// nothing.
    static func group(of pid: Int32) -> Int32? {
        let stat = read("/proc/\(pid)/stat")
        // The command name (field 2) is in parentheses and may hold spaces: count after it.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2, fields[0] != "Z", fields[0] != "X" else { return nil }
        return Int32(fields[2])
    }

    static func environment(of pid: Int32) -> [String] {
        read("/proc/\(pid)/environ").split(separator: "\0").map(String.init)
    }

    /// The processes in process group `pgid`, with their command lines. With `startedBy`, only
    /// those started at or before that time (clock ticks since boot, `now()`): once a group is
    /// empty its id may be reused at once by an unrelated new group (pid_max is small on some
    /// machines), and a look at the old group after its end must not see the new one.
    public static func members(of pgid: Int32, startedBy ticks: UInt64? = nil) -> [(pid: Int32, command: String)] {
        allPIDs().compactMap { pid in
            guard group(of: pid) == pgid else { return nil }
            if let ticks, let started = startTicks(of: pid), started > ticks { return nil }
            let command = read("/proc/\(pid)/cmdline").split(separator: "\0").joined(separator: " ")
            return (pid, command)
        }.sorted { $0.pid < $1.pid }
    }

    /// When `pid` started (field 22 of /proc/PID/stat, clock ticks since boot).
    static func startTicks(of pid: Int32) -> UInt64? {
        let stat = read("/proc/\(pid)/stat")
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        return fields.count > 19 ? UInt64(fields[19]) : nil
    }

    /// Now, in the clock ticks of /proc's start times (rounded up).
    public static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_BOOTTIME, &time)
        let hz = UInt64(sysconf(Int32(_SC_CLK_TCK)))
        return UInt64(time.tv_sec) * hz + (UInt64(time.tv_nsec) * hz + 999_999_999) / 1_000_000_000
    }
}
