import Foundation
import Testing
import TestSupport

/// Issue 27 end to end: a user unpacks VQA-RAD's OSF release into a folder of its own,
/// points `--data` at the folder above, trains with validation and evaluates the validation
/// split — without renaming a file. The hold-out is recorded in the run's config.json.
@Suite("official downloads", .serialized)
struct OfficialDownloadTests {
    @Test func vqaRadAsDownloadedTrainsWithAHeldOutValidationSplit() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("umd-download-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let downloads = root.appendingPathComponent("downloads")
        for (kind, dir) in [("vqa-rad", "downloads/VQA_RAD"), ("roco", "roco")] {
            let r = try MPIJob.runDirect(["synth", "--kind", kind, "--layout", "official", "--out",
                                          root.appendingPathComponent(dir).path, "--count", "40", "--image-size", "32"])
            #expect(r.exitCode == 0, "\(r)")
        }
        let tok = root.appendingPathComponent("tok").path
        let t = try MPIJob.runDirect(["tokenizer", "train", "--roco", root.appendingPathComponent("roco").path,
                                      "--vqa-rad", downloads.path, "--vocab-size", "300", "--out", tok])
        #expect(t.exitCode == 0, "\(t)")
        let out = root.appendingPathComponent("ft")
        let ft = try MPIJob.run(ranks: 2, ["finetune", "--task", "vqa-rad", "--data", downloads.path, "--tokenizer", tok,
                                           "--steps", "4", "--batch-size", "4", "--eval-every", "2", "--validation-holdout", "0.2",
                                           "--out", out.path])
        // 36 images x 3 questions are the release's training set; a fifth of each answer type validates.
        #expect(ft.exitCode == 0 && ft.stdout.contains("of the 108 training questions are the validation split")
                && ft.stdout.contains("validation after step 4"), "\(ft)")
        let config = try String(contentsOf: out.appendingPathComponent("config.json"), encoding: .utf8)
        #expect(config.contains("\"validation-holdout\" : 0.2"), "\(config)")
        let ev = try MPIJob.run(ranks: 2, ["eval", "--task", "vqa-rad", "--data", downloads.path, "--checkpoint",
                                           out.appendingPathComponent("final.safetensors").path, "--tokenizer", tok,
                                           "--split", "validation", "--validation-holdout", "0.2"])
        #expect(ev.exitCode == 0 && ev.stdout.contains("eval vqa-rad validation: overall"), "\(ev)")
    }
}
