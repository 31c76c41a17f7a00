import CLibUV
import DequeModule

#if canImport(Glibc)
import Glibc
#endif

/// A listening TCP or unix-domain socket whose accepted connections are `StreamChannel`s.
///
/// Contract: `accept()` returns connections in arrival order. Connections accepted by the kernel
/// while nobody calls `accept()` wait in a queue of at most `backlog`; beyond that new ones are
/// closed at once (counted in `refused`) rather than held without bound. `close()` stops listening,
/// fails waiting `accept()` calls with `UVError.closed`, and closes queued connections; for a unix
/// socket it removes the socket file it created.
public actor StreamListener {
    public nonisolated let loop: EventLoop
    public nonisolated let kind: StreamChannel.Kind
    /// For TCP: the bound address (with the real port when 0 was asked for).
    public nonisolated let localAddress: SocketAddress?
    /// For a unix socket: its path.
    public nonisolated let path: String?
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    private var handle: UnsafeMutablePointer<uv_stream_t>?
    private let backlog: Int
    private var pending = Deque<StreamChannel>()
    private var acceptors = Waiters<StreamChannel>()
    /// Connections closed at once because the accept queue was full.
    public private(set) var refused = 0

    private init(loop: EventLoop, kind: StreamChannel.Kind, handle: UnsafeStream,
                 localAddress: SocketAddress?, path: String?, backlog: Int) {
        self.loop = loop
        self.kind = kind
        self.handle = handle.pointer
        self.localAddress = localAddress
        self.path = path
        self.backlog = backlog
    }

    /// Listens on `host:port` (numeric address; port 0 picks a free one).
    public static func tcp(on loop: EventLoop, host: String, port: Int, backlog: Int = 511) async throws -> StreamListener {
        let address = SocketAddress(host: host, port: port)
        let storage = try address.storage()
        return try await loop.submit {
            let h = LoopHandle.allocate(uv_tcp_t.self)
            let rc = uv_tcp_init(loop.uv, h)
            guard rc == 0 else { LoopHandle.free(h); throw UVError(rc, "uv_tcp_init") }
            var storage = storage
            let bound = withUnsafePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_bind(h, $0, 0) }
            }
            var local = sockaddr_storage()
            var length = Int32(MemoryLayout<sockaddr_storage>.size)
            let named = withUnsafeMutablePointer(to: &local) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getsockname(h, $0, &length) }
            }
            let listener = StreamListener(loop: loop, kind: .tcp, handle: UnsafeStream(h),
                                          localAddress: named == 0 ? SocketAddress(local) : nil,
                                          path: nil, backlog: backlog)
            try listener.assumeIsolated { try $0.listen(bindResult: bound, what: "tcp \(address)") }
            return listener
        }
    }

    /// Listens on a unix-domain socket at `path`, created with permission `mode` (e.g. 0o600).
    /// A stale socket file at `path` (nobody listening) is replaced; a live one is an error.
    public static func unix(on loop: EventLoop, path: String, mode: mode_t = 0o600, backlog: Int = 511) async throws -> StreamListener {
        try removeStaleSocket(at: path)
        return try await loop.submit {
            let h = LoopHandle.allocate(uv_pipe_t.self)
            let rc = uv_pipe_init(loop.uv, h, 0)
            guard rc == 0 else { LoopHandle.free(h); throw UVError(rc, "uv_pipe_init") }
            // chmod after bind rather than a umask around it: the umask is process-wide and would
            // change files other threads create meanwhile. The socket should sit in a 0700 folder
            // (the state folder is), which covers the moment before the chmod.
            var bound = uv_pipe_bind(h, path)
            if bound == 0, chmod(path, mode) != 0 { bound = -errno }
            let listener = StreamListener(loop: loop, kind: .unix, handle: UnsafeStream(h),
                                          localAddress: nil, path: bound == 0 ? path : nil, backlog: backlog)
            try listener.assumeIsolated { try $0.listen(bindResult: bound, what: "unix socket \(path)") }
            return listener
        }
    }

    private static func removeStaleSocket(at path: String) throws(UVError) {
        var info = stat()
        guard lstat(path, &info) == 0 else { return }
        guard (info.st_mode & S_IFMT) == S_IFSOCK else {
            throw UVError(UV_EEXIST.rawValue, "unix socket \(path): a file that is not a socket is in the way")
        }
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard probe >= 0 else { return }
        defer { Glibc.close(probe) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8.prefix(raw.count - 1))
            raw.copyBytes(from: bytes)
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(probe, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        if connected == 0 {
            throw UVError(UV_EADDRINUSE.rawValue, "unix socket \(path): another process is listening")
        }
        unlink(path)
    }

    private func listen(bindResult: Int32, what: String) throws(UVError) {
        guard let handle else { throw UVError.closed("listen") }
        LoopHandle.attach(handle, owner: self) { [self] in
            assumeIsolated { $0.handleClosed() }
        }
        do {
            try UVError.check(bindResult, "bind \(what)")
            try UVError.check(uv_listen(handle, Int32(backlog)) { server, status in
                let listener = LoopHandle.owner(of: server!, as: StreamListener.self)
                listener.assumeIsolated { $0.incoming(status) }
            }, "listen \(what)")
        } catch {
            close()
            throw error
        }
    }

    private func incoming(_ status: Int32) {
        guard status == 0, let handle else { return }
        let client: UnsafeStream
        var remote: SocketAddress?
        switch kind {
        case .tcp:
            let h = LoopHandle.allocate(uv_tcp_t.self)
            uv_tcp_init(loop.uv, h)
            client = UnsafeStream(h)
        case .unix, .pipe:
            let h = LoopHandle.allocate(uv_pipe_t.self)
            uv_pipe_init(loop.uv, h, 0)
            client = UnsafeStream(h)
        }
        let accepted = uv_accept(handle, client.pointer)
        if kind == .tcp, accepted == 0 {
            let tcp = UnsafeMutableRawPointer(client.pointer).assumingMemoryBound(to: uv_tcp_t.self)
            uv_tcp_nodelay(tcp, 1)
            var peer = sockaddr_storage()
            var length = Int32(MemoryLayout<sockaddr_storage>.size)
            let named = withUnsafeMutablePointer(to: &peer) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { uv_tcp_getpeername(tcp, $0, &length) }
            }
            if named == 0 { remote = SocketAddress(peer) }
        }
        let channel = StreamChannel(loop: loop, kind: kind, handle: client, remoteAddress: remote)
        guard accepted == 0 else {
            channel.assumeIsolated { $0.close() }
            return
        }
        if let acceptor = acceptors.popFirst() {
            acceptor.resume(returning: channel)
        } else if pending.count < backlog {
            pending.append(channel)
        } else {
            refused += 1
            channel.assumeIsolated { $0.close() }
        }
    }

    /// The next incoming connection. Cancelling the task ends the wait with `CancellationError`.
    public func accept() async throws -> StreamChannel {
        let id = acceptors.reserveID()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                if let channel = pending.popFirst() { continuation.resume(returning: channel) }
                else if handle == nil { continuation.resume(throwing: UVError.closed("accept")) }
                else { acceptors.park(id, continuation) }
            }
        } onCancel: {
            loop.execute { self.assumeIsolated { $0.acceptors.cancel(id) } }
        }
    }

    /// Stops listening; see the type's contract.
    public func close() {
        if let handle { LoopHandle.close(handle) }
    }

    private func handleClosed() {
        handle = nil
        for acceptor in acceptors.takeAll() { acceptor.resume(throwing: UVError.closed("accept")) }
        for channel in pending { channel.assumeIsolated { $0.close() } }
        pending.removeAll()
        // Only a socket this listener bound (path is nil otherwise), so another's is never removed.
        if let path { unlink(path) }
    }
}

