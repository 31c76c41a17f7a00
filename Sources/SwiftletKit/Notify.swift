#if canImport(Glibc)
import Glibc
#endif

/// The sd_notify protocol from the service's side: tells the supervisor (Roost, or systemd) that
/// the service is ready, what it is doing, and that it is alive.
///
/// Messages go as one datagram to the unix socket named by `NOTIFY_SOCKET`; when that is unset
/// (not supervised, or no `readiness: notify`), every call does nothing and returns false.
public enum Notify {
    /// `READY=1`: the service is ready (Roost then marks it `running`).
    @discardableResult
    public static func ready(status: String? = nil) -> Bool {
        send(["READY=1"] + (status.map { ["STATUS=" + $0] } ?? []))
    }

    /// `STATUS=...`: a line for people, shown by `roost ps`.
    @discardableResult
    public static func status(_ text: String) -> Bool { send(["STATUS=" + text]) }

    /// `WATCHDOG=1`: feeds the watchdog; send more often than `watchdogInterval`.
    @discardableResult
    public static func watchdog() -> Bool { send(["WATCHDOG=1"]) }

    /// The watchdog interval the supervisor expects (`WATCHDOG_USEC`), or nil when there is none.
    public static var watchdogInterval: Duration? {
        guard let text = getenv("WATCHDOG_USEC").map({ String(cString: $0) }), let usec = Int64(text), usec > 0 else {
            return nil
        }
        return .microseconds(usec)
    }

    /// Sends `lines` (`KEY=VALUE`) as one message; false when there is no socket or it failed.
    @discardableResult
    public static func send(_ lines: [String]) -> Bool {
        guard let raw = getenv("NOTIFY_SOCKET") else { return false }
        var path = String(cString: raw)
        guard !path.isEmpty else { return false }
        // systemd's abstract-namespace form: a leading '@' stands for a NUL byte.
        let abstract = path.hasPrefix("@")
        if abstract { path.removeFirst() }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let offset = abstract ? 1 : 0
        guard bytes.count + offset < MemoryLayout.size(ofValue: address.sun_path) else { return false }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.baseAddress!.advanced(by: offset).copyMemory(from: bytes, byteCount: bytes.count)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        let message = Array(lines.joined(separator: "\n").utf8)
        let length = socklen_t(MemoryLayout<sa_family_t>.size + offset + bytes.count + (abstract ? 0 : 1))
        let sent = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { sockaddrPointer in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, sockaddrPointer, length) }
            }
        }
        return sent == message.count
    }
}
