import CLibUV
import CSpawn
import DequeModule

#if canImport(Glibc)
import Glibc
#endif

/// A stream handle passed from the code that created it to the actor that will own it.
/// @unchecked Sendable: only ever created and used on the loop thread.
struct UnsafeStream: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<uv_stream_t>
    init<T>(_ handle: UnsafeMutablePointer<T>) { pointer = LoopHandle.stream(handle) }
}

/// An IP address and port, as text (`127.0.0.1`, `::1`).
/// The process at the other end of a unix socket.
public struct PeerCredentials: Sendable, Hashable {
    public let pid: Int32
    public let uid: UInt32
    public let gid: UInt32
}

public struct SocketAddress: Sendable, Hashable, CustomStringConvertible {
    public let host: String
    public let port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }

    /// The C form of a numeric address; `localhost` is taken as 127.0.0.1 (no DNS on the loop).
    func storage() throws(UVError) -> sockaddr_storage {
        var storage = sockaddr_storage()
        let name = host == "localhost" ? "127.0.0.1" : host
        let rc: Int32 = withUnsafeMutablePointer(to: &storage) { p in
            if name.contains(":") {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { uv_ip6_addr(name, Int32(port), $0) }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { uv_ip4_addr(name, Int32(port), $0) }
        }
        try UVError.check(rc, "address '\(host)'")
        return storage
    }

    private static func string(_ text: [CChar]) -> String {
        String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    init?(_ storage: sockaddr_storage) {
        var storage = storage
        var text = [CChar](repeating: 0, count: 64)
        switch Int32(storage.ss_family) {
        case AF_INET:
            let port = withUnsafePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { a in
                    _ = uv_ip4_name(a, &text, text.count)
                    return Int(UInt16(bigEndian: a.pointee.sin_port))
                }
            }
            self.init(host: SocketAddress.string(text), port: port)
        case AF_INET6:
            let port = withUnsafePointer(to: &storage) { p in
                p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { a in
                    _ = uv_ip6_name(a, &text, text.count)
                    return Int(UInt16(bigEndian: a.pointee.sin6_port))
                }
            }
            self.init(host: SocketAddress.string(text), port: port)
        default:
            return nil
        }
    }
}

