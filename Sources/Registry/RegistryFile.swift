import Core
import Yams

/// One registry file, parsed on its own: its entries in file order and its problems.
///
/// Checks that need the whole folder (duplicate ids) happen when files are combined into a
/// `LoadResult`. An entry with any problem is left out of `entries`.
public struct RegistryFile: Sendable {
    /// Relative to the registry root.
    public var path: String
    public var namespace: String?
    public var entries: [Entry]
    public var errors: [RegistryError]

    public init(path: String, namespace: String? = nil, entries: [Entry] = [], errors: [RegistryError] = []) {
        self.path = path
        self.namespace = namespace
        self.entries = entries
        self.errors = errors
    }

    /// Parses the text of the file at `path` (relative to the registry root). Never throws:
    /// every problem is in `errors`, and parsing goes on past each one where it can.
    public static func parse(_ text: String, path: String) -> RegistryFile {
        let root: Node?
        do {
            // The basic resolver leaves plain scalars untyped; `JSON.coreSchema` types them.
            root = try Yams.compose(yaml: text, .basic)
        } catch {
            return RegistryFile(path: path, errors: [syntaxError(error, text: text, path: path)])
        }
        var reader = FileReader(path: path)
        reader.readFile(root)
        return RegistryFile(path: path, namespace: reader.namespace, entries: reader.entries, errors: reader.errors)
    }

    private static func syntaxError(_ error: any Error, text: String, path: String) -> RegistryError {
        func at(_ mark: Mark) -> SourceLocation { SourceLocation(file: path, line: mark.line, column: mark.column) }
        func explain(_ problem: String, _ context: YamlError.Context?) -> String {
            guard let context else { return "invalid YAML: \(problem)" }
            return "invalid YAML: \(problem) (\(context.text) at \(context.mark.line):\(context.mark.column))"
        }
        guard let error = error as? YamlError else {
            return RegistryError(.yamlSyntax, "invalid YAML: \(error)", at: SourceLocation(file: path))
        }
        switch error {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _),
            let .composer(context, problem, mark, _):
            return RegistryError(.yamlSyntax, explain(problem, context), at: at(mark))
        case let .duplicatedKeysInMapping(duplicates, context):
            // Yams points at the first of the repeated keys.
            let keys = duplicates.sorted().map { "'\($0)'" }.joined(separator: ", ")
            return RegistryError(.yamlSyntax, "invalid YAML: key \(keys) appears more than once in this mapping", at: at(context.mark))
        case let .reader(problem, offset, _, _):
            let location = offset.map { lineAndColumn(ofCharacter: $0, in: text, path: path) } ?? SourceLocation(file: path)
            return RegistryError(.yamlSyntax, "invalid YAML: \(problem)", at: location)
        default:
            return RegistryError(.yamlSyntax, "invalid YAML: \(error)", at: SourceLocation(file: path))
        }
    }

    /// Yams turns libyaml's byte offset into a count of Characters; columns count Unicode
    /// scalars, as libyaml's marks do.
    private static func lineAndColumn(ofCharacter offset: Int, in text: String, path: String) -> SourceLocation {
        var line = 1
        var column = 1
        for character in text.prefix(offset) {
            if character.isNewline {
                line += 1
                column = 1
            } else {
                column += character.unicodeScalars.count
            }
        }
        return SourceLocation(file: path, line: line, column: column)
    }
}

/// Walks one file's node tree, collecting entries and every problem on the way.
private struct FileReader {
    let path: String
    var namespace: String?
    var entries: [Entry] = []
    var errors: [RegistryError] = []

    init(path: String) { self.path = path }

    static let topLevelKeys = "version, namespace, meta, entries"

    func location(_ node: Node) -> SourceLocation {
        guard let mark = node.mark else { return SourceLocation(file: path) }
        return SourceLocation(file: path, line: mark.line, column: mark.column)
    }

    mutating func fail(_ code: RegistryError.Code, _ message: String, at node: Node, entry: EntryID? = nil) {
        errors.append(RegistryError(code, message, at: location(node), entry: entry))
    }

    func isNull(_ node: Node) -> Bool {
        if case .scalar(let scalar) = node, JSON.coreSchema(scalar) == .null { return true }
        return false
    }

    /// The text of a mapping key; keys must be scalars (JSON object keys are strings).
    mutating func key(_ node: Node, entry: EntryID?) -> String? {
        if case .scalar(let scalar) = node { return scalar.string }
        fail(.invalidField, "a key must be a plain value, not a list or mapping", at: node, entry: entry)
        return nil
    }

    mutating func readFile(_ root: Node?) {
        // An empty file, or one holding only comments, declares nothing.
        guard let root, !isNull(root) else { return }
        guard case .mapping(let top) = root else {
            fail(.invalidField, "a registry file must be a mapping with 'namespace' and 'entries'", at: root)
            return
        }
        var sawNamespace = false
        var fileMeta: [String: JSON] = [:]
        var entriesNode: Node?
        for (keyNode, value) in top {
            guard let key = key(keyNode, entry: nil) else { continue }
            switch key {
            case "version":
                if case .scalar(let scalar) = value, case .int = JSON.coreSchema(scalar) { break }
                fail(.invalidField, "'version' must be an integer", at: value)
            case "namespace":
                sawNamespace = true
                namespace = name(value, field: "namespace", entry: nil)
            case "meta":
                fileMeta = meta(value, entry: nil) ?? [:]
            case "entries":
                entriesNode = value
            default:
                fail(.invalidField, "unknown top-level key '\(key)' (expected \(FileReader.topLevelKeys))", at: keyNode)
            }
        }
        if !sawNamespace {
            fail(.missingField, "missing 'namespace'", at: root)
        }
        guard let entriesNode, !isNull(entriesNode) else { return }
        guard case .sequence(let items) = entriesNode else {
            fail(.invalidField, "'entries' must be a list of entries", at: entriesNode)
            return
        }
        for item in items {
            if let entry = readEntry(item, fileMeta: fileMeta) { entries.append(entry) }
        }
    }

