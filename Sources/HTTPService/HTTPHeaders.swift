/// Header fields in the order they were received or added; names compare case-insensitively.
///
/// Repeated fields stay separate entries (`values(for:)` returns each), because joining them with
/// commas is wrong for some (`Set-Cookie`). Names and values are kept as given; the serializer
/// refuses to write names that are not tokens or values that contain CR, LF or NUL.
public struct HTTPHeaders: Sendable, Hashable, Sequence, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    public struct Field: Sendable, Hashable {
        public var name: String
        public var value: String
        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public private(set) var fields: [Field] = []

    public init() {}

    public init(_ pairs: [(String, String)]) {
        fields = pairs.map { Field(name: $0.0, value: $0.1) }
    }

    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    public var count: Int { fields.count }
    public var isEmpty: Bool { fields.isEmpty }

    public func makeIterator() -> some IteratorProtocol<(name: String, value: String)> {
        fields.lazy.map { (name: $0.name, value: $0.value) }.makeIterator()
    }

    /// The first value of `name`, or nil; setting replaces every field of that name (nil removes them).
    public subscript(name: String) -> String? {
        get { fields.first { Self.same($0.name, name) }?.value }
        set {
            if let newValue { replace(name, with: newValue) } else { remove(name) }
        }
    }

    /// Every value of `name`, in order.
    public func values(for name: String) -> [String] {
        fields.filter { Self.same($0.name, name) }.map(\.value)
    }

    public func contains(_ name: String) -> Bool {
        fields.contains { Self.same($0.name, name) }
    }

    /// Adds a field after the others, keeping fields of the same name.
    public mutating func add(_ name: String, _ value: String) {
        fields.append(Field(name: name, value: value))
    }

    /// Sets `name` to one value: the first field of that name keeps its place, the others go.
    public mutating func replace(_ name: String, with value: String) {
        guard let first = fields.firstIndex(where: { Self.same($0.name, name) }) else {
            add(name, value)
            return
        }
        fields[first].value = value
        var index = fields.index(after: first)
        while index < fields.endIndex {
            if Self.same(fields[index].name, name) { fields.remove(at: index) } else { index += 1 }
        }
    }

    public mutating func remove(_ name: String) {
        fields.removeAll { Self.same($0.name, name) }
    }

    /// True when a comma-separated header (`Connection`, `Transfer-Encoding`) lists `token`.
    public func hasToken(_ token: String, in name: String) -> Bool {
        values(for: name).contains { value in
            value.split(separator: ",").contains { Self.same(trimmed($0), token) }
        }
    }

    public var description: String { fields.map { "\($0.name): \($0.value)" }.joined(separator: "\n") }

    static func same(_ a: some StringProtocol, _ b: some StringProtocol) -> Bool {
        let x = a.utf8, y = b.utf8
        guard x.count == y.count else { return false }
        // ASCII case folding only: header names are tokens, which are ASCII.
        return zip(x, y).allSatisfy { $0 == $1 || ($0 | 0x20 == $1 | 0x20 && ($0 | 0x20) >= 0x61 && ($0 | 0x20) <= 0x7A) }
    }
}

/// `text` without leading and trailing spaces and tabs (HTTP's optional whitespace).
func trimmed(_ text: some StringProtocol) -> Substring {
    let s = Substring(text)
    let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
    guard let start = s.firstIndex(where: { !isSpace($0) }) else { return "" }
    let end = s.lastIndex(where: { !isSpace($0) })!
    return s[start...end]
}
