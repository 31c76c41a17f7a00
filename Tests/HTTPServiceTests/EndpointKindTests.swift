import Core
import Registry
import Testing

@testable import HTTPService

private func entries(_ yaml: String) -> [Entry] {
    let file = RegistryFile.parse("namespace: app\nentries:\n" + yaml, path: "site.yaml")
    #expect(file.errors.isEmpty, "\(file.errors)")
    return file.entries
}

@Suite struct EndpointKindTests {
    let kind = EndpointKind()

    @Test func aDefinitionWithItsReferences() throws {
        let entry = entries("""
              - {name: hello, kind: http.endpoint, method: [get, HEAD], path: /hello/:name, host: '*.example.com', func: greet, service: public, timeout: 2s, max_body: 1MiB}
            """)[0]
        #expect(kind.validate(entry).isEmpty, "\(kind.validate(entry))")
        let definition = try #require(kind.definition(of: entry))
        #expect(definition.methods == ["GET", "HEAD"] && definition.path.description == "/hello/:name")
        #expect(definition.host?.description == "*.example.com" && definition.function == "greet" && definition.service == "public")
        #expect(definition.timeout == .seconds(2) && definition.maxBody == 1 << 20)
        #expect(kind.references(of: entry).map(\.field) == ["func", "service"])
    }

    @Test(arguments: [
        ("{name: e, kind: http.endpoint, path: hello, func: f}", "'path'"),
        ("{name: e, kind: http.endpoint, path: '/a/*/b', func: f}", "'*' may only be the last"),
        ("{name: e, kind: http.endpoint, path: /a}", "'func' is required"),
        ("{name: e, kind: http.endpoint, func: f}", "'path' is required"),
        ("{name: e, kind: http.endpoint, path: /a, func: f, host: 'a b'}", "'host'"),
        ("{name: e, kind: http.endpoint, path: /a, func: f, method: 'GE T'}", "'method'"),
        ("{name: e, kind: http.endpoint, path: /a, func: f, max_body: lots}", "'max_body'"),
        ("{name: e, kind: http.endpoint, path: /a, func: f, verb: GET}", "unknown field"),
    ])
    func badFieldsAreErrors(_ yaml: String, _ message: String) {
        let errors = kind.validate(entries("  - " + yaml + "\n")[0])
        #expect(errors.contains { $0.description.contains(message) }, "\(errors)")
    }

    @Test func endpointsThatAnswerTheSameRequestsAreRefusedWithBothPlaces() {
        let all = entries("""
              - {name: a, kind: http.endpoint, path: /users/:id, func: f, service: main}
              - {name: b, kind: http.endpoint, path: /users/me, func: f, service: main}
              - {name: c, kind: http.endpoint, path: /users/:name, method: GET, func: f, service: main}
              - {name: d, kind: http.endpoint, path: /users/:id, func: f, service: other}
              - {name: main, kind: http.service, listen: '127.0.0.1:1'}
              - {name: other, kind: http.service, listen: '127.0.0.1:2'}
              - {name: f, kind: swiftlet.function, exec: cat}
            """)
        let errors = Site.build(from: Dictionary(uniqueKeysWithValues: all.map { ($0.id, $0) }), registryRoot: nil).1
        #expect(errors.count == 1)
        let error = errors.first
        #expect(error?.entry == EntryID("app:c"))
        #expect(error?.location?.line == 5)  // after the namespace and entries lines
        #expect(error?.description.contains("app:a (/users/:id) and app:c (/users/:name)") == true)
        #expect(error?.description.contains("declared at site.yaml:3") == true)
    }

    @Test func endpointsNamingNoServiceOrFunctionAreRefused() {
        let all = entries("""
              - {name: a, kind: http.endpoint, path: /a, func: missing}
              - {name: b, kind: http.endpoint, path: /b, func: f, service: nowhere}
              - {name: main, kind: http.service, listen: '127.0.0.1:1'}
              - {name: f, kind: swiftlet.function, exec: cat}
            """)
        let errors = Site.build(from: Dictionary(uniqueKeysWithValues: all.map { ($0.id, $0) }), registryRoot: nil).1
        #expect(errors.map(\.description).sorted() == [
            "site.yaml:3:46: app:a: 'func': 'missing' is not a swiftlet.function",
            "site.yaml:4:55: app:b: 'service': 'nowhere' is not an http.service",
        ])
    }
}
