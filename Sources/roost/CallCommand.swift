import ArgumentParser
import Core
import HTTPService

#if canImport(Glibc)
import Glibc
#endif

/// `roost call ID [JSON]`: runs a function of the running host with a JSON body.
struct CallCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "call", abstract: "Run a swiftlet.function of the running host with a JSON body and print its output.",
        discussion: """
            The function runs as for an HTTP request: a POST of the JSON (none when JSON is not \
            given; '-' reads it from stdin), with its concurrency limit and timeout. Its response \
            body goes to stdout as it comes. Exit 0 for a 2xx or 3xx status, 1 otherwise (the \
            status is printed on stderr), 2 when no host runs.
            """)

    @Argument(help: ArgumentHelp("The function, namespace:name.", valueName: "id"))
    var id: String

    @Argument(help: ArgumentHelp("The request body: JSON, or - for stdin.", valueName: "json"))
    var body: String?

    @Flag(name: .long, help: "Print the status line and headers before the body.")
    var include = false

    @Option(name: .long, help: ArgumentHelp("The state folder of the host. Default: $ROOST_STATE, or .roost.", valueName: "dir"))
    var state: String?

    func run() async throws {
        var bytes: [UInt8] = []
        if let body {
            bytes = body == "-" ? readStandardInput() : Array(body.utf8)
            do {
                _ = try JSON.parse(bytes: bytes)
            } catch {
                printError("roost: the body is not JSON: \(error)")
                throw HostExit(code: 1)
            }
        }
        let client = AdminClient(statePath: state ?? ProcessEnvironment.value("ROOST_STATE") ?? ".roost")
        var status = 0
        try await runClient {
            status = try await client.stream("POST", "/v1/functions/\(urlEncoded(id))/call", body: bytes) { head in
                if include {
                    var text = "HTTP/1.1 \(head.status) \(head.reason)\r\n"
                    for (name, value) in head.headers { text += "\(name): \(value)\r\n" }
                    writeOut(Array((text + "\r\n").utf8))
                }
            } each: { chunk in
                writeOut(chunk)
            }
        }
        if !(200..<400).contains(status) {
            printError("roost: \(id) answered \(status)")
            throw HostExit(code: 1)
        }
    }

    private func readStandardInput() -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = read(0, &buffer, buffer.count)
            if count <= 0 { break }
            out += buffer[..<count]
        }
        return out
    }
}

/// Writes all of `bytes` to stdout.
private func writeOut(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let count = write(1, raw.baseAddress! + offset, raw.count - offset)
            if count <= 0 { if errno == EINTR { continue }; return }
            offset += count
        }
    }
}
