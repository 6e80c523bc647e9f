import Foundation
import Testing
import TestSupport
import UMDModel

/// Sharded checkpoints and resume: nothing is lost when a job dies.
@Suite("checkpoints and resume", .serialized)
struct CheckpointTests {
    static var root: URL { EquivalenceTests.root }

    func pretrain(ranks: Int, out: String, _ extra: [String], timeout: Double = 180) throws -> MPIJob.Result {
        try EquivalenceTests.prepare()
        return try MPIJob.run(ranks: ranks, ["pretrain", "--roco", Self.root.appendingPathComponent("roco").path,
                                             "--tokenizer", Self.root.appendingPathComponent("tok").path,
                                             "--out", Self.root.appendingPathComponent(out).path, "--lr", "1e-3",
                                             "--log-every", "1"] + extra, timeout: timeout)
    }

    func weights(_ run: String) throws -> Data {
        try Data(contentsOf: Self.root.appendingPathComponent(run).appendingPathComponent("final.safetensors"))
    }

    @Test func resumingContinuesTheSameTrajectoryBitwise() throws {
        let straight = try pretrain(ranks: 2, out: "ck-straight", ["--steps", "6", "--batch-size", "4"])
        #expect(straight.exitCode == 0, "\(straight)")
        let first = try pretrain(ranks: 2, out: "ck-resumed", ["--steps", "6", "--batch-size", "4", "--debug-stop-after", "3"])
        #expect(first.exitCode == 143 && first.output.contains("stopping after step 3"), "\(first)")
        let second = try pretrain(ranks: 2, out: "ck-resumed", ["--steps", "6", "--batch-size", "4", "--resume"])
        #expect(second.exitCode == 0 && second.output.contains("resumed from"), "\(second)")
        #expect(try weights("ck-straight") == weights("ck-resumed"), "resumed weights differ from the straight run")
        // metrics.jsonl holds all six steps, the first three from before the stop.
        #expect(try EquivalenceTests.losses(Self.root.appendingPathComponent("ck-resumed")).count == 6)
    }

    @Test func asynchronousCheckpointsResumeBitwiseToo() throws {
        let straight = try pretrain(ranks: 2, out: "ck-async-straight", ["--steps", "6", "--batch-size", "4"])
        #expect(straight.exitCode == 0)
        let first = try pretrain(ranks: 2, out: "ck-async", ["--steps", "6", "--batch-size", "4", "--async-checkpoint",
                                                            "--checkpoint-every", "2", "--debug-stop-after", "5"])
        #expect(first.exitCode == 143 && first.output.contains("being written in the background"), "\(first)")
        // Resume from the background-written step-4 checkpoint explicitly (step 5 was saved on the stop).
        let dir = Self.root.appendingPathComponent("ck-async/checkpoints/step-00000004")
        let verify = try MPIJob.runDirect(["inspect", dir.path, "--verify"])
        #expect(verify.exitCode == 0, "\(verify)")
        try? FileManager.default.removeItem(at: Self.root.appendingPathComponent("ck-async/checkpoints/step-00000005"))
        let second = try pretrain(ranks: 2, out: "ck-async", ["--steps", "6", "--batch-size", "4", "--resume", dir.path])
        #expect(second.exitCode == 0 && second.output.contains("step-00000004 (step 4"), "\(second)")
        #expect(try weights("ck-async-straight") == weights("ck-async"))
    }

    @Test func resumingOnOtherRankCountsContinuesTheSameRun() throws {
        // G = 6 splits over 2, 3 and 1 ranks. Straight on 2 ranks vs 2 → 3 → 1.
        let arguments = ["--steps", "6", "--batch-size", "6"] + EquivalenceTests.boundedAmplification
        let straight = try pretrain(ranks: 2, out: "ck-ws-straight", arguments)
        #expect(straight.exitCode == 0, "\(straight)")
        let a = try pretrain(ranks: 2, out: "ck-ws", arguments + ["--debug-stop-after", "2"])
        let b = try pretrain(ranks: 3, out: "ck-ws", arguments + ["--resume", "--debug-stop-after", "4"])
        let c = try pretrain(ranks: 1, out: "ck-ws", arguments + ["--resume"])
        #expect(a.exitCode == 143 && b.exitCode == 143 && c.exitCode == 0, "\(a)\n\(b)\n\(c)")
        #expect(b.output.contains("saved on 2 rank(s)") && c.output.contains("saved on 3 rank(s)"))
        try EquivalenceTests.compare(Self.root.appendingPathComponent("ck-ws-straight"), Self.root.appendingPathComponent("ck-ws"),
                                     lossNames: ["loss", "mim", "mlm", "itm"], maxLR: 5e-3, steps: 6,
                                     tolerance: .boundedAmplification)
    }

