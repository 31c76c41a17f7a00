extension String {
    /// The text with `pad` before it up to `width` characters (`"7".leftPadded(to: 2)` is `"07"`).
    public func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
