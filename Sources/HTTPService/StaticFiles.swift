import Core
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Answers the requests of one `http.static` mount from its folder.
///
/// What a request gets:
/// - GET and HEAD only; other methods get 405 with `Allow: GET, HEAD`.
/// - The path after the prefix is split at `/` before decoding, and each segment is decoded on
///   its own. A segment that decodes to `.` or `..`, holds a `/` (`%2F`) or NUL, is empty (`//`),
///   is not UTF-8 or has a broken `%` escape makes the request 400: such a path never reaches
///   the file system.
/// - The file is then found through its real path (`realpath`, every link resolved), which must
///   lie inside the real path of the root; after it is opened, the kernel's name for the open
///   file (`/proc/self/fd`) is checked against the root again, so a link swapped in between
///   does not get out either. A link inside the root to a file inside it is served; one that
///   leads outside is answered 404, like a file that is not there (a 403 would tell a prober
///   that something exists behind the link). Only regular files are served; anything else is 404.
/// - A folder is answered by its first `index` file that exists; a folder without one is 404
///   (there are no listings). A folder asked for without its trailing slash (the mount's prefix
///   included) is redirected (301) to the slash form, query kept, so relative links in the
///   index page resolve.
/// - `Content-Type` from the extension (`mimeTypes`; `application/octet-stream` otherwise, and
///   `; charset=utf-8` for text), `ETag` (size and modification time), `Last-Modified`,
///   `Accept-Ranges: bytes`.
/// - `If-None-Match` (weak comparison, `*` included) and, without it, `If-Modified-Since` (an
///   HTTP date not in the future, the file not modified after it) give 304.
/// - `Range` on GET: one byte range (`a-b`, `a-`, `-n`) gives 206 with `Content-Range`; a range
///   that starts at or past the end (or `-0`, or any range of an empty file) gives 416 with
///   `Content-Range: bytes */size`. A request for several ranges is answered with the whole
///   file (200), which RFC 9110 allows: there is no `multipart/byteranges` here. A malformed
///   `Range`, and one whose `If-Range` does not match the file, are ignored (200).
///
/// Files up to `cachedFileLimit` are read whole and kept in a cache keyed by the request's
/// relative path, up to `cacheBudget` bytes in all (arbitrary entries make room for new ones).
/// A cached answer is used only while `stat` of the same path (links followed again) still
/// shows the same device, inode, size, modification and change times; anything else reads the
/// file afresh, going through the checks above again. Larger files are streamed in chunks of
/// `chunkSize` as the client takes them, so memory stays bounded whatever their size.
///
/// Known limits: the streamed chunks are read with `pread` on the thread that writes the
/// response (the loop): fine for files in the page cache, a stall of the loop for slow storage.
/// Every answer states its `Content-Length`, HEAD too; a file that shrinks or fails to read while
/// it streams ends the body short of it, and the server closes the connection, so the client can
/// tell.
public final class StaticFiles: Sendable {
    public let definition: StaticDefinition
    /// The root's real path; every file served resolves to a path below it.
    public let realRoot: String

    static let cachedFileLimit = 1 << 20
    static let cacheBudget = 64 << 20
    static let chunkSize = 64 << 10

    private let cache = Mutex(FileCache())

    /// Nil when the root has no real path (it is gone, or not reachable).
    public init?(_ definition: StaticDefinition) {
        guard let real = Self.realPath(definition.root) else { return nil }
        self.definition = definition
        self.realRoot = real
    }

    public func respond(to request: HTTPRequest) -> HTTPResponse {
        guard request.method == "GET" || request.method == "HEAD" else {
            return HTTPResponse(status: 405, headers: ["Allow": "GET, HEAD", "Content-Type": "text/plain; charset=utf-8"],
                                body: .bytes(Array("method not allowed\n".utf8)))
        }
        let path = request.path
        switch Self.relativePath(path, prefix: definition.prefix) {
        case .bad:
            return .text(status: 400, "bad path\n")
        case .mountWithoutSlash:
            return redirect(to: path + "/", query: request.query)
        case .relative(let relative):
            if let representation = cachedRepresentation(for: relative) {
                return answer(request, with: representation)
            }
            switch find(relative) {
            case .notFound:
                return .text(status: 404, "not found\n")
            case .folderWithoutSlash:
                return redirect(to: path + "/", query: request.query)
            case .found(let representation):
                return answer(request, with: representation)
            }
        }
    }

