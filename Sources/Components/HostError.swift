/// Why the host could not boot or run, with the exit code it leads to.
public struct HostError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Hashable {
        /// Bad flags or unusable paths: nothing was started. Exit code 2.
        case badInput
        /// A component failed to load or start, or the context was misused. Exit code 1.
        case bootFailed

        public var exitCode: Int32 {
            switch self {
            case .badInput: 2
            case .bootFailed: 1
            }
        }
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    public var exitCode: Int32 { code.exitCode }
}
