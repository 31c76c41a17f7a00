import Testing

import Core

private let port = ContextKey<Int>("http.port")
private let name = ContextKey<String>("host.name")

@Suite struct AppContextTests {
    @Test func setValueIsReadBackWithItsType() throws {
        let context = AppContext()
        try context.set(port, 8080)
        try context.set(name, "roost")
        #expect(context.get(port) == 8080)
        #expect(context.get(name) == "roost")
        #expect(try context.require(port) == 8080)
    }

    @Test func valuesStayReadableAfterSeal() throws {
        let context = AppContext()
        try context.set(port, 8080)
        #expect(!context.isSealed)
        context.seal()
        #expect(context.isSealed)
        #expect(context.get(port) == 8080)
        #expect(try context.require(port) == 8080)
        #expect(context.get(name) == nil)
    }

    @Test func secondSetOfOneKeyIsRejectedAndKeepsTheFirstValue() throws {
        let context = AppContext()
        try context.set(port, 8080)
        let error = #expect(throws: ContextError.self) { try context.set(port, 9090) }
        #expect(error?.code == .duplicateKey)
        #expect(error?.key == "http.port")
        #expect(error?.message == "context key 'http.port' is already set")
        #expect(context.get(port) == 8080)
    }

    @Test func keyNamesCollideAcrossValueTypes() throws {
        let context = AppContext()
        try context.set(port, 8080)
        let error = #expect(throws: ContextError.self) { try context.set(ContextKey<String>("http.port"), "x") }
        #expect(error?.code == .duplicateKey)
    }

    @Test func writeAfterSealIsRejectedNamingTheKey() throws {
        let context = AppContext()
        context.seal()
        let error = #expect(throws: ContextError.self) { try context.set(name, "late") }
        #expect(error?.code == .sealed)
        #expect(error?.key == "host.name")
        #expect(error?.description == "cannot set context key 'host.name': the context is sealed")
        #expect(context.get(name) == nil)
        #expect(context.keys.isEmpty)
    }

    @Test func requireOfMissingKeyNamesIt() {
        let context = AppContext()
        let error = #expect(throws: ContextError.self) { try context.require(name) }
        #expect(error == ContextError(.missingKey, key: "host.name", message: "context key 'host.name' is not set"))
    }

    @Test func readWithTheWrongTypeFindsNothingAndRequireSaysWhy() throws {
        let context = AppContext()
        try context.set(port, 8080)
        let asString = ContextKey<String>("http.port")
        #expect(context.get(asString) == nil)
        let error = #expect(throws: ContextError.self) { try context.require(asString) }
        #expect(error?.code == .typeMismatch)
        #expect(error?.message == "context key 'http.port' holds a Int, not a String")
    }

    @Test func keysAreSortedBeforeAndAfterSeal() throws {
        let context = AppContext()
        try context.set(ContextKey<Int>("zeta"), 1)
        try context.set(ContextKey<Int>("alpha"), 2)
        try context.set(ContextKey<Int>("mid"), 3)
        #expect(context.keys == ["alpha", "mid", "zeta"])
        context.seal()
        #expect(context.keys == ["alpha", "mid", "zeta"])
    }

    @Test func sealTwiceKeepsEverything() throws {
        let context = AppContext()
        try context.set(port, 1)
        context.seal()
        context.seal()
        #expect(context.get(port) == 1)
    }

    @Test func concurrentWritersBeforeSealAllLand() async throws {
        let context = AppContext()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for writer in 0..<8 {
                group.addTask {
                    for i in 0..<100 { try context.set(ContextKey<Int>("k\(writer).\(i)"), writer * 1000 + i) }
                }
            }
            try await group.waitForAll()
        }
        context.seal()
        #expect(context.keys.count == 800)
        #expect(context.get(ContextKey<Int>("k7.99")) == 7099)
    }

    @Test func concurrentReadersAfterSealSeeEveryValue() async throws {
        let context = AppContext()
        for i in 0..<50 { try context.set(ContextKey<Int>("k\(i)"), i) }
        context.seal()
        let sums = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    var sum = 0
                    for _ in 0..<1000 { for i in 0..<50 { sum += context.get(ContextKey<Int>("k\(i)")) ?? -100_000 } }
                    return sum
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(sums == Array(repeating: 1000 * (49 * 50 / 2), count: 8))
    }
}
