import Core
import Registry

#if canImport(Glibc)
import Glibc
#endif

/// How a service says it is ready.
public enum Readiness: Sendable, Hashable {
    /// Ready as soon as it runs.
    case none
    /// The sd_notify protocol: `READY=1` on the datagram socket in `NOTIFY_SOCKET`.
    case notify
    /// A TCP connection to 127.0.0.1:port succeeds.
    case tcp(port: Int)
    /// An HTTP GET of the URL answers 2xx.
    case http(url: String)
    /// The command exits 0.
    case exec([String])
}

/// Resource limits, applied as rlimits in the service's process.
public struct ServiceLimits: Sendable, Hashable {
    public var openFiles: Int?
    public var memoryBytes: Int?
    public var cpuSeconds: Int?

    public init() {}

    public var isEmpty: Bool { openFiles == nil && memoryBytes == nil && cpuSeconds == nil }
}

/// A `swiftlet.service` entry's definition, checked and with defaults filled in.
public struct ServiceDefinition: Sendable, Hashable {
    public var id: EntryID
    /// argv; `exec[0]` is resolved (a bare name through PATH, a relative path against the folder
    /// of the file that declares the entry).
    public var exec: [String]
    public var workdir: String?
    public var env: [String: String]
    public var user: String?
    public var limits: ServiceLimits
    public var autoStart: Bool
    public var restart: RestartPolicy
    public var stop: StopPolicy
    public var startTimeout: Duration
    public var readiness: Readiness
    public var watchdog: Duration?
    /// Resolved ids of the services that must be ready first.
    public var requires: [EntryID]
}

/// Reads a `swiftlet.service` entry: every problem, each at the field it concerns.
struct ServiceReader: EntryFieldReading {
    let entry: Entry
    /// The registry folder, to resolve relative `exec` paths; nil leaves them as written.
    let registryRoot: String?
    var errors: [RegistryError] = []

    init(entry: Entry, registryRoot: String?) {
        self.entry = entry
        self.registryRoot = registryRoot
    }

    static let topLevelFields: Set<String> = ["exec", "workdir", "env", "user", "limits", "lifecycle"]
    static let lifecycleFields: Set<String> = ["auto_start", "restart", "stop", "start_timeout", "readiness", "requires", "watchdog"]
    static let restartFields: Set<String> = [
        "policy", "initial_delay", "factor", "max_delay", "jitter", "max_restarts", "window", "stable_after",
        "success_exit_codes",
    ]

    mutating func read() -> ServiceDefinition? {
        guard case .object(let data) = entry.data else {
            fail("data", "must be a mapping")
            return nil
        }
        refuseUnknownFields(of: data, allowed: Self.topLevelFields)
        let exec = readExec(data["exec"])
        let workdir = string(data["workdir"], "workdir")
        let env = readEnv(data["env"])
        let user = string(data["user"], "user")
        let limits = readLimits(data["limits"])

        var lifecycle: [String: JSON] = [:]
        if let value = data["lifecycle"] {
            if case .object(let members) = value { lifecycle = members } else { fail("lifecycle", "must be a mapping") }
        }
        refuseUnknownFields(of: lifecycle, allowed: Self.lifecycleFields, prefix: "lifecycle.")
        var autoStart = false
        if let value = lifecycle["auto_start"] {
            if let flag = value.boolValue { autoStart = flag } else { fail("lifecycle.auto_start", "must be true or false") }
        }
        let restart = readRestart(lifecycle["restart"])
        var stop = StopPolicy()
        if let value = lifecycle["stop"] {
            if case .object(let members) = value {
                for key in members.keys.sorted() where key != "signal" && key != "timeout" {
                    fail("lifecycle.stop.\(key)", "unknown field (allowed: signal, timeout)")
                }
                if let name = members["signal"] {
                    if let number = name.stringValue.flatMap(Self.signalNumber) { stop.signal = number } else {
                        fail("lifecycle.stop.signal", "must be a signal name such as TERM, INT, QUIT, HUP, USR1")
                    }
                }
                if let timeout = duration(members["timeout"], "lifecycle.stop.timeout") { stop.timeout = timeout }
            } else {
                fail("lifecycle.stop", "must be a mapping (signal, timeout)")
            }
        }
        let startTimeout = duration(lifecycle["start_timeout"], "lifecycle.start_timeout") ?? .seconds(30)
        let watchdog = duration(lifecycle["watchdog"], "lifecycle.watchdog")
        let readiness = readReadiness(lifecycle["readiness"])
        if watchdog != nil, readiness != .notify {
            fail("lifecycle.watchdog", "needs 'readiness: notify' (the service feeds it with WATCHDOG=1)")
        }
        switch lifecycle["requires"] {
        case nil, .string?: break
        case .array(let items)? where items.allSatisfy({ $0.stringValue != nil }): break
        default: fail("lifecycle.requires", "must be a service id or a list of them")
        }
        var requires: [EntryID] = []
        for reference in ServiceKind.requires(in: entry) {
            if let id = EntryID.resolve(reference, in: entry.id.namespace) { requires.append(id) }
        }
        guard errors.isEmpty, let exec else { return nil }
        return ServiceDefinition(
            id: entry.id, exec: exec, workdir: workdir, env: env, user: user, limits: limits, autoStart: autoStart,
            restart: restart, stop: stop, startTimeout: startTimeout, readiness: readiness, watchdog: watchdog,
            requires: requires)
    }

