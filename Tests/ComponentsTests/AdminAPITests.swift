import Components
import Core
import Glibc
import HTTPService
import Logging
import Registry
import Testing

/// The admin API served over a unix socket in a temporary folder, on its own loop and bus.
final class AdminFixture: Sendable {
    let loop = EventLoop(name: "admin-test")
    let folder: TemporaryFolder
    let bus: EventBus
    let registry: RegistryService
    let reloader: RegistryReloader
    let server: HTTPServer
    let running: Task<Void, Never>
    var socketPath: String { folder.path + "/admin.sock" }

    init(busBufferSize: Int = 1024) async throws {
        folder = try TemporaryFolder()
        mkdir(folder.path + "/registry", 0o755)
        bus = EventBus(bufferSize: busBufferSize)
        registry = try RegistryService(
            kinds: RegistryKinds.standard(), history: try HistoryStore.open(path: folder.path + "/registry.db"), bus: bus)
        reloader = RegistryReloader(
            loop: loop, folder: RegistryFolder(root: folder.path + "/registry"), registry: registry,
            logger: Logger(label: "test"))
        let api = AdminAPI(registry: registry, reloader: reloader, bus: bus)
        let listener = try await StreamListener.unix(on: loop, path: folder.path + "/admin.sock")
        let server = HTTPServer(listener: listener) { request in await api.handle(request, user: nil) }
        self.server = server
        running = Task { await server.run() }
    }

    func close() async {
        await server.shutdown(gracePeriod: .seconds(5))
        await running.value
        await reloader.stop()
        await loop.shutdownGracefully()
        folder.remove()
    }

    /// A blocking socket connected to the API, for a client that misbehaves on purpose.
    func rawClient() throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(fd >= 0)
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (i, byte) in socketPath.utf8.enumerated() { raw[i] = byte }
        }
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        try #require(rc == 0)
        return fd
    }
}

@Suite(.timeLimit(.minutes(1))) struct AdminAPITests {
    /// ADMIN-API.md: a client that reads too slowly loses its own oldest events and the host never
    /// waits for it. The host must not keep every event for it either: once its socket is full,
    /// its subscription overflows (reported as `eventbus.overflow`) like any slow subscriber's.
    @Test func anEventStreamClientThatStopsReadingOverflowsInsteadOfGrowingTheHost() async throws {
        let fixture = try await AdminFixture(busBufferSize: 64)
        // The reader follows the test topic and overflow reports, and keeps up.
        let reader = try await StreamChannel.connect(on: fixture.loop, unixPath: fixture.socketPath)
        let response = try await HTTPClient.stream(
            HTTPRequest(method: "GET", target: "/v1/events?pattern=test.**&pattern=eventbus.overflow"), over: reader)
        try #require(response.head.status == 200)
        let (seen, sink) = AsyncStream.makeStream(of: JSON.self)
        let reading = Task {
            var parser = SSEParser()
            do {
                for try await chunk in response.body {
                    for event in parser.feed(chunk) { if let json = try? JSON.parse(event.data) { sink.yield(json) } }
                }
            } catch {}
            sink.finish()
        }
        var events = seen.makeAsyncIterator()

        // The slow client asks for the same events and never reads a byte of them.
        let slow = try fixture.rawClient()
        let request = Array("GET /v1/events?pattern=test.** HTTP/1.1\r\nHost: roost\r\n\r\n".utf8)
        try #require(request.withUnsafeBytes { write(slow, $0.baseAddress, $0.count) } == request.count)
        // Its subscription exists once the bus has two; publishing starts after that.
        while fixture.bus.subscriberCount < 2 { await Task.yield() }

        // Chunks of 16 events of 8 KiB, each read by the reader before the next is published: 1,600
        // events (12.5 MiB) are far more than the slow client's socket and buffer can hold.
        let padding = String(repeating: "x", count: 8 * 1024)
        var overflowed: JSON?
        chunks: for chunk in 0..<100 {
            for i in 0..<16 {
                fixture.bus.publish(topic: "test.tick", data: ["n": .int(Int64(chunk * 16 + i)), "padding": .string(padding)])
            }
            while let event = await events.next() {
                if event["topic"] == .string("eventbus.overflow") {
                    overflowed = event
                    break chunks
                }
                if event["data"]?["n"] == .int(Int64(chunk * 16 + 15)) { continue chunks }
            }
            Issue.record("the reader's stream ended")
            break
        }
        #expect(overflowed?["data"]?["name"] == .string("admin.events"), "the slow client's events piled up in the host")
        let slowStats = fixture.bus.stats().filter { $0.name == "admin.events" }.map(\.buffered)
        #expect(slowStats.allSatisfy { $0 <= 64 })

        // Gone mid-stream, with its socket full: its subscription ends (polled: no event says so).
        close(slow)
        var polls = 0
        while fixture.bus.subscriberCount > 1, polls < 1000 {
            try await Task.sleep(for: .milliseconds(5))
            polls += 1
        }
        #expect(fixture.bus.subscriberCount == 1, "the gone client's subscription is still on the bus")
        reading.cancel()
        await reader.close()
        await fixture.close()
    }

    /// A client that leaves while its stream waits for the next event ends its subscription.
    @Test func anIdleEventStreamClientThatLeavesEndsItsSubscription() async throws {
        let fixture = try await AdminFixture()
        let client = try await StreamChannel.connect(on: fixture.loop, unixPath: fixture.socketPath)
        try await client.write(Array("GET /v1/events HTTP/1.1\r\nHost: roost\r\n\r\n".utf8))
        let head = try await client.read()
        try #require(head?.isEmpty == false)  // the response head: the stream is open
        #expect(fixture.bus.subscriberCount == 1)
        await client.closeAndWait()
        var polls = 0
        while fixture.bus.subscriberCount > 0, polls < 1000 {
            try await Task.sleep(for: .milliseconds(5))
            polls += 1
        }
        #expect(fixture.bus.subscriberCount == 0)
        await fixture.close()
    }
}
