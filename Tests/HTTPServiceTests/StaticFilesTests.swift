import Core
import Logging
import Registry
import Testing
import TestSupport

@testable import HTTPService

#if canImport(Glibc)
import Glibc
#endif

private func write(_ path: String, _ content: [UInt8]) {
    let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
    precondition(fd >= 0, "cannot create \(path)")
    var done = 0
    while done < content.count {
        let count = content[done...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        precondition(count > 0)
        done += count
    }
    close(fd)
}

private func write(_ path: String, _ text: String) { write(path, Array(text.utf8)) }

/// 3 MiB that differ at every offset's low bytes, so a misplaced range shows.
private let bigContent: [UInt8] = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 11) }

/// A registry folder with a static mount at `/files` over `site/`, an endpoint beside it, and
/// files outside `site/` that must never be served.
private struct StaticSite: Sendable {
    let folder: String
    var root: String { folder + "/site" }

    static func make() throws -> StaticSite {
        let folder = try #require(makeTemporaryDirectory("roost-static"))
        let site = StaticSite(folder: folder)
        let root = site.root
        for directory in [root, root + "/sub", root + "/empty", folder + "/outside"] { mkdir(directory, 0o755) }
        write(root + "/hello.txt", "hello, world\n")
        write(root + "/index.html", "<p>home</p>\n")
        write(root + "/sub/index.html", "<p>sub</p>\n")
        write(root + "/style.css", "p {}\n")
        write(root + "/logo.PNG", [0x89, 0x50, 0x4E, 0x47])
        write(root + "/data", "raw")
        write(root + "/big.bin", bigContent)
        write(folder + "/secret.txt", "top secret\n")
        write(folder + "/outside/secret.txt", "top secret too\n")
        symlink("hello.txt", root + "/link-in")
        symlink("../secret.txt", root + "/link-out")
        symlink(folder + "/outside", root + "/dir-out")
        write(folder + "/site.yaml", """
            namespace: app
            entries:
              - {name: web, kind: http.service, listen: '127.0.0.1:1'}
              - {name: files, kind: http.static, prefix: /files, root: site}
              - {name: greet, kind: swiftlet.function, exec: cat}
              - {name: greet-route, kind: http.endpoint, path: '/files/api/:name', func: greet}

            """)
        return site
    }

    func state() throws -> [EntryID: Entry] {
        let fd = open(folder + "/site.yaml", O_RDONLY)
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count <= 0 { break }
            data += buffer[..<count]
        }
        close(fd)
        let file = RegistryFile.parse(String(decoding: data, as: UTF8.self), path: "site.yaml")
        try #require(file.errors.isEmpty, "\(file.errors)")
        return Dictionary(uniqueKeysWithValues: file.entries.map { ($0.id, $0) })
    }
}

/// Serves the site on a unix socket through `SiteRouter`, runs `body`, removes the folder.
private func withStaticSite(_ body: @escaping @Sendable (Harness, StaticSite, Site) async throws -> Void) async throws {
    let site = try StaticSite.make()
    defer { removeTree(site.folder) }
    let (built, problems) = Site.build(from: try site.state(), registryRoot: site.folder)
    try #require(problems.isEmpty, "\(problems)")
    let loop = EventLoop(name: "static-router")
    defer { loop.shutdown() }
    let router = testRouter(loop)
    router.replace(built)
    let service = EntryID("app:web")!
    try await withServer(handler: { await router.handle($0, service: service) }) { harness in
        try await body(harness, site, built)
    }
}

/// One request on its own connection; `extra` are header lines (`Name: value`).
private func send(_ method: String, _ target: String, _ extra: [String] = [], over harness: Harness) async throws -> HTTPResponse {
    var headers: HTTPHeaders = ["Host": "example.com"]
    for line in extra {
        let colon = try #require(line.firstIndex(of: ":"))
        headers.add(String(line[..<colon]), String(line[line.index(after: colon)...].drop { $0 == " " }))
    }
    let channel = try await harness.connect()
    let answer = try await HTTPClient.send(HTTPRequest(method: method, target: target, headers: headers), over: channel)
    await channel.close()
    return answer
}

private func get(_ target: String, _ extra: [String] = [], over harness: Harness) async throws -> HTTPResponse {
    try await send("GET", target, extra, over: harness)
}

