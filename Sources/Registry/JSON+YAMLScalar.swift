import Core
import Yams

extension JSON {
    /// The value of a YAML scalar under the YAML 1.2 core schema.
    ///
    /// Only plain scalars are resolved: quoted and block scalars (`"1"`, `'true'`, `|`) and
    /// `!!str` / `!` stay strings. `!!int`, `!!float`, `!!bool` and `!!null` are resolved from
    /// their text like a plain scalar. Yams' own resolver is not used: it is YAML 1.1 (`yes` and
    /// `on` as booleans) and runs a regular expression per scalar.
    static func coreSchema(_ scalar: Node.Scalar) -> JSON {
        let tag = scalar.tag.description
        if tag.isEmpty {
            // libyaml tags every quoted and block scalar `!!str`, so an untagged one is plain.
            return coreSchema(plain: scalar.string)
        }
        switch tag {
        case "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:null":
            return coreSchema(plain: scalar.string)
        default:
            return .string(scalar.string)
        }
    }

    /// The value of the plain scalar `text` under the YAML 1.2 core schema.
    static func coreSchema(plain text: String) -> JSON {
        guard let first = text.utf8.first else { return .null }
        // Most values are words; only text that starts like a null, bool, or number can be one.
        switch first {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "+"), UInt8(ascii: "."),
            UInt8(ascii: "~"), UInt8(ascii: "n"), UInt8(ascii: "N"), UInt8(ascii: "t"), UInt8(ascii: "T"),
            UInt8(ascii: "f"), UInt8(ascii: "F"):
            break
        default:
            return .string(text)
        }
        switch text {
        case "~", "null", "Null", "NULL": return .null
        case "true", "True", "TRUE": return .bool(true)
        case "false", "False", "FALSE": return .bool(false)
        case ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF": return .double(.infinity)
        case "-.inf", "-.Inf", "-.INF": return .double(-.infinity)
        case ".nan", ".NaN", ".NAN": return .double(.nan)
        default: break
        }
        guard isDigit(first) || first == UInt8(ascii: "-") || first == UInt8(ascii: "+") || first == UInt8(ascii: ".")
        else { return .string(text) }
        let b = Array(text.utf8)

        if b.count > 2, b[0] == UInt8(ascii: "0") {
            if b[1] == UInt8(ascii: "x"), b[2...].allSatisfy(isHexDigit) {
                if let v = Int64(String(decoding: b[2...], as: UTF8.self), radix: 16) { return .int(v) }
                return .string(text)
            }
            if b[1] == UInt8(ascii: "o"), b[2...].allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "7") }) {
                if let v = Int64(String(decoding: b[2...], as: UTF8.self), radix: 8) { return .int(v) }
                return .string(text)
            }
        }

        // [-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
        var i = 0
        if b[i] == UInt8(ascii: "-") || b[i] == UInt8(ascii: "+") { i += 1 }
        let intStart = i
        while i < b.count, isDigit(b[i]) { i += 1 }
        let intDigits = i - intStart
        var isInteger = true
        if i < b.count, b[i] == UInt8(ascii: ".") {
            isInteger = false
            i += 1
            let fracStart = i
            while i < b.count, isDigit(b[i]) { i += 1 }
            if intDigits == 0 && i == fracStart { return .string(text) }
        } else if intDigits == 0 {
            return .string(text)
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            isInteger = false
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "-") || b[i] == UInt8(ascii: "+") { i += 1 }
            let expStart = i
            while i < b.count, isDigit(b[i]) { i += 1 }
            if i == expStart { return .string(text) }
        }
        guard i == b.count else { return .string(text) }

        if isInteger, let v = Int64(text) { return .int(v) }
        // The text matched the pattern above, so Double accepts it; an integer too large for
        // Int64 is kept as its nearest double rather than lost.
        if let d = Double(text) { return .double(d) }
        return .string(text)
    }
}

private func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }

private func isHexDigit(_ b: UInt8) -> Bool {
    isDigit(b) || (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "f")) || (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "F"))
}
