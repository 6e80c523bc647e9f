import ArgumentParser
import Foundation
import UMDDistributed
import UMDModel

/// `umd-mpirun inspect CKPT [--verify]`: the manifest in human form; --verify reads every shard.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Describe a checkpoint (with --verify, check every shard's checksum) or a weights file.")
    @Argument(help: "Checkpoint directory (RUN/checkpoints/step-NNNNNNNN), a run directory (its latest checkpoint), or a weights file or bundle (its metadata).")
    var path: String
    @Flag(help: "Decompress every shard and check its XXH64 against the manifest.") var verify = false

    func run() throws {
        do {
            guard case .checkpoint(let dir) = try WeightsPath.resolve(path, checkpointOnly: true) else {
                // A weights file (or bundle): what its metadata says and what it holds.
                let (file, resolved) = try WeightsPath.load(path)
                let student = file.tensors.filter { !$0.name.hasPrefix("teacher.") }
                print("weights \(resolved.url.path)")
                print("  \(student.count) tensors, \(student.reduce(0) { $0 + $1.count }) parameters"
                      + (student.count < file.tensors.count ? ", teacher \(file.tensors.count - student.count) tensors" : ""))
                for (key, value) in file.metadata.sorted(by: { $0.key < $1.key }) {
                    print("  \(key): \(value.count > 120 ? String(value.prefix(117)) + "..." : value)")
                }
                if verify { print("verify: the file's header and sizes were read in full (safetensors has no checksums)") }
                return
            }
            let m = try Checkpoints.readManifest(dir)
            let raw = m.shards.reduce(0) { $0 + $1.uncompressedBytes }, packed = m.shards.reduce(0) { $0 + $1.compressedBytes }
            print("checkpoint \(dir.path)")
            print("  stage \(m.stage), step \(m.step) of \(m.config.steps), saved on \(m.worldSize) rank(s), preset \(m.preset)"
                  + (m.config.task.map { ", task \($0.rawValue)" } ?? ""))
            print("  parameters \(m.parameterCount) (\(m.student.count) tensors), teacher \(m.teacherCount), optimizer steps \(m.optimizerSteps)")
            print(String(format: "  state %.1f MiB uncompressed, %.1f MiB in %d shard(s), compression ratio %.2f, zstd level %d",
                         Double(raw) / 1048576, Double(packed) / 1048576, m.shards.count, Double(raw) / Double(max(packed, 1)),
                         m.config.zstdLevel))
            print("  config hash \(m.configHash), tokenizer \(m.tokenizerHash), data cursor (global step) \(m.step), saved \(m.createdAt)")
            for s in m.shards {
                print(String(format: "  %@  rank %d  elements [%d, %d)  %.1f MiB -> %.1f MiB  xxh64 %@", s.file, s.rank, s.lower,
                             s.upper, Double(s.uncompressedBytes) / 1048576, Double(s.compressedBytes) / 1048576, s.xxh64))
            }
            if verify {
                let problems = Checkpoints.verify(dir, manifest: m)
                if problems.isEmpty {
                    print("verify: all \(m.shards.count) shard(s) intact")
                } else {
                    for p in problems { printError("verify: \(p)") }
                    throw ExitCode.failure
                }
            }
        } catch let e as ExitCode {
            throw e
        } catch {
            printError("\(error)")
            throw ExitCode.failure
        }
    }
}

/// `umd-mpirun export --weights W --out FILE.safetensors [--teacher]`, or `--bundle DIR`.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write weights as safetensors under the MODEL_SPEC names, or as a model bundle (weights + tokenizer + classes).")
    @Option(name: [.customLong("weights"), .customLong("checkpoint")],
            help: "Weights: a run directory, a checkpoint directory, checkpoints/latest, a .safetensors file or a bundle.")
    var weights: String
    @Option(help: "Output .safetensors file.") var out: String?
    @Option(help: "Write a model bundle into this folder (model.safetensors, vocab.json, merges.txt, classes.json, config.json): every command that takes weights takes it, without --tokenizer.")
    var bundle: String?
    @Option(help: "The tokenizer the weights were trained with (default: the one beside them, e.g. RUN/tokenizer).")
    var tokenizer: String?
    @Flag(help: "Also write the EMA teacher, under teacher.<name>.") var teacher = false

    func run() throws {
        do {
            guard (out == nil) != (bundle == nil) else { throw RunError("export writes --out FILE.safetensors or --bundle DIR (one of them)") }
            if let bundle {
                let tokenizer = try ModelBundle.tokenizer(for: weights, given: tokenizer)
                try ModelBundle.write(weights: weights, tokenizer: tokenizer, to: URL(fileURLWithPath: bundle), includeTeacher: teacher)
                print("export: wrote the bundle \(bundle) (weights, tokenizer from \(tokenizer.path), classes, config.json)")
                return
            }
            let (file, _) = try WeightsPath.load(weights, includeTeacher: teacher)
            try Safetensors.write(file.tensors, metadata: file.metadata, to: URL(fileURLWithPath: out!))
            print("export: wrote \(file.tensors.count) tensors to \(out!)")
        } catch {
            printError("\(error)")
            throw ExitCode.failure
        }
    }
}
