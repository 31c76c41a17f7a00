import Registry
import Testing

@testable import HTTPService

private func route(_ name: String, _ path: String, methods: Set<String> = [], host: String? = nil) throws -> Route {
    Route(id: EntryID("app:\(name)")!, methods: methods, path: try RoutePattern(path),
          host: host.map { HostPattern($0)! }, location: SourceLocation(file: "routes.yaml", line: 1, column: 1))
}

private func matched(_ outcome: RouteTable.Outcome) -> (String, [String: String], String?)? {
    guard case .matched(let route, let parameters, let rest) = outcome else { return nil }
    return (route.id.name, parameters, rest)
}

@Suite struct RoutePatternTests {
    @Test func parametersAndTheRestAreMatchedAndDecoded() throws {
        let pattern = try RoutePattern("/users/:id/files/*")
        let found = try #require(pattern.match("/users/j%C3%B6rg/files/a/b%20c.txt"))
        #expect(found.parameters == ["id": "jörg"])
        #expect(found.rest == "a/b c.txt")
        #expect(pattern.match("/users/7/files")?.rest == nil)  // the rest needs its slash
        #expect(pattern.match("/users/7/files/")?.rest == "")
        #expect(pattern.match("/users//files/x") == nil)  // a parameter is never empty
        #expect(pattern.match("/users/7/other/x") == nil)
    }

    @Test func anEncodedSlashStaysInItsSegment() throws {
        let pattern = try RoutePattern("/files/:name")
        #expect(pattern.match("/files/a%2Fb")?.parameters == ["name": "a/b"])
        #expect(pattern.match("/files/a/b") == nil)
    }

    @Test func rootAndExactPaths() throws {
        #expect(try RoutePattern("/").match("/") != nil)
        #expect(try RoutePattern("/").match("/x") == nil)
        #expect(try RoutePattern("/*").match("/")?.rest == "")
        #expect(try RoutePattern("/a/b").match("/a/b") != nil)
        #expect(try RoutePattern("/a/b").match("/a/b/") == nil)
    }

    @Test(arguments: ["", "a/b", "/a/*/b", "/a*", "/:", "/:a/:a", "/a//b", "/:a-b"])
    func malformedPathsAreRefused(_ text: String) {
        #expect(throws: RoutePattern.Problem.self) { try RoutePattern(text) }
    }
}

@Suite struct RouteTableTests {
    @Test func literalBeatsParameterBeatsRest() throws {
        let table = try RouteTable([
            try route("rest", "/users/*"), try route("param", "/users/:id"), try route("exact", "/users/me"),
            try route("deep", "/users/:id/posts"),
        ])
        #expect(matched(table.route(method: "GET", host: nil, path: "/users/me"))?.0 == "exact")
        #expect(matched(table.route(method: "GET", host: nil, path: "/users/42"))?.0 == "param")
        #expect(matched(table.route(method: "GET", host: nil, path: "/users/42"))?.1 == ["id": "42"])
        #expect(matched(table.route(method: "GET", host: nil, path: "/users/42/posts"))?.0 == "deep")
        #expect(matched(table.route(method: "GET", host: nil, path: "/users/42/likes"))?.0 == "rest")
        // The first differing segment decides, whatever comes after it.
        let mixed = try RouteTable([try route("a", "/x/:p/c"), try route("b", "/x/b/:q")])
        #expect(matched(mixed.route(method: "GET", host: nil, path: "/x/b/c"))?.0 == "b")
    }

    @Test func methodsSelectAndAMissingOneIs405WithTheAllowedOnes() throws {
        let table = try RouteTable([
            try route("read", "/items/:id", methods: ["GET", "HEAD"]), try route("write", "/items/:id", methods: ["PUT"]),
        ])
        #expect(matched(table.route(method: "PUT", host: nil, path: "/items/1"))?.0 == "write")
        guard case .methodNotAllowed(let allowed) = table.route(method: "DELETE", host: nil, path: "/items/1") else {
            Issue.record("expected 405")
            return
        }
        #expect(allowed == ["GET", "HEAD", "PUT"])
        guard case .notFound = table.route(method: "GET", host: nil, path: "/nothing") else {
            Issue.record("expected 404")
            return
        }
    }

    @Test func hostsExactBeatWildcardBeatNone() throws {
        let table = try RouteTable([
            try route("any", "/"), try route("wild", "/", host: "*.example.com"), try route("api", "/", host: "api.example.com"),
        ])
        #expect(matched(table.route(method: "GET", host: "api.example.com:8080", path: "/"))?.0 == "api")
        #expect(matched(table.route(method: "GET", host: "WWW.Example.com", path: "/"))?.0 == "wild")
        #expect(matched(table.route(method: "GET", host: "a.b.example.com", path: "/"))?.0 == "wild")
        // The bare domain is not under its own wildcard.
        #expect(matched(table.route(method: "GET", host: "example.com", path: "/"))?.0 == "any")
        #expect(matched(table.route(method: "GET", host: nil, path: "/"))?.0 == "any")
    }

    @Test func endpointsNoPrecedenceTellsApartAreAConflict() throws {
        let error = #expect(throws: RouteTable.ConflictList.self) {
            try RouteTable([
                try route("a", "/users/:id"), try route("b", "/users/:name", methods: ["GET"]),
                try route("c", "/users/:id", methods: ["POST"], host: "x.org"), try route("d", "/users/me"),
            ])
        }
        let conflicts = try #require(error).conflicts
        #expect(conflicts.count == 1)
        #expect(conflicts.first.map { [$0.first.id.name, $0.second.id.name] } == ["a", "b"])
        #expect(conflicts.first?.description.contains("app:a (/users/:id) and app:b (/users/:name)") == true)
        // Different methods, or different hosts, do not conflict.
        _ = try RouteTable([try route("a", "/x", methods: ["GET"]), try route("b", "/x", methods: ["POST"])])
        _ = try RouteTable([try route("a", "/x", host: "a.org"), try route("b", "/x", host: "*.a.org"), try route("c", "/x")])
    }
}
