import ArgumentParser
import Components
import Core
import Registry

#if canImport(Glibc)
import Glibc
#endif

struct RegistryListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List the entries of the running host's current version.")

    @Option(name: .long, help: ArgumentHelp("Only entries of this kind (a glob: 'swiftlet.*').", valueName: "kind"))
    var kind: String?

    @Option(name: .long, help: ArgumentHelp("Only entries of this namespace.", valueName: "namespace"))
    var namespace: String?

    @Option(name: .long, help: ArgumentHelp("Only entries whose id matches (a glob: 'app:hello-*').", valueName: "glob"))
    var id: String?

    @Option(name: .long, help: ArgumentHelp("Only entries with this meta value (repeatable).", valueName: "key=value"))
    var meta: [String] = []

    func validate() throws {
        if let bad = meta.first(where: { !$0.contains("=") }) {
            throw ValidationError("--meta must be key=value, got '\(bad)'")
        }
    }

    @OptionGroup var options: ClientOptions

    func run() async throws {
        var query: [String] = []
        if let kind { query.append("kind=" + urlEncoded(kind)) }
        if let namespace { query.append("namespace=" + urlEncoded(namespace)) }
        if let id { query.append("id=" + urlEncoded(id)) }
        for pair in meta { query.append("meta=" + urlEncoded(pair)) }
        let target = "/v1/registry/entries" + (query.isEmpty ? "" : "?" + query.joined(separator: "&"))
        try await runClient {
            let answer = try await AdminClient(statePath: options.statePath).send("GET", target)
            try fail(unless: answer)
            if options.json { print(answer.body.encoded()); return }
            guard case .array(let entries)? = answer.body["entries"] else { return }
            printTable(["ID", "KIND", "DECLARED AT"], entries.map { entry in
                let location = entry["location"]
                return [
                    entry["id"]?.brief ?? "", entry["kind"]?.brief ?? "",
                    "\(location?["file"]?.brief ?? ""):\(location?["line"]?.brief ?? "")",
                ]
            })
            print("version \(answer.body["version"]?.brief ?? "?"): \(entries.count) "
                + (entries.count == 1 ? "entry" : "entries"))
        }
    }
}

struct RegistryShowCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "show", abstract: "Show one entry, as it is now or as it was in a version.",
        discussion: "With --version, works without a running host too, from the history database.")

    @Argument(help: ArgumentHelp("The entry id, namespace:name.", valueName: "id"))
    var id: String

    @Option(name: .long, help: ArgumentHelp("The version to look in (default: the current one).", valueName: "n"))
    var version: Int?

    @OptionGroup var options: ClientOptions

    func validate() throws {
        guard EntryID(id) != nil else { throw ValidationError("'\(id)' is not an entry id (namespace:name)") }
        if let version, version < 0 { throw ValidationError("--version must not be negative") }
    }

    func run() async throws {
        try await runClient {
            let answer: AdminClient.Answer
            do {
                let target = "/v1/registry/entries/\(urlEncoded(id))" + (version.map { "?version=\($0)" } ?? "")
                answer = try await AdminClient(statePath: options.statePath).send("GET", target)
            } catch AdminClient.Failure.noHost(let message) {
                guard let version else { throw AdminClient.Failure.noHost(message) }
                answer = try OfflineHistory(statePath: options.statePath).show(EntryID(id)!, version: version)
            }
            try fail(unless: answer)
            if options.json { print(answer.body.encoded()); return }
            let entry = answer.body["entry"] ?? .null
            let location = entry["location"]
            print("\(entry["id"]?.brief ?? id)  (\(entry["kind"]?.brief ?? "?"), version \(answer.body["version"]?.brief ?? "?"), "
                + "declared at \(location?["file"]?.brief ?? ""):\(location?["line"]?.brief ?? ""))")
            if case .object(let meta)? = entry["meta"], !meta.isEmpty { print("meta: " + JSON.object(meta).pretty()) }
            print("data: " + (entry["data"] ?? .null).pretty())
        }
    }
}

