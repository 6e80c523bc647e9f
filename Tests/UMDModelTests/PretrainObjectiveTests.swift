import Foundation
import Testing
@testable import UMDModel

/// Whole-model checks of MR-Pretrain and TD-Calib at the tiny preset.
struct PretrainObjectiveTests {
    /// The per-group directional check (GradientChecker.swift) plus element checks at each
    /// group's two largest gradients.
    func checkGroups(_ objective: PretrainObjective, student: ParameterStore, teacher: ParameterStore,
                     batch: PretrainBatch, groups: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        func total() -> Double {
            objective.step(student: student, teacher: teacher, batch: batch, computeGradients: false).total
        }
        let grads = checkGroupDirections(student, groups: groups, loss: total,
                                         gradients: { objective.step(student: student, teacher: teacher, batch: batch) },
                                         sourceLocation: sourceLocation)
        for group in groups {
            let offsets = student.views(withPrefix: group).flatMap { Array($0.range) }
            for o in offsets.sorted(by: { abs(grads[$0]) > abs(grads[$1]) }).prefix(2) {
                let saved = student.values[o]
                student.values[o] = saved + 1e-2; let p = total()
                student.values[o] = saved - 1e-2; let m = total()
                student.values[o] = saved
                let num = (p - m) / 2e-2
                #expect(abs(Double(grads[o]) - num) <= 5e-4 + 3e-2 * max(abs(num), abs(Double(grads[o]))),
                        "\(group) element \(o): analytic \(grads[o]) vs numeric \(num)", sourceLocation: sourceLocation)
            }
        }
    }

    func makeModel(seed: UInt64 = 11, preset: ModelPreset = .tiny) -> (UMDParameters, ParameterStore, ParameterStore) {
        let params = UMDParameters(SyntheticBatch.config(preset: preset))
        let student = ParameterStore(layout: params.layout)
        params.initialize(student, seed: seed)
        // Larger weights than the N(0, 0.02) init make every path carry a measurable gradient.
        TestData.randomize(student, seed: seed, scale: 0.08)
        let teacher = ParameterStore(layout: params.layout, withGradients: false) {
            UMDParameters.isTeacherTensor($0.name)
        }
        teacher.copyValues(from: student)
        // A teacher that differs from the student gives FeaMIM/FeaMLM a non-zero gradient.
        for i in 0..<teacher.count { teacher.values[i] += 0.01 * Float(CounterRandom.normal(77, UInt64(i))) }
        return (params, student, teacher)
    }

    @Test func pretrainGradientMatchesFiniteDifferencesForEveryGroup() {
        let (params, student, teacher) = makeModel()
        let objective = PretrainObjective(params: params, includeITM: true)
        checkGroups(objective, student: student, teacher: teacher, batch: SyntheticBatch.pretrain(batch: 2),
                    groups: ["vision.patch_embed", "vision.pos_embed", "vision.cls_token", "vision.blocks", "vision.ln",
                             "text.word_embed", "text.pos_embed", "text.type_embed", "text.ln_embed", "text.layers",
                             "fusion.text_proj", "fusion.image_proj", "fusion.type_embed", "fusion.text_layers",
                             "fusion.image_layers", "fusion.text_pooler", "fusion.image_pooler",
                             "mim.embed", "mim.mask_token", "mim.blocks", "mim.ln", "mim.out",
                             "mlm.dense", "mlm.ln", "mlm.out", "mlm.bias", "fea.text", "fea.image", "itm"])
    }

    /// A custom preset (issue 25: `convert --preset custom`) of sizes no named preset has —
    /// head width 12, decoder head width 8 with 3 heads, 4 x 4 patches of 4 px, L = 10 — is
    /// differentiated as correctly as tiny.
    @Test func aCustomPresetsGradientMatchesFiniteDifferences() throws {
        let preset = try ModelPreset.parse("custom:width=48,heads=4,patch=4,image=16,vision-layers=1,text-layers=2,"
                                           + "fusion-layers=1,decoder-width=24,decoder-layers=1,decoder-heads=3,"
                                           + "projection=20,text-length=10,max-text-length=12")
        let (params, student, teacher) = makeModel(seed: 13, preset: preset)
        let objective = PretrainObjective(params: params, includeITM: true)
        checkGroups(objective, student: student, teacher: teacher, batch: SyntheticBatch.pretrain(batch: 2, preset: preset),
                    groups: ["vision.patch_embed", "vision.pos_embed", "vision.blocks", "text.layers", "fusion.text_layers",
                             "fusion.image_layers", "mim.blocks", "mim.out", "mlm.out", "fea.text", "fea.image", "itm"])
    }

    @Test func calibGradientMatchesFiniteDifferencesAndSkipsITMAndPoolers() {
        let (params, student, teacher) = makeModel(seed: 12)
        let objective = PretrainObjective(params: params, includeITM: false)
        let batch = SyntheticBatch.pretrain(batch: 3, seed: 9, itm: false)
        checkGroups(objective, student: student, teacher: teacher, batch: batch,
                    groups: ["vision.", "text.", "fusion.text_layers", "fusion.image_layers", "fusion.text_proj",
                             "mim.", "mlm.", "fea."])
        // No calib loss reaches itm or the poolers (MODEL_SPEC.md section 8a).
        student.zeroGradients()
        objective.step(student: student, teacher: teacher, batch: batch)
        for prefix in ["itm", "fusion.text_pooler", "fusion.image_pooler"] {
            for view in student.views(withPrefix: prefix) {
                #expect(UnsafeBufferPointer(start: student.grads + view.offset, count: view.count).allSatisfy { $0 == 0 },
                        "\(view.name) received a gradient in calibration")
            }
        }
    }

    @Test func emaUpdateEqualsTheFormulaOverSeveralSteps() {
        let (params, student, teacher) = makeModel(seed: 13)
        let lambda: Float = 0.995
        var expected = (0..<teacher.count).map { teacher.values[$0] }
        for step in 0..<4 {
            for i in 0..<student.count { student.values[i] += 0.01 * Float(CounterRandom.normal(UInt64(step), UInt64(i))) }
            EMA.update(teacher: teacher, student: student, lambda: lambda)
            for view in teacher.views {
                let s = student.value(view.id)
                for i in 0..<view.count { expected[view.offset + i] = lambda * expected[view.offset + i] + (1 - lambda) * s[i] }
            }
        }
        for i in 0..<teacher.count { #expect(teacher.values[i] == expected[i]) }
        _ = params
    }
}

