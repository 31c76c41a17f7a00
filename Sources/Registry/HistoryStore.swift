import Core
import Synchronization

/// Where a version came from.
public enum VersionSource: String, Sendable, Hashable, CaseIterable {
    case boot
    case fileChange = "file-change"
    case sighup
    case admin
    case rollback
}

/// One committed version of the registry: when, why, by whom, and how much it changed.
public struct Version: Sendable, Hashable {
    public var number: Int
    /// Unix time in seconds.
    public var time: Double
    public var source: VersionSource
    public var message: String?
    /// The caller's user id, where known.
    public var user: String?
    public var created: Int
    public var updated: Int
    public var deleted: Int

    public init(
        number: Int, time: Double, source: VersionSource, message: String? = nil, user: String? = nil,
        created: Int, updated: Int, deleted: Int
    ) {
        self.number = number
        self.time = time
        self.source = source
        self.message = message
        self.user = user
        self.created = created
        self.updated = updated
        self.deleted = deleted
    }
}

/// What a version did to one entry.
public enum ChangeOperation: String, Sendable, Hashable {
    case create, update, delete
}

/// The append-only history of registry versions, in a SQLite database (WAL) in the state folder.
///
/// Each version stores its change set, not the state; every `checkpointInterval`-th version also
/// stores the whole state, so rebuilding any version replays at most that many change sets.
/// `commit` returns only after SQLite has synced the version to disk (`synchronous=FULL`), so a
/// kill -9 after it returns loses nothing, and a version is written in one transaction, so a torn
/// write never leaves half of one.
///
/// Every call blocks on disk (and may wait up to 5 s for another process's lock): never call it
/// on the event loop thread; use a worker thread or `Task.detached`.
public final class HistoryStore: Sendable {
    /// The database file.
    public let path: String
    /// A full copy of the state is stored at every version whose number is a multiple of this.
    public let checkpointInterval: Int
    // Mutex makes the non-Sendable connection safe to share: one caller at a time uses it.
    private let connection: Mutex<SQLiteConnection>

    private init(path: String, checkpointInterval: Int, connection: consuming sending SQLiteConnection) {
        self.path = path
        self.checkpointInterval = checkpointInterval
        self.connection = Mutex(connection)
    }

    /// The schema this build understands: migration `i` (0-based) brings the schema to `i + 1`.
    static let migrations: [String] = [
        """
        CREATE TABLE versions (
            number INTEGER PRIMARY KEY,
            time REAL NOT NULL,
            source TEXT NOT NULL,
            message TEXT,
            user TEXT,
            created INTEGER NOT NULL,
            updated INTEGER NOT NULL,
            deleted INTEGER NOT NULL,
            checkpoint INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE changes (
            version INTEGER NOT NULL REFERENCES versions(number),
            entry TEXT NOT NULL,
            op TEXT NOT NULL CHECK (op IN ('create', 'update', 'delete')),
            kind TEXT NOT NULL,
            meta TEXT NOT NULL,
            data TEXT NOT NULL,
            file TEXT NOT NULL,
            line INTEGER NOT NULL,
            col INTEGER NOT NULL,
            locations TEXT NOT NULL,
            PRIMARY KEY (version, entry)
        ) WITHOUT ROWID;
        CREATE INDEX changes_by_entry ON changes (entry, version);
        CREATE TABLE checkpoint_entries (
            version INTEGER NOT NULL REFERENCES versions(number),
            entry TEXT NOT NULL,
            kind TEXT NOT NULL,
            meta TEXT NOT NULL,
            data TEXT NOT NULL,
            file TEXT NOT NULL,
            line INTEGER NOT NULL,
            col INTEGER NOT NULL,
            locations TEXT NOT NULL,
            PRIMARY KEY (version, entry)
        ) WITHOUT ROWID;
        """
    ]

    /// Opens (creating if missing) the history at `path` and brings its schema up to date, one
    /// transaction per migration. A database from a newer roost is refused, never touched.
    public static func open(path: String, checkpointInterval: Int = 100) throws(RegistryError) -> HistoryStore {
        precondition(checkpointInterval >= 1, "checkpointInterval must be at least 1")
        let db = try SQLiteConnection.open(path: path)
        guard try db.queryText("PRAGMA journal_mode=WAL")?.lowercased() == "wal" else {
            throw RegistryError(.historyStorage, "history database \(path): cannot switch to WAL journal mode")
        }
        try db.execute("PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;")
        try db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        while true {
            // Read and migrate in one transaction, so two processes opening at once migrate once.
            let done = try db.transaction { () throws(RegistryError) -> Bool in
                let current = try schemaVersion(db)
                if current > migrations.count {
                    throw RegistryError(
                        .historySchemaTooNew,
                        "history database \(path) has schema version \(current), but this roost understands "
                            + "only up to \(migrations.count); use a newer roost or another state folder")
                }
                if current == migrations.count { return true }
                try db.execute(migrations[current])
                try db.execute("DELETE FROM schema_version")
                try db.run("INSERT INTO schema_version (version) VALUES (?)", .int(current + 1))
                return false
            }
            if done { break }
        }
        return HistoryStore(path: path, checkpointInterval: checkpointInterval, connection: db)
    }

