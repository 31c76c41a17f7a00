import CSpawn
import DequeModule
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The threads that start child processes, for the life of the process.
///
/// A spawn blocks its thread until the child has exec'd (about half a millisecond, more on a
/// busy machine), so it is not done on a loop thread, where it would stall every connection
/// meanwhile; and with a few threads, starting many services uses more than one core. The threads
/// never end: a child's parent-death signal (PR_SET_PDEATHSIG) belongs to the thread that made
/// it, so a thread that went away would take its children with it. (The cooperative pool's
/// threads can come and go, which is why they are not used.)
final class SpawnThreads: Sendable {
    static let shared = SpawnThreads(count: max(2, min(4, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))))

    private let queue = Mutex(Deque<@Sendable () -> Void>())
    // Never freed: lives as long as the process. A POSIX semaphore, made for use across threads.
    private nonisolated(unsafe) let available: UnsafeMutablePointer<sem_t>

    private init(count: Int) {
        available = .allocate(capacity: 1)
        sem_init(available, 0, 0)
        let prepared = UnsafeMutablePointer<sem_t>.allocate(capacity: 1)
        sem_init(prepared, 0, 0)
        for index in 0..<count {
            var thread: pthread_t = 0
            let box = Unmanaged.passRetained(ThreadStart(owner: self, name: "roost-spawn-\(index)", prepared: prepared))
            let rc = pthread_create(&thread, nil, { raw in
                let start = Unmanaged<ThreadStart>.fromOpaque(raw!).takeRetainedValue()
                roost_set_thread_name(start.name)
                _ = roost_spawn_prepare_thread()  // its descriptor slots, while their numbers are low
                sem_post(start.prepared)
                start.owner.serve()
            }, box.toOpaque())
            precondition(rc == 0, "pthread_create failed: \(rc)")
            pthread_detach(thread)
        }
        // Every thread has its slots before anything else opens a descriptor (see `start`).
        for _ in 0..<count { while sem_wait(prepared) != 0 {} }
        sem_destroy(prepared)
        prepared.deallocate()
    }

    /// Starts the threads now, if not yet. Each child's descriptor table is copied from the
    /// host's up to its thread's slots and the copy's extra descriptors closed again: a host that
    /// starts the threads before it opens anything keeps that to a few descriptors, where threads
    /// started under load had their slots above every open connection (fifty closes per spawn).
    static func start() {
        _ = shared
    }

    /// Runs `body` on one of the threads and returns its result.
    func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.withLock { $0.append { continuation.resume(with: Result { try body() }) } }
            sem_post(available)
        }
    }

    /// Runs `body` on one of the threads; returns at once.
    func submit(_ body: @escaping @Sendable () -> Void) {
        queue.withLock { $0.append(body) }
        sem_post(available)
    }

    private func serve() -> Never {
        while true {
            while sem_wait(available) != 0 {}
            if let next = queue.withLock({ $0.popFirst() }) { next() }
        }
    }
}

private final class ThreadStart: @unchecked Sendable {
    // @unchecked: `prepared` is a semaphore, made for use across threads.
    let owner: SpawnThreads
    let name: String
    let prepared: UnsafeMutablePointer<sem_t>
    init(owner: SpawnThreads, name: String, prepared: UnsafeMutablePointer<sem_t>) {
        self.owner = owner
        self.name = name
        self.prepared = prepared
    }
}
