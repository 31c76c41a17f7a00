import Glibc

// Helpers the test targets share. Plain functions on purpose: nothing here blocks for long or
// starts a process, so they are safe to call on the test runner's cooperative threads.

/// A fresh, empty directory under /tmp (mkdtemp), or nil when it cannot be made.
public func makeTemporaryDirectory(_ prefix: String = "roost-test") -> String? {
    var template = Array("/tmp/\(prefix)-\(getpid())-XXXXXX".utf8CString)
    return template.withUnsafeMutableBufferPointer { buffer in
        mkdtemp(buffer.baseAddress!).map { String(cString: $0) }
    }
}

/// Removes `path` and, for a directory, everything below it. Symbolic links are removed, not
/// followed. A folder a test made unreadable is given its permissions back first.
public func removeTree(_ path: String) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    guard info.st_mode & S_IFMT == S_IFDIR else { unlink(path); return }
    if info.st_mode & 0o700 != 0o700 { chmod(path, 0o700) }
    for name in listDirectory(path) ?? [] { removeTree(path + "/" + name) }
    rmdir(path)
}

/// The names in a directory (without "." and ".."), or nil when it cannot be read.
public func listDirectory(_ path: String) -> [String]? {
    guard let directory = opendir(path) else { return nil }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafePointer(to: &entry.pointee.d_name) { raw in
            raw.withMemoryRebound(to: CChar.self, capacity: MemoryLayout.size(ofValue: entry.pointee.d_name)) {
                String(cString: $0)
            }
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}
