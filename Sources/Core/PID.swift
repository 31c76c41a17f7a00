import Synchronization

/// The id of one thing the host runs (a service's process, a function call, a worker),
/// written `{node|owner|0xserial}`, e.g. `{node|app:hello|0x0001f}`.
///
/// `owner` says who or what the process is for (usually an entry id). The serial is written in
/// lowercase hex with at least five digits. Node and owner never contain `|`, `{` or `}`: the
/// initializer replaces each with `_`, so every PID's text parses back to an equal PID.
/// PIDs order by node, then serial (creation order within a node), then owner.
public struct PID: Sendable, Hashable, Comparable, CustomStringConvertible, LosslessStringConvertible {
    public let node: String
    public let owner: String
    public let serial: UInt64

    public init(node: String, owner: String, serial: UInt64) {
        self.node = PID.sanitized(node)
        self.owner = PID.sanitized(owner)
        self.serial = serial
    }

    public var description: String {
        let hex = String(serial, radix: 16)
        let padding = String(repeating: "0", count: max(0, PID.minimumDigits - hex.count))
        return "{\(node)|\(owner)|0x\(padding)\(hex)}"
    }

    /// Parses the canonical text `description` writes and nothing else: braces, exactly two bars,
    /// `0x`, and lowercase hex digits, at least five and no more leading zeros than padding needs.
    public init?(_ description: String) {
        guard description.hasPrefix("{"), description.hasSuffix("}"), description.count >= 2 else { return nil }
        let inner = description.dropFirst().dropLast()
        let fields = inner.split(separator: "|", omittingEmptySubsequences: false)
        guard fields.count == 3 else { return nil }
        let node = fields[0], owner = fields[1], serialText = fields[2]
        guard !node.contains(where: PID.isReserved), !owner.contains(where: PID.isReserved) else { return nil }

        guard serialText.hasPrefix("0x") else { return nil }
        let digits = serialText.dropFirst(2)
        guard digits.count >= PID.minimumDigits,
            digits.allSatisfy({ ("0"..."9").contains($0) || ("a"..."f").contains($0) }),
            digits.count == PID.minimumDigits || digits.first != "0",
            let serial = UInt64(digits, radix: 16)
        else { return nil }

        self.node = String(node)
        self.owner = String(owner)
        self.serial = serial
    }

    public static func < (lhs: PID, rhs: PID) -> Bool {
        (lhs.node, lhs.serial, lhs.owner) < (rhs.node, rhs.serial, rhs.owner)
    }

    static let minimumDigits = 5

    private static func isReserved(_ c: Character) -> Bool { c == "|" || c == "{" || c == "}" }

    static func sanitized(_ text: String) -> String {
        guard text.contains(where: isReserved) else { return text }
        return String(text.map { isReserved($0) ? "_" : $0 })
    }
}

/// Hands out PIDs for one node: serials start at 1 and are unique across threads (one atomic
/// increment, no lock).
public final class PIDGenerator: Sendable {
    /// The node name every PID from this generator carries (reserved characters replaced by `_`).
    public let node: String
    private let lastSerial = Atomic<UInt64>(0)

    public init(node: String) {
        self.node = PID.sanitized(node)
    }

    public func next(owner: String) -> PID {
        // Relaxed is enough: the serial only has to be unique, it publishes no other memory.
        let serial = lastSerial.wrappingAdd(1, ordering: .relaxed).newValue
        return PID(node: node, owner: owner, serial: serial)
    }
}
