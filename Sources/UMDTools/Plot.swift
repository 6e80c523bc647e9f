import Foundation
import UMDDistributed
import UMDCore
import UMDData

/// `umd-mpirun plot`: loss curves (total and each loss) and the learning rate over steps
/// from `RUN/metrics.jsonl`, one panel per series, drawn into an RGB raster and written as
/// PNG with libpng: every logged step is a point, both axes carry ticks at 0, ¼, ½, ¾ and 1
/// of their range with light grid lines, the x axis is labelled "step". Labels use a
/// built-in 3x5 pixel font.
public enum LossPlot {
    static let series = ["loss", "mim", "mlm", "feamim", "feamlm", "itm", "task", "lr", "grad_norm", "rho_t", "k_t", "k_i", "S_t", "S_i",
                         "val_loss", "val_overall", "val_accuracy", "val_macro_f1", "val_i2t_R@1"]

    public static func render(metrics: URL, to output: URL) throws {
        guard let text = try? String(contentsOf: metrics, encoding: .utf8) else {
            throw RunError("\(metrics.path): cannot read (run a stage with --out first)")
        }
        var points: [String: [(Double, Double)]] = [:]
        for (n, line) in text.split(separator: "\n").enumerated() {
            guard let object = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                  let step = (object["step"] as? NSNumber)?.doubleValue else {
                throw RunError("\(metrics.path):\(n + 1): not a metrics record")
            }
            for name in series { if let v = (object[name] as? NSNumber)?.doubleValue, v.isFinite { points[name, default: []].append((step, v)) } }
        }
        let present = series.filter { (points[$0]?.count ?? 0) > 0 }
        guard !present.isEmpty else { throw RunError("\(metrics.path): no metrics to plot") }
        let columns = 3, panelW = 300, panelH = 180
        let rows = (present.count + columns - 1) / columns
        var canvas = Canvas(width: columns * panelW, height: rows * panelH)
        for (i, name) in present.enumerated() {
            let x0 = (i % columns) * panelW, y0 = (i / columns) * panelH
            canvas.panel(x: x0, y: y0, width: panelW, height: panelH, title: name, points: points[name]!,
                         colour: Canvas.palette[i % Canvas.palette.count])
        }
        try AtomicFileWriter.write(ImageCodec.encode(canvas.pixels, width: canvas.width, height: canvas.height, channels: 3, as: .png), to: output)
    }
}

/// `umd-mpirun plot --bars results.tsv`: the ablation's mean accuracy per setting as bars
/// with ± one standard deviation whiskers and the majority baseline as a line (the TSV that
/// scripts/ablation.sh writes: setting, seed, overall, …, majority in column 6).
public enum BarPlot {
    public static func render(table: URL, to output: URL) throws {
        guard let text = try? String(contentsOf: table, encoding: .utf8) else {
            throw RunError("\(table.path): cannot read (run scripts/ablation.sh first)")
        }
        var order: [String] = [], values: [String: [Double]] = [:], majority = 0.0
        for (n, line) in text.split(separator: "\n").enumerated() {
            let f = line.split(separator: "\t", omittingEmptySubsequences: false).map(String.init)
            guard f.count >= 6, let v = Double(f[2]) else { throw RunError("\(table.path):\(n + 1): not a result row") }
            if values[f[0]] == nil { order.append(f[0]) }
            values[f[0], default: []].append(v)
            majority = Double(f[5]) ?? majority
        }
        guard !order.isEmpty else { throw RunError("\(table.path): no results") }
        let barW = 90, left = 60, top = 30, plotH = 300
        var canvas = Canvas(width: left + order.count * barW + 20, height: top + plotH + 90)
        let bottom = top + plotH
        func y(_ v: Double) -> Int { bottom - Int(v * Double(plotH)) }
        let grey: (UInt8, UInt8, UInt8) = (160, 160, 160)
        for k in 0...4 {
            let v = Double(k) / 4
            canvas.line(left, y(v), left + order.count * barW, y(v), k == 0 ? grey : (232, 232, 232))
            canvas.text(Canvas.number(v), x: 8, y: y(v) - 4, scale: 1)
        }
        canvas.text("test accuracy (overall), mean and sd over seeds", x: left, y: 8, scale: 1)
        for (i, name) in order.enumerated() {
            let v = values[name]!, m = v.reduce(0, +) / Double(v.count)
            let sd = v.count > 1 ? (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(v.count - 1)).squareRoot() : 0
            let x0 = left + i * barW + 15, x1 = x0 + barW - 30
            let colour = Canvas.palette[i % Canvas.palette.count]
            for yy in y(m)..<bottom { canvas.line(x0, yy, x1, yy, colour) }
            let mid = (x0 + x1) / 2
            canvas.line(mid, y(min(1, m + sd)), mid, y(max(0, m - sd)), (40, 40, 40))
            canvas.text(String(format: "%.3f", m), x: x0, y: y(m) - 12, scale: 1)
            // Two label lines under the bar.
            let words = name.split(separator: " ").map(String.init)
            var first = "", second = ""
            for w in words { if first.count + w.count < 14 && second.isEmpty { first += (first.isEmpty ? "" : " ") + w } else { second += (second.isEmpty ? "" : " ") + w } }
            canvas.text(first, x: x0 - 8, y: bottom + 8, scale: 1)
            canvas.text(second, x: x0 - 8, y: bottom + 18, scale: 1)
        }
        for xx in stride(from: left, to: left + order.count * barW, by: 6) { canvas.line(xx, y(majority), xx + 3, y(majority), (214, 39, 40)) }
        canvas.text(String(format: "majority %.3f", majority), x: left + order.count * barW - 90, y: y(majority) + 6, scale: 1,
                    (214, 39, 40))
        try AtomicFileWriter.write(ImageCodec.encode(canvas.pixels, width: canvas.width, height: canvas.height, channels: 3,
                                                     as: .png), to: output)
    }
}

