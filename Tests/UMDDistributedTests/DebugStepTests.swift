import Foundation
import Testing
@testable import UMDDistributed
@testable import UMDModel

/// debug-step writes the MODEL_SPEC.md section 12 file; its update arithmetic is checked
/// here from the file alone, as an external tool would.
struct DebugStepTests {
    func run(_ configure: (inout RunConfiguration) -> Void) throws -> Safetensors.File {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("umd-debug-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        var o = DebugStep.defaults
        o.out = url.path
        o.vocabularySize = 50
        configure(&o)
        try DebugStep.run(o)
        return try Safetensors.read(url)
    }

    /// With fresh moments (t = 1): m̂ = g, v̂ = g², so p' = p − lr (g / (|g| + ε) + wd·p).
    func checkAdamW(_ file: Safetensors.File, stage: Stage, sourceLocation: SourceLocation = #_sourceLocation) {
        let lrBase = file["lr.base"]!.floats[0], lrFusion = file["lr.fusion"]!.floats[0], lrHeads = file["lr.heads"]!.floats[0]
        var checked = 0
        for t in file.tensors where t.name.hasPrefix("param.") {
            let name = String(t.name.dropFirst(6))
            let lr = name.hasPrefix("fusion.") ? lrFusion
                : (name.hasPrefix("mim.") || name.hasPrefix("mlm.") || name.hasPrefix("itm.") || name.hasPrefix("head.")) ? lrHeads
                : lrBase
            let decayed = !(name.hasSuffix(".bias") || name.contains(".ln") || name.hasSuffix("mlm.bias"))
            let p = t.floats, g = file["grad." + name]!.floats, after = file["param_after." + name]!.floats
            for i in stride(from: 0, to: p.count, by: max(1, p.count / 7)) {
                let update = g[i] / (abs(g[i]) + 1e-8) + (decayed ? 0.01 * p[i] : 0)
                let expected = p[i] - lr * update
                #expect(abs(after[i] - expected) <= 1e-6 * max(1, abs(expected)), "\(name)[\(i)]",
                        sourceLocation: sourceLocation)
                checked += 1
            }
        }
        #expect(checked > 100, sourceLocation: sourceLocation)
    }