    // MARK: - Fields

    mutating func readLimits(_ value: JSON?) -> ServiceLimits {
        var limits = ServiceLimits()
        guard let value else { return limits }
        guard case .object(let members) = value else {
            fail("limits", "must be a mapping (open_files, memory, cpu)")
            return limits
        }
        for key in members.keys.sorted() {
            let item = members[key]!
            switch key {
            case "open_files":
                if let n = item.intValue, n > 0 { limits.openFiles = Int(n) } else { fail("limits.open_files", "must be a positive number") }
            case "memory":
                if let bytes = Self.byteSize(item) { limits.memoryBytes = bytes } else {
                    fail("limits.memory", "must be a size such as 64MiB, 1GiB or a number of bytes")
                }
            case "cpu":
                if let seconds = item.intValue, seconds > 0 {
                    limits.cpuSeconds = Int(seconds)
                } else if let d = item.stringValue.flatMap(DurationText.parse), d >= .seconds(1) {
                    limits.cpuSeconds = Int(d.components.seconds)
                } else {
                    fail("limits.cpu", "must be CPU time such as 30s or 5m (at least 1s)")
                }
            default:
                fail("limits.\(key)", "unknown limit (allowed: cpu, memory, open_files)")
            }
        }
        return limits
    }

    mutating func readRestart(_ value: JSON?) -> RestartPolicy {
        var policy = RestartPolicy()
        guard let value else { return policy }
        guard case .object(let members) = value else {
            fail("lifecycle.restart", "must be a mapping")
            return policy
        }
        for key in members.keys.sorted() where !Self.restartFields.contains(key) {
            fail("lifecycle.restart.\(key)", "unknown field (allowed: \(Self.restartFields.sorted().joined(separator: ", ")))")
        }
        if let mode = members["policy"] {
            if let parsed = mode.stringValue.flatMap(RestartPolicy.Mode.init(rawValue:)) { policy.mode = parsed } else {
                fail("lifecycle.restart.policy", "must be always, on-failure or never")
            }
        }
        if let d = duration(members["initial_delay"], "lifecycle.restart.initial_delay") { policy.initialDelay = d }
        if let d = duration(members["max_delay"], "lifecycle.restart.max_delay") { policy.maxDelay = d }
        if let d = duration(members["window"], "lifecycle.restart.window") { policy.window = d }
        if let d = duration(members["stable_after"], "lifecycle.restart.stable_after") { policy.stableAfter = d }
        if let factor = members["factor"] {
            if let f = number(factor), f >= 1 { policy.factor = f } else { fail("lifecycle.restart.factor", "must be a number, at least 1") }
        }
        if let jitter = members["jitter"] {
            if let j = number(jitter), j >= 0, j <= 1 { policy.jitter = j } else { fail("lifecycle.restart.jitter", "must be a fraction from 0 to 1") }
        }
        if let max = members["max_restarts"] {
            if let n = max.intValue, n >= 0 { policy.maxRestarts = Int(n) } else { fail("lifecycle.restart.max_restarts", "must be a number, 0 or more") }
        }
        if let codes = members["success_exit_codes"] {
            if case .array(let items) = codes, items.allSatisfy({ ($0.intValue ?? -1) >= 0 && ($0.intValue ?? 256) < 256 }) {
                policy.successExitCodes = Set(items.compactMap { $0.intValue.map(Int32.init) })
            } else {
                fail("lifecycle.restart.success_exit_codes", "must be a list of exit codes (0-255)")
            }
        }
        if policy.maxDelay < policy.initialDelay {
            fail("lifecycle.restart.max_delay", "must not be shorter than initial_delay")
        }
        return policy
    }

