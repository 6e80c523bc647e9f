import Foundation
import Testing
import TestSupport
import UMDModel

/// Fault injection: each test reproduces a defect found by trying to break the program
/// (issue 12) and checks the clear stop or error that replaced it.
@Suite("hardening", .serialized)
struct HardeningTests {
    static let root: URL = {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("umd-hardening-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }()
    static var roco: String { root.appendingPathComponent("roco").path }
    static var tokenizer: String { root.appendingPathComponent("tok").path }

    static func prepare() throws {
        if FileManager.default.fileExists(atPath: root.appendingPathComponent("tok/vocab.json").path) { return }
        let synth = try MPIJob.runDirect(["synth", "--kind", "roco", "--out", roco, "--count", "40", "--image-size", "32"])
        try #require(synth.exitCode == 0, "\(synth)")
        let tok = try MPIJob.runDirect(["tokenizer", "train", "--roco", roco, "--vocab-size", "300", "--out", tokenizer])
        try #require(tok.exitCode == 0, "\(tok)")
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
}
