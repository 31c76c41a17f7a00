/// Runs one command: takes its argument and returns its result. It runs on whatever executor the
/// caller of `dispatch` is on; a handler that needs isolation provides its own.
public typealias CommandHandler = @Sendable (JSON) async throws -> JSON

/// Command name -> handler, for the admin API and `roost call`.
///
/// Components register their commands while they load; the host calls `freeze()` before the
/// components start, after which lookups take no lock.
public final class Dispatcher: Sendable {
    private let table = SealableTable<CommandHandler>()

    public init() {}

    /// Throws `.duplicateCommand` if `name` is already registered and `.frozen` after `freeze()`;
    /// in both cases nothing changes.
    public func register(_ name: String, _ handler: @escaping CommandHandler) throws(DispatchError) {
        switch table.insert(name, handler) {
        case .inserted: return
        case .duplicate:
            throw DispatchError(.duplicateCommand, command: name, message: "command '\(name)' is already registered")
        case .sealed:
            throw DispatchError(
                .frozen, command: name, message: "cannot register command '\(name)': the dispatcher is frozen")
        }
    }

    /// Closes registration. Idempotent.
    public func freeze() { table.seal() }

    public var isFrozen: Bool { table.isSealed }

    public func handler(for name: String) -> CommandHandler? {
        table.value(name)
    }

    /// Runs the handler of `name` with `argument`. Throws `DispatchError(.unknownCommand)` when no
    /// such command exists; whatever the handler throws is passed through unchanged.
    public func dispatch(_ name: String, _ argument: JSON = .null) async throws -> JSON {
        guard let handler = table.value(name) else {
            throw DispatchError(.unknownCommand, command: name, message: "unknown command '\(name)'")
        }
        return try await handler(argument)
    }

    /// Every registered command, sorted.
    public var commandNames: [String] { table.names }
}

/// A command that could not be registered or found; `command` names it.
public struct DispatchError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        case duplicateCommand, frozen, unknownCommand
    }

    public let code: Code
    public let command: String
    public let message: String

    public init(_ code: Code, command: String, message: String) {
        self.code = code
        self.command = command
        self.message = message
    }

    public var description: String { message }
}
