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

    @Test func validFolderPrintsASummaryAndExitsZero() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        mkdir(folder.path + "/app", 0o755)
        try write("""
            namespace: app
            entries:
              - {name: db, kind: registry.entry}
              - {name: api, kind: registry.entry, requires: db}
            """, to: folder.path + "/app/_index.yaml")
        let (status, lines) = try await roost(["registry", "validate", folder.path], on: loop)
        #expect(status == TerminationStatus(code: 0, signal: 0))
        #expect(lines == ["registry '\(folder.path)' is valid: 2 entries in 1 namespaces"])
    }

    @Test func invalidFolderPrintsEveryProblemAndExitsOne() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        let folder = try TemporaryFolder()
        defer { folder.remove() }
        mkdir(folder.path + "/app", 0o755)
        try write("""
            namespace: app
            entries:
              - {name: a, kind: registry.entry, requires: missing}
              - {name: c, kind: swiftlet.fn}
            """, to: folder.path + "/app/x.yaml")
        try write("namespace: app\nentries: [\n", to: folder.path + "/app/broken.yml")
        let (status, lines) = try await roost(["registry", "validate", folder.path], on: loop)
        #expect(status == TerminationStatus(code: 1, signal: 0))
        #expect(lines.count == 4)
        #expect(lines[0].hasPrefix("app/broken.yml:3:1: invalid YAML"))
        #expect(lines[1] == "app/x.yaml:3:37: app:a: 'requires' references app:missing, which does not exist")
        #expect(lines[2] == "app/x.yaml:4:15: app:c: unknown kind 'swiftlet.fn'")
        #expect(lines[3] == "registry '\(folder.path)' is not valid: 3 problems")
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
