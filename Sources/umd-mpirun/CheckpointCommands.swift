import ArgumentParser
import Foundation
import UMDDistributed
import UMDModel

/// `umd-mpirun inspect CKPT [--verify]`: the manifest in human form; --verify reads every shard.
struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect", abstract: "Describe a checkpoint; with --verify, check every shard's checksum.")
    @Argument(help: "Checkpoint directory (RUN/checkpoints/step-NNNNNNNN) or a run directory (its latest).") var path: String
    @Flag(help: "Decompress every shard and check its XXH64 against the manifest.") var verify = false

    func run() throws {
        var dir = URL(fileURLWithPath: path)
        let latest = dir.appendingPathComponent("checkpoints/latest")
        if let name = try? String(contentsOf: latest, encoding: .utf8) {
            dir = dir.appendingPathComponent("checkpoints").appendingPathComponent(name.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        do {
            let m = try Checkpoints.readManifest(dir)
            let raw = m.shards.reduce(0) { $0 + $1.uncompressedBytes }, packed = m.shards.reduce(0) { $0 + $1.compressedBytes }
            print("checkpoint \(dir.path)")
            print("  stage \(m.stage), step \(m.step) of \(m.totalSteps), saved on \(m.worldSize) rank(s), preset \(m.preset)"
                  + (m.config.task.map { ", task \($0.rawValue)" } ?? ""))
            print("  parameters \(m.parameterCount) (\(m.student.count) tensors), teacher \(m.teacherCount), optimizer steps \(m.optimizerSteps)")
            print(String(format: "  state %.1f MiB uncompressed, %.1f MiB in %d shard(s), compression ratio %.2f, zstd level %d",
                         Double(raw) / 1048576, Double(packed) / 1048576, m.shards.count, Double(raw) / Double(max(packed, 1)),
                         m.zstdLevel))
            print("  config hash \(m.configHash), tokenizer \(m.tokenizerHash), data cursor (global step) \(m.dataCursor), saved \(m.createdAt)")
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

/// `umd-mpirun export --checkpoint CKPT --out FILE.safetensors [--teacher]`.
struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export", abstract: "Write a checkpoint's weights as safetensors under the MODEL_SPEC names.")
    @Option(help: "Checkpoint directory.") var checkpoint: String
    @Option(help: "Output .safetensors file.") var out: String
    @Flag(help: "Also write the EMA teacher, under teacher.<name>.") var teacher = false

    func run() throws {
        do {
            let dir = URL(fileURLWithPath: checkpoint)
            let m = try Checkpoints.readManifest(dir)
            let state = UnsafeMutablePointer<Float>.allocate(capacity: max(m.stateCount, 1))
            defer { state.deallocate() }
            let buffer = UnsafeMutableRawBufferPointer(start: state, count: m.stateCount * 4)
            for shard in m.shards {
                try ShardIO.read(dir.appendingPathComponent(shard.file),
                                 into: [UnsafeMutableRawBufferPointer(rebasing: buffer[(shard.lower * 4)..<(shard.upper * 4)])],
                                 expectedBytes: shard.uncompressedBytes, expectedXXH64: UInt64(shard.xxh64, radix: 16) ?? 0)
            }
            func tensors(_ list: [CheckpointManifest.Tensor], base: Int, prefix: String) -> [Safetensors.Tensor] {
                list.map { t in
                    Safetensors.Tensor(name: prefix + t.name, shape: t.shape,
                                       floats: UnsafeBufferPointer(start: state + base + t.offset, count: t.shape.reduce(1, *)))
                }
            }
            var all = tensors(m.student, base: 0, prefix: "")
            if teacher { all += tensors(m.teacher, base: m.studentCount, prefix: "teacher.") }
            try Safetensors.write(all, metadata: ["stage": m.stage, "step": String(m.step), "preset": m.preset],
                                  to: URL(fileURLWithPath: out))
            print("export: wrote \(all.count) tensors to \(out)")
        } catch {
            printError("\(error)")
            throw ExitCode.failure
        }
    }
}
