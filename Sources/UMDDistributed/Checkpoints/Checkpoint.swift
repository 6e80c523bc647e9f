import Collective
import Foundation
import UMDCore
import UMDModel
#if canImport(Glibc)
import Glibc
#endif

/// Sharded, zstd-compressed checkpoints (DESIGN.md idea 7).
///
/// The state is one logical Float vector: [student values | teacher values | AdamW m | AdamW v].
/// Rank r of R writes the r-th contiguous slice as `shard-RRRRR-of-NNNNN.zst` (zstd content
/// checksum on, XXH64 of the uncompressed bytes in the manifest); rank 0 writes
/// `manifest.json` last (temporary name, fsync, rename, fsync the directory) and then
/// points `checkpoints/latest` at it. Only a directory with a manifest is a checkpoint.
/// With `--shard-optimizer` a rank holds AdamW moments for its own arena share only, so it
/// writes its slice of [student | teacher] and its share of m and of v as three files
/// (`…-m.zst`, `…-v.zst`); the manifest lists every file's range either way.
/// On resume every rank reads every shard (a sharded rank skips the moments it does not
/// own): any world size, sharded or not, can resume any checkpoint.
public struct CheckpointManifest: Codable, Sendable {
    public struct Tensor: Codable, Sendable, Equatable { public var name: String; public var offset: Int; public var shape: [Int] }
    public struct Shard: Codable, Sendable {
        public var file: String
        public var rank: Int
        public var lower: Int          // first state element (Float index)
        public var upper: Int
        public var uncompressedBytes: Int
        public var compressedBytes: Int
        public var xxh64: String
    }

    /// 2: fields that repeated the configuration (stage, preset, total steps, zstd level,
    /// configuration hash, data cursor) are derived from it instead of stored.
    /// 3: each shard's XXH64 is seeded with the step, so an edited step fails verification.
    /// 4: the manifest carries its own checksum (`manifestXXH64`), the class list, and the
    /// validation state (best score, patience, early stop).
    public var formatVersion = 4
    public var step: Int                 // optimizer steps taken = the next step to run = the data cursor
    public var worldSize: Int
    public var config: RunConfiguration
    public var tokenizerHash: String
    public var classesHash: String
    public var randomState: String
    public var schedule: LearningRateSchedule
    public var optimizerSteps: Int
    public var studentCount: Int
    public var teacherCount: Int
    public var student: [Tensor]
    public var teacher: [Tensor]
    public var shards: [Shard]
    public var createdAt: String
    /// The answer / class list the task head's rows stand for (fine-tuning and calibration on
    /// a task; nil before format 4), so exported weights carry it.
    public var classes: [String]? = nil
    /// Validation during fine-tuning: the best score so far, how many validations since it,
    /// and whether early stopping ended the run (nil: the run does not validate).
    public var validation: ValidationState? = nil
    /// XXH64 of the manifest's own text with this value written as 16 zeros (format 4 on):
    /// an edited manifest (another step, optimizer count, configuration) fails to load.
    public var manifestXXH64: String? = nil
    /// Which umd wrote it (`BuildInfo.description`; nil in manifests from before it was recorded).
    public var writtenBy: String? = BuildInfo.description

    public var stage: String { config.stage.rawValue }
    public var preset: String { config.preset ?? "tiny" }
    public var configHash: String { String(config.hash, radix: 16) }
    public var stateCount: Int { 3 * studentCount + teacherCount }

    /// The seed of the shards' XXH64 (the step from format 3 on).
    public var checksumSeed: UInt64 { formatVersion >= 3 ? UInt64(step) : 0 }

    /// Fields that must agree with each other; a problem names the manifest.
    func consistencyProblems() -> [String] {
        var problems: [String] = []
        if optimizerSteps > step { problems.append("optimizer steps \(optimizerSteps) exceed the step \(step)") }
        if step < 0 { problems.append("negative step \(step)") }
        return problems
    }

