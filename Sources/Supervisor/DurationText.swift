/// Durations as people write them in entries: `250ms`, `10s`, `5m`, `1h`, `1.5s`; `0` alone is
/// zero. Nothing else (no bare numbers, no negative values).
public enum DurationText {
    public static func parse(_ text: String) -> Duration? {
        if text == "0" { return .zero }
        let units: [(String, Double)] = [("ms", 1e-3), ("s", 1), ("m", 60), ("h", 3600)]
        for (suffix, seconds) in units where text.hasSuffix(suffix) {
            let number = text.dropLast(suffix.count)
            // `5ms` ends in "s" too: the longer suffix is tried first, and digits must remain.
            guard !number.isEmpty, number.allSatisfy({ $0.isNumber || $0 == "." }),
                let value = Double(number), value.isFinite, value >= 0
            else { continue }
            return .nanoseconds(Int64((value * seconds * 1e9).rounded()))
        }
        return nil
    }

    /// `250ms`, `10s`, `1.5s`, `5m`: short and exact enough for logs and errors.
    public static func format(_ duration: Duration) -> String {
        let ms = Double(duration.components.seconds) * 1000 + Double(duration.components.attoseconds) / 1e15
        if ms < 1000 { return String(Int64(ms.rounded())) + "ms" }
        if ms < 60_000 || ms.truncatingRemainder(dividingBy: 60_000) != 0 { return trim(ms / 1000) + "s" }
        return trim(ms / 60_000) + "m"
    }

    private static func trim(_ value: Double) -> String {
        let rounded = (value * 1000).rounded() / 1000
        return rounded == rounded.rounded() ? String(Int64(rounded)) : String(rounded)
    }
}
