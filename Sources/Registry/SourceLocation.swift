/// A place in a registry file: the path relative to the registry root, and a 1-based line and column.
///
/// Line 0 means the file as a whole (an unreadable file has no line to point at); its
/// description is then the path alone.
public struct SourceLocation: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public var column: Int

    public init(file: String, line: Int, column: Int) {
        self.file = file
        self.line = line
        self.column = column
    }

    /// The file as a whole.
    public init(file: String) {
        self.init(file: file, line: 0, column: 0)
    }

    /// `file:line:column`, the shape editors and terminals jump to.
    public var description: String {
        line == 0 ? file : "\(file):\(line):\(column)"
    }

    public static func < (a: SourceLocation, b: SourceLocation) -> Bool {
        (a.file, a.line, a.column) < (b.file, b.line, b.column)
    }
}
