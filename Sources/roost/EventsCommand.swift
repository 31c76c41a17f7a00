import ArgumentParser
import Core
import HTTPService

#if canImport(Glibc)
import Glibc
#endif

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Stream the running host's events until interrupted.",
        discussion: """
            Patterns match topics by dot-separated segment: '*' is one segment, '**' any number \
            ('registry.entry.*', 'supervisor.**'). No pattern means every event. One line per \
            event; with --json, one object per line with topic, path, data, time and seq.
            """)

    @Argument(help: ArgumentHelp("Topic patterns to follow.", valueName: "pattern"))
    var patterns: [String] = []

    @OptionGroup var options: ClientOptions

    func validate() throws {
        for pattern in patterns {
            do { _ = try TopicPattern(pattern) } catch { throw ValidationError("\(error)") }
        }
    }

    func run() async throws {
        let query = patterns.map { "pattern=" + urlEncoded($0) }.joined(separator: "&")
        let json = options.json
        try await runClient {
            let following = patterns.isEmpty ? "every event" : patterns.joined(separator: " ")
            try await AdminClient(statePath: options.statePath).events(
                "/v1/events" + (query.isEmpty ? "" : "?" + query),
                opened: { printError("roost: following \(following) (interrupt to stop)") }
            ) { event in
                guard let object = try? JSON.parse(event.data) else { return }
                // Straight to the descriptor, not through stdio's buffer: a pipe reader sees each
                // event when it happens.
                if json {
                    writeLine(object.encoded())
                } else {
                    let time = isoTime(object["time"]?.doubleValue ?? 0)
                    let path = object["path"]?.brief ?? ""
                    writeLine("\(time) \(object["topic"]?.brief ?? "")\(path.isEmpty ? "" : " " + path) \((object["data"] ?? .null).encoded())")
                }
            }
            printError("roost: the host closed the event stream")
        }
    }
}

/// Writes one line to standard output, unbuffered.
func writeLine(_ line: String) {
    var bytes = Array((line + "\n").utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { return }
        bytes = bytes.dropFirst(n)
    }
}
