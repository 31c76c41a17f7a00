import ArgumentParser
import Components
import Registry

struct RegistryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "registry",
        abstract: "Check registry folders; inspect, roll back and apply the running host's registry.",
        subcommands: [
            RegistryValidateCommand.self, RegistryListCommand.self, RegistryShowCommand.self,
            RegistryHistoryCommand.self, RegistryDiffCommand.self, RegistryRollbackCommand.self,
            RegistryApplyCommand.self,
        ]
    )
}

struct RegistryValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a registry folder without a running host.",
        discussion: """
            Loads every *.yaml and *.yml file under the folder and checks it as the host would \
            before applying it: YAML syntax, required fields, names, duplicate ids, kinds, \
            references and requires cycles. Prints a summary and exits 0 when the folder is valid; \
            prints every problem as file:line:column: entry: message and exits 1 otherwise.
            """
    )

    @Argument(help: ArgumentHelp("The registry folder to check.", valueName: "dir"))
    var folder: String = "registry"

    func run() throws {
        do {
            try Host.checkRegistryFolder(folder)
        } catch {
            printError("roost: \(error.message)")
            throw HostExit(code: error.exitCode)
        }
        let loaded = RegistryLoader.load(root: folder)
        let problems = (loaded.errors + Registry.validate(loaded.entries, kinds: RegistryKinds.standard(registryRoot: folder))).sorted()
        let namespaces = Set(loaded.entries.map(\.id.namespace)).count
        if problems.isEmpty {
            let entries = loaded.entries.count == 1 ? "1 entry" : "\(loaded.entries.count) entries"
            print("registry '\(folder)' is valid: \(entries) in \(namespaces) namespace\(namespaces == 1 ? "" : "s")")
            return
        }
        for problem in problems { print(problem.description) }
        print("registry '\(folder)' is not valid: \(problems.count) problem\(problems.count == 1 ? "" : "s")")
        throw HostExit(code: 1)
    }
}
