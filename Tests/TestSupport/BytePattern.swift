import Core
import Glibc
import HTTPService

/// A byte pattern for moving large bodies through the host and checking them on the other side
/// without keeping them: its period (251, a prime) no pipe or chunk size shares, so a lost,
/// repeated or reordered chunk shows.
public enum BytePattern {
    public static let period = 251
    /// `reference[offset % period ...]` is the pattern from `offset` on, for up to 1 MiB.
    public static let reference: [UInt8] = (0..<(1 << 20) + period).map { UInt8(truncatingIfNeeded: ($0 % period) &* 7 &+ 3) }

    /// `count` bytes (at most 1 MiB) of the pattern from `offset` on.
    public static func block(at offset: Int, count: Int) -> [UInt8] {
        let from = offset % period
        return Array(reference[from..<(from + count)])
    }

    /// Whether `chunk` is the pattern at `offset` (memcmp: byte by byte, 200 MiB would take long
    /// in a debug build).
    public static func matches(_ chunk: [UInt8], at offset: Int) -> Bool {
        var start = 0
        while start < chunk.count {
            let count = min(chunk.count - start, 1 << 20)
            let from = (offset + start) % period
            let same = chunk.withUnsafeBytes { mine in
                reference.withUnsafeBytes { expected in memcmp(mine.baseAddress! + start, expected.baseAddress! + from, count) == 0 }
            }
            if !same { return false }
            start += count
        }
        return true
    }
}

/// A field of /proc/PID/status in bytes (`VmRSS`, `VmHWM`: given there in kB); nil when unknown.
public func processMemory(_ pid: Int32, _ field: String) -> Int? {
    guard let status = readSmallFile("/proc/\(pid)/status") else { return nil }
    for line in status.split(separator: "\n") where line.hasPrefix(field + ":") {
        let number = line.dropFirst(field.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { Int($0) }
        return number.map { $0 * 1024 }
    }
    return nil
}

/// The text of a file of at most 8 KiB (a /proc file, read in one call); nil when it cannot be read.
public func readSmallFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var buffer = [UInt8](repeating: 0, count: 8192)
    let count = read(fd, &buffer, buffer.count)
    guard count > 0 else { return nil }
    return String(decoding: buffer[..<count], as: UTF8.self)
}

/// Sends `total` bytes of the pattern as the body of a POST to `target` over `channel` while it
/// reads the response, which must echo them: the response's status, the body bytes received, and
/// how many chunks did not match the pattern. Nothing is kept but counts.
public func echoPattern(over channel: StreamChannel, target: String, total: Int) async throws
    -> (status: Int, received: Int, mismatches: Int)
{
    try await channel.write(Array("POST \(target) HTTP/1.1\r\nHost: t\r\nContent-Length: \(total)\r\nConnection: close\r\n\r\n".utf8))
    let sender = Task {
        var offset = 0
        while offset < total {
            let count = min(256 * 1024, total - offset)
            try await channel.write(BytePattern.block(at: offset, count: count))
            offset += count
        }
    }
    let parser = HTTPMessageParser(kind: .response, maxBodySize: .max)
    var status = 0, received = 0, mismatches = 0
    reading: while true {
        for part in try parser.next() {
            switch part {
            case .responseHead(let head): status = head.status
            case .body(let chunk):
                if !BytePattern.matches(chunk, at: received) { mismatches += 1 }
                received += chunk.count
            case .end: break reading
            case .requestHead: break
            }
        }
        guard let data = try await channel.read() else { break }
        parser.append(data)
    }
    try await sender.value
    return (status, received, mismatches)
}