/// A byte stream on the loop: a TCP connection, a unix-socket connection, or a pipe.
///
/// Contract:
/// - One reader at a time: `read()` returns the next chunk in order, `nil` at end of stream.
///   Reading starts at the first `read()`; while more than `readLimit` bytes wait unread, the
///   channel stops reading from the socket, so a slow consumer never grows memory without bound.
/// - `write` queues the bytes and returns once fewer than `writeLimit` bytes wait to go out; a
///   slow peer therefore suspends the writer instead of growing the queue. Writes go out in order.
/// - `close()` may be called at any time; waiting readers and writers then fail with
///   `UVError.closed`. The channel also closes with its loop.
/// - Cancelling the task of a waiting `read` or `write` ends that wait with `CancellationError`;
///   the channel stays usable, no byte already read is lost, and bytes a cancelled `write` had
///   handed over are still sent.
public actor StreamChannel {
    public enum Kind: Sendable { case tcp, unix, pipe }

    public nonisolated let loop: EventLoop
    public nonisolated let kind: Kind
    /// For TCP: the peer's address, when known.
    public nonisolated let remoteAddress: SocketAddress?
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    public static let defaultReadLimit = 256 * 1024
    public static let defaultWriteLimit = 256 * 1024
    /// The most one read returns: the loop's shared read buffer.
    static let readChunk = 64 * 1024

    private var handle: UnsafeMutablePointer<uv_stream_t>?
    private let readLimit: Int
    private let writeLimit: Int

    private var chunks = Deque<[UInt8]>()
    private var buffered = 0
    private var reading = false
    private var atEOF = false
    private var readError: UVError?
    private var readers = Waiters<[UInt8]?>()
    /// The consumer of `deliver(to:)`, while it lasts.
    private var deliverer: (@Sendable ([UInt8]?) -> Void)?

    private var queuedWrites = 0
    /// Every byte ever handed to `write`.
    private var acceptedBytes = 0
    private var writeError: UVError?
    private var drainWaiters = Waiters<Void>()
    private var closeWaiters: [CheckedContinuation<Void, Never>] = []

    /// Wraps an initialised, open stream handle. Loop thread only.
    init(loop: EventLoop, kind: Kind, handle: UnsafeStream,
         remoteAddress: SocketAddress? = nil,
         readLimit: Int = StreamChannel.defaultReadLimit, writeLimit: Int = StreamChannel.defaultWriteLimit) {
        loop.preconditionInLoop()
        self.loop = loop
        self.kind = kind
        self.handle = handle.pointer
        self.remoteAddress = remoteAddress
        self.readLimit = max(readLimit, StreamChannel.readChunk)
        self.writeLimit = max(writeLimit, 1)
        LoopHandle.attach(handle.pointer, owner: self) { [self] in
            assumeIsolated { $0.handleClosed() }
        }
    }

    public var isOpen: Bool { handle != nil }
    /// Bytes read from the socket that the consumer has not taken yet.
    public var unreadByteCount: Int { buffered }
    /// Bytes handed to `write` that have not reached the kernel yet.
    public var unsentByteCount: Int { queuedWrites }
    /// What the peer has taken so far: the bytes handed to the kernel (also parts of one large
    /// write, which libuv hands over as the socket has room), less those still in the socket's
    /// send queue. For TCP that queue holds the bytes not yet acknowledged, so this grows as
    /// soon as the peer's kernel takes some, before the socket is reported writable again; for a
    /// unix socket the kernel counts the queue's memory, not its bytes, and only growth means
    /// something; a pipe has no such queue.
    public var deliveredByteCount: Int {
        guard let handle else { return acceptedBytes }
        let handedOver = acceptedBytes - uv_stream_get_write_queue_size(handle)
        var descriptor: uv_os_fd_t = -1
        guard uv_fileno(UnsafePointer(OpaquePointer(handle)), &descriptor) == 0 else { return handedOver }
        let unsent = roost_socket_unsent(descriptor)
        return unsent >= 0 ? handedOver - Int(unsent) : handedOver  // a pipe has no such queue
    }
    public var limits: (read: Int, write: Int) { (readLimit, writeLimit) }

    /// Who is at the other end of a unix socket, as the kernel saw it at connect time
    /// (`SO_PEERCRED`); nil for other kinds of stream, or once closed.
    public func peerCredentials() -> PeerCredentials? {
        guard kind == .unix, let handle else { return nil }
        var fd: uv_os_fd_t = -1
        guard uv_fileno(UnsafeRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self), &fd) == 0 else { return nil }
        // `struct ucred` (pid, uid, gid: three 32-bit fields) is hidden behind _GNU_SOURCE in
        // glibc's headers, so it is read as three words.
        var words: (UInt32, UInt32, UInt32) = (0, 0, 0)
        var length = socklen_t(MemoryLayout<(UInt32, UInt32, UInt32)>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &words, &length) == 0, length == 12 else { return nil }
        return PeerCredentials(pid: Int32(bitPattern: words.0), uid: words.1, gid: words.2)
    }

    // MARK: Reading

    /// The next chunk of bytes, or `nil` once the peer has closed its side.
    public func read() async throws -> [UInt8]? {
        precondition(deliverer == nil, "StreamChannel.read() called on a channel that delivers to a handler")
        if let ready = takeReadable() { return try ready.get() }
        precondition(readers.isEmpty, "StreamChannel.read() called while another read is waiting")
        let id = readers.reserveID()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                // Checked again here: a callback may have run since the check above, and a waiter
                // must never be parked while a chunk, the end or an error is already there.
                if let ready = takeReadable() {
                    continuation.resume(with: ready)
                    return
                }
                if let handle, !reading {
                    do { try startReading(handle) } catch {
                        continuation.resume(throwing: error)
                        return
                    }
                }
                readers.park(id, continuation)
            }
        } onCancel: {
            loop.execute { self.assumeIsolated { $0.readers.cancel(id) } }
        }
    }

    /// Hands every chunk to `handler` as it arrives, on the loop thread, then `nil` once: at the
    /// end of the stream, after a read error, or when the channel closes. No task waits per
    /// channel, so a consumer that keeps up by itself (it runs on the loop and does not wait)
    /// costs no memory while the peer is quiet: the supervisor reads every service's output so.
    /// Instead of `read()`, not alongside it; call once.
    public func deliver(to handler: @escaping @Sendable ([UInt8]?) -> Void) {
        precondition(deliverer == nil && readers.isEmpty, "StreamChannel.deliver(to:) called twice or while a read waits")
        while let chunk = chunks.popFirst() { handler(chunk) }
        buffered = 0
        if atEOF || readError != nil || handle == nil {
            handler(nil)
            return
        }
        deliverer = handler
        if let handle, !reading {
            do { try startReading(handle) } catch {
                deliverer = nil
                handler(nil)
            }
        }
    }

    /// Ends a delivery: the last call, with nil.
    private func endDelivery() {
        guard let deliverer else { return }
        self.deliverer = nil
        deliverer(nil)
    }

    /// What a read can return without waiting, if anything.
    private func takeReadable() -> Result<[UInt8]?, Error>? {
        if let chunk = chunks.popFirst() {
            buffered -= chunk.count
            resumeReadingIfDrained()
            return .success(chunk)
        }
        if let readError { return .failure(readError) }
        if atEOF { return .success(nil) }
        if handle == nil { return .failure(UVError.closed("read")) }
        return nil
    }

    /// Reads until end of stream or until more than `limit` bytes arrived (then throws).
    public func readAll(limit: Int = .max) async throws -> [UInt8] {
        var all: [UInt8] = []
        while let chunk = try await read() {
            all += chunk
            if all.count > limit { throw UVError(UV_E2BIG.rawValue, "read: more than \(limit) bytes") }
        }
        return all
    }

    private func startReading(_ handle: UnsafeMutablePointer<uv_stream_t>) throws(UVError) {
        let rc = uv_read_start(handle, { h, _, buf in
            let channel = LoopHandle.owner(of: h!, as: StreamChannel.self)
            let memory = channel.loop.readScratch
            buf!.pointee = uv_buf_init(memory.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(memory.count))
        }, { h, nread, buf in
            let channel = LoopHandle.owner(of: h!, as: StreamChannel.self)
            let chunk = nread > 0 ? [UInt8](UnsafeRawBufferPointer(start: buf!.pointee.base, count: nread)) : []
            channel.assumeIsolated { $0.didRead(nread, chunk) }
        })
        try UVError.check(rc, "uv_read_start")
        reading = true
    }

    private func didRead(_ nread: Int, _ chunk: [UInt8]) {
        if let deliverer {
            if nread > 0 {
                deliverer(chunk)
            } else if nread < 0 {
                stopReading()
                if Int32(nread) == UV_EOF.rawValue { atEOF = true } else { readError = UVError(Int32(nread), "read") }
                endDelivery()
            }
            return
        }
        if nread > 0 {
            if let reader = readers.popFirst() {
                reader.resume(returning: chunk)
            } else {
                chunks.append(chunk)
                buffered += nread
                if buffered >= readLimit { stopReading() }
            }
        } else if nread < 0 {
            stopReading()
            if Int32(nread) == UV_EOF.rawValue {
                atEOF = true
            } else {
                readError = UVError(Int32(nread), "read")
            }
            if let reader = readers.popFirst() {
                if let readError { reader.resume(throwing: readError) } else { reader.resume(returning: nil) }
            }
        }
    }

    private func stopReading() {
        if reading, let handle { uv_read_stop(handle) }
        reading = false
    }

    private func resumeReadingIfDrained() {
        guard !reading, !atEOF, readError == nil, let handle, buffered <= readLimit / 2 else { return }
        // A failure here surfaces at the next read, which restarts reading itself.
        try? startReading(handle)
    }

    // MARK: Writing

    /// Queues `bytes`; returns once the queue is below `writeLimit` (so the peer's pace sets the writer's).
    public func write(_ bytes: [UInt8]) async throws {
        if let writeError { throw writeError }
        guard let handle else { throw UVError.closed("write") }
        if bytes.isEmpty { return }
        acceptedBytes += bytes.count
        var offset = 0
        if queuedWrites == 0 {
            // Nothing queued: try the socket directly, which saves a copy when it has room.
            let written = bytes.withUnsafeBytes { raw -> Int32 in
                var buf = uv_buf_init(UnsafeMutablePointer(mutating: raw.baseAddress!.assumingMemoryBound(to: CChar.self)),
                                      UInt32(raw.count))
                return uv_try_write(handle, &buf, 1)
            }
            if written > 0 {
                offset = Int(written)
            } else if written != UV_EAGAIN.rawValue && written != UV_ENOSYS.rawValue {
                throw UVError(written, "write")
            }
            if offset == bytes.count { return }
        }
        let request = WriteRequest(bytes: bytes[offset...], channel: self)
        let rc = uv_write(request.request, handle, &request.buf, 1) { req, status in
            let request = Unmanaged<WriteRequest>.fromOpaque(req!.pointee.data).takeRetainedValue()
            let count = request.count
            request.channel.assumeIsolated { $0.didWrite(count, status) }
        }
        guard rc == 0 else {
            Unmanaged.passUnretained(request).release()
            throw UVError(rc, "uv_write")
        }
        queuedWrites += request.count
        if queuedWrites > writeLimit { try await waitForDrain(until: writeLimit) }
    }

    private func didWrite(_ count: Int, _ status: Int32) {
        queuedWrites -= count
        if status < 0, writeError == nil { writeError = UVError(status, "write") }
        if queuedWrites <= writeLimit / 2 || writeError != nil {
            for waiter in drainWaiters.takeAll() {
                if let writeError { waiter.resume(throwing: writeError) } else { waiter.resume() }
            }
        }
    }

    /// Waits until everything written so far has gone to the kernel.
    public func flush() async throws {
        while queuedWrites > 0 { try await waitForDrain(until: 0) }
        if let writeError { throw writeError }
    }

    /// Parks the writer until at most `limit` bytes are queued (or writing failed).
    private func waitForDrain(until limit: Int) async throws {
        let id = drainWaiters.reserveID()
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
                // Checked inside the body so a completion that ran meanwhile cannot strand the waiter.
                if let writeError { continuation.resume(throwing: writeError) }
                else if queuedWrites <= limit { continuation.resume() }
                else { drainWaiters.park(id, continuation) }
            }
        } onCancel: {
            loop.execute { self.assumeIsolated { $0.drainWaiters.cancel(id) } }
        }
    }

    /// Sends end-of-stream after the queued writes (half-close); reading stays possible.
    public func shutdownWrite() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, Error>) in
            guard let handle else { continuation.resume(throwing: UVError.closed("shutdown")); return }
            let request = ShutdownRequest()
            request.continuation = continuation
            let rc = uv_shutdown(request.request, handle) { req, status in
                let request = Unmanaged<ShutdownRequest>.fromOpaque(req!.pointee.data).takeRetainedValue()
                if status < 0 {
                    request.continuation?.resume(throwing: UVError(status, "shutdown"))
                } else {
                    request.continuation?.resume()
                }
            }
            if rc < 0 {
                Unmanaged.passUnretained(request).release()
                continuation.resume(throwing: UVError(rc, "uv_shutdown"))
            }
        }
    }

    // MARK: Closing

    /// Closes the channel; pending and later reads and writes fail with `UVError.closed`.
    public func close() {
        if let handle { LoopHandle.close(handle) }
    }

    /// Closes the channel and waits until libuv has released it.
    public func closeAndWait() async {
        close()
        await withCheckedContinuation { continuation in
            if handle == nil { continuation.resume() } else { closeWaiters.append(continuation) }
        }
    }

    private func handleClosed() {
        handle = nil
        reading = false
        endDelivery()
        for reader in readers.takeAll() { reader.resume(throwing: readError ?? UVError.closed("read")) }
        if writeError == nil { writeError = UVError.closed("write") }
        for waiter in drainWaiters.takeAll() { waiter.resume(throwing: writeError!) }
        let closers = closeWaiters
        closeWaiters.removeAll()
        for closer in closers { closer.resume() }
    }
}

/// A `uv_write_t` and the bytes it sends; retained by the request until its callback.
private final class WriteRequest {
    let request = UnsafeMutablePointer<uv_write_t>.allocate(capacity: 1)
    let memory: UnsafeMutableRawBufferPointer
    var buf: uv_buf_t
    let channel: StreamChannel
    var count: Int { memory.count }

    init(bytes: ArraySlice<UInt8>, channel: StreamChannel) {
        memory = .allocate(byteCount: bytes.count, alignment: 1)
        memory.copyBytes(from: bytes)
        buf = uv_buf_init(memory.baseAddress!.assumingMemoryBound(to: CChar.self), UInt32(memory.count))
        self.channel = channel
        request.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    deinit {
        memory.deallocate()
        request.deallocate()
    }
}

// @unchecked Sendable: created, used and released on the loop thread only (inside the channel's
// isolation and libuv's callback on the same thread).
private final class ShutdownRequest: @unchecked Sendable {
    let request = UnsafeMutablePointer<uv_shutdown_t>.allocate(capacity: 1)
    var continuation: CheckedContinuation<Void, Error>?

    init() { request.pointee.data = Unmanaged.passRetained(self).toOpaque() }
    deinit { request.deallocate() }
}
