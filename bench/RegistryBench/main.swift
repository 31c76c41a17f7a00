// Registry benchmark: 10,000 entries in 100 files — cold load, validate, and commit of the whole
// state as one version into a fresh history database; then the cost of a one-entry version.
// Then, on a live registry of that size: the time from rewriting one file (one entry changed) to
// the `registry.version.committed` event, through the folder watcher; and a rollback across the
// whole 10,000-entry difference.
// Run: swift build -c release --product registry-bench && .build/release/registry-bench
import Components
import Core
import Glibc
import Logging
import Registry

func now() -> Double {
    var t = timespec()
    clock_gettime(CLOCK_MONOTONIC, &t)
    return Double(t.tv_sec) + Double(t.tv_nsec) / 1e9
}

func fileSize(_ path: String) -> Int {
    var info = stat()
    return stat(path, &info) == 0 ? Int(info.st_size) : 0
}

var template = Array("/tmp/roost-registry-bench-XXXXXX".utf8CString)
guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else { fatalError("mkdtemp") }
let root = String(cString: made)
defer { _ = system("rm -rf '\(root)'") }
mkdir(root + "/registry", 0o755)

let files = 100, perFile = 100
/// File `f`'s text; `firstPort` is the port of its first entry (the re-apply edits it).
func fileText(_ f: Int, firstPort: Int = 8000) -> String {
    var text = "namespace: ns\(f)\nentries:\n"
    for e in 0..<perFile {
        text += """
          - name: entry\(e)
            kind: registry.entry
            port: \(e == 0 ? firstPort : 8000 + e)
            enabled: true
            tags: [a, b, c]
            settings: {retries: 3, timeout: 250ms, path: /srv/ns\(f)/entry\(e)}
        """
        text += "\n"
        if e > 0 { text += "    requires: entry\(e - 1)\n" }
    }
    return text
}

for f in 0..<files {
    let text = fileText(f)
    let fd = open(root + "/registry/file\(f).yaml", O_CREAT | O_WRONLY | O_TRUNC, 0o644)
    let bytes = Array(text.utf8)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    close(fd)
}

print("machine: \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores; \(files * perFile) entries in \(files) files")
var loadTimes: [Double] = [], validateTimes: [Double] = [], commitTimes: [Double] = []
let kinds = try! KindTable([RegistryEntryKind()])
for round in 0..<5 {
    let t0 = now()
    let loaded = RegistryLoader.load(root: root + "/registry")
    let t1 = now()
    let problems = validate(loaded.entries, kinds: kinds)
    let t2 = now()
    precondition(loaded.errors.isEmpty && problems.isEmpty, "bench registry is not valid: \(loaded.errors.prefix(3)) \(problems.prefix(3))")
    let dbPath = root + "/history-\(round).db"
    let store = try! HistoryStore.open(path: dbPath)
    let desired = Dictionary(uniqueKeysWithValues: loaded.entries.map { ($0.id, $0) })
    let changes = ChangeSet.between(current: [:], desired: desired)
    _ = try! store.commit(changes, source: .boot, message: nil, user: nil, time: 0)
    let t3 = now()
    loadTimes.append(t1 - t0); validateTimes.append(t2 - t1); commitTimes.append(t3 - t2)
}
func ms(_ values: [Double]) -> String {
    let sorted = values.sorted()
    func text(_ seconds: Double) -> String {
        let tenths = Int((seconds * 10_000).rounded())
        return tenths >= 100 ? "\(tenths / 10)" : "\(tenths / 10).\(tenths % 10)"
    }
    return "median \(text(sorted[sorted.count / 2])) ms (min \(text(sorted[0])))"
}
let totals = zip(zip(loadTimes, validateTimes), commitTimes).map { $0.0 + $0.1 + $1 }
print("load:     \(ms(loadTimes))")
print("validate: \(ms(validateTimes))")
print("commit:   \(ms(commitTimes)) (one version with every entry, change set included)")
print("total:    \(ms(totals)) (target under 1 s)")