    /// Which tensor of which section a state element belongs to, for messages.
    public func describe(element e: Int) -> String {
        let S = studentCount, T = teacherCount
        let (section, offset, tensors): (String, Int, [Tensor]) =
            e < S ? ("student", e, student) : e < S + T ? ("teacher", e - S, teacher)
            : e < 2 * S + T ? ("AdamW m", e - S - T, student) : ("AdamW v", e - 2 * S - T, student)
        let name = tensors.filter { $0.offset <= offset }.max { $0.offset < $1.offset }?.name ?? "?"
        return "\(section) \(name)"
    }
    public var parameterCount: Int { studentCount }
}

/// What every save of one run shares: where, for which configuration, tokenizer and
/// class list, and the schedule. Built once per run.
public struct CheckpointPlan: Sendable {
    public var run: URL
    public var config: RunConfiguration
    public var tokenizerHash: String
    public var classesHash: String
    public var schedule: LearningRateSchedule
    /// The class list itself (empty for pretraining and retrieval).
    public var classes: [String]

    public init(run: URL, config: RunConfiguration, tokenizerHash: String, classesHash: String,
                schedule: LearningRateSchedule, classes: [String] = []) {
        self.run = run; self.config = config; self.tokenizerHash = tokenizerHash; self.classesHash = classesHash
        self.schedule = schedule; self.classes = classes
    }
}

/// The arenas a checkpoint covers.
public struct TrainingState {
    public let student: ParameterStore
    public let teacher: ParameterStore?
    public let optimizer: AdamWOptimizer

    public init(_ model: StageModel) {
        student = model.student; teacher = model.teacher; optimizer = model.optimizer
    }

    public var teacherCount: Int { teacher?.count ?? 0 }
    public var count: Int { 3 * student.count + teacherCount }

    /// Pieces of the state vector's slice [lower, upper) as raw memory, in order. A sharded
    /// optimizer holds the moments of its own arena share only: parts of the moment
    /// sections outside it go to `discard` (reading: someone else's moments are skipped),
    /// or, when `discard` is nil (writing), must not be asked for.
    public func pieces(_ lower: Int, _ upper: Int, discard: UnsafeMutableRawBufferPointer? = nil) -> [UnsafeMutableRawBufferPointer] {
        let S = student.count, T = teacherCount, owned = optimizer.owned
        // (base pointer at arena offset owned.lowerBound, elements, held range within the section)
        let sections: [(UnsafeMutablePointer<Float>, Int, Range<Int>)] = [
            (student.values, S, 0..<S), (teacher?.values ?? student.values, T, 0..<T),
            (optimizer.firstMoment - owned.lowerBound, S, owned), (optimizer.secondMoment - owned.lowerBound, S, owned)]
        var out: [UnsafeMutableRawBufferPointer] = []
        var start = 0
        for (pointer, count, held) in sections {
            let lo = max(lower, start) - start, hi = min(upper, start + count) - start
            start += count
            guard lo < hi else { continue }
            // [lo, hi) within the section: a held middle, maybe not-held parts around it.
            let heldLo = min(max(lo, held.lowerBound), hi), heldHi = max(min(hi, held.upperBound), heldLo)
            for (a, b, isHeld) in [(lo, heldLo, false), (heldLo, heldHi, true), (heldHi, hi, false)] where a < b {
                if isHeld {
                    out.append(UnsafeMutableRawBufferPointer(start: pointer + a, count: (b - a) * 4))
                    continue
                }
                guard let discard, discard.count >= 4 else {
                    preconditionFailure("state elements [\(a), \(b)) of a section are another rank's optimizer share")
                }
                var left = (b - a) * 4
                while left > 0 {
                    let n = min(left, discard.count)
                    out.append(UnsafeMutableRawBufferPointer(rebasing: discard[0..<n]))
                    left -= n
                }
            }
        }
        return out
    }

    /// The state vector ranges a rank with a sharded optimizer writes to a checkpoint: its
    /// slice of student and teacher plus its own share of each moment section (the only
    /// moments it has). Unsharded, a rank writes its slice of the whole vector instead.
    func shardedRanges(rank: Int, size: Int) -> [Range<Int>] {
        let S = student.count, T = teacherCount
        let (lower, upper) = Checkpoints.slice(count: S + T, rank: rank, size: size)
        let owned = optimizer.owned
        return [lower..<upper, (S + T + owned.lowerBound)..<(S + T + owned.upperBound),
                (2 * S + T + owned.lowerBound)..<(2 * S + T + owned.upperBound)]
    }
}

