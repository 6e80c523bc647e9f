import Foundation
import Testing
import TestSupport
import UMDModel

/// A run with global batch G gives the same losses and parameters on 1, 2 and 4 ranks
/// (MODEL_SPEC.md section 10a), with dropout on (its masks are keyed by dataset index) and,
/// for fine-tuning, GM-Coord noise on (keyed by seed and step).
///
/// Tolerances. Losses: ranks sum their terms in another order and the allreduce adds the
/// partial sums in another order again; in Float32 that moves a loss by ~1e-7 relative. Step
/// 1's losses come before any update: within 1e-6 (seen ≤ 8.3e-8 over seeds 0–5). Later
/// steps: within 1e-5 relative.
///
/// Parameters: AdamW's update lr · m̂/(√v̂ + ε) amplifies a summation-order difference δg of a
/// gradient that is nearly zero by up to 1/ε. At the paper's ε = 1e-8 a gradient at the noise
/// level has a normalised update of either sign, so an element may move by up to
/// 2 × (its group's lr) × steps, and how many elements do so — and so how far the later
/// losses drift — depends on the random realisation, not on the code: with the same code,
/// seeds 0, 1, 2 and 5 gave 10–206 elements above 1e-5 and step-3 losses up to 1.5e-5 apart,
/// and a change of dropout masks alone took one seed to 2320 (session 12's note). A test at
/// ε = 1e-8 can therefore only hold the mechanism's bound. So the equivalence runs use
/// `--adam-eps 1e-4` (`boundedAmplification`), which caps the amplification at 1e4: a δg of
/// ~1e-9 then moves a weight by ≤ lr·steps·1e4·δg ≈ 2e-6. ε is applied element by element,
/// the same on every rank count, so it does not touch what these tests check (data split,
/// masks, reductions, sharding). Then every element must be within 1e-5 and 99.9 % within
/// 1e-6, and every step's losses within 1e-5 (seen at ε = 1e-4 over seeds 0, 1, 2, 5 and two
/// dropout keyings: at most 8.8e-7 per element, 0 elements above 1e-6, losses ≤ 2.6e-6).
/// One run pair stays at the paper's ε, held to the mechanism's bound.
@Suite("multi-rank equivalence", .serialized)
struct EquivalenceTests {
    static let root = ScratchDirectory.make("umd-equivalence")

    static func prepare() throws {
        if FileManager.default.fileExists(atPath: root.appendingPathComponent("tok/vocab.json").path) { return }
        for (kind, dir, seed) in [("roco", "roco", "1"), ("vqa-rad", "vqa", "2")] {
            let r = try MPIJob.runDirect(["synth", "--kind", kind, "--out", root.appendingPathComponent(dir).path,
                                          "--count", "30", "--seed", seed, "--image-size", "32"])
            try #require(r.exitCode == 0, "\(r)")
        }
        let r = try MPIJob.runDirect(["tokenizer", "train", "--roco", root.appendingPathComponent("roco").path,
                                      "--vqa-rad", root.appendingPathComponent("vqa").path, "--vocab-size", "400",
                                      "--out", root.appendingPathComponent("tok").path])
        try #require(r.exitCode == 0, "\(r)")
    }