    func number(_ value: JSON) -> Double? {
        switch value {
        case .int(let i): return Double(i)
        case .double(let d) where d.isFinite: return d
        default: return nil
        }
    }

    mutating func readReadiness(_ value: JSON?) -> Readiness {
        switch value {
        case nil, .string("none")?: return .none
        case .string("notify")?: return .notify
        case .object(let members)? where members.count == 1:
            let (key, item) = members.first!
            switch key {
            case "tcp":
                if let port = item.intValue, (1...65535).contains(port) { return .tcp(port: Int(port)) }
                fail("lifecycle.readiness.tcp", "must be a port number (1-65535)")
            case "http":
                if let url = item.stringValue, url.hasPrefix("http://") { return .http(url: url) }
                fail("lifecycle.readiness.http", "must be an http:// URL")
            case "exec":
                if case .array(let items) = item, !items.isEmpty, items.allSatisfy({ $0.stringValue != nil }) {
                    return .exec(items.compactMap(\.stringValue))
                }
                if let text = item.stringValue, let words = ShellWords.split(text), !words.isEmpty { return .exec(words) }
                fail("lifecycle.readiness.exec", "must be a command line or a list of arguments")
            default:
                fail("lifecycle.readiness", "must be none, notify, {tcp: PORT}, {http: URL} or {exec: [argv]}")
            }
            return .none
        default:
            fail("lifecycle.readiness", "must be none, notify, {tcp: PORT}, {http: URL} or {exec: [argv]}")
            return .none
        }
    }

    static func signalNumber(_ name: String) -> Int32? {
        let bare = name.hasPrefix("SIG") ? String(name.dropFirst(3)) : name
        let table: [String: Int32] = [
            "HUP": SIGHUP, "INT": SIGINT, "QUIT": SIGQUIT, "KILL": SIGKILL, "USR1": SIGUSR1, "USR2": SIGUSR2,
            "TERM": SIGTERM, "WINCH": SIGWINCH,
        ]
        return table[bare.uppercased()]
    }
}

/// Splits a command line into words the way a POSIX shell would (quotes and backslashes), without
/// running a shell: no variables, globs or operators.
public enum ShellWords {
    /// nil when a quote is not closed.
    public static func split(_ text: String) -> [String]? {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character? = nil
        var escaped = false
        for character in text {
            if escaped {
                current.append(character)
                escaped = false
                inWord = true
                continue
            }
            switch (quote, character) {
            case (nil, "\\"), ("\"", "\\"):
                escaped = true
            case (nil, "'"), (nil, "\""):
                quote = character
                inWord = true
            case ("'", "'"), ("\"", "\""):
                quote = nil
            case (nil, " "), (nil, "\t"), (nil, "\n"):
                if inWord { words.append(current); current = ""; inWord = false }
            default:
                current.append(character)
                inWord = true
            }
        }
        if quote != nil || escaped { return nil }
        if inWord { words.append(current) }
        return words
    }
}