struct RegistryHistoryCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "history", abstract: "List the versions, or the versions that changed one entry.",
        discussion: "Works without a running host too, from the history database.")

    @Argument(help: ArgumentHelp("Only the versions that changed this entry.", valueName: "id"))
    var id: String?

    @OptionGroup var options: ClientOptions

    func validate() throws {
        if let id, EntryID(id) == nil { throw ValidationError("'\(id)' is not an entry id (namespace:name)") }
    }

    func run() async throws {
        try await runClient {
            let answer: AdminClient.Answer
            do {
                let target = "/v1/registry/versions" + (id.map { "?entry=" + urlEncoded($0) } ?? "")
                answer = try await AdminClient(statePath: options.statePath).send("GET", target)
            } catch AdminClient.Failure.noHost {
                answer = try OfflineHistory(statePath: options.statePath).history(id.flatMap(EntryID.init))
            }
            try fail(unless: answer)
            if options.json { print(answer.body.encoded()); return }
            guard case .array(let versions)? = answer.body["versions"] else { return }
            // With an id, each row says what that version did to the entry; otherwise how much it changed.
            printTable(["VERSION", "TIME", "SOURCE", id == nil ? "CHANGES" : "CHANGE", "USER", "MESSAGE"], versions.map { v in
                let change = id == nil
                    ? "+\(v["created"]?.brief ?? "0") ~\(v["updated"]?.brief ?? "0") -\(v["deleted"]?.brief ?? "0")"
                    : v["operation"]?.brief ?? ""
                return [v["version"]?.brief ?? "", isoTime(v["time"].flatMap(\.doubleValue) ?? 0), v["source"]?.brief ?? "",
                        change, v["user"]?.brief ?? "-", v["message"]?.brief ?? ""]
            })
            if versions.isEmpty { print(id.map { "no version changed \($0)" } ?? "no versions yet") }
        }
    }
}

struct RegistryDiffCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "diff", abstract: "Show what differs between two versions.")

    @Argument(help: ArgumentHelp("The older version.", valueName: "v1"))
    var from: Int

    @Argument(help: ArgumentHelp("The newer version.", valueName: "v2"))
    var to: Int

    @OptionGroup var options: ClientOptions

    func validate() throws {
        if from < 0 || to < 0 { throw ValidationError("versions must not be negative") }
    }

    func run() async throws {
        try await runClient {
            let answer = try await AdminClient(statePath: options.statePath).send("GET", "/v1/registry/diff?from=\(from)&to=\(to)")
            try fail(unless: answer)
            if options.json { print(answer.body.encoded()); return }
            let body = answer.body
            var lines = 0
            for case let entry in body["deleted"]?.arrayValue ?? [] {
                print("- \(entry["id"]?.brief ?? "")  (\(entry["kind"]?.brief ?? ""))")
                lines += 1
            }
            for case let entry in body["created"]?.arrayValue ?? [] {
                print("+ \(entry["id"]?.brief ?? "")  (\(entry["kind"]?.brief ?? ""))")
                lines += 1
            }
            for change in body["updated"]?.arrayValue ?? [] {
                let before = change["before"] ?? .null, after = change["after"] ?? .null
                print("~ \(after["id"]?.brief ?? "")")
                for line in fieldChanges(before, after) { print("    \(line)") }
                lines += 1
            }
            if lines == 0 { print("versions \(from) and \(to) have the same entries") }
        }
    }

    /// `kind`, `meta.x`, `data.port: 8080 -> 8081` for each top-level field that differs.
    func fieldChanges(_ before: JSON, _ after: JSON) -> [String] {
        var out: [String] = []
        if before["kind"] != after["kind"] { out.append("kind: \(before["kind"]?.brief ?? "") -> \(after["kind"]?.brief ?? "")") }
        for part in ["meta", "data"] {
            let old = before[part]?.objectValue ?? [:], new = after[part]?.objectValue ?? [:]
            for key in Set(old.keys).union(new.keys).sorted() where old[key] != new[key] {
                out.append("\(part).\(key): \(old[key]?.encoded() ?? "(none)") -> \(new[key]?.encoded() ?? "(none)")")
            }
        }
        return out
    }
}

