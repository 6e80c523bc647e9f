import Foundation
import UMDCore
import UMDData
#if canImport(Glibc)
import Glibc
#endif

/// Rank 0's output: a progress line on a terminal (plain lines otherwise) and
/// `RUN/metrics.jsonl`; other ranks print only warnings and errors, prefixed with their rank.
public final class RunLog: @unchecked Sendable {
    let rank: Int
    let metricsURL: URL
    // Under mpirun a rank's stdout is a pty even when the user pipes mpirun's output, so the
    // one-line progress display is used only when run directly on a terminal.
    let terminal = isatty(1) != 0 && ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"] == nil
    private var progressShown = false
    private var metricsFailed = false
    /// Event files for TensorBoard, beside metrics.jsonl (rank 0).
    private var tensorBoard: TensorBoardWriter?

    public init(rank: Int, directory: URL) {
        self.rank = rank
        metricsURL = directory.appendingPathComponent("metrics.jsonl")
    }

    /// A fresh run in a directory it may use (checked and locked by the trainer's start):
    /// the rows of an earlier start that saved no weights are dropped.
    func startFresh() {
        if rank == 0 { try? FileManager.default.removeItem(at: metricsURL) }
    }

    public func info(_ text: String) {
        guard rank == 0 else { return }
        finishProgress()
        print(text)
        fflush(nil)
    }

    public func warning(_ text: String) {
        FileHandle.standardError.write(Data("umd-mpirun: rank \(rank): \(text)\n".utf8))
    }

    func report(_ report: DataReport) {
        guard rank == 0 else { return }
        for line in report.warnings(limit: 20) { warning(line) }
        info(report.description)
    }

    func metrics(_ record: [String: Double], stage: String) {
        guard rank == 0 else { return }
        // JSON has no NaN: a non-finite value is written as null and named, never dropped.
        var object: [String: Any] = record.mapValues { $0.isFinite ? $0 as Any : NSNull() }
        let nonFinite = record.filter { !$0.value.isFinite }.keys.sorted()
        if !nonFinite.isEmpty { object["nonfinite"] = nonFinite }
        object["stage"] = stage
        if let step = record["step"] { object["step"] = Int(step) }
        do {
            let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
            try appendToFile(data + Data("\n".utf8), at: metricsURL)
            if tensorBoard == nil { tensorBoard = try TensorBoardWriter(directory: metricsURL.deletingLastPathComponent()) }
            var scalars = record
            scalars["step"] = nil
            // Curves only for what changes during a run: the validation split's size and its
            // majority baselines are one number each (they stay in metrics.jsonl).
            for key in Array(scalars.keys) where key == "val_samples" || key == "val_pairs" || key.hasPrefix("val_majority")
                || key.hasPrefix("val_chance") {
                scalars[key] = nil
            }
            try tensorBoard?.write(step: Int(record["step"] ?? 0),
                                   scalars: Dictionary(uniqueKeysWithValues: scalars.map { ("\(stage)/\($0.key)", $0.value) }))
        } catch {
            if !metricsFailed { warning("cannot write \(metricsURL.path): \(error); training goes on, metrics are not recorded") }
            metricsFailed = true
        }
    }

    /// On resume: drops the rows of steps after `step` (they belong to the run that died after
    /// the checkpoint), so every step appears once.
    func truncateMetrics(after step: Int) {
        guard rank == 0 else { return }
        // TensorBoard: a new event file that supersedes the old files' events from step + 1 on.
        do { tensorBoard = try TensorBoardWriter(directory: metricsURL.deletingLastPathComponent(), restartAt: step + 1) } catch {
            if !metricsFailed { warning("cannot write a TensorBoard event file in \(metricsURL.deletingLastPathComponent().path): \(error)") }
        }
        guard let data = try? readWholeFile(metricsURL) else { return }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: true)
        let kept = lines.filter { line in
            guard let row = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
                  let s = (row["step"] as? NSNumber)?.intValue else { return true }
            return s <= step
        }
        guard kept.count != lines.count else { return }
        do {
            try AtomicFileWriter.write(kept.map { $0 + "\n" }.joined(), to: metricsURL)
            info("metrics.jsonl: dropped \(lines.count - kept.count) row(s) after step \(step) (from the interrupted run)")
        } catch {
            warning("cannot rewrite \(metricsURL.path): \(error)")
        }
    }

    func progress(_ text: String) {
        guard rank == 0 else { return }
        if terminal {
            print("\r\u{1B}[K" + text, terminator: "")
            progressShown = true
        } else {
            print(text)
        }
        fflush(nil)
    }

    func finishProgress() {
        if progressShown { print(""); progressShown = false }
    }

    static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? "\(s / 3600)h\(String(format: "%02d", s % 3600 / 60))m" : "\(s / 60)m\(String(format: "%02d", s % 60))s"
    }
}

/// The numbers of one logging window (the steps since the last log line): samples, data
/// and communication waits, turned into one `metrics.jsonl` record and one progress line.
struct LogWindow {
    private var start = Date(), samples = 0, dataWait = 0.0, commWait = 0.0
    let runStart: Date

    mutating func add(samples: Int, dataWait: Double, commWait: Double) {
        self.samples += samples; self.dataWait += dataWait; self.commWait += commWait
    }

    /// Writes the record of step `step` (0-based) of `totalSteps` and starts a new window.
    mutating func emit(_ outcome: StepOutcome, step: Int, totalSteps: Int, startStep: Int, stage: String,
                       log: RunLog) -> [String: Double] {
        var record = outcome.losses
        if let c = outcome.coefficients {
            record["rho_t"] = c.rhoText; record["rho_i"] = c.rhoImage; record["k_t"] = c.kText; record["k_i"] = c.kImage
            // The contribution sums themselves (issue 23): which modality's proxy is ahead, by how much.
            record["S_t"] = c.sumText; record["S_i"] = c.sumImage
        }
        record["step"] = Double(step + 1)
        record["lr"] = Double(outcome.learningRate)
        record["grad_norm"] = outcome.gradientNorm ?? 0
        if outcome.skipped { record["skipped"] = 1 }
        record["samples_per_s"] = Double(samples) / max(Date().timeIntervalSince(start), 1e-9)
        record["data_wait_s"] = dataWait
        record["comm_wait_s"] = commWait
        log.metrics(record, stage: stage)
        let done = step + 1 - startStep
        let eta = Date().timeIntervalSince(runStart) / Double(max(done, 1)) * Double(totalSteps - step - 1)
        log.progress(String(format: "step %d/%d  loss %.4f  %.1f samples/s  ETA %@", step + 1, totalSteps,
                            record["loss"] ?? 0, record["samples_per_s"]!, RunLog.duration(eta)))
        self = LogWindow(runStart: runStart)
        return record
    }

    private init(runStart: Date) { self.runStart = runStart }
    init() { runStart = Date() }
}