    private func redirect(to location: String, query: String?) -> HTTPResponse {
        HTTPResponse(status: 301, headers: ["Location": location + (query.map { "?" + $0 } ?? ""),
                                            "Content-Type": "text/plain; charset=utf-8"],
                     body: .bytes(Array("moved to \(location)\n".utf8)))
    }

    // MARK: The path

    enum RelativePath: Equatable {
        /// Decoded, segments joined with `/`, no leading slash; a trailing slash kept; "" is the root.
        case relative(String)
        /// The prefix itself without its slash.
        case mountWithoutSlash
        case bad
    }

    /// The part of `path` (still percent-encoded) below `prefix` (which the route matched).
    static func relativePath(_ path: String, prefix: String) -> RelativePath {
        let utf8 = Array(path.utf8)
        let skip = prefix == "/" ? 0 : prefix.utf8.count
        guard utf8.count >= skip else { return .bad }
        let rest = utf8[skip...]
        if rest.isEmpty { return .mountWithoutSlash }
        guard rest.first == UInt8(ascii: "/") else { return .bad }
        let segments = rest.dropFirst().split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
        var out: [UInt8] = []
        out.reserveCapacity(rest.count)
        for (index, segment) in segments.enumerated() {
            let isLast = index == segments.count - 1
            if segment.isEmpty {
                // Only a trailing slash (or the root's own) may leave a segment empty.
                guard isLast else { return .bad }
                continue
            }
            guard let decoded = percentDecoded(segment),
                  !decoded.contains(0), !decoded.contains(UInt8(ascii: "/")),
                  decoded != [UInt8(ascii: ".")], decoded != [UInt8(ascii: "."), UInt8(ascii: ".")] else {
                return .bad
            }
            out += decoded
            if !isLast { out.append(UInt8(ascii: "/")) }
        }
        guard let text = String(validating: out, as: UTF8.self) else { return .bad }
        return .relative(text)
    }

    /// Nil for a `%` not followed by two hex digits.
    private static func percentDecoded(_ bytes: ArraySlice<UInt8>) -> [UInt8]? {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var index = bytes.startIndex
        while index < bytes.endIndex {
            let byte = bytes[index]
            if byte == UInt8(ascii: "%") {
                guard index + 2 < bytes.endIndex, let high = HTTPRequest.hexValue(bytes[index + 1]), let low = HTTPRequest.hexValue(bytes[index + 2]) else { return nil }
                out.append(high << 4 | low)
                index += 3
            } else {
                out.append(byte)
                index += 1
            }
        }
        return out
    }

    // MARK: Finding a file

    private enum Found {
        case found(Representation)
        case folderWithoutSlash
        case notFound
    }

    /// The path as requested: links in it are followed by `stat` and `realpath`.
    private func requested(_ relative: String) -> String {
        definition.root + "/" + relative
    }

    /// Compared as bytes, as the file system names files: `String` comparison takes Unicode-equivalent
    /// spellings (`é` composed or not, the Kelvin sign and `K`) for the same, which are other paths.
    private func isInsideRoot(_ real: String) -> Bool {
        let path = real.utf8, root = realRoot.utf8
        guard root.count > 1 else { return path.first == UInt8(ascii: "/") }  // the root is "/"
        guard path.starts(with: root) else { return false }
        return path.count == root.count || path.dropFirst(root.count).first == UInt8(ascii: "/")
    }