struct RegistryRollbackCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback", abstract: "Make the registry equal an earlier version, as a new version.",
        discussion: "History is append-only: the rollback is itself a version, and can be rolled back.")

    @Argument(help: ArgumentHelp("The version to return to.", valueName: "version"))
    var version: Int

    @Option(name: .long, help: ArgumentHelp("Why; kept with the new version.", valueName: "text"))
    var message: String?

    @OptionGroup var options: ClientOptions

    func validate() throws {
        if version < 0 { throw ValidationError("the version must not be negative") }
    }

    func run() async throws {
        var body: [String: JSON] = ["version": .int(Int64(version))]
        if let message { body["message"] = .string(message) }
        try await runClient {
            let answer = try await AdminClient(statePath: options.statePath).send("POST", "/v1/registry/rollback", body: .object(body))
            try report(answer, json: options.json, action: "rolled back to version \(version)")
        }
    }
}

struct RegistryApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply", abstract: "Apply the registry folder now (as a file change or SIGHUP would).")

    @Option(name: .long, help: ArgumentHelp("Why; kept with the new version.", valueName: "text"))
    var message: String?

    @OptionGroup var options: ClientOptions

    func run() async throws {
        let body: JSON = message.map { ["message": .string($0)] } ?? [:]
        try await runClient {
            let answer = try await AdminClient(statePath: options.statePath).send("POST", "/v1/registry/apply", body: body)
            try report(answer, json: options.json, action: "applied the folder")
        }
    }
}

/// Prints an apply's outcome; a rejection lists every error and exits 1.
private func report(_ answer: AdminClient.Answer, json: Bool, action: String) throws {
    if json { print(answer.body.encoded()) }
    switch answer.body["outcome"]?.stringValue {
    case "committed":
        let v = answer.body["version"] ?? .null
        if !json {
            print("\(action): version \(v["version"]?.brief ?? "?") committed (\(v["created"]?.brief ?? "0") created, "
                + "\(v["updated"]?.brief ?? "0") updated, \(v["deleted"]?.brief ?? "0") deleted)")
        }
    case "unchanged":
        if !json { print("\(action): nothing changed, still version \(answer.body["version"]?["version"]?.brief ?? "?")") }
    case "rejected":
        if !json {
            let errors = answer.body["errors"]?.arrayValue ?? []
            for error in errors { print(error["text"]?.brief ?? error.encoded()) }
            print("rejected: \(errors.count) \(errors.count == 1 ? "problem" : "problems"); the running version stays")
        }
        throw HostExit(code: 1)
    default:
        try fail(unless: answer)
    }
}

/// Fails the command with the host's error message when the answer is not a success.
func fail(unless answer: AdminClient.Answer) throws {
    guard answer.isSuccess else {
        printError("roost: \(answer.errorMessage)")
        throw HostExit(code: 1)
    }
}

/// `history` and `show --version` without a host: straight from the history database, in the
/// same JSON shapes the admin API answers with.
struct OfflineHistory {
    let statePath: String

    private func open() throws -> HistoryStore {
        let path = statePath + "/registry.db"
        guard access(path, R_OK) == 0 else {
            throw AdminClient.Failure.noHost(
                "no host is running with state folder '\(statePath)', and it has no history (\(path))")
        }
        do {
            return try HistoryStore.open(path: path)
        } catch {
            throw AdminClient.Failure.broken("cannot read the history: \(error)")
        }
    }

    func history(_ id: EntryID?) throws -> AdminClient.Answer {
        let store = try open()
        do {
            return AdminClient.Answer(status: 200, body: try store.versionsJSON(of: id))
        } catch {
            throw AdminClient.Failure.broken("cannot read the history: \(error)")
        }
    }

    func show(_ id: EntryID, version: Int) throws -> AdminClient.Answer {
        let store = try open()
        do {
            guard let entry = try store.state(at: version)[id] else {
                return AdminClient.Answer(status: 404, body: ["error": ["message": .string("there is no entry \(id) in version \(version)")]])
            }
            return AdminClient.Answer(status: 200, body: ["version": .int(Int64(version)), "entry": entry.json])
        } catch {
            // The do block throws only RegistryError (typed throws).
            if error.code == .unknownVersion {
                return AdminClient.Answer(status: 404, body: ["error": ["message": .string(error.message)]])
            }
            throw AdminClient.Failure.broken("cannot read the history: \(error)")
        }
    }
}

extension JSON {
    var arrayValue: [JSON]? { if case .array(let items) = self { return items } else { return nil } }
    var objectValue: [String: JSON]? { if case .object(let members) = self { return members } else { return nil } }
    var doubleValue: Double? {
        switch self {
        case .double(let d): return d
        case .int(let i): return Double(i)
        default: return nil
        }
    }
}
