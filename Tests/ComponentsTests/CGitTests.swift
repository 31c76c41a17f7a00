import Core
import Glibc
import HTTPService
import Testing
import TestSupport

/// Debian's cgit: an unmodified CGI program that reads RFC 3875's variables (`SCRIPT_NAME`,
/// `PATH_INFO`, `QUERY_STRING`) and its own config from `CGIT_CONFIG`. `make test` installs it.
private let cgitProgram = "/usr/lib/cgit/cgit.cgi"
private let gitProgram = "/usr/bin/git"

/// A git repository with three commits: two on `main`, a third on the branch `feature` only.
private struct DemoRepository {
    let path: String
    var mainHead = ""
    var featureHead = ""

    /// Runs git with a fixed identity and dates (`HOME` in the folder: no user config is read).
    static func git(_ arguments: [String], in directory: String, on loop: EventLoop) async throws -> String {
        let environment = [
            "HOME": directory, "PATH": "/usr/bin:/bin", "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Ada Example", "GIT_AUTHOR_EMAIL": "ada@example.org",
            "GIT_COMMITTER_NAME": "Ada Example", "GIT_COMMITTER_EMAIL": "ada@example.org",
            "GIT_AUTHOR_DATE": "2026-01-02T03:04:05Z", "GIT_COMMITTER_DATE": "2026-01-02T03:04:05Z",
        ]
        var options = ProcessOptions([gitProgram] + arguments, environment: environment, workingDirectory: directory)
        options.stdout = .pipe
        options.stderr = .pipe
        let child = try await ChildProcess.spawn(on: loop, options)
        async let errors = child.stderr!.readAll()
        let output = String(decoding: try await child.stdout!.readAll(), as: UTF8.self)
        let errorText = String(decoding: try await errors, as: UTF8.self)
        let status = try await child.wait()
        try #require(status.code == 0 && status.signal == 0, "git \(arguments.joined(separator: " ")): \(errorText)")
        return output.trimmingNewlines
    }

    static func make(at path: String, on loop: EventLoop) async throws -> DemoRepository {
        mkdir(path, 0o755)
        var repository = DemoRepository(path: path)
        func commit(_ file: String, _ message: String) async throws {
            try writeFile(path + "/" + file, message + "\n")
            _ = try await git(["add", file], in: path, on: loop)
            _ = try await git(["commit", "-q", "-m", message], in: path, on: loop)
        }
        _ = try await git(["init", "-q", "-b", "main"], in: path, on: loop)
        try await commit("README", "Start the demo repository")
        try await commit("hello.txt", "Say hello in hello.txt")
        repository.mainHead = try await git(["rev-parse", "HEAD"], in: path, on: loop)
        _ = try await git(["checkout", "-q", "-b", "feature"], in: path, on: loop)
        try await commit("feature.txt", "Add the feature branch work")
        repository.featureHead = try await git(["rev-parse", "HEAD"], in: path, on: loop)
        _ = try await git(["checkout", "-q", "main"], in: path, on: loop)
        return repository
    }
}

private func writeFile(_ path: String, _ text: String) throws {
    let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
    try #require(fd >= 0, "cannot create \(path)")
    defer { close(fd) }
    let bytes = Array(text.utf8)
    let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
    try #require(written == bytes.count)
}

extension String {
    /// Without the line ends at its end (git ends its output with one).
    fileprivate var trimmingNewlines: String {
        var text = self
        while text.last?.isNewline == true { text.removeLast() }
        return text
    }
}


/// Unmodified CGI programs work behind an endpoint: cgit, as Debian ships it, serves a real git
/// repository through a live `roost run`.
@Suite(.timeLimit(.minutes(2))) struct CGitTests {
    static func site(port: Int, config: String) -> String {
        """
        namespace: git
        entries:
          - {name: web, kind: http.service, listen: '127.0.0.1:\(port)'}
          - name: cgit
            kind: swiftlet.function
            exec: [\(cgitProgram)]
            env: {CGIT_CONFIG: '\(config)'}
          - {name: browse, kind: http.endpoint, method: [GET, HEAD], path: '/git/*', func: cgit}
        """
    }

    func get(_ live: LiveHost, port: Int, _ target: String) async throws -> (status: Int, type: String?, body: String) {
        let channel = try await StreamChannel.connect(on: live.loop, host: "127.0.0.1", port: port)
        defer { Task { await channel.close() } }
        let response = try await HTTPClient.send(HTTPRequest(method: "GET", target: target), over: channel)
        return (response.status, response.headers["Content-Type"], String(decoding: response.bodyBytes, as: UTF8.self))
    }

    @Test func cgitServesTheRepositoryListALogAndACommitByQueryString() async throws {
        try #require(access(cgitProgram, X_OK) == 0, "\(cgitProgram) is missing: install Debian's cgit (make test does)")
        try #require(access(gitProgram, X_OK) == 0, "\(gitProgram) is missing: install Debian's git (make test does)")
        let port = try #require(freeTCPPort())
        let live = try LiveHost(files: [:])
        let root = live.folder.path
        let repository = try await DemoRepository.make(at: root + "/demo", on: live.loop)
        #expect(repository.mainHead.utf8.count == 40 && repository.featureHead.utf8.count == 40)
        // cache-size=0: every page is made for its request, nothing is written outside the folder.
        try writeFile(root + "/cgitrc", """
            cache-size=0
            virtual-root=/git/
            root-title=Roost test repositories
            repo.url=demo
            repo.path=\(repository.path)/.git
            repo.desc=the demo repository of the cgit test

            """)
        live.write("git.yaml", Self.site(port: port, config: root + "/cgitrc"))
        #expect(try await live.start())

        // The repository list: cgit's index page at the virtual root (PATH_INFO empty).
        let index = try await get(live, port: port, "/git/")
        #expect(index.status == 200)
        #expect(index.type?.hasPrefix("text/html") == true)
        #expect(index.body.contains("Roost test repositories"))
        #expect(index.body.contains("<a href='/git/demo/'>demo</a>"))
        #expect(index.body.contains("the demo repository of the cgit test"))

        // A log page (PATH_INFO /demo/log/): main's commits, newest first, and not the branch's.
        let log = try await get(live, port: port, "/git/demo/log/")
        #expect(log.status == 200)
        let newest = log.body.range(of: "Say hello in hello.txt")
        let oldest = log.body.range(of: "Start the demo repository")
        #expect(newest != nil && oldest != nil)
        if let newest, let oldest { #expect(newest.lowerBound < oldest.lowerBound) }
        #expect(log.body.contains("/git/demo/commit/?id=\(repository.mainHead)"))
        #expect(!log.body.contains("Add the feature branch work"))

        // Query strings reach cgit: the branch's log with ?h=feature, and one commit by its id.
        let branch = try await get(live, port: port, "/git/demo/log/?h=feature")
        #expect(branch.status == 200)
        #expect(branch.body.contains("Add the feature branch work"))
        #expect(branch.body.contains(repository.featureHead))
        let commit = try await get(live, port: port, "/git/demo/commit/?id=\(repository.featureHead)")
        #expect(commit.status == 200)
        #expect(commit.body.contains(repository.featureHead))
        #expect(commit.body.contains("Add the feature branch work"))
        #expect(commit.body.contains("feature.txt"))
        #expect(commit.body.contains("Ada Example"))

        // An unknown repository is cgit's own 404, passed through with its Status header.
        let missing = try await get(live, port: port, "/git/nothing-here/")
        #expect(missing.status == 404)

        #expect(await live.stop()?.code == 0)
        await live.close()
    }
}
