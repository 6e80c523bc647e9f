import ArgumentParser
import Foundation
import UMDTools
import UMDDistributed

/// `umd-mpirun plot RUN --out FILE.png`.
struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot", abstract: "Draw the loss curves and learning rate of a run into a PNG.")
    @Argument(help: "Run directory (holds metrics.jsonl), or with --bars the ablation's results.tsv.") var runDirectory: String
    @Option(help: "PNG file to write.") var out: String
    @Flag(help: "Draw scripts/ablation.sh's results.tsv as bars (mean ± sd per setting).") var bars = false

    func run() throws {
        do {
            if bars {
                try BarPlot.render(table: URL(fileURLWithPath: runDirectory), to: URL(fileURLWithPath: out))
                print("plot: wrote \(out)")
                return
            }
            try LossPlot.render(metrics: URL(fileURLWithPath: runDirectory).appendingPathComponent("metrics.jsonl"),
                                to: URL(fileURLWithPath: out))
            print("plot: wrote \(out)")
        } catch {
            printError("\(error)")
            throw ExitCode.failure
        }
    }
}

/// `umd-mpirun launch [-np N] [--hostfile F] [--dry-run] -- <subcommand …>`: the mpirun (or
/// srun) command users would otherwise have to assemble: one OpenBLAS thread budget per rank
/// (a set OPENBLAS_NUM_THREADS is honoured, else cores per node / ranks per node), core
/// binding when the cores suffice, the environment exported to every rank, OpenMPI's root
/// flags when run as root. Inside a SLURM allocation the ranks, nodes and cores come from
/// SLURM_* (tasks per node, cpus per task).
struct LaunchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "launch", abstract: "Build and run the right mpirun (or srun) command for a umd-mpirun subcommand.")
    @Option(name: [.customLong("np", withSingleDash: true), .customLong("np")],
            help: "Number of ranks (inside SLURM: default SLURM_NTASKS).") var ranks: Int?
    @Option(help: "OpenMPI hostfile (default: this machine only).") var hostfile: String?
    @Option(help: "Cores per node (default: this machine's; with a hostfile, give it).") var coresPerNode: Int?
    @Flag(help: "Inside SLURM: use srun instead of mpirun.") var srun = false
    @Flag(help: "Print the command instead of running it.") var dryRun = false
    @Argument(parsing: .postTerminator, help: "The umd-mpirun subcommand and its options.") var command: [String] = []

    func validate() throws {
        if let ranks, ranks < 1 { throw ValidationError("-np must be at least 1") }
        if command.isEmpty { throw ValidationError("give the subcommand after --, e.g. launch -np 2 -- selftest") }
    }

    /// Slots per node: the first slots= of the hostfile (nodes are assumed alike).
    func slotsPerNode(_ hostfile: String) throws -> Int? {
        guard let text = try? String(contentsOfFile: hostfile, encoding: .utf8) else {
            throw ValidationError("cannot read the hostfile \(hostfile)")
        }
        for line in text.split(separator: "\n") where !line.trimmingCharacters(in: .whitespaces).hasPrefix("#") {
            if let range = line.range(of: "slots=") {
                let digits = line[range.upperBound...].prefix { $0.isNumber }
                if let n = Int(digits), n > 0 { return n }
            }
        }
        return nil
    }

    /// All slots of the hostfile (a host line without `slots=` counts one): the rank count
    /// when -np is not given.
    func totalSlots(_ hostfile: String) throws -> Int {
        guard let text = try? String(contentsOfFile: hostfile, encoding: .utf8) else {
            throw ValidationError("cannot read the hostfile \(hostfile)")
        }
        var total = 0
        for line in text.split(separator: "\n") {
            let host = line.prefix { $0 != "#" }.trimmingCharacters(in: .whitespaces)
            if host.isEmpty { continue }
            if let range = host.range(of: "slots=") {
                total += Int(host[range.upperBound...].prefix { $0.isNumber }) ?? 1
            } else {
                total += 1
            }
        }
        guard total > 0 else { throw ValidationError("the hostfile \(hostfile) names no host") }
        return total
    }

    /// The subcommand is parsed here, once, before mpirun starts N copies that would each
    /// print the same error: a misspelled subcommand or setting is one clear message.
    func checkSubcommand() throws {
        let names = UMDMpirun.configuration.subcommands.map { $0.configuration.commandName ?? "" }
        if let first = command.first, !first.hasPrefix("-"), !names.contains(first) {
            let close = names.filter { $0.prefix(3) == first.prefix(3) || Set($0).symmetricDifference(Set(first)).count <= 2 }
            throw ValidationError("the subcommand after --: unknown subcommand `\(first)`"
                                  + (close.isEmpty ? "" : " (did you mean \(close.map { "`\($0)`" }.joined(separator: " or "))?)")
                                  + "; `umd-mpirun --help` lists them")
        }
        do {
            let parsed = try UMDMpirun.parseAsRoot(command)
            if let stage = parsed as? any StageCommand {
                _ = try Settings.configuration(stage: type(of: stage).stage, arguments: stage.settings)
            }
        } catch let error as RunError {
            throw ValidationError("the subcommand after --: \(error)")
        } catch {
            throw ValidationError("the subcommand after --: " + UMDMpirun.message(for: error))
        }
    }

    /// "4(x2),3" → 4: SLURM_TASKS_PER_NODE's first count.
    static func firstCount(_ text: String?) -> Int? { text.flatMap { Int($0.prefix { $0.isNumber }) } }

    func run() throws {
        try checkSubcommand()
        let environment = ProcessInfo.processInfo.environment
        let setThreads = environment["OPENBLAS_NUM_THREADS"].flatMap(Int.init).flatMap { $0 > 0 ? $0 : nil }
        let binary = URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
        var notes: [String] = []
        var args: [String]
        let threads: Int
        if environment["SLURM_JOB_ID"] != nil {
            let nodes = Int(environment["SLURM_NNODES"] ?? environment["SLURM_JOB_NUM_NODES"] ?? "1") ?? 1
            let perNode = Int(environment["SLURM_NTASKS_PER_NODE"] ?? "") ?? Self.firstCount(environment["SLURM_TASKS_PER_NODE"]) ?? 1
            let cpus = Int(environment["SLURM_CPUS_PER_TASK"] ?? "") ?? 1
            let n = ranks ?? Int(environment["SLURM_NTASKS"] ?? "") ?? nodes * perNode
            threads = setThreads ?? cpus
            if threads > cpus { notes.append("OPENBLAS_NUM_THREADS=\(threads) exceeds SLURM_CPUS_PER_TASK=\(cpus): ranks will share cores") }
            if srun {
                args = ["srun", "--ntasks=\(n)", "--ntasks-per-node=\(perNode)", "--cpus-per-task=\(cpus)", "--cpu-bind=cores",
                        "--mpi=pmix", "--export=ALL,OPENBLAS_NUM_THREADS=\(threads)"]
            } else {
                args = ["mpirun", "-np", String(n), "--map-by", "ppr:\(perNode):node:PE=\(cpus)", "--bind-to", "core"]
            }
        } else {
            guard let n = try ranks ?? hostfile.map(totalSlots) else {
                throw ValidationError("give -np (the number of ranks), or a --hostfile whose slots are the ranks")
            }
            args = ["mpirun", "-np", String(n)]
            if let hostfile {
                let perNode = min(try slotsPerNode(hostfile) ?? n, n)
                args += ["--hostfile", hostfile]
                if let cores = coresPerNode {
                    threads = setThreads ?? max(1, cores / perNode)
                } else {
                    threads = setThreads ?? 1
                    if setThreads == nil {
                        notes.append("the nodes' cores are not known here: pass --cores-per-node (or set OPENBLAS_NUM_THREADS) "
                                     + "so each of the \(perNode) ranks per node gets cores / \(perNode) threads; using 1")
                    }
                }
                args += ["--map-by", "ppr:\(perNode):node:PE=\(threads)", "--bind-to", "core"]
            } else {
                let cores = coresPerNode ?? ProcessInfo.processInfo.activeProcessorCount
                threads = setThreads ?? max(1, cores / n)
                if n * threads > cores {
                    args += ["--oversubscribe", "--bind-to", "none"]
                } else {
                    args += ["--map-by", "ppr:\(n):node:PE=\(threads)", "--bind-to", "core"]
                }
            }
        }
        if args[0] == "mpirun" {
            if getuid() == 0 { args += ["--allow-run-as-root"] }
            // Exported to every rank (the ones set here, plus PATH and LD_LIBRARY_PATH when set).
            var exported = ["OPENBLAS_NUM_THREADS"]
            if getuid() == 0 { exported += ["OMPI_ALLOW_RUN_AS_ROOT", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] }
            exported += ["PATH", "LD_LIBRARY_PATH"].filter { environment[$0] != nil }
            for variable in exported { args += ["-x", variable] }
        }
        args += [binary] + command
        let display = "OPENBLAS_NUM_THREADS=\(threads) " + args.map { $0.contains(" ") ? "'\($0)'" : $0 }.joined(separator: " ")
        for note in notes { FileHandle.standardError.write(Data("launch: note: \(note)\n".utf8)) }
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
        execvp(args[0], cArgs)
        printError("could not start \(args[0]) (\(String(cString: strerror(errno)))); is openmpi-bin installed? (make deps)")
        throw ExitCode.failure
    }
}
