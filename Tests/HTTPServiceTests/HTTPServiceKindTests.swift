import Core
import Registry
import Testing

@testable import HTTPService

private func entry(_ data: String) -> Entry {
    declaredEntry("web", kind: "http.service", data)
}

@Suite struct HTTPServiceKindTests {
    let kind = HTTPServiceKind()

    @Test func aFullDefinitionIsReadAndDefaultsFillTheRest() throws {
        let full = try #require(kind.definition(of: entry("""
                listen: '[::1]:9090'
                max_header: 8KiB
                max_body: 1MiB
                header_timeout: 2s
                idle_timeout: 5m
                send_timeout: 20s
                max_connections: 100
                not_found: missing

            """)))
        #expect(full.listen == SocketAddress(host: "::1", port: 9090))
        #expect(full.maxHeaderSize == 8192 && full.maxBody == 1 << 20 && full.maxConnections == 100)
        #expect(full.headerTimeout == .seconds(2) && full.idleTimeout == .seconds(300) && full.notFound == "missing")
        let configuration = full.serverConfiguration
        #expect(configuration.maxConnections == 100 && configuration.streamsBodies && configuration.sendTimeout == .seconds(20))

        let plain = try #require(kind.definition(of: entry("    listen: 127.0.0.1:8080\n")))
        #expect(plain.maxHeaderSize == 16 * 1024 && plain.maxBody == 10 << 20 && plain.maxConnections == 16_384)
        #expect(plain.headerTimeout == .seconds(10) && plain.idleTimeout == .seconds(60) && plain.notFound == nil)
        #expect(plain.sendTimeout == .seconds(60))
    }

    @Test(arguments: [
        ("    listen: example.com:80\n", "'listen'"),
        ("    listen: 127.0.0.1:8080\n    max_connections: 0\n", "'max_connections'"),
        ("    listen: 127.0.0.1:8080\n    max_connections: lots\n", "'max_connections'"),
        ("    listen: 127.0.0.1:8080\n    max_body: big\n", "'max_body'"),
        ("    listen: 127.0.0.1:8080\n    send_timeout: soon\n", "'send_timeout'"),
        ("    listen: 127.0.0.1:8080\n    send_timeout: 0\n", "'send_timeout': must be more than 0"),
        ("    listen: 127.0.0.1:8080\n    idle_timeout: 0s\n", "'idle_timeout': must be more than 0"),
        ("    listen: 127.0.0.1:8080\n    colour: red\n", "colour"),
        ("    max_body: 1MiB\n", "'listen' is required"),
    ])
    func badFieldsAreErrorsAtTheirField(_ data: String, _ mention: String) {
        let errors = kind.validate(entry(data))
        #expect(!errors.isEmpty)
        #expect(errors.contains { $0.description.contains(mention) }, "\(errors)")
    }
}