// Growth per one-entry version on the 10,000-entry state.
let store = try! HistoryStore.open(path: root + "/history-0.db")
var state = try! store.state(at: store.latest()!.number)
try! store.truncateWAL()
let before = fileSize(root + "/history-0.db")
let rounds = 50
for i in 0..<rounds {
    var entry = state[EntryID(namespace: "ns0", name: "entry0")!]!
    entry.data = .object(["port": .int(Int64(9000 + i))])
    var changes = ChangeSet()
    changes.updates.append(entry)
    _ = try! store.commit(changes, source: .admin, message: nil, user: nil, time: Double(i))
    state[entry.id] = entry
}
try! store.truncateWAL()
let after = fileSize(root + "/history-0.db")
print("growth:   \((after - before) / rounds) bytes per one-entry version (state: \(before / 1024) KiB)")

/// Re-apply latency and rollback on a live registry of the whole folder.
func liveBenchmarks(root: String) async {
    // Re-apply after editing one entry, file write -> committed event, through the reloader.
    let loop = EventLoop(name: "bench-loop")
    let bus = EventBus()
    let live = try! RegistryService(
        kinds: RegistryKinds.standard(), history: try! HistoryStore.open(path: root + "/live.db"), bus: bus)
    let reloader = RegistryReloader(
        loop: loop, folder: RegistryFolder(root: root + "/registry"),
        registry: live, logger: {
            var logger = Logger(label: "bench")
            logger.logLevel = .warning  // one line per version would drown the figures
            return logger
        }())
    let bootStart = now()
    let boot = await reloader.reload(ApplyContext(source: .boot))
    print("boot:     \(Int(((now() - bootStart) * 1000).rounded())) ms to apply the folder as version \(boot.version ?? -1) through the reloader")
    await reloader.startWatching()
    let committed = bus.subscribe([try! TopicPattern("registry.version.committed")])
    var iterator = committed.makeAsyncIterator()
    // The watcher's first read after it starts: nothing changed, so no version; let it pass.
    try! await loop.sleep(for: .milliseconds(200))
    var latencies: [Double] = []
    for i in 0..<30 {
        let edited = fileText(50, firstPort: 20000 + i)
        let t0 = now()
        let fd = open(root + "/registry/file50.yaml", O_WRONLY | O_TRUNC)
        let bytes = Array(edited.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard let event = await iterator.next() else { fatalError("bus ended") }
        latencies.append(now() - t0)
        precondition(event.data["updated"] == .int(1), "expected one updated entry, got \(event.data)")
    }
    print("re-apply: \(ms(latencies)) from writing one file (1 of 10,000 entries changed) to the committed event "
        + "(target under 20 ms; includes the \(reloader.quiet) quiet period)")

    await reloader.stop()
    // Where the time goes, without the watcher: one folder read, then the apply (commit included).
    var reads: [Double] = [], applies: [Double] = []
    for i in 0..<30 {
        let edited = fileText(50, firstPort: 30000 + i)
        let fd = open(root + "/registry/file50.yaml", O_WRONLY | O_TRUNC)
        let bytes = Array(edited.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        let t0 = now()
        let read = reloader.folder.read()
        let t1 = now()
        _ = await live.apply(read, from: reloader.folder, context: ApplyContext(source: .admin))
        let t2 = now()
        reads.append(t1 - t0); applies.append(t2 - t1)
    }
    print("          of which: folder read \(ms(reads)), apply and commit \(ms(applies))")

    // Rollback across a 10,000-entry difference: delete everything, then roll back to the full state.
    let fullVersion = await live.version
    let t0 = now()
    let emptied = await live.apply(entries: [], problems: [], context: ApplyContext(source: .admin))
    let t1 = now()
    let restored = await live.rollback(to: fullVersion)
    let t2 = now()
    guard case .committed(_, let deleted) = emptied, case .committed(_, let recreated) = restored else { fatalError("rollback bench") }
    print("rollback: \(Int(((t1 - t0) * 1000).rounded())) ms to commit \(deleted.deletes.count) deletes; "
        + "\(Int(((t2 - t1) * 1000).rounded())) ms to roll back to version \(fullVersion) (\(recreated.creates.count) creates)")
    await loop.shutdownGracefully()
}

await liveBenchmarks(root: root)
