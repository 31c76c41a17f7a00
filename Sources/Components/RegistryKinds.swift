import HTTPService
import Registry
import Supervisor

/// The entry kinds the standard components own: the registry's `registry.entry`, the
/// supervisor's `swiftlet.service`, and the HTTP side's `swiftlet.function`, `http.service` and
/// `http.endpoint`. (`http.static` is not built yet and is refused as unknown.)
public enum RegistryKinds {
    /// `registryRoot` resolves relative `exec` paths (against the declaring file's folder).
    public static func standard(registryRoot: String? = nil) -> KindTable {
        // Kind names are distinct by construction here, so this cannot fail.
        try! KindTable([
            RegistryEntryKind(), ServiceKind(registryRoot: registryRoot), FunctionKind(registryRoot: registryRoot),
            HTTPServiceKind(), EndpointKind(),
        ])
    }
}
