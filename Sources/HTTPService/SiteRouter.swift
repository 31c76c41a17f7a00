import Core
import Logging
import Registry
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What the HTTP side serves, built from one registry state: the `http.service` entries, the
/// routes of each (endpoints and static mounts), and the functions they call. Built whole for
/// each version and then only read.
public struct Site: Sendable {
    public struct Service: Sendable {
        public let definition: HTTPServiceDefinition
        public let table: RouteTable
        public let endpoints: [EntryID: EndpointDefinition]
        /// The `http.static` mounts, by entry id (their routes are in `table` too).
        public let statics: [EntryID: StaticFiles]
        public let notFound: FunctionDefinition?
    }

    public let services: [EntryID: Service]
    public let functions: [EntryID: FunctionDefinition]

    public static let empty = Site(services: [:], functions: [:])

    /// The site of `state`, and the problems that keep parts of it out (an apply refuses a state
    /// with any: `problems(in:)`).
    public static func build(from state: [EntryID: Entry], registryRoot: String?) -> (Site, [RegistryError]) {
        let functionKind = FunctionKind(registryRoot: registryRoot)
        let staticKind = StaticKind(registryRoot: registryRoot)
        var functions: [EntryID: FunctionDefinition] = [:]
        var definitions: [EntryID: HTTPServiceDefinition] = [:]
        var endpoints: [(Entry, EndpointDefinition)] = []
        var mounts: [(Entry, StaticDefinition)] = []
        for entry in state.values {
            switch entry.kind {
            case FunctionKind.name: if let definition = functionKind.definition(of: entry) { functions[entry.id] = definition }
            case HTTPServiceKind.name: if let definition = HTTPServiceKind().definition(of: entry) { definitions[entry.id] = definition }
            case EndpointKind.name: if let definition = EndpointKind().definition(of: entry) { endpoints.append((entry, definition)) }
            case StaticKind.name: if let definition = staticKind.definition(of: entry) { mounts.append((entry, definition)) }
            default: break
            }
        }
        var problems: [RegistryError] = []
        /// The service an endpoint or mount belongs to; nil after recording why there is none.
        func owningService(of entry: Entry, named reference: String?, what: String) -> EntryID? {
            if let reference {
                let service = EntryID.resolve(reference, in: entry.id.namespace)
                if service.map({ definitions[$0] == nil }) ?? true {
                    problems.append(RegistryError(.invalidField, "'service': '\(reference)' is not an http.service",
                                                  at: entry.location(ofField: "service"), entry: entry.id))
                    return nil
                }
                return service
            } else if definitions.count == 1 {
                return definitions.keys.first
            }
            problems.append(RegistryError(
                .invalidField, definitions.isEmpty ? "there is no http.service to serve this \(what)"
                    : "'service' is needed: there are \(definitions.count) http.service entries",
                at: entry.location, entry: entry.id))
            return nil
        }
        var staticsByService: [EntryID: [(Entry, StaticFiles)]] = [:]
        for (entry, mount) in mounts.sorted(by: { $0.0.id < $1.0.id }) {
            guard let service = owningService(of: entry, named: mount.service, what: "static mount") else { continue }
            guard let files = StaticFiles(mount) else {
                problems.append(RegistryError(.invalidField, "'root': '\(mount.root)' cannot be resolved",
                                              at: entry.location(ofField: "root"), entry: entry.id))
                continue
            }
            staticsByService[service, default: []].append((entry, files))
        }
        var byService: [EntryID: [(Entry, EndpointDefinition)]] = [:]
        for (entry, endpoint) in endpoints.sorted(by: { $0.0.id < $1.0.id }) {
            guard let service = owningService(of: entry, named: endpoint.service, what: "endpoint") else { continue }
            let function = EntryID.resolve(endpoint.function, in: entry.id.namespace)
            if function.map({ functions[$0] == nil }) ?? true {
                problems.append(RegistryError(.invalidField, "'func': '\(endpoint.function)' is not a swiftlet.function",
                                              at: entry.location(ofField: "func"), entry: entry.id))
                continue
            }
            byService[service, default: []].append((entry, endpoint))
        }
        var services: [EntryID: Service] = [:]
        for (id, definition) in definitions {
            let mine = byService[id] ?? []
            let statics = staticsByService[id] ?? []
            let table: RouteTable
            do {
                table = try RouteTable(mine.map { entry, endpoint in endpoint.route(location: entry.location(ofField: "path")) }
                    + statics.flatMap { entry, files in files.definition.routes(location: entry.location(ofField: "prefix")) })
            } catch {
                problems += error.conflicts.map(\.error)
                table = .empty
            }
            var notFound: FunctionDefinition?
            if let reference = definition.notFound {
                notFound = EntryID.resolve(reference, in: id.namespace).flatMap { functions[$0] }
                if notFound == nil {
                    problems.append(RegistryError(.invalidField, "'not_found': '\(reference)' is not a swiftlet.function",
                                                  at: state[id]?.location(ofField: "not_found"), entry: id))
                }
            }
            services[id] = Service(definition: definition, table: table,
                                   endpoints: Dictionary(uniqueKeysWithValues: mine.map { ($0.1.id, $0.1) }),
                                   statics: Dictionary(uniqueKeysWithValues: statics.map { ($0.0.id, $0.1) }), notFound: notFound)
        }
        return (Site(services: services, functions: functions), problems)
    }
}

