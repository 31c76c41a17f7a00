import Core
import Registry
import Supervisor

/// A `swiftlet.function` as the gateways run it.
public struct FunctionDefinition: Sendable, Equatable {
    public enum WireProtocol: String, Sendable {
        /// RFC 3875: variables in the environment, the body on stdin, a CGI response on stdout.
        case cgi
        /// One JSON envelope on stdin; a CGI response or a JSON `{status, headers, body}` back.
        case json
    }

    public var id: EntryID
    /// argv, `exec[0]` resolved as for services.
    public var exec: [String]
    public var workdir: String?
    public var env: [String: String]
    public var wireProtocol: WireProtocol
    /// Per request, from the start of the process to the end of the response.
    public var timeout: Duration
    /// Requests run at once; more wait in a queue of `queue`, and beyond that get 503.
    public var concurrency: Int
    public var queue: Int

    public var program: CGIProgram {
        CGIProgram(arguments: exec, environment: env, workingDirectory: workdir, timeout: timeout)
    }
}

/// The kind `swiftlet.function`: an executable run per request (CGI style), by the HTTP service
/// and by `roost call`. Fields: `exec` (argv or a command line), `workdir`, `env`, `protocol`
/// (`cgi`, the default, or `json`), `timeout` (30s), `concurrency` (8), `queue` (64). Unknown
/// fields, a missing or non-executable program, bad durations and out-of-range numbers are errors
/// at their field. (`source` builds come with a later issue and are refused for now.)
public struct FunctionKind: EntryKind {
    public static let name = "swiftlet.function"
    public let registryRoot: String?

    public init(registryRoot: String? = nil) {
        self.registryRoot = registryRoot
    }

    public var name: String { Self.name }

    public func validate(_ entry: Entry) -> [RegistryError] {
        var reader = FunctionReader(entry: entry, registryRoot: registryRoot)
        _ = reader.read()
        return reader.errors
    }

    public func references(of entry: Entry) -> [(field: String, reference: String)] { [] }

    /// The definition of a valid entry; nil when it has problems.
    public func definition(of entry: Entry) -> FunctionDefinition? {
        var reader = FunctionReader(entry: entry, registryRoot: registryRoot)
        return reader.read()
    }
}

struct FunctionReader: EntryFieldReading {
    let entry: Entry
    let registryRoot: String?
    var errors: [RegistryError] = []

    static let fields: Set<String> = ["exec", "workdir", "env", "protocol", "timeout", "concurrency", "queue"]

    mutating func read() -> FunctionDefinition? {
        guard case .object(let data) = entry.data else {
            fail("data", "must be a mapping")
            return nil
        }
        if data["source"] != nil { fail("source", "building from source is not supported yet; give 'exec'") }
        refuseUnknownFields(of: data.filter { $0.key != "source" }, allowed: Self.fields)
        let exec = readExec(data["exec"])
        let workdir = string(data["workdir"], "workdir")
        let env = readEnv(data["env"])
        var wireProtocol = FunctionDefinition.WireProtocol.cgi
        if let value = data["protocol"] {
            if let text = value.stringValue, let known = FunctionDefinition.WireProtocol(rawValue: text) {
                wireProtocol = known
            } else {
                fail("protocol", "must be cgi or json")
            }
        }
        let timeout = duration(data["timeout"], "timeout") ?? .seconds(30)
        if timeout <= .zero { fail("timeout", "must be longer than zero") }
        let concurrency = count(data["concurrency"], "concurrency", default: 8, range: 1...10_000)
        let queue = count(data["queue"], "queue", default: 64, range: 0...100_000)
        guard errors.isEmpty, let exec else { return nil }
        return FunctionDefinition(id: entry.id, exec: exec, workdir: workdir, env: env, wireProtocol: wireProtocol,
                                  timeout: timeout, concurrency: concurrency, queue: queue)
    }

    private mutating func count(_ value: JSON?, _ field: String, default fallback: Int, range: ClosedRange<Int>) -> Int {
        guard let value else { return fallback }
        guard let number = value.intValue, range.contains(Int(number)) else {
            fail(field, "must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            return fallback
        }
        return Int(number)
    }
}
