// Applies registry versions with the history at argv[1], printing each version number on stdout
// once `apply` has returned. After 40 versions it waits for its kill: a busy machine can delay
// the test's kill, and an unbounded run would only make the checks slower, not stronger. HistoryStoreTests kills it with SIGKILL at random points and
// checks that every printed version survived and that no version is half written.
//
// Version v creates `crash:v<v>-0` … `crash:v<v>-9`, deletes `crash:v<v-1>-0`, and creates
// (v = 1) or updates `crash:counter` to `{"n": v}`; checkpoints every 5 versions.
import Core
import Glibc
import Registry

/// Writes `text` to a file descriptor unbuffered, so a printed number is out before the next commit.
func say(_ text: String, to fd: Int32) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if n <= 0 { return }
        bytes = bytes.dropFirst(n)
    }
}

guard CommandLine.arguments.count == 2 else {
    say("usage: history-crash-helper DATABASE\n", to: 2)
    exit(2)
}
let padding = String(repeating: "x", count: 300)

func entry(_ name: String, _ data: [String: JSON], kind: String = "registry.entry") -> Entry {
    Entry(
        id: EntryID(namespace: "crash", name: name)!, kind: kind, data: .object(data),
        location: SourceLocation(file: "crash.yaml", line: 1, column: 1))
}

do {
    let store = try HistoryStore.open(path: CommandLine.arguments[1], checkpointInterval: 5)
    // Versions go through the registry's apply, as the host's do.
    let registry = try RegistryService(kinds: try KindTable([RegistryEntryKind()]), history: store, bus: nil)
    var number = await registry.version
    let last = number + 40
    while number < last {
        number += 1
        var desired = await registry.entries()
        for i in 0..<10 {
            let created = entry("v\(number)-\(i)", ["i": .int(Int64(i)), "pad": .string(padding)])
            desired[created.id] = created
        }
        let counter = entry("counter", ["n": .int(Int64(number))])
        desired[counter.id] = counter
        if number > 1 { desired[EntryID(namespace: "crash", name: "v\(number - 1)-0")!] = nil }
        let outcome = await registry.apply(
            entries: Array(desired.values), problems: [], context: ApplyContext(source: .admin, message: "crash \(number)"))
        guard case .committed(let version, _) = outcome else {
            say("history-crash-helper: apply did not commit: \(outcome)\n", to: 2)
            exit(1)
        }
        say("\(version.number)\n", to: 1)
    }
    while true { pause() }
} catch {
    say("history-crash-helper: \(error)\n", to: 2)
    exit(1)
}
