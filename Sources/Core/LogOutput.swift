import Logging
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How log lines look: for people (`text`) or one JSON object a line (`json`).
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json
}

/// A swift-log handler that writes whole lines to a file descriptor (stderr by default).
///
/// Each line goes out in one `write(2)` under a lock, so lines from several threads never mix.
/// Text: `2026-11-22T03:14:15.123Z info  roost: message key=value`.
/// JSON: `{"time":"…","level":"info","label":"roost","message":"…", …metadata}`.
public struct LogOutput: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let format: LogFormat
    private let fd: Int32
    private static let lock = Mutex(())

    public init(label: String, level: Logger.Level, format: LogFormat, fileDescriptor: Int32 = 2) {
        self.label = label
        logLevel = level
        self.format = format
        fd = fileDescriptor
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let level = event.level
        let message = event.message
        let explicit = event.metadata
        var all = metadata
        if let error = event.error { all["error"] = "\(error)" }
        if let provided = metadataProvider?.get() { all.merge(provided) { _, new in new } }
        if let explicit { all.merge(explicit) { _, new in new } }
        let text: String
        switch format {
        case .text:
            var out = "\(LogOutput.timestamp()) \(level.rawValue.padding(to: 8)) \(label): \(message)"
            for key in all.keys.sorted() { out += " \(key)=\(all[key]!)" }
            text = out + "\n"
        case .json:
            var object: [String: JSON] = [
                "time": .string(LogOutput.timestamp()), "level": .string(level.rawValue),
                "label": .string(label), "message": .string(message.description),
            ]
            for (key, value) in all { object[key] = LogOutput.json(value) }
            text = JSON.object(object).encoded() + "\n"
        }
        LogOutput.lock.withLock { _ in
            var bytes = Array(text.utf8)
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeMutableBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
                if n <= 0 { if n < 0 && errno == EINTR { continue } else { break } }
                offset += n
            }
            bytes.removeAll()
        }
    }

    private static func json(_ value: Logger.Metadata.Value) -> JSON {
        switch value {
        case .string(let s): .string(s)
        case .stringConvertible(let c): .string(c.description)
        case .array(let items): .array(items.map(json))
        case .dictionary(let d): .object(d.mapValues(json))
        }
    }

    /// UTC time with milliseconds, RFC 3339.
    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var parts = tm()
        var seconds = now.tv_sec
        gmtime_r(&seconds, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + "\(pad(Int32(now.tv_nsec / 1_000_000), 3))Z"
    }
}

extension String {
    fileprivate func padding(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
