import Core

#if canImport(Glibc)
import Glibc
#endif

/// The process groups of running services, recorded in the state folder (`run/groups/<pgid>`)
/// so that a host killed with SIGKILL can kill what survived it at its next boot.
///
/// The direct child dies with the host (PR_SET_PDEATHSIG); its children may not. Each service
/// process carries `ROOST_HOST_TOKEN=<token>` in its environment, written in the record too, and
/// a process is killed at boot only when it is in the recorded session and carries that token:
/// a pid reused by an unrelated process is never touched.
public struct GroupRecords: Sendable {
    public let folder: String

    public init(runPath: String) {
        folder = runPath + "/groups"
    }

    public func prepare() {
        mkdir(folder, 0o700)
    }

    public func record(pgid: Int32, service: String, token: String) {
        let text = "\(token)\n\(service)\n"
        let path = folder + "/\(pgid)"
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        _ = Array(text.utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
    }

    public func remove(pgid: Int32) {
        unlink(folder + "/\(pgid)")
    }

    /// Kills every process left from recorded groups (see the type's contract) and empties the
    /// records; returns what was killed, as (pid, service).
    @discardableResult
    public func killSurvivors() -> [(pid: Int32, service: String)] {
        var killed: [(Int32, String)] = []
        guard let dir = opendir(folder) else { return [] }
        var records: [(Int32, String, String)] = []
        while let item = readdir(dir) {
            let name = withUnsafePointer(to: &item.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            guard let pgid = Int32(name) else { continue }
            let lines = Self.read(folder + "/" + name).split(separator: "\n").map(String.init)
            if lines.count >= 2 { records.append((pgid, lines[0], lines[1])) }
            unlink(folder + "/" + name)
        }
        closedir(dir)
        guard !records.isEmpty else { return [] }
        for pid in Self.allPIDs() {
            guard let session = Self.session(of: pid) else { continue }
            for (pgid, token, service) in records where session == pgid {
                if Self.environment(of: pid).contains("ROOST_HOST_TOKEN=" + token) {
                    kill(pid, SIGKILL)
                    killed.append((pid, service))
                }
            }
        }
        return killed
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

    /// The session id (field 6 of /proc/PID/stat).
    static func session(of pid: Int32) -> Int32? {
        let stat = read("/proc/\(pid)/stat")
        // The command name (field 2) is in parentheses and may hold spaces: count after it.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // After ")": state(3) ppid(4) pgrp(5) session(6).
        return fields.count > 3 ? Int32(fields[3]) : nil
    }

    /// The process group id (field 5), for listing what runs in a service's group; nil for a
    /// zombie (dead, waiting to be reaped by whoever inherited it), which runs nothing.
    static func group(of pid: Int32) -> Int32? {
        let stat = read("/proc/\(pid)/stat")
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 2, fields[0] != "Z", fields[0] != "X" else { return nil }
        return Int32(fields[2])
    }

    static func environment(of pid: Int32) -> [String] {
        read("/proc/\(pid)/environ").split(separator: "\0").map(String.init)
    }

    /// The processes in process group `pgid`, with their command lines.
    public static func members(of pgid: Int32) -> [(pid: Int32, command: String)] {
        allPIDs().compactMap { pid in
            guard group(of: pid) == pgid else { return nil }
            let command = read("/proc/\(pid)/cmdline").split(separator: "\0").joined(separator: " ")
            return (pid, command)
        }.sorted { $0.pid < $1.pid }
    }
}
