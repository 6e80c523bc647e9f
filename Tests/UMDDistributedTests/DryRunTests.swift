import Foundation
import Testing
import TestSupport

/// Issue 28, item 4: `<stage> … --dry-run RANKS` says what the run needs per rank before it
/// runs, reads no data and writes nothing, and its estimate follows the run: a 2-rank run of
/// the same settings peaks within 10 % of it (at base the README records 0.4 % and 0.5 %).
@Suite(.serialized)
struct DryRunTests {
    static let root = ScratchDirectory.make("umd-dry-run")

    func fixture() throws -> (data: String, tokenizer: String) {
        try SyntheticFixture.make(in: Self.root, datasets: [("roco", "roco")], count: 40, imageSize: 64)
        return (Self.root.appendingPathComponent("roco").path, Self.root.appendingPathComponent("tok").path)
    }

    /// "estimated peak resident per rank: 0.38 GB …" → 0.38e9.
    func estimatedPeak(_ output: String) -> Double? {
        guard let line = output.split(separator: "\n").first(where: { $0.contains("estimated peak resident per rank:") }),
              let value = line.split(separator: ":")[1].split(separator: " ").first.flatMap({ Double($0) }) else { return nil }
        return value * 1e9
    }

    @Test func theEstimateNamesTheLocalBatchWritesNothingAndFollowsTheRun() throws {
        let (data, tokenizer) = try fixture()
        let out = Self.root.appendingPathComponent("run")
        let common = ["pretrain", "--roco", data, "--tokenizer", tokenizer, "--out", out.path, "--preset", "small",
                      "--batch-size", "16", "--steps", "2", "--checkpoint-every", "0"]
        let dry = try MPIJob.runDirect(common + ["--dry-run", "2"], environment: ["OPENBLAS_NUM_THREADS": "1"])
        try #require(dry.exitCode == 0, "\(dry)")
        #expect(dry.stdout.contains("on 2 rank(s): --batch-size 16 is 8 sample(s) per rank per micro-batch"), "\(dry)")
        #expect(dry.stdout.contains("fixed per rank: parameters") && dry.stdout.contains("per sample (measured"), "\(dry)")
        #expect(!FileManager.default.fileExists(atPath: out.path), "a dry run writes nothing")
        let estimate = try #require(estimatedPeak(dry.stdout), "\(dry)")

        // The run itself, on 2 ranks: rank 0's peak (the first of the end-of-run figures).
        let run = try MPIJob.run(ranks: 2, common)
        try #require(run.exitCode == 0, "\(run)")
        let peaks = try #require(run.stdout.split(separator: "\n").first { $0.contains("peak resident memory per rank:") })
        let first = try #require(peaks.split(separator: ":")[1].split(separator: " ").first.flatMap { Double($0) })
        #expect(abs(estimate - first * 1e9) <= 0.10 * first * 1e9, "estimate \(estimate) vs run \(first) GB: \(dry)")
    }

    @Test func aDryRunUnderMpirunOrWithABatchThatDoesNotSplitIsRefused() throws {
        let (data, tokenizer) = try fixture()
        let common = ["pretrain", "--roco", data, "--tokenizer", tokenizer, "--out",
                      Self.root.appendingPathComponent("refused").path, "--batch-size", "10"]
        let split = try MPIJob.runDirect(common + ["--dry-run", "4"])
        #expect(split.exitCode != 0 && split.stderr.contains("--batch-size 10 does not split into 4 ranks"), "\(split)")
        let underMPI = try MPIJob.run(ranks: 2, common + ["--dry-run", "2"])
        #expect(underMPI.exitCode != 0 && underMPI.stderr.contains("run it without mpirun"), "\(underMPI)")
    }
}
