import Dispatch

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a registry folder: every `*.yaml` and `*.yml` file under it, recursively.
///
/// Files and folders whose names start with `.` are skipped. Files are read in sorted path
/// order, so the result (and which of two equal ids counts as the first) does not depend on
/// the order the file system lists them in. Loading never stops at the first problem.
public enum RegistryLoader {
    public static func load(root: String) -> LoadResult {
        var trimmed = root
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed.removeLast() }
        let root = trimmed
        var walk = FolderWalk(root: root)
        walk.run()
        let paths = walk.files.map(\.path).sorted()
        // Files are independent until their entries are combined, so they are read and parsed
        // on all cores; the order of `files` stays the sorted path order.
        let slots = Slots<RegistryFile>(count: paths.count)
        DispatchQueue.concurrentPerform(iterations: paths.count) { i in
            slots[i] = readAndParse(root: root, path: paths[i])
        }
        let files = slots.values()
        return LoadResult(files: files, errors: walk.errors)
    }

    static func readAndParse(root: String, path: String) -> RegistryFile {
        switch readText(root + "/" + path) {
        case .success(let text):
            return RegistryFile.parse(text, path: path)
        case .failure(let reason):
            let error = RegistryError(.unreadableFile, "cannot read: \(reason)", at: SourceLocation(file: path))
            return RegistryFile(path: path, errors: [error])
        }
    }

    /// The whole file as UTF-8 text, or why it cannot be had.
    static func readText(_ path: String) -> Result<String, ReadFailureReason> {
        // Non-blocking so that a FIFO named like a registry file cannot hang the load.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { return .failure(ReadFailureReason(errno: errno)) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { return .failure(ReadFailureReason(errno: errno)) }
        guard info.st_mode & S_IFMT == S_IFREG else { return .failure(ReadFailureReason("not a regular file")) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(info.st_size) + 1)
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { break }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(ReadFailureReason(errno: errno))
            }
            bytes.append(contentsOf: chunk[0..<n])
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return .failure(ReadFailureReason("not UTF-8 text"))
        }
        return .success(text)
    }
}

struct ReadFailureReason: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
    init(errno code: Int32) { self.description = String(cString: strerror(code)) }
}

/// Finds the registry files under a root folder, and the folders it could not read.
struct FolderWalk {
    let root: String
    /// Paths relative to `root`, unsorted, with what `stat` said of each (nil when it failed).
    var files: [(path: String, signature: FileSignature?)] = []
    /// Every folder entered, relative to `root` ("" for the root itself).
    var folders: [String] = []
    var errors: [RegistryError] = []
    /// Folders already entered, by device and inode, so a symbolic link loop ends.
    var visited: Set<[UInt64]> = []

    init(root: String) { self.root = root }

    mutating func run() {
        var info = stat()
        guard stat(root, &info) == 0 else {
            let reason = ReadFailureReason(errno: errno)
            errors.append(RegistryError(.unreadableFile, "cannot read the registry folder: \(reason)", at: SourceLocation(file: root)))
            return
        }
        guard info.st_mode & S_IFMT == S_IFDIR else {
            errors.append(RegistryError(.unreadableFile, "the registry root is not a folder", at: SourceLocation(file: root)))
            return
        }
        visit(relative: "", info: info)
    }

    mutating func visit(relative: String, info: stat) {
        guard visited.insert([UInt64(info.st_dev), UInt64(info.st_ino)]).inserted else { return }
        folders.append(relative)
        let full = relative.isEmpty ? root : root + "/" + relative
        guard let dir = opendir(full) else {
            let reason = ReadFailureReason(errno: errno)
            errors.append(RegistryError(.unreadableFile, "cannot read folder: \(reason)", at: SourceLocation(file: relative)))
            return
        }
        var names: [String] = []
        while let item = readdir(dir) {
            let name = withUnsafePointer(to: &item.pointee.d_name) {
                String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
            }
            if name.hasPrefix(".") { continue }  // also skips "." and ".."
            names.append(name)
        }
        closedir(dir)

        for name in names {
            let path = relative.isEmpty ? name : relative + "/" + name
            let isRegistryFile = name.hasSuffix(".yaml") || name.hasSuffix(".yml")
            var child = stat()
            guard stat(root + "/" + path, &child) == 0 else {
                // A broken link named like a registry file is a file that cannot be read;
                // anything else that vanished is not ours to report.
                if isRegistryFile { files.append((path, nil)) }
                continue
            }
            if child.st_mode & S_IFMT == S_IFDIR {
                visit(relative: path, info: child)
            } else if isRegistryFile {
                files.append((path, FileSignature(child)))
            }
        }
    }
}

/// What identifies one version of a file's content without reading it: device, inode, size, and
/// the modification and status-change times to the nanosecond. Any write changes the times; a
/// replace (rename over) changes the inode.
struct FileSignature: Hashable, Sendable {
    let values: [Int64]

    init(_ info: stat) {
        values = [
            Int64(bitPattern: UInt64(info.st_dev)), Int64(bitPattern: UInt64(info.st_ino)), Int64(info.st_size),
            Int64(info.st_mtim.tv_sec), Int64(info.st_mtim.tv_nsec),
            Int64(info.st_ctim.tv_sec), Int64(info.st_ctim.tv_nsec),
        ]
    }

    /// The later of the modification and status-change times, in nanoseconds since 1970.
    var newestTimeNanoseconds: Int64 {
        max(values[3] * 1_000_000_000 + values[4], values[5] * 1_000_000_000 + values[6])
    }
}

/// One result slot per parallel iteration.
///
/// `@unchecked Sendable`: each iteration writes only its own slot of memory allocated up front
/// (no Swift array, so no exclusivity check or copy on write spans the slots), and `values()`
/// runs only after `concurrentPerform` has returned, which waits for every iteration.
final class Slots<Value>: @unchecked Sendable {
    private let storage: UnsafeMutableBufferPointer<Value?>

    init(count: Int) {
        storage = .allocate(capacity: count)
        storage.initialize(repeating: nil)
    }

    deinit {
        storage.deinitialize()
        storage.deallocate()
    }

    subscript(index: Int) -> Value? {
        get { storage[index] }
        set { storage[index] = newValue }
    }

    func values() -> [Value] { storage.map { $0! } }
}
