import Core
import Registry
import Testing

@testable import HTTPService

private func entry(_ data: String) -> Entry {
    declaredEntry("fn", kind: "swiftlet.function", data)
}

@Suite struct FunctionKindTests {
    let kind = FunctionKind()

    @Test func aFullDefinitionIsReadAndDefaultsFillTheRest() throws {
        let full = entry("""
                exec: [/bin/sh, -c, 'echo hi']
                workdir: /tmp
                env: {MODE: test, LEVEL: 2}
                protocol: json
                timeout: 1500ms
                concurrency: 2
                queue: 0

            """)
        #expect(kind.validate(full).isEmpty, "\(kind.validate(full))")
        let definition = try #require(kind.definition(of: full))
        #expect(definition.exec == ["/bin/sh", "-c", "echo hi"])
        #expect(definition.env == ["MODE": "test", "LEVEL": "2"])
        #expect(definition.wireProtocol == .json && definition.timeout == .milliseconds(1500))
        #expect(definition.concurrency == 2 && definition.queue == 0 && definition.workdir == "/tmp")

        let plain = try #require(kind.definition(of: entry("    exec: cat\n")))
        #expect(plain.exec.first?.hasSuffix("/cat") == true)
        #expect(plain.wireProtocol == .cgi && plain.timeout == .seconds(30) && plain.concurrency == 8 && plain.queue == 64)
    }

    @Test(arguments: [
        ("    exec: /nonexistent/tool\n", "'exec'"),
        ("    exec: /etc/passwd\n", "not an executable"),
        ("    exec: cat\n    protocol: fastcgi\n", "'protocol'"),
        ("    exec: cat\n    timeout: soon\n", "'timeout'"),
        ("    exec: cat\n    concurrency: 0\n", "'concurrency'"),
        ("    exec: cat\n    queue: -1\n", "'queue'"),
        ("    exec: cat\n    colour: blue\n", "unknown field"),
        ("    source: main.swift\n", "not supported yet"),
        ("    workdir: /tmp\n", "'exec' is required"),
    ])
    func badFieldsAreErrorsAtTheirField(_ data: String, _ message: String) {
        let errors = kind.validate(entry(data))
        #expect(errors.contains { $0.description.contains(message) }, "\(errors)")
        #expect(errors.allSatisfy { $0.location?.file == "fn.yaml" && ($0.location?.line ?? 0) > 0 })
    }
}
