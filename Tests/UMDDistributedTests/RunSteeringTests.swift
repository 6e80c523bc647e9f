import Foundation
import Testing
import TestSupport
import UMDModel
@testable import UMDDistributed

/// How a user names weights and runs (issue 13): one resolver for every command, runs that
/// never mix, evaluation files named by their weights.
@Suite("run steering", .serialized)
struct RunSteeringTests {
    static let root = ScratchDirectory.make("umd-steering")
    static func path(_ p: String) -> String { root.appendingPathComponent(p).path }

    static func prepare() throws {
        if FileManager.default.fileExists(atPath: path("pre/final.safetensors")) { return }
        try SyntheticFixture.make(in: root, datasets: [("roco", "roco"), ("vqa-rad", "vqa")])
        let run = try MPIJob.run(ranks: 1, ["pretrain", "--roco", path("roco"), "--tokenizer", path("tok"), "--out", path("pre"),
                                            "--steps", "2", "--batch-size", "4", "--checkpoint-every", "1"])
        try #require(run.exitCode == 0, "\(run)")
    }

    static var forms: [String] {
        [path("pre"), path("pre/checkpoints/latest"), path("pre/checkpoints/step-00000002"), path("pre/final.safetensors")]
    }

    @Test func everyCommandAcceptsTheFourFormsOfAWeightsPath() throws {
        try Self.prepare()
        for (i, form) in Self.forms.enumerated() {
            let export = try MPIJob.runDirect(["export", "--checkpoint", form, "--out", Self.path("export-\(i).safetensors")])
            #expect(export.exitCode == 0, "export \(form): \(export)")
            let initRun = try MPIJob.run(ranks: 1, ["calib", "--task", "vqa-rad", "--data", Self.path("vqa"),
                                                    "--tokenizer", Self.path("tok"), "--init", form,
                                                    "--out", Self.path("calib-\(i)"), "--steps", "1", "--batch-size", "4"])
            #expect(initRun.exitCode == 0 && initRun.stdout.contains("and the teacher"), "--init \(form): \(initRun)")
            let encode = try MPIJob.runDirect(["encode", "--weights", form, "--images",
                                               Self.path("vqa/images/synpic10000.jpg"), "--out", Self.path("enc-\(i).safetensors")])
            #expect(encode.exitCode == 0, "encode \(form): \(encode)")
            if i < 3 {
                let inspect = try MPIJob.runDirect(["inspect", form])
                #expect(inspect.exitCode == 0 && inspect.stdout.contains("step 2"), "inspect \(form): \(inspect)")
            }
        }
        // The four exports hold the same student weights.
        let a = try Safetensors.read(URL(fileURLWithPath: Self.path("export-0.safetensors")))
        let d = try Safetensors.read(URL(fileURLWithPath: Self.path("export-3.safetensors")))
        #expect(a["vision.pos_embed"]?.data == d["vision.pos_embed"]?.data)
    }

    @Test func wrongWeightsPathsSayWhatTheyAre() throws {
        try Self.prepare()
        let hf = Self.root.appendingPathComponent("hf-model")
        try FileManager.default.createDirectory(at: hf, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: hf.appendingPathComponent("config.json"))
        try Data("x".utf8).write(to: hf.appendingPathComponent("model.safetensors"))
        let incomplete = Self.path("pre/checkpoints/step-00000009")
        try FileManager.default.createDirectory(atPath: incomplete, withIntermediateDirectories: true)
        let cases: [(String, String)] = [
            (hf.path, "a Hugging Face model folder; convert it first"),
            (incomplete, "an incomplete checkpoint (no manifest.json"),
            (Self.path("roco"), "neither a umd run nor a checkpoint"),
            (Self.path("nowhere"), "no such file or directory"),
            (Self.path("roco/train/radiology/captions.txt"), "not a safetensors file"),
        ]
        for (form, expected) in cases {
            let r = try MPIJob.runDirect(["export", "--checkpoint", form, "--out", Self.path("x.safetensors")])
            #expect(r.exitCode != 0 && r.output.contains(expected), "\(form): \(r)")
            #expect(!r.output.contains("NSCocoaErrorDomain"), "\(r)")
        }
        try FileManager.default.removeItem(atPath: incomplete)
    }