    private func find(_ relative: String) -> Found {
        let path = requested(relative)
        guard let real = Self.realPath(path), isInsideRoot(real) else { return .notFound }
        var info = stat()
        guard stat(real, &info) == 0 else { return .notFound }
        switch info.st_mode & S_IFMT {
        case S_IFREG:
            // realpath drops a trailing slash; a file is not a folder.
            guard !relative.hasSuffix("/") else { return .notFound }
            return load(real, key: relative, checks: [path]).map { .found($0) } ?? .notFound
        case S_IFDIR:
            guard relative.isEmpty || relative.hasSuffix("/") else { return .folderWithoutSlash }
            for name in definition.index {
                guard let file = Self.realPath(real + "/" + name), isInsideRoot(file) else { continue }
                var fileInfo = stat()
                guard stat(file, &fileInfo) == 0, fileInfo.st_mode & S_IFMT == S_IFREG else { continue }
                // The folder is checked too: a new, earlier index file changes its times.
                if let representation = load(file, key: relative, checks: [path, path + name]) { return .found(representation) }
            }
            return .notFound
        default:
            return .notFound
        }
    }

    /// Opens `real` (a regular file inside the root, as far as `realpath` could tell) and reads it
    /// whole when it is small (then caches it under `key`, validated by `stat` of `checks`), or sets it
    /// up to be streamed.
    private func load(_ real: String, key: String, checks: [String]) -> Representation? {
        // O_NONBLOCK: a FIFO swapped in since the stat must not block the open.
        let fd = Glibc.open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW)
        guard fd >= 0 else { return nil }
        var keep = false
        defer { if !keep { close(fd) } }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else { return nil }
        // What was opened, in the kernel's words: a link swapped in after realpath shows here.
        if let opened = Self.openedPath(fd), !isInsideRoot(opened) { return nil }
        let identity = FileIdentity(info)
        var identities = [identity]
        if checks.count > 1 {
            // The folder of an index file: its identity as requested.
            var folder = stat()
            guard stat(checks[0], &folder) == 0 else { return nil }
            identities = [FileIdentity(folder), identity]
        }
        let headers = Self.headers(for: real, identity: identity)
        let size = Int(info.st_size)
        if size <= Self.cachedFileLimit {
            // A file cut short since the fstat would answer with a length it does not have.
            guard let bytes = Self.readWhole(fd, size: size), bytes.count == size else { return nil }
            let representation = Representation(size: size, identity: identity, headers: headers, content: .bytes(bytes))
            // A file that changed while it was read is answered but not kept.
            var after = stat()
            if fstat(fd, &after) == 0, FileIdentity(after) == identity {
                store(representation, checks: Array(zip(checks, identities)), key: key)
            }
            return representation
        }
        keep = true
        return Representation(size: size, identity: identity, headers: headers, content: .file(OpenFile(fd)))
    }

    private static func readWhole(_ fd: Int32, size: Int) -> [UInt8]? {
        var failed = false
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            var done = 0
            while done < size {
                let count = pread(fd, buffer.baseAddress! + done, size - done, off_t(done))
                if count < 0 && errno == EINTR { continue }
                if count < 0 { failed = true }
                if count <= 0 { break }
                done += count
            }
            initialized = done
        }
        return failed ? nil : bytes
    }

    static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(validatingCString: resolved)
    }

    /// The path the kernel gives the open file; nil when `/proc` cannot tell (then the
    /// `realpath` check stands alone).
    private static func openedPath(_ fd: Int32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    // MARK: The cache

    private struct FileCache {
        struct Item {
            /// Paths as requested and what `stat` must still show for each.
            let checks: [(path: String, identity: FileIdentity)]
            let representation: Representation
        }
        /// Keyed by the relative path's bytes: two Unicode-equivalent names are two files.
        var items: [[UInt8]: Item] = [:]
        var bytes = 0
    }

    private func cachedRepresentation(for relative: String) -> Representation? {
        let key = Array(relative.utf8)
        guard let item = cache.withLock({ $0.items[key] }) else { return nil }
        for check in item.checks {
            var info = stat()
            guard stat(check.path, &info) == 0, FileIdentity(info) == check.identity else {
                cache.withLock { cache in
                    if let gone = cache.items.removeValue(forKey: key) { cache.bytes -= gone.representation.size }
                }
                return nil
            }
        }
        return item.representation
    }

    private func store(_ representation: Representation, checks: [(path: String, identity: FileIdentity)], key: String) {
        let size = representation.size
        cache.withLock { cache in
            let key = Array(key.utf8)
            if let old = cache.items.removeValue(forKey: key) { cache.bytes -= old.representation.size }
            while cache.bytes + size > Self.cacheBudget, let victim = cache.items.first {
                cache.items.removeValue(forKey: victim.key)
                cache.bytes -= victim.value.representation.size
            }
            cache.items[key] = FileCache.Item(checks: checks, representation: representation)
            cache.bytes += size
        }
    }

    /// The number of files cached and their bytes (for tests).
    var cacheLoad: (files: Int, bytes: Int) {
        cache.withLock { ($0.items.count, $0.bytes) }
    }

    // MARK: Answering

    struct FileIdentity: Equatable, Sendable {
        let device: UInt64
        let inode: UInt64
        let size: Int64
        let modified: timespec
        let changed: timespec

        init(_ info: stat) {
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
            size = Int64(info.st_size)
            modified = info.st_mtim
            changed = info.st_ctim
        }

        static func == (a: FileIdentity, b: FileIdentity) -> Bool {
            a.device == b.device && a.inode == b.inode && a.size == b.size
                && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
                && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
        }

        /// Size and modification time, in hex: changes whenever the content is rewritten.
        var etag: String {
            let nanoseconds = Int64(modified.tv_sec) * 1_000_000_000 + Int64(modified.tv_nsec)
            return "\"\(String(size, radix: 16))-\(String(nanoseconds, radix: 16))\""
        }
    }

    struct Representation: Sendable {
        enum Content: Sendable {
            case bytes([UInt8])
            /// Opened for this one response, streamed from it.
            case file(OpenFile)
        }
        let size: Int
        let identity: FileIdentity
        /// `Content-Type`, `ETag`, `Last-Modified`, `Accept-Ranges`.
        let headers: HTTPHeaders
        let content: Content

        var etag: String { identity.etag }
        var modifiedSeconds: Int { Int(identity.modified.tv_sec) }
    }

    private static func headers(for path: String, identity: FileIdentity) -> HTTPHeaders {
        [
            "Content-Type": contentType(for: path),
            "ETag": identity.etag,
            "Last-Modified": HTTPWire.date(Int(identity.modified.tv_sec)),
            "Accept-Ranges": "bytes",
        ]
    }

    private func answer(_ request: HTTPRequest, with representation: Representation) -> HTTPResponse {
        if Self.notModified(request.headers, representation) {
            var headers = HTTPHeaders()
            headers.add("ETag", representation.etag)
            headers.add("Last-Modified", representation.headers["Last-Modified"] ?? "")
            return HTTPResponse(status: 304, headers: headers)
        }
        var range: ByteRange = .whole
        if request.method == "GET", let value = request.headers["Range"], Self.ifRangeHolds(request.headers, representation) {
            range = Self.byteRange(value, size: representation.size)
        }
        switch range {
        case .whole:
            var headers = representation.headers
            headers.replace("Content-Length", with: String(representation.size))
            return HTTPResponse(status: 200, headers: headers,
                                body: Self.body(representation.content, offset: 0, count: representation.size))
        case .part(let first, let last):
            var headers = representation.headers
            headers.add("Content-Range", "bytes \(first)-\(last)/\(representation.size)")
            headers.replace("Content-Length", with: String(last - first + 1))
            return HTTPResponse(status: 206, headers: headers,
                                body: Self.body(representation.content, offset: first, count: last - first + 1))
        case .unsatisfiable:
            return HTTPResponse(status: 416, headers: ["Content-Range": "bytes */\(representation.size)",
                                                       "Content-Type": "text/plain; charset=utf-8"],
                                body: .bytes(Array("range not satisfiable\n".utf8)))
        }
    }

    private static func body(_ content: Representation.Content, offset: Int, count: Int) -> HTTPBody {
        switch content {
        case .bytes(let bytes):
            return .bytes(offset == 0 && count == bytes.count ? bytes : Array(bytes[offset..<(offset + count)]))
        case .file(let file):
            file.limit(offset: offset, count: count)
            return .stream(AsyncStream(unfolding: { file.next() }, onCancel: { file.close() }))
        }
    }

    // MARK: Conditions

    static func notModified(_ headers: HTTPHeaders, _ representation: Representation) -> Bool {
        let tags = headers.values(for: "If-None-Match")
        if !tags.isEmpty {
            let mine = weak(representation.etag)
            return tags.contains { value in
                value.split(separator: ",").contains { tag in
                    let tag = trimmed(tag)
                    return tag == "*" || weak(tag) == mine
                }
            }
        }
        if let text = headers["If-Modified-Since"], let date = parseHTTPDate(text), date <= Int(time(nil)) {
            return representation.modifiedSeconds <= date
        }
        return false
    }

    private static func weak(_ tag: some StringProtocol) -> Substring {
        tag.hasPrefix("W/") ? Substring(tag).dropFirst(2) : Substring(tag)
    }

    /// Without `If-Range`, or with one that matches the file (strongly): the range applies.
    static func ifRangeHolds(_ headers: HTTPHeaders, _ representation: Representation) -> Bool {
        guard let value = headers["If-Range"].map({ String(trimmed($0)) }) else { return true }
        if value.hasPrefix("\"") || value.hasPrefix("W/") { return value == representation.etag }
        return parseHTTPDate(value) == representation.modifiedSeconds
    }

    enum ByteRange: Equatable {
        case whole
        /// First and last byte, inclusive.
        case part(Int, Int)
        case unsatisfiable
    }

    /// One `bytes=` range against a file of `size` bytes; several ranges, another unit and
    /// malformed values give `.whole`.
    static func byteRange(_ value: String, size: Int) -> ByteRange {
        let text = trimmed(value)
        guard text.count > 6, text.prefix(6).lowercased() == "bytes=" else { return .whole }
        let spec = trimmed(text.dropFirst(6))
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return .whole }
        let firstText = trimmed(spec[..<dash]), lastText = trimmed(spec[spec.index(after: dash)...])
        func number(_ digits: Substring) -> Int? {
            guard !digits.isEmpty, digits.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
            // More digits than an Int holds: past the end of any file.
            return Int(digits) ?? Int.max
        }
        if firstText.isEmpty {
            guard let suffix = number(lastText) else { return .whole }
            guard suffix > 0, size > 0 else { return .unsatisfiable }
            return .part(size - min(suffix, size), size - 1)
        }
        guard let first = number(firstText) else { return .whole }
        var last = size - 1
        if !lastText.isEmpty {
            guard let given = number(lastText) else { return .whole }
            guard given >= first else { return .whole }
            last = min(given, size - 1)
        }
        guard first < size else { return .unsatisfiable }
        return .part(first, last)
    }

    /// An HTTP date in any of the three forms RFC 9110 has recipients accept (IMF-fixdate,
    /// RFC 850, asctime), as seconds since 1970; nil for anything else.
    static func parseHTTPDate(_ text: String) -> Int? {
        let tokens = text.split(whereSeparator: { $0 == " " || $0 == "," || $0 == "-" }).map(String.init)
        let day: String, month: String, year: String, clock: String
        if tokens.count == 6, tokens[5] == "GMT" {
            (day, month, year, clock) = (tokens[1], tokens[2], tokens[3], tokens[4])
        } else if tokens.count == 5 {
            (month, day, clock, year) = (tokens[1], tokens[2], tokens[3], tokens[4])
        } else {
            return nil
        }
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        let times = clock.split(separator: ":").compactMap { Int32($0) }
        guard let monthIndex = months.firstIndex(of: month), let dayNumber = Int32(day), (1...31).contains(dayNumber),
              var yearNumber = Int32(year), times.count == 3, (0...23).contains(times[0]), (0...59).contains(times[1]),
              (0...60).contains(times[2]) else { return nil }
        if year.count == 2 { yearNumber += yearNumber < 70 ? 2000 : 1900 }
        var parts = tm()
        parts.tm_year = yearNumber - 1900
        parts.tm_mon = Int32(monthIndex)
        parts.tm_mday = dayNumber
        parts.tm_hour = times[0]
        parts.tm_min = times[1]
        parts.tm_sec = times[2]
        return Int(timegm(&parts))
    }

    // MARK: Types

    /// Content types by extension (lowercased). Text types get `; charset=utf-8` added.
    static let mimeTypes: [String: String] = [
        "html": "text/html", "htm": "text/html", "css": "text/css", "js": "text/javascript", "mjs": "text/javascript",
        "json": "application/json", "map": "application/json", "webmanifest": "application/manifest+json",
        "txt": "text/plain", "text": "text/plain", "md": "text/markdown", "csv": "text/csv", "xml": "application/xml",
        "yaml": "application/yaml", "yml": "application/yaml", "svg": "image/svg+xml",
        "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
        "avif": "image/avif", "ico": "image/x-icon", "bmp": "image/bmp",
        "woff": "font/woff", "woff2": "font/woff2", "ttf": "font/ttf", "otf": "font/otf",
        "pdf": "application/pdf", "wasm": "application/wasm", "zip": "application/zip", "gz": "application/gzip",
        "tar": "application/x-tar", "xz": "application/x-xz", "bz2": "application/x-bzip2",
        "mp4": "video/mp4", "webm": "video/webm", "mp3": "audio/mpeg", "ogg": "audio/ogg", "wav": "audio/wav",
    ]

    static func contentType(for path: String) -> String {
        let name = path.split(separator: "/").last.map(String.init) ?? path
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex,
              let type = mimeTypes[name[name.index(after: dot)...].lowercased()] else {
            return "application/octet-stream"
        }
        let isText = type.hasPrefix("text/") || ["application/json", "application/manifest+json", "application/xml",
                                                 "application/yaml", "image/svg+xml"].contains(type)
        return isText ? type + "; charset=utf-8" : type
    }
}

