/// Why an HTTP message was refused or could not be completed.
///
/// Tests compare `code`; people read `message`. On the server, `status` is what the peer is
/// answered before the connection is closed.
public struct HTTPError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Code: String, Sendable, Hashable {
        /// Not valid HTTP/1.x, or framed ambiguously (both Content-Length and Transfer-Encoding,
        /// repeated Content-Length): answered with 400.
        case malformed
        /// The request line and headers are larger than the parser's limit: 431.
        case headersTooLarge
        /// The body is larger than the parser's limit: 413.
        case bodyTooLarge
        /// An HTTP major version other than 1: 505.
        case versionNotSupported
        /// The peer closed the connection before the message was complete.
        case incomplete
        /// The body did not arrive in the time it had: 408.
        case timeout
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// The status a server answers this error with.
    public var status: Int {
        switch code {
        case .malformed, .incomplete: 400
        case .headersTooLarge: 431
        case .bodyTooLarge: 413
        case .versionNotSupported: 505
        case .timeout: 408
        }
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
