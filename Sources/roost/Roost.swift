import ArgumentParser
import CSpawn
import Core

#if canImport(Glibc)
import Glibc
#endif

/// The `roost` command: `run` hosts swiftlets; the other commands talk to a running host.
@main
struct Roost: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "roost",
        abstract: "A host for swiftlets: small executables declared as entries in YAML files.",
        discussion: """
            `roost run` boots the host on a registry folder. Exit codes: 0 after a graceful stop, \
            1 when the host fails to boot, 2 for bad flags or unusable paths (nothing is started), \
            128+N when a second signal N cuts a graceful stop short.
            """,
        version: RoostVersion.string,
        subcommands: [
            RunCommand.self, RegistryCommand.self, EventsCommand.self, PSCommand.self, StartCommand.self, StopCommand.self,
            RestartCommand.self, LogsCommand.self, CallCommand.self, NotifyCommand.self, VersionCommand.self,
        ]
    )

    /// Parses and runs; errors in the command line exit 2 with one line on stderr.
    static func main() async {
        // One malloc arena for every thread. The host's threads (the loop, the spawn threads, the
        // small cooperative pool) allocate little and rarely at the same moment, while glibc's
        // default of an arena per thread leaves each holding the free space of its own peaks: with
        // 1,000 services that was 2 MiB more resident memory for nothing (docs/BENCHMARKS.md).
        // Small allocations still come from each thread's own cache without the arena lock.
        _ = roost_single_malloc_arena()
        let command: ParsableCommand
        do {
            command = try parseAsRoot()
        } catch {
            exitForParseError(error)
        }
        do {
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                var syncCommand = command
                try syncCommand.run()
            }
        } catch let exit as HostExit {
            Glibc.exit(exit.code)
        } catch {
            // Validation errors thrown by a command are the user's input; anything else is a failure.
            let code = exitCode(for: error)
            if code == .success || code == .validationFailure { exitForParseError(error) }
            printError("roost: \(error)")
            Glibc.exit(1)
        }
    }

    private static func exitForParseError(_ error: Error) -> Never {
        if exitCode(for: error) == .success {
            // --help, --version: the full text on stdout.
            print(fullMessage(for: error))
            Glibc.exit(0)
        }
        // One line: the parser's message may span several (e.g. the list of allowed values).
        let lines = self.message(for: error).split(separator: "\n")
            .map { $0.trimmingCharacters(in: " ") }.filter { !$0.isEmpty }
        let values = lines.filter { $0.hasPrefix("- ") }.map { String($0.dropFirst(2)) }
        let message = lines.filter { !$0.hasPrefix("- ") }.joined(separator: " ")
            + (values.isEmpty ? "" : " " + values.joined(separator: ", "))
        printError("roost: \(message) (see 'roost --help')")
        Glibc.exit(2)
    }
}

/// Ends the process with `code` after the command has said what it had to.
struct HostExit: Error {
    let code: Int32
}

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "version", abstract: "Print the version of Roost.")

    func run() {
        print("roost \(RoostVersion.string)")
    }
}

/// Raises the soft limit on open descriptors to the hard limit, as servers do: each HTTP client
/// holds a socket, and Debian's default soft limit of 1,024 would refuse the next connection long
/// before memory runs short. Returns why it could not, or nil. Children inherit the raised limit
/// unless their entry sets `limits.open_files`.
func raiseOpenFileLimit() -> String? {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
        return "getrlimit(RLIMIT_NOFILE): \(String(cString: strerror(errno)))"
    }
    // An unlimited hard limit (RLIM_INFINITY, all ones) still stops at the kernel's fs.nr_open (1,048,576 by default).
    let target = limit.rlim_max == rlim_t.max ? rlim_t(1 << 20) : limit.rlim_max
    guard limit.rlim_cur < target else { return nil }
    let soft = limit.rlim_cur
    limit.rlim_cur = target
    guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
        return "cannot raise the open-file limit from \(soft) to \(target): \(String(cString: strerror(errno)))"
    }
    return nil
}

/// Writes one line to standard error.
func printError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}

extension Substring {
    fileprivate func trimmingCharacters(in set: Character) -> String {
        String(drop { $0 == set }.reversed().drop { $0 == set }.reversed())
    }
}
