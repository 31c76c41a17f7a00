import ArgumentParser
import Core
import HTTPService
import Registry

#if canImport(Glibc)
import Glibc
#endif

/// The options every client command shares.
struct ClientOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "The state folder of the host to talk to. Default: $ROOST_STATE, or .roost.", valueName: "dir"))
    var state: String?

    @Flag(name: .long, help: "Machine output: JSON.")
    var json = false

    var statePath: String { state ?? ProcessEnvironment.value("ROOST_STATE") ?? ".roost" }
}

/// Talks to a running host over its admin socket (`<state>/admin.sock`, HTTP/1.1, JSON).
struct AdminClient {
    let statePath: String
    var socketPath: String { statePath + "/admin.sock" }

    /// An answer: the status and the JSON body.
    struct Answer {
        let status: Int
        let body: JSON
        var isSuccess: Bool { (200..<300).contains(status) }
        /// The error message of a failed answer.
        var errorMessage: String {
            body["error"]?["message"]?.stringValue ?? "the host answered \(status)"
        }
    }

    /// Why a command could not talk to the host.
    enum Failure: Error {
        /// No host listens on the socket: nothing there, or a stale socket.
        case noHost(String)
        case broken(String)
    }

    /// Runs `body` with a loop for the client's sockets, then shuts the loop down.
    static func withLoop<T>(_ body: (EventLoop) async throws -> T) async throws -> T {
        let loop = EventLoop(name: "roost-client")
        do {
            let result = try await body(loop)
            await loop.shutdownGracefully()
            return result
        } catch {
            await loop.shutdownGracefully()
            throw error
        }
    }

    private func connect(on loop: EventLoop) async throws -> StreamChannel {
        do {
            return try await StreamChannel.connect(on: loop, unixPath: socketPath)
        } catch let error as UVError where [-ENOENT, -ECONNREFUSED, -ENOTDIR].contains(error.code) {
            throw Failure.noHost("no host is running with state folder '\(statePath)' (no one listens on \(socketPath))")
        } catch {
            throw Failure.broken("cannot connect to \(socketPath): \(error)")
        }
    }

    /// Sends one request and reads the whole JSON answer.
    func send(_ method: String, _ target: String, body: JSON? = nil) async throws -> Answer {
        try await Self.withLoop { loop in
            let channel = try await connect(on: loop)
            defer { Task { await channel.close() } }
            var headers: HTTPHeaders = ["Host": "roost", "Connection": "close"]
            var bytes: [UInt8] = []
            if let body {
                bytes = Array(body.encoded().utf8)
                headers.add("Content-Type", "application/json")
            }
            let request = HTTPRequest(method: method, target: target, headers: headers, body: bytes)
            let response: HTTPResponse
            do {
                response = try await HTTPClient.send(request, over: channel)
            } catch {
                throw Failure.broken("the host at \(socketPath) did not answer: \(error)")
            }
            let json = (try? JSON.parse(bytes: response.bodyBytes)) ?? .null
            return Answer(status: response.status, body: json)
        }
    }

    /// Sends one request with a JSON body (`bytes`, none when empty) and hands over the answer's
    /// head, then its body chunk by chunk as it comes; returns the status.
    func stream(_ method: String, _ target: String, body bytes: [UInt8], head: (HTTPResponseHead) -> Void,
                each: ([UInt8]) -> Void) async throws -> Int {
        try await Self.withLoop { loop in
            let channel = try await connect(on: loop)
            var headers: HTTPHeaders = ["Host": "roost", "Connection": "close"]
            if !bytes.isEmpty { headers.add("Content-Type", "application/json") }
            let request = HTTPRequest(method: method, target: target, headers: headers, body: bytes)
            do {
                let response = try await HTTPClient.stream(request, over: channel)
                head(response.head)
                for try await chunk in response.body { each(chunk) }
                await channel.close()
                return response.head.status
            } catch {
                await channel.close()
                throw Failure.broken("the host at \(socketPath) did not answer: \(error)")
            }
        }
    }

    /// Opens a Server-Sent Events stream and calls `each` for every event until the host closes it.
    /// `opened` runs once the host has answered: from then on, no event is missed.
    func events(_ target: String, opened: () -> Void, each: (ServerSentEvent) -> Void) async throws {
        try await Self.withLoop { loop in
            let channel = try await connect(on: loop)
            let request = HTTPRequest(method: "GET", target: target, headers: ["Host": "roost", "Accept": "text/event-stream"])
            let response = try await HTTPClient.stream(request, over: channel)
            guard response.head.status == 200 else {
                var body: [UInt8] = []
                for try await chunk in response.body { body += chunk }
                let json = (try? JSON.parse(bytes: body)) ?? .null
                throw Failure.broken(json["error"]?["message"]?.stringValue ?? "the host answered \(response.head.status)")
            }
            opened()
            var parser = SSEParser()
            for try await chunk in response.body {
                for event in parser.feed(chunk) { each(event) }
            }
            await channel.close()
        }
    }
}

/// Runs a client command body, turning failures into one line and the right exit code:
/// 2 when no host runs, 1 for anything else.
func runClient(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let failure as AdminClient.Failure {
        switch failure {
        case .noHost(let message):
            printError("roost: \(message)")
            throw HostExit(code: 2)
        case .broken(let message):
            printError("roost: \(message)")
            throw HostExit(code: 1)
        }
    }
}

/// Percent-encodes a query or path value.
func urlEncoded(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
            UInt8(ascii: "~"), UInt8(ascii: ":"), UInt8(ascii: "*"):
            out.unicodeScalars.append(UnicodeScalar(byte))
        default:
            out += "%" + String(byte, radix: 16, uppercase: true).leftPadded(to: 2)
        }
    }
    return out
}

extension String {
    func rightPadded(to width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

/// Seconds since 1970 as `2026-11-22T04:35:09Z`.
func isoTime(_ seconds: Double) -> String {
    var time = time_t(seconds)
    var parts = tm()
    gmtime_r(&time, &parts)
    func two(_ v: Int32) -> String { String(v).leftPadded(to: 2) }
    return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday))T"
        + "\(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec))Z"
}

/// Rows as aligned columns, the header first.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows { for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) } }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { i, cell in i == cells.count - 1 ? cell : cell.rightPadded(to: widths[i]) }
            .joined(separator: "  ")
    }
    print(line(header))
    for row in rows { print(line(row)) }
}

extension JSON {
    /// Indented JSON with sorted keys, for people.
    func pretty(indent: String = "") -> String {
        switch self {
        case .array(let items) where !items.isEmpty:
            let inner = indent + "  "
            return "[\n" + items.map { inner + $0.pretty(indent: inner) }.joined(separator: ",\n") + "\n\(indent)]"
        case .object(let members) where !members.isEmpty:
            let inner = indent + "  "
            return "{\n" + members.keys.sorted().map { key in
                inner + JSON.string(key).encoded() + ": " + members[key]!.pretty(indent: inner)
            }.joined(separator: ",\n") + "\n\(indent)}"
        default:
            return encoded()
        }
    }

    /// A short text for a value in a table: strings bare, the rest as JSON.
    var brief: String { stringValue ?? encoded() }
}
