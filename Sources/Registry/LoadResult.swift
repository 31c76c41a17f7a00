/// Everything read from a registry folder: the entries and all problems found, together.
///
/// When `errors` is not empty the folder as a whole is invalid; `entries` then holds only the
/// entries that had no problem of their own, for tools that want to show them anyway.
public struct LoadResult: Sendable {
    /// Sorted by id.
    public var entries: [Entry]
    /// Sorted by file, line and column.
    public var errors: [RegistryError]

    public var isValid: Bool { errors.isEmpty }

    /// Combines files (in the order given, which decides which of two equal ids is "first") and
    /// problems found outside any file, and checks that ids are unique across the folder.
    public init(files: [RegistryFile], errors: [RegistryError] = []) {
        var entries: [Entry] = []
        var errors = errors
        var firstPlace: [EntryID: SourceLocation] = [:]
        for file in files {
            errors += file.errors
            for entry in file.entries {
                if let first = firstPlace[entry.id] {
                    errors.append(RegistryError(
                        .duplicateID, "duplicate id, first declared at \(first)", at: entry.location, entry: entry.id))
                } else {
                    firstPlace[entry.id] = entry.location
                    entries.append(entry)
                }
            }
        }
        self.entries = entries.sorted { $0.id < $1.id }
        self.errors = errors.sorted()
    }
}
