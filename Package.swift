// swift-tools-version:6.0
// umd: data-parallel UMD training over MPI on CPU clusters.
// Layout and dependency direction: see DESIGN.md (umd-mpirun -> UMDDistributed ->
// {Collective, UMDModel, UMDData}; Collective -> MPIBridge).
import PackageDescription

let package = Package(
    name: "umd",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "umd-mpirun", targets: ["umd-mpirun"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.1.1"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.6.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // System libraries, each found through pkg-config, with a shim header.
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]),
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg62-turbo-dev"])]),
        // No library: a header telling Swift what the target CPU can do (FMA).
        .systemLibrary(name: "CBuildTarget"),

        // libjpeg/libpng calls with their errors kept inside C (setjmp), so a corrupt image
        // is an error value rather than an exit.
        .target(name: "CImageCodecs", dependencies: ["CPNG", "CJPEG"],
                // DWARF 4: valgrind 3.19 (used by the allocation test) cannot read clang's DWARF 5.
                cSettings: [.unsafeFlags(["-gdwarf-4"])],
                linkerSettings: [.linkedLibrary("jpeg"), .linkedLibrary("png16")]),

        // oneDNN's matmul primitives behind a few C calls (libdnnl-dev; OpenMP runtime).
        .target(name: "COneDNN", cSettings: [.unsafeFlags(["-gdwarf-4"])],
                linkerSettings: [.linkedLibrary("dnnl"), .linkedLibrary("dl")]),

        // Libraries. UMDCore holds the counter-based random numbers the model and the data
        // pipeline must agree on.
        .target(name: "UMDCore", exclude: ["README.md"],
                swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .target(name: "MPIBridge", dependencies: ["CMPI", "UMDCore"], exclude: ["README.md"]),
        .target(name: "Collective", dependencies: ["MPIBridge", "UMDCore"], exclude: ["README.md"]),
        // Optimised in debug builds too: the SIMD kernels (SIMD16<Float> arithmetic) run
        // ~100x slower unoptimised, which made the test suite's training runs crawl.
        .target(name: "UMDModel",
                dependencies: ["UMDCore", "COpenBLAS", "COneDNN", "CBuildTarget",
                               .product(name: "RealModule", package: "swift-numerics")],
                exclude: ["README.md"],
                swiftSettings: [.unsafeFlags(["-O"], .when(configuration: .debug))]),
        .target(name: "UMDData",
                dependencies: ["UMDCore", "CPNG", "CJPEG", "CImageCodecs",
                               .product(name: "HeapModule", package: "swift-collections")],
                exclude: ["README.md"]),
        .target(name: "UMDDistributed",
                dependencies: ["Collective", "UMDModel", "UMDData", "CZstd", .product(name: "Yams", package: "Yams")],
                exclude: ["README.md"]),

        // What is not training: plots, benchmarks, feature encoding and weight conversion.
        // Depends on the trainer module, never the other way.
        .target(name: "UMDTools", dependencies: ["UMDDistributed"], exclude: ["README.md"]),

        // The program every MPI rank runs.
        .executableTarget(
            name: "umd-mpirun",
            dependencies: [
                "UMDTools", "UMDDistributed", "Collective", "MPIBridge", "UMDModel", "UMDData", "UMDCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            exclude: ["README.md"]),

        // Tests. TestSupport spawns mpirun; no test process ever initialises MPI.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "MPIBridgeTests",
                    dependencies: ["MPIBridge", "TestSupport", "umd-mpirun"]),
        .testTarget(name: "UMDCoreTests", dependencies: ["UMDCore"]),
        .testTarget(name: "CollectiveTests", dependencies: ["Collective", "UMDCore", "TestSupport"]),
        // UMDModel's tests build realistic masked inputs with UMDData's masking.
        .testTarget(name: "UMDModelTests", dependencies: ["UMDModel", "UMDData"]),
        .testTarget(name: "UMDDataTests", dependencies: ["UMDData"]),
        .testTarget(name: "UMDDistributedTests",
                    dependencies: ["UMDDistributed", "TestSupport"]),
    ]
)
