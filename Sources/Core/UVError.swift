import CLibUV

/// A libuv call that failed: which operation, and libuv's error code (a negative errno).
public struct UVError: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: Int32
    public let operation: String

    public init(_ code: Int32, _ operation: String) {
        self.code = code
        self.operation = operation
    }

    /// libuv's name for the code, e.g. `ECONNREFUSED`.
    public var name: String { String(cString: uv_err_name(code)) }
    public var message: String { String(cString: uv_strerror(code)) }
    public var description: String { "\(operation): \(message) (\(name))" }

    /// The handle was closed while the operation waited, or before it began.
    public static func closed(_ operation: String) -> UVError { UVError(UV_ECANCELED.rawValue, operation) }
    public var isClosed: Bool { code == UV_ECANCELED.rawValue }

    @inline(__always)
    static func check(_ rc: Int32, _ operation: @autoclosure () -> String) throws(UVError) {
        if rc < 0 { throw UVError(rc, operation()) }
    }
}
