import Foundation
import Testing
import TestSupport
import UMDModel

/// Fault injection: each test reproduces a defect found by trying to break the program
/// (issue 12) and checks the clear stop or error that replaced it.
@Suite("hardening", .serialized)
struct HardeningTests {
    static let root = ScratchDirectory.make("umd-hardening")
    static var roco: String { root.appendingPathComponent("roco").path }
    static var tokenizer: String { root.appendingPathComponent("tok").path }

    static func prepare() throws {
        try SyntheticFixture.make(in: root, datasets: [("roco", "roco")], count: 40)
    }

    static func pretrain(ranks: Int = 2, _ out: String, _ extra: [String]) throws -> MPIJob.Result {
        try MPIJob.run(ranks: ranks, ["pretrain", "--roco", roco, "--tokenizer", tokenizer,
                                      "--out", root.appendingPathComponent(out).path, "--batch-size", "8"] + extra,
                       timeout: 120)
    }

    static func metrics(_ out: String) throws -> [[String: Any]] {
        let text = try String(contentsOf: root.appendingPathComponent("\(out)/metrics.jsonl"), encoding: .utf8)
        return text.split(separator: "\n").compactMap {
            (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any]
        }
    }

    /// Was: "loss -nan … done: 30 steps", exit 0, NaN weights in every checkpoint.
    @Test func aDivergedRunStopsAtTheFirstNonFiniteStepWithoutSaving() throws {
        try Self.prepare()
        let r = try Self.pretrain("diverged", ["--steps", "30", "--checkpoint-every", "10", "--lr", "1e3", "--log-every", "1"])
        #expect(!r.timedOut && r.exitCode != 0, "\(r)")
        #expect(r.output.contains("non-finite") && r.output.contains("nothing was updated or saved"), "\(r)")
        #expect(r.output.contains("--on-nonfinite skip-step"), "\(r)")
        let dir = Self.root.appendingPathComponent("diverged")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("final.safetensors").path))
        let rows = try Self.metrics("diverged")
        #expect(!rows.isEmpty && rows.allSatisfy { ($0["loss"] as? Double)?.isFinite == true },
                "every logged step before the stop is finite and none is missing")
    }

    /// `--on-nonfinite skip-step`: bad batches are skipped, counted, logged as nulls.
    @Test func skippedStepsAreCountedAndLoggedAsNulls() throws {
        try Self.prepare()
        let r = try Self.pretrain("skipping", ["--steps", "6", "--lr", "1e3", "--log-every", "1",
                                               "--on-nonfinite", "skip-step"])
        #expect(r.exitCode == 0, "\(r)")
        #expect(r.output.contains("skipped (--on-nonfinite skip-step)"), "\(r)")
        let rows = try Self.metrics("skipping")
        #expect(rows.count == 6, "one row per step, skipped ones included: \(rows.count)")
        let skipped = rows.filter { ($0["skipped"] as? Double) == 1 }
        #expect(!skipped.isEmpty)
        for row in skipped where row["nonfinite"] != nil {
            #expect(row["grad_norm"] is NSNull || row["loss"] is NSNull, "non-finite values are nulls: \(row)")
        }
        let weights = try Safetensors.read(Self.root.appendingPathComponent("skipping/final.safetensors"))
        #expect(weights.tensors.allSatisfy { $0.floats.allSatisfy(\.isFinite) }, "skipped updates leave finite weights")
    }

    /// Was: evaluating NaN weights printed the majority baseline and exited 0.
    @Test func nonFiniteWeightsAreRefusedByInitAndEval() throws {
        try Self.prepare()
        let ok = try Self.pretrain(ranks: 1, "finite", ["--steps", "1"])
        try #require(ok.exitCode == 0, "\(ok)")
        var file = try Safetensors.read(Self.root.appendingPathComponent("finite/final.safetensors"))
        let index = try #require(file.tensors.firstIndex { $0.name == "text.ln_embed.weight" })
        var values = file.tensors[index].floats
        values[3] = .nan
        file.tensors[index] = Safetensors.Tensor(name: "text.ln_embed.weight", shape: file.tensors[index].shape, floats: values)
        let poisoned = Self.root.appendingPathComponent("poisoned.safetensors")
        try Safetensors.write(file.tensors, metadata: file.metadata, to: poisoned)
        let r = try Self.pretrain(ranks: 1, "from-poisoned", ["--steps", "1", "--init", poisoned.path])
        #expect(r.exitCode != 0 && r.output.contains("hold non-finite values in 1 tensor(s): text.ln_embed.weight (1)"), "\(r)")
    }

    /// Was: `"step": 30 -> 99` passed `inspect --verify` and `--resume` skipped 69 steps.
    @Test func anEditedManifestStepFailsVerification() throws {
        try Self.prepare()
        let run = try Self.pretrain(ranks: 1, "edited", ["--steps", "4", "--checkpoint-every", "2"])
        try #require(run.exitCode == 0, "\(run)")
        let dir = Self.root.appendingPathComponent("edited/checkpoints/step-00000004")
        let manifest = dir.appendingPathComponent("manifest.json")
        let text = try String(contentsOf: manifest, encoding: .utf8)
        try text.replacingOccurrences(of: "\"step\" : 4", with: "\"step\" : 9").write(to: manifest, atomically: true, encoding: .utf8)
        let verify = try MPIJob.runDirect(["inspect", dir.path, "--verify"])
        // Caught by the manifest's own checksum (format 4; before it, by the step-seeded shard checksums).
        #expect(verify.exitCode != 0 && verify.output.contains("the manifest's checksum does not match its text"), "\(verify)")
        let resumed = try Self.pretrain(ranks: 1, "edited", ["--steps", "12", "--checkpoint-every", "2", "--resume",
                                                              "--allow-schedule-change"])
        #expect(resumed.exitCode == 0 && resumed.output.contains("step-00000002 (step 2"), "falls back: \(resumed)")
    }

    /// Was: `--steps` below the checkpoint's step crashed (invalid range); another `--steps`
    /// silently rescaled the schedule and left duplicate rows in metrics.jsonl.
    @Test func resumingWithAnotherScheduleNeedsConsentAndMetricsStayUnique() throws {
        try Self.prepare()
        let first = try Self.pretrain(ranks: 1, "schedule", ["--steps", "6", "--checkpoint-every", "2", "--log-every", "1",
                                                             "--debug-stop-after", "5"])
        #expect(first.exitCode == 143, "\(first)")
        let below = try Self.pretrain(ranks: 1, "schedule", ["--steps", "3", "--resume"])
        #expect(below.exitCode != 0 && below.output.contains("--steps 3 is below the checkpoint's step"), "\(below)")
        let longer = try Self.pretrain(ranks: 1, "schedule", ["--steps", "8", "--resume"])
        #expect(longer.exitCode != 0 && longer.output.contains("pass --allow-schedule-change"), "\(longer)")
        // Resuming from the step-4 checkpoint: the interrupted run's row of step 5 is dropped
        // and step 5 is logged again once.
        let step4 = Self.root.appendingPathComponent("schedule/checkpoints/step-00000004").path
        let again = try Self.pretrain(ranks: 1, "schedule", ["--steps", "6", "--log-every", "1", "--resume", step4])
        #expect(again.exitCode == 0 && again.output.contains("dropped 1 row(s) after step 4"), "\(again)")
        let accepted = try Self.pretrain(ranks: 1, "schedule", ["--steps", "8", "--log-every", "1", "--resume",
                                                                "--allow-schedule-change"])
        #expect(accepted.exitCode == 0 && accepted.output.contains("the schedule now ends at step 8 instead of 6"), "\(accepted)")
        let steps = try Self.metrics("schedule").compactMap { ($0["step"] as? NSNumber)?.intValue }
        #expect(steps == Array(1...8), "one row per step: \(steps)")
    }

    /// Was: a full disk left partial `*.tmp` shards that kept it full; an output path under a
    /// file gave a raw NSCocoaErrorDomain code. Needs root to mount a small tmpfs.
    @Test(.enabled(if: Capabilities.tmpfsMounts, "needs root with CAP_SYS_ADMIN to mount a small tmpfs"))
    func aFullDiskLeavesNoPartialFilesAndBadOutputPathsAreNamed() throws {
        try Self.prepare()
        let disk = Self.root.appendingPathComponent("small-disk")
        try FileManager.default.createDirectory(at: disk, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=3m", "tmpfs", disk.path]
        try mount.run(); mount.waitUntilExit()
        try #require(mount.terminationStatus == 0, "cannot mount a tmpfs here")
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = [disk.path]
            try? umount.run(); umount.waitUntilExit()
        }
        let out = disk.appendingPathComponent("run").path
        let r = try MPIJob.run(ranks: 2, ["pretrain", "--roco", Self.roco, "--tokenizer", Self.tokenizer, "--out", out,
                                          "--steps", "2", "--batch-size", "8", "--checkpoint-every", "1"], timeout: 120)
        #expect(!r.timedOut && r.exitCode != 0, "\(r)")
        #expect(r.output.contains("No space left on device"), "\(r)")
        let leftovers = FileManager.default.enumerator(atPath: disk.path)?.compactMap { $0 as? String }
            .filter { $0.contains(".tmp") } ?? []
        #expect(leftovers.isEmpty, "partial files left: \(leftovers)")

        let file = Self.root.appendingPathComponent("a-file")
        try Data("x".utf8).write(to: file)
        let underFile = try Self.pretrain(ranks: 1, "a-file/run", ["--steps", "1"])
        #expect(underFile.exitCode != 0 && underFile.output.contains("\(file.path) is a file, not a directory"), "\(underFile)")
    }
}
