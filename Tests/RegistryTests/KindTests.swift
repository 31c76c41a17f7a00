import Core
import Testing
@testable import Registry

/// A kind for tests: references whatever its `target` field names.
struct LinkKind: EntryKind {
    var name = "test.link"
    func validate(_ entry: Entry) -> [RegistryError] { [] }
    func references(of entry: Entry) -> [(field: String, reference: String)] {
        entry.data["target"]?.stringValue.map { [("target", $0)] } ?? []
    }
}

/// Parses one registry file and returns its entries, failing the test on any parse error.
func entries(_ yaml: String, path: String = "app.yaml", sourceLocation: Testing.SourceLocation = #_sourceLocation) throws -> [Entry] {
    let file = RegistryFile.parse(yaml, path: path)
    #expect(file.errors.isEmpty, "\(file.errors)", sourceLocation: sourceLocation)
    return file.entries
}

@Suite struct KindTests {
    @Test func kindTableFindsKindsByName() throws {
        let table = try KindTable([RegistryEntryKind(), LinkKind()])
        #expect(table.kind(named: "registry.entry")?.name == "registry.entry")
        #expect(table.kind(named: "test.link")?.name == "test.link")
        #expect(table.kind(named: "swiftlet.service") == nil)
        #expect(table.names == ["registry.entry", "test.link"])
    }

    @Test func registeringOneKindNameTwiceIsAnError() {
        #expect(throws: RegistryError(.duplicateID, "kind 'registry.entry' is registered more than once")) {
            try KindTable([RegistryEntryKind(), LinkKind(), RegistryEntryKind()])
        }
    }

    @Test func registryEntryAcceptsAnyData() throws {
        let list = try entries("""
            namespace: app
            entries:
              - name: settings
                kind: registry.entry
                colour: blue
                limits: {cpu: 2, memory: [1, 2]}
              - name: empty
                kind: registry.entry
            """)
        #expect(list.flatMap { RegistryEntryKind().validate($0) }.isEmpty)
    }

    @Test func registryEntryRequiresIsOneIdOrAListOfIds() throws {
        let list = try entries("""
            namespace: app
            entries:
              - name: one
                kind: registry.entry
                requires: db
              - name: many
                kind: registry.entry
                requires: [db, other:cache]
              - name: none
                kind: registry.entry
                note: requires nothing
            """)
        let kind = RegistryEntryKind()
        #expect(list.flatMap { kind.validate($0) }.isEmpty)
        let references = list.map { kind.references(of: $0).map { "\($0.field)=\($0.reference)" } }
        #expect(references == [["requires=db"], ["requires=db", "requires=other:cache"], []])
    }

    @Test func registryEntryRejectsAMisshapenRequiresAtItsKey() throws {
        let list = try entries("""
            namespace: app
            entries:
              - name: odd
                kind: registry.entry
                requires: {db: yes}
              - name: mixed
                kind: registry.entry
                requires: [db, 42]
            """)
        let kind = RegistryEntryKind()
        #expect(list.flatMap { kind.validate($0) }.map(\.description) == [
            "app.yaml:5:5: app:odd: 'requires' must be an entry id or a list of entry ids",
            "app.yaml:8:5: app:mixed: 'requires' must be an entry id or a list of entry ids",
        ])
        // References stay usable on bad data: the strings are still found.
        #expect(list.map { kind.references(of: $0).count } == [0, 1])
    }
}