/// What a save writes: the state layout and a way to get any slice of the state vector —
/// the live arenas, or (asynchronous saves) a staged copy of this rank's slice.
public struct CheckpointContent: @unchecked Sendable {
    // Sendable: the pointers behind `slice` are either the live arenas, read while training
    // waits (synchronous save), or a staging buffer owned by the asynchronous saver.
    public let studentCount: Int, teacherCount: Int
    public let student: [CheckpointManifest.Tensor], teacher: [CheckpointManifest.Tensor]
    public let optimizerSteps: Int
    public let slice: (Int, Int) -> [UnsafeRawBufferPointer]
    /// The state ranges rank r of R writes (nil: the r-th contiguous slice of the vector).
    public var ranges: ((Int, Int) -> [Range<Int>])? = nil
    /// Validation's state at the save (rank 0's; nil: the run does not validate).
    public var validation: ValidationState? = nil
    public var count: Int { 3 * studentCount + teacherCount }
}

extension TrainingState {
    /// The live arenas.
    public var content: CheckpointContent {
        var content = CheckpointContent(
            studentCount: student.count, teacherCount: teacherCount,
            student: student.views.map { .init(name: $0.name, offset: $0.offset, shape: $0.shape) },
            teacher: teacher?.views.map { .init(name: $0.name, offset: $0.offset, shape: $0.shape) } ?? [],
            optimizerSteps: optimizer.stepsTaken,
            slice: { lower, upper in self.pieces(lower, upper).map { UnsafeRawBufferPointer($0) } })
        if optimizer.isSharded {
            let state = self
            content.ranges = { rank, size in state.shardedRanges(rank: rank, size: size) }
        }
        return content
    }
}

public enum Checkpoints {
    public static func directory(run: URL, step: Int) -> URL {
        run.appendingPathComponent("checkpoints").appendingPathComponent(String(format: "step-%08d", step))
    }

    /// Hash of the files of a tokenizer directory (or a classes list), for the manifest.
    public static func hashFiles(_ urls: [URL]) -> String {
        var h = XXH64()
        for url in urls { if let data = try? Data(contentsOf: url) { data.withUnsafeBytes { h.update($0) } } }
        return String(h.finalize(), radix: 16)
    }

    /// This rank's slice [lower, upper) of a state of `count` elements on `world`.
    public static func slice(count: Int, world: Communicator) -> (Int, Int) {
        slice(count: count, rank: world.rank, size: world.size)
    }

    static func slice(count: Int, rank: Int, size: Int) -> (Int, Int) {
        (count * rank / size, count * (rank + 1) / size)
    }

