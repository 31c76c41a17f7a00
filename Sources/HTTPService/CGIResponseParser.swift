/// Reads the head of a CGI program's output (RFC 3875 §6): header lines up to an empty line, each
/// ended by LF or CRLF. Fed the output as it arrives; once the head is complete it says what the
/// response is and hands back the body bytes that came with it (the rest is streamed as is).
///
/// - `Status: 404 Not Found` sets the status (three digits, 200–599: an interim 1xx would leave
///   the client waiting for a final answer that never comes); without it a response is 200, or
///   302 when it has a `Location` that is a URL.
/// - `Location: /path` with no `Status` is a local redirect: the server answers as if the client
///   had asked for that path (the output's body is ignored).
/// - A head with no field at all, a line without a colon, a field name that is not a token, or a
///   head over `maxHeadSize` is invalid: the gateway answers 502.
/// - Other fields pass through to the client, except the hop-by-hop and framing ones
///   (`Connection`, `Keep-Alive`, `Transfer-Encoding`, `Content-Length`): the server frames the
///   body itself. A `Content-Length` the program declares is given apart (`length`), for the
///   server to frame the body with; one that is not a decimal number, or repeated with another
///   value, makes the head invalid.
public struct CGIResponseParser: Sendable {
    public enum Outcome: Sendable, Equatable {
        case needMore
        /// `length`: the body's length as the program declared it, if it did.
        case response(status: Int, reason: String, headers: HTTPHeaders, body: [UInt8], length: Int?)
        case localRedirect(path: String)
        case invalid(String)
    }

    public let maxHeadSize: Int
    private var buffer: [UInt8] = []
    private var finished = false

    public init(maxHeadSize: Int = 64 * 1024) {
        self.maxHeadSize = maxHeadSize
    }

    /// Feeds output; once it returns something other than `needMore`, it is done.
    public mutating func feed(_ bytes: [UInt8]) -> Outcome {
        precondition(!finished, "CGIResponseParser fed after its outcome")
        let searchFrom = max(0, buffer.count - 3)
        buffer.append(contentsOf: bytes)
        guard let (headEnd, bodyStart) = Self.endOfHead(in: buffer, from: searchFrom) else {
            if buffer.count > maxHeadSize {
                finished = true
                return .invalid("the header block is over \(maxHeadSize) bytes")
            }
            return .needMore
        }
        finished = true
        guard headEnd <= maxHeadSize else { return .invalid("the header block is over \(maxHeadSize) bytes") }
        return Self.interpret(Array(buffer[..<headEnd]), body: Array(buffer[bodyStart...]))
    }

    /// The output ended: with the head incomplete, that is invalid.
    public mutating func finish() -> Outcome {
        guard !finished else { return .needMore }
        finished = true
        return .invalid(buffer.isEmpty ? "the program wrote nothing" : "the output ended inside the header block")
    }

    /// Where the head's empty line starts and where the body starts.
    private static func endOfHead(in bytes: [UInt8], from start: Int) -> (Int, Int)? {
        var i = start
        while i < bytes.count {
            if bytes[i] == 10 {
                // A line feed at the very start, or right after another line end, is the empty line.
                if i == 0 { return (0, 1) }
                if bytes[i - 1] == 10 { return (i, i + 1) }
                if bytes[i - 1] == 13, i >= 2, bytes[i - 2] == 10 { return (i - 1, i + 1) }
                if bytes[i - 1] == 13, i == 1 { return (0, 2) }
            }
            i += 1
        }
        return nil
    }

    private static func interpret(_ head: [UInt8], body: [UInt8]) -> Outcome {
        var headers = HTTPHeaders()
        var status: (Int, String)?
        // By bytes: as a Swift string, CR LF would be one character and never split at LF.
        for rawLine in head.split(separator: 10, omittingEmptySubsequences: true) {
            let line = String(decoding: rawLine.last == 13 ? rawLine.dropLast() : rawLine, as: UTF8.self)
            guard let colon = line.firstIndex(of: ":") else { return .invalid("a header line without ':': \(line.prefix(80))") }
            let name = String(line[..<colon])
            guard HTTPWire.isToken(name) else {
                return .invalid("a header name that is not a token: \(name.prefix(80))")
            }
            let value = line[line.index(after: colon)...].trimmingLeadingAndTrailingSpaces()
            guard HTTPWire.isFieldValue(value) else { return .invalid("a header value with a control byte in \(name)") }
            if name.lowercased() == "status" {
                let code = value.prefix(3)
                guard code.count == 3, let number = Int(code), (200...599).contains(number),
                      value.count == 3 || value[value.index(value.startIndex, offsetBy: 3)] == " " else {
                    return .invalid("a bad Status: \(value.prefix(80))")
                }
                let reason = String(value.dropFirst(3)).trimmingLeadingAndTrailingSpaces()
                status = (number, reason.isEmpty ? HTTPResponse.reasonPhrase(for: number) : reason)
                continue
            }
            headers.add(name, value)
        }
        guard status != nil || !headers.isEmpty else { return .invalid("the header block has no field") }
        if status == nil, let location = headers["Location"], location.hasPrefix("/") {
            return .localRedirect(path: location)
        }
        var length: Int?
        for value in headers.values(for: "Content-Length") {
            guard !value.isEmpty, value.utf8.allSatisfy({ (48...57).contains($0) }), let number = Int(value),
                  length == nil || length == number else {
                return .invalid("a bad Content-Length: \(value.prefix(80))")
            }
            length = number
        }
        for name in ["Connection", "Transfer-Encoding", "Content-Length", "Keep-Alive"] { headers.remove(name) }
        let (code, reason) = status ?? (headers["Location"] != nil ? (302, "Found") : (200, "OK"))
        return .response(status: code, reason: reason, headers: headers, body: body, length: length)
    }
}

extension StringProtocol {
    func trimmingLeadingAndTrailingSpaces() -> String {
        var slice = Substring(self)
        while let first = slice.first, first == " " || first == "\t" { slice = slice.dropFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice = slice.dropLast() }
        return String(slice)
    }
}