@Suite(.timeLimit(.minutes(2))) struct StaticFilesTests {
    // MARK: Serving

    @Test func aFileIsServedWithTypeValidatorsAndRanges() async throws {
        try await withStaticSite { harness, _, _ in
            let answer = try await get("/files/hello.txt", over: harness)
            #expect(answer.status == 200)
            #expect(text(answer.bodyBytes) == "hello, world\n")
            let headers = answer.headers
            #expect(headers["Content-Type"] == "text/plain; charset=utf-8")
            #expect(headers["Content-Length"] == "13")
            #expect(headers["Accept-Ranges"] == "bytes")
            #expect(headers["ETag"]?.hasPrefix("\"d-") == true && headers["ETag"]?.hasSuffix("\"") == true)
            #expect(headers["Last-Modified"]?.hasSuffix(" GMT") == true)
            #expect(headers["X-Request-Id"] != nil)

            let head = try await send("HEAD", "/files/hello.txt", over: harness)
            #expect(head.status == 200 && head.bodyBytes.isEmpty)
            #expect(head.headers["Content-Length"] == "13" && head.headers["ETag"] == headers["ETag"])

            let post = try await send("POST", "/files/hello.txt", ["Content-Length: 0"], over: harness)
            #expect(post.status == 405 && post.headers["Allow"] == "GET, HEAD")
        }
    }

    @Test(arguments: [
        ("/files/index.html", "text/html; charset=utf-8"),
        ("/files/style.css", "text/css; charset=utf-8"),
        ("/files/logo.PNG", "image/png"),
        ("/files/data", "application/octet-stream"),
        ("/files/big.bin", "application/octet-stream"),
    ])
    func contentTypesFollowTheExtension(_ target: String, _ type: String) async throws {
        try await withStaticSite { harness, _, _ in
            let answer = try await send("HEAD", target, over: harness)
            #expect(answer.status == 200)
            #expect(answer.headers["Content-Type"] == type)
        }
    }

    @Test func foldersAnswerWithTheirIndexAndAreRedirectedToTheSlashForm() async throws {
        try await withStaticSite { harness, _, _ in
            var answer = try await get("/files/", over: harness)
            #expect(answer.status == 200 && text(answer.bodyBytes) == "<p>home</p>\n")
            #expect(answer.headers["Content-Type"] == "text/html; charset=utf-8")
            answer = try await get("/files/sub/", over: harness)
            #expect(answer.status == 200 && text(answer.bodyBytes) == "<p>sub</p>\n")

            answer = try await get("/files", over: harness)
            #expect(answer.status == 301 && answer.headers["Location"] == "/files/")
            answer = try await get("/files/sub?x=1", over: harness)
            #expect(answer.status == 301 && answer.headers["Location"] == "/files/sub/?x=1")

            // No index and no listing; a file is not a folder.
            #expect(try await get("/files/empty/", over: harness).status == 404)
            #expect(try await get("/files/hello.txt/", over: harness).status == 404)
            #expect(try await get("/files/missing.txt", over: harness).status == 404)
        }
    }

    @Test func anEndpointWithAMoreSpecificPathTakesItsRequests() async throws {
        try await withStaticSite { harness, site, _ in
            // The route goes to the function (cat, which prints no CGI head: 502), not to a file.
            mkdir(site.root + "/api", 0o755)
            write(site.root + "/api/x", "not this")
            let answer = try await get("/files/api/x", over: harness)
            #expect(answer.status == 502 && !text(answer.bodyBytes).contains("not this"))
            #expect(try await get("/files/api/", over: harness).status == 404)
        }
    }

    // MARK: Staying inside the root

    @Test(arguments: [
        "/files/../secret.txt", "/files/%2e%2e/secret.txt", "/files/%2E%2E/secret.txt", "/files/.%2e/secret.txt",
        "/files/sub/..%2f..%2fsecret.txt", "/files/sub%2f..%2f..%2fsecret.txt", "/files/hello.txt%00.png",
        "/files//secret.txt", "/files/./hello.txt", "/files/%zz", "/files/sub/../../secret.txt",
    ])
    func traversalIsRefused(_ target: String) async throws {
        try await withStaticSite { harness, _, _ in
            let answer = try await get(target, over: harness)
            #expect(answer.status == 400, "\(target): \(answer.status) \(text(answer.bodyBytes))")
            #expect(!text(answer.bodyBytes).contains("secret"))
        }
    }

    @Test func linksLeadingOutsideTheRootAre404AndLinksInsideAreServed() async throws {
        try await withStaticSite { harness, site, _ in
            let inside = try await get("/files/link-in", over: harness)
            #expect(inside.status == 200 && text(inside.bodyBytes) == "hello, world\n")
            for target in ["/files/link-out", "/files/dir-out/secret.txt", "/files/dir-out/"] {
                let answer = try await get(target, over: harness)
                #expect(answer.status == 404, "\(target)")
                #expect(!text(answer.bodyBytes).contains("secret"))
            }
            // A cached file replaced by a link to the outside is not served from the cache.
            #expect(try await get("/files/style.css", over: harness).status == 200)
            unlink(site.root + "/style.css")
            symlink("../secret.txt", site.root + "/style.css")
            let swapped = try await get("/files/style.css", over: harness)
            #expect(swapped.status == 404 && !text(swapped.bodyBytes).contains("secret"))
        }
    }

    @Test func aChangedFileIsReadAgain() async throws {
        try await withStaticSite { harness, site, built in
            #expect(text(try await get("/files/hello.txt", over: harness).bodyBytes) == "hello, world\n")
            let files = try #require(built.services[EntryID("app:web")!]?.statics[EntryID("app:files")!])
            #expect(files.cacheLoad.files == 1)
            write(site.root + "/hello.txt", "changed\n")
            #expect(text(try await get("/files/hello.txt", over: harness).bodyBytes) == "changed\n")
            // A folder's cached answer goes when its index file does.
            #expect(text(try await get("/files/sub/", over: harness).bodyBytes) == "<p>sub</p>\n")
            unlink(site.root + "/sub/index.html")
            #expect(try await get("/files/sub/", over: harness).status == 404)
        }
    }

    // MARK: Conditions and ranges

    @Test func ifNoneMatchAndIfModifiedSinceGive304() async throws {
        try await withStaticSite { harness, _, _ in
            let first = try await get("/files/hello.txt", over: harness)
            let etag = try #require(first.headers["ETag"])
            let modified = try #require(first.headers["Last-Modified"])
            for condition in ["If-None-Match: \(etag)", "If-None-Match: \"other\", W/\(etag)", "If-None-Match: *",
                              "If-Modified-Since: \(modified)"] {
                let answer = try await get("/files/hello.txt", [condition], over: harness)
                #expect(answer.status == 304, "\(condition)")
                #expect(answer.bodyBytes.isEmpty && answer.headers["ETag"] == etag)
            }
            for conditions in [["If-None-Match: \"other\""], ["If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT"],
                               // If-None-Match decides when both are there.
                               ["If-None-Match: \"other\"", "If-Modified-Since: \(modified)"]] {
                let answer = try await get("/files/hello.txt", conditions, over: harness)
                #expect(answer.status == 200 && text(answer.bodyBytes) == "hello, world\n", "\(conditions)")
            }
        }
    }

    @Test func oneRangeIs206AndOnePastTheEndIs416() async throws {
        try await withStaticSite { harness, _, _ in
            let cases: [(String, Int, String, String?)] = [
                ("bytes=0-4", 206, "hello", "bytes 0-4/13"),
                ("bytes=7-", 206, "world\n", "bytes 7-12/13"),
                ("bytes=-6", 206, "world\n", "bytes 7-12/13"),
                ("bytes=7-1000", 206, "world\n", "bytes 7-12/13"),
                ("bytes=13-", 416, "", "bytes */13"),
                ("bytes=-0", 416, "", "bytes */13"),
                ("bytes=0-1, 4-5", 200, "hello, world\n", nil),  // several ranges: the whole file
                ("bytes=5-2", 200, "hello, world\n", nil),  // malformed: ignored
                ("lines=1-2", 200, "hello, world\n", nil),
            ]
            for (range, status, body, contentRange) in cases {
                let answer = try await get("/files/hello.txt", ["Range: \(range)"], over: harness)
                #expect(answer.status == status, "\(range)")
                if status != 416 { #expect(text(answer.bodyBytes) == body, "\(range)") }
                #expect(answer.headers["Content-Range"] == contentRange, "\(range)")
            }
            let etag = try #require(try await get("/files/hello.txt", over: harness).headers["ETag"])
            let matching = try await get("/files/hello.txt", ["Range: bytes=0-4", "If-Range: \(etag)"], over: harness)
            #expect(matching.status == 206 && text(matching.bodyBytes) == "hello")
            let stale = try await get("/files/hello.txt", ["Range: bytes=0-4", "If-Range: \"old\""], over: harness)
            #expect(stale.status == 200 && text(stale.bodyBytes) == "hello, world\n")
        }
    }

    @Test func aLargeFileIsStreamedWholeAndByRange() async throws {
        try await withStaticSite { harness, _, built in
            let whole = try await get("/files/big.bin", over: harness)
            #expect(whole.status == 200)
            #expect(whole.headers["Content-Length"] == String(bigContent.count) && whole.headers["Transfer-Encoding"] == nil)
            #expect(whole.bodyBytes.count == bigContent.count && whole.bodyBytes == bigContent)
            // Across chunk boundaries.
            let first = 65_000, last = 200_000
            let part = try await get("/files/big.bin", ["Range: bytes=\(first)-\(last)"], over: harness)
            #expect(part.status == 206)
            #expect(part.headers["Content-Range"] == "bytes \(first)-\(last)/\(bigContent.count)")
            #expect(part.bodyBytes == Array(bigContent[first...last]))
            let files = try #require(built.services[EntryID("app:web")!]?.statics[EntryID("app:files")!])
            #expect(files.cacheLoad.bytes == 0, "a large file is not cached")
        }
    }

    @Test func aClientLeavingMidStreamClosesTheFile() async throws {
        try await withStaticSite { harness, site, _ in
            let path = try #require(StaticFiles.realPath(site.root + "/big.bin"))
            let channel = try await harness.connect()
            let answer = try await HTTPClient.stream(HTTPRequest(method: "GET", target: "/files/big.bin"), over: channel)
            var body = answer.body.makeAsyncIterator()
            let start = try await read(100_000, from: &body)
            #expect(answer.head.status == 200 && start == Array(bigContent.prefix(start.count)))
            #expect(Self.openCount(of: path) == 1, "the file is open while it streams")
            await channel.close()
            // Nothing announces the close to a test; it is polled for, within a bound.
            let deadline = ContinuousClock.now + .seconds(10)
            while Self.openCount(of: path) > 0 && ContinuousClock.now < deadline { try await harness.loop.sleep(for: .milliseconds(10)) }
            #expect(Self.openCount(of: path) == 0, "the file is closed once the client has gone")
        }
    }

    /// How many descriptors of this process are open on `path`.
    static func openCount(of path: String) -> Int {
        (listDirectory("/proc/self/fd") ?? []).filter { name in
            var buffer = [CChar](repeating: 0, count: 4097)
            let count = readlink("/proc/self/fd/" + name, &buffer, 4096)
            return count > 0 && String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) == path
        }.count
    }

    // MARK: Pure parts

    @Test func byteRangesAgainstASize() {
        #expect(StaticFiles.byteRange("bytes=0-0", size: 1) == .part(0, 0))
        #expect(StaticFiles.byteRange("bytes=-5", size: 3) == .part(0, 2))
        #expect(StaticFiles.byteRange("bytes=-1", size: 0) == .unsatisfiable)
        #expect(StaticFiles.byteRange("bytes=0-", size: 0) == .unsatisfiable)
        #expect(StaticFiles.byteRange("bytes=99999999999999999999999-", size: 10) == .unsatisfiable)
        #expect(StaticFiles.byteRange("bytes=a-b", size: 10) == .whole)
        #expect(StaticFiles.byteRange("bytes=-", size: 10) == .whole)
    }

    @Test func httpDatesInTheThreeForms() {
        let expected = 784_111_777
        #expect(StaticFiles.parseHTTPDate("Sun, 06 Nov 1994 08:49:37 GMT") == expected)
        #expect(StaticFiles.parseHTTPDate("Sunday, 06-Nov-94 08:49:37 GMT") == expected)
        #expect(StaticFiles.parseHTTPDate("Sun Nov  6 08:49:37 1994") == expected)
        #expect(StaticFiles.parseHTTPDate("yesterday") == nil)
        #expect(StaticFiles.parseHTTPDate("Sun, 36 Nov 1994 08:49:37 GMT") == nil)
    }

    @Test func relativePathsAreDecodedPerSegment() {
        #expect(StaticFiles.relativePath("/files/a%20b/c.txt", prefix: "/files") == .relative("a b/c.txt"))
        #expect(StaticFiles.relativePath("/files/sub/", prefix: "/files") == .relative("sub/"))
        #expect(StaticFiles.relativePath("/files/", prefix: "/files") == .relative(""))
        #expect(StaticFiles.relativePath("/files", prefix: "/files") == .mountWithoutSlash)
        #expect(StaticFiles.relativePath("/", prefix: "/") == .relative(""))
        #expect(StaticFiles.relativePath("/x/y", prefix: "/") == .relative("x/y"))
        #expect(StaticFiles.relativePath("/files/%ff", prefix: "/files") == .bad)
    }
}

