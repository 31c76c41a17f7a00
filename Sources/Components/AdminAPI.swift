import Core
import HTTPService
import Registry
import Supervisor

/// The admin API's requests and answers (documented in docs/ADMIN-API.md): registry reads,
/// history, diff, rollback, apply; services (list, start, stop, restart, logs); function calls;
/// the live event stream, health and readiness (`/healthz`, `/readyz`), and metrics (`/metrics`).
///
/// Every answer is JSON (`{"error": {"code", "message"}}` for a failure) except `/v1/events`,
/// which is a Server-Sent Events stream. The handler never throws: a bad request gets a 4xx
/// answer saying what is wrong.
public struct AdminAPI: Sendable {
    public let registry: RegistryService
    public let reloader: RegistryReloader
    public let bus: EventBus
    public let supervisor: Supervisor?
    public let functions: FunctionRunner?
    /// What `/readyz` checks; none: ready whenever it answers.
    public let readiness: ReadinessCheck?
    /// What `/metrics` serves; none: 404.
    public let metrics: HostMetrics?

    public init(registry: RegistryService, reloader: RegistryReloader, bus: EventBus, supervisor: Supervisor? = nil,
                functions: FunctionRunner? = nil, readiness: ReadinessCheck? = nil, metrics: HostMetrics? = nil) {
        self.registry = registry
        self.reloader = reloader
        self.bus = bus
        self.supervisor = supervisor
        self.functions = functions
        self.readiness = readiness
        self.metrics = metrics
    }

    /// Answers one request; `user` is the caller's user id where the socket knows it.
    public func handle(_ request: HTTPRequest, user: String?) async -> HTTPResponse {
        let path = request.path
        let segments = path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        let query = request.queryItems
        do {
            if segments.count >= 2, segments[0] == "v1", segments[1] == "services" {
                return try await services(request, Array(segments.dropFirst(2)), query)
            }
            if segments.count == 4, segments[0] == "v1", segments[1] == "functions", segments[3] == "call" {
                return try await call(request, segments[2])
            }
            let route = segments.joined(separator: "/")
            let entryRoute = segments.count == 4 && segments.prefix(3) == ["v1", "registry", "entries"]
            let allowed: String
            switch route {
            case "healthz", "readyz", "metrics", "v1/registry", "v1/registry/entries", "v1/registry/versions", "v1/registry/diff", "v1/events":
                allowed = "GET"
            case "v1/registry/rollback", "v1/registry/apply":
                allowed = "POST"
            default:
                guard entryRoute else { throw AdminError(404, "not_found", "no admin endpoint \(path)") }
                allowed = "GET"
            }
            guard request.method == allowed else {
                throw AdminError(405, "method_not_allowed", "\(request.method) is not allowed on \(path); use \(allowed)")
            }
            switch route {
            case "healthz":
                return .json(["status": "ok"])
            case "readyz":
                return await ready()
            case "metrics":
                guard let metrics else { throw AdminError(404, "not_found", "this host keeps no metrics") }
                return HTTPResponse(status: 200, headers: ["Content-Type": HostMetrics.contentType], body: .bytes(metrics.render()))
            case "v1/registry":
                let finder = await registry.finder()
                return .json(["version": .int(Int64(finder.version)), "entries": .int(Int64(finder.count))])
            case "v1/registry/entries": return try await listEntries(query)
            case "v1/registry/versions": return try await versions(query)
            case "v1/registry/diff": return try await diff(query)
            case "v1/registry/rollback": return try await rollback(request.body, user: user)
            case "v1/registry/apply": return try await apply(request.body, user: user)
            case "v1/events": return try events(query)
            default: return try await showEntry(segments[3], query)
            }
        } catch let error as AdminError {
            return error.response
        } catch let error as RegistryError {
            return AdminError(error.code == .unknownVersion ? 404 : 500, error.code.rawValue, error.description).response
        } catch {
            return AdminError(500, "internal", "\(error)").response
        }
    }

    // MARK: - Functions

