import Foundation
import Testing
import TestSupport
@testable import UMDDistributed
import UMDModel

/// The settings table: flags, config files (YAML with sections and lists, JSON found by
/// content), stage membership, config.json and the resume comparison all come from it.
struct SettingsTests {
    static func file(_ name: String, _ text: String) throws -> String {
        let dir = ScratchDirectory.make("umd-settings")
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    static func error(_ body: () throws -> Any) -> String {
        do { _ = try body(); return "no error" } catch { return "\(error)" }
    }

    @Test func nestedYAMLSectionsAndAListAreRead() throws {
        let path = try Self.file("run.yaml", """
            # a fine-tuning run
            stage: finetune
            task: vqa-rad
            run:
              out: /tmp/umd-run
              steps: 7
            optim:
              lr: 2.5e-4
              batch-size: 16
              regularisation:
                weight-decay: 0.02
                dropout: 0
            gm-coord: off
            init-only:
              - vision.
              - text.
            clip-norm:            # empty: stays unset
            """)
        let c = try Settings.configuration(stage: .finetune, arguments: ["--config", path])
        #expect(c.task == .vqaRad && c.out == "/tmp/umd-run" && c.steps == 7)
        #expect(c.lr == 2.5e-4 && c.batchSize == 16 && c.weightDecay == 0.02 && c.dropout == 0)
        #expect(c.gmCoord == false)
        #expect(c.initOnly == ["vision.", "text."])
        #expect(c.clipNorm == nil)
    }

    @Test func flagsOverrideTheFileWhereverTheyStand() throws {
        let path = try Self.file("base.yml", "steps: 7\nbatch-size: 16\n")
        let c = try Settings.configuration(stage: .pretrain, arguments: ["--steps", "9", "--config", path, "--lr=0.5",
                                                                        "--strict", "--resume"])
        #expect(c.steps == 9, "the flag wins over the file although it comes first")
        #expect(c.batchSize == 16)
        #expect(c.lr == 0.5)
        #expect(c.strict && c.resume == "latest")
        let d = try Settings.configuration(stage: .finetune, arguments: ["--gm-noise", "off", "--gm-coord", "--steps", "3"])
        #expect(d.gmNoise == false && d.gmCoord == true && d.steps == 3)
    }

    /// `--adam-eps` reaches the optimizer the run builds; without it AdamW has the paper's 1e-8.
    @Test func adamEpsilonReachesTheOptimizer() throws {
        for (arguments, expected) in [([String](), Float(1e-8)), (["--adam-eps", "1e-4"], Float(1e-4))] {
            let config = try Settings.configuration(stage: .pretrain, arguments: arguments + ["--preset", "tiny"])
            let model = try RunFactory(config.resolved()).model(classes: 0, vocabularySize: 100)
            #expect(model.optimizer.hyperparameters.epsilon == expected, "\(arguments)")
        }
    }

    /// Every setting is checked against its range where it is read, flag or file, with the
    /// flag, the value and what is allowed in the message; negative numbers parse with or
    /// without `=` (and are then refused where they make no sense).
    @Test func valuesOutsideTheirRangeAreRefusedByName() throws {
        let cases: [([String], String)] = [
            (["--lr", "-0.001"], "--lr: '-0.001' is not allowed: must be greater than 0.0"),
            (["--lr=-0.001"], "--lr: '-0.001' is not allowed: must be greater than 0.0"),
            (["--lr", "nan"], "--lr: 'nan' is not allowed: expected X"),
            (["--clip-norm", "0"], "--clip-norm: '0' is not allowed: must be greater than 0.0"),
            (["--adam-eps", "0"], "--adam-eps: '0' is not allowed: must be greater than 0.0"),
            (["--alpha=-1"], "--alpha: '-1' is not allowed: must be in [0.0, 1.0]"),
            (["--zstd-level", "99"], "--zstd-level: '99' is not allowed: must be in [1, 19]"),
            (["--checkpoint-every=-1"], "--checkpoint-every: '-1' is not allowed: must be at least 0"),
            (["--bucket-mb", "0"], "--bucket-mb: '0' is not allowed: must be in [0.25, 4096.0]"),
            (["--log-every", "0"], "--log-every: '0' is not allowed: must be at least 1"),
            (["--consistency-every", "0"], "--consistency-every: '0' is not allowed: must be at least 1"),
            (["--dropout", "1"], "--dropout: '1' is not allowed: must be in [0.0, 1.0)"),
        ]
        for (arguments, expected) in cases {
            let message = Self.error { try Settings.configuration(stage: .pretrain, arguments: arguments) }
            #expect(message.contains(expected), "\(arguments): \(message)")
        }
        let file = try Self.file("negative.yaml", "optim:\n  lr: -1e-3\n")
        #expect(Self.error { try Settings.configuration(stage: .pretrain, arguments: ["--config", file]) }
            .contains("\(file):2: optim.lr: '-1e-3' is not allowed: must be greater than 0.0"))
    }

