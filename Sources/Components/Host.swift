import Core
import Logging
import Registry
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What `roost run` was asked to do.
public struct HostConfiguration: Sendable {
    /// The registry folder the host serves.
    public var registryPath: String
    /// The state folder (history, admin socket, built swiftlets, crash records).
    public var statePath: String
    /// The node name in PIDs; the host name by default.
    public var node: String
    /// Components beyond the standard ones (tests, diagnostics).
    public var extraComponents: [any Component]
    /// `-o` overrides and `--disable` patterns laid over the folder on every apply.
    public var adjustments: FolderAdjustments
    /// How long the folder must stay quiet after a change before it is applied again.
    public var reloadQuiet: Duration
    /// The admin API's optional TCP listener, guarded by a bearer token (see `AdminTCP`).
    public var adminTCP: AdminTCP?

    /// Where the admin API also listens over TCP, and the file that holds its bearer token: one
    /// does not go without the other. The file is read and checked when the host starts.
    public struct AdminTCP: Sendable {
        public var address: SocketAddress
        public var tokenFile: String

        public init(address: SocketAddress, tokenFile: String) {
            self.address = address
            self.tokenFile = tokenFile
        }
    }

    public init(registryPath: String, statePath: String, node: String = HostConfiguration.hostName(),
                adjustments: FolderAdjustments = FolderAdjustments(), reloadQuiet: Duration = .milliseconds(5),
                adminTCP: AdminTCP? = nil, extraComponents: [any Component] = []) {
        self.registryPath = registryPath
        self.statePath = statePath
        self.node = node
        self.adjustments = adjustments
        self.reloadQuiet = reloadQuiet
        self.adminTCP = adminTCP
        self.extraComponents = extraComponents
    }

    public static func hostName() -> String {
        var name = [CChar](repeating: 0, count: 256)
        guard gethostname(&name, name.count - 1) == 0 else { return "node" }
        let text = String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return text.isEmpty ? "node" : text
    }
}

/// Boots the components, runs until told to stop, and stops them in reverse.
///
/// The four boot phases (DESIGN.md §4):
/// 1. Infrastructure: the loop, the logger, the EventBus and the unsealed AppContext.
/// 2. Loading: the components load level by level (each level concurrently).
/// 3. Activation: the Dispatcher is frozen, the AppContext sealed, the components started in order.
/// 4. Entries: the registry folder is applied as a version (none when it equals the last one); an
///    invalid folder stops the boot with every error logged. Then the folder is watched.
///
/// Shutdown: the first SIGINT or SIGTERM stops the components in reverse order and `run` returns 0.
/// A second one during that stop ends the process at once with 128 + the signal number.
public final class Host: Sendable {
    public let configuration: HostConfiguration
    private let logger: Logger

    /// Exit code when a second signal cuts the graceful stop short.
    public static func forcedExitCode(signal: Int32) -> Int32 { 128 + signal }

    public init(configuration: HostConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The standard components that exist so far, then the extra ones.
    func components(state: StateFolder, adminTCP: AdminComponent.TCP?) -> [any Component] {
        [
            PIDGenComponent(node: configuration.node), DispatcherComponent(),
            RegistryComponent(
                registryPath: configuration.registryPath, databasePath: state.path + "/registry.db",
                adjustments: configuration.adjustments, kinds: RegistryKinds.standard(registryRoot: configuration.registryPath),
                quiet: configuration.reloadQuiet),
            FinderComponent(),
            SupervisorComponent(runPath: state.runPath, registryRoot: configuration.registryPath),
            FunctionsComponent(registryRoot: configuration.registryPath),
            HTTPComponent(registryRoot: configuration.registryPath),
            AdminComponent(socketPath: state.path + "/admin.sock", tcp: adminTCP),
        ] + configuration.extraComponents
    }

    /// Checks the paths before anything is created: an unusable registry folder is an error here.
    public static func checkRegistryFolder(_ path: String) throws(HostError) {
        var info = stat()
        guard stat(path, &info) == 0 else {
            throw HostError(.badInput, "registry folder '\(path)' cannot be read: \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFDIR else {
            throw HostError(.badInput, "registry folder '\(path)' is not a directory")
        }
        guard access(path, R_OK | X_OK) == 0 else {
            throw HostError(.badInput, "registry folder '\(path)' cannot be read: \(String(cString: strerror(errno)))")
        }
    }

    /// `SIGTERM`, or `signal 40` for one without a name.
    static func describe(signal: Int32) -> String {
        TerminationStatus.signalName(signal).map { "SIG\($0)" } ?? "signal \(signal)"
    }

    static func milliseconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds / 1_000_000_000_000) / 1000
    }

