import CLibUV

#if canImport(Glibc)
import Glibc
#endif

/// Receives datagrams on a unix datagram socket bound at a path: the sd_notify socket a
/// supervised service writes `READY=1` to. libuv has no unix datagram handle, so the socket is
/// watched with `uv_poll` and read with `recv` on the loop thread, which never blocks (the socket
/// is non-blocking).
public actor DatagramReceiver {
    public nonisolated let loop: EventLoop
    public nonisolated let path: String
    /// Each datagram (up to 4 KiB; longer ones are cut), in arrival order; finishes on close.
    public nonisolated let datagrams: AsyncStream<[UInt8]>
    private let continuation: AsyncStream<[UInt8]>.Continuation
    private var handle: UnsafeMutablePointer<uv_poll_t>?
    private var fd: Int32 = -1
    /// The socket file this receiver made, so closing never removes a newer one bound at the same
    /// path (the next run of the same service binds there while this one may still be closing).
    private var file: (device: UInt64, inode: UInt64)?

    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    private init(loop: EventLoop, path: String) {
        self.loop = loop
        self.path = path
        (datagrams, continuation) = AsyncStream.makeStream(of: [UInt8].self, bufferingPolicy: .bufferingNewest(256))
    }

    /// Binds a new socket at `path` (an old file there is removed) with permission `mode`.
    public static func bind(on loop: EventLoop, path: String, mode: mode_t = 0o600) async throws -> DatagramReceiver {
        let receiver = DatagramReceiver(loop: loop, path: path)
        try await receiver.start(mode: mode)
        return receiver
    }

    private func start(mode: mode_t) throws {
        if loop.isStopped { continuation.finish(); throw UVError.closed("bind \(path)") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            continuation.finish()
            throw UVError(-ENAMETOOLONG, "bind \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let socketFD = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard socketFD >= 0 else { continuation.finish(); throw UVError(-errno, "socket for \(path)") }
        unlink(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(socketFD, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard bound == 0, chmod(path, mode) == 0 else {
            let code = errno
            Glibc.close(socketFD)
            continuation.finish()
            throw UVError(-code, "bind \(path)")
        }
        fd = socketFD
        var info = stat()
        if stat(path, &info) == 0 { file = (UInt64(info.st_dev), UInt64(info.st_ino)) }
        let h = LoopHandle.allocate(uv_poll_t.self)
        let rc = uv_poll_init(loop.uv, h, socketFD)
        guard rc == 0 else {
            LoopHandle.free(h)
            Glibc.close(socketFD)
            fd = -1
            removeFile()
            continuation.finish()
            throw UVError(rc, "uv_poll_init")
        }
        LoopHandle.attach(h, owner: self) { [self] in
            assumeIsolated { $0.handleClosed() }
        }
        handle = h
        let started = uv_poll_start(h, Int32(UV_READABLE.rawValue)) { h, status, _ in
            let receiver = LoopHandle.owner(of: h!, as: DatagramReceiver.self)
            receiver.assumeIsolated { $0.readable(status: status) }
        }
        guard started == 0 else { close(); throw UVError(started, "uv_poll_start") }
    }

    private func readable(status: Int32) {
        guard status == 0 else { close(); return }
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0 {
                if errno == EINTR { continue }
                return  // EAGAIN: drained
            }
            continuation.yield(Array(buffer[0..<n]))
        }
    }

    private func handleClosed() {
        handle = nil
        if fd >= 0 { Glibc.close(fd); fd = -1 }
        removeFile()
        continuation.finish()
    }

    /// Unlinks the socket file if it is still the one this receiver bound.
    private func removeFile() {
        guard let file else { return }
        self.file = nil
        var info = stat()
        guard stat(path, &info) == 0, UInt64(info.st_dev) == file.device, UInt64(info.st_ino) == file.inode else { return }
        unlink(path)
    }

    /// Stops receiving and removes the socket file.
    public func close() {
        if let handle { LoopHandle.close(handle) } else if fd >= 0 { handleClosed() }
    }
}
