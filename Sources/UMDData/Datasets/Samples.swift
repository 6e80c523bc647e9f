#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// Where a sample came from, for messages: file and 1-based line (0 when not line-based).
public struct RecordLocation: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public init(file: String, line: Int) { self.file = file; self.line = line }
    public var description: String { line > 0 ? "\(file):\(line)" : file }
}

/// An image with its text: a ROCO or MedICaT caption, a MELINDA caption, a VQA question.
public struct ImageTextSample: Sendable, Equatable {
    public var image: URL
    public var text: String
    public var source: RecordLocation
}

public enum AnswerType: String, Sendable, Codable { case open, closed }

public struct VQASample: Sendable, Equatable {
    public var image: URL
    public var question: String
    /// The normalised answer (AnswerVocabulary.normalize).
    public var answer: String
    public var answerType: AnswerType
    public var source: RecordLocation
}

public struct ClassificationSample: Sendable, Equatable {
    public var image: URL
    public var caption: String
    public var label: Int
    public var source: RecordLocation
}

/// What a reader accepted and what it skipped, with one message per skipped record.
public struct DataReport: Sendable, CustomStringConvertible {
    public var dataset: String
    public var accepted = 0
    public var skipped: [(location: RecordLocation, reason: String)] = []
    /// What the reader chose where the release leaves a choice (a held-out validation split, …).
    public var notes: [String] = []

    public init(dataset: String) { self.dataset = dataset }

    public var description: String {
        "\(dataset): \(accepted) samples accepted, \(skipped.count) skipped" + notes.map { "; " + $0 }.joined()
    }

    /// One warning line per skipped record.
    public var warnings: [String] { skipped.map { "warning: \($0.location): \($0.reason); skipped" } }

    /// The first `limit` warnings and, when there are more, a line counting the rest.
    public func warnings(limit: Int) -> [String] {
        Array(warnings.prefix(limit)) + (skipped.count > limit ? ["… and \(skipped.count - limit) more skipped records of \(dataset)"] : [])
    }
}

/// UMDData's errors. Every message names the file (and line or record) and what to do.
public enum DataError: Error, CustomStringConvertible, Sendable {
    /// A data set that cannot be read as its release lays it out (a missing file, a bad
    /// record under --strict, an empty split, …): the whole sentence.
    case dataset(String)
    /// An image that cannot be decoded (or claims more pixels than allowed).
    case image(path: String, reason: String)
    /// A tokenizer directory whose vocab.json or merges.txt is unusable.
    case tokenizer(path: String, problem: String)
    /// A sampler asked for an impossible split of the data over the ranks.
    case sampler(String)

    public var description: String {
        switch self {
        case .dataset(let message), .sampler(let message): return message
        case .image(let path, let reason): return "\(path): \(reason)"
        case .tokenizer(let path, let problem): return "\(path): \(problem)"
        }
    }
}

/// Options every reader shares.
public struct ReaderOptions: Sendable {
    /// Turn every skipped record into an error.
    public var strict = false
    /// Check that each image file exists and starts like a PNG or JPEG.
    public var checkImages = true
    /// Decode every image while reading (catches a truncated body too; costs a full decode
    /// per image). Without it a body that fails to decode later stops the run with an error
    /// naming the file, because a sample cannot silently leave a global batch mid-epoch.
    public var decodeImages = false
    /// Largest image (pixels) decoded; a larger header is a bad record, not an allocation.
    public var maxImagePixels = ImageCodec.defaultMaxPixels
    /// Where a release has no validation split (VQA-RAD): this fraction of the training
    /// split, seeded and stratified, is held out as one (`--validation-holdout`).
    public var validationHoldout = 0.1
    /// MELINDA's label column (`--label-column`): `p_meth_label` or `i_meth_label`.
    public var labelColumn = "p_meth_label"
    /// MedICaT: the inline references are texts too, as M3AE reads them (`--medicat-references`).
    public var medicatReferences = true
    public init(strict: Bool = false, checkImages: Bool = true, decodeImages: Bool = false,
                maxImagePixels: Int = ImageCodec.defaultMaxPixels) {
        self.strict = strict; self.checkImages = checkImages; self.decodeImages = decodeImages
        self.maxImagePixels = maxImagePixels
    }
}

/// Shared record-level checks.
struct RecordChecker {
    var report: DataReport
    let options: ReaderOptions
    /// The data set's root (for messages).
    let root: String

