import ArgumentParser
import Components
import Core
import HTTPService
import Logging
import Registry

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

    @Option(name: [.customShort("o"), .customLong("override")], help: ArgumentHelp(
        "Lay a value over an entry's data on every apply: namespace:name:path.to.field=value (repeatable).",
        valueName: "override"))
    var overrides: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "Leave out the entries whose id matches this glob, e.g. 'app.debug:*' (repeatable).", valueName: "glob"))
    var disable: [String] = []

    @Option(name: .long, help: ArgumentHelp(
        "Also serve the admin API over TCP on this numeric address, e.g. 127.0.0.1:9700 (needs --admin-token-file).",
        valueName: "host:port"))
    var adminListen: String?

    @Option(name: .long, help: ArgumentHelp(
        "The file holding the bearer token every TCP admin request must carry (mode 600, one line).",
        valueName: "file"))
    var adminTokenFile: String?

    /// Diagnostics: makes the graceful stop take this long, to exercise the second-signal path.
    @Option(name: .long, help: .hidden)
    var debugStopDelayMs: Int?

    func validate() throws {
        for text in overrides {
            do { _ = try EntryOverride(parsing: text) } catch { throw ValidationError(error.message) }
        }
        if let empty = disable.first(where: \.isEmpty) {
            throw ValidationError("--disable needs a glob, got '\(empty)'")
        }
        if let listen = adminListen {
            guard HTTPServiceKind.address(listen) != nil else {
                throw ValidationError("--admin-listen needs a numeric address and port such as 127.0.0.1:9700, got '\(listen)'")
            }
            guard adminTokenFile != nil else {
                throw ValidationError("--admin-listen needs --admin-token-file: the admin API is never served over TCP without a token")
            }
        } else if adminTokenFile != nil {
            throw ValidationError("--admin-token-file is only used with --admin-listen")
        }
        if let delay = debugStopDelayMs, delay < 0 {
            throw ValidationError("--debug-stop-delay-ms must not be negative")
        }
    }

    func run() async throws {
        ChildProcess.prepareSpawning()  // before any descriptor is opened
        let level = logLevel
        let format = logFormat
        LoggingSystem.bootstrap { label in LogOutput(label: label, level: level, format: format) }
        let logger = Logger(label: "roost")
        if let problem = raiseOpenFileLimit() {
            logger.warning("\(problem); the host may refuse connections beyond it")
        }
        let statePath = state ?? ProcessEnvironment.value("ROOST_STATE") ?? ".roost"

        var extra: [any Component] = []
        if let delay = debugStopDelayMs { extra.append(SlowStopComponent(delay: .milliseconds(delay))) }
        let adjustments = FolderAdjustments(
            overrides: try overrides.map { text throws -> EntryOverride in try EntryOverride(parsing: text) },
            disabled: disable.map(Glob.init))
        let adminTCP = adminListen.flatMap(HTTPServiceKind.address).map {
            HostConfiguration.AdminTCP(address: $0, tokenFile: adminTokenFile ?? "")
        }
        let host = Host(configuration: HostConfiguration(registryPath: registry, statePath: statePath,
                                                         adjustments: adjustments, adminTCP: adminTCP,
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