    private static func schemaVersion(_ db: SQLiteConnection) throws(RegistryError) -> Int {
        try db.queryInt("SELECT max(version) FROM schema_version") ?? 0
    }

    /// The schema version of the open database.
    public func schemaVersion() throws(RegistryError) -> Int {
        try connection.withLock { db throws(RegistryError) -> Int in try HistoryStore.schemaVersion(db) }
    }

    /// Commits `changes` as the next version, in one transaction, and returns it once it is on
    /// disk. An empty change set is refused (`emptyChangeSet`) and creates no version.
    public func commit(
        _ changes: ChangeSet, source: VersionSource, message: String? = nil, user: String? = nil, time: Double
    ) throws(RegistryError) -> Version {
        guard !changes.isEmpty else {
            throw RegistryError(.emptyChangeSet, "nothing changed: no version was committed")
        }
        let interval = checkpointInterval
        return try connection.withLock { db throws(RegistryError) -> Version in
            try db.transaction { () throws(RegistryError) -> Version in
                let number = try HistoryStore.latestNumber(db) + 1
                let isCheckpoint = number % interval == 0
                let version = Version(
                    number: number, time: time, source: source, message: message, user: user,
                    created: changes.creates.count, updated: changes.updates.count, deleted: changes.deletes.count)
                try db.run(
                    """
                    INSERT INTO versions (number, time, source, message, user, created, updated, deleted, checkpoint)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    .int(number), .double(time), .text(source.rawValue), .text(message), .text(user),
                    .int(version.created), .int(version.updated), .int(version.deleted), .int(0))
                let insert = try db.prepare(
                    """
                    INSERT INTO changes (version, entry, op, kind, meta, data, file, line, col, locations)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
                let all: [(ChangeOperation, [Entry])] = [
                    (.create, changes.creates), (.update, changes.updates), (.delete, changes.deletes),
                ]
                for (op, entries) in all {
                    for entry in entries {
                        var values: [SQLValue] = [.int(number), .text(entry.id.description), .text(op.rawValue)]
                        values += StoredEntry.values(of: entry)
                        insert.reset()
                        try insert.bind(values)
                        while try insert.step() {}
                    }
                }
                if isCheckpoint {
                    // Read back inside the transaction, where this version's changes are visible; it is
                    // marked as a checkpoint only afterwards, or the read would start from its own
                    // (still empty) copy.
                    let state = try HistoryStore.state(db, at: number)
                    let copy = try db.prepare(
                        """
                        INSERT INTO checkpoint_entries (version, entry, kind, meta, data, file, line, col, locations)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """)
                    for entry in state.values {
                        copy.reset()
                        try copy.bind([.int(number), .text(entry.id.description)] + StoredEntry.values(of: entry))
                        while try copy.step() {}
                    }
                    try db.run("UPDATE versions SET checkpoint = 1 WHERE number = ?", .int(number))
                }
                return version
            }
        }
    }

    /// Every version, oldest first.
    public func versions() throws(RegistryError) -> [Version] {
        try connection.withLock { db throws(RegistryError) -> [Version] in
            let query = try db.prepare("SELECT \(HistoryStore.versionColumns) FROM versions ORDER BY number")
            var out: [Version] = []
            while try query.step() { out.append(try HistoryStore.version(from: query, at: 0)) }
            return out
        }
    }

    /// The newest version; nil when nothing was ever committed.
    public func latest() throws(RegistryError) -> Version? {
        try connection.withLock { db throws(RegistryError) -> Version? in
            let query = try db.prepare(
                "SELECT \(HistoryStore.versionColumns) FROM versions ORDER BY number DESC LIMIT 1")
            return try query.step() ? try HistoryStore.version(from: query, at: 0) : nil
        }
    }

    /// The state as of version `number` (version 0 is the empty state before the first commit):
    /// the nearest checkpoint at or below it, with the change sets after it replayed.
    public func state(at number: Int) throws(RegistryError) -> [EntryID: Entry] {
        try connection.withLock { db throws(RegistryError) -> [EntryID: Entry] in
            try HistoryStore.state(db, at: number)
        }
    }

    /// The versions that changed entry `id`, oldest first, with what each did to it.
    public func history(of id: EntryID) throws(RegistryError) -> [(version: Version, operation: ChangeOperation)] {
        try connection.withLock { db throws(RegistryError) -> [(version: Version, operation: ChangeOperation)] in
            let query = try db.prepare(
                """
                SELECT c.op, v.number, v.time, v.source, v.message, v.user, v.created, v.updated, v.deleted
                FROM changes c JOIN versions v ON v.number = c.version
                WHERE c.entry = ? ORDER BY c.version
                """, .text(id.description))
            var out: [(version: Version, operation: ChangeOperation)] = []
            while try query.step() {
                guard let op = query.text(0).flatMap(ChangeOperation.init(rawValue:)) else {
                    throw RegistryError(.historyStorage, "history database \(db.path): unknown change operation")
                }
                out.append((try HistoryStore.version(from: query, at: 1), op))
            }
            return out
        }
    }

    /// Moves the write-ahead log into the database file and empties it (for measuring the file
    /// size, or before copying the database).
    public func truncateWAL() throws(RegistryError) {
        try connection.withLock { db throws(RegistryError) in
            try db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        }
    }

    // MARK: - Reading rows

    /// The columns `version(from:at:)` reads, in order.
    private static let versionColumns = "number, time, source, message, user, created, updated, deleted"

    private static func version(from row: SQLStatement, at first: Int32) throws(RegistryError) -> Version {
        guard let source = row.text(first + 2).flatMap(VersionSource.init(rawValue:)) else {
            throw RegistryError(
                .historyStorage,
                "history database \(row.connection.path): version \(row.int(first)) has an unknown source")
        }
        return Version(
            number: row.int(first), time: row.double(first + 1), source: source,
            message: row.text(first + 3), user: row.text(first + 4),
            created: row.int(first + 5), updated: row.int(first + 6), deleted: row.int(first + 7))
    }

    private static func latestNumber(_ db: SQLiteConnection) throws(RegistryError) -> Int {
        try db.queryInt("SELECT max(number) FROM versions") ?? 0
    }

    private static func state(_ db: SQLiteConnection, at number: Int) throws(RegistryError) -> [EntryID: Entry] {
        if number == 0 { return [:] }
        guard number > 0, try db.queryInt("SELECT 1 FROM versions WHERE number = ?", .int(number)) != nil else {
            throw RegistryError(.unknownVersion, "there is no version \(number)")
        }
        let checkpoint =
            try db.queryInt("SELECT max(number) FROM versions WHERE checkpoint = 1 AND number <= ?", .int(number)) ?? 0
        var state: [EntryID: Entry] = [:]
        if checkpoint > 0 {
            let rows = try db.prepare(
                "SELECT entry, kind, meta, data, file, line, col, locations FROM checkpoint_entries WHERE version = ?",
                .int(checkpoint))
            while try rows.step() {
                let entry = try StoredEntry.entry(from: rows, at: 0)
                state[entry.id] = entry
            }
        }
        let changes = try db.prepare(
            """
            SELECT entry, kind, meta, data, file, line, col, locations, op FROM changes
            WHERE version > ? AND version <= ? ORDER BY version
            """, .int(checkpoint), .int(number))
        while try changes.step() {
            let entry = try StoredEntry.entry(from: changes, at: 0)
            if changes.text(8) == ChangeOperation.delete.rawValue {
                state[entry.id] = nil
            } else {
                state[entry.id] = entry
            }
        }
        return state
    }
}

/// How an entry is written to a row: kind, meta, data, file, line, col, and the key and kind
/// locations as JSON (`{"kind": [file, line, column], "fields": {key: [file, line, column]}}`).
enum StoredEntry {
    static func values(of entry: Entry) -> [SQLValue] {
        var locations: [String: JSON] = [
            "fields": .object(entry.fieldLocations.mapValues(encode))
        ]
        if let kind = entry.kindLocation { locations["kind"] = encode(kind) }
        return [
            .text(entry.kind), .text(JSON.object(entry.meta).encoded()), .text(entry.data.encoded()),
            .text(entry.location.file), .int(entry.location.line), .int(entry.location.column),
            .text(JSON.object(locations).encoded()),
        ]
    }

