import CLibUV

/// What every libuv handle of Roost keeps in its `data` field: its owner, and what to do once the
/// handle is closed.
///
/// The record is retained by the handle and released in the close callback, which also frees the
/// handle's memory. Because every handle follows this scheme, the loop can close any handle it finds
/// at shutdown and the owner still hears of it (`onClose`), so no waiter is left hanging.
/// Loop thread only.
final class LoopHandle {
    let owner: AnyObject
    let onClose: (() -> Void)?

    private init(owner: AnyObject, onClose: (() -> Void)?) {
        self.owner = owner
        self.onClose = onClose
    }

    /// Allocates memory for a handle of type `T`; initialise it with `uv_*_init`, then `attach`.
    static func allocate<T>(_ type: T.Type) -> UnsafeMutablePointer<T> {
        let handle = UnsafeMutablePointer<T>.allocate(capacity: 1)
        UnsafeMutableRawPointer(handle).initializeMemory(as: UInt8.self, repeating: 0,
                                                         count: MemoryLayout<T>.size)
        return handle
    }

    /// Frees a handle whose `uv_*_init` failed (libuv never saw it, so it must not be closed).
    static func free<T>(_ handle: UnsafeMutablePointer<T>) {
        UnsafeMutableRawPointer(handle).deallocate()
    }

    static func attach<T>(_ handle: UnsafeMutablePointer<T>, owner: AnyObject, onClose: (() -> Void)? = nil) {
        let record = LoopHandle(owner: owner, onClose: onClose)
        raw(handle).pointee.data = Unmanaged.passRetained(record).toOpaque()
    }

    /// The owner of an attached handle; the caller names its type.
    static func owner<T, Owner: AnyObject>(of handle: UnsafeMutablePointer<T>, as _: Owner.Type) -> Owner {
        let record = Unmanaged<LoopHandle>.fromOpaque(raw(handle).pointee.data!).takeUnretainedValue()
        return unsafeDowncast(record.owner, to: Owner.self)
    }

    /// Starts closing the handle unless it is already closing. Its memory is freed in the callback.
    static func close<T>(_ handle: UnsafeMutablePointer<T>) {
        let h = raw(handle)
        guard uv_is_closing(h) == 0 else { return }
        uv_close(h) { h in
            guard let h else { return }
            if let data = h.pointee.data {
                let record = Unmanaged<LoopHandle>.fromOpaque(data).takeRetainedValue()
                h.pointee.data = nil
                record.onClose?()
            }
            UnsafeMutableRawPointer(h).deallocate()
        }
    }

    static func raw<T>(_ handle: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_handle_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_handle_t.self)
    }

    static func stream<T>(_ handle: UnsafeMutablePointer<T>) -> UnsafeMutablePointer<uv_stream_t> {
        UnsafeMutableRawPointer(handle).assumingMemoryBound(to: uv_stream_t.self)
    }
}