    @Test func pretrainFileHoldsEveryNameAndConsistentUpdates() throws {
        let file = try run { $0.stage = .pretrain; $0.atStep = 2; $0.steps = 10; $0.lr = 1e-3 }
        for name in ["input.pixels", "input.text_ids", "input.attention", "input.masked_text_ids", "input.mlm_labels",
                     "input.ids_keep", "input.itm_image_index", "input.itm_labels", "loss.mim", "loss.mlm",
                     "loss.feamim", "loss.feamlm", "loss.itm", "loss.total", "lr.base", "lr.fusion", "lr.heads",
                     "config.heads", "config.dec_heads", "config.alpha", "config.beta", "config.ema", "config.dropout",
                     "config.at_step", "config.total_steps", "config.peak_lr", "config.schedule", "config.stage",
                     "config.task", "param.itm.weight", "teacher.fea.text.weight", "teacher_after.vision.cls_token"] {
            #expect(file[name] != nil, "missing \(name)")
        }
        #expect(file["param.head.fc1.weight"] == nil && file["grad.head.fc1.weight"] == nil)
        #expect(file["input.pixels"]!.shape == [4, 3, 32, 32] && file["input.ids_keep"]!.shape == [4, 4])
        // Warm-up of 1 step (floor(0.1 · 10)), so step 2 is on the linear decay: (10 − 2) / 9.
        #expect(abs(file["lr.base"]!.floats[0] - 1e-3 * 8 / 9) < 1e-9)
        #expect(file["lr.fusion"]!.floats[0] == 5 * file["lr.base"]!.floats[0])
        let losses = ["mim", "mlm", "feamim", "feamlm", "itm"].map { Double(file["loss." + $0]!.floats[0]) }
        let total = 0.5 * (losses[0] + losses[1]) + 0.5 * (losses[2] + losses[3]) + losses[4]
        #expect(abs(Double(file["loss.total"]!.floats[0]) - total) < 1e-5)
        checkAdamW(file, stage: .pretrain)
        // EMA: teacher_after = 0.995 teacher + 0.005 param_after.
        for t in file.tensors where t.name.hasPrefix("teacher.") {
            let name = String(t.name.dropFirst(8))
            let after = file["teacher_after." + name]!.floats, student = file["param_after." + name]!.floats
            // Float32 arithmetic of the same formula: at most a couple of ulps apart (1 ulp = 1.2e-7 at 1).
            for i in stride(from: 0, to: t.count, by: max(1, t.count / 5)) {
                let expected = 0.995 * t.floats[i] + 0.005 * student[i]
                #expect(abs(after[i] - expected) <= 2.5e-7 * max(1, abs(expected)), "\(name)[\(i)]")
            }
        }
        // ITM: about half the samples swapped, labels agree with the image index.
        let images = file["input.itm_image_index"]!.ints, labels = file["input.itm_labels"]!.ints
        #expect(labels.filter { $0 == 0 }.count == 2)
        for n in 0..<4 { #expect((images[n] == Int32(n)) == (labels[n] == 1)) }
    }

    @Test func calibTrainsNeitherITMNorPoolers() throws {
        let file = try run { $0.stage = .calib; $0.headKind = .classification }
        #expect(file["param.itm.weight"] == nil && file["grad.fusion.text_pooler.weight"] == nil)
        #expect(file["loss.itm"] == nil && file["input.itm_labels"] == nil)
        #expect(file["config.task"]!.floats[0] == 2 && file["config.stage"]!.floats[0] == 1)
        #expect(file["config.schedule"]!.floats[0] == 1)
        checkAdamW(file, stage: .calib)
    }

    @Test("finetune writes GM-Coord values and the head", arguments: [TaskKind.vqa, .retrieval])
    func finetune(task: TaskKind) throws {
        let file = try run { $0.stage = .finetune; $0.headKind = task; $0.batchSize = 5; $0.atStep = 1 }
        for name in ["gm.S_t", "gm.S_i", "gm.rho_t", "gm.rho_i", "gm.k_t", "gm.k_i", "loss.task"] {
            #expect(file[name] != nil, "missing \(name)")
        }
        #expect(file["teacher.vision.cls_token"] == nil && file["param.mim.embed.weight"] == nil)
        let rhoT = Double(file["gm.rho_t"]!.floats[0]), kT = Double(file["gm.k_t"]!.floats[0])
        #expect(rhoT > 1 ? abs(kT - (1 - tanh(0.1 * rhoT))) < 1e-6 : kT == 1)
        if task == .retrieval {
            let negatives = file["input.retrieval_negatives"]!
            #expect(negatives.shape == [5, 4])
            let rows = negatives.ints
            for n in 0..<5 {
                let row = Array(rows[(n * 4)..<(n * 4 + 4)])
                #expect(Set(row).count == 4 && !row.contains(Int32(n)), "negatives of \(n): \(row)")
            }
            #expect(file["param.head.score.weight"] != nil)
        } else {
            #expect(file["input.labels"]!.shape == [5] && file["param.head.fc2.weight"]!.shape == [5, 128])
        }
        // The downstream heads get x50.
        #expect(abs(file["lr.heads"]!.floats[0] - 50 * file["lr.base"]!.floats[0]) < 1e-12)
        checkAdamW(file, stage: .finetune)
    }

    /// `--matmul onednn` (issue 22): the same step's losses and gradients as OpenBLAS's to
    /// float rounding (measured 3e-7 relative overall), and its update passes the AdamW check.
    @Test("debug-step with oneDNN's products", arguments: [Stage.pretrain, .finetune])
    func oneDNNGivesTheReferenceStepToRounding(stage: Stage) throws {
        func configure(_ o: inout RunConfiguration) {
            o.stage = stage; o.headKind = stage == .finetune ? .vqa : nil; o.lr = 1e-3
        }
        let reference = try run(configure)
        Matmul.threadBackend = try OneDNNBackend()
        defer { Matmul.threadBackend = nil }
        let onednn = try run(configure)
        checkAdamW(onednn, stage: stage)
        var difference = 0.0, norm = 0.0
        for t in reference.tensors where t.name.hasPrefix("grad.") || t.name.hasPrefix("loss.") {
            let a = t.floats, b = try #require(onednn[t.name]).floats
            for (x, y) in zip(a, b) { difference += Double(x - y) * Double(x - y); norm += Double(x) * Double(x) }
        }
        #expect(norm > 0 && (difference / norm).squareRoot() < 1e-5, "relative difference \((difference / norm).squareRoot())")
    }

    /// `--pooling mean` (issue 23): the same file format, `config.pooling` = 1 recorded, the
    /// poolers neither in `param.*` nor `grad.*` (not reached, not trained), the update
    /// checks; from fresh weights and from weights with every tensor moved (a stand-in for
    /// trained ones, loaded with --init-from). The head's input differs from `cls`'s, so the
    /// loss does too.
    @Test("debug-step with --pooling mean", arguments: [TaskKind.vqa, .classification, .retrieval])
    func meanPooling(task: TaskKind) throws {
        func configure(_ o: inout RunConfiguration) {
            o.stage = .finetune; o.headKind = task; o.batchSize = 4; o.lr = 1e-3
        }
        let cls = try run(configure)
        let mean = try run { configure(&$0); $0.pooling = .mean }
        #expect(cls["config.pooling"]!.floats == [0] && mean["config.pooling"]!.floats == [1])
        #expect(cls["grad.fusion.text_pooler.weight"] != nil && cls["param.fusion.image_pooler.bias"] != nil)
        for name in ["fusion.text_pooler.weight", "fusion.text_pooler.bias", "fusion.image_pooler.weight",
                     "fusion.image_pooler.bias"] {
            #expect(mean["param." + name] == nil && mean["grad." + name] == nil, "\(name) is not trained with mean pooling")
        }
        #expect(Set(cls.tensors.map(\.name)).subtracting(mean.tensors.map(\.name)).allSatisfy { $0.contains("_pooler.") })
        #expect(cls["loss.task"]!.floats != mean["loss.task"]!.floats)
        checkAdamW(mean, stage: .finetune)
        // With the ablation contributions too: recorded, the same loss, other S_u — except for
        // retrieval, whose linear score head gives both variants the same S_u (spec section 9).
        let ablation = try run { configure(&$0); $0.pooling = .mean; $0.gmContribution = .ablation }
        #expect(ablation["config.gm_contribution"]!.floats == [1] && mean["config.gm_contribution"]!.floats == [0])
        #expect(ablation["loss.task"]!.floats == mean["loss.task"]!.floats)
        let (sA, sR) = (ablation["gm.S_t"]!.floats[0], mean["gm.S_t"]!.floats[0])
        if task == .retrieval { #expect(abs(sA - sR) <= 1e-5 * sR, "\(sA) vs \(sR)") } else { #expect(abs(sA - sR) > 1e-4, "\(sA) vs \(sR)") }
        checkAdamW(ablation, stage: .finetune)

        // From weights that are not the seed's: every student tensor moved.
        let weights = FileManager.default.temporaryDirectory.appendingPathComponent("umd-pooling-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: weights) }
        let model = try StageModel(stage: .finetune, task: task, classes: 5, preset: .tiny,
                                   vocabularySize: 50, pooling: .mean, seed: 11)
        for i in 0..<model.student.count { model.student.values[i] += 0.01 * Float((i * 7919) % 13 - 6) }
        try ModelIO.export(student: model.student, to: weights)
        let fromWeights = try run { configure(&$0); $0.pooling = .mean; $0.initFrom = weights.path }
        #expect(fromWeights["param.text.word_embed"]!.floats != mean["param.text.word_embed"]!.floats)
        #expect(fromWeights["config.pooling"]!.floats == [1] && fromWeights["grad.fusion.text_pooler.weight"] == nil)
        checkAdamW(fromWeights, stage: .finetune)
        let ablationFromWeights = try run { configure(&$0); $0.pooling = .mean; $0.gmContribution = .ablation
                                            $0.initFrom = weights.path }
        #expect(ablationFromWeights["param.text.word_embed"]!.floats == fromWeights["param.text.word_embed"]!.floats)
        #expect(ablationFromWeights["config.gm_contribution"]!.floats == [1])
        checkAdamW(ablationFromWeights, stage: .finetune)
    }

    @Test func sameSeedSameFile() throws {
        let a = try run { $0.stage = .pretrain; $0.seed = 7 }
        let b = try run { $0.stage = .pretrain; $0.seed = 7 }
        #expect(a.tensors == b.tensors)
    }

    /// debug-step's flags come from the settings table; the spellings of earlier versions
    /// (an external checker calls them) mean what they meant.
    @Test func earlierFlagSpellingsAreAliases() throws {
        let old = try Settings.configuration(.tool(.debugStep), arguments: [
            "--stage", "finetune", "--dataset", "vqa-rad", "--data", "/d", "--init-from", "w.safetensors",
            "--total-steps", "7", "--at-step", "3", "--task", "vqa", "--out", "f"], defaults: DebugStep.defaults)
        #expect(old.stage == .finetune && old.task == .vqaRad && old.data == "/d" && old.initFrom == "w.safetensors")
        #expect(old.steps == 7 && old.atStep == 3 && old.headKind == .vqa && old.taskKind == .vqa && old.out == "f")
        // The stage decides what belongs, whatever the order on the line.
        let beta = try Settings.configuration(.tool(.debugStep), arguments: ["--beta", "0.3", "--stage", "finetune"],
                                              defaults: DebugStep.defaults)
        #expect(beta.beta == 0.3)
        #expect { try Settings.configuration(.tool(.debugStep), arguments: ["--beta", "0.3"], defaults: DebugStep.defaults) }
            throws: { "\($0)".contains("`beta` is a setting of finetune steps, not of a pretrain step") }
        // A training setting the tool does not take, and a tool setting training does not take.
        #expect { try Settings.configuration(.tool(.debugStep), arguments: ["--checkpoint-every", "3"],
                                             defaults: DebugStep.defaults) }
            throws: { "\($0)".contains("`checkpoint-every` is a setting of pretrain, calib, finetune, not of debug-step") }
        #expect { try Settings.configuration(stage: .pretrain, arguments: ["--at-step", "3"]) }
            throws: { "\($0)".contains("`at-step` is a setting of debug-step, not of pretrain") }
        // Training refuses a head kind where it needs a data set.
        var training = try Settings.configuration(stage: .finetune, arguments: ["--task", "vqa", "--data", "/d",
                                                                                "--tokenizer", "/t"])
        #expect { try training.validate() } throws: { "\($0)".contains("names a kind of head, not a data set") }
        training.headKind = nil
        training.task = .slake
        try training.validate()
    }

    @Test func aStageWithoutItsTaskIsAClearError() {
        #expect { try run { $0.stage = .finetune } } throws: { "\($0)".contains("needs --task") }
    }
}

import UMDData

/// debug-step on real batches read from generated data sets in their real formats.
struct DebugStepRealDataTests {
    @Test func pretrainAndVQAFinetuneReadTheirBatchesFromDisk() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("umd-ds-real-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        try SyntheticDataset.write(kind: .roco, to: root.appendingPathComponent("roco"), count: 20, seed: 1, imageSize: 40)
        try SyntheticDataset.write(kind: .vqaRad, to: root.appendingPathComponent("vqa"), count: 20, seed: 2, imageSize: 40)
        let captions = try ROCODataset.load(root: root.appendingPathComponent("roco"), split: .train).samples.map(\.text)
        let trained = TokenizerTrainer.train(texts: captions, vocabularySize: 400)
        try ByteLevelBPE.write(vocabulary: trained.vocabulary, merges: trained.merges, to: root.appendingPathComponent("tok"))
        let tokenizer = try ByteLevelBPE(directory: root.appendingPathComponent("tok"))

        let out = root.appendingPathComponent("p.safetensors")
        var o = DebugStep.defaults
        o.out = out.path
        o.roco = root.appendingPathComponent("roco").path; o.tokenizer = root.appendingPathComponent("tok").path; o.batchSize = 4
        try DebugStep.run(o)
        let file = try Safetensors.read(out)
        let ids = file["input.text_ids"]!.ints
        let L = ModelPreset.tiny.textLength
        let first = tokenizer.decode(Array(ids[0..<L]))
        #expect(captions.contains { $0.hasPrefix(first) }, "the batch's first text «\(first)» is a truncated caption")
        #expect(file["param.text.word_embed"]!.shape == [tokenizer.vocabularySize, 64])

        var f = DebugStep.defaults
        f.out = out.path
        f.stage = .finetune; f.task = .vqaRad; f.data = root.appendingPathComponent("vqa").path
        f.tokenizer = root.appendingPathComponent("tok").path; f.batchSize = 6
        try DebugStep.run(f)
        let ft = try Safetensors.read(out)
        let answers = ft["param.head.fc2.weight"]!.shape[0]
        #expect(ft["input.labels"]!.ints.allSatisfy { $0 >= 0 && Int($0) < answers })
        #expect(answers > 5, "the head has one output per distinct normalised answer")
    }
}