    @Test func aUsedOutIsRefusedAndOverwriteMovesTheOldRunAside() throws {
        try Self.prepare()
        let args = ["pretrain", "--roco", Self.path("roco"), "--tokenizer", Self.path("tok"), "--steps", "1", "--batch-size", "4"]
        let first = try MPIJob.run(ranks: 2, args + ["--out", Self.path("reuse")])
        try #require(first.exitCode == 0, "\(first)")
        let before = try Data(contentsOf: URL(fileURLWithPath: Self.path("reuse/final.safetensors")))
        let again = try MPIJob.run(ranks: 2, args + ["--out", Self.path("reuse"), "--seed", "3"])
        #expect(again.exitCode != 0 && again.output.contains("holds another run; pass --resume"), "\(again)")
        #expect(try Data(contentsOf: URL(fileURLWithPath: Self.path("reuse/final.safetensors"))) == before, "the old run is intact")
        let overwritten = try MPIJob.run(ranks: 2, args + ["--out", Self.path("reuse"), "--seed", "3", "--overwrite"])
        #expect(overwritten.exitCode == 0 && overwritten.output.contains("was moved to"), "\(overwritten)")
        let aside = try FileManager.default.contentsOfDirectory(atPath: Self.root.path).filter { $0.hasPrefix("reuse.old-") }
        #expect(aside.count == 1)
        if let old = aside.first {
            #expect(try Data(contentsOf: Self.root.appendingPathComponent("\(old)/final.safetensors")) == before)
        }
    }

    /// Was: "saved for another configuration: lr nil (now Optional(1e-05))" (tiny pretraining's default is 5e-4).
    @Test func resumeWithTheDefaultLearningRateGivenExplicitlyContinues() throws {
        try Self.prepare()
        let args = ["pretrain", "--roco", Self.path("roco"), "--tokenizer", Self.path("tok"), "--batch-size", "4",
                    "--out", Self.path("explicit-lr")]
        let first = try MPIJob.run(ranks: 1, args + ["--steps", "2", "--checkpoint-every", "1", "--debug-stop-after", "1"])
        #expect(first.exitCode == 143, "\(first)")
        let resumed = try MPIJob.run(ranks: 1, args + ["--steps", "2", "--lr", "5e-4", "--resume"])
        #expect(resumed.exitCode == 0 && resumed.output.contains("resumed from"), "\(resumed)")
    }

