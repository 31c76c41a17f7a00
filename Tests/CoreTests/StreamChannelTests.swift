import Core
import Glibc
import Synchronization
import Testing

/// The first index where two byte arrays differ (or the shorter length), nil when equal.
func firstDifference(_ a: [UInt8], _ b: [UInt8]) -> Int? {
    if a == b { return nil }
    for i in 0..<min(a.count, b.count) where a[i] != b[i] { return i }
    return min(a.count, b.count)
}

/// Test payload that names its own position: every 8 bytes hold their offset (little endian),
/// so misplaced, lost or repeated data is told apart from any other.
/// (Filled through a raw buffer: megabytes of it are made on the test pool, in a debug build.)
func pattern(_ count: Int, offset: Int = 0) -> [UInt8] {
    [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
        for i in 0..<count {
            let position = UInt64(offset + i)
            buffer[i] = UInt8(truncatingIfNeeded: (position & ~7) >> (8 * (position & 7)))
        }
        initialized = count
    }
}

/// A listener on a free loopback port and one connection through it: (listener, client, server).
func connectedPair(on loop: EventLoop) async throws -> (StreamListener, StreamChannel, StreamChannel) {
    let listener = try await StreamListener.tcp(on: loop, host: "127.0.0.1", port: 0)
    let port = try #require(listener.localAddress?.port)
    let client = try await StreamChannel.connect(on: loop, host: "127.0.0.1", port: port)
    let server = try await listener.accept()
    return (listener, client, server)
}

@Suite struct StreamChannelTests {
    @Test func tcpEchoesTenMebibytesBothWays() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let listener = try await StreamListener.tcp(on: loop, host: "127.0.0.1", port: 0)
        let port = try #require(listener.localAddress?.port)
        let total = 10 * 1024 * 1024

        let server = Task {
            let connection = try await listener.accept()
            while let chunk = try await connection.read() { try await connection.write(chunk) }
            try await connection.shutdownWrite()
            await connection.close()
        }
        let client = try await StreamChannel.connect(on: loop, host: "127.0.0.1", port: port)
        let payload = pattern(total)
        let sender = Task {
            var offset = 0
            while offset < total {
                let end = min(offset + 100_000, total)
                try await client.write(Array(payload[offset..<end]))
                offset = end
            }
            try await client.shutdownWrite()
        }
        let echoed = try await client.readAll(limit: total)
        try await sender.value
        try await server.value
        #expect(echoed.count == total)
        #expect(firstDifference(echoed, payload) == nil)
        await client.close()
        await listener.close()
    }

    /// While a large write waits for a TCP peer that takes nothing, what is delivered stays
    /// put; once the peer takes some, it grows while the write is still under way: the measure of
    /// a send timeout's progress.
    @Test func bytesATCPPeerTakesCountAsDeliveredWhileTheWriteWaits() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let listener = try await StreamListener.tcp(on: loop, host: "127.0.0.1", port: 0)
        let port = try #require(listener.localAddress?.port)
        let peer = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        try #require(peer >= 0)
        defer { close(peer) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(peer, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(connected == 0)
        let channel = try await listener.accept()
        let writer = Task { try await channel.write(pattern(64 << 20)) }
        // The kernel's buffers are full and libuv holds the rest; then nothing moves.
        var before = -1
        while true {
            let now = await channel.deliveredByteCount
            if await channel.unsentByteCount > 0 && now == before { break }
            before = now
            try await loop.sleep(for: .milliseconds(20))
        }
        let queued = await channel.unsentByteCount
        var taken = 0
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while taken < 256 * 1024 {
            let count = read(peer, &buffer, min(buffer.count, 256 * 1024 - taken))
            try #require(count > 0)
            taken += count
        }
        var delivered = before
        for _ in 0..<200 where delivered == before {
            try await loop.sleep(for: .milliseconds(5))
            delivered = await channel.deliveredByteCount
        }
        #expect(delivered > before)
        #expect(await channel.unsentByteCount == queued)  // the write is still under way
        writer.cancel()
        await channel.close()
        _ = try? await writer.value
        await listener.close()
    }

    @Test func slowReaderKeepsBuffersBounded() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let listener = try await StreamListener.tcp(on: loop, host: "127.0.0.1", port: 0)
        let port = try #require(listener.localAddress?.port)
        let total = 64 * 1024 * 1024  // far more than the kernel's socket buffers can hold
        let client = try await StreamChannel.connect(on: loop, host: "127.0.0.1", port: port)
        let server = try await listener.accept()
        let block = pattern(1 << 20)
        let senderFinished = Atomic<Bool>(false)
        let sender = Task {
            for _ in 0..<(total / block.count) { try await client.write(block) }
            try await client.shutdownWrite()
            senderFinished.store(true, ordering: .sequentiallyConsistent)
        }
        var received = 0
        var maxUnread = 0
        var maxUnsent = 0
        var senderDoneEarly = false
        while let chunk = try await server.read() {
            received += chunk.count
            maxUnread = max(maxUnread, await server.unreadByteCount)
            maxUnsent = max(maxUnsent, await client.unsentByteCount)
            if received < 2 << 20 && senderFinished.load(ordering: .sequentiallyConsistent) {
                // Under 2 MiB consumed, the writer cannot have finished 64 MiB unless memory grew unbounded.
                senderDoneEarly = true
            }
        }
        try await sender.value
        let (readLimit, writeLimit) = await server.limits
        #expect(received == total)
        #expect(maxUnread <= readLimit + 64 * 1024)
        // A write returns once the queue is under the limit; one write of a block may be queued on top.
        #expect(maxUnsent <= writeLimit + block.count)
        #expect(!senderDoneEarly)
        await client.close()
        await server.close()
        await listener.close()
    }

    @Test func writerWaitsWhileNobodyReads() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let (listener, client, server) = try await connectedPair(on: loop)
        let block = pattern(1 << 20)
        let sent = Atomic<Int>(0)
        let sender = Task {
            for _ in 0..<64 {
                try await client.write(block)
                sent.add(1, ordering: .sequentiallyConsistent)
            }
        }
        // Nobody reads. Wait until the kernel's buffers are full and the channel holds the rest.
        while await client.unsentByteCount == 0 {
            try #require(sent.load(ordering: .sequentiallyConsistent) < 64, "all 64 MiB went out with nobody reading")
            try await loop.sleep(for: .milliseconds(5))
        }
        let stalledAt = sent.load(ordering: .sequentiallyConsistent)
        // The absence of progress can only be observed over time: give the writer 200 ms. Without
        // backpressure it would queue all 64 MiB in that time.
        try await loop.sleep(for: .milliseconds(200))
        let (_, writeLimit) = await client.limits
        #expect(sent.load(ordering: .sequentiallyConsistent) <= stalledAt + 1)
        #expect(await client.unsentByteCount <= writeLimit + block.count)
        await server.close()
        await client.close()
        await listener.close()
        await #expect(throws: UVError.self) { try await sender.value }
    }

    @Test func unixSocketRoundTripAndCleanup() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let path = "/tmp/roost-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        let listener = try await StreamListener.unix(on: loop, path: path, mode: 0o600)
        var info = stat()
        #expect(stat(path, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600)
        let server = Task {
            let connection = try await listener.accept()
            let request = try await connection.readAll()
            try await connection.write(Array("pong:".utf8) + request)
            try await connection.shutdownWrite()
        }
        let client = try await StreamChannel.connect(on: loop, unixPath: path)
        try await client.write(Array("ping".utf8))
        try await client.shutdownWrite()
        #expect(String(decoding: try await client.readAll(), as: UTF8.self) == "pong:ping")
        try await server.value
        await client.close()
        // A second listener on a live socket is refused.
        await #expect(throws: UVError.self) { _ = try await StreamListener.unix(on: loop, path: path) }
        await listener.close()
        _ = try await loop.submit { }  // let the close callback run
        #expect(access(path, F_OK) != 0)
    }

    @Test func connectToClosedPortFails() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let listener = try await StreamListener.tcp(on: loop, host: "127.0.0.1", port: 0)
        let port = try #require(listener.localAddress?.port)
        await listener.close()
        let error = await #expect(throws: UVError.self) {
            _ = try await StreamChannel.connect(on: loop, host: "127.0.0.1", port: port)
        }
        #expect(error?.name == "ECONNREFUSED")
    }

    @Test func closingListenerFailsWaitingAccept() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let listener = try await StreamListener.tcp(on: loop, host: "127.0.0.1", port: 0)
        let waiting = Task { try await listener.accept() }
        await listener.close()
        let error = await #expect(throws: UVError.self) { _ = try await waiting.value }
        #expect(error?.isClosed == true)
    }
}

