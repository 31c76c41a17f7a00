import Core

/// One line a service wrote.
public struct LogLine: Sendable, Hashable {
    public enum Stream: String, Sendable { case stdout, stderr }
    public let time: Double
    public let stream: Stream
    public let pid: Int32
    public let text: String
    /// The line was longer than the bound and goes on in the next one.
    public let continued: Bool

    public var json: JSON {
        ["time": .double(time), "stream": .string(stream.rawValue), "pid": .int(Int64(pid)), "text": .string(text),
         "continued": .bool(continued)]
    }
}

/// Splits a byte stream into lines of at most `bound` bytes: a longer line comes out in pieces
/// (each but the last marked continued), so a service that never writes a newline cannot grow
/// memory, and no byte is lost.
struct LineSplitter {
    let bound: Int
    private var pending: [UInt8] = []

    init(bound: Int) { self.bound = bound }

    /// The complete lines in `bytes` (with what was pending), as (text, continued).
    mutating func feed(_ bytes: [UInt8]) -> [(String, Bool)] {
        var out: [(String, Bool)] = []
        for byte in bytes {
            if byte == 10 {
                out.append((Self.text(pending), false))
                pending.removeAll(keepingCapacity: true)
            } else {
                pending.append(byte)
                if pending.count == bound {
                    out.append((Self.text(pending), true))
                    pending.removeAll(keepingCapacity: true)
                }
            }
        }
        return out
    }

    /// What is left at the end of the stream.
    mutating func finish() -> [(String, Bool)] {
        defer { pending.removeAll() }
        return pending.isEmpty ? [] : [(Self.text(pending), false)]
    }

    private static func text(_ bytes: [UInt8]) -> String {
        var bytes = bytes
        if bytes.last == 13 { bytes.removeLast() }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The newest lines of one service, for `roost logs`.
struct LogRing {
    let capacity: Int
    private(set) var lines: [LogLine] = []
    private var start = 0

    init(capacity: Int) { self.capacity = capacity }

    mutating func append(_ line: LogLine) {
        if lines.count < capacity {
            lines.append(line)
        } else {
            lines[start] = line
            start = (start + 1) % capacity
        }
    }

    /// The last `count` lines, oldest first.
    func last(_ count: Int) -> [LogLine] {
        let ordered = Array(lines[start...] + lines[..<start])
        return Array(ordered.suffix(max(0, count)))
    }
}
