import HTTPService
import Testing

@Suite struct ServerSentEventTests {
    private let events = [
        ServerSentEvent(data: "plain"),
        ServerSentEvent(event: "registry.version.committed", data: "{\"version\":3}", id: "3"),
        ServerSentEvent(data: "two\nlines", id: "4", retry: 1500),
        ServerSentEvent(event: "empty", data: ""),
    ]

    @Test func eventsSurviveEncodingAndParsing() {
        var parser = SSEParser()
        let parsed = parser.feed(events.flatMap { $0.encoded() })
        #expect(parsed == events)
        #expect(parser.lastEventID == "4")
    }

    @Test func eventsSplitAnywhereComeOutWhole() {
        var parser = SSEParser()
        var parsed: [ServerSentEvent] = []
        for byte in events.flatMap({ $0.encoded() }) { parsed += parser.feed([byte]) }
        #expect(parsed == events)
    }

    @Test func crlfAndCRLineEndsAndCommentsAreUnderstood() {
        var parser = SSEParser()
        // CR then LF in the next chunk is one line end, not a blank line.
        var parsed = parser.feed(Array("\u{FEFF}: hello\r\ndata:a\r".utf8))
        parsed += parser.feed(Array("\ndata: b\r\revent:x\nunknown: y\nid\n\n".utf8))
        #expect(parsed == [ServerSentEvent(data: "a\nb")])  // the x block has no data
        #expect(parser.lastEventID == "")
    }

    @Test func blockWithoutDataDispatchesNothing() {
        var parser = SSEParser()
        #expect(parser.feed(Array("event: ping\nid: 7\n\n".utf8)).isEmpty)
        #expect(parser.lastEventID == "7")
    }

    @Test func encodingDropsLineBreaksThatWouldStartFields() {
        let event = ServerSentEvent(event: "a\nb", data: "x\r\ny", id: "1\n2")
        #expect(String(decoding: event.encoded(), as: UTF8.self) == "id: 12\nevent: ab\ndata: x\ndata: y\n\n")
    }
}
