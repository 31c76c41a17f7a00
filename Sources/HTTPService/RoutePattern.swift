/// The `path` of an `http.endpoint`: `/` followed by segments, each literal text, a `:name`
/// parameter (one whole segment), or, as the last one only, `*` (the rest of the path after that
/// slash, possibly empty). `/users/:id/files/*` matches `/users/7/files/a/b.txt` with `id = 7` and the rest
/// `a/b.txt`.
///
/// Matching compares the request's path segment by segment before percent-decoding, so an encoded
/// slash (`%2F`) stays inside its segment; parameter values and the rest are decoded afterwards.
public struct RoutePattern: Sendable, Hashable, CustomStringConvertible {
    public enum Segment: Sendable, Hashable {
        case literal(String)
        case parameter(String)
    }

    public let segments: [Segment]
    /// Ends with `*`.
    public let hasRest: Bool
    public let description: String

    /// Why a path is not a pattern.
    public struct Problem: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
    }

    public init(_ text: String) throws(Problem) {
        guard text.hasPrefix("/") else { throw Problem(description: "a path starts with '/'") }
        // "/" is one empty segment, as a trailing slash is.
        let parts = text.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        var segments: [Segment] = []
        var hasRest = false
        var names = Set<String>()
        for (index, part) in parts.enumerated() {
            if part == "*" {
                guard index == parts.count - 1 else { throw Problem(description: "'*' may only be the last segment") }
                hasRest = true
            } else if part.hasPrefix(":") {
                let name = String(part.dropFirst())
                guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" }) else {
                    throw Problem(description: "parameter '\(part)' needs a name of letters, digits and '_'")
                }
                guard names.insert(name).inserted else { throw Problem(description: "parameter ':\(name)' appears twice") }
                segments.append(.parameter(name))
            } else {
                guard !part.isEmpty || index == parts.count - 1 else {
                    throw Problem(description: "empty segment ('//')")
                }
                guard !part.contains("*") else { throw Problem(description: "'*' must be a whole segment") }
                segments.append(.literal(part))
            }
        }
        self.segments = segments
        self.hasRest = hasRest
        self.description = text
    }

    /// The parameters and rest when `path` (still percent-encoded, no query) matches; nil otherwise.
    public func match(_ path: String) -> (parameters: [String: String], rest: String?)? {
        guard let parts = Self.parts(of: path) else { return nil }
        return match(parts: parts)
    }

    /// The segments of a request path as `match(parts:)` takes them; nil when it does not start
    /// with `/`. (A route table splits a request's path once for all its patterns.)
    public static func parts(of path: String) -> [Substring]? {
        guard path.utf8.first == UInt8(ascii: "/") else { return nil }
        return path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
    }

    /// `match` of a path already split by `parts(of:)`.
    public func match(parts: [Substring]) -> (parameters: [String: String], rest: String?)? {
        if hasRest {
            // `*` stands for a segment or more: `/files/*` takes `/files/` and `/files/a`, not `/files`.
            guard parts.count > segments.count else { return nil }
        } else {
            guard parts.count == segments.count else { return nil }
        }
        var parameters: [String: String] = [:]
        for (segment, part) in zip(segments, parts) {
            switch segment {
            case .literal(let text):
                guard part == text else { return nil }
            case .parameter(let name):
                guard !part.isEmpty else { return nil }
                parameters[name] = HTTPRequest.percentDecoded(part)
            }
        }
        guard hasRest else { return (parameters, nil) }
        let rest = parts.dropFirst(segments.count).joined(separator: "/")
        return (parameters, HTTPRequest.percentDecoded(rest))
    }

    /// Orders two patterns that both match a request: the first segment where they differ decides,
    /// a literal beating a parameter, and a segment of either beating the `*` that covers it.
    /// Patterns of the same shape (`sameShape`) are not ordered.
    public func outranks(_ other: RoutePattern) -> Bool {
        for index in 0..<max(segments.count, other.segments.count) {
            let mine = index < segments.count ? Self.rank(segments[index]) : 2
            let theirs = index < other.segments.count ? Self.rank(other.segments[index]) : 2
            if mine != theirs { return mine < theirs }
        }
        return !hasRest && other.hasRest
    }

    /// Same literals at the same places, parameters at the same places (names aside), and the same
    /// rest: no precedence tells two such patterns apart, so they conflict.
    public func sameShape(_ other: RoutePattern) -> Bool {
        guard segments.count == other.segments.count, hasRest == other.hasRest else { return false }
        for (a, b) in zip(segments, other.segments) {
            switch (a, b) {
            case (.literal(let x), .literal(let y)) where x == y: continue
            case (.parameter, .parameter): continue
            default: return false
            }
        }
        return true
    }

    private static func rank(_ segment: Segment) -> Int {
        switch segment {
        case .literal: 0
        case .parameter: 1
        }
    }
}