/// Every preset's layout holds the spec's tensors; base matches the paper's model size.
struct PresetLayoutTests {
    @Test func presetsDeclareTheSpecNamesAndSizes() throws {
        for preset in ModelPreset.all {
            let params = UMDParameters(ModelConfig(preset: preset, vocabularySize: preset.vocabularySize ?? 1000))
            let names = Set(params.layout.specs.map(\.name))
            for name in ["vision.patch_embed.weight", "vision.cls_token", "vision.pos_embed", "vision.ln_pre.weight",
                         "vision.blocks.0.attn.q.weight", "vision.blocks.0.mlp.fc2.bias", "vision.ln_post.bias",
                         "text.word_embed", "text.pos_embed", "text.type_embed", "text.ln_embed.weight",
                         "text.layers.0.ln_ffn.bias", "fusion.text_proj.weight", "fusion.type_embed",
                         "fusion.image_layers.0.cross_attn.o.bias", "fusion.text_pooler.weight", "mim.mask_token",
                         "mim.blocks.0.ln2.weight", "mim.out.bias", "mlm.out.weight", "mlm.bias", "fea.image.weight",
                         "itm.weight"] {
                #expect(names.contains(name), "\(preset.name) lacks \(name)")
            }
            #expect(!names.contains("vision.patch_embed.bias") && !names.contains("mlm.out.bias"))
            #expect(params.layout.specs.filter { $0.name.hasPrefix("vision.blocks.") && $0.name.hasSuffix(".ln1.weight") }
                        .count == preset.visionLayers)
        }
        // A custom preset's name is its whole specification: parsed back, it is the same preset.
        let custom = try ModelPreset.parse("custom:width=48,heads=4,patch=4,image=16,vision-layers=1,text-layers=2,"
                                           + "fusion-layers=1,decoder-width=24,decoder-layers=1,decoder-heads=3,"
                                           + "projection=20,text-length=10,max-text-length=12")
        #expect(try ModelPreset.parse(custom.name) == custom && custom.isCustom && custom.vocabularySize == nil)
        #expect(custom.patchCount == 16 && custom.keptPatchCount == 4)
        #expect(throws: ModelError.self) { try ModelPreset.parse(custom.name.replacingOccurrences(of: "heads=4", with: "heads=5")) }
        #expect(throws: ModelError.self) { try ModelPreset.parse("custom:width=48") }
        #expect(throws: ModelError.self) { try ModelPreset.parse("large") }
        let base = UMDParameters(ModelConfig(preset: .base))
        let count = { (prefix: String) in base.layout.specs.filter { $0.name.hasPrefix(prefix) }.reduce(0) { $0 + $1.count } }
        // CLIP ViT-B/16 with 11 blocks at 288 px: 11 × 7,087,872 + patch 589,824 + positions 325 × 768
        // + CLS + two LayerNorms = 78,809,856. RoBERTa-base: 12 × 7,087,872 + 50265 × 768 words
        // + 514 × 768 positions + 1 type row + LayerNorm = 124,055,040 (RoBERTa's published 124.6M
        // also counts its pooler, which UMD replaces with the fusion poolers).
        #expect(count("vision.") == 78_809_856, "vision: \(count("vision."))")
        #expect(count("text.") == 124_055_040, "text: \(count("text."))")
        #expect(base.layout.specs.first { $0.name == "text.pos_embed" }?.shape == [514, 768])
        #expect(base.layout.specs.first { $0.name == "vision.pos_embed" }?.shape == [325, 768])
    }
}