    /// `POST /v1/functions/ID/call`: runs the function with the body (JSON, or none) and answers
    /// with its response as it is.
    private func call(_ request: HTTPRequest, _ idText: String) async throws -> HTTPResponse {
        guard request.method == "POST" else {
            throw AdminError(405, "method_not_allowed", "\(request.method) is not allowed on \(request.path); use POST")
        }
        guard let functions else { throw AdminError(404, "not_found", "this host runs no functions") }
        let id = try Self.entryID(idText)
        var body: JSON?
        if !request.body.allSatisfy({ $0 == 32 || $0 == 10 || $0 == 13 || $0 == 9 }) {
            do {
                body = try JSON.parse(bytes: request.body)
            } catch {
                throw AdminError(400, "bad_body", "the body is not JSON: \(error)")
            }
        }
        let requestID = SiteRouter.requestID(from: request.headers["X-Request-Id"])
        guard var response = await functions.call(id, body: body, requestID: requestID) else {
            throw AdminError(404, "no_function", "no swiftlet.function \(id)")
        }
        response.headers.replace("X-Request-Id", with: requestID)
        return response
    }

    /// 200 `{"status": "ready"}`, or 503 `{"status": "not_ready", "not_ready": [...]}` naming each
    /// part that is not.
    private func ready() async -> HTTPResponse {
        let problems = await readiness?.problems() ?? []
        guard !problems.isEmpty else { return .json(["status": "ready"]) }
        return .json(status: 503, ["status": "not_ready", "not_ready": .array(problems.map(\.json))])
    }

    // MARK: - Services

    private func services(_ request: HTTPRequest, _ rest: [String], _ query: [(name: String, value: String)]) async throws
        -> HTTPResponse
    {
        guard let supervisor else { throw AdminError(404, "not_found", "this host runs no supervisor") }
        switch (request.method, rest.count) {
        case ("GET", 0):
            let tree = query.contains { $0.name == "tree" && $0.value != "0" }
            let statuses = await supervisor.status()
            // The tree scans /proc once per service: off the loop.
            let services = try await Self.offLoop {
                statuses.map { status -> JSON in
                    guard tree, case .object(var object) = status.json, let pid = status.pid else { return status.json }
                    object["processes"] = .array(ProcessTable.members(of: pid).map {
                        ["pid": .int(Int64($0.pid)), "command": .string($0.command)]
                    })
                    return .object(object)
                }
            }
            return .json(["services": .array(services)])
        case ("GET", 1):
            let id = try Self.entryID(rest[0])
            guard let status = await supervisor.status(of: id) else { throw AdminError(404, "no_service", "there is no service \(id)") }
            return .json(["service": status.json])
        case ("POST", 2) where ["start", "stop", "restart"].contains(rest[1]):
            let id = try Self.entryID(rest[0])
            do {
                switch rest[1] {
                case "start":
                    try await supervisor.start(id)
                    await supervisor.waitFor(id, [.running, .backoff, .exited, .failed, .stopped])
                case "stop": try await supervisor.stop(id)
                default:
                    try await supervisor.restart(id)
                    await supervisor.waitFor(id, [.running, .backoff, .exited, .failed, .stopped])
                }
            } catch {
                throw AdminError(404, "no_service", error.message)
            }
            let status = await supervisor.status(of: id)
            return .json(["service": status?.json ?? .null])
        case ("GET", 2) where rest[1] == "logs":
            let id = try Self.entryID(rest[0])
            var count = 100
            if let text = query.first(where: { $0.name == "n" })?.value {
                guard let n = Int(text), n >= 0 else { throw AdminError(400, "bad_query", "n must be a number of lines") }
                count = n
            }
            let follow = query.contains { $0.name == "follow" && $0.value != "0" }
            do {
                if follow {
                    let lines = try await supervisor.followLogs(id, last: count)
                    let (events, continuation) = AsyncStream.makeStream(of: ServerSentEvent.self)
                    let forward = Task {
                        for await line in lines { continuation.yield(ServerSentEvent(event: "log", data: line.json.encoded())) }
                        continuation.finish()
                    }
                    continuation.onTermination = { _ in forward.cancel() }
                    return .serverSentEvents(events)
                }
                return .json(["service": .string(id.description), "lines": .array(try await supervisor.logs(id, last: count).map(\.json))])
            } catch {
                throw AdminError(404, "no_service", error.message)
            }
        case (_, 0), (_, 1), (_, 2):
            throw AdminError(405, "method_not_allowed", "\(request.method) is not allowed on \(request.path)")
        default:
            throw AdminError(404, "not_found", "no admin endpoint \(request.path)")
        }
    }