/// Answers the requests of every `http.service` from the current `Site`: a request is routed by
/// the site that was current when it arrived (`replace` swaps it whole), to its endpoint's
/// function through the `FunctionRunner` (which limits each function's runs under way), or to
/// the files of its `http.static` mount (`StaticFiles`).
///
/// Each response carries `X-Request-Id` (the client's, when it sent a short token-like one; a new
/// one otherwise); stderr of the function is logged with it, and one access-log line per request
/// names method, target, status, duration and id. A CGI local redirect is followed (up to 5) as a
/// GET of the new path. A request body (streamed,
/// when the server streams bodies) may hold the endpoint's `max_body`, else the service's: a
/// larger declared length is 413 before the function starts, a larger chunked body ends it with
/// 413.
public final class SiteRouter: Sendable {
    private let current = Mutex(Site.empty)
    private let runner: FunctionRunner
    private let logger: Logger
    /// Told of every answered request (the host's metrics).
    private let observer: (any RequestObserver)?

    public init(runner: FunctionRunner, logger: Logger, observer: (any RequestObserver)? = nil) {
        self.runner = runner
        self.logger = logger
        self.observer = observer
    }

    public var site: Site { current.withLock { $0 } }

    public func replace(_ site: Site) {
        current.withLock { $0 = site }
    }

    public func handle(_ request: HTTPRequest, service: EntryID) async -> HTTPResponse {
        let started = ContinuousClock.now
        let id = Self.requestID(from: request.headers["X-Request-Id"])
        let site = self.site
        // The function sees the id too (HTTP_X_REQUEST_ID), and logs with it.
        var request = request
        request.headers.replace("X-Request-Id", with: id)
        var (response, route) = await respond(to: request, service: service, site: site, requestID: id, hops: 0)
        response.headers.replace("X-Request-Id", with: id)
        let elapsed = ContinuousClock.now - started
        let tenths = elapsed.components.seconds * 10_000 + elapsed.components.attoseconds / 100_000_000_000_000
        logger.info("\(request.method) \(request.target) \(response.status) \(tenths / 10).\(tenths % 10) ms",
                    metadata: ["request": "\(id)", "service": "\(service)",
                               "client": "\(request.remoteAddress?.description ?? "-")"])
        // The route of the request as it arrived (a local redirect counts under it).
        observer?.requestAnswered(service: service, route: route, method: request.method, status: response.status,
                                  duration: elapsed)
        return response
    }