@Suite struct StreamChannelDeliveryTests {
    /// Everything the peer sent, in order, then one nil at its end; bytes that arrived before the
    /// handler was given are not lost.
    @Test func deliversEveryChunkInOrderThenOneEnd() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let (listener, client, server) = try await connectedPair(on: loop)
        try await client.write(Array("early ".utf8))
        try await client.flush()
        // These wait in the socket until the handler starts the reading.
        let payload = pattern(256 * 1024)
        let received = Box()
        let ended = AsyncStream<Void>.makeStream()
        await server.startDelivery(into: received, ended: ended.continuation)
        try await client.write(payload)
        try await client.shutdownWrite()
        var iterator = ended.stream.makeAsyncIterator()
        await iterator.next()
        #expect(received.ends.load(ordering: .relaxed) == 1)
        let bytes = received.bytes.withLock { $0 }
        #expect(firstDifference(bytes, Array("early ".utf8) + payload) == nil)
        await client.close()
        await server.close()
        await listener.close()
    }

    /// Closing the channel ends the delivery too, once.
    @Test func closingEndsTheDelivery() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let (listener, client, server) = try await connectedPair(on: loop)
        let received = Box()
        let ended = AsyncStream<Void>.makeStream()
        await server.startDelivery(into: received, ended: ended.continuation)
        await server.close()
        var iterator = ended.stream.makeAsyncIterator()
        await iterator.next()
        #expect(received.ends.load(ordering: .relaxed) == 1)
        await client.close()
        await listener.close()
    }
}

private final class Box: Sendable {
    let bytes = Mutex<[UInt8]>([])
    let ends = Atomic<Int>(0)
}

extension StreamChannel {
    fileprivate func startDelivery(into box: Box, ended: AsyncStream<Void>.Continuation) {
        deliver { chunk in
            if let chunk {
                box.bytes.withLock { $0 += chunk }
            } else {
                box.ends.add(1, ordering: .relaxed)
                ended.yield()
            }
        }
    }
}