    @Test func aKeyOfAnotherStageIsAnErrorNamingItsPath() throws {
        let path = try Self.file("ft.yaml", "optim:\n  alpha: 0.3\n")
        let message = Self.error { try Settings.configuration(stage: .finetune, arguments: ["--config", path]) }
        #expect(message.contains("\(path):2: optim.alpha"), "\(message)")
        #expect(message.contains("is a setting of pretrain, calib, not of finetune"), "\(message)")
        let flag = Self.error { try Settings.configuration(stage: .pretrain, arguments: ["--gm-coord", "on"]) }
        #expect(flag.contains("--gm-coord: `gm-coord` is a setting of finetune, not of pretrain"), "\(flag)")
    }

    @Test func anUnknownKeyIsAnErrorNamingItsPath() throws {
        let path = try Self.file("typo.yaml", "optim:\n  lrr: 1e-4\n")
        let message = Self.error { try Settings.configuration(stage: .pretrain, arguments: ["--config", path]) }
        #expect(message.contains("\(path):2: optim.lrr: unknown setting `lrr`"), "\(message)")
        #expect(message.contains("did you mean `lr`"), "\(message)")
        let camel = try Self.file("camel.yaml", "batchSize: 4\n")
        let old = Self.error { try Settings.configuration(stage: .pretrain, arguments: ["--config", camel]) }
        #expect(old.contains("unknown setting `batchSize`"), "\(old)")
    }

