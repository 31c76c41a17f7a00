import Core
import Testing

@Suite struct EnvironmentBlockTests {
    /// The strings a program would find in its `environ`.
    private func strings(_ block: EnvironmentBlock) -> [String] {
        block.withUnsafeEnvironment { pointers in
            var out: [String] = []
            var i = 0
            while let entry = pointers[i] {
                out.append(String(cString: entry))
                i += 1
            }
            return out
        }
    }

    @Test func entriesKeepTheirOrderAndTheFirstValueOfANameCounts() {
        var block = EnvironmentBlock()
        let added = [block.add("QUERY_STRING", "a=1"), block.add("EMPTY", ""), block.add("QUERY_STRING", "forged"),
                     block.add(Array("HTTP_X".utf8), "v=w")]
        #expect(added == [true, true, false, true])
        #expect(strings(block) == ["QUERY_STRING=a=1", "EMPTY=", "HTTP_X=v=w"])
        #expect(block.count == 3)
        #expect(block.value(of: "QUERY_STRING") == "a=1" && block.value(of: "EMPTY") == "" && block.value(of: "QUERY") == nil)
        #expect(block.variables == ["QUERY_STRING": "a=1", "EMPTY": "", "HTTP_X": "v=w"])
    }

    @Test func anotherBlockFillsOnlyTheNamesThatAreMissing() {
        var request = EnvironmentBlock()
        request.add("PATH_INFO", "/x")
        request.add("QUERY_STRING", "")
        let function = EnvironmentBlock(["QUERY_STRING": "forged", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"])
        request.add(missingFrom: function)
        #expect(strings(request) == ["PATH_INFO=/x", "QUERY_STRING=", "LANG=C.UTF-8", "PATH=/usr/bin:/bin"])
    }

    /// Past a few dozen names they are found by hashing, not by a scan: the same answers.
    @Test func manyNamesKeepTheirFirstValues() {
        var block = EnvironmentBlock()
        for i in 0..<1000 { block.add("V\(i)", "first \(i)") }
        let again = (0..<1000).filter { block.add("V\($0)", "second") }
        #expect(again.isEmpty && block.count == 1000)
        #expect(block.value(of: "V0") == "first 0" && block.value(of: "V999") == "first 999" && block.value(of: "V1000") == nil)
        var other = EnvironmentBlock()
        other.add("V5", "other")
        other.add(missingFrom: block)
        #expect(other.count == 1000 && other.value(of: "V5") == "other" && other.value(of: "V6") == "first 6")
        #expect(strings(other).prefix(2) == ["V5=other", "V0=first 0"])
    }

    @Test func aDictionaryIsLaidOutSortedAndAnEmptyBlockIsJustTheEnd() {
        #expect(strings(EnvironmentBlock(["B": "2", "A": "1", "Ä": "3"])) == ["A=1", "B=2", "Ä=3"])
        #expect(strings(EnvironmentBlock()).isEmpty)
        #expect(EnvironmentBlock().withUnsafeEnvironment { $0[0] == nil })
    }
}
