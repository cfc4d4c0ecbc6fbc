// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "flowmap",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "flowmap", targets: ["flowmap"]),
        .library(name: "FlowCore", targets: ["FlowCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.0.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.0.0"),
    ],
    targets: [
        // System library: libpcap (Debian: libpcap-dev).
        .systemLibrary(
            name: "CPcap",
            pkgConfig: "libpcap",
            providers: [.apt(["libpcap-dev"])]
        ),
        // System library: libnetfilter_conntrack (Debian: libnetfilter-conntrack-dev).
        .systemLibrary(
            name: "CConntrack",
            pkgConfig: "libnetfilter_conntrack",
            providers: [.apt(["libnetfilter-conntrack-dev"])]
        ),
        // System library: two process-wide SQLite settings (sqlite3_config) before any open.
        .systemLibrary(name: "CSQLiteSetup"),
        // PURE: wire decoding, flow table, DNS names, renderers. No C module, no I/O.
        .target(name: "FlowCore", swiftSettings: [
            // The per-packet path: bounds are checked by the decoders themselves; exclusivity
            // is static (no shared mutable state across threads in this module).
            .unsafeFlags(["-Ounchecked", "-enforce-exclusivity=unchecked"], .when(configuration: .release)),
        ]),
        // PURE: inventory, workload identity, the workload graph and its renderers.
        // (Release builds skip dynamic exclusivity checks here and below, as in FlowCore: the
        // per-flow paths go through class state, where every access would be checked. Debug
        // builds, and so the tests, keep them.)
        .target(name: "FlowGraph", dependencies: ["FlowCore"], swiftSettings: [
            .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
        ]),
        // PURE: policies — model, suggestion, simulation, lint and diff; YAML writing.
        .target(name: "FlowPolicy", dependencies: ["FlowCore", "FlowGraph"], swiftSettings: [
            .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
        ]),
        // Inventory and policy files: YAML through Yams, with file:line:column errors.
        .target(name: "FlowConfig", dependencies: ["FlowGraph", "FlowPolicy", .product(name: "Yams", package: "Yams")],
                swiftSettings: [
                    .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
                ]),
        // ADAPTER: libpcap offline reading.
        .target(name: "FlowCapture", dependencies: ["CPcap", "FlowCore"], swiftSettings: [
            .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
        ]),
        // PURE: the host agent's model — /proc parsers, socket index, conntrack flows.
        .target(name: "FlowHost", dependencies: ["FlowCore"]),
        // ADAPTER: /proc (socket tables, file descriptors, process identity).
        .target(name: "FlowProcFS", dependencies: ["FlowHost", "FlowCore"]),
        // ADAPTER: conntrack dumps and events through libnetfilter_conntrack.
        .target(name: "FlowConntrack", dependencies: ["CConntrack", "FlowHost", "FlowCore"]),
        // ADAPTER: SQLite store through GRDB.
        .target(name: "FlowStore", dependencies: [
            "FlowCore", "FlowGraph", "CSQLiteSetup", .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "GRDBSQLite", package: "GRDB.swift"),
        ]),
        // ArgumentParser commands.
        .target(name: "FlowmapCLI", dependencies: [
            "FlowCore", "FlowCapture", "FlowStore", "FlowGraph", "FlowConfig", "FlowPolicy",
            "FlowHost", "FlowProcFS", "FlowConntrack",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: [
            // The capture loop's closures run on one thread; skip dynamic exclusivity checks there.
            .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
        ]),
        .executableTarget(name: "flowmap", dependencies: ["FlowmapCLI"]),
        .testTarget(name: "FlowCoreTests", dependencies: ["FlowCore"]),
        .testTarget(name: "FlowmapCLITests", dependencies: ["FlowmapCLI", "FlowCore", "FlowCapture", "FlowStore"]),
        .testTarget(name: "FlowHostTests", dependencies: ["FlowHost", "FlowProcFS", "FlowConntrack", "FlowCore"]),
        .testTarget(name: "FlowGraphTests", dependencies: ["FlowGraph", "FlowConfig", "FlowCore", "FlowPolicy", .product(name: "Yams", package: "Yams")]),
    ]
)
