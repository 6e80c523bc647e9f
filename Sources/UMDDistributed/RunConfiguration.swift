import Foundation
import UMDData
import UMDModel
import UMDCore

/// Everything that defines a run. Precedence: defaults < config file (JSON, or flat
/// `key: value` YAML) < command-line flags. The effective configuration is written to
/// `RUN/config.json` and its hash is compared across ranks at start.
public struct RunConfiguration: Codable, Sendable, Equatable {
    public var stage: Stage = .pretrain
    public var preset = "tiny"
    public var task: DownstreamTask? = nil
    public var roco: String? = nil
    public var medicat: String? = nil
    /// MedICaT texts held out for validation and for test each (M3AE used 1000 + 1000).
    public var medicatHoldout = 1000
    public var data: String? = nil
    public var tokenizer: String? = nil
    public var out = "runs/umd"
    public var initFrom: String? = nil
    public var initOnly: [String] = []
    public var steps = 100
    public var batchSize = 8
    public var lr: Float? = nil
    public var seed: UInt64 = 0
    public var alpha: Float = 0.5
    public var beta = 0.1
    public var ema: Float = 0.995
    public var dropout: Float = 0.1
    public var lrFusion: Float = 5
    public var lrHeads: Float? = nil
    public var weightDecay: Float = 0.01
    public var clipNorm: Float? = nil
    public var gmCoord = true
    public var gmNoise = true
    public var logEvery = 10
    public var consistencyEvery = 100
    public var stallTimeout = 300.0
    public var bucketMB = 25.0
    public var strict = false
    /// Decode every image while reading the data set (skips damaged bodies up front).
    public var checkImages = false
    public var retrievalCap = 2000
    public var evalSplit: Split = .test
    /// Save a checkpoint every N steps (0: only at the end and on SIGTERM/SIGINT).
    public var checkpointEvery = 0
    public var keepCheckpoints = 3
    public var zstdLevel = 3
    /// Write periodic checkpoints on a background thread from a staged copy.
    public var asyncCheckpoint = false
    /// Resume from the newest complete checkpoint of `out` ("latest") or from this checkpoint directory.
    public var resume: String? = nil
    /// Testing aid: this rank SIGKILLs itself half-way through writing its shard at the
    /// checkpoint after `debugCrashCheckpointStep` steps.
    public var debugCrashCheckpointRank: Int? = nil
    public var debugCrashCheckpointStep = 0
    /// Testing aid: behave as if SIGTERM arrived after this many steps.
    public var debugStopAfter: Int? = nil
    /// Testing aid: this rank sleeps for an hour at step `debugStallStep`, so the stall
    /// watchdog can be seen to fire on the other ranks.
    public var debugStallRank: Int? = nil
    public var debugStallStep = 1
    /// Testing aid: this rank nudges one weight after step 1, so the replica check fires.
    public var debugDivergeRank: Int? = nil

    public init() {}

    public var presetValue: ModelPreset {
        get throws {
            guard let p = ModelPreset.named(preset) else {
                throw RunError("unknown preset \(preset); choose tiny, small or base")
            }
            return p
        }
    }

    public var peakLearningRate: Float {
        lr ?? DebugStep.defaultPeakLearningRate(stage: stage, task: task?.kind ?? .none)
    }

    public var multipliers: LearningRateMultipliers {
        LearningRateMultipliers(fusion: lrFusion, heads: lrHeads ?? (stage == .finetune ? 50 : 5))
    }

    /// A stable hash of the canonical JSON (sorted keys).
    public var hash: UInt64 {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(self)) ?? Data()
        return CounterRandom.hash(String(decoding: data, as: UTF8.self))
    }

    /// What a checkpoint must share with the run that resumes it; anything else (steps,
    /// logging, timeouts, …) may change between save and resume.
    public func resumeMismatches(_ saved: RunConfiguration) -> [String] {
        var problems: [String] = []
        func check<T: Equatable>(_ name: String, _ a: T, _ b: T) { if a != b { problems.append("\(name) \(b) (now \(a))") } }
        check("stage", stage, saved.stage); check("preset", preset, saved.preset); check("task", task, saved.task)
        check("seed", seed, saved.seed); check("batch size", batchSize, saved.batchSize)
        check("lr", lr, saved.lr); check("alpha", alpha, saved.alpha); check("dropout", dropout, saved.dropout)
        check("roco", roco, saved.roco); check("medicat", medicat, saved.medicat); check("data", data, saved.data)
        return problems
    }

    /// Applies a config file on top of `self`: JSON, or flat `key: value` YAML lines.
    public func applying(file path: String) throws -> RunConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else { throw RunError("\(path): cannot read the config file") }
        var object: [String: Any]
        if path.hasSuffix(".json") {
            guard let o = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
                throw RunError("\(path): not a JSON object")
            }
            object = o
        } else {
            object = [:]
            for (n, raw) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
                if line.trimmingCharacters(in: .whitespaces).isEmpty { continue }
                guard let colon = line.firstIndex(of: ":") else {
                    throw RunError("\(path):\(n + 1): expected `key: value` (umd reads flat YAML only)")
                }
                let key = line[..<colon].trimmingCharacters(in: .whitespaces)
                var value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                if value.hasPrefix("\"") && value.hasSuffix("\"") && value.count >= 2 { value = String(value.dropFirst().dropLast()) }
                if let number = Double(value) { object[key] = number }
                else if ["true", "on", "yes"].contains(value) { object[key] = true }
                else if ["false", "off", "no"].contains(value) { object[key] = false }
                else if value == "null" || value.isEmpty { continue }
                else { object[key] = value }
            }
        }
        // Merge onto the current values through JSON, so unknown keys are reported.
        let encoder = JSONEncoder()
        var current = try JSONSerialization.jsonObject(with: encoder.encode(self)) as! [String: Any]
        let known = Set(current.keys).union(["task", "roco", "medicat", "data", "tokenizer", "initFrom", "lr", "lrHeads",
                                             "clipNorm"])
        for (key, value) in object {
            guard known.contains(key) else {
                throw RunError("\(path): unknown setting \(key) (known: \(known.sorted().joined(separator: ", ")))")
            }
            current[key] = value
        }
        do {
            return try JSONDecoder().decode(RunConfiguration.self, from: JSONSerialization.data(withJSONObject: current))
        } catch {
            throw RunError("\(path): a setting has the wrong type: \(error)")
        }
    }

    public func validate() throws {
        _ = try presetValue
        if steps < 1 { throw RunError("--steps must be at least 1") }
        if batchSize < 1 { throw RunError("--batch-size must be at least 1") }
        if stage == .pretrain && batchSize < 2 { throw RunError("pretraining needs --batch-size of at least 2 (ITM pairs)") }
        if stage == .pretrain && roco == nil { throw RunError("pretrain needs --roco DIR") }
        if stage != .pretrain && (task == nil || data == nil) { throw RunError("\(stage.rawValue) needs --task and --data") }
        if tokenizer == nil { throw RunError("--tokenizer DIR is needed (vocab.json + merges.txt)") }
        if !(0..<1).contains(dropout) { throw RunError("--dropout must be in [0, 1)") }
    }
}

public struct RunError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
