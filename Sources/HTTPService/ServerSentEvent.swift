/// One Server-Sent Event (the `text/event-stream` format of the HTML standard).
///
/// `data` is the event's text (lines joined with "\n"); `event` its type (nil means "message");
/// `id` the id this event carried, if any; `retry` the reconnection delay in milliseconds, if given.
public struct ServerSentEvent: Sendable, Hashable {
    public var event: String?
    public var data: String
    public var id: String?
    public var retry: Int?

    public init(event: String? = nil, data: String, id: String? = nil, retry: Int? = nil) {
        self.event = event
        self.data = data
        self.id = id
        self.retry = retry
    }

    /// The event as it goes on the wire: its fields, one `data:` line per line of `data`, and
    /// the blank line that dispatches it. Line breaks in `event` and `id` are dropped (they
    /// would start a new field); `id` also loses NUL, which a reader would refuse.
    public func encoded() -> [UInt8] {
        var out = ""
        if let id { out += "id: \(id.filter { $0 != "\n" && $0 != "\r" && $0 != "\0" })\n" }
        if let event { out += "event: \(event.filter { $0 != "\n" && $0 != "\r" })\n" }
        if let retry, retry >= 0 { out += "retry: \(retry)\n" }
        for line in data.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r" || $0 == "\r\n" }) {
            out += "data: \(line)\n"
        }
        out += "\n"
        return Array(out.utf8)
    }

    /// A comment line: readers ignore it, so it keeps an idle stream (and its proxies) alive.
    public static func comment(_ text: String = "") -> [UInt8] {
        Array(": \(text.filter { $0 != "\n" && $0 != "\r" })\n\n".utf8)
    }
}

/// An incremental reader of `text/event-stream` bytes, as the HTML standard's parser.
///
/// Feed body chunks in order, split anywhere (even between CR and LF or inside a UTF-8
/// sequence); each complete event comes out once its blank line has arrived. A block with no
/// `data` field dispatches nothing, as in a browser. Unknown fields and comments are skipped.
/// `lastEventID` keeps the standard's stream-wide last event id (it survives events without an
/// `id`), while each event's `id` is only the one it carried.
public struct SSEParser: Sendable {
    public private(set) var lastEventID = ""
    private var line: [UInt8] = []
    private var afterCR = false
    private var atStart = true
    private var data: String?
    private var event: String?
    private var id: String?
    private var retry: Int?

    public init() {}

    public mutating func feed(_ bytes: [UInt8]) -> [ServerSentEvent] {
        var events: [ServerSentEvent] = []
        for byte in bytes {
            if afterCR {
                afterCR = false
                if byte == 10 { continue }  // the LF of a CRLF already ended the line
            }
            switch byte {
            case 13:
                afterCR = true
                endLine(into: &events)
            case 10:
                endLine(into: &events)
            default:
                line.append(byte)
            }
        }
        return events
    }

    private mutating func endLine(into events: inout [ServerSentEvent]) {
        var bytes = line[...]
        line.removeAll(keepingCapacity: true)
        if atStart {
            atStart = false
            if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes = bytes.dropFirst(3) }
        }
        if bytes.isEmpty {
            dispatch(into: &events)
            return
        }
        if bytes.first == UInt8(ascii: ":") { return }
        let text = String(decoding: bytes, as: UTF8.self)
        let name: Substring
        var value: Substring = ""
        if let colon = text.firstIndex(of: ":") {
            name = text[..<colon]
            value = text[text.index(after: colon)...]
            if value.first == " " { value = value.dropFirst() }
        } else {
            name = text[...]
        }
        let string = String(value)
        switch name {
        case "data": data = data.map { $0 + "\n" + string } ?? string
        case "event": event = string
        case "id" where !string.contains("\0"):
            id = string
            lastEventID = string
        case "retry":
            if !string.isEmpty, string.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }) { retry = Int(string) }
        default: break
        }
    }

    private mutating func dispatch(into events: inout [ServerSentEvent]) {
        defer {
            data = nil
            event = nil
            id = nil
            retry = nil
        }
        guard let data else { return }
        events.append(ServerSentEvent(event: event.flatMap { $0.isEmpty ? nil : $0 }, data: data, id: id, retry: retry))
    }
}
