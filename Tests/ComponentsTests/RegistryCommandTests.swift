import Core
import Glibc
import Testing

/// `roost registry validate`, run as a user would.
@Suite struct RegistryValidateCommandTests {
    /// Runs roost with `arguments`; returns its status and stdout lines.
    private func roost(_ arguments: [String], on loop: EventLoop) async throws -> (TerminationStatus, [String]) {
        var options = ProcessOptions([try roostExecutable()] + arguments)
        options.stdout = .pipe
        options.stderr = .pipe
        let child = try await ChildProcess.spawn(on: loop, options)
        async let errors = child.stderr!.readAll()
        let output = String(decoding: try await child.stdout!.readAll(), as: UTF8.self)
        _ = try await errors
        let lines = output.split(separator: "\n").map(String.init)
        return (try await child.wait(), lines)
    }

    private func write(_ text: String, to path: String) throws {
        let fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0o644)
        try #require(fd >= 0)
        defer { close(fd) }
        let bytes = Array(text.utf8)
        try #require(bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) } == bytes.count)
    }

    /// Writes `files` (paths relative to a fresh registry folder, under `app/`) and runs
    /// `roost registry validate` on it; returns the status, stdout lines and the folder's path.
    private func validate(_ files: [String: String]) async throws -> (TerminationStatus, [String], String) {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        mkdir(folder.path + "/app", 0o755)
        for (name, text) in files { try write(text, to: folder.path + "/app/" + name) }
        let (status, lines) = try await roost(["registry", "validate", folder.path], on: loop)
        return (status, lines, folder.path)
    }

    @Test func validFolderPrintsASummaryAndExitsZero() async throws {
        let (status, lines, path) = try await validate(["_index.yaml": """
            namespace: app
            entries:
              - {name: db, kind: registry.entry}
              - {name: api, kind: registry.entry, requires: db}
            """])
        #expect(status == TerminationStatus(code: 0, signal: 0))
        #expect(lines == ["registry '\(path)' is valid: 2 entries in 1 namespace"])
    }

    @Test func invalidFolderPrintsEveryProblemAndExitsOne() async throws {
        let (status, lines, path) = try await validate([
            "x.yaml": """
            namespace: app
            entries:
              - {name: a, kind: registry.entry, requires: missing}
              - {name: c, kind: swiftlet.fn}
            """,
            "broken.yml": "namespace: app\nentries: [\n",
        ])
        #expect(status == TerminationStatus(code: 1, signal: 0))
        #expect(lines.count == 4)
        #expect(lines[0].hasPrefix("app/broken.yml:3:1: invalid YAML"))
        #expect(lines[1] == "app/x.yaml:3:37: app:a: 'requires' references app:missing, which does not exist")
        #expect(lines[2] == "app/x.yaml:4:15: app:c: unknown kind 'swiftlet.fn'")
        #expect(lines[3] == "registry '\(path)' is not valid: 3 problems")
    }

    @Test func unreadableFolderExitsTwo() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let (status, lines) = try await roost(["registry", "validate", "/nonexistent/registry"], on: loop)
        #expect(status == TerminationStatus(code: 2, signal: 0))
        #expect(lines.isEmpty)
    }

    @Test func shippedRegistryIsValid() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        // The package root, from this file's path: Tests/ComponentsTests/<file>.
        let root = String(#filePath.split(separator: "/").dropLast(3).joined(separator: "/"))
        let (status, _) = try await roost(["registry", "validate", "/" + root + "/registry"], on: loop)
        #expect(status == TerminationStatus(code: 0, signal: 0))
    }
}
