import Core
import Testing

@testable import HTTPService

/// A server facing the internet gets any bytes at all: mangled copies of real requests are fed to
/// the parser and to a live server, which must answer each with a status or close, and go on
/// serving. The generator is seeded, so a failure replays.
@Suite struct MalformedInputTests {
    static let seeds: [String] = [
        "GET /a/b?x=1 HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\r\n",
        "POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello",
        "PUT /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
        "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    ]

    /// `seed`'s bytes with a few random bytes replaced, inserted or removed, or cut short.
    static func mangled(_ seed: String, _ random: inout SplitMix64) -> [UInt8] {
        var bytes = Array(seed.utf8)
        for _ in 0..<Int.random(in: 1...4, using: &random) {
            let at = Int.random(in: 0..<max(bytes.count, 1), using: &random)
            switch Int.random(in: 0..<4, using: &random) {
            case 0 where !bytes.isEmpty: bytes[at] = UInt8.random(in: 0...255, using: &random)
            case 1: bytes.insert(UInt8.random(in: 0...255, using: &random), at: min(at, bytes.count))
            case 2 where !bytes.isEmpty: bytes.remove(at: at)
            default: bytes = Array(bytes.prefix(at))
            }
        }
        return bytes
    }

    @Test func theParserTakesAnyBytesWithoutCrashing() throws {
        var random = SplitMix64(seed: 0x5EED_0001)
        var refused = 0, parsed = 0
        for round in 0..<5_000 {
            let input = Self.mangled(Self.seeds[round % Self.seeds.count], &random)
            let parser = HTTPMessageParser(kind: .request, maxBodySize: 1024)
            // Split at a random point too: the parser must not depend on where reads end.
            let cut = Int.random(in: 0...input.count, using: &random)
            do {
                for piece in [Array(input[..<cut]), Array(input[cut...])] {
                    parser.append(piece)
                    while try !parser.next().isEmpty {}
                }
                _ = try parser.finish()
                parsed += 1
            } catch {
                #expect([400, 413, 431, 505].contains(error.status), "\(error)")
                refused += 1
            }
        }
        // Both outcomes happened: the mutations were neither all harmless nor all fatal.
        #expect(refused > 100 && parsed > 100, "refused \(refused), parsed \(parsed)")
    }

    @Test func aLiveServerAnswersOrClosesOnEveryMangledRequestAndKeepsServing() async throws {
        var random = SplitMix64(seed: 0x5EED_0002)
        let inputs = (0..<200).map { Self.mangled(Self.seeds[$0 % Self.seeds.count], &random) }
        var configuration = HTTPServer.Configuration()
        configuration.headerTimeout = .milliseconds(300)
        configuration.lingerTimeout = .milliseconds(100)
        try await withServer(configuration, handler: { _ in .text("ok\n") }) { harness in
            for input in inputs {
                let channel = try await harness.connect()
                try await channel.write(input)
                try await channel.shutdownWrite()
                // Whatever came back ends (the server closes); if it is a response, its status is
                // one a server may give.
                let data = try await channel.readAll()
                await channel.close()
                let text = String(decoding: data, as: UTF8.self)
                if text.hasPrefix("HTTP/1.") {
                    let status = Int(text.dropFirst(9).prefix(3)) ?? 0
                    #expect([200, 400, 408, 413, 431, 505].contains(status), "\(text.prefix(80))")
                }
            }
            // And the server still answers a proper request.
            let answers = try await exchange("GET /still HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", with: harness)
            #expect(answers.map(\.status) == [200])
        }
    }
}