extension StreamChannel {
    /// Connects to a TCP listener at `host:port` (numeric address).
    public static func connect(on loop: EventLoop, host: String, port: Int) async throws -> StreamChannel {
        let address = SocketAddress(host: host, port: port)
        let storage = try address.storage()
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<StreamChannel, Error>) in
            let accepted = loop.execute {
                let h = LoopHandle.allocate(uv_tcp_t.self)
                let rc = uv_tcp_init(loop.uv, h)
                guard rc == 0 else {
                    LoopHandle.free(h)
                    continuation.resume(throwing: UVError(rc, "uv_tcp_init"))
                    return
                }
                uv_tcp_nodelay(h, 1)
                let channel = StreamChannel(loop: loop, kind: .tcp, handle: UnsafeStream(h), remoteAddress: address)
                let request = ConnectRequest(channel: channel, continuation: continuation, what: "connect \(address)")
                var storage = storage
                let started = withUnsafePointer(to: &storage) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                        uv_tcp_connect(request.request, h, $0, ConnectRequest.callback)
                    }
                }
                if started < 0 { request.fail(started) }
            }
            if !accepted { continuation.resume(throwing: UVError.closed("connect \(address)")) }
        }
    }

    /// Connects to a unix-domain socket at `path`.
    public static func connect(on loop: EventLoop, unixPath path: String) async throws -> StreamChannel {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<StreamChannel, Error>) in
            let accepted = loop.execute {
                let h = LoopHandle.allocate(uv_pipe_t.self)
                let rc = uv_pipe_init(loop.uv, h, 0)
                guard rc == 0 else {
                    LoopHandle.free(h)
                    continuation.resume(throwing: UVError(rc, "uv_pipe_init"))
                    return
                }
                let channel = StreamChannel(loop: loop, kind: .unix, handle: UnsafeStream(h))
                let request = ConnectRequest(channel: channel, continuation: continuation, what: "connect \(path)")
                uv_pipe_connect(request.request, h, path, ConnectRequest.callback)
            }
            if !accepted { continuation.resume(throwing: UVError.closed("connect \(path)")) }
        }
    }

    /// Wraps an open file descriptor of a pipe or socket (the channel owns and closes it).
    public static func open(on loop: EventLoop, fileDescriptor fd: Int32) async throws -> StreamChannel {
        try await loop.submit {
            let h = LoopHandle.allocate(uv_pipe_t.self)
            let rc = uv_pipe_init(loop.uv, h, 0)
            guard rc == 0 else { LoopHandle.free(h); throw UVError(rc, "uv_pipe_init") }
            let channel = StreamChannel(loop: loop, kind: .pipe, handle: UnsafeStream(h))
            let opened = uv_pipe_open(h, fd)
            if opened < 0 {
                channel.assumeIsolated { $0.close() }
                throw UVError(opened, "uv_pipe_open(\(fd))")
            }
            return channel
        }
    }
}

