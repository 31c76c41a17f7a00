// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "roost",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "roost", targets: ["roost"]),
        .library(name: "SwiftletKit", targets: ["SwiftletKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries from Debian, reached through a shim header only.
        .systemLibrary(
            name: "CLibUV",
            pkgConfig: "libuv",
            providers: [.apt(["libuv1-dev"])]
        ),
        .systemLibrary(
            name: "CHTTPParser",
            providers: [.apt(["libhttp-parser-dev"])]
        ),
        .systemLibrary(
            name: "CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        // The host's process spawn (vfork-style clone with a pidfd), in C: the child runs in the
        // host's memory until it execs, where only system calls are safe.
        .target(name: "CSpawn"),
        .target(
            name: "Core",
            dependencies: [
                "CSpawn",
                "CLibUV",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            swiftSettings: [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]  // see HTTPService
        ),
        // The dependencies below are the direction DESIGN.md fixes.
        .target(name: "Registry", dependencies: ["Core", "CSQLite", .product(name: "Yams", package: "Yams")]),
        .target(name: "Supervisor", dependencies: ["Core", "Registry", .product(name: "DequeModule", package: "swift-collections")]),
        .target(
            name: "HTTPService",
            dependencies: [
                "Core", "Registry", "Supervisor", "CHTTPParser", .product(name: "Logging", package: "swift-log"),
                .product(name: "DequeModule", package: "swift-collections"),
            ],
            // Its nonisolated async functions run on their caller's executor (the loop): without
            // this, each call from a loop actor hopped to the task's executor and back, two
            // queued jobs per call, a dozen per request.
            swiftSettings: [.enableUpcomingFeature("NonisolatedNonsendingByDefault")]
        ),
        .target(name: "SwiftletKit"),
        .target(
            name: "Components",
            dependencies: [
                "Core", "Registry", "Supervisor", "HTTPService",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .executableTarget(
            name: "roost",
            dependencies: [
                "Core",
                "CSpawn",
                "Components",
                "Registry",
                "HTTPService",
                "SwiftletKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // Commits versions until killed; the registry's durability test kills it with SIGKILL.
        .executableTarget(name: "history-crash-helper", dependencies: ["Registry"]),
        .executableTarget(
            name: "registry-bench",
            dependencies: ["Core", "Registry", "Components", .product(name: "Logging", package: "swift-log")],
            path: "bench/RegistryBench"
        ),
        .executableTarget(
            name: "core-bench",
            dependencies: ["Core"],
            path: "bench/CoreBench"
        ),
        // Helpers the test targets share (temporary folders); not part of any product.
        .target(name: "TestSupport", dependencies: ["Core", "HTTPService"], path: "Tests/TestSupport"),
        .testTarget(name: "CoreTests", dependencies: ["Core", "TestSupport"]),
        .testTarget(name: "ComponentsTests", dependencies: ["Components", "Core", "Registry", "HTTPService", "TestSupport"]),
        .testTarget(name: "RegistryTests", dependencies: ["Registry", "Core"]),
        .testTarget(name: "HTTPServiceTests", dependencies: ["HTTPService", "Core", "TestSupport"]),
        .testTarget(name: "SupervisorTests", dependencies: ["Supervisor", "Registry", "Core"]),
    ],
    swiftLanguageModes: [.v6]
)
