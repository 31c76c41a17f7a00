import Core
import Testing
@testable import Registry

@Suite struct ValidationTests {
    let kinds = try! KindTable([RegistryEntryKind(), LinkKind()])

    func errorLines(_ yaml: String...) throws -> [String] {
        var all: [Entry] = []
        for (i, text) in yaml.enumerated() { all += try entries(text, path: "f\(i).yaml") }
        return validate(all, kinds: kinds).map(\.description)
    }

    @Test func unknownKindIsReportedAtItsKindKey() throws {
        let lines = try errorLines("""
            namespace: app
            entries:
              - name: hello
                kind: swiftlet.fn
              - name: ok
                kind: registry.entry
            """)
        #expect(lines == ["f0.yaml:4:5: app:hello: unknown kind 'swiftlet.fn'"])
    }

    @Test func unknownKindCodeIsUnknownKind() throws {
        let list = try entries("namespace: app\nentries:\n  - {name: x, kind: nope}\n")
        #expect(validate(list, kinds: kinds).map(\.code) == [.unknownKind])
    }

    @Test func relativeAndFullReferencesToMissingEntriesNameTheMissingId() throws {
        let lines = try errorLines("""
            namespace: app
            entries:
              - name: web
                kind: registry.entry
                requires: [db, other:cache, app:db]
              - name: proxy
                kind: test.link
                target: nowhere
            """)
        #expect(lines == [
            "f0.yaml:5:5: app:web: 'requires' references app:db, which does not exist",
            "f0.yaml:5:5: app:web: 'requires' references app:db, which does not exist",
            "f0.yaml:5:5: app:web: 'requires' references other:cache, which does not exist",
            "f0.yaml:8:5: app:proxy: 'target' references app:nowhere, which does not exist",
        ])
    }

    @Test func unresolvedReferenceCodeIsUnresolvedReference() throws {
        let list = try entries("namespace: app\nentries:\n  - {name: x, kind: test.link, target: y}\n")
        #expect(validate(list, kinds: kinds).map(\.code) == [.unresolvedReference])
    }

    @Test func referenceThatIsNotAnIdIsAnInvalidField() throws {
        let list = try entries("namespace: app\nentries:\n  - {name: x, kind: test.link, target: 'a b'}\n")
        let errors = validate(list, kinds: kinds)
        #expect(errors.map(\.code) == [.invalidField])
        #expect(errors.map(\.description) == [
            "app.yaml:3:32: app:x: 'target': 'a b' is not an entry id (namespace:name or name)",
        ])
    }

    @Test func referencesResolveAcrossFilesAndNamespaces() throws {
        let lines = try errorLines(
            """
            namespace: app
            entries:
              - {name: web, kind: registry.entry, requires: [db, shared:cache]}
              - {name: db, kind: registry.entry}
            """,
            """
            namespace: shared
            entries:
              - {name: cache, kind: test.link, target: app:db}
            """)
        #expect(lines.isEmpty)
    }

    @Test func validChainPasses() throws {
        let lines = try errorLines("""
            namespace: app
            entries:
              - {name: a, kind: registry.entry, requires: b}
              - {name: b, kind: registry.entry, requires: c}
              - {name: c, kind: registry.entry}
            """)
        #expect(lines.isEmpty)
    }

    @Test func cycleOfThreeIsReportedOnceWithItsPath() throws {
        let list = try entries("""
            namespace: app
            entries:
              - name: c
                kind: registry.entry
                requires: a
              - name: b
                kind: registry.entry
                requires: c
              - name: a
                kind: registry.entry
                requires: b
            """)
        let errors = validate(list, kinds: kinds)
        #expect(errors.map(\.code) == [.referenceCycle])
        #expect(errors.map(\.description) == [
            "app.yaml:11:5: app:a: reference cycle: app:a -> app:b -> app:c -> app:a",
        ])
    }

    @Test func entryRequiringItselfIsACycle() throws {
        let lines = try errorLines("namespace: app\nentries:\n  - {name: a, kind: registry.entry, requires: a}\n")
        #expect(lines == ["f0.yaml:3:37: app:a: reference cycle: app:a -> app:a"])
    }

    @Test func separateCyclesAreEachReportedOnce() throws {
        let lines = try errorLines("""
            namespace: app
            entries:
              - {name: a, kind: registry.entry, requires: b}
              - {name: b, kind: registry.entry, requires: a}
              - {name: x, kind: test.link, target: y}
              - {name: y, kind: test.link, target: x}
              - {name: z, kind: registry.entry, requires: [a, x]}
            """)
        #expect(lines == [
            "f0.yaml:3:37: app:a: reference cycle: app:a -> app:b -> app:a",
            "f0.yaml:5:32: app:x: reference cycle: app:x -> app:y -> app:x",
        ])
    }

    @Test func cycleAcrossNamespacesUsesFullIds() throws {
        let lines = try errorLines(
            "namespace: app\nentries:\n  - {name: a, kind: registry.entry, requires: lib:b}\n",
            "namespace: lib\nentries:\n  - {name: b, kind: registry.entry, requires: app:a}\n")
        #expect(lines == ["f0.yaml:3:37: app:a: reference cycle: app:a -> lib:b -> app:a"])
    }

    @Test func allErrorsAreReportedTogetherSortedByLocation() throws {
        let lines = try errorLines(
            """
            namespace: app
            entries:
              - {name: a, kind: registry.entry, requires: [b, missing]}
              - {name: b, kind: registry.entry, requires: a}
            """,
            """
            namespace: app2
            entries:
              - {name: odd, kind: mystery}
              - {name: bad, kind: registry.entry, requires: 7}
            """)
        #expect(lines == [
            "f0.yaml:3:37: app:a: 'requires' references app:missing, which does not exist",
            "f0.yaml:3:37: app:a: reference cycle: app:a -> app:b -> app:a",
            "f1.yaml:3:17: app2:odd: unknown kind 'mystery'",
            "f1.yaml:4:39: app2:bad: 'requires' must be an entry id or a list of entry ids",
        ])
    }

    @Test func longChainDoesNotExhaustTheStack() throws {
        var yaml = "namespace: app\nentries:\n"
        for i in 0..<20_000 { yaml += "  - {name: e\(i), kind: test.link, target: e\(i + 1)}\n" }
        yaml += "  - {name: e20000, kind: test.link, target: e0}\n"
        let list = RegistryFile.parse(yaml, path: "long.yaml").entries
        let errors = validate(list, kinds: kinds)
        #expect(errors.count == 1)
        #expect(errors.first?.code == .referenceCycle)
    }
}