    @Test func listsAndSectionsWhereAValueBelongsAreRefused() throws {
        let list = try Self.file("list.yaml", "steps: [1, 2]\n")
        #expect(Self.error { try Settings.configuration(stage: .pretrain, arguments: ["--config", list]) }
            .contains("steps: expected one value, got a list"))
        let section = try Self.file("section.yaml", "lr:\n  base: 1e-4\n")
        #expect(Self.error { try Settings.configuration(stage: .pretrain, arguments: ["--config", section]) }
            .contains("lr: expected a value, got a section"))
        let wrongType = try Self.file("type.yaml", "steps: many\n")
        #expect(Self.error { try Settings.configuration(stage: .pretrain, arguments: ["--config", wrongType]) }
            .contains("steps: 'many' is not allowed: expected N"))
        let stage = try Self.file("stage.yaml", "stage: pretrain\n")
        #expect(Self.error { try Settings.configuration(stage: .finetune, arguments: ["--config", stage]) }
            .contains("this file is for stage pretrain, but the command is finetune"))
    }

    @Test func jsonIsRecognisedByContentNotByExtension() throws {
        let path = try Self.file("settings.JSON", #"{"batch-size": 4, "optim": {"lr": 0.001}, "init-only": ["vision."]}"#)
        let c = try Settings.configuration(stage: .pretrain, arguments: ["--config", path])
        #expect(c.batchSize == 4 && c.lr == 0.001 && c.initOnly == ["vision."])
        let noExtension = try Self.file("settings", #"{"steps": 5}"#)
        #expect(try Settings.configuration(stage: .pretrain, arguments: ["--config", noExtension]).steps == 5)
        let broken = try Self.file("broken.json", #"{"steps": 5, "lr": }"#)
        #expect(Self.error { try Settings.configuration(stage: .pretrain, arguments: ["--config", broken]) }
            .contains("not valid JSON"))
    }

    @Test func configJSONListsEveryEffectiveValueAndReadsBack() throws {
        var c = try Settings.configuration(stage: .finetune, arguments: ["--task", "melinda", "--data", "/d",
                                                                        "--tokenizer", "/t", "--steps", "12"])
        c.debugStopAfter = 3   // a testing aid: never written
        let values = Settings.effectiveValues(c)
        for setting in Settings.of(.finetune) where !setting.hidden {
            #expect(values[setting.name] != nil, "config.json lacks \(setting.name)")
        }
        #expect(values["debug-stop-after"] == nil)
        #expect(values["alpha"] == nil, "alpha is not a fine-tuning setting")
        #expect((values["lr"] as? Double) == 3e-4, "the stage's default lr (tiny, fine-tuning) is written, not null")
        #expect((values["lr-heads"] as? Double) == 50)
        #expect((values["batch-size"] as? Int) == 8 && (values["gm-coord"] as? Bool) == true)
        #expect(values["clip-norm"] is NSNull)
        let path = try Self.file("config.json", String(decoding: try c.effectiveJSON(), as: UTF8.self))
        var again = try Settings.configuration(stage: .finetune, arguments: ["--config", path])
        again.debugStopAfter = 3
        #expect(Settings.effectiveValues(again) as NSDictionary == values as NSDictionary)
        #expect(again.resumeMismatches(c).isEmpty)
    }

    @Test func resumeComparesEffectiveValues() throws {
        let defaulted = try Settings.configuration(stage: .pretrain, arguments: [])
        let explicit = try Settings.configuration(stage: .pretrain, arguments: ["--lr", "5e-4", "--steps", "50"])
        #expect(explicit.resumeMismatches(defaulted).isEmpty, "the default lr given explicitly is the same lr; steps may change")
        let other = try Settings.configuration(stage: .pretrain, arguments: ["--lr", "2e-5", "--seed", "3"])
        #expect(other.resumeMismatches(defaulted) == ["lr 0.0005 (now 2e-05)", "seed 0 (now 3)"])
        let base = try Settings.configuration(stage: .finetune, arguments: ["--preset", "base", "--task", "vqa-rad"])
        #expect(base.peakLearningRate == 5e-6, "the paper's VQA fine-tuning rate at base")
    }

    /// Issue 25's small items: a warm-up longer than the run is refused; `--resume auto`
    /// resumes only when there is a checkpoint; config.json holds absolute paths.
    @Test func warmupResumeAutoAndAbsolutePaths() throws {
        let long = try Settings.configuration(stage: .pretrain, arguments: ["--roco", "r", "--tokenizer", "t", "--warmup", "50",
                                                                            "--steps", "5"])
        #expect(Self.error { try long.validate() }.contains("--warmup 50 steps is longer than the run (--steps 5)"))
        let fraction = try Settings.configuration(stage: .pretrain, arguments: ["--roco", "r", "--tokenizer", "t",
                                                                                "--warmup", "0.5", "--steps", "5"])
        try fraction.validate()

        let out = FileManager.default.temporaryDirectory.appendingPathComponent("umd-auto-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        var auto = try Settings.configuration(stage: .pretrain, arguments: ["--roco", "r", "--tokenizer", "t", "--out", out.path,
                                                                            "--resume", "auto"])
        #expect(try auto.resolved().resume == nil, "nothing to resume: a fresh start")
        let checkpoint = out.appendingPathComponent("checkpoints/step-00000003")
        try FileManager.default.createDirectory(at: checkpoint, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: checkpoint.appendingPathComponent("manifest.json"))
        auto.preset = "tiny"
        #expect(try auto.resolved().resume == "latest")

        let values = Settings.effectiveValues(long)
        let cwd = FileManager.default.currentDirectoryPath
        #expect(values["roco"] as? String == cwd + "/r" && values["tokenizer"] as? String == cwd + "/t", "\(values)")
    }

    /// Issue 23 (item 3): at base the paper's per-task recipe (MODEL_SPEC section 10's table)
    /// gives TD-Calib's and GM-Coord's defaults; flags override; tiny keeps its tuned ones.
    @Test func thePapersRecipeIsTheBaseDefault() throws {
        func config(_ stage: Stage, _ task: String, _ extra: [String] = [], preset: String = "base") throws -> RunConfiguration {
            try Settings.configuration(stage: stage, arguments: ["--task", task, "--data", "d", "--preset", preset] + extra)
        }
        let med = try config(.finetune, "vqa-med-2019")
        #expect(med.scheduleShape == .linear && med.effectiveWeightDecay == 0.1 && med.peakLearningRate == 5e-6
                && med.multipliers.heads == 50)
        let melinda = try config(.finetune, "melinda")
        #expect(melinda.scheduleShape == .cosine && melinda.effectiveWeightDecay == 0.01 && melinda.multipliers.heads == 10)
        #expect(try config(.finetune, "roco-retrieval").multipliers.heads == 5)
        let slake = try config(.calib, "slake")
        #expect(slake.scheduleShape == .linear && slake.peakLearningRate == 5e-6 && slake.effectiveWeightDecay == 0.01
                && slake.multipliers.heads == 5)
        #expect(try config(.calib, "vqa-rad").peakLearningRate == 1e-5)
        // Flags win; tiny keeps its own defaults.
        let given = try config(.finetune, "vqa-med-2019", ["--schedule", "cosine", "--weight-decay", "0.02", "--lr-heads", "7"])
        #expect(given.scheduleShape == .cosine && given.effectiveWeightDecay == 0.02 && given.multipliers.heads == 7)
        let tiny = try config(.finetune, "vqa-med-2019", preset: "tiny")
        #expect(tiny.scheduleShape == .cosine && tiny.effectiveWeightDecay == 0.01 && tiny.peakLearningRate == 3e-4
                && tiny.multipliers.heads == 50)
    }
}

