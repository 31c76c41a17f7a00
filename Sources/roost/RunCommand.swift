import ArgumentParser
import Components
import Core
import Logging

#if canImport(Glibc)
import Glibc
#endif

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Boot the host and serve a registry folder until SIGINT or SIGTERM.",
        discussion: """
            The first SIGINT or SIGTERM stops the components in reverse order and exits 0; a second \
            one during that stop exits at once with 128+N. The state folder is created if missing \
            and locked: two hosts never share one.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The registry folder to serve.", valueName: "dir"))
    var registry: String = "registry"

    @Option(name: .long, help: ArgumentHelp(
        "The state folder: history, admin socket, built swiftlets. Default: $ROOST_STATE, or .roost.",
        valueName: "dir"))
    var state: String?

    @Option(name: .long, help: ArgumentHelp("The lowest level logged: trace, debug, info, notice, warning, error, critical.",
                                            valueName: "level"))
    var logLevel: Logger.Level = .info

    @Option(name: .long, help: ArgumentHelp("How log lines look: text (for people) or json (one object a line).",
                                            valueName: "format"))
    var logFormat: LogFormat = .text

    /// Diagnostics: makes the graceful stop take this long, to exercise the second-signal path.
    @Option(name: .long, help: .hidden)
    var debugStopDelayMs: Int?

    func validate() throws {
        if let delay = debugStopDelayMs, delay < 0 {
            throw ValidationError("--debug-stop-delay-ms must not be negative")
        }
    }

    func run() async throws {
        let level = logLevel
        let format = logFormat
        LoggingSystem.bootstrap { label in LogOutput(label: label, level: level, format: format) }
        let logger = Logger(label: "roost")
        let statePath = state ?? ProcessEnvironment.value("ROOST_STATE") ?? ".roost"

        var extra: [any Component] = []
        if let delay = debugStopDelayMs { extra.append(SlowStopComponent(delay: .milliseconds(delay))) }
        let host = Host(configuration: HostConfiguration(registryPath: registry, statePath: statePath,
                                                         extraComponents: extra),
                        logger: logger)
        throw HostExit(code: await host.run())
    }
}

/// Waits `delay` in its stop: only reachable through the hidden `--debug-stop-delay-ms`.
struct SlowStopComponent: Component {
    let id = "debug.slow-stop"
    let dependencies: [String] = []
    let delay: Duration

    func load(_ context: AppContext) async throws {}
    func start(_ context: AppContext) async throws {}
    func stop(_ context: AppContext) async {
        try? await context.require(.loop).sleep(for: delay)
    }
}

enum ProcessEnvironment {
    static func value(_ name: String) -> String? {
        guard let raw = getenv(name) else { return nil }
        let value = String(cString: raw)
        return value.isEmpty ? nil : value
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
extension LogFormat: ExpressibleByArgument {}