    static func losses(_ run: URL) throws -> [[String: Double]] {
        let text = try String(contentsOf: run.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
        return text.split(separator: "\n").map {
            ((try? JSONSerialization.jsonObject(with: Data($0.utf8))) as? [String: Any] ?? [:])
                .compactMapValues { ($0 as? NSNumber)?.doubleValue }
        }
    }

    /// AdamW's ε of the equivalence runs (see the header): amplification of summation-order
    /// differences bounded by 1e4, so every parameter can be held to `parameterBound`.
    static let boundedAmplification = ["--adam-eps", "1e-4"]

    /// How closely two runs that should be the same run must agree (see the header).
    enum Tolerance {
        /// Runs at `boundedAmplification`: every step's losses (step 1 within 1e-6, later
        /// within 1e-5 relative), every parameter within 1e-5 and 99.9 % within 1e-6.
        case boundedAmplification
        /// Runs at the paper's ε: step 1's losses within 1e-6 and every parameter within the
        /// mechanism's 2 × maxLR × steps — all that holds whatever the realisation.
        case papersEpsilon
        /// Runs at the paper's ε held also to what such runs have shown so far (later losses
        /// within 1e-5, at most 1 in 10⁴ elements above 1e-5, 99.9 % within 1e-6). These hold
        /// for some realisations only; a change of the numbers can flip them (see the header).
        case papersEpsilonAsSeen
    }

    /// Compares run `b` with run `a`, `steps` steps whose largest group learning rate is `maxLR`.
    static func compare(_ a: URL, _ b: URL, lossNames: [String], maxLR: Double, steps: Int,
                        tolerance: Tolerance) throws {
        let la = try losses(a), lb = try losses(b)
        #expect(la.count == lb.count && la.count == steps)
        for (index, (x, y)) in zip(la, lb).enumerated() where index == 0 || tolerance != .papersEpsilon {
            let relative = index == 0 ? 1e-6 : 1e-5
            for name in lossNames {
                let (u, v) = (x[name] ?? .nan, y[name] ?? .nan)
                #expect(abs(u - v) <= relative * max(abs(u), 1e-3), "\(name) at step \(x["step"] ?? 0): \(u) vs \(v)")
            }
        }
        let fa = try Safetensors.read(a.appendingPathComponent("final.safetensors"))
        let fb = try Safetensors.read(b.appendingPathComponent("final.safetensors"))
        #expect(fa.tensors.map(\.name) == fb.tensors.map(\.name))
        var total = 0, close = 0, far = 0
        var worst = (0.0, "")
        for (ta, tb) in zip(fa.tensors, fb.tensors) {
            for (u, v) in zip(ta.floats, tb.floats) {
                let d = Double(abs(u - v))
                total += 1
                if d <= 1e-6 { close += 1 }
                if d > 1e-5 { far += 1 }
                if d > worst.0 { worst = (d, ta.name) }
            }
        }
        let bound = tolerance == .boundedAmplification ? 1e-5 : 2 * maxLR * Double(steps)
        #expect(worst.0 <= bound, "largest difference \(worst.0) in \(worst.1) (bound \(bound))")
        if tolerance == .papersEpsilonAsSeen {
            #expect(Double(far) <= 1e-4 * Double(total), "\(far) of \(total) elements differ by more than 1e-5")
        }
        if tolerance != .papersEpsilon {
            #expect(Double(close) >= 0.999 * Double(total), "\(total - close) of \(total) elements differ by more than 1e-6")
        }
    }

    static var pretrainArgumentsAtThePapersEpsilon: [String] {
        ["pretrain", "--roco", root.appendingPathComponent("roco").path, "--tokenizer", root.appendingPathComponent("tok").path,
         "--steps", "3", "--batch-size", "4", "--lr", "1e-3", "--log-every", "1"]
    }
    static var pretrainArguments: [String] { pretrainArgumentsAtThePapersEpsilon + boundedAmplification }

    static func finetuneArguments(task: String, data: String, batchSize: Int) -> [String] {
        ["finetune", "--task", task, "--data", root.appendingPathComponent(data).path,
         "--tokenizer", root.appendingPathComponent("tok").path, "--steps", "3", "--batch-size", String(batchSize),
         "--lr", "1e-4", "--log-every", "1"] + boundedAmplification
    }

    /// The same 3-step run on each rank count (into `root/name-R`), compared with the first.
    static func sameRun(on rankCounts: [Int], name: String, _ arguments: [String], lossNames: [String],
                        expectOutput: String? = nil, tolerance: Tolerance = .boundedAmplification) throws {
        try prepare()
        var runs: [URL] = []
        for ranks in rankCounts {
            let out = root.appendingPathComponent("\(name)-\(ranks)")
            let r = try MPIJob.run(ranks: ranks, arguments + ["--out", out.path], timeout: 180)
            #expect(r.exitCode == 0 && (expectOutput.map { r.stdout.contains($0) } ?? true), "\(r)")
            runs.append(out)
        }
        for other in runs.dropFirst() {
            try compare(runs[0], other, lossNames: lossNames, maxLR: 5e-3, steps: 3, tolerance: tolerance)
        }
    }

    static let pretrainLosses = ["loss", "mim", "mlm", "feamim", "feamlm", "itm"]
    static let gmCoordValues = ["loss", "rho_t", "k_t", "k_i", "S_t", "S_i"]

    @Test func pretrainGivesTheSameRunOnOneTwoAndFourRanks() throws {
        try Self.sameRun(on: [1, 2, 4], name: "pretrain", Self.pretrainArguments, lossNames: Self.pretrainLosses)
    }

    /// At the paper's ε = 1e-8: step 1's losses as tight, the parameters within the mechanism's bound.
    @Test func pretrainAtThePapersEpsilonStaysWithinTheAmplificationBound() throws {
        try Self.sameRun(on: [1, 2], name: "pretrain-paper-eps", Self.pretrainArgumentsAtThePapersEpsilon,
                         lossNames: Self.pretrainLosses, tolerance: .papersEpsilon)
    }

    /// The same with oneDNN's fp32 products (issue 22), within the same tolerances.
    @Test func pretrainWithOneDNNGivesTheSameRunOnOneAndTwoRanks() throws {
        try Self.sameRun(on: [1, 2], name: "pretrain-onednn", Self.pretrainArguments + ["--matmul", "onednn"],
                         lossNames: Self.pretrainLosses, expectOutput: "matmul onednn")
    }

    @Test func gmCoordFinetuneWithNoiseGivesTheSameRunOnOneTwoAndFourRanks() throws {
        try Self.sameRun(on: [1, 2, 4], name: "finetune",
                         Self.finetuneArguments(task: "vqa-rad", data: "vqa", batchSize: 8) + ["--gm-coord", "on", "--gm-noise", "on"],
                         lossNames: Self.gmCoordValues)
    }

    /// `--gm-contribution ablation` (issue 23): the means the contributions use are the global
    /// batch's (one allreduce), so S_t, S_i, ρ, k and the run are those of one rank.
    @Test func gmCoordAblationContributionsGiveTheSameRunOnOneAndTwoRanks() throws {
        try Self.sameRun(on: [1, 2], name: "finetune-ablation",
                         Self.finetuneArguments(task: "vqa-rad", data: "vqa", batchSize: 8) + ["--gm-contribution", "ablation"],
                         lossNames: Self.gmCoordValues)
    }

    /// `--pooling mean` (issue 23) with the ablation contributions, for retrieval, whose
    /// pairs each pool their own text's tokens: the run of one rank on two.
    @Test func meanPoolingRetrievalGivesTheSameRunOnOneAndTwoRanks() throws {
        try Self.sameRun(on: [1, 2], name: "retrieval-mean",
                         Self.finetuneArguments(task: "roco-retrieval", data: "roco", batchSize: 6)
                            + ["--pooling", "mean", "--gm-contribution", "ablation"],
                         lossNames: ["loss", "rho_t", "k_t", "k_i", "S_t", "S_i"])
    }

    /// Retrieval with dropout on: each rank encodes the texts its images are scored against,
    /// in its own slots, so a text's dropout must be keyed by its data-set index, not by its
    /// slot (keyed by slot, 1 and 2 ranks drifted apart: grad norm 0.30 vs 0.044 at step 2).
    @Test func retrievalFinetuneWithDropoutGivesTheSameRunOnOneAndTwoRanks() throws {
        try Self.sameRun(on: [1, 2], name: "retrieval",
                         Self.finetuneArguments(task: "roco-retrieval", data: "roco", batchSize: 6) + ["--dropout", "0.1"],
                         lossNames: ["loss", "rho_t", "k_t", "k_i"])
    }

    /// Gradient accumulation: K = 2 micro-batches of G give the run of one batch of 2G (the
    /// losses' divisors are the whole step's counts), for pretraining and GM-Coord fine-tuning.
    @Test func accumulatingTwoMicroBatchesEqualsTheDoubleBatch() throws {
        try Self.prepare()
        for (stage, data, names) in [("pretrain", "roco", ["loss", "mim", "mlm", "feamim", "feamlm", "itm"]),
                                     ("finetune", "vqa", ["loss", "rho_t", "k_t", "k_i"])] {
            var runs: [URL] = []
            for (batch, accumulate) in [("8", "1"), ("4", "2")] {
                let out = Self.root.appendingPathComponent("accumulate-\(stage)-\(accumulate)")
                var arguments = [stage, "--tokenizer", Self.root.appendingPathComponent("tok").path, "--out", out.path,
                                 "--steps", "3", "--batch-size", batch, "--accumulate", accumulate, "--lr", "1e-4",
                                 "--log-every", "1"] + Self.boundedAmplification
                arguments += stage == "pretrain" ? ["--roco", Self.root.appendingPathComponent(data).path]
                    : ["--task", "vqa-rad", "--data", Self.root.appendingPathComponent(data).path]
                let r = try MPIJob.run(ranks: 2, arguments, timeout: 180)
                #expect(r.exitCode == 0, "\(r)")
                runs.append(out)
            }
            try Self.compare(runs[0], runs[1], lossNames: names, maxLR: 5e-3, steps: 3, tolerance: .boundedAmplification)
        }
    }

    @Test func aRankWithAnotherConfigurationIsNamed() throws {
        try Self.prepare()
        func arguments(_ lr: String) -> [String] {
            ["pretrain", "--roco", Self.root.appendingPathComponent("roco").path, "--tokenizer",
             Self.root.appendingPathComponent("tok").path, "--out", Self.root.appendingPathComponent("mismatch").path,
             "--steps", "1", "--batch-size", "6", "--lr", lr]
        }
        let r = try MPIJob.runMPMD([arguments("1e-3"), arguments("1e-3"), arguments("2e-3")], timeout: 60)
        #expect(!r.timedOut && r.exitCode != 0, "\(r)")
        #expect(r.output.contains("the run configuration (hash) differs between rank 0"), "\(r)")
        #expect(r.output.contains("and rank 2"), "\(r)")
        #expect(r.output.contains("the settings that differ: lr (rank 0: 0.001, rank 2: 0.002)"), "\(r)")
    }

    /// The timeout is 8 s, not 2: on a machine shared with other test jobs a start-up
    /// collective can wait a few seconds for a slow rank, and the watchdog must fire on the
    /// stalled step, not there.
    @Test func aStalledRankIsNamedByTheWatchdogAndTheJobEnds() throws {
        try Self.prepare()
        let r = try MPIJob.run(ranks: 2, ["pretrain", "--roco", Self.root.appendingPathComponent("roco").path,
                                          "--tokenizer", Self.root.appendingPathComponent("tok").path,
                                          "--out", Self.root.appendingPathComponent("stall").path, "--steps", "3",
                                          "--batch-size", "4", "--stall-timeout", "8", "--debug-stall-rank", "1"],
                               timeout: 90)
        #expect(!r.timedOut && r.exitCode != 0, "\(r)")
        #expect(r.output.contains("rank 0/2: stalled for more than 8 s in step 1"), "\(r)")
    }

    @Test func divergedReplicasAreCaughtByTheChecksum() throws {
        try Self.prepare()
        let r = try MPIJob.run(ranks: 2, ["pretrain", "--roco", Self.root.appendingPathComponent("roco").path,
                                          "--tokenizer", Self.root.appendingPathComponent("tok").path,
                                          "--out", Self.root.appendingPathComponent("diverge").path, "--steps", "4",
                                          "--batch-size", "4", "--consistency-every", "2", "--debug-diverge-rank", "1"],
                               timeout: 60)
        #expect(!r.timedOut && r.exitCode != 0, "\(r)")
        #expect(r.output.contains("the student weights after step 1 (replicas diverged) differs between rank 0"), "\(r)")
    }

    @Test func stepBenchmarkRunsOnTwoRanks() throws {
        let r = try MPIJob.run(ranks: 2, ["bench", "step", "--preset", "tiny", "--local-batch", "2", "--steps", "1", "--phases"],
                               timeout: 120)
        #expect(r.exitCode == 0, "\(r)")
        for line in ["weak-scaling efficiency", "waiting on communication", "gradient sync alone", "where a step's time goes",
                     "student forward", "teacher forward", "backward", "AdamW", "zero gradients", "matmul utilisation", "against the fastest backend on this CPU"] {
            #expect(r.stdout.contains(line), "\(r)")
        }
        // The FLOP count from the shapes, plus the attention scores backward recomputes (it
        // keeps no probabilities), equals the products the step made (the patch embedding of
        // the masked pass is the one product the spec and the code both do on all N patches,
        // so nothing is left over). Printed to 6 significant digits.
        let flops = try #require(r.stdout.split(separator: "\n").first { $0.contains("matmul FLOPs per step") })
        let numbers = flops.split(whereSeparator: { !"0123456789.e-".contains($0) }).compactMap { Double($0) }
        #expect(numbers.count == 3 && numbers[1] > 0 && abs(numbers[0] + numbers[1] - numbers[2]) <= 2e-5 * numbers[2],
                "\(flops)")
        // The element-wise kernels counted per element, and the ceiling at their in-L1 rates:
        // a utilisation in (0, 100] % built from those counts.
        #expect(r.stdout.contains("M elements") && r.stdout.contains("ns each"), "\(r)")
        let ceiling = try #require(r.stdout.split(separator: "\n").first { $0.contains("every element-wise kernel at its rate in L1") })
        let percent = try #require(ceiling.split(separator: "~").last.flatMap { Double($0.prefix { "0123456789.".contains($0) }) })
        #expect(percent > 0 && percent <= 100, "\(ceiling)")
        let finetune = try MPIJob.run(ranks: 2, ["bench", "step", "--preset", "tiny", "--stage", "finetune", "--local-batch", "2",
                                                 "--steps", "1", "--phases"], timeout: 120)
        #expect(finetune.exitCode == 0 && finetune.stdout.contains("GM-Coord on"), "\(finetune)")
        #expect(finetune.stdout.contains("matmul utilisation"), "\(finetune)")
    }

