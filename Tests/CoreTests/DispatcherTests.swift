import Testing

import Core

private struct HandlerFailure: Error, Equatable {}

@Suite struct DispatcherTests {
    @Test func registeredHandlerReceivesTheArgumentAndReturnsItsResult() async throws {
        let dispatcher = Dispatcher()
        try dispatcher.register("echo") { argument in ["echoed": argument] }
        #expect(try await dispatcher.dispatch("echo", ["x": 1]) == ["echoed": ["x": 1]])
        #expect(try await dispatcher.dispatch("echo") == ["echoed": .null])
    }

    @Test func lookupsWorkAfterFreeze() async throws {
        let dispatcher = Dispatcher()
        try dispatcher.register("ping") { _ in "pong" }
        dispatcher.freeze()
        #expect(dispatcher.isFrozen)
        #expect(dispatcher.handler(for: "ping") != nil)
        #expect(dispatcher.handler(for: "nope") == nil)
        #expect(try await dispatcher.dispatch("ping") == "pong")
    }

    @Test func unknownCommandIsAClearError() async throws {
        let dispatcher = Dispatcher()
        try dispatcher.register("secret.admin") { _ in nil }
        dispatcher.freeze()
        let error = await #expect(throws: DispatchError.self) { try await dispatcher.dispatch("x") }
        #expect(error == DispatchError(.unknownCommand, command: "x", message: "unknown command 'x'"))
        #expect(error?.description.contains("secret") == false)
    }

    @Test func registerAfterFreezeIsRejected() throws {
        let dispatcher = Dispatcher()
        dispatcher.freeze()
        let error = #expect(throws: DispatchError.self) { try dispatcher.register("late") { _ in nil } }
        #expect(error?.code == .frozen)
        #expect(error?.command == "late")
        #expect(error?.message == "cannot register command 'late': the dispatcher is frozen")
        #expect(dispatcher.handler(for: "late") == nil)
        #expect(dispatcher.commandNames.isEmpty)
    }

    @Test func duplicateCommandIsRejectedAndKeepsTheFirstHandler() async throws {
        let dispatcher = Dispatcher()
        try dispatcher.register("ps") { _ in "first" }
        let error = #expect(throws: DispatchError.self) { try dispatcher.register("ps") { _ in "second" } }
        #expect(error?.code == .duplicateCommand)
        #expect(error?.message == "command 'ps' is already registered")
        #expect(try await dispatcher.dispatch("ps") == "first")
    }

    @Test func handlerErrorsPassThroughUnchanged() async throws {
        let dispatcher = Dispatcher()
        try dispatcher.register("fail") { _ in throw HandlerFailure() }
        await #expect(throws: HandlerFailure()) { try await dispatcher.dispatch("fail") }
    }

    @Test func commandNamesAreSorted() throws {
        let dispatcher = Dispatcher()
        for name in ["restart", "call", "ps"] { try dispatcher.register(name) { _ in nil } }
        #expect(dispatcher.commandNames == ["call", "ps", "restart"])
        dispatcher.freeze()
        #expect(dispatcher.commandNames == ["call", "ps", "restart"])
    }
}
