import ArgumentParser
import Core
import Registry

#if canImport(Glibc)
import Glibc
#endif

struct PSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ps", abstract: "List the running host's services: state, pid, uptime, restarts, last exit.")

    @Flag(name: .long, help: "Show each service's processes (its whole process group) under it.")
    var tree = false

    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient {
            let answer = try await AdminClient(statePath: options.statePath).send("GET", "/v1/services" + (tree ? "?tree=1" : ""))
            try fail(unless: answer)
            if options.json { print(answer.body.encoded()); return }
            let services = answer.body["services"]?.arrayValue ?? []
            if services.isEmpty { print("no services"); return }
            if tree {
                print("supervisor")
                for (i, service) in services.enumerated() {
                    let last = i == services.count - 1
                    print((last ? "└─ " : "├─ ") + "\(service["id"]?.brief ?? "")  \(service["state"]?.brief ?? "")"
                        + (service["pid"].map { "  pid \($0.brief)" } ?? "") + (service["process"].map { "  \($0.brief)" } ?? ""))
                    let processes = service["processes"]?.arrayValue ?? []
                    for (j, process) in processes.enumerated() {
                        print((last ? "   " : "│  ") + (j == processes.count - 1 ? "└─ " : "├─ ")
                            + "\(process["pid"]?.brief ?? "") \(process["command"]?.brief ?? "")")
                    }
                }
                return
            }
            printTable(["SERVICE", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"], services.map { s in
                [s["id"]?.brief ?? "", s["state"]?.brief ?? "", s["pid"]?.brief ?? "-",
                 s["uptime"]?.doubleValue.map(uptimeText) ?? "-", s["restarts"]?.brief ?? "0", s["last_exit"]?.brief ?? "-"]
            })
        }
    }
}

/// `3s`, `4m12s`, `2h05m`, `3d04h`.
func uptimeText(_ seconds: Double) -> String {
    let s = Int(seconds)
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)m\(String(s % 60).leftPadded(to: 2))s" }
    if s < 86400 { return "\(s / 3600)h\(String(s % 3600 / 60).leftPadded(to: 2))m" }
    return "\(s / 86400)d\(String(s % 86400 / 3600).leftPadded(to: 2))h"
}

/// start, stop and restart: one service, by id; each prints the state it reached.
protocol ServiceActionCommand: AsyncParsableCommand {
    /// The admin API's action: start, stop or restart.
    static var action: String { get }
    var id: String { get }
    var options: ClientOptions { get }
}

extension ServiceActionCommand {
    func validate() throws {
        if EntryID(id) == nil { throw ValidationError("'\(id)' is not an entry id (namespace:name)") }
    }

    func run() async throws {
        try await runClient {
            let answer = try await AdminClient(statePath: options.statePath)
                .send("POST", "/v1/services/\(urlEncoded(id))/\(Self.action)")
            try fail(unless: answer)
            if options.json { print(answer.body.encoded()); return }
            let service = answer.body["service"] ?? .null
            print("\(service["id"]?.brief ?? id): \(service["state"]?.brief ?? "?")"
                + (service["pid"].map { " (pid \($0.brief))" } ?? "")
                + (service["last_exit"].map { "; last exit: \($0.brief)" } ?? ""))
        }
    }
}

struct StartCommand: ServiceActionCommand {
    static let action = "start"
    static let configuration = CommandConfiguration(
        commandName: "start", abstract: "Start a service (also one that failed); waits until it runs or ends.")
    @Argument(help: ArgumentHelp("The service id, namespace:name.", valueName: "id")) var id: String
    @OptionGroup var options: ClientOptions
}

struct StopCommand: ServiceActionCommand {
    static let action = "stop"
    static let configuration = CommandConfiguration(
        commandName: "stop", abstract: "Stop a service (its stop signal to the whole group, then SIGKILL); waits until it is gone.")
    @Argument(help: ArgumentHelp("The service id, namespace:name.", valueName: "id")) var id: String
    @OptionGroup var options: ClientOptions
}

struct RestartCommand: ServiceActionCommand {
    static let action = "restart"
    static let configuration = CommandConfiguration(commandName: "restart", abstract: "Stop a service, then start it again.")
    @Argument(help: ArgumentHelp("The service id, namespace:name.", valueName: "id")) var id: String
    @OptionGroup var options: ClientOptions
}

struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "logs", abstract: "Print a service's latest output lines; -f keeps following.")

    @Argument(help: ArgumentHelp("The service id, namespace:name.", valueName: "id")) var id: String

    @Option(name: .short, help: ArgumentHelp("How many of the latest lines.", valueName: "n"))
    var n: Int = 100

    @Flag(name: .short, help: "Follow: print new lines as they come, until interrupted.")
    var f = false

    @OptionGroup var options: ClientOptions

    func validate() throws {
        if EntryID(id) == nil { throw ValidationError("'\(id)' is not an entry id (namespace:name)") }
        if n < 0 { throw ValidationError("-n must not be negative") }
    }

    func run() async throws {
        let json = options.json
        func show(_ line: JSON) {
            if json { writeLine(line.encoded()); return }
            let time = isoTime(line["time"]?.doubleValue ?? 0)
            let stream = line["stream"]?.brief == "stderr" ? " !" : ""
            writeLine("\(time) [\(line["pid"]?.brief ?? "")]\(stream) \(line["text"]?.brief ?? "")")
        }
        try await runClient {
            let client = AdminClient(statePath: options.statePath)
            let target = "/v1/services/\(urlEncoded(id))/logs?n=\(n)"
            if f {
                try await client.events(target + "&follow=1", opened: {}) { event in
                    if let line = try? JSON.parse(event.data) { show(line) }
                }
                return
            }
            let answer = try await client.send("GET", target)
            try fail(unless: answer)
            for line in answer.body["lines"]?.arrayValue ?? [] { show(line) }
        }
    }
}
