import Registry
import Supervisor

/// The entry kinds the standard components own: the registry's `registry.entry` and the
/// supervisor's `swiftlet.service`. The HTTP service adds `swiftlet.function` and `http.*` with
/// its issue; until then those kinds are refused as unknown.
public enum RegistryKinds {
    /// `registryRoot` resolves relative `exec` paths of services (against the declaring file's folder).
    public static func standard(registryRoot: String? = nil) -> KindTable {
        // Kind names are distinct by construction here, so this cannot fail.
        try! KindTable([RegistryEntryKind(), ServiceKind(registryRoot: registryRoot)])
    }
}
