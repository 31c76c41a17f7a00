import Components
import Core
import Glibc
import Logging
import Synchronization
import Testing

/// Records what happens to it into a shared log.
struct RecordingComponent: Component {
    let id: String
    let dependencies: [String]
    let log: Journal
    var failStart = false

    struct Failure: Error, CustomStringConvertible { var description: String { "deliberate failure" } }

    func load(_ context: AppContext) async throws { log.append("load \(id)") }
    func start(_ context: AppContext) async throws {
        #expect(context.isSealed)
        #expect(try context.require(.dispatcher).isFrozen)
        if failStart { throw Failure() }
        log.append("start \(id)")
    }
    func stop(_ context: AppContext) async { log.append("stop \(id)") }
}

final class Journal: Sendable {
    private let entries = Mutex<[String]>([])
    func append(_ entry: String) { entries.withLock { $0.append(entry) } }
    var all: [String] { entries.withLock { $0 } }
}

/// Collects log messages in memory.
struct MemoryLogHandler: LogHandler {
    let journal: Journal
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }
    func log(event: LogEvent) { journal.append("\(event.level) \(event.message)") }
}

/// Runs a host on `folder`'s registry with the extra `components`; its log goes to `messages`.
/// Only for boots that fail: a host that boots would wait for a signal.
private func runHost(in folder: TemporaryFolder, components: [any Component], messages: Journal) async -> Int32 {
    let host = Host(configuration: HostConfiguration(registryPath: folder.path + "/registry",
                                                     statePath: folder.path + "/state",
                                                     extraComponents: components),
                    logger: Logger(label: "test") { _ in MemoryLogHandler(journal: messages) })
    return await host.run()
}

@Suite struct HostBootTests {
    @Test func failedStartStopsWhatStartedAndExitsOne() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        mkdir(folder.path + "/registry", 0o755)
        let log = Journal()
        let messages = Journal()
        let components: [any Component] = [
            RecordingComponent(id: "a", dependencies: ["dispatcher"], log: log),
            RecordingComponent(id: "b", dependencies: ["a"], log: log, failStart: true),
        ]
        let code = await runHost(in: folder, components: components, messages: messages)
        #expect(code == 1)
        #expect(log.all == ["load a", "load b", "start a", "stop b", "stop a"])
        let failure = messages.all.first { $0.hasPrefix("error boot failed") }
        #expect(failure?.contains("component 'b' failed to start: deliberate failure") == true)
    }

    @Test func dependencyCycleIsReportedWithItsPath() async throws {
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        mkdir(folder.path + "/registry", 0o755)
        let log = Journal()
        let messages = Journal()
        let components: [any Component] = [
            RecordingComponent(id: "x", dependencies: ["y"], log: log),
            RecordingComponent(id: "y", dependencies: ["x"], log: log),
        ]
        #expect(await runHost(in: folder, components: components, messages: messages) == 1)
        #expect(log.all.isEmpty)
        #expect(messages.all.contains { $0.contains("x -> y -> x") })
    }
}
