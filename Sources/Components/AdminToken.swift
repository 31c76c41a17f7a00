import Core
import HTTPService

#if canImport(Glibc)
import Glibc
#endif

/// The bearer token that guards the admin API's optional TCP listener.
///
/// The token file must be a regular file of the host's user (or root) that neither group nor
/// others may read or write (`chmod 600`), holding one token of visible ASCII characters; a
/// trailing newline is ignored. Anything else is refused when the host starts, before it listens.
public struct AdminToken: Sendable {
    let bytes: [UInt8]

    /// For tests and callers that hold the token already; `read(from:)` checks a file.
    public init(_ token: String) throws(HostError) {
        guard let bytes = Self.valid(Array(token.utf8)) else {
            throw HostError(.badInput, "an admin token must be visible ASCII characters without spaces, and not empty")
        }
        self.bytes = bytes
    }

    private init(checked bytes: [UInt8]) { self.bytes = bytes }

    /// Reads and checks the token file; every refusal names the file and what to change.
    public static func read(from path: String) throws(HostError) -> AdminToken {
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)
        guard fd >= 0 else {
            throw HostError(.badInput, "admin token file '\(path)' cannot be read: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw HostError(.badInput, "admin token file '\(path)' is not a regular file")
        }
        guard info.st_mode & 0o077 == 0 else {
            let mode = String(info.st_mode & 0o777, radix: 8)
            throw HostError(.badInput, "admin token file '\(path)' is open to group or others (mode \(mode)); chmod 600 it")
        }
        guard info.st_uid == getuid() || info.st_uid == 0 else {
            throw HostError(.badInput, "admin token file '\(path)' belongs to uid \(info.st_uid), not to the host's user (\(getuid())) or root")
        }
        guard info.st_size <= 4096 else {
            throw HostError(.badInput, "admin token file '\(path)' is larger than 4 KiB: it should hold one token")
        }
        var content = [UInt8](repeating: 0, count: 4097)
        var length = 0
        while length < content.count {
            let n = content.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress! + length, $0.count - length) }
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else {
                throw HostError(.badInput, "admin token file '\(path)' cannot be read: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            length += n
        }
        var token = Array(content[..<length])
        while let last = token.last, last == 10 || last == 13 { token.removeLast() }
        guard !token.isEmpty else { throw HostError(.badInput, "admin token file '\(path)' is empty") }
        guard let bytes = valid(token) else {
            throw HostError(.badInput, "admin token file '\(path)' must hold one token of visible ASCII characters (no spaces), on one line")
        }
        return AdminToken(checked: bytes)
    }

    private static func valid(_ bytes: [UInt8]) -> [UInt8]? {
        guard !bytes.isEmpty, bytes.allSatisfy({ (33...126).contains($0) }) else { return nil }
        return bytes
    }

    /// Whether `header` (the request's `Authorization` value) is `Bearer <this token>`. The
    /// comparison takes the same time wherever the first difference is (it depends only on the
    /// token's length), so response times tell nothing about the token.
    public func authorizes(_ header: String?) -> Bool {
        guard let header else { return false }
        let given = Array(header.utf8)
        let scheme = Array("bearer ".utf8)
        guard given.count > scheme.count,
              zip(given.prefix(scheme.count), scheme).allSatisfy({ ($0 | 0x20) == $1 }) else { return false }
        let presented = given.dropFirst(scheme.count).drop { $0 == 32 }
        return Self.constantTimeEqual(Array(presented), bytes)
    }

    /// Equal bytes, compared in time that depends only on `expected.count`.
    static func constantTimeEqual(_ given: [UInt8], _ expected: [UInt8]) -> Bool {
        var difference: UInt8 = given.count == expected.count ? 0 : 1
        for index in expected.indices {
            let byte = index < given.count ? given[index] : 0
            difference |= byte ^ expected[index]
        }
        return difference == 0
    }

    /// 401 with `WWW-Authenticate: Bearer` (RFC 6750): `invalid_token` when one was given.
    static func unauthorized(tokenGiven: Bool) -> HTTPResponse {
        let challenge = tokenGiven ? #"Bearer realm="roost", error="invalid_token""# : #"Bearer realm="roost""#
        var response = AdminError(401, "unauthorized",
                                  tokenGiven ? "the bearer token is not the admin token"
                                      : "the admin API over TCP needs 'Authorization: Bearer <token>'").response
        response.headers.replace("WWW-Authenticate", with: challenge)
        return response
    }
}
