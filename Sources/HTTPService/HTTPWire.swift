#if canImport(Glibc)
import Glibc
#endif

/// How messages are written on the wire: status and request lines, headers, chunks, dates.
enum HTTPWire {
    static let crlf: [UInt8] = [13, 10]
    /// The end of a chunked body: the zero-size chunk and no trailers.
    static let lastChunk: [UInt8] = Array("0\r\n\r\n".utf8)
    static let continueResponse: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)

    /// A status line and headers, ending with the blank line.
    static func responseHead(status: Int, reason: String, headers: HTTPHeaders) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out += "HTTP/1.1 \(status) ".utf8
        // A reason is free text, but CR or LF in it would end the line early.
        out += reason.utf8.filter { $0 != 13 && $0 != 10 && $0 != 0 }
        out += crlf
        append(headers, to: &out)
        return out
    }

    /// A request line and headers, ending with the blank line.
    static func requestHead(method: String, target: String, headers: HTTPHeaders) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        out += "\(method) \(target) HTTP/1.1\r\n".utf8
        append(headers, to: &out)
        return out
    }

    /// Writes every valid field, then the blank line. A field whose name is not a token or whose
    /// value holds CR, LF or NUL is left out: written, it could start a header or a message of
    /// the peer's choosing (response splitting).
    static func append(_ headers: HTTPHeaders, to out: inout [UInt8]) {
        for field in headers.fields where isToken(field.name) && isFieldValue(field.value) {
            out += field.name.utf8
            out += [UInt8(ascii: ":"), UInt8(ascii: " ")]
            out += field.value.utf8
            out += crlf
        }
        out += crlf
    }

    /// One chunk of a chunked body: size in hex, the bytes, CRLF.
    static func chunk(_ bytes: [UInt8]) -> [UInt8] {
        var out = Array(String(bytes.count, radix: 16).utf8)
        out.reserveCapacity(out.count + bytes.count + 4)
        out += crlf
        out += bytes
        out += crlf
        return out
    }

    static func isToken(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                 UInt8(ascii: "0")...UInt8(ascii: "9"):
                true
            default:
                "!#$%&'*+-.^_`|~".utf8.contains(byte)
            }
        }
    }

    static func isFieldValue(_ text: String) -> Bool {
        !text.utf8.contains { $0 == 13 || $0 == 10 || $0 == 0 }
    }

    /// Now as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the form RFC 9110 requires.
    static func date(_ seconds: Int) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
        return "\(days[Int(parts.tm_wday)]), \(two(parts.tm_mday)) \(months[Int(parts.tm_mon)]) \(parts.tm_year + 1900) "
            + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) GMT"
    }
}
