import Foundation
import Testing
import TestSupport
import UMDData

/// Issue 25: using a trained model. `predict` on a split gives exactly eval's per-sample
/// predictions (and so its accuracy); `predict` on one image and question needs nothing but
/// the weights and the tokenizer; eval takes the task from the weights, says which weights it
/// scores and writes the confusion counts.
@Suite("predict", .serialized)
struct PredictTests {
    static let root = FileManager.default.temporaryDirectory.appendingPathComponent("umd-predict-\(UUID().uuidString)")

    /// A headless browser to open reports in (Debian's `chromium`), nil where none is installed.
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    /// The report opened in headless Chromium: no console error, and its screenshot shows the
    /// confusion matrix's green diagonal and the mistakes' grey images.
    @Test(.enabled(if: chromium != nil, "no chromium here (apt-get install chromium): the report is not opened in a browser"))
    func theReportRendersInABrowser() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("umd-report-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        try SyntheticFixture.make(in: root, datasets: [("vqa-rad", "vqa")], count: 30)
        let (data, tok, run) = (root.appendingPathComponent("vqa").path, root.appendingPathComponent("tok").path,
                                root.appendingPathComponent("ft"))
        let ft = try MPIJob.runDirect(["finetune", "--task", "vqa-rad", "--data", data, "--tokenizer", tok, "--steps", "4",
                                       "--batch-size", "4", "--out", run.path])
        #expect(ft.exitCode == 0, "\(ft)")
        let report = root.appendingPathComponent("report.html")
        let ev = try MPIJob.runDirect(["eval", "--weights", run.path, "--data", data, "--report", report.path])
        #expect(ev.exitCode == 0, "\(ev)")
        let chromium = try #require(Self.chromium)
        let shot = root.appendingPathComponent("report.png"), profile = root.appendingPathComponent("chromium-profile")
        let r = try MPIJob.runProgram(chromium, ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                                                 "--user-data-dir=\(profile.path)", "--window-size=1100,1600",
                                                 "--enable-logging=stderr", "--v=0", "--screenshot=\(shot.path)",
                                                 report.absoluteString], timeout: 90)
        #expect(r.exitCode == 0, "\(r)")
        let consoleErrors = r.stderr.split(separator: "\n").filter { $0.contains("CONSOLE") }
        #expect(consoleErrors.isEmpty, "\(consoleErrors)")
        let image = try ImageCodec.decode(file: shot)
        var green = 0, grey = 0
        for i in stride(from: 0, to: image.pixels.count, by: 3) {
            let (red, g, b) = (Int(image.pixels[i]), Int(image.pixels[i + 1]), Int(image.pixels[i + 2]))
            if g - red > 50 && red == b { green += 1 }                       // a right answer's cell
            if red == g && g == b && (30...220).contains(red) { grey += 1 }  // thumbnails (and some text)
        }
        #expect(image.width == 1100 && green > 200 && grey > 5000, "green \(green), grey \(grey) pixels")
    }

    @Test func predictOnASplitIsEvalsPerSamplePredictions() throws {
        defer { try? FileManager.default.removeItem(at: Self.root) }
        try SyntheticFixture.make(in: Self.root, datasets: [("vqa-rad", "vqa")], count: 30)
        let (data, tok, run) = (Self.root.appendingPathComponent("vqa").path, Self.root.appendingPathComponent("tok").path,
                                Self.root.appendingPathComponent("ft"))
        let ft = try MPIJob.run(ranks: 2, ["finetune", "--task", "vqa-rad", "--data", data, "--tokenizer", tok,
                                           "--steps", "4", "--batch-size", "4", "--out", run.path])
        #expect(ft.exitCode == 0, "\(ft)")
        let evalLines = Self.root.appendingPathComponent("eval.jsonl"), predictLines = Self.root.appendingPathComponent("p.jsonl")
        // No --task: the weights name theirs. The run directory means its final weights, and eval says so.
        let ev = try MPIJob.run(ranks: 2, ["eval", "--weights", run.path, "--tokenizer", tok, "--data", data,
                                           "--predictions", evalLines.path])
        #expect(ev.exitCode == 0 && ev.stdout.contains("(final): vqa-rad"), "\(ev)")
        let pr = try MPIJob.run(ranks: 2, ["predict", "--weights", run.appendingPathComponent("final.safetensors").path,
                                           "--tokenizer", tok, "--data", data, "--out", predictLines.path])
        #expect(pr.exitCode == 0, "\(pr)")
        let (e, p) = (try Data(contentsOf: evalLines), try Data(contentsOf: predictLines))
        #expect(!e.isEmpty && e == p, "predict's lines are eval's")
        // Both give the accuracy eval reports.
        let rows = try String(decoding: e, as: UTF8.self).split(separator: "\n").map {
            try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
        }
        let right = rows.filter { $0["correct"] as? Bool == true }.count
        let result = try JSONSerialization.jsonObject(with: Data(contentsOf: run.appendingPathComponent("eval-final-vqa-rad-test.json")))
            as! [String: Any]
        #expect(abs(Double(right) / Double(rows.count) - (result["overall"] as! Double)) < 1e-9)
        #expect(pr.stdout.contains("\(right) of \(rows.count) right"), "\(pr)")
        // The confusion counts: one per sample with a known answer, rows the truth.
        let confusion = try #require(result["confusion"] as? [String: Any])
        let counts = try #require(confusion["counts"] as? [[Int]])
        #expect(counts.flatMap { $0 }.reduce(0, +) == rows.filter { !($0["truth"] is NSNull) }.count)
        #expect(counts.indices.map { counts[$0][$0] }.reduce(0, +) == right)
        // One image and one question, nothing else: the top answers with their probabilities.
        let image = try #require(rows.first?["image"] as? String)
        let one = try MPIJob.runDirect(["predict", "--weights", run.path, "--tokenizer", tok, "--image", image,
                                        "--question", "is there a lesion?"])
        #expect(one.exitCode == 0 && one.stdout.contains("question: is there a lesion?") && one.stdout.contains("  1. "),
                "\(one)")
        // A bundle: weights, tokenizer, classes and config in one folder; predict needs nothing else,
        // and answers as the run directory (whose tokenizer copy eval finds without --tokenizer).
        let bundle = Self.root.appendingPathComponent("bundle")
        let ex = try MPIJob.runDirect(["export", "--weights", run.path, "--bundle", bundle.path])
        #expect(ex.exitCode == 0, "\(ex)")
        for file in ["model.safetensors", "vocab.json", "merges.txt", "classes.json", "config.json"] {
            #expect(FileManager.default.fileExists(atPath: bundle.appendingPathComponent(file).path), "\(file)")
        }
        let fromBundle = try MPIJob.runDirect(["predict", "--weights", bundle.path, "--image", image, "--question", "is there a lesion?"])
        #expect(fromBundle.exitCode == 0, "\(fromBundle)")
        func answers(_ r: MPIJob.Result) -> [Substring] { r.stdout.split(separator: "\n").filter { $0.hasPrefix("  ") } }
        #expect(answers(fromBundle) == answers(one) && !answers(one).isEmpty, "\(fromBundle)\n\(one)")
        let noTokenizer = try MPIJob.runDirect(["eval", "--weights", run.path, "--data", data])
        #expect(noTokenizer.exitCode == 0 && noTokenizer.stdout.contains("overall"), "\(noTokenizer)")
        // A run's config.json alone: its weights, data set, task and tokenizer (run from another folder).
        let fromConfig = try MPIJob.runDirect(["eval", "--config", run.appendingPathComponent("config.json").path])
        let overall = String(format: "overall %.4f", result["overall"] as! Double)
        #expect(fromConfig.exitCode == 0 && fromConfig.stdout.contains(overall), "\(fromConfig)")
        // The HTML report, checked in a real browser when one is installed (CI installs chromium).
        let report = Self.root.appendingPathComponent("report.html")
        let rep = try MPIJob.run(ranks: 2, ["eval", "--weights", run.path, "--data", data, "--report", report.path])
        #expect(rep.exitCode == 0, "\(rep)")
        let html = try String(contentsOf: report, encoding: .utf8)
        #expect(html.contains("<table id=\"metrics\">") && html.contains("<svg id=\"confusion\"")
                && html.contains("data:image/png;base64,") && !html.contains("<script") && !html.contains("http://e")
                && !html.contains("https://"), "self-contained, no script")
        // The wrong task is refused by name.
        let wrong = try MPIJob.runDirect(["eval", "--task", "slake", "--weights", run.path, "--tokenizer", tok, "--data", data])
        #expect(wrong.exitCode != 0 && wrong.stderr.contains("was fine-tuned for vqa-rad, not for slake"), "\(wrong)")
    }
}