@Suite struct StaticKindTests {
    private func entries(_ yaml: String) -> [Entry] {
        let file = RegistryFile.parse("namespace: app\nentries:\n" + yaml, path: "web/site.yaml")
        #expect(file.errors.isEmpty, "\(file.errors)")
        return file.entries
    }

    @Test func aDefinitionWithItsRootResolvedAgainstTheDeclaringFile() throws {
        let folder = try #require(makeTemporaryDirectory("roost-static-kind"))
        defer { removeTree(folder) }
        mkdir(folder + "/web", 0o755)
        mkdir(folder + "/web/public", 0o755)
        let kind = StaticKind(registryRoot: folder)
        let entry = entries("""
              - {name: assets, kind: http.static, prefix: /assets/, root: public, index: [index.htm, default.html], service: main, host: '*.example.com'}
            """)[0]
        #expect(kind.validate(entry).isEmpty, "\(kind.validate(entry))")
        let definition = try #require(kind.definition(of: entry))
        #expect(definition.prefix == "/assets" && definition.root == folder + "/web/public")
        #expect(definition.index == ["index.htm", "default.html"] && definition.service == "main")
        #expect(definition.host?.description == "*.example.com")
        #expect(kind.references(of: entry).map(\.field) == ["service"])
        #expect(definition.routes(location: nil).map(\.path.description) == ["/assets", "/assets/*"])

        let plain = try #require(kind.definition(of: entries("  - {name: all, kind: http.static, prefix: /, root: public}\n")[0]))
        #expect(plain.index == ["index.html"])
        #expect(plain.routes(location: nil).map(\.path.description) == ["/*"])
        #expect(plain.routes(location: nil).first?.methods == ["GET", "HEAD"])
    }