/// A `uv_connect_t` and who waits for it; retained by the request until its callback.
// @unchecked Sendable: created on the loop thread and released in libuv's callback on that thread.
private final class ConnectRequest: @unchecked Sendable {
    let request = UnsafeMutablePointer<uv_connect_t>.allocate(capacity: 1)
    let channel: StreamChannel
    let continuation: CheckedContinuation<StreamChannel, Error>
    let what: String

    init(channel: StreamChannel, continuation: CheckedContinuation<StreamChannel, Error>, what: String) {
        self.channel = channel
        self.continuation = continuation
        self.what = what
        request.pointee.data = Unmanaged.passRetained(self).toOpaque()
    }

    deinit { request.deallocate() }

    static let callback: uv_connect_cb = { req, status in
        let request = Unmanaged<ConnectRequest>.fromOpaque(req!.pointee.data).takeRetainedValue()
        if status < 0 {
            request.channel.assumeIsolated { $0.close() }
            request.continuation.resume(throwing: UVError(status, request.what))
        } else {
            request.continuation.resume(returning: request.channel)
        }
    }

    /// For a connect that failed to start (no callback will come).
    func fail(_ code: Int32) {
        Unmanaged.passUnretained(self).release()
        channel.assumeIsolated { $0.close() }
        continuation.resume(throwing: UVError(code, what))
    }
}
