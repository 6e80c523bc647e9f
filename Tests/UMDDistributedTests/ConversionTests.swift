import Foundation
import Testing
import TestSupport
import UMDModel

/// `convert` + `encode` against fixtures made by the real `transformers` library
/// (scripts/fixtures/make_converter_fixtures.py): a random CLIPVisionModel with 3 blocks
/// (tiny keeps 2), the same tower under OpenAI/open_clip names in F16, a random
/// RobertaForMaskedLM with tied decoder weights, and the hidden states transformers
/// computed for two images and three texts.
@Suite(.serialized)
struct ConversionTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/converter")
    static let texts = ["chest x-ray shows no acute findings", "is there a fracture?",
                        "axial ct of the abdomen with contrast shows a large hepatic mass in the right lobe"]

    static func temporary(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("umd-convert-\(UUID().uuidString)-\(name)")
    }

    /// Largest |a − b| over the selected elements, relative to the largest |reference|.
    static func relativeError(_ a: [Float], _ reference: [Float], where keep: (Int) -> Bool = { _ in true }) -> Float {
        var worst: Float = 0, scale: Float = 0
        for i in reference.indices where keep(i) {
            worst = max(worst, abs(a[i] - reference[i]))
            scale = max(scale, abs(reference[i]))
        }
        return worst / max(scale, 1e-12)
    }

    func convertAndEncode(clip: String?, roberta: String?, preset: String = "tiny") throws -> (Safetensors.File, String) {
        let weights = Self.temporary("w.safetensors"), encoded = Self.temporary("e.safetensors")
        defer { try? FileManager.default.removeItem(at: weights); try? FileManager.default.removeItem(at: encoded) }
        var arguments = ["convert", "--preset", preset, "--out", weights.path]
        if let clip { arguments += ["--clip", Self.fixtures.appendingPathComponent(clip).path] }
        if let roberta { arguments += ["--roberta", Self.fixtures.appendingPathComponent(roberta).path] }
        let convert = try MPIJob.runDirect(arguments)
        try #require(convert.exitCode == 0, "\(convert)")
        var encode = ["encode", "--weights", weights.path, "--out", encoded.path]
        if clip != nil {
            encode += ["--images"] + ["0.png", "1.png"].map { Self.fixtures.appendingPathComponent("images/\($0)").path }
        }
        if roberta != nil {
            encode += ["--tokenizer", Self.fixtures.appendingPathComponent("tokenizer").path, "--texts"] + Self.texts
        }
        let run = try MPIJob.runDirect(encode)
        try #require(run.exitCode == 0, "\(run)")
        return (try Safetensors.read(encoded), convert.stdout)
    }

    @Test func huggingFaceCLIPAndRoBERTaReproduceTransformersHiddenStates() throws {
        let reference = try Safetensors.read(Self.fixtures.appendingPathComponent("reference.safetensors"))
        let (out, report) = try convertAndEncode(clip: "clip-hf/model.safetensors", roberta: "roberta/model.safetensors")
        let vision = try #require(out["vision.tokens"]), text = try #require(out["text.tokens"])
        #expect(vision.shape == [2, 17, 64] && text.shape == [3, 16, 64])
        #expect(Self.relativeError(vision.floats, reference["vision.tokens"]!.floats) < 1e-4)
        // RobertaTokenizer's ids and mask are umd's; padded positions differ by design
        // (RoBERTa gives them position 1, umd t+2), so only real tokens are compared.
        #expect(out["text.ids"]?.ints == reference["text.ids"]?.ints)
        let mask = reference["text.attention"]!.ints
        #expect(out["text.attention"]?.ints == mask)
        #expect(Self.relativeError(text.floats, reference["text.tokens"]!.floats) { mask[$0 / 64] != 0 } < 1e-4)
        // The report names the dropped third block and the tied MLM decoder.
        #expect(report.contains("encoder.layers.2.mlp.fc1.weight: block 2 dropped"), "\(report)")
        #expect(report.contains("mlm.out.weight: tied to roberta.embeddings.word_embeddings.weight"), "\(report)")
        #expect(report.contains("reshaped: embeddings.patch_embedding.weight [64, 3, 8, 8] -> vision.patch_embed.weight [64, 192]"))
        #expect(report.contains("fusion.* (113)"), "what starts fresh is listed: \(report)")
    }

    @Test func openAINamingInHalfPrecisionGivesTheSameVisionOutput() throws {
        let reference = try Safetensors.read(Self.fixtures.appendingPathComponent("reference.safetensors"))
        let (out, report) = try convertAndEncode(clip: "clip-openai.safetensors", roberta: nil)
        let vision = try #require(out["vision.tokens"])
        #expect(Self.relativeError(vision.floats, reference["vision.tokens"]!.floats) < 1e-4)
        #expect(report.contains("visual.transformer.resblocks.0.attn.in_proj_weight [192, 64] -> vision.blocks.0.attn.q.weight"),
                "\(report)")
        #expect(report.contains("visual.proj: CLIP's image projection"), "\(report)")
    }

    @Test func aConfigThatDoesNotFitThePresetNamesTheDimension() throws {
        let r = try MPIJob.runDirect(["convert", "--preset", "small", "--clip",
                                      Self.fixtures.appendingPathComponent("clip-hf/model.safetensors").path,
                                      "--out", Self.temporary("x.safetensors").path])
        #expect(r.exitCode != 0)
        // Every mismatch at once (issue 25), naming the preset compared against.
        #expect(r.stderr.contains("does not fit preset small") && r.stderr.contains("hidden_size = 64, the preset needs 256")
                && r.stderr.contains("intermediate_size = 256, the preset needs 1024"), "\(r)")
        let none = try MPIJob.runDirect(["convert", "--preset", "tiny", "--clip",
                                         Self.fixtures.appendingPathComponent("roberta/model.safetensors").path,
                                         "--out", Self.temporary("y.safetensors").path])
        #expect(none.exitCode != 0 && none.stderr.contains("no CLIP vision tower found"), "\(none)")
        // A Hugging Face model folder is taken as it is (its model.safetensors and config.json).
        let folder = try MPIJob.runDirect(["convert", "--preset", "tiny", "--clip", Self.fixtures.appendingPathComponent("clip-hf").path,
                                           "--out", Self.temporary("z.safetensors").path])
        #expect(folder.exitCode == 0, "\(folder)")
    }

    @Test func convertedWeightsStartAPretrainingRunAndResizeToAnotherImageSize() throws {
        let root = Self.temporary("run")
        defer { try? FileManager.default.removeItem(at: root) }
        let weights = root.appendingPathComponent("init.safetensors").path
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let convert = try MPIJob.runDirect(["convert", "--preset", "tiny", "--image-size", "48",
                                            "--clip", Self.fixtures.appendingPathComponent("clip-hf/model.safetensors").path,
                                            "--roberta", Self.fixtures.appendingPathComponent("roberta/model.safetensors").path,
                                            "--out", weights])
        try #require(convert.exitCode == 0, "\(convert)")
        #expect(convert.stdout.contains("resized: embeddings.position_embedding.weight: 4x4 -> 6x6 patches (image 48 px)"))
        let data = root.appendingPathComponent("roco").path
        let synth = try MPIJob.runDirect(["synth", "--kind", "roco", "--out", data, "--count", "12", "--image-size", "32"])
        try #require(synth.exitCode == 0, "\(synth)")
        // The converted file is made for 48 px; pretraining at tiny's 32 px resizes it back.
        let run = try MPIJob.run(ranks: 1, ["pretrain", "--roco", data, "--tokenizer",
                                            Self.fixtures.appendingPathComponent("tokenizer").path, "--init", weights,
                                            "--out", root.appendingPathComponent("out").path, "--steps", "1",
                                            "--batch-size", "4", "--lr", "1e-5"])
        #expect(run.exitCode == 0, "\(run)")
        let final = try Safetensors.read(root.appendingPathComponent("out/final.safetensors"))
        let initial = try Safetensors.read(URL(fileURLWithPath: weights))
        // One step at lr 1e-5 moves a weight by at most ~1e-5: the encoders started from the file.
        let a = try #require(final["text.word_embed"]).floats, b = try #require(initial["text.word_embed"]).floats
        #expect(zip(a, b).allSatisfy { abs($0 - $1) < 1e-4 })
    }

    // MARK: - Custom presets (issue 25)

    /// The fixtures' own sizes: CLIP width 64, 4 heads, patch 8, 32 px, 3 blocks; RoBERTa 2
    /// layers, 130 positions, 271 words; the rest in the base model's proportions.
    static let fixtureCustomPreset = "custom:width=64,heads=4,patch=8,image=32,vision-layers=3,text-layers=2,fusion-layers=1,"
        + "decoder-width=32,decoder-layers=1,decoder-heads=2,projection=32,text-length=64,max-text-length=128,vocabulary=271"

    @Test func aCustomPresetTakesTheFilesSizesAndTrainsWithoutAPresetFlag() throws {
        let root = ScratchDirectory.make("umd-custom-preset")
        let weights = root.appendingPathComponent("custom.safetensors").path
        let convert = try MPIJob.runDirect(["convert", "--preset", "custom",
                                            "--clip", Self.fixtures.appendingPathComponent("clip-hf").path,
                                            "--roberta", Self.fixtures.appendingPathComponent("roberta").path, "--out", weights])
        try #require(convert.exitCode == 0, "\(convert)")
        #expect(convert.stdout.contains("the file records the custom preset \(Self.fixtureCustomPreset)"), "\(convert)")
        // All three CLIP blocks are kept: the preset has the file's depth.
        #expect(!convert.stdout.contains("dropped"), "\(convert)")
        let file = try Safetensors.read(URL(fileURLWithPath: weights))
        #expect(file.metadata["preset"] == Self.fixtureCustomPreset)
        #expect(file["vision.blocks.2.mlp.fc1.weight"] != nil)

        let data = root.appendingPathComponent("roco").path
        let synth = try MPIJob.runDirect(["synth", "--kind", "roco", "--out", data, "--count", "12", "--image-size", "32"])
        try #require(synth.exitCode == 0, "\(synth)")
        let tokenizer = Self.fixtures.appendingPathComponent("tokenizer").path
        let out = root.appendingPathComponent("run")
        let run = try MPIJob.run(ranks: 1, ["pretrain", "--roco", data, "--tokenizer", tokenizer, "--weights", weights,
                                            "--out", out.path, "--steps", "2", "--batch-size", "4", "--checkpoint-every", "1"])
        try #require(run.exitCode == 0, "\(run)")
        // The run, its checkpoints and its weights record the custom preset, so that resume,
        // eval and the next stage build the same model.
        let config = try String(contentsOf: out.appendingPathComponent("config.json"), encoding: .utf8)
        #expect(config.contains("\"preset\" : \"\(Self.fixtureCustomPreset)\""), "\(config)")
        let final = try Safetensors.read(out.appendingPathComponent("final.safetensors"))
        #expect(final.metadata["preset"] == Self.fixtureCustomPreset)
        let resumed = try MPIJob.run(ranks: 1, ["pretrain", "--roco", data, "--tokenizer", tokenizer, "--out", out.path,
                                                "--steps", "3", "--batch-size", "4", "--resume",
                                                "--allow-schedule-change"])
        #expect(resumed.exitCode == 0, "\(resumed)")
        // A named preset that contradicts the file is refused, naming both.
        let contradicted = try MPIJob.run(ranks: 1, ["pretrain", "--roco", data, "--tokenizer", tokenizer, "--weights", weights,
                                                     "--preset", "tiny", "--out", root.appendingPathComponent("x").path,
                                                     "--steps", "1", "--batch-size", "4"])
        #expect(contradicted.exitCode != 0 && contradicted.stderr.contains("--preset tiny contradicts")
                && contradicted.stderr.contains("custom (width 64, 4 heads, 3+2+1 layers"), "\(contradicted)")
    }

    @Test func aCustomPresetOfTwoVisionBlocksReproducesTransformersHiddenStates() throws {
        // The reference holds CLIP's state after 2 blocks: a custom preset keeping 2 of the 3
        // (and the files' other sizes) must compute it as tiny does.
        let reference = try Safetensors.read(Self.fixtures.appendingPathComponent("reference.safetensors"))
        let (out, report) = try convertAndEncode(clip: "clip-hf/model.safetensors", roberta: "roberta/model.safetensors",
                                                 preset: "custom:vision-layers=2,text-length=16")
        #expect(report.contains("block 2 dropped"), "\(report)")
        let vision = try #require(out["vision.tokens"]), text = try #require(out["text.tokens"])
        #expect(vision.shape == [2, 17, 64] && text.shape == [3, 16, 64])
        #expect(Self.relativeError(vision.floats, reference["vision.tokens"]!.floats) < 1e-4)
        let mask = reference["text.attention"]!.ints
        #expect(Self.relativeError(text.floats, reference["text.tokens"]!.floats) { mask[$0 / 64] != 0 } < 1e-4)
    }

    @Test func aCustomPresetThatContradictsTheFilesOrLacksSizesIsRefusedNamingThem() throws {
        let clip = Self.fixtures.appendingPathComponent("clip-hf").path
        let wider = try MPIJob.runDirect(["convert", "--preset", "custom:width=32", "--clip", clip,
                                          "--out", Self.temporary("a.safetensors").path])
        #expect(wider.exitCode != 0 && wider.stderr.contains("width=32 was given but")
                && wider.stderr.contains("clip-hf/model.safetensors (config.json) has 64"), "\(wider)")
        // CLIP alone says nothing of the text side: the missing sizes are listed as flags.
        let alone = try MPIJob.runDirect(["convert", "--preset", "custom", "--clip", clip,
                                          "--out", Self.temporary("b.safetensors").path])
        #expect(alone.exitCode != 0 && alone.stderr.contains("do not give text-layers")
                && alone.stderr.contains("--preset custom:text-layers=N"), "\(alone)")
        let done = try MPIJob.runDirect(["convert", "--preset", "custom:text-layers=2,max-text-length=40", "--clip", clip,
                                         "--out", Self.temporary("c.safetensors").path])
        #expect(done.exitCode == 0 && done.stdout.contains("text-length=40,max-text-length=40;")
                && !done.stdout.contains("vocabulary="), "\(done)")
        let unknown = try MPIJob.runDirect(["convert", "--preset", "custom:depth=3", "--clip", clip,
                                            "--out", Self.temporary("d.safetensors").path])
        #expect(unknown.exitCode != 0 && unknown.stderr.contains("'depth=3' is not key=value"), "\(unknown)")
    }
}
