import Core
import Testing
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Sends `text` as one datagram to the unix socket at `path`; returns false when nobody is bound there.
private func send(_ text: String, to path: String) -> Bool {
    let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    withUnsafeMutableBytes(of: &address.sun_path) { raw in
        let bytes = Array(path.utf8)
        raw.copyBytes(from: bytes)
        raw[bytes.count] = 0
    }
    let bytes = Array(text.utf8)
    let sent = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            sendto(fd, bytes, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
    }
    return sent == bytes.count
}

@Suite struct DatagramReceiverTests {
    @Test func datagramsArriveInOrderAndCloseRemovesTheSocket() async throws {
        let folder = try #require(makeTemporaryDirectory())
        defer { removeTree(folder) }
        let loop = EventLoop()
        defer { loop.shutdown() }
        let path = folder + "/notify.sock"
        let receiver = try await DatagramReceiver.bind(on: loop, path: path)
        try #require(send("READY=1", to: path))
        try #require(send("STATUS=warm", to: path))
        var iterator = receiver.datagrams.makeAsyncIterator()
        #expect(await iterator.next().map { String(decoding: $0, as: UTF8.self) } == "READY=1")
        #expect(await iterator.next().map { String(decoding: $0, as: UTF8.self) } == "STATUS=warm")
        await receiver.close()
        #expect(await iterator.next() == nil)
        #expect(access(path, F_OK) != 0)
    }

    @Test func closingAnOlderReceiverLeavesANewerOneAtTheSamePath() async throws {
        let folder = try #require(makeTemporaryDirectory())
        defer { removeTree(folder) }
        let loop = EventLoop()
        defer { loop.shutdown() }
        let path = folder + "/notify.sock"
        // A service's next run binds its socket while the previous run's receiver still closes.
        let old = try await DatagramReceiver.bind(on: loop, path: path)
        let new = try await DatagramReceiver.bind(on: loop, path: path)
        await old.close()
        for await _ in old.datagrams {}  // ends once the old socket is closed and its file handled
        #expect(access(path, F_OK) == 0)
        try #require(send("READY=1", to: path))
        var iterator = new.datagrams.makeAsyncIterator()
        #expect(await iterator.next().map { String(decoding: $0, as: UTF8.self) } == "READY=1")
        await new.close()
        #expect(await iterator.next() == nil)
        #expect(access(path, F_OK) != 0)
    }
}