    /// The response, and the route label a `RequestObserver` is given: the endpoint's or static
    /// mount's id, `not_found` when no route has the path, `none` otherwise (see there).
    private func respond(to request: HTTPRequest, service: EntryID, site: Site, requestID: String,
                         hops: Int) async -> (HTTPResponse, String) {
        guard let routes = site.services[service] else { return (.text(status: 503, "service unavailable\n"), "none") }
        switch routes.table.route(method: request.method, host: request.headers["Host"], path: request.path) {
        case .matched(let route, let parameters, let rest):
            let label = observer == nil ? "" : route.id.description
            if let files = routes.statics[route.id] { return (files.respond(to: request), label) }
            guard let endpoint = routes.endpoints[route.id],
                  let functionID = EntryID.resolve(endpoint.function, in: endpoint.id.namespace),
                  let function = site.functions[functionID] else {
                return (.text(status: 503, "service unavailable\n"), label)
            }
            if let tooLarge = Self.limitBody(of: request, to: endpoint.maxBody ?? routes.definition.maxBody) {
                return (tooLarge, label)
            }
            return (await run(function, timeout: endpoint.timeout, request: request, parameters: parameters, rest: rest,
                              routes: routes, site: site, service: service, requestID: requestID, hops: hops), label)
        case .methodNotAllowed(let allowed):
            return (HTTPResponse(status: 405, headers: ["Allow": allowed.joined(separator: ", ")],
                                 body: .bytes(Array("method not allowed\n".utf8))), "none")
        case .notFound:
            guard let notFound = routes.notFound else { return (.text(status: 404, "not found\n"), "not_found") }
            if let tooLarge = Self.limitBody(of: request, to: routes.definition.maxBody) { return (tooLarge, "not_found") }
            return (await run(notFound, timeout: nil, request: request, parameters: [:], rest: nil, routes: routes, site: site,
                              service: service, requestID: requestID, hops: hops), "not_found")
        }
    }

    /// Sets the request body's limit; the 413 answer when the body is known to be over it already.
    private static func limitBody(of request: HTTPRequest, to limit: Int) -> HTTPResponse? {
        let length = request.streamedBody.map { $0.declaredLength ?? 0 } ?? request.body.count
        guard length <= limit else {
            request.streamedBody?.discard()
            return HTTPResponse(status: 413, headers: ["Connection": "close", "Content-Type": "text/plain; charset=utf-8"],
                                body: .bytes(Array("request body too large: more than \(limit) bytes\n".utf8)))
        }
        request.streamedBody?.limit = limit
        return nil
    }

    /// Runs `function` through the runner, and follows a local redirect.
    private func run(_ function: FunctionDefinition, timeout: Duration?, request: HTTPRequest, parameters: [String: String],
                     rest: String?, routes: Site.Service, site: Site, service: EntryID, requestID: String,
                     hops: Int) async -> HTTPResponse {
        let listen = routes.definition.listen
        let call = FunctionRunner.Call(request: request, parameters: parameters, rest: rest, serverName: listen.host,
                                       serverPort: listen.port, requestID: requestID, timeout: timeout)
        switch await runner.run(function, call) {
        case .response(let response):
            return response
        case .localRedirect(let path):
            guard hops < 5 else { return .text(status: 508, "too many local redirects\n") }
            var next = HTTPRequest(method: "GET", target: path, version: request.version, headers: request.headers)
            next.remoteAddress = request.remoteAddress
            next.headers.remove("Content-Length")
            next.headers.remove("Content-Type")
            next.headers.remove("Transfer-Encoding")
            return await respond(to: next, service: service, site: site, requestID: requestID, hops: hops + 1).0
        }
    }

    /// The client's id when it is 1-128 bytes of letters, digits and `-_.:`; a new random one otherwise.
    public static func requestID(from given: String?) -> String {
        if let given, (1...128).contains(given.utf8.count),
           given.utf8.allSatisfy({ $0 < 128 && (Character(UnicodeScalar($0)).isLetter || Character(UnicodeScalar($0)).isNumber || "-_.:".utf8.contains($0)) }) {
            return given
        }
        return String(nextRequestNumber(), radix: 16).leftPadded(to: 16)
    }

    /// Request ids: a counter from a random start, mixed (SplitMix64's finalizer) so that ids do
    /// not read as a sequence; unique within a host's run, no system call per request.
    private static let requestCounter = Atomic<UInt64>(UInt64.random(in: .min ... .max))

    private static func nextRequestNumber() -> UInt64 {
        var z = requestCounter.wrappingAdd(0x9E37_79B9_7F4A_7C15, ordering: .relaxed).newValue
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