/// PATH lookup for a bare program name.
enum ProcessEnvironmentPath {
    static func search(_ program: String) -> String? {
        let path = getenv("PATH").map { String(cString: $0) } ?? "/usr/local/bin:/usr/bin:/bin"
        for folder in path.split(separator: ":") where !folder.isEmpty {
            let candidate = folder + "/" + program
            var info = stat()
            if stat(candidate, &info) == 0, info.st_mode & S_IFMT == S_IFREG, access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }
}

/// The fields every swiftlet kind reads the same way (`exec`, `env`, `workdir`, durations), each
/// problem reported at its field. A reader keeps the entry, the registry folder (to resolve a
/// relative `exec` against the declaring file's folder) and the errors found so far.
public protocol EntryFieldReading {
    var entry: Entry { get }
    var registryRoot: String? { get }
    var errors: [RegistryError] { get set }
}

extension EntryFieldReading {
    /// Each key of `data` not in `allowed` is an error at that key.
    public mutating func refuseUnknownFields(of data: [String: JSON], allowed: Set<String>, prefix: String = "") {
        for key in data.keys.sorted() where !allowed.contains(key) {
            fail(prefix + key, "unknown field (allowed: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    public mutating func fail(_ field: String, _ message: String) {
        let top = field.split(separator: ".").first.map(String.init) ?? field
        errors.append(RegistryError(.invalidField, "'\(field)': \(message)", at: entry.location(ofField: top), entry: entry.id))
    }

    public mutating func string(_ value: JSON?, _ field: String) -> String? {
        guard let value else { return nil }
        guard let text = value.stringValue, !text.isEmpty else {
            fail(field, "must be a non-empty string")
            return nil
        }
        return text
    }

    public mutating func duration(_ value: JSON?, _ field: String) -> Duration? {
        guard let value else { return nil }
        if let text = value.stringValue, let duration = DurationText.parse(text) { return duration }
        if value == .int(0) { return .zero }
        fail(field, "'\(value.stringValue ?? value.encoded())' is not a duration (like 250ms, 10s, 5m)")
        return nil
    }

    public mutating func readExec(_ value: JSON?) -> [String]? {
        var argv: [String]
        switch value {
        case nil:
            errors.append(RegistryError(.missingField, "'exec' is required (the command to run)", at: entry.location, entry: entry.id))
            return nil
        case .string(let text)?:
            guard let words = ShellWords.split(text) else {
                fail("exec", "has an unterminated quote")
                return nil
            }
            argv = words
        case .array(let items)?:
            argv = []
            for item in items {
                guard let text = item.stringValue else {
                    fail("exec", "every item must be a string")
                    return nil
                }
                argv.append(text)
            }
        default:
            fail("exec", "must be a command line or a list of arguments")
            return nil
        }
        guard let program = argv.first, !program.isEmpty else {
            fail("exec", "is empty")
            return nil
        }
        guard let resolved = resolve(program) else { return nil }
        argv[0] = resolved
        return argv
    }

    /// The program's path: checked to exist and be executable.
    /// `text` as a path: an absolute one as it is, a relative one against the folder of the file
    /// that declares the entry (under `registryRoot`).
    public func pathFromDeclaringFile(_ text: String) -> String {
        guard !text.hasPrefix("/"), let registryRoot else { return text }
        let file = entry.location.file
        let folder = file.contains("/") ? String(file[..<file.lastIndex(of: "/")!]) : ""
        return registryRoot + "/" + (folder.isEmpty ? "" : folder + "/") + text
    }

    public mutating func resolve(_ program: String) -> String? {
        if !program.contains("/") {
            let path = ProcessEnvironmentPath.search(program)
            if path == nil { fail("exec", "'\(program)' is not found in PATH") }
            return path
        }
        let path = pathFromDeclaringFile(program)
        var info = stat()
        guard stat(path, &info) == 0 else {
            fail("exec", "'\(program)' does not exist" + (path == program ? "" : " (looked at \(path))"))
            return nil
        }
        guard info.st_mode & S_IFMT == S_IFREG, access(path, X_OK) == 0 else {
            fail("exec", "'\(program)' is not an executable file")
            return nil
        }
        // Absolute (the service may run in another working directory), but links are kept: some
        // programs look at the name they were started by.
        return Self.absolute(path)
    }

    public static func absolute(_ path: String) -> String {
        var parts: [Substring] = []
        var full = path
        if !path.hasPrefix("/") {
            var buffer = [CChar](repeating: 0, count: 4096)
            if getcwd(&buffer, buffer.count) != nil {
                full = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) + "/" + path
            }
        }
        for part in full.split(separator: "/") where part != "." {
            if part == "..", !parts.isEmpty { parts.removeLast() } else if part != ".." { parts.append(part) }
        }
        return "/" + parts.joined(separator: "/")
    }

    /// `env`: a mapping of names to strings, numbers or booleans.
    public mutating func readEnv(_ value: JSON?) -> [String: String] {
        var env: [String: String] = [:]
        guard let value else { return env }
        guard case .object(let members) = value else {
            fail("env", "must be a mapping of names to values")
            return env
        }
        for (key, item) in members {
            switch item {
            case .string(let text): env[key] = text
            case .int, .double, .bool: env[key] = item.encoded()
            default: fail("env.\(key)", "must be a string, number or boolean")
            }
        }
        return env
    }

    /// A size: a positive whole number of bytes, or one with KiB/MiB/GiB (K/M/G) after it.
    public static func byteSize(_ value: JSON) -> Int? {
        if let n = value.intValue { return n > 0 ? Int(n) : nil }
        guard let text = value.stringValue else { return nil }
        let units: [(String, Int)] = [("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)]
        for (suffix, scale) in units where text.hasSuffix(suffix) {
            guard let n = Int(text.dropLast(suffix.count)), n > 0 else { return nil }
            return n * scale
        }
        return nil
    }
}
