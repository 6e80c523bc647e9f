import Foundation
import UMDCore
import UMDData
import UMDDistributed

/// `eval --report FILE.html`: one self-contained page (images inlined, no script, no network)
/// a user opens in a browser: the headline metrics next to their baselines, the confusion
/// matrix as a picture, accuracy per answer type or class, and the most confident mistakes
/// with their images.
public enum EvaluationReport {
    /// Classes drawn in the confusion picture (the most frequent truths; the rest summed as "other").
    static let pictureClasses = 20
    static let mistakes = 24, thumbnail = 112

    public static func write(_ result: Evaluator.Result, to url: URL) throws {
        try Evaluator.write(Data(page(result).utf8), to: url, what: "the scores are printed above")
    }

    static func page(_ r: Evaluator.Result) -> String {
        var body = "<h1>\(escape(r.task.rawValue)) — \(escape(r.split.rawValue)) split</h1>\n"
        body += "<p class=\"weights\">\(escape(r.model))</p>\n"
        body += headline(r.metrics)
        if let confusion = r.scored.confusion { body += confusionPicture(confusion, classes: r.classes) }
        body += breakdown(r)
        body += mistakesSection(r.scored.predictions)
        return """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8">
            <title>umd eval — \(escape(r.task.rawValue)) \(escape(r.split.rawValue))</title>
            <style>
            body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1100px; }
            table { border-collapse: collapse; margin: 1em 0; }
            td, th { border: 1px solid #ccc; padding: 4px 10px; text-align: left; }
            th { background: #f0f0f0; }
            .num { text-align: right; font-variant-numeric: tabular-nums; }
            .bar { background: #3b7dd8; height: 12px; display: inline-block; }
            .weights { color: #666; font-size: 90%; }
            .mistakes { display: grid; grid-template-columns: repeat(auto-fill, minmax(250px, 1fr)); gap: 12px; }
            .mistake { border: 1px solid #ddd; padding: 8px; }
            .mistake img { width: \(thumbnail)px; height: \(thumbnail)px; image-rendering: pixelated; float: left; margin-right: 8px; }
            .wrong { color: #b00020; } .right { color: #1b7a1b; }
            </style></head>
            <body>
            \(body)
            <p class="weights">Written by \(escape(BuildInfo.description)).</p>
            </body></html>

            """
    }

    /// Metrics in a table, each headline next to its baseline (majority answer or chance).
    static func headline(_ metrics: [String: Double]) -> String {
        let order = ["overall", "closed", "open", "accuracy", "macro_f1", "auc", "i2t_R@1", "i2t_R@5", "i2t_R@10",
                     "t2i_R@1", "t2i_R@5", "t2i_R@10", "loss", "samples", "pairs"]
        var rows = ""
        for key in order + metrics.keys.sorted().filter({ !order.contains($0) && !$0.hasPrefix("majority") && !$0.hasPrefix("chance") }) {
            guard let value = metrics[key] else { continue }
            let baseline = metrics["majority_" + key] ?? metrics["majority_" + (key == "overall" ? "overall" : key)]
                ?? (key.contains("R@") ? metrics["chance_" + String(key.drop { $0 != "R" })] : nil)
            rows += "<tr><td>\(escape(key))</td><td class=\"num\">\(format(value))</td><td class=\"num\">"
                + (baseline.map(format) ?? "") + "</td></tr>\n"
        }
        return "<h2>Metrics</h2>\n<table id=\"metrics\"><tr><th>metric</th><th>model</th><th>baseline (majority / chance)</th></tr>\n"
            + rows + "</table>\n"
    }