    /// The task paths the demo does not take: MedICaT pretraining, MELINDA classification and
    /// ROCO retrieval, each fine-tuned and evaluated on 2 ranks (scores gathered on rank 0).
    @Test func everyTaskTrainsAndEvaluatesOnTwoRanks() throws {
        try Self.prepare()
        let tok = Self.root.appendingPathComponent("tok").path
        for (kind, dir) in [("melinda", "melinda"), ("medicat", "medicat")] {
            let r = try MPIJob.runDirect(["synth", "--kind", kind, "--out", Self.root.appendingPathComponent(dir).path,
                                          "--count", "30", "--image-size", "32"])
            #expect(r.exitCode == 0, "\(r)")
        }
        let pre = try MPIJob.run(ranks: 2, ["pretrain", "--roco", Self.root.appendingPathComponent("roco").path,
                                            "--medicat", Self.root.appendingPathComponent("medicat").path, "--medicat-holdout", "3",
                                            "--tokenizer", tok, "--out", Self.root.appendingPathComponent("tasks-pre").path,
                                            "--steps", "2", "--batch-size", "4"], timeout: 120)
        // 27 radiology captions + 18 references of ≥ 3 words (read as M3AE reads them) − 2 × 3 held out.
        #expect(pre.exitCode == 0 && pre.stdout.contains("MedICaT train: 39 samples accepted"), "\(pre)")
        for (task, data, metric) in [("melinda", "melinda", "macro_f1"), ("roco-retrieval", "roco", "i2t_R@1")] {
            let out = Self.root.appendingPathComponent("tasks-\(task)")
            let ft = try MPIJob.run(ranks: 2, ["finetune", "--task", task, "--data", Self.root.appendingPathComponent(data).path,
                                               "--tokenizer", tok, "--init", Self.root.appendingPathComponent("tasks-pre/final.safetensors").path,
                                               "--out", out.path, "--steps", "2", "--batch-size", "4"], timeout: 120)
            #expect(ft.exitCode == 0, "\(ft)")
            let ev = try MPIJob.run(ranks: 2, ["eval", "--task", task, "--data", Self.root.appendingPathComponent(data).path,
                                               "--tokenizer", tok, "--checkpoint", out.appendingPathComponent("final.safetensors").path],
                                    timeout: 120)
            #expect(ev.exitCode == 0 && ev.stdout.contains(metric), "\(ev)")
            let json = out.appendingPathComponent("eval-final-\(task)-test.json")
            // Numbers by metric name, and (classification) the confusion counts beside them.
            let metrics = (try? JSONSerialization.jsonObject(with: Data(contentsOf: json))) as? [String: Any]
            #expect(metrics?["samples"] as? Double == 3 || metrics?["pairs"] as? Double == 3, "\(String(describing: metrics))")
            if task == "melinda" {
                #expect(metrics?["confusion"] is [String: Any], "\(String(describing: metrics))")
                // The paper's Table 5 metrics (issue 23): sensitivity and specificity beside accuracy, F1, AUC.
                #expect(ev.stdout.contains("sensitivity") && ev.stdout.contains("specificity")
                        && metrics?["sensitivity"] is Double, "\(ev)")
            }
        }
    }

    /// A weights file says which preset, image size, text length and classes it was made
    /// with: `eval` of a `small` model needs no --preset, and a contradicting one is named.
    @Test func evalReadsThePresetFromTheWeights() throws {
        try Self.prepare()
        let out = Self.root.appendingPathComponent("small-vqa")
        let vqa = Self.root.appendingPathComponent("vqa").path, tok = Self.root.appendingPathComponent("tok").path
        let ft = try MPIJob.run(ranks: 1, ["finetune", "--task", "vqa-rad", "--data", vqa, "--tokenizer", tok,
                                           "--preset", "small", "--out", out.path, "--steps", "1", "--batch-size", "2"],
                                timeout: 120)
        try #require(ft.exitCode == 0, "\(ft)")
        #expect(ft.stdout.contains("preset small, 1 rank(s), 64 px, L = 32"), "\(ft)")
        let weights = out.appendingPathComponent("final.safetensors").path
        let ev = try MPIJob.run(ranks: 1, ["eval", "--task", "vqa-rad", "--data", vqa, "--tokenizer", tok,
                                           "--checkpoint", weights], timeout: 120)
        #expect(ev.exitCode == 0 && ev.stdout.contains("preset small, 64 px, L = 32"), "\(ev)")
        let wrong = try MPIJob.run(ranks: 1, ["eval", "--task", "vqa-rad", "--data", vqa, "--tokenizer", tok,
                                              "--checkpoint", weights, "--preset", "tiny"], timeout: 60)
        #expect(wrong.exitCode != 0 && wrong.output.contains("--preset tiny contradicts \(weights), which holds a small model"),
                "\(wrong)")
    }

    @Test func aDamagedImageStopsTheRunByNameOrIsSkippedUpFront() throws {
        try Self.prepare()
        let roco = Self.root.appendingPathComponent("roco-damaged")
        let r = try MPIJob.runDirect(["synth", "--kind", "roco", "--out", roco.path, "--count", "12", "--image-size", "32"])
        #expect(r.exitCode == 0)
        // Cut one image inside its scan data: the header is fine, the body is not.
        let image = roco.appendingPathComponent("train/radiology/images/ROCO_00003.jpg")
        let bytes = try Data(contentsOf: image)
        try bytes.prefix(bytes.count * 3 / 4).write(to: image)
        let args = ["pretrain", "--roco", roco.path, "--tokenizer", Self.root.appendingPathComponent("tok").path,
                    "--out", Self.root.appendingPathComponent("damaged").path, "--steps", "3", "--batch-size", "8"]
        let failed = try MPIJob.run(ranks: 2, args, timeout: 60)
        #expect(!failed.timedOut && failed.exitCode != 0, "\(failed)")
        #expect(failed.output.contains("ROCO_00003.jpg: corrupt image: JPEG") && failed.output.contains("--check-images"), "\(failed)")
        let skipped = try MPIJob.run(ranks: 2, args + ["--check-images"], timeout: 60)
        #expect(skipped.exitCode == 0, "\(skipped)")
        #expect(skipped.output.contains("ROCO train: 9 samples accepted, 1 skipped") && skipped.output.contains("ROCO_00003.jpg"),
                "\(skipped)")
    }

    @Test func aBatchThatDoesNotSplitOverTheRanksStopsWithAClearError() throws {
        try Self.prepare()
        // The batch does not split over 3 ranks: every rank reports it, nobody hangs.
        let r = try MPIJob.run(ranks: 3, ["pretrain", "--roco", Self.root.appendingPathComponent("roco").path,
                                          "--tokenizer", Self.root.appendingPathComponent("tok").path,
                                          "--out", Self.root.appendingPathComponent("bad").path, "--steps", "1",
                                          "--batch-size", "4"], timeout: 60)
        #expect(!r.timedOut && r.exitCode != 0, "\(r)")
        #expect(r.output.contains("does not split evenly over 3 ranks"), "\(r)")
    }
}
