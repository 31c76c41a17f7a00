import Core
import Testing

@Suite struct JSONEncodingTests {
    @Test func stringsAreEscapedByteForByteAndOtherTextPassesUnchanged() throws {
        let text = "a\u{1}\u{1f}\"\\\n\r\t/ é ✓ 😀\u{7f}"
        let encoded = JSON.string(text).encoded()
        #expect(encoded == #""a\u0001\u001f\"\\\n\r\t/ é ✓ 😀"# + "\u{7f}\"")
        #expect(try JSON.parse(encoded) == .string(text))
    }

    @Test func objectsHaveTheirKeysSortedAndNumbersTheirShortestForm() {
        let value: JSON = ["b": [1, 2.5, nil, true], "a": ["z": "", "y": .double(3)], "c": .double(.infinity)]
        #expect(value.encoded() == #"{"a":{"y":3,"z":""},"b":[1,2.5,null,true],"c":null}"#)
        var bytes = Array("x=".utf8)
        value.encode(into: &bytes)
        #expect(String(decoding: bytes, as: UTF8.self) == "x=" + value.encoded())
    }
}