    /// SIGINT and SIGTERM end the process at once with 128 + the signal number.
    static func installForcedExitHandlers() {
        for signum in [SIGINT, SIGTERM] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { signum in
                let message: StaticString = "roost: second signal during shutdown: exiting now\n"
                _ = write(2, message.utf8Start, message.utf8CodeUnitCount)
                ProcessGroupTable.killAll()
                _exit(128 + signum)
            }
            sigemptyset(&action.sa_mask)
            sigaction(signum, &action, nil)
        }
    }

    /// Runs the host until a signal stops it; returns the process exit code.
    public func run() async -> Int32 {
        let clock = ContinuousClock()
        let bootStart = clock.now
        do {
            try Host.checkRegistryFolder(configuration.registryPath)
        } catch {
            logger.error("\(error.message)")
            return error.exitCode
        }
        // The admin token is checked before anything is created: a bad one is a bad flag.
        var adminTCP: AdminComponent.TCP?
        if let tcp = configuration.adminTCP {
            do {
                adminTCP = AdminComponent.TCP(address: tcp.address, token: try AdminToken.read(from: tcp.tokenFile))
            } catch {
                logger.error("\(error.message)")
                return error.exitCode
            }
        }
        let state: StateFolder
        do {
            state = try StateFolder.prepare(configuration.statePath)
        } catch {
            logger.error("\(error.message)")
            return error.exitCode
        }

        // Phase 1: infrastructure.
        let loop = EventLoop(name: "roost-loop")
        let bus = EventBus()
        let context = AppContext()
        // The host's own metrics registry: two hosts in one process never share counters.
        let metrics = HostMetrics(bus: bus)
        loop.observeSpawns(metrics)
        let lifecycle = HostLifecycle()
        let signals: SignalWatcher
        do {
            signals = try await SignalWatcher.watch([SIGINT, SIGTERM], on: loop)
            try context.set(.loop, loop)
            try context.set(.eventBus, bus)
            try context.set(.logger, logger)
            try context.set(.metrics, metrics)
            try context.set(.hostLifecycle, lifecycle)
        } catch {
            logger.error("cannot set up the host: \(error)")
            await loop.shutdownGracefully()
            return HostError.Code.bootFailed.exitCode
        }

        let (stopRequests, requestStop) = AsyncStream.makeStream(of: Int32.self)
        let logger = self.logger
        let signalTask = Task {
            var received = 0
            for await signal in signals.signals {
                received += 1
                if received == 1 {
                    requestStop.yield(signal)
                } else {
                    logger.warning("second \(Host.describe(signal: signal)) during shutdown: exiting now")
                    ProcessGroupTable.killAll()
                    _exit(Host.forcedExitCode(signal: signal))
                }
            }
        }

        // Phases 2 and 3.
        let loader = ComponentLoader(components: components(state: state, adminTCP: adminTCP), context: context, logger: logger)
        /// Stops what started, in reverse, and gives the boot-failure exit code.
        func abortBoot(_ error: any Error) async -> Int32 {
            logger.error("boot failed: \(error)")
            await loader.stop()
            signalTask.cancel()
            await signals.close()
            await loop.shutdownGracefully()
            withExtendedLifetime(state) {}
            return HostError.Code.bootFailed.exitCode
        }
        do {
            try await loader.load()
            try context.require(.dispatcher).freeze()
            context.seal()
            try await loader.start()
        } catch {
            return await abortBoot(error)
        }

        // Phase 4: the registry folder becomes the current version.
        lifecycle.enter(.applying)
        do {
            let reloader = try context.require(.registryReloader)
            let outcome = await reloader.reload(ApplyContext(source: .boot))
            if case .rejected(let errors) = outcome {
                throw HostError(.bootFailed, "the registry folder \(configuration.registryPath) is invalid "
                    + "(\(errors.count) \(errors.count == 1 ? "problem" : "problems"), listed above)")
            }
            await context.get(.supervisor)?.boot()
            await reloader.startWatching()
        } catch {
            return await abortBoot(error)
        }

        lifecycle.enter(.running)
        let milliseconds = Host.milliseconds(clock.now - bootStart)
        let started = await loader.startedIDs
        logger.info("roost ready in \(formatMilliseconds(milliseconds)) ms", metadata: [
            "registry": "\(configuration.registryPath)", "state": "\(configuration.statePath)",
            "components": "\(started.joined(separator: ","))", "pid": "\(getpid())",
        ])
        bus.publish(topic: "host.started", data: ["pid": .int(Int64(getpid())), "boot_ms": .double(milliseconds)])

        // Run until the first signal.
        var requests = stopRequests.makeAsyncIterator()
        let signal = await requests.next() ?? SIGTERM
        let stopStart = clock.now
        // From here a second signal must end the process whatever the loop and the task pool are
        // doing: a plain handler that only calls _exit (async-signal-safe), never uninstalled.
        // Closing libuv's watcher first matters: it resets the signals to their default action.
        // (A second signal within the few microseconds in between ends the host by that default.)
        await signals.close()
        signalTask.cancel()
        Host.installForcedExitHandlers()
        logger.info("\(Host.describe(signal: signal)) received: stopping (a second signal exits at once)")
        lifecycle.enter(.stopping)
        bus.publish(topic: "host.stopping", data: ["signal": .int(Int64(signal))])

        await loader.stop()
        await loop.shutdownGracefully()
        logger.info("roost stopped in \(formatMilliseconds(Host.milliseconds(clock.now - stopStart))) ms")
        withExtendedLifetime(state) {}
        return 0
    }
}

private func formatMilliseconds(_ value: Double) -> String {
    let tenths = Int((value * 10).rounded())
    return "\(tenths / 10).\(tenths % 10)"
}