    @Test func aRankKilledWhileWritingLosesOnlyThatCheckpoint() throws {
        let straight = try pretrain(ranks: 2, out: "ck-kill-straight", ["--steps", "6", "--batch-size", "4"])
        #expect(straight.exitCode == 0)
        // Checkpoints every 2 steps; rank 1 SIGKILLs itself half-way through its shard of step 4.
        let crashed = try pretrain(ranks: 2, out: "ck-kill", ["--steps", "6", "--batch-size", "4", "--checkpoint-every", "2",
                                                              "--debug-crash-checkpoint-rank", "1",
                                                              "--debug-crash-checkpoint-step", "4"], timeout: 60)
        #expect(!crashed.timedOut && crashed.exitCode != 0, "\(crashed)")
        let checkpoints = Self.root.appendingPathComponent("ck-kill/checkpoints")
        #expect(FileManager.default.fileExists(atPath: checkpoints.appendingPathComponent("step-00000002/manifest.json").path))
        #expect(!FileManager.default.fileExists(atPath: checkpoints.appendingPathComponent("step-00000004/manifest.json").path))
        let resumed = try pretrain(ranks: 2, out: "ck-kill", ["--steps", "6", "--batch-size", "4", "--checkpoint-every", "2",
                                                              "--resume"])
        #expect(resumed.exitCode == 0 && resumed.output.contains("step-00000002 (step 2"), "\(resumed)")
        #expect(try weights("ck-kill-straight") == weights("ck-kill"), "the resumed run lost or changed something")
        // The dead half-written directory is gone once a newer checkpoint is complete.
        #expect(FileManager.default.fileExists(atPath: checkpoints.appendingPathComponent("step-00000004/manifest.json").path))
    }

    @Test func aFlippedByteIsReportedByInspectAndResumeFallsBack() throws {
        let straight = try pretrain(ranks: 2, out: "ck-flip-straight", ["--steps", "6", "--batch-size", "4"])
        #expect(straight.exitCode == 0)
        let run = try pretrain(ranks: 2, out: "ck-flip", ["--steps", "6", "--batch-size", "4", "--checkpoint-every", "3"])
        #expect(run.exitCode == 0)
        let newest = Self.root.appendingPathComponent("ck-flip/checkpoints/step-00000006")
        let shard = newest.appendingPathComponent("shard-00001-of-00002.zst")
        var bytes = try Data(contentsOf: shard)
        bytes[bytes.count / 2] ^= 0x5A
        try bytes.write(to: shard)

        let inspect = try MPIJob.runDirect(["inspect", newest.path, "--verify"])
        #expect(inspect.exitCode != 0 && inspect.output.contains("shard-00001-of-00002.zst: corrupted"), "\(inspect)")
        let clean = try MPIJob.runDirect(["inspect", Self.root.appendingPathComponent("ck-flip/checkpoints/step-00000003").path, "--verify"])
        #expect(clean.exitCode == 0 && clean.stdout.contains("all 2 shard(s) intact"), "\(clean)")

        let resumed = try pretrain(ranks: 2, out: "ck-flip", ["--steps", "6", "--batch-size", "4", "--checkpoint-every", "3", "--resume"])
        #expect(resumed.exitCode == 0, "\(resumed)")
        #expect(resumed.output.contains("shard-00001-of-00002.zst: corrupted") && resumed.output.contains("falling back"), "\(resumed)")
        #expect(resumed.output.contains("step-00000003 (step 3"), "\(resumed)")
        #expect(try weights("ck-flip-straight") == weights("ck-flip"))
    }

    @Test func aCheckpointOfAnotherConfigurationIsRefusedByName() throws {
        let run = try pretrain(ranks: 1, out: "ck-other", ["--steps", "2", "--batch-size", "4"])
        #expect(run.exitCode == 0)
        let other = try pretrain(ranks: 1, out: "ck-other", ["--steps", "4", "--batch-size", "4", "--seed", "5", "--resume"])
        #expect(other.exitCode != 0, "\(other)")
        #expect(other.output.contains("step-00000002/manifest.json: saved for another configuration: seed 0 (now 5)"), "\(other)")
        let none = try pretrain(ranks: 1, out: "ck-none", ["--steps", "2", "--batch-size", "4", "--resume"])
        #expect(none.exitCode != 0 && none.output.contains("no complete checkpoint under"), "\(none)")
    }

    @Test func exportWritesTheCheckpointsWeights() throws {
        let run = try pretrain(ranks: 2, out: "ck-export", ["--steps", "2", "--batch-size", "4"])
        #expect(run.exitCode == 0)
        let file = Self.root.appendingPathComponent("ck-export.safetensors")
        let export = try MPIJob.runDirect(["export", "--checkpoint", Self.root.appendingPathComponent("ck-export/checkpoints/step-00000002").path,
                                           "--out", file.path, "--teacher"])
        #expect(export.exitCode == 0, "\(export)")
        let exported = try Safetensors.read(file)
        let final = try Safetensors.read(Self.root.appendingPathComponent("ck-export/final.safetensors"))
        #expect(exported.byName.mapValues(\.data) == final.byName.mapValues(\.data), "export equals the run's final weights")
        // --init takes the checkpoint directory itself, too: calib starts from it.
        let calib = try MPIJob.run(ranks: 1, ["calib", "--task", "vqa-rad", "--data", Self.root.appendingPathComponent("vqa").path,
                                              "--tokenizer", Self.root.appendingPathComponent("tok").path,
                                              "--init", Self.root.appendingPathComponent("ck-export/checkpoints/step-00000002").path,
                                              "--out", Self.root.appendingPathComponent("ck-export-calib").path,
                                              "--steps", "1", "--batch-size", "4"], timeout: 120)
        #expect(calib.exitCode == 0, "\(calib)")
    }
}

/// The checkpoint benchmark runs end to end at the tiny preset.
struct CheckpointBenchSmokeTests {
    @Test func checkpointBenchmarkPrintsThroughputAndRatio() throws {
        let r = try MPIJob.run(ranks: 2, ["bench", "checkpoint", "--preset", "tiny"], timeout: 120)
        #expect(r.exitCode == 0, "\(r)")
        for text in ["ratio", "raw write + fsync", "checkpoint save", "checkpoint load"] { #expect(r.stdout.contains(text), "\(r)") }
    }
}