    /// Reads columns `first...first+7`: entry, kind, meta, data, file, line, col, locations.
    static func entry(from row: SQLStatement, at first: Int32) throws(RegistryError) -> Entry {
        let path = row.connection.path
        let text = row.text(first) ?? ""
        guard let id = EntryID(text), let kind = row.text(first + 1),
            case .object(let meta)? = try? JSON.parse(row.text(first + 2) ?? ""),
            let data = try? JSON.parse(row.text(first + 3) ?? ""),
            case .object(let locations)? = try? JSON.parse(row.text(first + 7) ?? "")
        else {
            throw RegistryError(.historyStorage, "history database \(path): entry \(text) is stored damaged")
        }
        var fields: [String: SourceLocation] = [:]
        if case .object(let written)? = locations["fields"] {
            for (key, value) in written { fields[key] = decode(value) }
        }
        return Entry(
            id: id, kind: kind, meta: meta, data: data,
            location: SourceLocation(file: row.text(first + 4) ?? "", line: row.int(first + 5), column: row.int(first + 6)),
            fieldLocations: fields, kindLocation: locations["kind"].flatMap(decode))
    }

    private static func encode(_ location: SourceLocation) -> JSON {
        .array([.string(location.file), .int(Int64(location.line)), .int(Int64(location.column))])
    }

    private static func decode(_ json: JSON) -> SourceLocation? {
        guard case .array(let parts) = json, parts.count == 3, case .string(let file) = parts[0],
            case .int(let line) = parts[1], case .int(let column) = parts[2]
        else { return nil }
        return SourceLocation(file: file, line: Int(line), column: Int(column))
    }
}
