/// An error from the event bus: a pattern or topic that breaks the segment rules.
public struct EventBusError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// A subscription pattern has an empty segment or mixes `*` with other characters.
        case invalidPattern
        /// A topic has an empty segment or contains `*`.
        case invalidTopic
    }

    public let code: Code
    public let message: String

    public init(code: Code, message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }
}

/// A subscription pattern over dot-separated topics, matched segment by segment.
///
/// `*` matches exactly one segment and `**` zero or more, anywhere in the pattern:
/// `registry.entry.*` matches `registry.entry.updated`, `**.failed` matches `build.failed`
/// and `failed`, `a.**.z` matches `a.z` and `a.b.c.z`. Any other segment matches only itself,
/// byte for byte. Two patterns are equal when their text is equal.
public struct TopicPattern: Sendable, Hashable, CustomStringConvertible {
    enum Segment: Sendable, Hashable {
        case literal([UInt8])
        case one   // *
        case any   // **
    }

    public let description: String
    /// Split once here so that matching a new topic never re-parses the pattern.
    let segments: [Segment]

    /// Parses `pattern`; throws `.invalidPattern` for an empty segment (`a..b`, `a.`, the
    /// empty pattern) or a segment that mixes `*` with anything else (`ab*`, `***`).
    public init(_ pattern: String) throws(EventBusError) {
        var segments: [Segment] = []
        for (index, part) in Self.split(pattern).enumerated() {
            func invalid(_ why: String) -> EventBusError {
                EventBusError(
                    code: .invalidPattern,
                    message: "invalid topic pattern '\(pattern)': segment \(index + 1) \(why)")
            }
            if part.isEmpty { throw invalid("is empty") }
            if part.elementsEqual("*".utf8) {
                segments.append(.one)
            } else if part.elementsEqual("**".utf8) {
                // `a.**.**` means the same as `a.**`; folding keeps backtracking cheap.
                if segments.last != .any { segments.append(.any) }
            } else if part.contains(UInt8(ascii: "*")) {
                let text = String(decoding: part, as: UTF8.self)
                throw invalid("'\(text)' mixes '*' with other characters")
            } else {
                segments.append(.literal(Array(part)))
            }
        }
        self.description = pattern
        self.segments = segments
    }

    /// Whether `topic` matches this pattern.
    public func matches(_ topic: String) -> Bool {
        matches(segments: Self.split(topic))
    }

    static func split(_ text: String) -> [Substring.UTF8View] {
        text.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
    }

    /// Glob matching with backtracking to the last `**` seen, as for `*` in file names:
    /// linear in the common cases and never exponential.
    func matches(segments topic: [Substring.UTF8View]) -> Bool {
        let pattern = segments
        var p = 0
        var t = 0
        var lastAny = -1       // index of the last `**` in the pattern
        var resumeTopic = 0    // topic index that `**` will swallow up to on the next backtrack
        while t < topic.count {
            if p < pattern.count {
                switch pattern[p] {
                case .any:
                    lastAny = p
                    resumeTopic = t
                    p += 1
                    continue
                case .one:
                    p += 1
                    t += 1
                    continue
                case .literal(let bytes):
                    if topic[t].elementsEqual(bytes) {
                        p += 1
                        t += 1
                        continue
                    }
                }
            }
            guard lastAny >= 0 else { return false }
            p = lastAny + 1
            resumeTopic += 1
            t = resumeTopic
        }
        while p < pattern.count, pattern[p] == .any { p += 1 }
        return p == pattern.count
    }

    public static func == (lhs: TopicPattern, rhs: TopicPattern) -> Bool {
        lhs.description == rhs.description
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(description)
    }
}
