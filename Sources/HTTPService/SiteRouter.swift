import Core
import Logging
import Registry
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// What the HTTP side serves, built from one registry state: the `http.service` entries, the
/// routes of each, and the functions they call. Built whole for each version and then only read.
public struct Site: Sendable {
    public struct Service: Sendable {
        public let definition: HTTPServiceDefinition
        public let table: RouteTable
        public let endpoints: [EntryID: EndpointDefinition]
        public let notFound: FunctionDefinition?
    }

    public let services: [EntryID: Service]
    public let functions: [EntryID: FunctionDefinition]

    public static let empty = Site(services: [:], functions: [:])

    /// The site of `state`, and the problems that keep parts of it out (an apply refuses a state
    /// with any: `problems(in:)`).
    public static func build(from state: [EntryID: Entry], registryRoot: String?) -> (Site, [RegistryError]) {
        let functionKind = FunctionKind(registryRoot: registryRoot)
        var functions: [EntryID: FunctionDefinition] = [:]
        var definitions: [EntryID: HTTPServiceDefinition] = [:]
        var endpoints: [(Entry, EndpointDefinition)] = []
        for entry in state.values {
            switch entry.kind {
            case FunctionKind.name: if let definition = functionKind.definition(of: entry) { functions[entry.id] = definition }
            case HTTPServiceKind.name: if let definition = HTTPServiceKind().definition(of: entry) { definitions[entry.id] = definition }
            case EndpointKind.name: if let definition = EndpointKind().definition(of: entry) { endpoints.append((entry, definition)) }
            default: break
            }
        }
        var problems: [RegistryError] = []
        var byService: [EntryID: [(Entry, EndpointDefinition)]] = [:]
        for (entry, endpoint) in endpoints.sorted(by: { $0.0.id < $1.0.id }) {
            let service: EntryID?
            if let reference = endpoint.service {
                service = EntryID.resolve(reference, in: entry.id.namespace)
                if service.map({ definitions[$0] == nil }) ?? true {
                    problems.append(RegistryError(.invalidField, "'service': '\(reference)' is not an http.service",
                                                  at: entry.location(ofField: "service"), entry: entry.id))
                    continue
                }
            } else if definitions.count == 1 {
                service = definitions.keys.first
            } else {
                problems.append(RegistryError(
                    .invalidField, definitions.isEmpty ? "there is no http.service to serve this endpoint"
                        : "'service' is needed: there are \(definitions.count) http.service entries",
                    at: entry.location, entry: entry.id))
                continue
            }
            let function = EntryID.resolve(endpoint.function, in: entry.id.namespace)
            if function.map({ functions[$0] == nil }) ?? true {
                problems.append(RegistryError(.invalidField, "'func': '\(endpoint.function)' is not a swiftlet.function",
                                              at: entry.location(ofField: "func"), entry: entry.id))
                continue
            }
            byService[service!, default: []].append((entry, endpoint))
        }
        var services: [EntryID: Service] = [:]
        for (id, definition) in definitions {
            let mine = byService[id] ?? []
            let table: RouteTable
            do {
                table = try RouteTable(mine.map { entry, endpoint in endpoint.route(location: entry.location(ofField: "path")) })
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
                                   endpoints: Dictionary(uniqueKeysWithValues: mine.map { ($0.1.id, $0.1) }), notFound: notFound)
        }
        return (Site(services: services, functions: functions), problems)
    }
}

/// Answers the requests of every `http.service` from the current `Site`: a request is routed by
/// the site that was current when it arrived (`replace` swaps it whole), to its endpoint's
/// function through the CGI gateway.
///
/// Each response carries `X-Request-Id` (the client's, when it sent a short token-like one; a new
/// one otherwise); stderr of the function is logged with it, and one access-log line per request
/// names method, target, status, duration and id. A CGI local redirect is followed (up to 5) as a
/// GET of the new path. A function's `concurrency` and `queue` limit its requests under way
/// (`FunctionGate`); beyond them the answer is 503 with `Retry-After`. Not done yet:
/// `protocol: json`, request bodies streamed to the function (they arrive whole).
public final class SiteRouter: Sendable {
    private let current = Mutex(Site.empty)
    /// Per function, kept across versions (requests under way hold theirs).
    private let gates = Mutex<[EntryID: FunctionGate]>([:])
    private let loop: EventLoop
    private let logger: Logger
    private let software: String
    /// Told of every answered request (the host's metrics).
    private let observer: (any RequestObserver)?

