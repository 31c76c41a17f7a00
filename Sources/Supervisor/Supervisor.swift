// The supervisor: runs `swiftlet.service` entries as processes and keeps them to their
// definitions, version after version.
//
// Specification
// - Services come from registry versions (`committed`, a direct call from the registry's apply):
//   a created service with `auto_start` starts; a service whose definition changed is stopped and
//   started again with the new one (if it was meant to run); a deleted one is stopped and
//   forgotten. A rollback is just another version. A service in `failed` starts again when a new
//   version changes it, or when a person asks (`start`). `committed` only decides; the stops and
//   starts run on a task of their own, version after version (`settled()` waits for them), so
//   a slow stop never holds the registry's apply.
// - Order: a service starts only once every service it `requires` is running (ready), and at
//   shutdown, or when a version stops several, it stops before the services it requires.
//   Independent services start and stop concurrently; at most 8 spawns are under way at once.
// - Restarts follow the service's `ServiceMachine` (restart policy, backoff with jitter, give-up
//   after max_restarts within window, stop signal then SIGKILL after the stop timeout).
// - Processes: each service runs in its own session and process group, stdin on /dev/null,
//   with its user, its rlimits and PR_SET_PDEATHSIG (it dies with the host), all set by Core's
//   spawn between clone and exec. Its stdout and stderr are read line by line (lines over 16 KiB
//   split, never dropped) into the host log and a ring of the newest 1,000 lines. When the main
//   process ends, whatever is left in its group is killed: no grandchild outlives its service.
//   Every service process carries the host run's token; a host killed with SIGKILL leaves its
//   token in `run/host-token`, and the next boot kills every process that carries it.
// - Readiness: `none` is ready at once; `notify` listens on a datagram socket
//   (`run/notify/<service>.sock`, given as NOTIFY_SOCKET) for READY=1, STATUS=, WATCHDOG=1 (with
//   WATCHDOG_USEC set when a watchdog is configured: a missed one restarts the service); `tcp`,
//   `http` and `exec` are probed every 100 ms until they succeed or start_timeout passes (an
//   `exec` probe is a process of the service, killed with its group once the start is decided).
// - Events: `supervisor.state.<state>` [service id] {pid, exit, restarts, delay_ms}, and
//   `process.started` / `process.exited` [PID] {service, pid, parent, role, status}.
import Core
import DequeModule
import Logging
import Registry

#if canImport(Glibc)
import Glibc
#endif

/// What `roost ps` shows of one service.
public struct ServiceStatus: Sendable {
    public let id: EntryID
    public let state: ServiceState
    public let pid: Int32?
    public let processID: PID?
    /// Seconds since the current process started.
    public let uptime: Double?
    public let restarts: Int
    public let lastExit: String?
    public let autoStart: Bool
    public let status: String?

    public var json: JSON {
        var object: [String: JSON] = [
            "id": .string(id.description), "state": .string(state.rawValue), "restarts": .int(Int64(restarts)),
            "auto_start": .bool(autoStart),
        ]
        if let pid { object["pid"] = .int(Int64(pid)) }
        if let processID { object["process"] = .string(processID.description) }
        if let uptime { object["uptime"] = .double(uptime) }
        if let lastExit { object["last_exit"] = .string(lastExit) }
        if let status { object["status"] = .string(status) }
        return .object(object)
    }
}

