import Foundation
import Testing
import TestSupport

/// The ablation grid of the paper's Table 4 in miniature (scripts/ablation.sh), and the
/// objective switches it relies on.
@Suite("ablation", .serialized)
struct AblationTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    @Test func quickModeRunsEveryRowEndToEnd() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("umd-ablation-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let r = try MPIJob.runProgram("/bin/bash", [Self.repository.appendingPathComponent("scripts/ablation.sh").path, "--quick",
                                                    try MPIJob.binary().path, dir.path], timeout: 600)
        #expect(r.exitCode == 0, "\(r)")
        let table = try String(contentsOf: dir.appendingPathComponent("ablation.md"), encoding: .utf8)
        for row in ["| scratch |", "| scratch + GM-Coord |", "| MIM+MLM(+ITM) |", "| + FeaMIM, FeaMLM |", "| + TD-Calib |",
                    "| + GM-Coord (full), reference |", "| + GM-Coord (full), ablation |", ", mean pooling |",
                    "| + FeaMIM, FeaMLM, GM-Coord ablation (no TD-Calib) |", "| + TD-Calib, mean pooling (no GM-Coord) |",
                    "| majority baseline |", "| mim,mlm,itm |", "| mim,mlm,feamim,feamlm,itm |"] {
            #expect(table.contains(row), "missing \(row) in\n\(table)")
        }
        // Every fine-tuning row has its accuracies, the cued/uncued split of the closed
        // questions and (GM-Coord rows) contributions: no empty or NaN cell in results.tsv.
        let results = try String(contentsOf: dir.appendingPathComponent("results.tsv"), encoding: .utf8)
            .split(separator: "\n").map { $0.split(separator: "\t", omittingEmptySubsequences: false).map(String.init) }
        #expect(results.count == 11)
        for r in results {
            #expect(r.count == 20, "\(r)")
            let filled = r[6] == "on" ? 0..<19 : 0..<9
            #expect(filled.allSatisfy { !r[$0].isEmpty && r[$0] != "nan" }, "\(r)")
        }
        #expect(FileManager.default.fileExists(atPath: dir.appendingPathComponent("ablation.png").path), "the bar chart")
        let plots = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("gm-coord-") }
        #expect(plots.count == 6, "the GM-Coord diagnostics of the six rows with it: \(plots)")
    }

    /// `--objectives mim,mlm`: the other losses are still reported but leave the total.
    @Test func objectivesLeftOutLeaveTheTotal() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("umd-objectives-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let data = dir.appendingPathComponent("roco").path, tok = dir.appendingPathComponent("tok").path
        #expect(try MPIJob.runDirect(["synth", "--kind", "roco", "--out", data, "--count", "16", "--image-size", "32"]).exitCode == 0)
        #expect(try MPIJob.runDirect(["tokenizer", "train", "--roco", data, "--vocab-size", "300", "--out", tok]).exitCode == 0)
        let r = try MPIJob.run(ranks: 1, ["pretrain", "--roco", data, "--tokenizer", tok, "--out", dir.appendingPathComponent("run").path,
                                          "--steps", "1", "--batch-size", "4", "--objectives", "mlm,mim"])
        try #require(r.exitCode == 0, "\(r)")
        let line = try String(contentsOf: dir.appendingPathComponent("run/metrics.jsonl"), encoding: .utf8)
        let row = try #require((try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any])
        let (loss, mim, mlm) = (row["loss"] as? Double ?? .nan, row["mim"] as? Double ?? .nan, row["mlm"] as? Double ?? .nan)
        #expect(abs(loss - 0.5 * (mim + mlm)) < 1e-9 * max(1, loss), "alpha 0.5: loss \(loss), mim \(mim), mlm \(mlm)")
        #expect((row["feamim"] as? Double ?? 0) > 0, "left-out losses are still reported")
        let config = try String(contentsOf: dir.appendingPathComponent("run/config.json"), encoding: .utf8)
        #expect(config.contains("\"mim\"") && config.contains("\"mlm\"") && !config.contains("\"itm\""), "\(config)")
        let wrong = try MPIJob.runDirect(["calib", "--objectives", "itm"])
        #expect(wrong.exitCode != 0 && wrong.stderr.contains("itm is not a calib objective"), "\(wrong)")
    }
}
