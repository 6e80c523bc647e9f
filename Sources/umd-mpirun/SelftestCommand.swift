import ArgumentParser
import Foundation
import UMDCore
import Collective
import UMDModel

/// `umd-mpirun selftest`: checks every collective umd uses against arithmetic answers.
/// Every rank runs it; rank 0 prints one summary line (and one line per case with --verbose).
struct SelftestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "selftest",
        abstract: "Check ranks, broadcast, allreduce, allgather and gather on this MPI job.")

    @Option(help: "Elements of the large Float allreduce (default 4Mi = 16 MiB).")
    var allreduceElements: Int = 4 << 20

    @Flag(help: "Print one line per passed case on rank 0.")
    var verbose = false

    @Option(help: ArgumentHelp(
        "Make a deliberately wrong call to show its error (bad-root, bad-root-one-rank, count-mismatch).",
        visibility: .hidden))
    var injectError: InjectedError?

    enum InjectedError: String, ExpressibleByArgument, CaseIterable {
        case badRoot = "bad-root", badRootOneRank = "bad-root-one-rank", countMismatch = "count-mismatch"
    }

    func run() throws {
        let largeCount = allreduceElements
        let verbose = verbose
        let injectError = injectError
        try runOnWorld { world in
            if let injectError { try makeWrongCall(injectError, world) }
            var failures: [String] = []
            var passed: [String] = []
            for testCase in SelftestCases.all(largeCount: largeCount) {
                do {
                    if let problem = try testCase.check(world) {
                        failures.append("\(testCase.name): \(problem)")
                    } else {
                        passed.append(testCase.name)
                    }
                } catch let error as MPIError {
                    throw error  // a failed MPI call is not recoverable; runOnWorld aborts the job
                }
            }
            // Every rank learns every rank's failures, so all exit with the same status.
            let report = failures.map { "rank \(world.rank): \($0)" }.joined(separator: "\n")
            let reports = try world.allgatherData(Data(report.utf8))
                .map { String(decoding: $0, as: UTF8.self) }.filter { !$0.isEmpty }
            if world.rank == 0 {
                if verbose { for name in passed { print("case \(name) ok") } }
                if reports.isEmpty {
                    let hosts = Set(try world.allgatherData(Data(world.processorName.utf8))
                        .map { String(decoding: $0, as: UTF8.self) })
                    let kernels = Set(try world.allgatherData(Data(Self.kernels.utf8))
                        .map { String(decoding: $0, as: UTF8.self) })
                    let mib = Double(largeCount * MemoryLayout<Float>.size) / 1048576
                    print("selftest ok: \(world.size) ranks on \(hosts.count) host(s) (\(hosts.sorted().joined(separator: ", "))), "
                        + "\(Communicator.providedThreadLevel()), \(passed.count) cases: broadcast, "
                        + String(format: "allreduce %.1f MiB", mib) + " (in place, out of place, non-blocking), "
                        + "allgather, gather, BLAS sgemm and oneDNN matmul within their error bound on every rank "
                        + "(kernels: \(kernels.sorted().joined(separator: ", ")))")
                } else {
                    print("selftest FAILED:\n" + reports.joined(separator: "\n"))
                }
            } else {
                _ = try world.allgatherData(Data(world.processorName.utf8))
            }
            if reports.isEmpty && world.rank != 0 { _ = try world.allgatherData(Data(Self.kernels.utf8)) }
            if !reports.isEmpty { throw ExitCode.failure }
        }
    }

    /// The kernels this rank's matrix products run: OpenBLAS's family and oneDNN's instruction
    /// set; and whether its large arrays can have huge pages (`HugePageMemory`).
    static var kernels: String {
        "OpenBLAS \(BLASCheck.kernelFamily), oneDNN \(OneDNNBackend.version) \(OneDNNBackend.instructionSet)"
            + (OneDNNBackend.hasBFloat16 ? " (bf16 available)" : " (no bf16)")
            + ", transparent huge pages " + (HugePageMemory.kernelSetting.map { $0 == "never" ? "never (4-7 % slower steps)" : $0 }
                                              ?? "unavailable")
    }

    /// Deliberately wrong calls, to show that they end in a clear error, not a hang.
    private func makeWrongCall(_ kind: InjectedError, _ world: Communicator) throws {
        var values = [Float](repeating: 1, count: 16)
        switch kind {
        case .badRoot:
            try world.broadcast(&values, root: world.size)  // no such rank
        case .badRootOneRank:
            // Only the last rank is wrong; the others wait in a valid broadcast and must
            // be taken down with it rather than wait forever.
            try world.broadcast(&values, root: world.rank == world.size - 1 ? -3 : 0)
            // The healthy ranks may finish the broadcast (root 0 sends eagerly); they then
            // wait here for the faulty rank, which must take the job down instead.
            try world.barrier()
        case .countMismatch:
            _ = try world.allgather([Float](repeating: 0, count: world.rank + 1))
        }
        throw ValidationError("the injected wrong call \(kind.rawValue) did not fail")
    }
}
