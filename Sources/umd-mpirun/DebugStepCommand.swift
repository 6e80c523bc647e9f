import ArgumentParser
import Foundation
import UMDCore
import UMDDistributed
import UMDData
import UMDModel

extension Stage: ExpressibleByArgument {}
extension TaskKind: ExpressibleByArgument {}
extension DownstreamTask: ExpressibleByArgument {}

/// `umd-mpirun debug-step`: one training step of a stage written as a safetensors file
/// (MODEL_SPEC.md section 12) for external checks of the arithmetic.
struct DebugStepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "debug-step",
        abstract: "Run one training step (dropout and GM noise off) and write every input, loss, gradient and update.",
        discussion: """
            Runs in one process, on the global batch of step --at-step of a real training split
            (--roco for pretraining, --dataset and --data for calib and finetune, with --tokenizer),
            or on a synthetic batch when no data is given.
            Examples:
              umd-mpirun debug-step --stage pretrain --roco data/roco --tokenizer tok --out step.safetensors
              umd-mpirun debug-step --stage finetune --dataset vqa-rad --data data/vqa-rad --tokenizer tok --out ft.safetensors
              umd-mpirun debug-step --stage finetune --task retrieval --at-step 3 --total-steps 10 --out ft.safetensors
            """)

    @Option(help: "pretrain, calib or finetune.") var stage: Stage = .pretrain
    @Option(help: "vqa, classification or retrieval (calib, finetune).") var task: TaskKind = .none
    @Option(help: "tiny, small or base.") var preset = "tiny"
    @Option(help: "Vocabulary size (default: the preset's, else 1000).") var vocabularySize: Int?
    @Option(help: "Global batch size G.") var batchSize = 4
    @Option(help: "Answers / classes of a VQA or classification head.") var answers = 5
    @Option(help: "The step s whose learning rate is used (0 = first).") var atStep = 0
    @Option(help: "Schedule length T.") var totalSteps = 10
    @Option(help: "Peak learning rate of the base group (default: the paper's for the stage).") var lr: Float?
    @Option(help: "Run seed (initialisation, masks, pairings).") var seed: UInt64 = 0
    @Option(help: "Start from this safetensors file (student names, teacher under teacher.*).") var initFrom: String?
    @Option(help: "Comma-separated name prefixes to import from --init-from (e.g. vision.,text.).") var initOnly: String?
    @Option(help: "ROCO root (pretraining on real data).") var roco: String?
    @Option(help: "Downstream data set: vqa-rad, slake, vqa-med-2019, melinda or roco-retrieval.") var dataset: DownstreamTask?
    @Option(help: "Root of the downstream data set.") var data: String?
    @Option(help: "Tokenizer directory (vocab.json + merges.txt) for real data.") var tokenizer: String?
    @Option(help: "Matrix products: openblas, onednn or bf16 (as the training flag).") var matmul = "openblas"
    @Option(help: "Output file.") var out: String

    func run() throws {
        guard let p = ModelPreset.named(preset) else {
            throw ValidationError("unknown preset \(preset); choose tiny, small or base")
        }
        var o = DebugStepOptions(output: URL(fileURLWithPath: out))
        if (dataset == nil) != (data == nil) { throw ValidationError("--dataset and --data go together") }
        o.stage = stage; o.task = task == .none && stage != .pretrain ? (dataset?.kind ?? .none) : task; o.preset = p; o.vocabularySize = vocabularySize; o.batchSize = batchSize
        o.answers = answers; o.atStep = atStep; o.totalSteps = totalSteps; o.peakLearningRate = lr; o.seed = seed
        o.initPath = initFrom.map { URL(fileURLWithPath: $0) }
        o.initOnly = initOnly?.split(separator: ",").map(String.init) ?? []
        o.roco = roco.map { URL(fileURLWithPath: $0) }
        if let dataset, let data { o.taskData = (dataset, URL(fileURLWithPath: data)) }
        o.tokenizer = tokenizer.map { URL(fileURLWithPath: $0) }
        guard let backend = MatmulChoice(rawValue: matmul) else {
            throw ValidationError("--matmul must be openblas, onednn or bf16, got \(matmul)")
        }
        do {
            Matmul.backend = try backend.makeBackend()
            let losses = try DebugStep.run(o)
            let text = losses.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.6f", $0.value))" }
            print("debug-step \(stage.rawValue)\(o.task == .none ? "" : "/" + o.task.rawValue): wrote \(out); "
                  + text.joined(separator: ", "))
        } catch {
            writeToStandardError("umd-mpirun: error: \(error)\n")
            throw ExitCode.failure
        }
    }
}