    /// A namespace or name; reports a missing, misshapen or invalid one and returns nil.
    mutating func name(_ node: Node, field: String, entry: EntryID?) -> String? {
        guard case .scalar(let scalar) = node else {
            fail(.invalidField, "'\(field)' must be a string", at: node, entry: entry)
            return nil
        }
        // A name like `42` or `true` is a name, whatever YAML would make of it as a value.
        let text = scalar.string
        if isNull(node) || text.isEmpty {
            fail(.missingField, "'\(field)' is empty", at: node, entry: entry)
            return nil
        }
        guard EntryID.isValidName(text) else {
            fail(.invalidName, "invalid \(field) '\(text)': use only letters, digits, '_', '.' and '-'", at: node, entry: entry)
            return nil
        }
        return text
    }

    mutating func meta(_ node: Node, entry: EntryID?) -> [String: JSON]? {
        if isNull(node) { return [:] }
        guard case .mapping = node else {
            fail(.invalidField, "'meta' must be a mapping", at: node, entry: entry)
            return nil
        }
        guard case .object(let members) = json(node, entry: entry) else { return nil }
        return members
    }

    mutating func readEntry(_ node: Node, fileMeta: [String: JSON]) -> Entry? {
        guard case .mapping(let mapping) = node else {
            fail(.invalidField, "an entry must be a mapping with 'name' and 'kind'", at: node)
            return nil
        }
        let errorsBefore = errors.count

        // The name comes first so that every later problem can carry the entry's id.
        var id: EntryID?
        var sawName = false
        for (keyNode, value) in mapping where keyNode.scalar?.string == "name" {
            sawName = true
            if let name = name(value, field: "name", entry: nil), let namespace {
                id = EntryID(namespace: namespace, name: name)
            }
        }
        if !sawName {
            fail(.missingField, "entry has no 'name'", at: node)
        }

        var kind: String?
        var sawKind = false
        var kindLocation: SourceLocation?
        var entryMeta: [String: JSON] = [:]
        var explicitData: (key: Node, value: Node)?
        var fields: [(key: String, keyNode: Node, value: Node)] = []
        for (keyNode, value) in mapping {
            guard let key = key(keyNode, entry: id) else { continue }
            switch key {
            case "name":
                continue
            case "kind":
                sawKind = true
                kindLocation = location(keyNode)
                guard case .scalar(let scalar) = value else {
                    fail(.invalidField, "'kind' must be a string", at: value, entry: id)
                    continue
                }
                if isNull(value) || scalar.string.isEmpty {
                    fail(.missingField, "'kind' is empty", at: value, entry: id)
                } else {
                    kind = scalar.string
                }
            case "meta":
                entryMeta = meta(value, entry: id) ?? [:]
            case "data":
                explicitData = (keyNode, value)
            default:
                fields.append((key, keyNode, value))
            }
        }
        if !sawKind {
            fail(.missingField, "missing 'kind'", at: node, entry: id)
        }

        var data: [String: JSON] = [:]
        var fieldLocations: [String: SourceLocation] = [:]
        if let explicitData {
            for field in fields {
                fail(.invalidField, "'\(field.key)' is not allowed next to an explicit 'data' map", at: field.keyNode, entry: id)
            }
            if case .mapping(let dataMapping) = explicitData.value {
                for (keyNode, value) in dataMapping {
                    guard let key = key(keyNode, entry: id) else { continue }
                    data[key] = json(value, entry: id)
                    fieldLocations[key] = location(keyNode)
                }
            } else if !isNull(explicitData.value) {
                fail(.invalidField, "'data' must be a mapping", at: explicitData.value, entry: id)
            }
        } else {
            for field in fields {
                data[field.key] = json(field.value, entry: id)
                fieldLocations[field.key] = location(field.keyNode)
            }
        }

        guard errors.count == errorsBefore, let id, let kind else { return nil }
        return Entry(
            id: id, kind: kind, meta: fileMeta.merging(entryMeta) { _, own in own }, data: .object(data),
            location: location(node), fieldLocations: fieldLocations, kindLocation: kindLocation)
    }

    mutating func json(_ node: Node, entry: EntryID?) -> JSON {
        switch node {
        case .scalar(let scalar):
            return JSON.coreSchema(scalar)
        case .sequence(let sequence):
            var items: [JSON] = []
            items.reserveCapacity(sequence.count)
            for item in sequence { items.append(json(item, entry: entry)) }
            return .array(items)
        case .mapping(let mapping):
            var members: [String: JSON] = [:]
            members.reserveCapacity(mapping.count)
            for (keyNode, value) in mapping {
                guard let key = key(keyNode, entry: entry) else { continue }
                members[key] = json(value, entry: entry)
            }
            return .object(members)
        case .alias:
            // Yams' composer replaces aliases with the node they name; this is never reached.
            fail(.invalidField, "unexpected YAML alias", at: node, entry: entry)
            return .null
        }
    }
}
