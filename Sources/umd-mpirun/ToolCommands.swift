import ArgumentParser
import Foundation
import UMDDistributed

/// `umd-mpirun plot RUN --out FILE.png`.
struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot", abstract: "Draw the loss curves and learning rate of a run into a PNG.")
    @Argument(help: "Run directory (holds metrics.jsonl).") var runDirectory: String
    @Option(help: "PNG file to write.") var out: String

    func run() throws {
        do {
            try LossPlot.render(metrics: URL(fileURLWithPath: runDirectory).appendingPathComponent("metrics.jsonl"),
                                to: URL(fileURLWithPath: out))
            print("plot: wrote \(out)")
        } catch {
            printError("\(error)")
            throw ExitCode.failure
        }
    }
}

/// `umd-mpirun launch -np N [--hostfile F] [--dry-run] -- <subcommand …>`: the mpirun
/// command users would otherwise have to assemble: one OpenBLAS thread budget per rank
/// (cores per node / ranks per node), core binding when the cores suffice, the environment
/// exported to every rank, and OpenMPI's root flags when run as root.
struct LaunchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "launch", abstract: "Build and run the right mpirun command for a umd-mpirun subcommand.")
    @Option(name: [.customLong("np", withSingleDash: true), .customLong("np")], help: "Number of ranks.") var ranks: Int
    @Option(help: "OpenMPI hostfile (default: this machine only).") var hostfile: String?
    @Option(help: "Cores per node (default: this machine's).") var coresPerNode: Int?
    @Flag(help: "Print the command instead of running it.") var dryRun = false
    @Argument(parsing: .postTerminator, help: "The umd-mpirun subcommand and its options.") var command: [String] = []

    func validate() throws {
        if ranks < 1 { throw ValidationError("-np must be at least 1") }
        if command.isEmpty { throw ValidationError("give the subcommand after --, e.g. launch -np 2 -- selftest") }
    }

    /// Ranks per node: the first slots= of the hostfile (nodes are assumed alike), else all on one node.
    func ranksPerNode() throws -> Int {
        guard let hostfile else { return ranks }
        guard let text = try? String(contentsOfFile: hostfile, encoding: .utf8) else {
            throw ValidationError("cannot read the hostfile \(hostfile)")
        }
        for line in text.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).hasPrefix("#") {
            if let range = line.range(of: "slots=") {
                let digits = line[range.upperBound...].prefix { $0.isNumber }
                if let n = Int(digits), n > 0 { return min(n, ranks) }
            }
        }
        return min(ranks, ProcessInfo.processInfo.activeProcessorCount)
    }

    func run() throws {
        let cores = coresPerNode ?? ProcessInfo.processInfo.activeProcessorCount
        let perNode = try ranksPerNode()
        let threads = max(1, cores / perNode)
        var args = ["mpirun", "-np", String(ranks)]
        if let hostfile { args += ["--hostfile", hostfile] }
        if perNode > cores {
            args += ["--oversubscribe", "--bind-to", "none"]
        } else {
            args += ["--map-by", "ppr:\(perNode):node:PE=\(threads)", "--bind-to", "core"]
        }
        if getuid() == 0 { args += ["--allow-run-as-root"] }
        // Exported to every rank (the ones set here, plus PATH and LD_LIBRARY_PATH when set).
        let environment = ProcessInfo.processInfo.environment
        var exported = ["OPENBLAS_NUM_THREADS"]
        if getuid() == 0 { exported += ["OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] }
        exported += ["PATH", "LD_LIBRARY_PATH"].filter { environment[$0] != nil }
        for variable in exported { args += ["-x", variable] }
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        args += [binary] + command
        let display = "OPENBLAS_NUM_THREADS=\(threads) " + args.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
        if dryRun {
            print(display)
            return
        }
        setenv("OPENBLAS_NUM_THREADS", String(threads), 1)
        if getuid() == 0 {
            setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1)
            setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1)
        }
        FileHandle.standardError.write(Data("launch: \(display)\n".utf8))
        let cArgs = args.map { strdup($0) } + [nil]
        execvp("mpirun", cArgs)
        printError("could not start mpirun (\(String(cString: strerror(errno)))); is openmpi-bin installed? (make deps)")
        throw ExitCode.failure
    }
}