    @Test(arguments: [
        ("{name: s, kind: http.static, root: /tmp}", "'prefix' is required"),
        ("{name: s, kind: http.static, prefix: /a}", "'root' is required"),
        ("{name: s, kind: http.static, prefix: a, root: /tmp}", "'prefix'"),
        ("{name: s, kind: http.static, prefix: '/a/:b', root: /tmp}", "'prefix'"),
        ("{name: s, kind: http.static, prefix: '/a/*', root: /tmp}", "'prefix'"),
        ("{name: s, kind: http.static, prefix: '/a//b', root: /tmp}", "'prefix'"),
        ("{name: s, kind: http.static, prefix: '/a/../b', root: /tmp}", "'prefix'"),
        ("{name: s, kind: http.static, prefix: '/a%20b', root: /tmp}", "'prefix'"),
        ("{name: s, kind: http.static, prefix: /a, root: /nonexistent-roost-folder}", "does not exist"),
        ("{name: s, kind: http.static, prefix: /a, root: /etc/hostname}", "is not a folder"),
        ("{name: s, kind: http.static, prefix: /a, root: /tmp, index: ../x}", "'index'"),
        ("{name: s, kind: http.static, prefix: /a, root: /tmp, index: []}", "'index'"),
        ("{name: s, kind: http.static, prefix: /a, root: /tmp, host: 'a b'}", "'host'"),
        ("{name: s, kind: http.static, prefix: /a, root: /tmp, folder: /tmp}", "unknown field"),
    ])
    func badFieldsAreErrors(_ yaml: String, _ message: String) {
        let errors = StaticKind().validate(entries("  - " + yaml + "\n")[0])
        #expect(errors.contains { $0.description.contains(message) }, "\(errors)")
    }