/// Why a supervisor command could not be done.
public struct SupervisorError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Runs the services; see the file's opening comment for the whole contract.
public actor Supervisor: RegistryParticipant {
    public nonisolated let name = "supervisor"
    public nonisolated let loop: EventLoop
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    public struct Configuration: Sendable {
        /// The state folder's `run/`.
        public var runPath: String
        public var kind: ServiceKind
        public var logLineBound = 16 * 1024
        public var logRingSize = 1000
        public var probeInterval: Duration = .milliseconds(100)
        /// Given to services as `ROOST_BIN`, so a script can run `"$ROOST_BIN" notify --ready`.
        public var hostExecutable: String?
        /// Told of each restart of a service: by its restart policy (out of backoff) or by a
        /// `restart` command. Called on the loop; must be quick. The host counts them as metrics.
        public var onRestart: (@Sendable (EntryID) -> Void)?

        public init(runPath: String, kind: ServiceKind) {
            self.runPath = runPath
            self.kind = kind
        }
    }

    public nonisolated let configuration: Configuration
    private let bus: EventBus
    private let pids: PIDGenerator
    private let logger: Logger
    private let survivors: SurvivorRecord
    /// Written into every service's environment and `run/host-token` (see `SurvivorRecord`).
    private let token: String
    private let clock = ContinuousClock()
    /// The host's environment, read once: every spawn starts from it.
    private let hostEnvironment = Supervisor.hostEnvironment()
    private let origin: ContinuousClock.Instant
    private var services: [EntryID: ServiceRuntime] = [:]
    /// Carries out committed versions one after the other (see `committed`).
    private var reconciling: Task<Void, Never>?
    /// Starts wait here so that only a few are under way at once: a thousand services starting
    /// together would otherwise each hold a task and a prepared environment until a spawn thread
    /// is free, and the heap would keep that peak. The spawn threads are the limit anyway.
    private var spawnQueue: Deque<(runtime: ServiceRuntime, generation: Int)> = []
    private var spawnsUnderWay = 0
    private static let spawnsAtOnce = 8
    private var shuttingDown = false
    private var booted = false

    public init(loop: EventLoop, bus: EventBus, pids: PIDGenerator, logger: Logger, configuration: Configuration) {
        self.loop = loop
        self.bus = bus
        self.pids = pids
        self.logger = logger
        self.configuration = configuration
        self.survivors = SurvivorRecord(runPath: configuration.runPath)
        var bytes = [UInt8](repeating: 0, count: 16)
        let fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        if fd >= 0 { _ = bytes.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }; close(fd) }
        token = bytes.map { String($0, radix: 16).leftPadded(to: 2) }.joined()
        origin = clock.now
    }

    /// Kills what a crashed host left behind, and prepares the run folder. Call once, before any
    /// service starts.
    public func prepare() {
        mkdir(configuration.runPath, 0o700)
        mkdir(configuration.runPath + "/notify", 0o711)
        for (pid, service) in survivors.killSurvivors() {
            logger.warning("killed pid \(pid) of \(service), left running by a host that did not stop cleanly")
        }
        survivors.begin(token: token)
    }

    private var now: Duration { clock.now - origin }

    // MARK: - Registry versions

    public func review(_ proposal: RegistryProposal) async -> [RegistryError] { [] }

    /// The services of the registry as it is when the supervisor joins; none starts before `boot`.
    public func adopt(_ state: [EntryID: Entry], version: Int) async {
        for entry in state.values where entry.kind == ServiceKind.name {
            guard let definition = configuration.kind.definition(of: entry) else {
                logger.error("\(entry.id): definition unreadable; not started")
                continue
            }
            let runtime = ServiceRuntime(definition: definition, logRingSize: configuration.logRingSize)
            runtime.wanted = definition.autoStart
            services[entry.id] = runtime
        }
    }

    /// Boot phase 4, once the registry folder is applied: every `auto_start` service starts, in
    /// `requires` order. Until then versions only define services.
    public func boot() {
        booted = true
        for runtime in services.values.sorted(by: { $0.id < $1.id }) where runtime.wanted { beginWhenReady(runtime) }
    }

    /// A committed version: what it deletes or changes is stopped (dependents before what they
    /// require), then changed services start again with their new definition and new ones start.
    /// That work runs on a task of its own, one version after the other, so a slow stop never
    /// holds the registry's apply; `settled()` waits for it.
    public func committed(_ commit: RegistryCommit) async {
        var affected: [ServiceRuntime] = []
        var created: [ServiceRuntime] = []
        for entry in commit.order.deletes where entry.kind == ServiceKind.name {
            if let runtime = services.removeValue(forKey: entry.id) {
                runtime.removed = true
                runtime.wanted = false
                runtime.pendingDefinition = nil
                affected.append(runtime)
            }
        }
        for entry in commit.order.createsAndUpdates where entry.kind == ServiceKind.name {
            guard let definition = configuration.kind.definition(of: entry) else {
                logger.error("\(entry.id): definition unreadable after validation; not started")
                continue
            }
            if let runtime = services[entry.id] {
                // Against what it will run once the versions before this one are carried out.
                guard (runtime.pendingDefinition ?? runtime.definition) != definition else { continue }
                runtime.pendingDefinition = definition == runtime.definition ? nil : definition
                affected.append(runtime)
            } else {
                let runtime = ServiceRuntime(definition: definition, logRingSize: configuration.logRingSize)
                services[entry.id] = runtime
                runtime.wanted = definition.autoStart
                created.append(runtime)
            }
        }
        guard !affected.isEmpty || !created.isEmpty else { return }
        let previous = reconciling
        reconciling = Task {
            await previous?.value
            await self.carryOut(affected: affected, created: created)
        }
    }

    /// Waits until every committed version has been carried out (stops done, starts begun).
    public func settled() async {
        while let task = reconciling {
            await task.value
            if reconciling == task { reconciling = nil }
        }
    }

    private func carryOut(affected: [ServiceRuntime], created: [ServiceRuntime]) async {
        // A later version may already have undone a change (back to the running definition).
        let changing = affected.filter { $0.removed || $0.pendingDefinition != nil }
        var wasWanted: [ObjectIdentifier: Bool] = [:]
        for runtime in changing where !runtime.removed {
            wasWanted[ObjectIdentifier(runtime)] = runtime.wanted
            runtime.wanted = false
        }
        await stopInOrder(changing)
        for runtime in changing {
            if runtime.removed {
                runtime.closeTimers()
                continue
            }
            guard let definition = runtime.pendingDefinition else { continue }
            runtime.pendingDefinition = nil
            runtime.replace(definition)
            runtime.wanted = (wasWanted[ObjectIdentifier(runtime)] ?? false) || definition.autoStart
            beginWhenReady(runtime)
        }
        for runtime in created where !runtime.removed { beginWhenReady(runtime) }
    }

    // MARK: - Commands

    public func start(_ id: EntryID) throws(SupervisorError) {
        guard let runtime = services[id] else { throw SupervisorError("there is no service \(id)") }
        booted = true
        runtime.wanted = true
        beginWhenReady(runtime)
    }

    public func stop(_ id: EntryID) async throws(SupervisorError) {
        guard let runtime = services[id] else { throw SupervisorError("there is no service \(id)") }
        runtime.wanted = false
        await stopAndWait(runtime)
    }

    public func restart(_ id: EntryID) async throws(SupervisorError) {
        guard let runtime = services[id] else { throw SupervisorError("there is no service \(id)") }
        runtime.wanted = false
        await stopAndWait(runtime)
        runtime.wanted = true
        configuration.onRestart?(id)
        beginWhenReady(runtime)
    }

    public func status() -> [ServiceStatus] {
        services.values.sorted { $0.id < $1.id }.map(status(of:))
    }

    public func status(of id: EntryID) -> ServiceStatus? { services[id].map(status(of:)) }

    private func status(of runtime: ServiceRuntime) -> ServiceStatus {
        ServiceStatus(
            id: runtime.id, state: runtime.machine.state, pid: runtime.process?.pid, processID: runtime.processID,
            uptime: runtime.startedAt.map { Self.seconds(clock.now - $0) }, restarts: runtime.machine.restarts,
            lastExit: runtime.machine.lastExit, autoStart: runtime.definition.autoStart, status: runtime.notifyStatus)
    }

    /// The `auto_start` services whose start is not decided yet, in id order: still starting, in
    /// backoff before another try, stopping to restart, or meant to run but not begun (before
    /// boot, or waiting for a service it `requires`, listed in `waitingFor`). A service that runs,
    /// has exited or failed for good, or was stopped by a person is decided. `/readyz` reports these.
    public func undecidedStarts() -> [(id: EntryID, state: ServiceState, waitingFor: [EntryID])] {
        services.values.sorted { $0.id < $1.id }.compactMap { runtime in
            guard runtime.definition.autoStart, runtime.wanted else { return nil }
            switch runtime.machine.state {
            case .starting, .backoff, .stopped, .stopping:  // stopping while wanted: a restart under way
                let waiting = runtime.definition.requires.filter { services[$0]?.machine.state != .running }
                return (runtime.id, runtime.machine.state, waiting)
            case .running, .exited, .failed:
                return nil
            }
        }
    }

    /// The last `count` lines of a service's output.
    public func logs(_ id: EntryID, last count: Int) throws(SupervisorError) -> [LogLine] {
        guard let runtime = services[id] else { throw SupervisorError("there is no service \(id)") }
        return runtime.ring.last(count)
    }

    /// The last `count` lines, then every new line until the service is removed or the stream
    /// is dropped.
    public func followLogs(_ id: EntryID, last count: Int) throws(SupervisorError) -> AsyncStream<LogLine> {
        guard let runtime = services[id] else { throw SupervisorError("there is no service \(id)") }
        let (stream, continuation) = AsyncStream.makeStream(of: LogLine.self, bufferingPolicy: .bufferingNewest(10_000))
        for line in runtime.ring.last(count) { continuation.yield(line) }
        let key = runtime.nextFollower
        runtime.nextFollower += 1
        runtime.followers[key] = continuation
        continuation.onTermination = { [weak self] _ in
            Task { await self?.unfollow(id, key) }
        }
        return stream
    }

    private func unfollow(_ id: EntryID, _ key: Int) { services[id]?.followers[key] = nil }

    /// Waits until service `id` is in one of `states` (for tests and tools).
    public func waitFor(_ id: EntryID, _ states: Set<ServiceState>) async {
        while let runtime = services[id], !states.contains(runtime.machine.state) {
            // Checked again inside: a caller reaching this actor through a task executor may see
            // the continuation body run only after other jobs of the loop, state changes included.
            await withCheckedContinuation { continuation in
                if states.contains(runtime.machine.state) { continuation.resume() } else { runtime.stateWaiters.append(continuation) }
            }
        }
    }

    /// Stops every service, dependents before what they require, and waits for them.
    public func shutdown() async {
        shuttingDown = true
        await settled()
        await stopInOrder(Array(services.values))
        survivors.end()
    }

    /// Stops `runtimes` and waits until each is gone: those that no other of them requires go
    /// first, together, then the next level.
    private func stopInOrder(_ runtimes: [ServiceRuntime]) async {
        var remaining = runtimes
        while !remaining.isEmpty {
            let required = Set(remaining.flatMap { $0.definition.requires })
            var level = remaining.filter { !required.contains($0.id) }
            if level.isEmpty { level = remaining }  // a cycle (refused by validation): all at once
            await withTaskGroup(of: Void.self) { group in
                for runtime in level {
                    runtime.wanted = false
                    nonisolated(unsafe) let confined = runtime
                    group.addTask { await self.stopAndWait(confined) }
                }
            }
            let stopped = Set(level.map(ObjectIdentifier.init))
            remaining.removeAll { stopped.contains(ObjectIdentifier($0)) }
        }
    }

    // MARK: - Starting in order

    /// Starts the service now if everything it requires runs; otherwise when it does.
    private func beginWhenReady(_ runtime: ServiceRuntime) {
        guard runtime.wanted, booted, !shuttingDown else { return }
        switch runtime.machine.state {
        case .starting, .running, .stopping, .backoff: return
        case .stopped, .exited, .failed: break
        }
        let waiting = runtime.definition.requires.filter { services[$0]?.machine.state != .running }
        guard waiting.isEmpty else {
            if runtime.announcedWait != waiting {
                runtime.announcedWait = waiting
                logger.info("\(runtime.id) waits for \(waiting.map(\.description).joined(separator: ", ")) to run")
            }
            return
        }
        runtime.announcedWait = []
        handle(runtime, .start)
    }

    // MARK: - The machine and its actions

    private func handle(_ runtime: ServiceRuntime, _ event: ServiceMachine.Event) {
        let before = runtime.machine.state
        let actions = runtime.machine.handle(event, at: now)
        for action in actions { perform(action, for: runtime) }
        if runtime.machine.state != before {
            if before == .backoff, runtime.machine.state == .starting { configuration.onRestart?(runtime.id) }
            if before == .starting {
                // A probe still running has nothing left to check.
                for probe in runtime.probes.values { probe.assumeIsolated { _ = $0.signalGroup(SIGKILL) } }
            }
            for waiter in runtime.stateWaiters { waiter.resume() }
            runtime.stateWaiters.removeAll()
            if runtime.process == nil {
                // A stop can end without an exit (a start that never happened): `stopAndWait`
                // checks again.
                for waiter in runtime.exitWaiters { waiter.resume() }
                runtime.exitWaiters.removeAll()
            }
            if runtime.machine.state == .running {
                // Dependents waiting for this one may go now.
                for other in services.values where other.wanted && other.definition.requires.contains(runtime.id) {
                    beginWhenReady(other)
                }
            }
        }
    }

    private func perform(_ action: ServiceMachine.Action, for runtime: ServiceRuntime) {
        switch action {
        case .spawn:
            runtime.generation += 1
            spawnQueue.append((runtime, runtime.generation))
            startQueuedSpawns()
        case .signal(let signal):
            // With no process yet (stopped while spawning), `spawned` sends the stop signal.
            if let process = runtime.process {
                Task { _ = await process.signalGroup(signal) }
            }
        case .startTimer(let timer, let delay):
            // One loop timer per kind, restarted in place: stopping it is immediate (all of this
            // runs on the loop thread), so a stale expiry can never arrive.
            nonisolated(unsafe) let confined = runtime
            runtime.timer(timer, loop: loop).assumeIsolated { handle in
                do {
                    try handle.start(after: delay) {
                        self.assumeIsolated { $0.handle(confined, .timerFired(timer)) }
                    }
                } catch {
                    // The loop has stopped: the host is going away, nothing is left to time.
                }
            }
        case .cancelTimer(let timer):
            runtime.timers[timer]?.assumeIsolated { $0.stop() }
        case .publish(let state):
            publish(state, runtime)
        }
    }

    private func publish(_ state: ServiceState, _ runtime: ServiceRuntime) {
        var data: [String: JSON] = ["restarts": .int(Int64(runtime.machine.restarts))]
        if let pid = runtime.process?.pid ?? runtime.lastPID { data["pid"] = .int(Int64(pid)) }
        if let exit = runtime.machine.lastExit, state != .starting, state != .running { data["exit"] = .string(exit) }
        if let code = runtime.lastStatus?.code, runtime.lastStatus?.signal == 0 { data["exit_code"] = .int(Int64(code)) }
        if let signal = runtime.lastStatus?.signal, signal != 0 { data["signal"] = .int(Int64(signal)) }
        if state == .backoff, let delay = runtime.machine.currentDelay {
            data["delay_ms"] = .double(Self.seconds(delay) * 1000)
        }
        bus.publish(topic: "supervisor.state.\(state.rawValue)", path: runtime.id.description, data: .object(data))
        switch state {
        case .failed:
            logger.error("\(runtime.id) failed: restarted too often (\(runtime.machine.restarts) times); last exit: \(runtime.machine.lastExit ?? "-")")
        case .backoff:
            logger.warning("\(runtime.id) exited (\(runtime.machine.lastExit ?? "-")); restarting in \(DurationText.format(runtime.machine.currentDelay ?? .zero))")
        case .running:
            logger.info("\(runtime.id) running (pid \(runtime.process?.pid ?? 0))")
        case .exited:
            logger.info("\(runtime.id) exited (\(runtime.machine.lastExit ?? "-")); not restarted by its policy")
        default:
            break
        }
    }

    // MARK: - Processes

    private func startQueuedSpawns() {
        while spawnsUnderWay < Self.spawnsAtOnce, let (runtime, generation) = spawnQueue.popFirst() {
            guard runtime.generation == generation else { continue }  // a later start replaced it
            if runtime.machine.state == .stopping {
                // Stopped while it waited: it never starts, and the stop is complete.
                handle(runtime, .spawnFailed("stopped before it started"))
                continue
            }
            if runtime.machine.killPending {
                // Its start timed out while it waited: as if started and killed at once.
                handle(runtime, .exited(TerminationStatus(code: 0, signal: SIGKILL)))
                continue
            }
            spawn(runtime, generation: generation)
        }
    }

    private func spawn(_ runtime: ServiceRuntime, generation: Int) {
        let definition = runtime.definition
        var credentials: ProcessOptions.Credentials?
        if let user = definition.user {
            guard let ids = Self.userIDs(user) else {
                handle(runtime, .spawnFailed("no such user '\(user)'"))
                return
            }
            if getuid() != 0 {
                handle(runtime, .spawnFailed("user '\(user)' needs a host running as root"))
                return
            }
            credentials = ProcessOptions.Credentials(uid: ids.uid, gid: ids.gid)
        }

        let processID = pids.next(owner: runtime.id.description)
        var environment = environment(of: definition, processID: processID)
        let notifyPath = configuration.runPath + "/notify/\(runtime.id.namespace).\(runtime.id.name).sock"
        if definition.readiness == .notify {
            environment["NOTIFY_SOCKET"] = notifyPath
            if let watchdog = definition.watchdog {
                environment["WATCHDOG_USEC"] = String(watchdog.components.seconds * 1_000_000 + watchdog.components.attoseconds / 1_000_000_000_000)
            }
        }
        var options = ProcessOptions(definition.exec, environment: environment, workingDirectory: definition.workdir)
        options.stdin = .null
        options.stdout = .pipe
        options.stderr = .pipe
        options.grouping = .newSession
        options.credentials = credentials
        options.limits = ProcessOptions.Limits(
            openFiles: definition.limits.openFiles.map(UInt64.init), memoryBytes: definition.limits.memoryBytes.map(UInt64.init),
            cpuSeconds: definition.limits.cpuSeconds.map(UInt64.init))
        options.dieWithHost = true
        options.role = .service
        spawnsUnderWay += 1
        Task {
            defer { self.spawnFinished() }
            let notify: DatagramReceiver?
            if definition.readiness == .notify {
                notify = try? await DatagramReceiver.bind(on: loop, path: notifyPath, mode: 0o666)
            } else {
                notify = nil
            }
            do {
                let child = try await ChildProcess.spawn(on: loop, options)
                self.spawned(runtime, child, processID: processID, notify: notify, generation: generation)
            } catch {
                await notify?.close()
                self.spawnFailed(runtime, "cannot start \(definition.exec[0]): \(error)", generation: generation)
            }
        }
    }

    /// What a process of the service sees: the host's environment, the service's `env`, and the
    /// host's own variables (no notify socket: only the main process gets one).
    private func environment(of definition: ServiceDefinition, processID: PID) -> [String: String] {
        var environment = hostEnvironment
        for (key, value) in definition.env { environment[key] = value }
        environment["ROOST_SERVICE"] = definition.id.description
        environment["ROOST_PID"] = processID.description
        environment["ROOST_HOST_TOKEN"] = token
        if let host = configuration.hostExecutable { environment["ROOST_BIN"] = host }
        environment["NOTIFY_SOCKET"] = nil
        environment["WATCHDOG_USEC"] = nil
        return environment
    }

    private func spawnFinished() {
        spawnsUnderWay -= 1
        startQueuedSpawns()
    }

    private func spawnFailed(_ runtime: ServiceRuntime, _ reason: String, generation: Int) {
        guard runtime.generation == generation else { return }
        logger.error("\(runtime.id): \(reason)")
        handle(runtime, .spawnFailed(reason))
    }

    private func spawned(_ runtime: ServiceRuntime, _ child: ChildProcess, processID: PID, notify: DatagramReceiver?, generation: Int) {
        runtime.process = child
        runtime.processID = processID
        runtime.lastPID = child.pid
        runtime.startedAt = clock.now
        runtime.notify?.assumeIsolated { $0.close() }
        runtime.notify = notify
        runtime.notifyStatus = nil
        ProcessGroupTable.add(child.pid)
        bus.publish(topic: "process.started", path: processID.description, data: [
            "service": .string(runtime.id.description), "pid": .int(Int64(child.pid)),
            "parent": .string("supervisor"),
        ])
        let outputs = [(child.stdout, LogLine.Stream.stdout), (child.stderr, LogLine.Stream.stderr)]
        let output = OutputStreams(open: outputs.count { $0.0 != nil })
        for case let (channel?, stream) in outputs {
            read(channel, stream, runtime: runtime, pid: child.pid, output: output)
        }
        nonisolated(unsafe) let confined = runtime
        child.assumeIsolated { process in
            process.onExit { status in
                self.assumeIsolated {
                    $0.ended(confined, child, processID: processID, status: status, output: output, generation: generation)
                }
            }
        }
        if let notify {
            Task { await self.listen(notify, runtime: runtime, generation: generation) }
        }
        if runtime.machine.state == .stopping {
            // A stop came while the process was being started.
            let signal = runtime.definition.stop.signal
            Task { _ = await child.signalGroup(signal) }
            return
        }
        if runtime.machine.killPending {
            // Its start timed out while it was being spawned.
            Task { _ = await child.signalGroup(SIGKILL) }
            return
        }
        switch runtime.definition.readiness {
        case .none:
            handle(runtime, .ready)
        case .notify:
            break
        case .tcp, .http, .exec:
            Task { await self.probe(runtime, generation: generation) }
        }
    }

    /// The main process is gone (nil: the loop shut down while it ran). Nothing of the service may
    /// outlive it, and every line it wrote is logged before its exit is.
    private func ended(_ runtime: ServiceRuntime, _ child: ChildProcess, processID: PID, status: TerminationStatus?,
                       output: OutputStreams, generation: Int) {
        let status = status ?? TerminationStatus(code: -1, signal: SIGKILL)
        nonisolated(unsafe) let confined = runtime
        let report = { @Sendable in
            output.whenClosed {
                self.assumeIsolated { $0.exited(confined, child, processID: processID, status: status, generation: generation) }
            }
        }
        let killed = ProcessTable.now()
        if child.assumeIsolated({ $0.signalGroup(SIGKILL) }) {
            // Others of its group were still there: wait until they are gone too.
            Task {
                await Self.awaitGroupGone(child.pid, killedAt: killed, loop: self.loop)
                report()
            }
        } else {
            report()
        }
    }

    private func exited(_ runtime: ServiceRuntime, _ child: ChildProcess, processID: PID, status: TerminationStatus, generation: Int) {
        ProcessGroupTable.remove(child.pid)
        bus.publish(topic: "process.exited", path: processID.description, data: [
            "service": .string(runtime.id.description), "pid": .int(Int64(child.pid)),
            "status": .string(status.description),
        ])
        if runtime.generation == generation, let notify = runtime.notify {
            runtime.notify = nil
            notify.assumeIsolated { $0.close() }
        }
        runtime.watchdog?.assumeIsolated { $0.stop() }
        guard runtime.generation == generation else { return }
        runtime.process = nil
        runtime.processID = nil
        runtime.startedAt = nil
        runtime.lastStatus = status
        handle(runtime, .exited(status))
        for waiter in runtime.exitWaiters { waiter.resume() }
        runtime.exitWaiters.removeAll()
    }

    /// Stops the service's process (if any) and waits until it is gone.
    private func stopAndWait(_ runtime: ServiceRuntime) async {
        handle(runtime, .stop)
        while runtime.process != nil || runtime.machine.state == .stopping {
            await withCheckedContinuation { continuation in
                // Checked again inside, as in `waitFor`.
                if runtime.process != nil || runtime.machine.state == .stopping {
                    runtime.exitWaiters.append(continuation)
                } else {
                    continuation.resume()
                }
            }
        }
    }

    /// Logs what the process writes on `channel`, line by line, as it arrives (callbacks on the
    /// loop: a quiet service costs no waiting task).
    private func read(_ channel: StreamChannel, _ stream: LogLine.Stream, runtime: ServiceRuntime, pid: Int32, output: OutputStreams) {
        // Loop-confined: the channel calls back on the loop thread, where this actor runs.
        nonisolated(unsafe) let runtime = runtime
        nonisolated(unsafe) var splitter = LineSplitter(bound: configuration.logLineBound)
        channel.assumeIsolated { channel in
            channel.deliver { chunk in
                self.assumeIsolated { supervisor in
                    if let chunk {
                        for (text, continued) in splitter.feed(chunk) { supervisor.logLine(runtime, stream, pid, text, continued) }
                        return
                    }
                    for (text, continued) in splitter.finish() { supervisor.logLine(runtime, stream, pid, text, continued) }
                    channel.assumeIsolated { $0.close() }
                    output.closeOne()
                }
            }
        }
    }

    private func logLine(_ runtime: ServiceRuntime, _ stream: LogLine.Stream, _ pid: Int32, _ text: String, _ continued: Bool) {
        let line = LogLine(time: RegistryService.wallClock(), stream: stream, pid: pid, text: text, continued: continued)
        runtime.ring.append(line)
        for (_, follower) in runtime.followers { follower.yield(line) }
        logger.info("\(text)", metadata: ["service": "\(runtime.id)", "pid": "\(pid)", "stream": "\(stream.rawValue)"])
    }

    // MARK: - Readiness

    private func listen(_ notify: DatagramReceiver, runtime: ServiceRuntime, generation: Int) async {
        for await datagram in notify.datagrams {
            guard runtime.generation == generation else { return }
            let text = String(decoding: datagram, as: UTF8.self)
            for line in text.split(separator: "\n") {
                if line == "READY=1" {
                    if runtime.machine.state == .starting {
                        handle(runtime, .ready)
                        armWatchdog(runtime, generation: generation)
                    }
                } else if line.hasPrefix("STATUS=") {
                    runtime.notifyStatus = String(line.dropFirst(7))
                } else if line == "WATCHDOG=1" {
                    armWatchdog(runtime, generation: generation)
                }
            }
        }
    }

    private func armWatchdog(_ runtime: ServiceRuntime, generation: Int) {
        guard let interval = runtime.definition.watchdog, runtime.machine.state == .running else { return }
        let watchdog = runtime.watchdog ?? LoopTimer(loop: loop)
        runtime.watchdog = watchdog
        nonisolated(unsafe) let confined = runtime
        watchdog.assumeIsolated { handle in
            try? handle.start(after: interval) {
                self.assumeIsolated { supervisor in
                    guard confined.generation == generation, confined.machine.state == .running else { return }
                    supervisor.logger.warning("\(confined.id): watchdog not fed within \(DurationText.format(interval)); restarting")
                    supervisor.handle(confined, .watchdogMissed)
                }
            }
        }
    }

    private func probe(_ runtime: ServiceRuntime, generation: Int) async {
        while runtime.generation == generation, runtime.machine.state == .starting {
            if await probeOnce(runtime) {
                guard runtime.generation == generation, runtime.machine.state == .starting else { return }
                handle(runtime, .ready)
                return
            }
            do { try await loop.sleep(for: configuration.probeInterval) } catch { return }
        }
    }

    private func probeOnce(_ runtime: ServiceRuntime) async -> Bool {
        switch runtime.definition.readiness {
        case .none, .notify:
            return true
        case .tcp(let port):
            guard let channel = try? await StreamChannel.connect(on: loop, host: "127.0.0.1", port: port) else { return false }
            await channel.close()
            return true
        case .http(let url):
            return await HTTPProbe.get(url, loop: loop)
        case .exec(let argv):
            return await runProbe(argv, for: runtime)
        }
    }

    /// One run of an `exec` readiness probe: a process of the service (a PID of its own whose
    /// parent is the service's main process), with the service's environment, folder and user,
    /// in a group of its own that is killed once the service stops starting (ready, timed out,
    /// stopped), so a probe that hangs never outlives the start it checks.
    private func runProbe(_ argv: [String], for runtime: ServiceRuntime) async -> Bool {
        let definition = runtime.definition
        let processID = pids.next(owner: runtime.id.description)
        let parent = runtime.processID?.description ?? "supervisor"
        var options = ProcessOptions(argv, environment: environment(of: definition, processID: processID),
                                     workingDirectory: definition.workdir)
        options.stdin = .null
        options.stdout = .null
        options.stderr = .null
        options.grouping = .newSession
        options.dieWithHost = true
        options.role = .readiness
        if let user = definition.user, getuid() == 0, let ids = Self.userIDs(user) {
            options.credentials = ProcessOptions.Credentials(uid: ids.uid, gid: ids.gid)
        }
        guard let child = try? await ChildProcess.spawn(on: loop, options) else { return false }
        ProcessGroupTable.add(child.pid)
        bus.publish(topic: "process.started", path: processID.description, data: [
            "service": .string(runtime.id.description), "pid": .int(Int64(child.pid)), "parent": .string(parent),
            "role": "readiness",
        ])
        runtime.probes[child.pid] = child
        if runtime.machine.state != .starting { await child.signalGroup(SIGKILL) }
        let status = (try? await child.wait()) ?? TerminationStatus(code: -1, signal: SIGKILL)
        runtime.probes[child.pid] = nil
        await Self.killGroup(child, loop: loop)
        ProcessGroupTable.remove(child.pid)
        bus.publish(topic: "process.exited", path: processID.description, data: [
            "service": .string(runtime.id.description), "pid": .int(Int64(child.pid)), "status": .string(status.description),
            "role": "readiness",
        ])
        return status.succeeded
    }

    // MARK: - Helpers

    /// SIGKILL to what is left of the group, and a wait (up to a second) until it is gone: a
    /// killed process takes a moment to exit, and "stopped" must mean gone.
    static func killGroup(_ child: ChildProcess, loop: EventLoop) async {
        let killed = ProcessTable.now()
        guard await child.signalGroup(SIGKILL) else { return }  // the group was empty
        await awaitGroupGone(child.pid, killedAt: killed, loop: loop)
    }

    /// Waits (up to a second) until process group `pgid`, killed at `killedAt` (`ProcessTable.now()`
    /// taken before the kill), has no members left: a killed process takes a moment to go. Only
    /// processes started by then count, so a new group that reuses the id is not waited for.
    public static func awaitGroupGone(_ pgid: Int32, killedAt: UInt64, loop: EventLoop) async {
        let deadline = ContinuousClock.now + .seconds(1)
        while ContinuousClock.now < deadline {
            // Scanning /proc reads a file per process: not on the loop thread.
            if await Task.detached(operation: { ProcessTable.members(of: pgid, startedBy: killedAt).isEmpty }).value { return }
            try? await loop.sleep(for: .milliseconds(1))
        }
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func userIDs(_ name: String) -> (uid: uid_t, gid: gid_t)? {
        guard let entry = getpwnam(name) else { return nil }
        return (entry.pointee.pw_uid, entry.pointee.pw_gid)
    }

    /// The host's environment: services inherit it (PATH, HOME, LANG...), then their own `env`.
    static func hostEnvironment() -> [String: String] {
        var out: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let equals = text.firstIndex(of: "=") {
                out[String(text[..<equals])] = String(text[text.index(after: equals)...])
            }
            pointer += 1
        }
        return out
    }
}

