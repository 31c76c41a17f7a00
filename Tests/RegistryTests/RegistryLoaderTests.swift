import Core
import Foundation
import Testing
@testable import Registry

/// Loads real folders written to a fresh temporary directory.
@Suite struct RegistryLoaderTests {
    func load(_ files: [String: String]) -> LoadResult {
        let folder = TempFolder()
        for (path, text) in files { folder.write(path, text) }
        return RegistryLoader.load(root: folder.path)
    }

    func errorLines(_ result: LoadResult) -> [String] { result.errors.map(\.description) }

    // MARK: - Parsing

    @Test func loadsYamlAndYmlFilesFromNestedFoldersSortedById() throws {
        let result = load([
            "web.yaml": """
                namespace: web
                entries:
                  - name: home
                    kind: http.endpoint
                    path: /
                """,
            "app/services/api.yml": """
                version: 1
                namespace: app
                entries:
                  - name: api
                    kind: swiftlet.service
                  - name: worker
                    kind: swiftlet.service
                """,
            "app/deep/er/more.yaml": "namespace: app\nentries:\n  - {name: cron, kind: swiftlet.function}\n",
        ])
        #expect(result.errors.isEmpty)
        #expect(result.entries.map(\.id.description) == ["app:api", "app:cron", "app:worker", "web:home"])
        #expect(result.entries.map(\.location.description) == [
            "app/services/api.yml:4:5", "app/deep/er/more.yaml:3:5", "app/services/api.yml:6:5", "web.yaml:3:5",
        ])
    }

    @Test func otherKeysOfAnEntryBecomeItsDataWithTheirLocations() throws {
        let result = load([
            "app.yaml": """
                namespace: app
                entries:
                  - name: hello
                    kind: swiftlet.service
                    executable: bin/hello
                    port: 8080
                    env:
                      LEVEL: debug
                    args: [--fast, 2]
                """,
        ])
        let entry = try #require(result.entries.first)
        #expect(entry.kind == "swiftlet.service")
        #expect(entry.meta == [:])
        #expect(entry.data == ["executable": "bin/hello", "port": 8080, "env": ["LEVEL": "debug"], "args": ["--fast", 2]])
        #expect(entry.fieldLocations.mapValues(\.description) == [
            "executable": "app.yaml:5:5", "port": "app.yaml:6:5", "env": "app.yaml:7:5", "args": "app.yaml:9:5",
        ])
        #expect(entry.location(ofField: "port").description == "app.yaml:6:5")
        #expect(entry.location(ofField: "absent").description == "app.yaml:3:5")
    }

    @Test func fileMetaIsMergedUnderTheEntrysOwnMeta() throws {
        let result = load([
            "app.yaml": """
                namespace: app
                meta:
                  team: core
                  tier: 2
                entries:
                  - name: a
                    kind: registry.entry
                    meta: {tier: 1, debug: true}
                  - name: b
                    kind: registry.entry
                """,
        ])
        #expect(result.errors.isEmpty)
        #expect(result.entries.map(\.meta) == [["team": "core", "tier": 1, "debug": true], ["team": "core", "tier": 2]])
    }

    @Test func explicitDataMapIsTheEntrysData() throws {
        let result = load([
            "app.yaml": """
                namespace: app
                entries:
                  - name: settings
                    kind: registry.entry
                    data:
                      name: not the entry's name
                      limit: 5
                """,
        ])
        #expect(result.errors.isEmpty)
        let entry = try #require(result.entries.first)
        #expect(entry.id.description == "app:settings")
        #expect(entry.data == ["name": "not the entry's name", "limit": 5])
        #expect(entry.fieldLocations["limit"]?.description == "app.yaml:7:7")
    }

    @Test func entryWithoutExtraKeysHasAnEmptyDataObject() throws {
        let result = load(["a.yaml": "namespace: a\nentries:\n  - name: x\n    kind: k\n"])
        #expect(result.entries.first?.data == .object([:]))
    }

    @Test func emptyAndCommentOnlyFilesDeclareNothing() {
        let result = load([
            "empty.yaml": "",
            "comments.yml": "# nothing here yet\n   # still nothing\n",
            "no-entries.yaml": "namespace: app\n",
            "null-entries.yaml": "namespace: app\nentries:\n",
        ])
        #expect(result.errors.isEmpty)
        #expect(result.entries.isEmpty)
    }

    @Test func hiddenFilesAndFoldersAndOtherExtensionsAreSkipped() {
        let result = load([
            ".hidden.yaml": "not: [valid",
            ".git/config.yaml": "not: [valid",
            "notes.txt": "not: [valid",
            "backup.yaml~": "not: [valid",
            "ok.yaml": "namespace: a\nentries:\n  - {name: x, kind: k}\n",
        ])
        #expect(errorLines(result) == [])
        #expect(result.entries.map(\.id.description) == ["a:x"])
    }

    @Test func plainScalarsFollowTheYaml12CoreSchemaAndQuotedOnesStayStrings() throws {
        let result = load([
            "a.yaml": """
                namespace: a
                entries:
                  - name: x
                    kind: k
                    int: 1
                    quotedInt: "1"
                    singleQuotedBool: 'true'
                    negative: -12
                    hex: 0x1F
                    octal: 0o17
                    float: 1.5
                    exponent: 1e3
                    leadingDot: .5
                    infinity: -.inf
                    bool: true
                    capitalBool: False
                    yes: yes
                    tilde: ~
                    null: null
                    empty:
                    quotedNull: "null"
                    version: 1.2.3
                    taggedString: !!str 42
                    taggedInt: !!int "42"
                    huge: 123456789012345678901234
                    block: |
                      line
                    after: 1
                """,
        ])
        #expect(errorLines(result) == [])
        let data = try #require(result.entries.first?.data)
        #expect(data["int"] == .int(1))
        #expect(data["quotedInt"] == .string("1"))
        #expect(data["singleQuotedBool"] == .string("true"))
        #expect(data["negative"] == .int(-12))
        #expect(data["hex"] == .int(31))
        #expect(data["octal"] == .int(15))
        #expect(data["float"] == .double(1.5))
        #expect(data["exponent"] == .double(1000))
        #expect(data["leadingDot"] == .double(0.5))
        #expect(data["infinity"] == .double(-.infinity))
        #expect(data["bool"] == .bool(true))
        #expect(data["capitalBool"] == .bool(false))
        #expect(data["yes"] == .string("yes"))  // YAML 1.1 made this a bool; 1.2 does not
        #expect(data["tilde"] == .null)
        #expect(data["null"] == .null)
        #expect(data["empty"] == .null)
        #expect(data["quotedNull"] == .string("null"))
        #expect(data["version"] == .string("1.2.3"))
        #expect(data["taggedString"] == .string("42"))
        #expect(data["taggedInt"] == .int(42))
        #expect(data["huge"] == .double(123456789012345678901234))
        #expect(data["block"] == .string("line\n"))
    }

    @Test func numericLookingNamesAreNames() throws {
        let result = load(["7.yaml": "namespace: 2024\nentries:\n  - {name: 42, kind: k}\n"])
        #expect(result.entries.map(\.id.description) == ["2024:42"])
    }

    // MARK: - Errors, each with its exact text

    @Test func yamlSyntaxErrorReportsYamsLineAndColumn() {
        let result = load(["app/bad.yaml": "namespace: app\nentries:\n  - name: a\n    kind: [x\n"])
        #expect(errorLines(result) == [
            "app/bad.yaml:5:1: invalid YAML: did not find expected ',' or ']' (while parsing a flow sequence at 4:11)",
        ])
        #expect(result.errors.map(\.code) == [.yamlSyntax])
    }

    @Test func controlCharacterIsASyntaxErrorAtItsLineAndColumn() {
        let result = load(["a.yaml": "namespace: a\nentries: []\n# caf\u{E9} \u{1}\n"])
        #expect(errorLines(result) == ["a.yaml:3:8: invalid YAML: control characters are not allowed"])
        #expect(result.errors.map(\.code) == [.yamlSyntax])
    }

    @Test func keyRepeatedInOneMappingIsASyntaxError() {
        let result = load(["a.yaml": "namespace: a\nentries:\n  - name: x\n    kind: k\n    kind: j\n"])
        #expect(errorLines(result) == ["a.yaml:4:5: invalid YAML: key 'kind' appears more than once in this mapping"])
        #expect(result.errors.map(\.code) == [.yamlSyntax])
    }

    @Test func missingNamespaceIsReportedAtTheFilesFirstKey() {
        let result = load(["a.yaml": "# header\nentries:\n  - {name: x, kind: k}\n"])
        #expect(errorLines(result) == ["a.yaml:2:1: missing 'namespace'"])
        #expect(result.errors.map(\.code) == [.missingField])
        #expect(result.entries.isEmpty)
    }

    @Test func emptyNamespaceIsMissing() {
        let result = load(["a.yaml": "namespace:\nentries: []\n"])
        #expect(errorLines(result) == ["a.yaml:1:11: 'namespace' is empty"])
    }

    @Test func missingNameIsReportedAtTheEntry() {
        let result = load(["a.yaml": "namespace: a\nentries:\n  - kind: k\n    port: 1\n"])
        #expect(errorLines(result) == ["a.yaml:3:5: entry has no 'name'"])
        #expect(result.errors.map(\.code) == [.missingField])
    }

    @Test func missingKindIsReportedWithTheEntryID() {
        let result = load(["a.yaml": "namespace: a\nentries:\n  - name: x\n    port: 1\n"])
        #expect(errorLines(result) == ["a.yaml:3:5: a:x: missing 'kind'"])
        #expect(result.errors.map(\.code) == [.missingField])
        #expect(result.errors.first?.entry == EntryID("a:x"))
        #expect(result.entries.isEmpty)
    }

    @Test func invalidNameAndNamespaceArePointedAt() {
        let result = load([
            "a.yaml": "namespace: a\nentries:\n  - name: hello world\n    kind: k\n",
            "b.yaml": "namespace: b/c\nentries: []\n",
        ])
        #expect(errorLines(result) == [
            "a.yaml:3:11: invalid name 'hello world': use only letters, digits, '_', '.' and '-'",
            "b.yaml:1:12: invalid namespace 'b/c': use only letters, digits, '_', '.' and '-'",
        ])
        #expect(result.errors.map(\.code) == [.invalidName, .invalidName])
    }

    @Test func duplicateIDInOneFileNamesBothPlaces() {
        let result = load(["a.yaml": "namespace: a\nentries:\n  - {name: x, kind: k}\n  - {name: x, kind: j}\n"])
        #expect(errorLines(result) == ["a.yaml:4:5: a:x: duplicate id, first declared at a.yaml:3:5"])
        #expect(result.errors.map(\.code) == [.duplicateID])
        #expect(result.entries.map(\.kind) == ["k"])
    }

    @Test func duplicateIDAcrossTwoFilesNamesBothFiles() {
        let result = load([
            "one.yaml": "namespace: app\nentries:\n  - name: hello\n    kind: k\n",
            "sub/two.yaml": "namespace: app\n\nentries:\n  - kind: k\n    name: hello\n",
        ])
        #expect(errorLines(result) == ["sub/two.yaml:4:5: app:hello: duplicate id, first declared at one.yaml:3:5"])
    }

    @Test func unknownTopLevelKeyIsAnInvalidField() {
        let result = load(["a.yaml": "namespace: a\nentrys:\n  - {name: x, kind: k}\n"])
        #expect(errorLines(result) == [
            "a.yaml:2:1: unknown top-level key 'entrys' (expected version, namespace, meta, entries)",
        ])
        #expect(result.errors.map(\.code) == [.invalidField])
    }

    @Test func extraKeyNextToExplicitDataIsAnInvalidField() {
        let result = load([
            "a.yaml": "namespace: a\nentries:\n  - name: x\n    kind: k\n    data: {a: 1}\n    port: 2\n",
        ])
        #expect(errorLines(result) == ["a.yaml:6:5: a:x: 'port' is not allowed next to an explicit 'data' map"])
        #expect(result.errors.map(\.code) == [.invalidField])
        #expect(result.entries.isEmpty)
    }

    @Test func misshapenValuesAreInvalidFields() {
        let result = load([
            "a.yaml": """
                version: one
                namespace: a
                meta: [x]
                entries:
                  - just a string
                  - name: x
                    kind: {a: b}
                  - name: y
                    kind: k
                    meta: 3
                  - name: z
                    kind: k
                    data: [1]
                  - name: w
                    kind: k
                    [a, b]: 1
                """,
            "b.yaml": "namespace: b\nentries: {name: x}\n",
            "c.yaml": "- namespace: c\n",
        ])
        #expect(errorLines(result) == [
            "a.yaml:1:10: 'version' must be an integer",
            "a.yaml:3:7: 'meta' must be a mapping",
            "a.yaml:5:5: an entry must be a mapping with 'name' and 'kind'",
            "a.yaml:7:11: a:x: 'kind' must be a string",
            "a.yaml:10:11: a:y: 'meta' must be a mapping",
            "a.yaml:13:11: a:z: 'data' must be a mapping",
            "a.yaml:16:5: a:w: a key must be a plain value, not a list or mapping",
            "b.yaml:2:10: 'entries' must be a list of entries",
            "c.yaml:1:1: a registry file must be a mapping with 'namespace' and 'entries'",
        ])
        #expect(Set(result.errors.map(\.code)) == [.invalidField])
    }

    @Test func everyProblemOfTheFolderIsReportedTogetherInFileOrder() {
        let result = load([
            "z.yaml": "namespace: z\nentries:\n  - {name: ok, kind: k}\n  - {name: nokind}\n",
            "a.yaml": "namespace: a\nentries:\n  - kind: k\n  - {name: 'bad name', kind: k}\n  - {name: fine, kind: k}\n",
            "m/broken.yml": "namespace: m\nentries: [\n",
            "m/other.yaml": "namespace: z\nentries:\n  - {name: ok, kind: k}\n",
        ])
        #expect(errorLines(result) == [
            "a.yaml:3:5: entry has no 'name'",
            "a.yaml:4:12: invalid name 'bad name': use only letters, digits, '_', '.' and '-'",
            "m/broken.yml:3:1: invalid YAML: did not find expected node content (while parsing a flow node at 3:1)",
            // m/other.yaml sorts before z.yaml, so it holds the first declaration.
            "z.yaml:3:5: z:ok: duplicate id, first declared at m/other.yaml:3:5",
            "z.yaml:4:5: z:nokind: missing 'kind'",
        ])
        // Entries without a problem of their own are still there for tools that show them.
        #expect(result.entries.map(\.id.description) == ["a:fine", "z:ok"])
    }

    // MARK: - Unreadable files

    @Test func fileThatIsNotUtf8IsUnreadable() {
        let folder = TempFolder()
        folder.writeBytes("latin1.yaml", Array("namespace: caf".utf8) + [0xE9, 0x0A])
        let result = RegistryLoader.load(root: folder.path)
        #expect(errorLines(result) == ["latin1.yaml: cannot read: not UTF-8 text"])
        #expect(result.errors.map(\.code) == [.unreadableFile])
    }

    // Tests run as root here, and root reads a chmod 000 file anyway. So the honest stand-ins for
    // "cannot be read" are a link to nothing and a FIFO (which must not hang the load); the
    // chmod test runs only when not root.
    @Test func brokenLinkNamedLikeARegistryFileIsUnreadable() {
        let folder = TempFolder()
        _ = symlink(folder.path + "/nowhere.yaml", folder.path + "/gone.yaml")
        let result = RegistryLoader.load(root: folder.path)
        #expect(errorLines(result) == ["gone.yaml: cannot read: No such file or directory"])
        #expect(result.errors.map(\.code) == [.unreadableFile])
    }

    @Test func fifoNamedLikeARegistryFileIsUnreadableAndDoesNotHang() {
        let folder = TempFolder()
        _ = mkfifo(folder.path + "/pipe.yaml", 0o644)
        let result = RegistryLoader.load(root: folder.path)
        #expect(errorLines(result) == ["pipe.yaml: cannot read: not a regular file"])
    }

    @Test(.enabled(if: getuid() != 0, "root reads a chmod 000 file"))
    func fileWithoutReadPermissionIsUnreadable() {
        let folder = TempFolder()
        folder.write("secret.yaml", "namespace: a\n")
        _ = chmod(folder.path + "/secret.yaml", 0)
        let result = RegistryLoader.load(root: folder.path)
        #expect(errorLines(result) == ["secret.yaml: cannot read: Permission denied"])
    }

    @Test func folderNamedLikeAFileIsSearchedLikeAnyFolder() {
        let folder = TempFolder()
        folder.write("x.yaml/inner.yaml", "namespace: a\nentries:\n  - {name: x, kind: k}\n")
        let result = RegistryLoader.load(root: folder.path)
        #expect(errorLines(result) == [])
        #expect(result.entries.first?.location.file == "x.yaml/inner.yaml")
    }

    @Test func missingRegistryFolderIsReported() {
        let result = RegistryLoader.load(root: "/tmp/registry-test-does-not-exist")
        #expect(errorLines(result) == [
            "/tmp/registry-test-does-not-exist: cannot read the registry folder: No such file or directory",
        ])
        #expect(result.errors.map(\.code) == [.unreadableFile])
    }

    @Test func symbolicLinkLoopDoesNotRecurseForever() {
        let folder = TempFolder()
        folder.write("a/x.yaml", "namespace: a\nentries:\n  - {name: x, kind: k}\n")
        _ = symlink(folder.path + "/a", folder.path + "/a/loop")
        let result = RegistryLoader.load(root: folder.path)
        #expect(errorLines(result) == [])
        #expect(result.entries.count == 1)
    }
}