    /// The confusion matrix of the most frequent true classes as an SVG heat map (rows: truth).
    static func confusionPicture(_ counts: [[Int]], classes: [String]) -> String {
        let totals = counts.map { $0.reduce(0, +) }
        let shown = totals.indices.filter { totals[$0] > 0 }.sorted { (totals[$0], -$0) > (totals[$1], -$1) }
            .prefix(pictureClasses)
        guard !shown.isEmpty else { return "" }
        let index = Array(shown)
        let cell = 22, label = 140, n = index.count
        let width = label + n * cell + 10, height = label + n * cell + 10
        let maximum = max(1, index.flatMap { t in index.map { counts[t][$0] } }.max() ?? 1)
        var svg = "<svg id=\"confusion\" xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(height)\" "
            + "role=\"img\" aria-label=\"confusion matrix\">\n"
        for (row, t) in index.enumerated() {
            svg += "<text x=\"\(label - 4)\" y=\"\(label + row * cell + 15)\" text-anchor=\"end\" font-size=\"11\">"
                + "\(escape(short(classes[t])))</text>\n"
            svg += "<text transform=\"translate(\(label + row * cell + 15),\(label - 4)) rotate(-60)\" font-size=\"11\">"
                + "\(escape(short(classes[t])))</text>\n"
            for (column, p) in index.enumerated() {
                let c = counts[t][p]
                // Light to strong with the count: green on the diagonal (right), red off it (wrong).
                let share = Double(c) / Double(maximum)
                let fill = c == 0 ? "#f7f7f7"
                    : t == p ? "rgb(\(Int(220 - 180 * share)),\(Int(240 - 100 * share)),\(Int(220 - 180 * share)))"
                    : "rgb(\(Int(250 - 50 * share)),\(Int(215 - 165 * share)),\(Int(215 - 165 * share)))"
                svg += "<rect x=\"\(label + column * cell)\" y=\"\(label + row * cell)\" width=\"\(cell - 1)\" height=\"\(cell - 1)\" "
                    + "fill=\"\(fill)\"><title>truth \(escape(classes[t])), predicted \(escape(classes[p])): \(c)</title></rect>\n"
            }
        }
        svg += "</svg>\n"
        let note = totals.filter { $0 > 0 }.count > n
            ? "<p>The \(n) most frequent true answers of \(totals.filter { $0 > 0 }.count); rows are the truth, columns the prediction, green the diagonal.</p>"
            : "<p>Rows are the truth, columns the prediction, green the diagonal.</p>"
        return "<h2>Confusion matrix</h2>\n" + note + "\n" + svg
    }

    /// Accuracy per answer type (VQA) or per true class (classification), with bars.
    static func breakdown(_ r: Evaluator.Result) -> String {
        let predictions = r.scored.predictions
        guard !predictions.isEmpty, r.task.kind != .retrieval else { return "" }
        var groups: [(String, [Prediction])] = []
        if r.task.kind == .vqa {
            groups = [("closed", predictions.filter { $0.closed == true }), ("open", predictions.filter { $0.closed == false })]
        } else {
            let byTruth = Dictionary(grouping: predictions) { $0.truth ?? "(unknown)" }
            groups = byTruth.keys.sorted().map { ($0, byTruth[$0]!) }
        }
        var rows = ""
        for (name, members) in groups where !members.isEmpty {
            let accuracy = Double(members.filter(\.correct).count) / Double(members.count)
            rows += "<tr><td>\(escape(name))</td><td class=\"num\">\(members.count)</td><td class=\"num\">\(format(accuracy))</td>"
                + "<td><span class=\"bar\" style=\"width:\(Int(200 * accuracy))px\"></span></td></tr>\n"
        }
        let title = r.task.kind == .vqa ? "Accuracy by answer type" : "Accuracy by class"
        return "<h2>\(title)</h2>\n<table id=\"breakdown\"><tr><th></th><th>samples</th><th>accuracy</th><th></th></tr>\n"
            + rows + "</table>\n"
    }

    /// The most confident wrong answers, with the image each was about.
    static func mistakesSection(_ predictions: [Prediction]) -> String {
        let wrong = predictions.filter { !$0.correct }.sorted { ($0.probability, -$0.index) > ($1.probability, -$1.index) }
            .prefix(mistakes)
        guard !wrong.isEmpty else { return "<h2>Mistakes</h2>\n<p>None.</p>\n" }
        var cards = ""
        for p in wrong {
            let image = thumbnailURI(URL(fileURLWithPath: p.image))
            cards += "<div class=\"mistake\">" + (image.map { "<img src=\"\($0)\" alt=\"sample \(p.index)\">" } ?? "")
                + "<div>#\(p.index): \(escape(p.text))</div>"
                + "<div class=\"wrong\">answered: \(escape(p.predicted)) (\(format(p.probability)))</div>"
                + "<div class=\"right\">truth: \(escape(p.truth ?? "(not an answer the model knows)"))</div></div>\n"
        }
        return "<h2>The most confident mistakes</h2>\n<div class=\"mistakes\" id=\"mistakes\">\n" + cards + "</div>\n"
    }

    /// The image scaled to a square thumbnail as an inline PNG (nil when it cannot be read).
    static func thumbnailURI(_ url: URL) -> String? {
        guard let image = try? ImageCodec.decode(file: url) else { return nil }
        let side = thumbnail
        var pixels = [UInt8](repeating: 0, count: side * side * 3)
        for y in 0..<side {
            for x in 0..<side {
                let sx = x * image.width / side, sy = y * image.height / side
                for c in 0..<3 { pixels[(y * side + x) * 3 + c] = image.pixels[(sy * image.width + sx) * 3 + c] }
            }
        }
        guard let png = try? ImageCodec.encode(pixels, width: side, height: side, channels: 3, as: .png) else { return nil }
        return "data:image/png;base64," + png.base64EncodedString()
    }

    static func short(_ text: String) -> String { text.count > 20 ? String(text.prefix(19)) + "…" : text }
    static func format(_ value: Double) -> String { value < 2 ? String(format: "%.4f", value) : String(format: "%.0f", value) }
    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