    public init(loop: EventLoop, logger: Logger, software: String, observer: (any RequestObserver)? = nil) {
        self.loop = loop
        self.logger = logger
        self.software = software
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
        var response = await respond(to: request, service: service, site: site, requestID: id, hops: 0)
        response.headers.replace("X-Request-Id", with: id)
        let elapsed = ContinuousClock.now - started
        let tenths = elapsed.components.seconds * 10_000 + elapsed.components.attoseconds / 100_000_000_000_000
        logger.info("\(request.method) \(request.target) \(response.status) \(tenths / 10).\(tenths % 10) ms",
                    metadata: ["request": "\(id)", "service": "\(service)",
                               "client": "\(request.remoteAddress?.description ?? "-")"])
        if let observer {
            // Routed again on the same site: the route of the request as it arrived (a local
            // redirect counts under it), without reaching into `respond`.
            observer.requestAnswered(service: service, route: site.routeLabel(of: request, service: service),
                                     method: request.method, status: response.status, duration: elapsed)
        }
        return response
    }

    private func respond(to request: HTTPRequest, service: EntryID, site: Site, requestID: String, hops: Int) async -> HTTPResponse {
        guard let routes = site.services[service] else { return .text(status: 503, "service unavailable\n") }
        switch routes.table.route(method: request.method, host: request.headers["Host"], path: request.path) {
        case .matched(let route, let parameters, let rest):
            guard let endpoint = routes.endpoints[route.id],
                  let functionID = EntryID.resolve(endpoint.function, in: endpoint.id.namespace),
                  let function = site.functions[functionID] else {
                return .text(status: 503, "service unavailable\n")
            }
            if let limit = endpoint.maxBody, request.body.count > limit {
                return HTTPResponse(status: 413, headers: ["Connection": "close"], body: .bytes(Array("request body too large\n".utf8)))
            }
            return await run(function, timeout: endpoint.timeout, request: request, parameters: parameters, rest: rest,
                             routes: routes, site: site, service: service, requestID: requestID, hops: hops)
        case .methodNotAllowed(let allowed):
            return HTTPResponse(status: 405, headers: ["Allow": allowed.joined(separator: ", ")],
                                body: .bytes(Array("method not allowed\n".utf8)))
        case .notFound:
            guard let notFound = routes.notFound else { return .text(status: 404, "not found\n") }
            return await run(notFound, timeout: nil, request: request, parameters: [:], rest: nil, routes: routes, site: site,
                             service: service, requestID: requestID, hops: hops)
        }
    }

    private func gate(for function: EntryID) -> FunctionGate {
        gates.withLock { gates in
            if let gate = gates[function] { return gate }
            let gate = FunctionGate()
            gates[function] = gate
            return gate
        }
    }

    /// Runs `function` for the request once its gate lets it (503 when its queue is full); the gate
    /// is held until the function's process is gone.
    private func run(_ function: FunctionDefinition, timeout: Duration?, request: HTTPRequest, parameters: [String: String],
                     rest: String?, routes: Site.Service, site: Site, service: EntryID, requestID: String,
                     hops: Int) async -> HTTPResponse {
        var program = function.program
        if let timeout { program.timeout = timeout }
        let gate = gate(for: function.id)
        guard await gate.enter(concurrency: function.concurrency, queue: function.queue) else {
            return HTTPResponse(status: 503, headers: ["Retry-After": "1"], body: .bytes(Array("busy: try again\n".utf8)))
        }
        let onEnd: @Sendable () -> Void = { gate.leave() }
        let listen = routes.definition.listen
        let cgi = CGIRequest(request: request, parameters: parameters, rest: rest, serverName: listen.host, serverPort: listen.port,
                             remoteAddress: request.remoteAddress?.host ?? "", remotePort: request.remoteAddress?.port ?? 0,
                             serverSoftware: software)
        switch await CGIGateway.run(program, for: cgi, requestID: requestID, on: loop, logger: logger, onEnd: onEnd) {
        case .response(let response):
            return response
        case .localRedirect(let path):
            guard hops < 5 else { return .text(status: 508, "too many local redirects\n") }
            var next = HTTPRequest(method: "GET", target: path, version: request.version, headers: request.headers)
            next.remoteAddress = request.remoteAddress
            next.headers.remove("Content-Length")
            next.headers.remove("Content-Type")
            return await respond(to: next, service: service, site: site, requestID: requestID, hops: hops + 1)
        }
    }

    /// The client's id when it is 1-128 bytes of letters, digits and `-_.:`; a new random one otherwise.
    static func requestID(from given: String?) -> String {
        if let given, (1...128).contains(given.utf8.count),
           given.utf8.allSatisfy({ $0 < 128 && (Character(UnicodeScalar($0)).isLetter || Character(UnicodeScalar($0)).isNumber || "-_.:".utf8.contains($0)) }) {
            return given
        }
        return String(UInt64.random(in: .min ... .max), radix: 16).leftPadded(to: 16)
    }
}
