import Core
import HTTPService
import Registry

extension ContextKey where Value == FunctionRunner {
    /// Provided by the functions component: how any component runs a `swiftlet.function`.
    public static var functions: Self { Self("functions") }
}

/// Functions: the one `FunctionRunner` of the host, whose table follows the registry's current
/// version. The HTTP router runs endpoints' functions through it, and the admin API's
/// `POST /v1/functions/ID/call` (`roost call`) too.
public struct FunctionsComponent: Component {
    public let id = "functions"
    public let dependencies = ["registry"]
    public let registryRoot: String

    public init(registryRoot: String) {
        self.registryRoot = registryRoot
    }

    public func load(_ context: AppContext) async throws {
        let runner = FunctionRunner(loop: try context.require(.loop), logger: try context.require(.logger),
                                    software: "roost/\(RoostVersion.string)")
        try context.set(.functions, runner)
        await (try context.require(.registry)).add(FunctionTable(runner: runner, kind: FunctionKind(registryRoot: registryRoot)))
    }

    public func start(_ context: AppContext) async throws {}
    public func stop(_ context: AppContext) async {}
}

/// Keeps the runner's functions those of the committed version (an apply's problems with
/// functions are the kind's validation, so this participant refuses nothing).
struct FunctionTable: RegistryParticipant {
    let name = "functions"
    let runner: FunctionRunner
    let kind: FunctionKind

    func adopt(_ state: [EntryID: Entry], version: Int) async { runner.replace(functions(in: state)) }
    func review(_ proposal: RegistryProposal) async -> [RegistryError] { [] }
    func committed(_ commit: RegistryCommit) async { runner.replace(functions(in: commit.state)) }

    private func functions(in state: [EntryID: Entry]) -> [EntryID: FunctionDefinition] {
        var out: [EntryID: FunctionDefinition] = [:]
        for entry in state.values where entry.kind == FunctionKind.name {
            if let definition = kind.definition(of: entry) { out[entry.id] = definition }
        }
        return out
    }
}