struct Canvas {
    let width: Int, height: Int
    var pixels: [UInt8]
    static let palette: [(UInt8, UInt8, UInt8)] = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189),
                                                    (255, 127, 14), (23, 190, 207), (140, 86, 75), (227, 119, 194)]

    init(width: Int, height: Int) {
        self.width = width; self.height = height
        pixels = [UInt8](repeating: 255, count: width * height * 3)
    }

    mutating func set(_ x: Int, _ y: Int, _ c: (UInt8, UInt8, UInt8)) {
        guard x >= 0, y >= 0, x < width, y < height else { return }
        let i = (y * width + x) * 3
        pixels[i] = c.0; pixels[i + 1] = c.1; pixels[i + 2] = c.2
    }

    mutating func line(_ x0: Int, _ y0: Int, _ x1: Int, _ y1: Int, _ c: (UInt8, UInt8, UInt8)) {
        let steps = max(abs(x1 - x0), abs(y1 - y0), 1)
        for s in 0...steps {
            let t = Double(s) / Double(steps)
            let x = Int((Double(x0) + t * Double(x1 - x0)).rounded()), y = Int((Double(y0) + t * Double(y1 - y0)).rounded())
            set(x, y, c); set(x, y + 1, c)
        }
    }

    mutating func text(_ s: String, x: Int, y: Int, scale: Int = 2, _ c: (UInt8, UInt8, UInt8) = (40, 40, 40)) {
        var cx = x
        for ch in s.lowercased() {
            let glyph = Font.glyphs[ch] ?? Font.glyphs["?"]!
            for (row, bits) in glyph.enumerated() {
                for col in 0..<3 where bits & (4 >> col) != 0 {
                    for dy in 0..<scale { for dx in 0..<scale { set(cx + col * scale + dx, y + row * scale + dy, c) } }
                }
            }
            cx += 4 * scale
        }
    }

    mutating func panel(x: Int, y: Int, width w: Int, height h: Int, title: String, points: [(Double, Double)],
                        colour: (UInt8, UInt8, UInt8)) {
        let left = x + 50, right = x + w - 14, top = y + 24, bottom = y + h - 30
        let grey: (UInt8, UInt8, UInt8) = (160, 160, 160), light: (UInt8, UInt8, UInt8) = (232, 232, 232)
        let xs = points.map(\.0), ys = points.map(\.1)
        let (xmin, xmax) = (xs.min()!, max(xs.max()!, xs.min()! + 1))
        var (ymin, ymax) = (ys.min()!, ys.max()!)
        if ymax - ymin < 1e-12 { ymin -= 0.5; ymax += 0.5 }
        // Grid and ticks at 0, 1/4, 1/2, 3/4, 1 of each axis.
        for k in 0...4 {
            let fx = left + (right - left) * k / 4, fy = bottom - (bottom - top) * k / 4
            if k > 0 { line(fx, top, fx, bottom, light); line(left, fy, right, fy, light) }
            line(fx, bottom, fx, bottom + 3, grey)
            line(left - 3, fy, left, fy, grey)
            let xValue = xmin + (xmax - xmin) * Double(k) / 4, yValue = ymin + (ymax - ymin) * Double(k) / 4
            let xLabel = Self.number(xValue.rounded())
            text(xLabel, x: fx - 2 * xLabel.count, y: bottom + 6, scale: 1)
            text(Self.number(yValue), x: x + 2, y: fy - 2, scale: 1)
        }
        line(left, bottom, right, bottom, grey)
        line(left, top, left, bottom, grey)
        text(title, x: left, y: y + 6)
        text("step", x: (left + right) / 2 - 8, y: bottom + 16, scale: 1)
        func px(_ p: (Double, Double)) -> (Int, Int) {
            (left + Int((p.0 - xmin) / (xmax - xmin) * Double(right - left)),
             bottom - Int((p.1 - ymin) / (ymax - ymin) * Double(bottom - top)))
        }
        var previous = px(points[0])
        for p in points.dropFirst() {
            let q = px(p)
            line(previous.0, previous.1, q.0, q.1, colour)
            previous = q
        }
        if points.count == 1 { set(previous.0, previous.1, colour) }
    }

    static func number(_ v: Double) -> String {
        if v == 0 { return "0" }
        if v == v.rounded() && abs(v) < 1e6 { return String(format: "%.0f", v) }
        if abs(v) >= 1000 || abs(v) < 0.01 { return String(format: "%.1e", v) }
        return String(format: abs(v) >= 10 ? "%.1f" : "%.3f", v)
    }
}

