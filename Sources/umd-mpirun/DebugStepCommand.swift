import ArgumentParser
import Foundation
import UMDDistributed
import UMDModel
import MPIBridge

extension Stage: ExpressibleByArgument {}
extension TaskKind: ExpressibleByArgument {}

/// `umd-mpirun debug-step`: one training step of a stage written as a safetensors file
/// (MODEL_SPEC.md section 12) for external checks of the arithmetic.
struct DebugStepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "debug-step",
        abstract: "Run one training step (dropout and GM noise off) and write every input, loss, gradient and update.",
        discussion: """
            Runs in one process on a synthetic global batch (real batches arrive with the data issue).
            Examples:
              umd-mpirun debug-step --stage pretrain --out step.safetensors
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
    @Option(help: "Output file.") var out: String

    func run() throws {
        guard let p = ModelPreset.named(preset) else {
            throw ValidationError("unknown preset \(preset); choose tiny, small or base")
        }
        var o = DebugStepOptions(output: URL(fileURLWithPath: out))
        o.stage = stage; o.task = task; o.preset = p; o.vocabularySize = vocabularySize; o.batchSize = batchSize
        o.answers = answers; o.atStep = atStep; o.totalSteps = totalSteps; o.peakLearningRate = lr; o.seed = seed
        o.initPath = initFrom.map { URL(fileURLWithPath: $0) }
        o.initOnly = initOnly?.split(separator: ",").map(String.init) ?? []
        do {
            let losses = try DebugStep.run(o)
            let text = losses.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.6f", $0.value))" }
            print("debug-step \(stage.rawValue)\(task == .none ? "" : "/" + task.rawValue): wrote \(out); "
                  + text.joined(separator: ", "))
        } catch {
            writeToStandardError("umd-mpirun: error: \(error)\n")
            throw ExitCode.failure
        }
    }
}
