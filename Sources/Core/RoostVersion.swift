/// The version of Roost, as `roost version` prints it and servers announce it.
public enum RoostVersion {
    public static let string = "0.1.0"
}
