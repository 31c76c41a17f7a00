import Core
import Logging
import Registry

#if canImport(Glibc)
import Glibc
#endif

/// Keeps the registry in step with its folder: applies it at boot, again after every burst of
/// file changes (one libuv watcher per folder, new folders picked up, removed ones dropped), on
/// SIGHUP, and when an admin asks.
///
/// Debouncing: the first change of a burst starts a wait that ends once the folder has been quiet
/// for `quiet` (or at the latest after `maxDelay`), then the folder is read and applied once.
/// Changes seen while an apply runs lead to one more read afterwards. A read that finds the
/// folder as it was makes no version. A folder that became invalid is rejected: its errors are
/// logged and published (`registry.apply.rejected`) and the running version stays.
public actor RegistryReloader {
    public nonisolated let loop: EventLoop
    public nonisolated let folder: RegistryFolder
    public nonisolated let registry: RegistryService
    public nonisolated let quiet: Duration
    public nonisolated let maxDelay: Duration
    private let logger: Logger
    public nonisolated var unownedExecutor: UnownedSerialExecutor { loop.asUnownedSerialExecutor() }

    private let turns = AsyncGate()
    /// The folders the last read found.
    private var lastFolders: [String]?
    private var watchers: [String: (watcher: DirectoryWatcher, task: Task<Void, Never>)] = [:]
    private var hangups: SignalWatcher?
    private var hangupTask: Task<Void, Never>?
    private var stopped = false
    /// A burst is being waited out, or an apply is running.
    private var pending = false
    private var changedDuringApply = false
    private var lastChange: ContinuousClock.Instant?
    private var burstTask: Task<Void, Never>?

    public init(
        loop: EventLoop, folder: RegistryFolder, registry: RegistryService,
        logger: Logger, quiet: Duration = .milliseconds(5), maxDelay: Duration = .milliseconds(500)
    ) {
        self.loop = loop
        self.folder = folder
        self.registry = registry
        self.logger = logger
        self.quiet = quiet
        self.maxDelay = maxDelay
    }

    /// Reads and applies the folder now, as `context` says; logs the outcome.
    ///
    /// Reloads run one at a time, each reading and applying before the next reads, so a slower
    /// older read can never be applied over a newer one.
    public func reload(_ context: ApplyContext) async -> ApplyOutcome {
        let (outcome, folders) = await turns.withTurn {
            let folder = self.folder
            // Off the loop: reading files blocks.
            let read = await Task.detached { folder.read() }.value
            return (await registry.apply(read, from: folder, context: context), read.folders)
        }
        report(outcome, context: context)
        lastFolders = folders
        // At boot the host starts watching once the version is in (`startWatching`); a rejected
        // boot watches nothing, so its errors are reported once.
        if !stopped, context.source != .boot { await watch(folders) }
        return outcome
    }

    private func report(_ outcome: ApplyOutcome, context: ApplyContext) {
        switch outcome {
        case .committed(let version, _):
            logger.info("""
                registry version \(version.number) committed (\(context.source.rawValue)): \
                \(version.created) created, \(version.updated) updated, \(version.deleted) deleted
                """)
        case .unchanged(let number):
            logger.debug("registry unchanged at version \(number) (\(context.source.rawValue))")
        case .rejected(let errors):
            let level: Logger.Level = context.source == .boot ? .error : .warning
            for error in errors { logger.log(level: level, "\(error)") }
            let count = errors.count == 1 ? "1 problem" : "\(errors.count) problems"
            let consequence = context.source == .boot ? "" : "; the running version stays"
            logger.log(level: level, "registry folder rejected (\(context.source.rawValue)): \(count)\(consequence)")
        }
    }

    // MARK: - Watching

    /// Starts watching the folder (at its current shape) and SIGHUP.
    public func startWatching() async {
        guard !stopped else { return }
        await watch(lastFolders ?? [folder.root])
        do {
            let signals = try await SignalWatcher.watch([SIGHUP], on: loop)
            hangups = signals
            hangupTask = Task { [weak self] in
                for await _ in signals.signals {
                    guard let self else { return }
                    _ = await self.reload(ApplyContext(source: .sighup))
                }
            }
        } catch {
            logger.warning("cannot watch SIGHUP: \(error); reload the registry with 'roost registry apply'")
        }
    }

    /// Makes the set of watched folders equal `folders`; any new watcher means one more read, since
    /// a file written into a new folder before its watcher existed was seen by nobody.
    ///
    /// No folders means the root itself could not be read (removed, or being replaced): its parent
    /// is watched instead, for changes of the root's name only, so that its return is applied.
    private func watch(_ folders: [String]) async {
        var folders = folders
        var onlyNamed: String?
        if folders.isEmpty {
            let (parent, name) = Self.split(folder.root)
            folders = [parent]
            onlyNamed = name
        }
        let wanted = Set(folders)
        for (path, item) in watchers where !wanted.contains(path) {
            watchers[path] = nil
            item.task.cancel()
            await item.watcher.close()
        }
        var added = false
        for path in folders where watchers[path] == nil {
            do {
                let watcher = try await DirectoryWatcher.watch(path, on: loop)
                // Making a watcher suspends: a stop (which closed every watcher it found) or
                // another reload that watched this path may have come in between.
                if stopped || watchers[path] != nil {
                    await watcher.close()
                    if stopped { return }
                    continue
                }
                let task = Task { [weak self] in
                    for await change in watcher.changes {
                        guard let self else { return }
                        if let onlyNamed, change.name != onlyNamed { continue }
                        await self.changed()
                    }
                    // The folder went away (or the watcher closed): the next read forgets it.
                    await self?.folderGone(path, watcher: watcher)
                }
                watchers[path] = (watcher, task)
                added = true
            } catch {
                logger.warning("cannot watch registry folder \(path): \(error); changes there need 'roost registry apply'")
            }
        }
        if added, !stopped { changed() }
    }

    /// The folder holding `path`, and `path`'s own name.
    private static func split(_ path: String) -> (parent: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let parent = String(path[..<slash])
        return (parent.isEmpty ? "/" : parent, String(path[path.index(after: slash)...]))
    }

    private func folderGone(_ path: String, watcher: DirectoryWatcher) {
        guard let item = watchers[path], item.watcher === watcher else { return }
        watchers[path] = nil
        changed()
    }

    /// The set of folders watched now, for tests.
    public var watchedFolders: [String] { watchers.keys.sorted() }

    /// A change was seen: start waiting out the burst, or note it for the wait under way.
    private func changed() {
        guard !stopped else { return }
        lastChange = .now
        if pending {
            changedDuringApply = true
            return
        }
        pending = true
        changedDuringApply = false
        burstTask = Task { await self.settleAndApply() }
    }

    private func settleAndApply() async {
        let clock = ContinuousClock()
        let start = clock.now
        while !stopped {
            let quietUntil = (lastChange ?? start) + quiet
            let deadline = min(quietUntil, start + maxDelay)
            if clock.now >= deadline { break }
            do { try await loop.sleep(for: deadline - clock.now) } catch { break }
        }
        guard !stopped else { pending = false; return }
        changedDuringApply = false
        _ = await reload(ApplyContext(source: .fileChange))
        pending = false
        if changedDuringApply, !stopped { changed() }
    }

    /// Stops watching; an apply under way (from a file change or SIGHUP) finishes first.
    public func stop() async {
        stopped = true
        burstTask?.cancel()
        hangupTask?.cancel()
        await hangups?.close()
        let closing = watchers
        watchers.removeAll()
        for (_, item) in closing {
            item.task.cancel()
            await item.watcher.close()
        }
        await burstTask?.value
        // A reload SIGHUP started finishes too; the closed signal watcher ends that task's loop.
        await hangupTask?.value
    }
}