    @Test func aMountAndAnEndpointForTheSameRequestsAreRefusedWithBothPlaces() throws {
        let all = entries("""
              - {name: web, kind: http.service, listen: '127.0.0.1:1'}
              - {name: f, kind: swiftlet.function, exec: cat}
              - {name: a-route, kind: http.endpoint, method: GET, path: '/assets/*', func: f}
              - {name: b-route, kind: http.endpoint, method: POST, path: '/assets/*', func: f}
              - {name: c-route, kind: http.endpoint, path: '/assets/:name', func: f}
              - {name: d-route, kind: http.endpoint, path: '/hello/:name', func: f}
              - {name: s, kind: http.static, prefix: /assets, root: /tmp}
              - {name: t, kind: http.static, prefix: /, root: /tmp}
            """)
        let errors = Site.build(from: Dictionary(uniqueKeysWithValues: all.map { ($0.id, $0) }), registryRoot: nil).1
        // Only the GET endpoint of the same shape conflicts: POST is not the mount's, and
        // `:name` outranks `*`; the mount at / is below every other route.
        #expect(errors.count == 1, "\(errors)")
        let description = errors.first?.description ?? ""
        #expect(description.contains("app:a-route (/assets/*)") && description.contains("app:s (/assets/*)"))
        #expect(description.contains("web/site.yaml:5:"), "the endpoint's place")
        #expect(description.contains("web/site.yaml:9:"), "the mount's place")
    }

