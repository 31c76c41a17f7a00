#if canImport(Glibc)
import Glibc
#endif

/// The process groups the host runs, readable from a signal handler: when a second SIGINT or
/// SIGTERM makes the host exit at once, its handler kills every group listed here before
/// `_exit`, so no service outlives even a forced exit. (A kill -9 of the host is handled by the
/// parent-death signal and the crash records instead.)
///
/// A fixed table of 32-bit slots, allocated once and never freed: the handler only reads aligned
/// 32-bit values (single loads) and calls `kill`, both async-signal-safe. A race with an update
/// at worst kills a group that was just removed (its id cannot be reused while the slot held it
/// only if the group is gone, which the exit path ensures by clearing after the group is killed)
/// or misses one that was just added, which the crash records cover at the next boot.
public enum ProcessGroupTable {
    public static let capacity = 8192
    nonisolated(unsafe) private static let slots: UnsafeMutablePointer<Int32> = {
        let pointer = UnsafeMutablePointer<Int32>.allocate(capacity: capacity)
        pointer.initialize(repeating: 0, count: capacity)
        return pointer
    }()

    /// Adds a group; false when the table is full (the group is then covered by crash records only).
    @discardableResult
    public static func add(_ pgid: Int32) -> Bool {
        _ = slots  // allocated before any handler could run
        for i in 0..<capacity where slots[i] == 0 {
            slots[i] = pgid
            return true
        }
        return false
    }

    public static func remove(_ pgid: Int32) {
        for i in 0..<capacity where slots[i] == pgid { slots[i] = 0 }
    }

    /// Async-signal-safe: SIGKILL to every listed group.
    public static func killAll() {
        for i in 0..<capacity {
            let pgid = slots[i]
            if pgid > 0 { kill(-pgid, SIGKILL) }
        }
    }
}
