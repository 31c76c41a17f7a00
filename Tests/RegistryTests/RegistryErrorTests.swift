import Testing
@testable import Registry

@Suite struct RegistryErrorTests {
    @Test func descriptionLeadsWithLocationThenEntry() {
        let error = RegistryError(
            .unknownKind, "unknown kind 'swiftlet.fn'", at: SourceLocation(file: "app/_index.yaml", line: 12, column: 5),
            entry: EntryID("app:hello"))
        #expect(error.description == "app/_index.yaml:12:5: app:hello: unknown kind 'swiftlet.fn'")
    }

    @Test func descriptionLeavesOutWhatIsUnknown() {
        #expect(RegistryError(.invalidField, "bad").description == "bad")
        #expect(RegistryError(.unreadableFile, "cannot read", at: SourceLocation(file: "a.yaml")).description == "a.yaml: cannot read")
    }

    @Test func errorsSortByFileLineColumnWithUnlocatedLast() {
        let errors = [
            RegistryError(.invalidField, "z"),
            RegistryError(.invalidField, "b2", at: SourceLocation(file: "b.yaml", line: 2, column: 1)),
            RegistryError(.invalidField, "a10", at: SourceLocation(file: "a.yaml", line: 10, column: 1)),
            RegistryError(.invalidField, "a2c9", at: SourceLocation(file: "a.yaml", line: 2, column: 9)),
            RegistryError(.invalidField, "a2c3", at: SourceLocation(file: "a.yaml", line: 2, column: 3)),
        ]
        #expect(errors.sorted().map(\.message) == ["a2c3", "a2c9", "a10", "b2", "z"])
    }
}
