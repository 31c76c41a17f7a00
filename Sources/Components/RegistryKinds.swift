import HTTPService
import Registry
import Supervisor

/// The entry kinds the standard components own: the registry's `registry.entry`, the
/// supervisor's `swiftlet.service`, and the HTTP side's `swiftlet.function`, `http.service`,
/// `http.endpoint` and `http.static`.
public enum RegistryKinds {
    /// `registryRoot` resolves relative `exec` and `root` paths (against the declaring file's folder).
    public static func standard(registryRoot: String? = nil) -> KindTable {
        // Kind names are distinct by construction here, so this cannot fail.
        try! KindTable([
            RegistryEntryKind(), ServiceKind(registryRoot: registryRoot), FunctionKind(registryRoot: registryRoot),
            HTTPServiceKind(), EndpointKind(), StaticKind(registryRoot: registryRoot),
        ])
    }
}