    // MARK: - Registry reads

    private func listEntries(_ query: [(name: String, value: String)]) async throws -> HTTPResponse {
        var entryQuery = EntryQuery()
        for (name, value) in query {
            switch name {
            case "kind": entryQuery.kind = Glob(value)
            case "namespace": entryQuery.namespace = value
            case "id": entryQuery.id = Glob(value)
            case "meta":
                guard let equals = value.firstIndex(of: "=") else {
                    throw AdminError(400, "bad_query", "meta must be key=value, got '\(value)'")
                }
                entryQuery.meta[String(value[..<equals])] = String(value[value.index(after: equals)...])
            default:
                throw AdminError(400, "bad_query", "unknown query parameter '\(name)' (kind, namespace, id, meta)")
            }
        }
        let finder = await registry.finder()
        return .json([
            "version": .int(Int64(finder.version)),
            "entries": .array(finder.find(entryQuery).map(\.json)),
        ])
    }

    private func showEntry(_ text: String, _ query: [(name: String, value: String)]) async throws -> HTTPResponse {
        let id = try Self.entryID(text)
        let version: Int
        let found: Entry?
        if let number = try Self.optionalVersion(query, "version") {
            let history = registry.history
            version = number
            found = try await Self.offLoop { try history.state(at: number) }[id]
        } else {
            // One Finder: the version and the entry come from the same state.
            let finder = await registry.finder()
            version = finder.version
            found = finder.entry(id)
        }
        guard let entry = found else {
            throw AdminError(404, "no_entry", "there is no entry \(id) in version \(version)")
        }
        return .json(["version": .int(Int64(version)), "entry": entry.json])
    }

    private func versions(_ query: [(name: String, value: String)]) async throws -> HTTPResponse {
        let history = registry.history
        let id = try query.first(where: { $0.name == "entry" }).map { try Self.entryID($0.value) }
        return .json(try await Self.offLoop { try history.versionsJSON(of: id) })
    }

    private func diff(_ query: [(name: String, value: String)]) async throws -> HTTPResponse {
        guard let from = try Self.optionalVersion(query, "from"), let to = try Self.optionalVersion(query, "to") else {
            throw AdminError(400, "bad_query", "diff needs from=V1 and to=V2")
        }
        let history = registry.history
        let (before, after) = try await Self.offLoop { (try history.state(at: from), try history.state(at: to)) }
        return .json(RegistryDiff.json(from: from, to: to, before: before, after: after))
    }

    // MARK: - Changes

    private func rollback(_ body: [UInt8], user: String?) async throws -> HTTPResponse {
        let object = try Self.bodyObject(body)
        guard let version = object["version"]?.intValue else {
            throw AdminError(400, "bad_body", "rollback needs {\"version\": V}")
        }
        let context = ApplyContext(source: .rollback, message: object["message"]?.stringValue, user: user)
        return Self.outcomeResponse(await registry.rollback(to: Int(version), context: context))
    }

    private func apply(_ body: [UInt8], user: String?) async throws -> HTTPResponse {
        let object = try Self.bodyObject(body)
        let context = ApplyContext(source: .admin, message: object["message"]?.stringValue, user: user)
        return Self.outcomeResponse(await reloader.reload(context))
    }

    static func outcomeResponse(_ outcome: ApplyOutcome) -> HTTPResponse {
        switch outcome {
        case .committed(let version, _):
            return .json(["outcome": "committed", "version": version.json])
        case .unchanged(let number):
            return .json(["outcome": "unchanged", "version": ["version": .int(Int64(number))]])
        case .rejected(let errors):
            if errors.count == 1, errors[0].code == .unknownVersion {
                return AdminError(404, errors[0].code.rawValue, errors[0].message).response
            }
            return .json(status: 422, ["outcome": "rejected", "errors": .array(errors.map(\.json))])
        }
    }