/// A file opened for one streamed response: read in chunks from an offset, closed at the end,
/// when the client goes away (`close`), or at the latest when the last reference goes.
final class OpenFile: Sendable {
    private struct State {
        var fd: Int32
        var offset = 0
        var remaining = 0
    }
    private let state: Mutex<State>

    init(_ fd: Int32) {
        state = Mutex(State(fd: fd))
    }

    deinit {
        state.withLock { if $0.fd >= 0 { Glibc.close($0.fd) } }
    }

    func limit(offset: Int, count: Int) {
        state.withLock {
            $0.offset = offset
            $0.remaining = count
        }
    }

    /// The next chunk; nil at the end (or on a read error), which also closes the file.
    func next() -> [UInt8]? {
        state.withLock { state in
            guard state.fd >= 0, state.remaining > 0 else {
                Self.close(&state)
                return nil
            }
            let wanted = min(StaticFiles.chunkSize, state.remaining)
            let fd = state.fd, offset = state.offset
            let chunk = [UInt8](unsafeUninitializedCapacity: wanted) { buffer, initialized in
                var count = -1
                repeat { count = pread(fd, buffer.baseAddress, wanted, off_t(offset)) } while count < 0 && errno == EINTR
                initialized = max(count, 0)
            }
            guard !chunk.isEmpty else {
                Self.close(&state)
                return nil
            }
            state.offset += chunk.count
            state.remaining -= chunk.count
            return chunk
        }
    }

    func close() {
        state.withLock { Self.close(&$0) }
    }

    private static func close(_ state: inout State) {
        if state.fd >= 0 { Glibc.close(state.fd) }
        state.fd = -1
    }
}