    /// Collective: every rank writes its shard of `content`, rank 0 the manifest, `latest`,
    /// and prunes to the plan's `keepCheckpoints`. `crashAfterBytes` is a test fault.
    public static func save(content: CheckpointContent, step: Int, plan: CheckpointPlan, world: Communicator,
                            watchdog: StallWatchdog?, crashAfterBytes: Int? = nil) throws -> URL {
        let run = plan.run, config = plan.config
        let dir = directory(run: run, step: step)
        let R = world.size, rank = world.rank
        if rank == 0 {
            // A directory of this step without a manifest is the remains of a killed save.
            if FileManager.default.fileExists(atPath: dir.path) && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("manifest.json").path) {
                try? FileManager.default.removeItem(at: dir)
            }
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        }
        let token = watchdog?.begin("checkpoint of step \(step), barrier before writing")
        try world.barrier()
        if let token { watchdog?.end(token) }
        // One file per range this rank writes: its slice, or (sharded optimizer) its slice of
        // the weights and its own moments, "-m"/"-v" files of their own.
        let (lower, upper) = slice(count: content.count, world: world)
        let ranges = content.ranges?(rank, R) ?? [lower..<upper]
        var mine: [CheckpointManifest.Shard] = []
        for (k, range) in ranges.enumerated() where k == 0 || !range.isEmpty {
            let file = String(format: "shard-%05d-of-%05d", rank, R) + ["", "-m", "-v"][min(k, 2)] + ".zst"
            let written = try ShardIO.write(content.slice(range.lowerBound, range.upperBound),
                                            to: dir.appendingPathComponent(file), level: Int32(config.zstdLevel),
                                            checksumSeed: UInt64(step),
                                            crashAfterBytes: crashAfterBytes)
            mine.append(CheckpointManifest.Shard(file: file, rank: rank, lower: range.lowerBound, upper: range.upperBound,
                                                 uncompressedBytes: written.uncompressedBytes,
                                                 compressedBytes: written.compressedBytes,
                                                 xxh64: String(written.xxh64, radix: 16)))
        }
        let gatherToken = watchdog?.begin("checkpoint of step \(step), gathering shard checksums")
        let shards = try world.allgatherData(JSONEncoder().encode(mine))
        if let gatherToken { watchdog?.end(gatherToken) }
        if rank == 0 {
            LauncherWatch.stopIfOrphaned()          // publish nothing once the launcher is gone
            let manifest = CheckpointManifest(
                step: step, worldSize: R, config: config, tokenizerHash: plan.tokenizerHash, classesHash: plan.classesHash,
                randomState: "counter-based, keyed by seed \(config.seed), step and dataset index: nothing to restore",
                schedule: plan.schedule, optimizerSteps: content.optimizerSteps, studentCount: content.studentCount,
                teacherCount: content.teacherCount, student: content.student, teacher: content.teacher,
                shards: try shards.flatMap { try JSONDecoder().decode([CheckpointManifest.Shard].self, from: $0) }
                    .sorted { $0.lower < $1.lower },
                createdAt: ISO8601DateFormatter().string(from: Date()),
                classes: plan.classes.isEmpty ? nil : plan.classes, validation: content.validation)
            try AtomicFileWriter.write(try ManifestChecksum.encode(manifest), to: dir.appendingPathComponent("manifest.json"))
            try AtomicFileWriter.write(dir.lastPathComponent, to: run.appendingPathComponent("checkpoints/latest"))
            prune(run: run, keep: config.keepCheckpoints)
        }
        try world.barrier()
        return dir
    }

    /// Complete checkpoints (with a manifest) of a run, newest first.
    public static func complete(run: URL) -> [URL] {
        let root = run.appendingPathComponent("checkpoints")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.filter { $0.hasPrefix("step-") }.sorted(by: >).map { root.appendingPathComponent($0) }
            .filter { FileManager.default.fileExists(atPath: $0.appendingPathComponent("manifest.json").path) }
    }

    /// Keeps the newest `keep` complete checkpoints; removes older ones and any incomplete
    /// directory older than the newest complete one.
    static func prune(run: URL, keep: Int) {
        let done = complete(run: run)
        guard let newest = done.first else { return }
        for old in done.dropFirst(max(keep, 1)) { try? FileManager.default.removeItem(at: old) }
        let root = run.appendingPathComponent("checkpoints")
        for name in (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        where name.hasPrefix("step-") && name < newest.lastPathComponent {
            let dir = root.appendingPathComponent(name)
            if !FileManager.default.fileExists(atPath: dir.appendingPathComponent("manifest.json").path) {
                try? FileManager.default.removeItem(at: dir)
            }
        }
    }

    public static func readManifest(_ dir: URL) throws -> CheckpointManifest {
        let url = dir.appendingPathComponent("manifest.json")
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw RunError.checkpoint("\(dir.path): no manifest.json — an incomplete checkpoint (the save was interrupted)")
        }
        let manifest: CheckpointManifest
        do { manifest = try JSONDecoder().decode(CheckpointManifest.self, from: RunConfiguration.fillingNewSettings(manifest: data)) } catch {
            throw RunError.checkpoint("\(url.path): not a umd checkpoint manifest (\(error))")
        }
        if let problem = ManifestChecksum.problem(data, manifest: manifest) {
            throw RunError.checkpoint("\(url.path): \(problem); the manifest was edited or damaged after it was saved — "
                                  + "resume from another checkpoint (the run directory's older ones are tried in turn)")
        }
        let problems = manifest.consistencyProblems()
        guard problems.isEmpty else {
            throw RunError.checkpoint("\(url.path): inconsistent manifest: " + problems.joined(separator: "; "))
        }
        return manifest
    }

    /// Reads every shard into the state's arenas, checking sizes and checksums.
    public static func load(_ dir: URL, manifest m: CheckpointManifest, into state: TrainingState) throws {
        guard m.studentCount == state.student.count, m.teacherCount == state.teacherCount,
              m.student == state.student.views.map({ .init(name: $0.name, offset: $0.offset, shape: $0.shape) }) else {
            throw RunError.checkpoint("\(dir.appendingPathComponent("manifest.json").path): the arena layout differs from "
                                  + "this model's (another preset, vocabulary or task head?)")
        }
        // A sharded optimizer keeps only its own moments: the rest is read through a scratch.
        let discard = state.optimizer.isSharded ? UnsafeMutableRawBufferPointer.allocate(byteCount: 16 << 20, alignment: 64) : nil
        defer { discard?.deallocate() }
        var covered = 0
        for shard in m.shards.sorted(by: { $0.lower < $1.lower }) {
            guard shard.lower == covered, shard.upper >= shard.lower, (shard.upper - shard.lower) * 4 == shard.uncompressedBytes else {
                throw RunError.checkpoint("\(dir.appendingPathComponent("manifest.json").path): shard \(shard.file) "
                                      + "does not continue the state at \(covered)")
            }
            try ShardIO.read(dir.appendingPathComponent(shard.file), into: state.pieces(shard.lower, shard.upper, discard: discard),
                             expectedBytes: shard.uncompressedBytes, expectedXXH64: UInt64(shard.xxh64, radix: 16) ?? 0, checksumSeed: m.checksumSeed)
            covered = shard.upper
        }
        guard covered == m.stateCount else {
            throw RunError.checkpoint("\(dir.path): the shards cover \(covered) of \(m.stateCount) state elements")
        }
        state.optimizer.stepsTaken = m.optimizerSteps
    }

    /// The weights of a checkpoint as a safetensors file in memory: the student under its
    /// names and, when asked, the teacher under `teacher.<name>` (what `export` writes and
    /// what `--init` reads).
    public static func weights(_ dir: URL, includeTeacher: Bool) throws -> (Safetensors.File, CheckpointManifest) {
        let m = try readManifest(dir)
        let state = UnsafeMutablePointer<Float>.allocate(capacity: max(m.stateCount, 1))
        defer { state.deallocate() }
        let buffer = UnsafeMutableRawBufferPointer(start: state, count: m.stateCount * 4)
        for shard in m.shards {
            try ShardIO.read(dir.appendingPathComponent(shard.file),
                             into: [UnsafeMutableRawBufferPointer(rebasing: buffer[(shard.lower * 4)..<(shard.upper * 4)])],
                             expectedBytes: shard.uncompressedBytes, expectedXXH64: UInt64(shard.xxh64, radix: 16) ?? 0, checksumSeed: m.checksumSeed)
        }
        func tensors(_ list: [CheckpointManifest.Tensor], base: Int, prefix: String) -> [Safetensors.Tensor] {
            list.map { t in
                Safetensors.Tensor(name: prefix + t.name, shape: t.shape,
                                   floats: UnsafeBufferPointer(start: state + base + t.offset, count: t.shape.reduce(1, *)))
            }
        }
        var all = tensors(m.student, base: 0, prefix: "")
        if includeTeacher { all += tensors(m.teacher, base: m.studentCount, prefix: "teacher.") }
        let vocabulary = m.student.first { $0.name == "text.word_embed" }?.shape.first ?? 0
        let metadata = WeightsDescription.metadata(
            stage: m.stage, preset: m.preset, vocabularySize: vocabulary, imageSize: m.config.effectiveImageSize ?? 0,
            textLength: m.config.effectiveTextLength ?? 0, task: m.config.task?.rawValue ?? "", classes: m.classes ?? [],
            tokenizerHash: m.tokenizerHash, pooling: m.config.pooling, extra: ["step": String(m.step)])
        return (Safetensors.File(tensors: all, metadata: metadata), m)
    }

    /// Checks every shard without a model (for `inspect --verify`): size and checksum.
    public static func verify(_ dir: URL, manifest m: CheckpointManifest) -> [String] {
        var problems: [String] = []
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(1, m.shards.map(\.uncompressedBytes).max() ?? 1), alignment: 16)
        defer { buffer.deallocate() }
        for shard in m.shards {
            do {
                try ShardIO.read(dir.appendingPathComponent(shard.file),
                                 into: [UnsafeMutableRawBufferPointer(start: buffer, count: shard.uncompressedBytes)],
                                 expectedBytes: shard.uncompressedBytes, expectedXXH64: UInt64(shard.xxh64, radix: 16) ?? 0, checksumSeed: m.checksumSeed)
                // Intact but diverged: weights (or moments) that are NaN or infinite.
                let floats = buffer.bindMemory(to: Float.self, capacity: shard.upper - shard.lower)
                var bad = 0, first = -1
                for i in 0..<(shard.upper - shard.lower) where !floats[i].isFinite {
                    if first < 0 { first = shard.lower + i }
                    bad += 1
                }
                if bad > 0 {
                    problems.append("\(shard.file): \(bad) non-finite value(s), the first in \(m.describe(element: first)); "
                                    + "the run had diverged when it was saved")
                }
            } catch {
                problems.append("\(error)")
            }
        }
        return problems
    }
}