/// A 3x5 pixel font: each glyph is five rows of three bits (MSB = left column).
enum Font {
    static let glyphs: [Character: [UInt8]] = [
        "a": [2, 5, 7, 5, 5], "b": [6, 5, 6, 5, 6], "c": [3, 4, 4, 4, 3], "d": [6, 5, 5, 5, 6], "e": [7, 4, 6, 4, 7],
        "f": [7, 4, 6, 4, 4], "g": [3, 4, 5, 5, 3], "h": [5, 5, 7, 5, 5], "i": [7, 2, 2, 2, 7], "j": [1, 1, 1, 5, 2],
        "k": [5, 5, 6, 5, 5], "l": [4, 4, 4, 4, 7], "m": [5, 7, 7, 5, 5], "n": [6, 5, 5, 5, 5], "o": [2, 5, 5, 5, 2],
        "p": [6, 5, 6, 4, 4], "q": [2, 5, 5, 6, 3], "r": [6, 5, 6, 5, 5], "s": [3, 4, 2, 1, 6], "t": [7, 2, 2, 2, 2],
        "u": [5, 5, 5, 5, 7], "v": [5, 5, 5, 5, 2], "w": [5, 5, 7, 7, 5], "x": [5, 5, 2, 5, 5], "y": [5, 5, 2, 2, 2],
        "z": [7, 1, 2, 4, 7], "0": [7, 5, 5, 5, 7], "1": [2, 6, 2, 2, 7], "2": [6, 1, 2, 4, 7], "3": [6, 1, 2, 1, 6],
        "4": [5, 5, 7, 1, 1], "5": [7, 4, 6, 1, 6], "6": [3, 4, 7, 5, 7], "7": [7, 1, 2, 2, 2], "8": [7, 5, 7, 5, 7],
        "9": [7, 5, 7, 1, 6], ".": [0, 0, 0, 0, 2], "-": [0, 0, 7, 0, 0], "+": [0, 2, 7, 2, 0], "_": [0, 0, 0, 0, 7],
        " ": [0, 0, 0, 0, 0], ":": [0, 2, 0, 2, 0], "?": [6, 1, 2, 0, 2], "/": [1, 1, 2, 4, 4],
        "(": [1, 2, 2, 2, 1], ")": [4, 2, 2, 2, 4], ",": [0, 0, 0, 2, 4], "@": [2, 5, 7, 4, 3],
    ]
}