    @Test func aMountNeedsItsServiceWhenThereAreSeveral() {
        let all = entries("""
              - {name: one, kind: http.service, listen: '127.0.0.1:1'}
              - {name: two, kind: http.service, listen: '127.0.0.1:2'}
              - {name: s, kind: http.static, prefix: /a, root: /tmp}
              - {name: t, kind: http.static, prefix: /a, root: /tmp, service: nowhere}
              - {name: u, kind: http.static, prefix: /a, root: /tmp, service: two}
            """)
        let (site, errors) = Site.build(from: Dictionary(uniqueKeysWithValues: all.map { ($0.id, $0) }), registryRoot: nil)
        #expect(errors.map(\.description).sorted() == [
            "web/site.yaml:5:5: app:s: 'service' is needed: there are 2 http.service entries",
            "web/site.yaml:6:58: app:t: 'service': 'nowhere' is not an http.service",
        ])
        #expect(site.services[EntryID("app:two")!]?.statics.keys.map(\.description) == ["app:u"])
    }

    // MARK: What a file system can do meanwhile

    private static func files(root: String) throws -> StaticFiles {
        try #require(StaticFiles(StaticDefinition(id: EntryID("app:files")!, prefix: "/files", root: root, index: ["index.html"])))
    }

    /// A name that is the same characters as the root's but other bytes is another folder: a link
    /// to it leads outside the root.
    @Test func aLinkToAUnicodeEquivalentSiblingOfTheRootIs404() throws {
        let folder = try #require(makeTemporaryDirectory())
        defer { removeTree(folder) }
        let root = folder + "/cafe\u{301}"          // e + combining acute
        let sibling = folder + "/caf\u{e9}2"        // precomposed é
        #expect(mkdir(root, 0o755) == 0 && mkdir(sibling, 0o755) == 0)
        let fd = open(sibling + "/secret.txt", O_CREAT | O_WRONLY, 0o644)
        _ = write(fd, "SECRET", 6)
        close(fd)
        #expect(symlink(sibling + "/secret.txt", root + "/link") == 0)
        let files = try Self.files(root: root)
        let answer = files.respond(to: HTTPRequest(method: "GET", target: "/files/link"))
        #expect(answer.status == 404)
        #expect(!String(decoding: answer.bodyBytes, as: UTF8.self).contains("SECRET"))
    }

    /// sysfs files say 4096 bytes and hold fewer: a file that reads short of its size is not
    /// answered with the size it claimed (that took the host down).
    @Test func aFileThatReadsShortOfItsSizeIsNotServedAsThatSize() throws {
        let files = try Self.files(root: "/sys/kernel")
        var info = stat()
        try #require(stat("/sys/kernel/uevent_seqnum", &info) == 0 && info.st_size == 4096, "sysfs reports its page size")
        for method in ["GET", "HEAD"] {
            let answer = files.respond(to: HTTPRequest(method: method, target: "/files/uevent_seqnum", headers: ["Range": "bytes=0-100"]))
            #expect(answer.status == 404)
        }
    }
}
