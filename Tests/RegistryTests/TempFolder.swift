import Foundation

/// A fresh folder under /tmp (from mkdtemp) that tests fill with real files; removed on deinit.
final class TempFolder {
    let path: String

    init() {
        var template = Array("/tmp/registry-test-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        precondition(made != nil, "mkdtemp failed")
        path = String(cString: made!)
    }

    deinit {
        // Give back permissions a test took away so that the folder can be removed.
        _ = chmod(path, 0o755)
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Writes `text` at `relative`, creating the folders on the way.
    func write(_ relative: String, _ text: String) {
        writeBytes(relative, Array(text.utf8))
    }

    func writeBytes(_ relative: String, _ bytes: [UInt8]) {
        let full = path + "/" + relative
        try! FileManager.default.createDirectory(
            atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        let written = FileManager.default.createFile(atPath: full, contents: Data(bytes))
        precondition(written, "test setup: cannot write \(full)")
    }

    func makeFolder(_ relative: String) {
        try! FileManager.default.createDirectory(atPath: path + "/" + relative, withIntermediateDirectories: true)
    }
}