/// Validation's state across a checkpoint (see `Validation`): without it a resumed run
/// would replace best.safetensors with its first, maybe worse, validation and restart the
/// early-stop patience.
public struct ValidationState: Codable, Sendable, Equatable {
    public var bestScore: Double?
    public var bestStep: Int?
    public var sinceBest: Int
    /// Early stopping ended the run at this checkpoint: a resume has nothing left to train.
    public var stoppedEarly: Bool
}

/// The manifest's checksum over its own bytes: the JSON text as written, with the value of
/// `manifestXXH64` replaced by 16 zeros, hashed with XXH64.
enum ManifestChecksum {
    static let key = Array(#""manifestXXH64" : ""#.utf8)
    static let placeholder = String(repeating: "0", count: 16)

    static func encode(_ manifest: CheckpointManifest) throws -> Data {
        var m = manifest
        m.manifestXXH64 = placeholder
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        var bytes = [UInt8](try encoder.encode(m))
        guard let at = valueOffset(bytes) else { preconditionFailure("the manifest encoder changed its layout") }
        let hex = Array(String(format: "%016llx", XXH64.hash(bytes)).utf8)
        bytes.replaceSubrange(at..<(at + 16), with: hex)
        return Data(bytes)
    }

    /// Where the 16 hex digits of the checksum start in `bytes`, nil when absent.
    static func valueOffset(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= key.count + 16 else { return nil }
        for i in 0...(bytes.count - key.count - 16) where bytes[i] == key[0] && bytes[i..<(i + key.count)].elementsEqual(key) {
            return i + key.count
        }
        return nil
    }

    /// Why the manifest's text does not match its checksum (nil: it does, or it predates checksums).
    static func problem(_ data: Data, manifest: CheckpointManifest) -> String? {
        guard manifest.formatVersion >= 4 else { return nil }
        var bytes = [UInt8](data)
        guard let saved = manifest.manifestXXH64, let at = valueOffset(bytes) else {
            return "format \(manifest.formatVersion) manifest without its checksum (manifestXXH64)"
        }
        bytes.replaceSubrange(at..<(at + 16), with: Array(placeholder.utf8))
        let actual = String(format: "%016llx", XXH64.hash(bytes))
        return actual == saved.lowercased() ? nil : "the manifest's checksum does not match its text (saved \(saved), now \(actual))"
    }
}
