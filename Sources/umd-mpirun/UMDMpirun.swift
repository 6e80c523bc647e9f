import ArgumentParser
import UMDCore
import UMDModel

/// `umd-mpirun`: the program every MPI rank runs. One subcommand per job.
@main
struct UMDMpirun: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "umd-mpirun",
        abstract: "Train and evaluate the UMD medical vision-language model data-parallel over MPI.",
        discussion: """
            Launch every subcommand that trains or tests collectives under mpirun, e.g.
              mpirun -np 2 umd-mpirun selftest
            Running the binary without mpirun gives a single rank (rank 0 of 1).
            """,
        version: BuildInfo.description,
        subcommands: [PretrainCommand.self, InspectCommand.self, ExportCommand.self, CalibCommand.self, FinetuneCommand.self, EvalCommand.self, PredictCommand.self,
                      SelftestCommand.self, SynthCommand.self, TokenizerCommand.self, DebugStepCommand.self,
                      LaunchCommand.self, PlotCommand.self, BenchCommand.self, ConvertCommand.self, EncodeCommand.self])
}

/// A `--preset` value: tiny, small, base or a custom preset's specification; an unknown one
/// is a usage error naming the choices.
func presetArgument(_ text: String) throws -> ModelPreset {
    do { return try ModelPreset.parse(text) } catch { throw ValidationError("--preset: \(error)") }
}
