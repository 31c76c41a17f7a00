import Core
import Glibc
import Testing

/// A cancelled wait ends at once and leaves its handle usable.
@Suite struct CancellationTests {
    @Test func cancelledReadEndsAndTheNextReadGetsTheData() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let (listener, client, server) = try await connectedPair(on: loop)
        let waiting = Task { try await server.read() }
        // Cancel whether or not the read has parked yet: both must end in CancellationError.
        waiting.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiting.value }
        try await client.write(Array("after".utf8))
        try await client.shutdownWrite()
        #expect(String(decoding: try await server.readAll(), as: UTF8.self) == "after")
        await client.close()
        await server.close()
        await listener.close()
    }

    @Test func cancelledAcceptLeavesTheListenerAccepting() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let listener = try await StreamListener.tcp(on: loop, host: "127.0.0.1", port: 0)
        let port = try #require(listener.localAddress?.port)
        let waiting = Task { try await listener.accept() }
        waiting.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiting.value }
        let client = try await StreamChannel.connect(on: loop, host: "127.0.0.1", port: port)
        let server = try await listener.accept()
        #expect(server.remoteAddress?.host == "127.0.0.1")
        await client.close()
        await server.close()
        await listener.close()
    }

    @Test func cancelledWaitLeavesTheChildRunningAndWaitable() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        var options = ProcessOptions(["/bin/cat"])
        options.stdin = .pipe
        options.stdout = .null
        let child = try await ChildProcess.spawn(on: loop, options)
        let waiting = Task { try await child.wait() }
        waiting.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiting.value }
        #expect(await child.exitStatus == nil)
        try await #require(child.stdin).shutdownWrite()  // end of input: cat exits 0
        #expect(try await child.wait() == TerminationStatus(code: 0, signal: 0))
    }

    @Test func cancelledWriterStopsWaitingButItsBytesStillArrive() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let (listener, client, server) = try await connectedPair(on: loop)
        let total = 32 << 20  // far more than socket buffers and the write limit: the writer parks
        let payload = pattern(total)
        let writer = Task { try await client.write(payload) }
        while await client.unsentByteCount == 0 { try await loop.sleep(for: .milliseconds(1)) }
        writer.cancel()
        await #expect(throws: CancellationError.self) { try await writer.value }
        // The queued bytes go out as the server reads; end of stream follows them.
        let reader = Task { try await server.readAll() }
        try await client.shutdownWrite()
        let received = try await reader.value
        #expect(received.count == total)
        #expect(firstDifference(received, payload) == nil)
        await client.close()
        await server.close()
        await listener.close()
    }
}
