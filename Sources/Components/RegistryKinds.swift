import Registry

/// The entry kinds the standard components own. Each component adds its kinds as it is built
/// (the supervisor `swiftlet.service`, the HTTP service `swiftlet.function` and `http.*`);
/// until then only the registry's own `registry.entry` is known, and any other kind is refused.
public enum RegistryKinds {
    public static func standard() -> KindTable {
        // Kind names are distinct by construction here, so this cannot fail.
        try! KindTable([RegistryEntryKind()])
    }
}
