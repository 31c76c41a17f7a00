import Core
import Logging
import Registry
import Synchronization
import Testing
import TestSupport

@testable import HTTPService

#if canImport(Glibc)
import Glibc
#endif

private func text(of response: HTTPResponse) async -> String {
    text(await wholeBody(of: response))
}

/// The route table is swapped whole for each version: a request is answered by the site that was
/// current when it arrived, never by a mix, and never fails because a swap happened meanwhile.
@Suite struct SiteSwapTests {
    @Test func aRequestUnderWayFinishesOnTheSiteItStartedWith() async throws {
        let folder = try #require(makeTemporaryDirectory())
        defer { removeTree(folder) }
        let loop = EventLoop()
        defer { loop.shutdown() }
        let router = testRouter(loop)
        let old = try site(fromYAML: """
            namespace: app
            entries:
              - {name: web, kind: http.service, listen: '127.0.0.1:1'}
              - name: work
                kind: swiftlet.function
                exec: [/bin/sh, -c, 'touch \(folder)/started; while [ ! -e \(folder)/go ]; do sleep 0.02; done; printf "Content-Type: text/plain\\n\\nold\\n"']
              - {name: work-route, kind: http.endpoint, path: /work, func: work}
            """, root: folder)
        let new = try site(fromYAML: """
            namespace: app
            entries:
              - {name: web, kind: http.service, listen: '127.0.0.1:1'}
              - name: other
                kind: swiftlet.function
                exec: [/bin/sh, -c, 'printf "Content-Type: text/plain\\n\\nnew\\n"']
              - {name: other-route, kind: http.endpoint, path: /other, func: other}
            """, root: folder)
        router.replace(old)
        let service = EntryID("app:web")!
        try await withHangGuard {
            let underWay = Task { await router.handle(HTTPRequest(method: "GET", target: "/work"), service: service) }
            while access(folder + "/started", F_OK) != 0 { try await loop.sleep(for: .milliseconds(10)) }
            // The version changes while the request runs: its route is gone from the new site.
            router.replace(new)
            #expect(await router.handle(HTTPRequest(method: "GET", target: "/work"), service: service).status == 404)
            let other = await router.handle(HTTPRequest(method: "GET", target: "/other"), service: service)
            #expect(await text(of: other) == "new\n")
            close(open(folder + "/go", O_CREAT | O_WRONLY, 0o644))
            let finished = await underWay.value
            #expect(finished.status == 200)
            #expect(await text(of: finished) == "old\n")
        }
    }

    @Test func swapsUnderLoadAnswerEveryRequestFromOneWholeSite() async throws {
        let folder = try #require(makeTemporaryDirectory())
        defer { removeTree(folder) }
        for name in ["a", "b"] {
            mkdir(folder + "/" + name, 0o755)
            for file in ["one.txt", "two.txt"] {
                let fd = open(folder + "/\(name)/\(file)", O_CREAT | O_WRONLY | O_TRUNC, 0o644)
                let content = Array("\(name)\n".utf8)
                _ = content.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
                close(fd)
            }
        }
        // Site A serves folder a under /files, site B folder b.
        func version(_ name: String) throws -> Site {
            try site(fromYAML: """
                namespace: app
                entries:
                  - {name: web, kind: http.service, listen: '127.0.0.1:1'}
                  - {name: files, kind: http.static, prefix: /files, root: ./\(name)}
                """, root: folder)
        }
        let a = try version("a"), b = try version("b")
        let loop = EventLoop()
        defer { loop.shutdown() }
        let router = testRouter(loop)
        router.replace(a)
        let service = EntryID("app:web")!
        try await withHangGuard {
            let done = Atomic<Bool>(false)
            let swapper = Task {
                var round = 0
                while !done.load(ordering: .acquiring) {
                    router.replace(round % 2 == 0 ? b : a)
                    round += 1
                    await Task.yield()
                }
            }
            let outcomes = await withTaskGroup(of: [String].self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        var seen: [String] = []
                        for index in 0..<100 {
                            let file = (worker + index) % 2 == 0 ? "one.txt" : "two.txt"
                            let response = await router.handle(HTTPRequest(method: "GET", target: "/files/\(file)"), service: service)
                            seen.append("\(response.status) \(await text(of: response))")
                            await Task.yield()
                        }
                        return seen
                    }
                }
                var all: [String] = []
                for await seen in group { all += seen }
                return all
            }
            done.store(true, ordering: .releasing)
            await swapper.value
            #expect(outcomes.count == 400)
            // Every answer is a whole site's: 200 with a's or b's file, never an error.
            #expect(outcomes.allSatisfy { $0 == "200 a\n" || $0 == "200 b\n" }, "\(Set(outcomes))")
            // Both versions answered some (the swaps did happen while requests ran).
            #expect(outcomes.contains("200 a\n") && outcomes.contains("200 b\n"))
        }
    }
}
