import Testing
@testable import Registry

@Suite struct EntryIDTests {
    @Test func parsesNamespaceAndName() {
        let id = EntryID("app:hello")
        #expect(id?.namespace == "app")
        #expect(id?.name == "hello")
        #expect(id?.description == "app:hello")
    }

    @Test func relativeReferenceResolvesInTheGivenNamespace() {
        #expect(EntryID.resolve("hello", in: "app") == EntryID("app:hello"))
    }

    @Test func fullReferenceKeepsItsOwnNamespace() {
        #expect(EntryID.resolve("other:x", in: "app") == EntryID("other:x"))
    }

    @Test func namesMayUseLettersDigitsUnderscoreDotAndDash() {
        #expect(EntryID("My_app.v2-beta:svc.1_a-b") != nil)
    }

    @Test(arguments: ["", "app", ":x", "app:", "a:b:c", "app:he llo", "app:hé", "a/b:x", "app:x*"])
    func malformedIdIsRejected(_ text: String) {
        #expect(EntryID(text) == nil)
    }

    @Test(arguments: ["", "he llo", "a:b:c", "x/y"])
    func malformedReferenceIsRejected(_ reference: String) {
        #expect(EntryID.resolve(reference, in: "app") == nil)
    }

    @Test func idsOrderByNamespaceThenName() {
        let ids = ["b:a", "a.b:x", "a:z", "a:b"].map { EntryID($0)! }
        #expect(ids.sorted().map(\.description) == ["a:b", "a:z", "a.b:x", "b:a"])
    }
}