    static func rows(_ run: String) throws -> [[String: Any]] {
        try String(contentsOfFile: path("\(run)/metrics.jsonl"), encoding: .utf8).split(separator: "\n")
            .compactMap { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] }
    }

    /// `--pooling mean` (issue 23) is recorded in the weights, and eval and encode pool by
    /// it: eval of final.safetensors reproduces the last validation's loss; the same tensors
    /// labelled `cls` score otherwise (so the agreement is not by chance), and encode's
    /// pooled features are the mean-pooled ones.
    @Test func meanPoolingIsRecordedInTheWeightsAndEvalUsesIt() throws {
        try Self.prepare()
        let ft = try MPIJob.run(ranks: 2, ["finetune", "--task", "vqa-rad", "--data", Self.path("vqa"), "--tokenizer",
                                           Self.path("tok"), "--out", Self.path("mean"), "--steps", "3",
                                           "--batch-size", "4", "--eval-every", "3", "--pooling", "mean"], timeout: 180)
        try #require(ft.exitCode == 0, "\(ft)")
        let validation = try #require(try Self.rows("mean").last { $0["stage"] as? String == "validation" })
        let weights = try Safetensors.read(URL(fileURLWithPath: Self.path("mean/final.safetensors")))
        #expect(weights.metadata["pooling"] == "mean" && weights["fusion.text_pooler.weight"] != nil)
        func evalLoss(_ weightsPath: String, name: String) throws -> Double? {
            let ev = try MPIJob.run(ranks: 1, ["eval", "--task", "vqa-rad", "--data", Self.path("vqa"), "--tokenizer",
                                               Self.path("tok"), "--weights", weightsPath, "--split", "validation",
                                               "--out", Self.path("mean/\(name)"),
                                               "--predictions", Self.path("mean/\(name)/predictions.jsonl")], timeout: 120)
            try #require(ev.exitCode == 0, "\(ev)")
            let dir = Self.path("mean/\(name)")
            let file = try #require(try FileManager.default.contentsOfDirectory(atPath: dir).first { $0.hasPrefix("eval-") })
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/" + file)))
            return (json as? [String: Any])?["loss"] as? Double
        }
        let loss = try #require(try evalLoss(Self.path("mean/final.safetensors"), name: "eval-mean"))
        // --predictions carries each sample's contributions under both variants.
        let lines = try String(contentsOfFile: Self.path("mean/eval-mean/predictions.jsonl"), encoding: .utf8)
            .split(separator: "\n").compactMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(!lines.isEmpty)
        for line in lines where line["truth"] is String {
            for key in ["p_text_reference", "p_image_reference", "p_text_ablation", "p_image_ablation"] {
                let p = line[key] as? Double ?? -1
                #expect(p > 0 && p < 1, "\(key) of \(line)")
            }
        }
        let logged = try #require(validation["val_loss"] as? Double)
        #expect(abs(loss - logged) <= 1e-6 * max(1, abs(logged)), "eval \(loss) vs validation \(logged)")
        var relabelled = weights
        relabelled.metadata["pooling"] = "cls"
        try Safetensors.write(relabelled.tensors, metadata: relabelled.metadata, to: URL(fileURLWithPath: Self.path("mean/as-cls.safetensors")))
        let asCLS = try #require(try evalLoss(Self.path("mean/as-cls.safetensors"), name: "eval-as-cls"))
        #expect(abs(asCLS - logged) > 1e-4, "the same tensors pooled by cls: \(asCLS) vs \(logged)")
        let encode = try MPIJob.runDirect(["encode", "--weights", Self.path("mean/final.safetensors"), "--images",
                                           Self.path("vqa/images/synpic10000.jpg"), "--texts", "is there a lesion?",
                                           "--tokenizer", Self.path("tok"),
                                           "--out", Self.path("mean/enc.safetensors")])
        try #require(encode.exitCode == 0, "\(encode)")
        let encoded = try Safetensors.read(URL(fileURLWithPath: Self.path("mean/enc.safetensors")))
        #expect(encoded.metadata["pooling"] == "mean" && encoded["fusion.pooled"] != nil)
    }

    /// `--eval-every`: validation during fine-tuning keeps the best weights, whose score a
    /// separate `eval` of best.safetensors on the validation split reproduces.
    @Test func validationKeepsTheBestWeightsAndEvalAgrees() throws {
        try Self.prepare()
        let ft = try MPIJob.run(ranks: 2, ["finetune", "--task", "vqa-rad", "--data", Self.path("vqa"), "--tokenizer",
                                           Self.path("tok"), "--out", Self.path("validated"), "--steps", "6",
                                           "--batch-size", "4", "--eval-every", "2"], timeout: 180)
        try #require(ft.exitCode == 0, "\(ft)")
        let validations = try Self.rows("validated").filter { $0["stage"] as? String == "validation" }
        #expect(validations.compactMap { ($0["step"] as? NSNumber)?.intValue } == [2, 4, 6])
        let best = try #require(validations.max { ($0["val_overall"] as? Double ?? -1) < ($1["val_overall"] as? Double ?? -1) })
        let weights = try Safetensors.read(URL(fileURLWithPath: Self.path("validated/best.safetensors")))
        #expect(weights.metadata["best_metric"] == "overall")
        #expect(Double(weights.metadata["best_score"] ?? "") == best["val_overall"] as? Double)
        let ev = try MPIJob.run(ranks: 2, ["eval", "--task", "vqa-rad", "--data", Self.path("vqa"), "--tokenizer",
                                           Self.path("tok"), "--checkpoint", Self.path("validated/best.safetensors"),
                                           "--split", "validation"], timeout: 120)
        try #require(ev.exitCode == 0, "\(ev)")
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath:
            Self.path("validated/eval-best-vqa-rad-validation.json")))) as? [String: Any]
        #expect(json?["overall"] as? Double == best["val_overall"] as? Double, "eval of best.safetensors: \(String(describing: json))")
        #expect(json?["loss"] != nil)
        // The TensorBoard event file beside metrics.jsonl holds the same numbers.
        let events = try FileManager.default.contentsOfDirectory(atPath: Self.path("validated"))
            .filter { $0.hasPrefix("events.out.tfevents.") }
        try #require(events.count == 1, "\(events)")
        let (_, scalars) = try TensorBoardTests.read(URL(fileURLWithPath: Self.path("validated/\(events[0])")))
        let logged = try Self.rows("validated").filter { $0["stage"] as? String == "finetune" }
            .map { (($0["step"] as? NSNumber)?.intValue ?? -1, Float(($0["loss"] as? Double) ?? .nan)) }
        let fromEvents = scalars.filter { $0.1 == "finetune/loss" }.map { ($0.0, $0.2) }
        #expect(fromEvents.map(\.0) == logged.map(\.0) && fromEvents.map(\.1) == logged.map(\.1), "\(fromEvents) vs \(logged)")
        #expect(scalars.contains { $0.1 == "validation/val_overall" })
        // Constants of the split (its size, the majority baselines) are not drawn as curves.
        #expect(!scalars.contains { $0.1.contains("val_majority") || $0.1 == "validation/val_samples" })
    }

    /// `--early-stop 1`: with a learning rate too small to change any prediction, the second
    /// validation is no better than the first and the run ends there, with its final weights.
    @Test func earlyStoppingEndsTheRunAfterTheGivenPatience() throws {
        try Self.prepare()
        let ft = try MPIJob.run(ranks: 1, ["finetune", "--task", "vqa-rad", "--data", Self.path("vqa"), "--tokenizer",
                                           Self.path("tok"), "--out", Self.path("early"), "--steps", "20",
                                           "--batch-size", "4", "--eval-every", "1", "--early-stop", "1", "--lr", "1e-12"],
                                timeout: 180)
        #expect(ft.exitCode == 0 && ft.output.contains("early stop: 1 validation(s) without a better overall"), "\(ft)")
        let steps = try Self.rows("early").filter { $0["stage"] as? String == "validation" }.compactMap { ($0["step"] as? NSNumber)?.intValue }
        #expect(steps == [1, 2], "\(steps)")
        #expect(FileManager.default.fileExists(atPath: Self.path("early/final.safetensors")))
    }
}
