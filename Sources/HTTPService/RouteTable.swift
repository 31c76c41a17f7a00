import Registry

/// The `host` of an `http.endpoint`: one name (`api.example.com`), or `*.example.com` for any
/// name that ends in `.example.com` (one label or more before it, not the bare domain). Names are
/// compared without case and without a port.
public struct HostPattern: Sendable, Hashable, CustomStringConvertible {
    /// The name, lowercased; for a wildcard, the part after `*.`.
    public let name: String
    public let isWildcard: Bool

    public init?(_ text: String) {
        let lowered = text.lowercased()
        if lowered.hasPrefix("*.") {
            let rest = String(lowered.dropFirst(2))
            guard Self.isHostName(rest) else { return nil }
            name = rest
            isWildcard = true
        } else {
            guard Self.isHostName(lowered) else { return nil }
            name = lowered
            isWildcard = false
        }
    }

    public var description: String { isWildcard ? "*." + name : name }

    /// `host` is the request's `Host` header (a port, if any, is ignored).
    public func matches(_ host: String) -> Bool {
        let bare = Self.withoutPort(host.lowercased())
        return isWildcard ? bare.hasSuffix("." + name) && bare.count > name.count + 1 : bare == name
    }

    static func withoutPort(_ host: String) -> String {
        if host.hasPrefix("[") { return host.firstIndex(of: "]").map { String(host[...$0]) } ?? host }
        if let colon = host.lastIndex(of: ":") { return String(host[..<colon]) }
        return host
    }

    private static func isHostName(_ text: String) -> Bool {
        !text.isEmpty && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }
            && !text.hasPrefix(".") && !text.hasSuffix(".") && !text.contains("..")
    }
}

/// One endpoint as the router sees it.
public struct Route: Sendable {
    public let id: EntryID
    /// Upper-case; empty means every method.
    public let methods: Set<String>
    public let path: RoutePattern
    public let host: HostPattern?
    /// Where the endpoint is declared, for conflict messages.
    public let location: SourceLocation?

    public init(id: EntryID, methods: Set<String>, path: RoutePattern, host: HostPattern?, location: SourceLocation?) {
        self.id = id
        self.methods = methods
        self.path = path
        self.host = host
        self.location = location
    }

    func allows(_ method: String) -> Bool { methods.isEmpty || methods.contains(method) }

    func sharesAMethod(with other: Route) -> Bool {
        methods.isEmpty || other.methods.isEmpty || !methods.isDisjoint(with: other.methods)
    }
}

/// The routes of one `http.service`, built for each registry version and then only read: a
/// request is routed by the table that was current when it arrived.
///
/// Precedence: an endpoint for the request's host beats one for a `*.` domain, which beats one
/// without `host`; among those, the path decides segment by segment (literal > `:param` > `*`).
/// Two endpoints that no precedence tells apart (same host pattern, a method in common, paths of
/// the same shape) are a conflict: `init` refuses them.
public struct RouteTable: Sendable {
    public let routes: [Route]

    /// A pair of endpoints that could both answer one request.
    public struct Conflict: Sendable, CustomStringConvertible {
        public let first: Route
        public let second: Route
        public var description: String {
            let methods = first.methods.isEmpty || second.methods.isEmpty
                ? "every method" : first.methods.intersection(second.methods).sorted().joined(separator: ", ")
            let host = first.host.map { " on host \($0)" } ?? ""
            return "endpoints \(first.id) (\(first.path)) and \(second.id) (\(second.path)) both match the same requests\(host) for \(methods)"
        }

        /// The apply error: at the second endpoint, naming where the first is declared.
        public var error: RegistryError {
            let other = first.location.map { " (declared at \($0))" } ?? ""
            return RegistryError(.invalidField, description + other, at: second.location, entry: second.id)
        }
    }

    /// No routes: every request is 404.
    public static let empty = RouteTable(unchecked: [])

    private init(unchecked routes: [Route]) {
        self.routes = routes
    }

    /// What routing a request found.
    public enum Outcome: Sendable {
        case matched(Route, parameters: [String: String], rest: String?)
        /// A route has the path but not the method: the methods that would be accepted (for 405).
        case methodNotAllowed(allowed: [String])
        case notFound
    }

    /// Fails with every conflict found.
    public init(_ routes: [Route]) throws(ConflictList) {
        var conflicts: [Conflict] = []
        for (index, route) in routes.enumerated() {
            for other in routes[(index + 1)...]
            where route.host == other.host && route.sharesAMethod(with: other) && route.path.sameShape(other.path) {
                conflicts.append(Conflict(first: route, second: other))
            }
        }
        guard conflicts.isEmpty else { throw ConflictList(conflicts: conflicts) }
        self.routes = routes
    }

    public struct ConflictList: Error, Sendable {
        public let conflicts: [Conflict]
    }

    public func route(method: String, host: String?, path: String) -> Outcome {
        let parts = RoutePattern.parts(of: path)
        var best: (route: Route, hostRank: Int, parameters: [String: String], rest: String?)?
        var allowed = Set<String>()
        var pathMatched = false
        for route in routes {
            let hostRank: Int
            if let pattern = route.host {
                guard let host, pattern.matches(host) else { continue }
                hostRank = pattern.isWildcard ? 1 : 0
            } else {
                hostRank = 2
            }
            guard let parts, let found = route.path.match(parts: parts) else { continue }
            pathMatched = true
            guard route.allows(method) else {
                allowed.formUnion(route.methods)
                continue
            }
            if let current = best {
                let better = hostRank < current.hostRank
                    || (hostRank == current.hostRank && route.path.outranks(current.route.path))
                if !better { continue }
            }
            best = (route, hostRank, found.parameters, found.rest)
        }
        if let best { return .matched(best.route, parameters: best.parameters, rest: best.rest) }
        return pathMatched ? .methodNotAllowed(allowed: allowed.sorted()) : .notFound
    }
}
