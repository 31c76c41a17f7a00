/// A shell-style pattern for ids and kinds: `*` matches any run of characters (also none), `?`
/// one character; everything else matches itself. `app.debug:*` matches every entry of the
/// namespace `app.debug`; `swiftlet.*` matches every swiftlet kind.
public struct Glob: Sendable, Hashable, CustomStringConvertible {
    public let pattern: String
    private let bytes: [UInt8]

    public init(_ pattern: String) {
        self.pattern = pattern
        self.bytes = Array(pattern.utf8)
    }

    public var description: String { pattern }

    /// True when the pattern holds no wildcard, so it names exactly one string.
    public var isLiteral: Bool { !bytes.contains(UInt8(ascii: "*")) && !bytes.contains(UInt8(ascii: "?")) }

    public func matches(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { Glob.match(bytes[...], $0[...]) }
    }

    /// Iterative matching with one backtrack point (the last `*`): linear for the patterns people
    /// write, never exponential.
    private static func match(_ pattern: ArraySlice<UInt8>, _ text: UnsafeBufferPointer<UInt8>.SubSequence) -> Bool {
        var p = pattern.startIndex, t = text.startIndex
        var star: Int? = nil, starText = t
        while t < text.endIndex {
            if p < pattern.endIndex, pattern[p] == UInt8(ascii: "?") || pattern[p] == text[t] {
                p += 1; t += 1
            } else if p < pattern.endIndex, pattern[p] == UInt8(ascii: "*") {
                star = p; starText = t; p += 1
            } else if let s = star {
                p = s + 1; starText += 1; t = starText
            } else {
                return false
            }
        }
        while p < pattern.endIndex, pattern[p] == UInt8(ascii: "*") { p += 1 }
        return p == pattern.endIndex
    }
}
