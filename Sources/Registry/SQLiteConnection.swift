import CSQLite

/// One sqlite3 connection, used by one thread at a time (`HistoryStore` holds it under a mutex),
/// so it is opened with SQLITE_OPEN_NOMUTEX.
final class SQLiteConnection {
    let handle: OpaquePointer
    let path: String

    private init(handle: OpaquePointer, path: String) {
        self.handle = handle
        self.path = path
    }

    static func open(path: String) throws(RegistryError) -> SQLiteConnection {
        var db: OpaquePointer?
        let flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX
        let rc = sqlite3_open_v2(path, &db, flags, nil)
        guard rc == SQLITE_OK, let db else {
            let reason = db.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_close_v2(db)
            throw RegistryError(.historyStorage, "cannot open history database \(path): \(reason)")
        }
        sqlite3_extended_result_codes(db, 1)
        // Another process (an offline `roost registry history`) may hold the lock briefly.
        sqlite3_busy_timeout(db, 5000)
        return SQLiteConnection(handle: db, path: path)
    }

    deinit { sqlite3_close_v2(handle) }

    func failure(_ what: String) -> RegistryError {
        RegistryError(.historyStorage, "history database \(path): \(what): \(String(cString: sqlite3_errmsg(handle)))")
    }

    /// Runs one or more statements that return nothing the caller needs.
    func execute(_ sql: String) throws(RegistryError) {
        var message: UnsafeMutablePointer<CChar>?
        if sqlite3_exec(handle, sql, nil, nil, &message) != SQLITE_OK {
            let reason = message.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(handle))
            sqlite3_free(message)
            throw RegistryError(.historyStorage, "history database \(path): \(reason)")
        }
    }

    func prepare(_ sql: String, _ values: SQLValue...) throws(RegistryError) -> SQLStatement {
        var statement: OpaquePointer?
        guard sqlite3_prepare_v2(handle, sql, -1, &statement, nil) == SQLITE_OK, let statement else {
            throw failure("cannot prepare \(sql)")
        }
        let prepared = SQLStatement(handle: statement, connection: self)
        try prepared.bind(values)
        return prepared
    }

    /// The first column of the first row as an integer; nil when there is no row or it is NULL.
    /// The statement is finalized before returning, so it never keeps a transaction busy.
    func queryInt(_ sql: String, _ values: SQLValue...) throws(RegistryError) -> Int? {
        let statement = try prepare(sql)
        try statement.bind(values)
        guard try statement.step(), !statement.isNull(0) else { return nil }
        return statement.int(0)
    }

    /// Like `queryInt`, for text.
    func queryText(_ sql: String, _ values: SQLValue...) throws(RegistryError) -> String? {
        let statement = try prepare(sql)
        try statement.bind(values)
        guard try statement.step() else { return nil }
        return statement.text(0)
    }

    /// Runs a statement that returns no rows.
    func run(_ sql: String, _ values: SQLValue...) throws(RegistryError) {
        let statement = try prepare(sql)
        try statement.bind(values)
        while try statement.step() {}
    }

    /// Runs `body` in an immediate transaction: committed when it returns, rolled back when it
    /// (or the commit) throws, so a failure never leaves half a version.
    func transaction<T>(_ body: () throws(RegistryError) -> T) throws(RegistryError) -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            _ = sqlite3_exec(handle, "ROLLBACK", nil, nil, nil)
            throw error
        }
    }
}

enum SQLValue {
    case int(Int)
    case double(Double)
    case text(String?)
}

/// A prepared statement; finalized when released.
final class SQLStatement {
    let handle: OpaquePointer
    let connection: SQLiteConnection

    init(handle: OpaquePointer, connection: SQLiteConnection) {
        self.handle = handle
        self.connection = connection
    }

    deinit { sqlite3_finalize(handle) }

    /// SQLITE_TRANSIENT, which Swift cannot import: SQLite copies the bytes before returning.
    private static let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

    func bind(_ values: [SQLValue]) throws(RegistryError) {
        for (offset, value) in values.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .int(let i): rc = sqlite3_bind_int64(handle, index, Int64(i))
            case .double(let d): rc = sqlite3_bind_double(handle, index, d)
            case .text(nil): rc = sqlite3_bind_null(handle, index)
            case .text(let s?): rc = sqlite3_bind_text(handle, index, s, -1, SQLStatement.transient)
            }
            guard rc == SQLITE_OK else { throw connection.failure("cannot bind parameter \(index)") }
        }
    }

    /// Readies the statement to run again (for another row of an insert); bindings are kept
    /// until rebound.
    func reset() {
        sqlite3_reset(handle)
    }

    /// True when a row is ready, false when done.
    func step() throws(RegistryError) -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw connection.failure("statement failed")
        }
    }

    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }
    func int(_ column: Int32) -> Int { Int(sqlite3_column_int64(handle, column)) }
    func double(_ column: Int32) -> Double { sqlite3_column_double(handle, column) }
    func text(_ column: Int32) -> String? {
        guard let bytes = sqlite3_column_text(handle, column) else { return nil }
        return String(cString: bytes)
    }
}