/// Per-stage input sizes and weights that describe themselves.
struct StageSizeTests {
    func resolved(_ stage: Stage, _ arguments: [String]) throws -> RunConfiguration {
        try Settings.configuration(stage: stage, arguments: arguments).resolved()
    }

    @Test func downstreamStagesAtBaseUseTheSpecSizes() throws {
        let vqa = try resolved(.finetune, ["--preset", "base", "--task", "vqa-rad"])
        #expect(vqa.imageSize == 384 && vqa.textLength == 32)
        #expect(try resolved(.calib, ["--preset", "base", "--task", "melinda"]).textLength == 128)
        #expect(try resolved(.finetune, ["--preset", "base", "--task", "roco-retrieval"]).textLength == 40)
        let pretrain = try resolved(.pretrain, ["--preset", "base"])
        #expect(pretrain.imageSize == 288 && pretrain.textLength == 64)
        let tiny = try resolved(.finetune, ["--task", "vqa-rad"])
        #expect(tiny.preset == "tiny" && tiny.imageSize == 32 && tiny.textLength == 16, "tiny keeps its pretraining sizes")
        let told = try resolved(.finetune, ["--preset", "base", "--task", "vqa-rad", "--image-size", "224", "--text-length", "48"])
        #expect(told.imageSize == 224 && told.textLength == 48)
        #expect(SettingsTests.error { try resolved(.finetune, ["--task", "vqa-rad", "--image-size", "36"]) }
            .contains("--image-size 36 must be a positive multiple of the patch size 8"))
        #expect(SettingsTests.error { try resolved(.pretrain, ["--text-length", "600"]) }.contains("outside 3...128"))
    }

    @Test func thePresetComesFromTheInitWeightsAndAContradictionIsNamed() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("umd-small-\(UUID().uuidString).safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try Safetensors.write([Safetensors.Tensor(name: "x", shape: [1], floats: [0])],
                              metadata: ["preset": "small", "image_size": "64"], to: url)
        let c = try resolved(.calib, ["--task", "vqa-rad", "--init", url.path])
        #expect(c.preset == "small" && c.imageSize == 64)
        let message = SettingsTests.error { try resolved(.calib, ["--task", "vqa-rad", "--init", url.path, "--preset", "tiny"]) }
        #expect(message.contains("--preset tiny contradicts \(url.path), which holds a small model"), "\(message)")
        #expect(SettingsTests.error { try resolved(.calib, ["--init", "/no/such/weights"]) }.contains("no such file or directory"))
    }
}

extension StageSizeTests {
    /// `--resume` without --preset continues at the checkpoint's preset and sizes.
    @Test func aResumedRunTakesThePresetAndSizesOfItsCheckpoint() throws {
        let run = FileManager.default.temporaryDirectory.appendingPathComponent("umd-resume-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: run) }
        var saved = try resolved(.finetune, ["--preset", "base", "--task", "vqa-rad", "--image-size", "448"])
        saved.out = run.path
        let manifest = CheckpointManifest(step: 3, worldSize: 2, config: saved, tokenizerHash: "-", classesHash: "-",
                                          randomState: "-", schedule: LearningRateSchedule(shape: .cosine, totalSteps: 9),
                                          optimizerSteps: 3, studentCount: 0, teacherCount: 0, student: [], teacher: [],
                                          shards: [], createdAt: "-")
        let dir = Checkpoints.directory(run: run, step: 3)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try ManifestChecksum.encode(manifest).write(to: dir.appendingPathComponent("manifest.json"))
        let c = try resolved(.finetune, ["--task", "vqa-rad", "--out", run.path, "--resume"])
        #expect(c.preset == "base" && c.imageSize == 448 && c.textLength == 32)
    }
}

extension StageSizeTests {
    @Test func warmupAndScheduleAreSettings() throws {
        let fraction = try Settings.configuration(stage: .finetune, arguments: ["--steps", "200", "--warmup", "0.25"])
        #expect(fraction.stepSettings.schedule.warmupSteps == 50 && fraction.stepSettings.schedule.shape == .cosine)
        let steps = try Settings.configuration(stage: .pretrain, arguments: ["--steps", "200", "--warmup", "7",
                                                                             "--schedule", "constant"])
        #expect(steps.stepSettings.schedule.warmupSteps == 7)
        let schedule = steps.stepSettings.schedule
        #expect(schedule.factor(afterSteps: 7) == 1 && schedule.factor(afterSteps: 199) == 1 && schedule.factor(afterSteps: 3) < 1)
        #expect(try Settings.configuration(stage: .pretrain, arguments: ["--steps", "100"]).stepSettings.schedule.warmupSteps == 10)
        #expect(SettingsTests.error { try Settings.configuration(stage: .pretrain, arguments: ["--schedule", "step"]) }
            .contains("expected linear|cosine|constant"))
    }
}