    init(report: DataReport, options: ReaderOptions, root: URL) {
        self.report = report
        self.options = options
        self.root = root.path
    }

    /// The reason `imageProblem` gives when the image's folder is missing. One record naming
    /// a folder that is not there (`nosuchdir/ROCO_00018`) is skipped like any bad record;
    /// when no record is left, the data set's image folder itself is missing: one error
    /// naming it instead of a warning per record (`finish`).
    static let missingFolder = "the image folder "

    /// Records a bad record: skipped, or an error when strict.
    mutating func skip(_ location: RecordLocation, _ reason: String) throws {
        if options.strict {
            throw DataError.dataset("\(location): \(reason) (--strict turns bad records into errors; drop the flag to skip them)")
        }
        report.skipped.append((location, reason))
    }

    /// The report of a finished read of `accepted` samples; an error when every record was
    /// skipped because its image folder does not exist.
    mutating func finish(accepted: Int) throws -> DataReport {
        report.accepted = accepted
        if accepted == 0, let first = report.skipped.first(where: { $0.reason.hasPrefix(Self.missingFolder) }) {
            throw DataError.dataset("\(first.location): \(first.reason); every record of this file names an image there")
        }
        return report
    }

    /// nil when the image is fine, else the reason to skip. `recordPath` is the part of the
    /// path the record itself wrote (an image name, an id + ".jpg"): it may not leave the
    /// data set's root — no `..` component, not absolute — checked on its text, so even when
    /// images are not checked. Folders (and files) inside the root may be links the user made
    /// to elsewhere (`ln -s ../downloads/VQA_RAD\ Image\ Folder images`). Only regular files
    /// are opened (a FIFO would block, a directory is no image).
    func imageProblem(_ url: URL, recordPath: String) -> String? {
        if recordPath.hasPrefix("/") || recordPath.split(separator: "/").contains("..") || recordPath.contains("\0") {
            return "image path \(recordPath) leaves the data set root (absolute or through ..); a record names an image "
                + "below its folder"
        }
        guard options.checkImages else { return nil }
        if let problem = ImageCodec.regularFileProblem(url) {
            let folder = url.deletingLastPathComponent()
            if problem == "missing" && !FileManager.default.fileExists(atPath: folder.path) {
                return Self.missingFolder + "\(folder.path) does not exist"
            }
            return "image \(url.path) is \(problem)"
        }
        guard let handle = FileHandle(forReadingAtPath: url.path) else { return "image \(url.path) cannot be opened" }
        defer { try? handle.close() }
        let head = (try? handle.read(upToCount: 8)) ?? Data()
        if ImageCodec.sniff(head) == nil { return "image \(url.path) is not a PNG or JPEG (corrupt?)" }
        if let size = ImageCodec.declaredSize(handle), size.width.multipliedReportingOverflow(by: size.height).partialValue
            > options.maxImagePixels || size.width > 1 << 20 || size.height > 1 << 20 {
            return "image \(url.path) declares \(size.width)x\(size.height) pixels, more than the "
                + String(format: "%g", Double(options.maxImagePixels) / 1e6) + " megapixels allowed (--max-image-megapixels)"
        }
        if options.decodeImages {
            do { _ = try ImageCodec.decode(file: url, maxPixels: options.maxImagePixels) } catch { return "\(error)" }
        }
        return nil
    }
}

/// Reads a text file as UTF-8 lines with their 1-based numbers; invalid UTF-8 lines are
/// reported, not decoded with replacement characters.
func readLines(_ url: URL) throws -> [(number: Int, text: String?)] {
    guard let data = FileManager.default.contents(atPath: url.path) else {
        throw DataError.dataset("\(url.path): cannot read the file")
    }
    var lines: [(Int, String?)] = []
    var start = data.startIndex
    var number = 1
    while start < data.endIndex {
        let end = data[start...].firstIndex(of: 0x0A) ?? data.endIndex
        var slice = data[start..<end]
        if slice.last == 0x0D { slice = slice.dropLast() }
        lines.append((number, String(data: Data(slice), encoding: .utf8)))
        number += 1
        start = end < data.endIndex ? data.index(after: end) : end
    }
    return lines
}

func firstExisting(_ candidates: [URL]) -> URL? {
    candidates.first { FileManager.default.fileExists(atPath: $0.path) }
}
