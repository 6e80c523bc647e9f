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
/// (MODEL_SPEC.md section 12) for external checks of the arithmetic. Its flags are the
/// settings table's (`SettingsScope.Tool.debugStep`), with the spellings of earlier
/// versions (`--init-from`, `--dataset`, `--total-steps`, `--task vqa`) still accepted.
struct DebugStepCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "debug-step",
        abstract: "Run one training step (dropout and GM noise off) and write every input, loss, gradient and update.",
        discussion: """
            Runs in one process, on the global batch of step --at-step of a real training split
            (--roco for pretraining, --task and --data for calib and finetune, with --tokenizer),
            or on a synthetic batch when no data is given (--task vqa|classification|retrieval
            then names the head).
            Examples:
              umd-mpirun debug-step --stage pretrain --roco data/roco --tokenizer tok --out step.safetensors
              umd-mpirun debug-step --stage finetune --task vqa-rad --data data/vqa-rad --tokenizer tok --out ft.safetensors
              umd-mpirun debug-step --stage finetune --task retrieval --at-step 3 --steps 10 --out ft.safetensors

            """ + Settings.help(.debugStep, defaults: DebugStep.defaults))

    @Argument(parsing: .allUnrecognized, help: "Settings: --name VALUE (listed above).") var settings: [String] = []

    func run() throws {
        do {
            let config = try Settings.configuration(.tool(.debugStep), arguments: settings, defaults: DebugStep.defaults)
            Matmul.backend = try config.matmul.makeBackend()
            let losses = try DebugStep.run(config)
            let text = losses.sorted { $0.key < $1.key }.map { "\($0.key) \(String(format: "%.6f", $0.value))" }
            print("debug-step \(config.stage.rawValue)\(config.taskKind == .none ? "" : "/" + config.taskKind.rawValue): "
                  + "wrote \(config.out); " + text.joined(separator: ", "))
        } catch {
            writeToStandardError("umd-mpirun debug-step: error: \(error)\n")
            throw ExitCode.failure
        }
    }
}
