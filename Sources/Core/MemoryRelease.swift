import CSpawn

/// Hands memory malloc keeps after a burst back to the system. malloc keeps what was freed for
/// later allocations; after thousands of connections have come and gone that can be tens of MiB
/// the host will not need again soon.
public enum MemoryRelease {
    /// Gives back the heap's free pages; takes a few milliseconds on a large heap, so call it
    /// after a burst has ended, not per request. Returns whether any memory was given back.
    @discardableResult
    public static func returnFreeMemory() -> Bool {
        roost_trim_memory() == 1
    }
}