    // MARK: - Events

    private func events(_ query: [(name: String, value: String)]) throws -> HTTPResponse {
        var patterns: [TopicPattern] = []
        for (name, value) in query {
            guard name == "pattern" else {
                throw AdminError(400, "bad_query", "unknown query parameter '\(name)' (pattern)")
            }
            do {
                patterns.append(try TopicPattern(value))
            } catch {
                throw AdminError(400, "bad_pattern", "\(error)")
            }
        }
        if patterns.isEmpty { patterns = [try! TopicPattern("**")] }
        // Pulled as the client reads: a client that stops reading leaves its events in the bus's
        // bounded buffer, which drops the oldest (and says so), rather than in the host's memory.
        let cursor = SubscriptionCursor(bus.subscribe(patterns, name: "admin.events"))
        return .serverSentEvents(pulling: {
            await cursor.next().map { ServerSentEvent(event: $0.topic, data: $0.json.encoded(), id: String($0.seq)) }
        })
    }

    // MARK: - Parsing

    static func entryID(_ text: String) throws -> EntryID {
        guard let id = EntryID(HTTPRequest.percentDecoded(text)) else {
            throw AdminError(400, "bad_id", "'\(text)' is not an entry id (namespace:name)")
        }
        return id
    }

    static func optionalVersion(_ query: [(name: String, value: String)], _ name: String) throws -> Int? {
        guard let text = query.first(where: { $0.name == name })?.value else { return nil }
        guard let number = Int(text), number >= 0 else {
            throw AdminError(400, "bad_version", "\(name) must be a version number, got '\(text)'")
        }
        return number
    }

    static func bodyObject(_ body: [UInt8]) throws -> [String: JSON] {
        if body.allSatisfy({ $0 == 32 || $0 == 10 || $0 == 13 || $0 == 9 }) { return [:] }
        do {
            guard case .object(let object) = try JSON.parse(bytes: body) else {
                throw AdminError(400, "bad_body", "the body must be a JSON object")
            }
            return object
        } catch let error as AdminError {
            throw error
        } catch {
            throw AdminError(400, "bad_body", "the body is not JSON: \(error)")
        }
    }

    /// History reads wait for the disk: not on the caller's executor, which may be the loop.
    static func offLoop<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await Task.detached { try body() }.value
    }
}

extension Event {
    /// `{topic, path, data, time, seq}`: one line of `roost events --json`.
    public var json: JSON {
        ["topic": .string(topic), "path": .string(path), "data": data, "time": .double(time), "seq": .int(Int64(seq))]
    }
}

/// Where one event stream is in its subscription.
///
/// `@unchecked Sendable`: `next()` is called only by the stream's body, which the server's writer
/// task iterates one element at a time, so `iterator` is never used by two tasks at once. Once
/// the body is abandoned the cursor is freed, and with it the subscription.
private final class SubscriptionCursor: @unchecked Sendable {
    private var iterator: EventSubscription.AsyncIterator

    init(_ subscription: EventSubscription) { iterator = subscription.makeAsyncIterator() }

    func next() async -> Event? { await iterator.next() }
}

/// A failure answered to an admin client.
struct AdminError: Error {
    let status: Int
    let code: String
    let message: String

    init(_ status: Int, _ code: String, _ message: String) {
        self.status = status
        self.code = code
        self.message = message
    }

    var response: HTTPResponse {
        .json(status: status, ["error": ["code": .string(code), "message": .string(message)]])
    }
}

/// What differs between two states, for `roost registry diff`.
public enum RegistryDiff {
    public static func json(from: Int, to: Int, before: [EntryID: Entry], after: [EntryID: Entry]) -> JSON {
        let changes = ChangeSet.between(current: before, desired: after)
        return [
            "from": .int(Int64(from)), "to": .int(Int64(to)),
            "created": .array(changes.creates.map(\.json)),
            "updated": .array(changes.updates.map { entry in
                ["before": before[entry.id]!.json, "after": entry.json]
            }),
            "deleted": .array(changes.deletes.map(\.json)),
        ]
    }
}
