import Core
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// How a CGI function runs: its program and what it gets besides the request's variables.
public struct CGIProgram: Sendable {
    public var arguments: [String]
    /// The function's own environment (the request's variables are laid over it).
    public var environment: [String: String] {
        didSet { encodedEnvironment = EnvironmentBlock(environment) }
    }
    /// `environment`, encoded once rather than per request.
    private(set) var encodedEnvironment: EnvironmentBlock
    public var workingDirectory: String?
    /// From the start of the process until the response is complete; then its group is killed.
    public var timeout: Duration
    /// Whether an answer may also be a JSON object `{status, headers, body}` (`protocol: json`).
    public var jsonAnswers = false

    public init(arguments: [String], environment: [String: String] = [:], workingDirectory: String? = nil,
                timeout: Duration = .seconds(30)) {
        self.arguments = arguments
        self.environment = environment
        encodedEnvironment = EnvironmentBlock(environment)
        self.workingDirectory = workingDirectory
        self.timeout = timeout
    }
}

/// Runs one request through a CGI program (RFC 3875): a process per request, in a process group
/// of its own, the request body on its stdin, its stdout parsed as a CGI response and streamed
/// to the client as the program writes it, its stderr logged line by line with the request id.
///
/// - Memory stays bounded both ways: the body is written while the output is read, and the output
///   is read at most `CGIRun.readAhead` bytes ahead of the client (then the program blocks on its
///   next write until the client has taken some).
/// - The timeout covers the whole exchange: before the head is complete it is a 504; later the
///   stream ends marked as truncated (the server then closes without the body's proper end).
///   Either way, and whenever the client goes away, the group is killed.
/// - The process is watched by callbacks on the loop (`BriefChild`, `CGIRun`), not by tasks.
/// - A program that cannot be started, or ends or writes garbage before a valid head, is a 502.
/// - A local redirect (`Location: /path`) is returned as such for the caller to route again.
public enum CGIGateway {
    public enum Outcome: Sendable {
        case response(HTTPResponse)
        case localRedirect(path: String)
    }

    /// `onEnd` runs once, when the process is gone and its output closed (after the whole streamed
    /// body, or at once when there is no response to stream).
    public static func run(_ program: CGIProgram, for request: CGIRequest, requestID: String, on loop: EventLoop,
                           logger: Logger, onEnd: @escaping @Sendable () -> Void = {}) async -> Outcome {
        var request = request
        let streamed = request.request.streamedBody
        // A chunked body has no length, which CGI needs (CONTENT_LENGTH): it is spooled to an
        // unlinked temporary file first, which becomes the program's stdin.
        var spooled: Int32 = -1
        if let streamed, streamed.declaredLength == nil {
            do {
                let (descriptor, length) = try await spool(streamed)
                spooled = descriptor
                request.request.headers.remove("Transfer-Encoding")
                request.request.headers.replace("Content-Length", with: String(length))
            } catch {
                onEnd()
                return .response(failure(error))
            }
        }
        defer { if spooled >= 0 { close(spooled) } }
        var environment = EnvironmentBlock()
        request.add(to: &environment)
        environment.add(missingFrom: program.encodedEnvironment)
        var options = ProcessOptions(program.arguments, workingDirectory: program.workingDirectory)
        options.environment = environment
        // No body, no stdin pipe: the program reads end-of-file at once from /dev/null.
        let hasBody = streamed != nil || !request.request.body.isEmpty
        options.stdin = spooled >= 0 ? .fileDescriptor(spooled) : hasBody ? .pipe : .null
        options.stdout = .pipe
        options.stderr = .pipe
        // A group of its own, for the timeout to kill whatever it started; not a session of its
        // own: setsid() also makes the kernel a scheduling group (autogroup) per request.
        options.grouping = .newGroup
        options.dieWithHost = true
        options.role = .function
        let run = CGIRun(program: program, requestID: requestID, logger: logger, loop: loop, onEnd: onEnd)
        let child: BriefChild
        do {
            child = try await BriefChild.start(on: loop, options, timeout: program.timeout) { child, event in
                run.handle(event, of: child)
            }
        } catch {
            logger.error("cannot start \(program.arguments[0]): \(error)", metadata: ["request": "\(requestID)"])
            onEnd()
            return .response(.text(status: 502, "bad gateway: the function could not be started\n"))
        }
        run.onLoop { run.adopt(child) }
        if spooled >= 0 {
            close(spooled)
            spooled = -1
        }
        let body = request.request.body
        if let stdin = child.stdin {
            Task(executorPreference: loop) {
                // The body goes in while the output comes out: neither side waits for the other.
                guard let streamed, streamed.declaredLength != nil else {
                    try? await stdin.write(body)
                    try? await stdin.shutdownWrite()
                    return
                }
                do throws(HTTPError) {
                    while let chunk = try await streamed.next() {
                        do {
                            try await stdin.write(chunk)
                        } catch {
                            // The program closed its stdin or ended: it wants no more.
                            streamed.discard()
                            return
                        }
                    }
                    try? await stdin.shutdownWrite()
                } catch {
                    // The body failed (too large, cut short): the program must not take a part for the whole.
                    run.onLoop { run.failBody(error) }
                }
            }
        }
        return await run.outcome()
    }

    /// The most a JSON answer may hold.
    static let jsonAnswerLimit = 16 << 20

    static func failure(_ error: HTTPError) -> HTTPResponse {
        HTTPResponse(status: error.status, headers: ["Content-Type": "text/plain; charset=utf-8", "Connection": "close"],
                     body: .bytes(Array((error.message + "\n").utf8)))
    }

    /// Writes the whole body to a temporary file (in `TMPDIR`, else /tmp; unlinked at once), and returns
    /// it rewound with the body's length. The writes block the calling thread briefly (page cache).
    private static func spool(_ body: RequestBody) async throws(HTTPError) -> (Int32, Int) {
        let folder = getenv("TMPDIR").map { String(cString: $0) } ?? "/tmp"
        var template = Array((folder + "/roost-body-XXXXXX").utf8CString)
        let descriptor = mkstemp(&template)
        guard descriptor >= 0 else {
            throw HTTPError(.incomplete, "cannot hold the request body: \(String(cString: strerror(errno)))")
        }
        unlink(template)
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)
        var length = 0
        do throws(HTTPError) {
            while let chunk = try await body.next() {
                let written = chunk.withUnsafeBytes { buffer in
                    var offset = 0
                    while offset < buffer.count {
                        let count = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
                        if count < 0 { if errno == EINTR { continue }; return false }
                        offset += count
                    }
                    return true
                }
                guard written else {
                    throw HTTPError(.incomplete, "cannot hold the request body: \(String(cString: strerror(errno)))")
                }
                length += chunk.count
            }
        } catch {
            close(descriptor)
            body.discard()
            throw error
        }
        lseek(descriptor, 0, SEEK_SET)
        return (descriptor, length)
    }
}
