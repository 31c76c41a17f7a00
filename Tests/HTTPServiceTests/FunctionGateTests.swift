import Core
import Logging
import Registry
import Testing
import TestSupport

@testable import HTTPService

#if canImport(Glibc)
import Glibc
#endif

@Suite struct FunctionGateTests {
    @Test func runsUpToTheLimitQueuesTheNextAndTurnsAwayTheRest() async throws {
        let gate = FunctionGate()
        #expect(await gate.enter(concurrency: 1, queue: 1))
        let queued = Task { await gate.enter(concurrency: 1, queue: 1) }
        while gate.load.waiting == 0 { await Task.yield() }
        // The queue is full now.
        #expect(await gate.enter(concurrency: 1, queue: 1) == false)
        gate.leave()
        #expect(await queued.value)
        #expect(gate.load.running == 1 && gate.load.waiting == 0)
        gate.leave()
        #expect(gate.load.running == 0)
    }

    @Test func aCancelledWaiterLeavesTheQueue() async throws {
        let gate = FunctionGate()
        #expect(await gate.enter(concurrency: 1, queue: 4))
        let waiter = Task { await gate.enter(concurrency: 1, queue: 4) }
        while gate.load.waiting == 0 { await Task.yield() }
        waiter.cancel()
        #expect(await waiter.value == false)
        #expect(gate.load.waiting == 0)
        gate.leave()
        #expect(gate.load.running == 0)
    }

    /// A router for a site of one function, `/bin/sh -c script`, with one place and no queue,
    /// behind `path` on the service `app:web`.
    private func onePlaceRouter(_ loop: EventLoop, path: String, root: String?, script: String) throws -> SiteRouter {
        let quoted = "'" + script.replacingOccurrences(of: "'", with: "''") + "'"
        let yaml = """
            namespace: app
            entries:
              - {name: web, kind: http.service, listen: '127.0.0.1:1'}
              - {name: run, kind: swiftlet.function, exec: [/bin/sh, -c, \(quoted)], concurrency: 1, queue: 0}
              - {name: route, kind: http.endpoint, path: '\(path)', func: run}
            """
        let router = testRouter(loop)
        router.replace(try site(fromYAML: yaml, root: root))
        return router
    }

    @Test func aBusyFunctionAnswers503WithRetryAfter() async throws {
        let folder = try #require(makeTemporaryDirectory())
        defer { removeTree(folder) }
        let loop = EventLoop()
        defer { loop.shutdown() }
        let router = try onePlaceRouter(loop, path: "/slow", root: folder, script:
            "touch \(folder)/started; while [ ! -e \(folder)/go ]; do sleep 0.02; done; printf \"Content-Type: text/plain\\n\\ndone\\n\"")
        let service = EntryID("app:web")!
        let first = Task { await router.handle(HTTPRequest(method: "GET", target: "/slow"), service: service) }
        while access(folder + "/started", F_OK) != 0 { try await loop.sleep(for: .milliseconds(10)) }
        let second = await router.handle(HTTPRequest(method: "GET", target: "/slow"), service: service)
        #expect(second.status == 503 && second.headers["Retry-After"] == "1")
        let go = open(folder + "/go", O_CREAT | O_WRONLY, 0o644)
        #expect(go >= 0)
        close(go)
        let response = await first.value
        #expect(response.status == 200)
        guard case .stream = response.body else { Issue.record("no stream"); return }
        #expect(text(await wholeBody(of: response)) == "done\n")
    }

    @Test func aLocalRedirectToTheSameFunctionFindsItsPlaceFree() async throws {
        let loop = EventLoop()
        defer { loop.shutdown() }
        // One place, no queue: the redirected request gets it only if the first run gave it back.
        let router = try onePlaceRouter(loop, path: "/hop/*", root: nil, script:
            "if [ \"$PATH_INFO\" = /there ]; then printf \"Content-Type: text/plain\\n\\narrived\\n\"; else printf \"Location: /hop/there\\n\\n\"; fi")
        let response = await router.handle(HTTPRequest(method: "GET", target: "/hop/here"), service: EntryID("app:web")!)
        #expect(response.status == 200)
        #expect(text(await wholeBody(of: response)) == "arrived\n")
    }
}