/// One service's live state, owned by the supervisor actor (never shared outside it).
/// The output streams of one process that are still open; the exit handling waits until none is.
/// Loop-confined (the supervisor's executor), hence unchecked.
final class OutputStreams: @unchecked Sendable {
    private var open: Int
    private var actions: [() -> Void] = []

    init(open: Int) { self.open = open }

    func closeOne() {
        open -= 1
        if open == 0 {
            let actions = self.actions
            self.actions = []
            for action in actions { action() }
        }
    }

    /// Runs `action` once every stream has closed (at once if none is open).
    func whenClosed(_ action: @escaping () -> Void) {
        if open <= 0 { action() } else { actions.append(action) }
    }
}

final class ServiceRuntime {
    private(set) var definition: ServiceDefinition
    var machine: ServiceMachine
    var id: EntryID { definition.id }
    /// Meant to run: auto_start, a start by hand, or a restart under way.
    var wanted = false
    var removed = false
    /// A committed version's definition, waiting for the stop of the running one.
    var pendingDefinition: ServiceDefinition?
    var process: ChildProcess?
    var processID: PID?
    var lastPID: Int32?
    var lastStatus: TerminationStatus?
    var startedAt: ContinuousClock.Instant?
    /// Counts spawns; callbacks of an older process are ignored.
    var generation = 0
    /// Made on first use, one per kind, restarted in place.
    var timers: [ServiceMachine.Timer: LoopTimer] = [:]
    var watchdog: LoopTimer?
    var notify: DatagramReceiver?
    var notifyStatus: String?
    /// Readiness probes (`exec`) running now, by OS pid.
    var probes: [Int32: ChildProcess] = [:]
    var ring: LogRing
    var followers: [Int: AsyncStream<LogLine>.Continuation] = [:]
    var nextFollower = 0
    var stateWaiters: [CheckedContinuation<Void, Never>] = []
    var exitWaiters: [CheckedContinuation<Void, Never>] = []
    var announcedWait: [EntryID] = []

    init(definition: ServiceDefinition, logRingSize: Int) {
        self.definition = definition
        self.machine = ServiceMachine(policy: definition.restart, stopPolicy: definition.stop, startTimeout: definition.startTimeout,
                                      seed: UInt64(truncatingIfNeeded: definition.id.description.hashValue))
        self.ring = LogRing(capacity: logRingSize)
    }

    func timer(_ kind: ServiceMachine.Timer, loop: EventLoop) -> LoopTimer {
        if let timer = timers[kind] { return timer }
        let timer = LoopTimer(loop: loop)
        timers[kind] = timer
        return timer
    }

    /// Releases the timers' loop handles (the service is gone from the registry).
    func closeTimers() {
        for timer in timers.values { timer.assumeIsolated { $0.close() } }
        watchdog?.assumeIsolated { $0.close() }
        timers = [:]
        watchdog = nil
    }

    /// A new definition (the service is stopped): the restart history starts over.
    func replace(_ definition: ServiceDefinition) {
        self.definition = definition
        machine = ServiceMachine(policy: definition.restart, stopPolicy: definition.stop, startTimeout: definition.startTimeout,
                                 seed: UInt64(truncatingIfNeeded: definition.id.description.hashValue))
    }
}
