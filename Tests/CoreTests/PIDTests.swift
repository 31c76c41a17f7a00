import Testing

import Core

@Suite struct PIDTests {
    @Test func descriptionIsNodeOwnerAndPaddedLowercaseHex() {
        #expect(PID(node: "node", owner: "app:hello", serial: 31).description == "{node|app:hello|0x0001f}")
        #expect(PID(node: "n", owner: "o", serial: 1).description == "{n|o|0x00001}")
        #expect(PID(node: "n", owner: "o", serial: 0xABCDEF).description == "{n|o|0xabcdef}")
        #expect(PID(node: "n", owner: "o", serial: .max).description == "{n|o|0xffffffffffffffff}")
    }

    @Test(arguments: [
        PID(node: "node", owner: "app:hello", serial: 31),
        PID(node: "n", owner: "o", serial: 0),
        PID(node: "host-1.local", owner: "app:clock#worker 2", serial: 0x10_0000),
        PID(node: "n", owner: "", serial: .max),
    ])
    func textParsesBackToAnEqualPID(pid: PID) {
        #expect(PID(pid.description) == pid)
    }

    @Test func parsingReadsEachField() throws {
        let pid = try #require(PID("{node|app:hello|0x0001f}"))
        #expect(pid.node == "node")
        #expect(pid.owner == "app:hello")
        #expect(pid.serial == 31)
    }

    @Test(arguments: [
        "", "{}", "{||}", "node|app|0x00001", "{node|app|0x00001", "node|app|0x00001}",
        " {node|app|0x00001}", "{node|app|0x00001} ", "{node|app|00001}", "{node|app|0x}",
        "{node|app|0x1f}", "{node|app|0x0001F}", "{node|app|0x000001f}", "{node|app|0x0000g}",
        "{node|app|0x-0001}", "{node|app|x|0x00001}", "{node|app}", "{no{de|app|0x00001}",
        "{node|ap}p|0x00001}", "{node|app|0x1ffffffffffffffff}",
    ])
    func malformedTextIsRejected(text: String) {
        #expect(PID(text) == nil)
    }

    @Test func reservedCharactersInFieldsAreReplacedSoTheTextStillParses() {
        let pid = PID(node: "a|b", owner: "{app:x}", serial: 7)
        #expect(pid.node == "a_b")
        #expect(pid.owner == "_app:x_")
        #expect(PID(pid.description) == pid)
        #expect(PIDGenerator(node: "n{1}").next(owner: "o").node == "n_1_")
    }

    @Test func pidsOrderByNodeThenSerial() {
        let pids = [
            PID(node: "b", owner: "a", serial: 1),
            PID(node: "a", owner: "z", serial: 2),
            PID(node: "a", owner: "y", serial: 10),
            PID(node: "a", owner: "x", serial: 1),
        ]
        #expect(pids.sorted().map(\.description) == ["{a|x|0x00001}", "{a|z|0x00002}", "{a|y|0x0000a}", "{b|a|0x00001}"])
    }

    @Test func generatorSerialsStartAtOneAndCountUp() {
        let generator = PIDGenerator(node: "node")
        #expect(generator.node == "node")
        let first = generator.next(owner: "app:hello")
        let second = generator.next(owner: "app:clock")
        #expect(first == PID(node: "node", owner: "app:hello", serial: 1))
        #expect(second == PID(node: "node", owner: "app:clock", serial: 2))
    }

    @Test func generatorSerialsAreUniqueAcrossConcurrentTasks() async {
        let generator = PIDGenerator(node: "node")
        let tasks = 8, perTask = 10_000
        let serials = await withTaskGroup(of: [UInt64].self) { group in
            for _ in 0..<tasks {
                group.addTask { (0..<perTask).map { _ in generator.next(owner: "app:x").serial } }
            }
            return await group.reduce(into: [UInt64]()) { $0 += $1 }
        }
        #expect(serials.count == tasks * perTask)
        #expect(Set(serials).count == tasks * perTask)
        #expect(serials.min() == 1)
        #expect(serials.max() == UInt64(tasks * perTask))
    }
}
