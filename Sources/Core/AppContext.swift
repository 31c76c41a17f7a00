/// The name and value type of one thing a component provides through the `AppContext`.
///
/// Two keys are the same key when their names are equal; a key declared with the wrong value
/// type finds nothing with `get` and a `.typeMismatch` error with `require`.
public struct ContextKey<Value: Sendable>: Sendable, Hashable, CustomStringConvertible {
    public let name: String
    public init(_ name: String) { self.name = name }
    public var description: String { name }
}

/// What the components provide to one another, by typed key.
///
/// Components `set` their values while they load (phase 2 of boot); the host then calls `seal()`,
/// after which the context is read-only and every read is lock-free. Before the seal, reads and
/// writes take a lock and may come from any thread.
public final class AppContext: Sendable {
    private let table = SealableTable<any Sendable>()

    public init() {}

    /// Stores `value` under `key`. Throws `.duplicateKey` if the key already holds a value and
    /// `.sealed` after `seal()`; in both cases nothing changes.
    public func set<V>(_ key: ContextKey<V>, _ value: V) throws(ContextError) {
        switch table.insert(key.name, value) {
        case .inserted: return
        case .duplicate:
            throw ContextError(.duplicateKey, key: key.name, message: "context key '\(key.name)' is already set")
        case .sealed:
            throw ContextError(
                .sealed, key: key.name, message: "cannot set context key '\(key.name)': the context is sealed")
        }
    }

    /// The value under `key`, or nil if there is none or it is not a `V`.
    public func get<V>(_ key: ContextKey<V>) -> V? {
        table.value(key.name) as? V
    }

    /// The value under `key`; throws `.missingKey` if there is none, `.typeMismatch` if the value
    /// stored under that name is not a `V`.
    public func require<V>(_ key: ContextKey<V>) throws(ContextError) -> V {
        guard let stored = table.value(key.name) else {
            throw ContextError(.missingKey, key: key.name, message: "context key '\(key.name)' is not set")
        }
        guard let value = stored as? V else {
            throw ContextError(
                .typeMismatch, key: key.name,
                message: "context key '\(key.name)' holds a \(type(of: stored)), not a \(V.self)")
        }
        return value
    }

    /// Makes the context read-only. Idempotent.
    public func seal() { table.seal() }

    public var isSealed: Bool { table.isSealed }

    /// The names of every key that holds a value, sorted.
    public var keys: [String] { table.names }
}

/// A context read or write that cannot be done; `key` names the key involved.
public struct ContextError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        case duplicateKey, sealed, missingKey, typeMismatch
    }

    public let code: Code
    public let key: String
    public let message: String

    public init(_ code: Code, key: String, message: String) {
        self.code = code
        self.key = key
        self.message = message
    }

    public var description: String { message }
}
