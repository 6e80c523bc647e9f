import Foundation
import Testing
@testable import UMDDistributed

/// TensorBoard event files: TFRecord framing with masked CRC32C, Event/Summary protobufs.
/// Read back here by a small independent reader; `tensorboard`'s EventAccumulator reads the
/// files a run writes too (checked by hand with the Python package, see the closing note).
struct TensorBoardTests {
    @Test func crc32cMatchesTheStandardCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    /// (step, tag, value) of every scalar in an event file, checking each record's CRCs.
    static func read(_ url: URL) throws -> (version: String?, scalars: [(Int, String, Float)]) {
        let bytes = [UInt8](try Data(contentsOf: url))
        var i = 0, version: String? = nil
        var scalars: [(Int, String, Float)] = []
        func u64(_ at: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(bytes[at + $1]) << (8 * UInt64($1)) } }
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * UInt32($1)) } }
        while i < bytes.count {
            let n = Int(u64(i))
            #expect(u32(i + 8) == TensorBoardWriter.maskedCRC(Array(bytes[i..<(i + 8)])), "length CRC at \(i)")
            let data = Array(bytes[(i + 12)..<(i + 12 + n)])
            #expect(u32(i + 12 + n) == TensorBoardWriter.maskedCRC(data), "data CRC at \(i)")
            i += 16 + n
            // Event: 1 wall_time (fixed64), 2 step (varint), 3 file_version (string), 5 summary.
            var step = 0
            for (field, value) in fields(data) {
                switch (field, value) {
                case (2, .varint(let v)): step = Int(v)
                case (3, .bytes(let b)): version = String(decoding: b, as: UTF8.self)
                case (5, .bytes(let summary)):
                    for (_, entry) in fields(summary) {
                        guard case .bytes(let e) = entry else { continue }
                        var tag = "", value: Float = .nan
                        for (f, v) in fields(e) {
                            if f == 1, case .bytes(let t) = v { tag = String(decoding: t, as: UTF8.self) }
                            if f == 2, case .fixed32(let bits) = v { value = Float(bitPattern: bits) }
                        }
                        scalars.append((step, tag, value))
                    }
                default: break
                }
            }
        }
        return (version, scalars)
    }

    enum Wire { case varint(UInt64), fixed64(UInt64), fixed32(UInt32), bytes([UInt8]) }

    static func fields(_ b: [UInt8]) -> [(Int, Wire)] {
        var i = 0, out: [(Int, Wire)] = []
        func varint() -> UInt64 {
            var v: UInt64 = 0, shift: UInt64 = 0
            while true { let byte = b[i]; i += 1; v |= UInt64(byte & 0x7F) << shift; if byte < 0x80 { return v }; shift += 7 }
        }
        while i < b.count {
            let key = varint(), field = Int(key >> 3)
            switch key & 7 {
            case 0: out.append((field, .varint(varint())))
            case 1: out.append((field, .fixed64((0..<8).reduce(0) { $0 | UInt64(b[i + $1]) << (8 * UInt64($1)) }))); i += 8
            case 5: out.append((field, .fixed32((0..<4).reduce(0) { $0 | UInt32(b[i + $1]) << (8 * UInt32($1)) }))); i += 4
            default: let n = Int(varint()); out.append((field, .bytes(Array(b[i..<(i + n)])))); i += n
            }
        }
        return out
    }

    /// Steps of the SessionLog.START events (Event field 7, status 1) of an event file.
    static func sessionStarts(_ url: URL) throws -> [Int] {
        let bytes = [UInt8](try Data(contentsOf: url))
        var i = 0, starts: [Int] = []
        while i < bytes.count {
            let n = Int((0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[i + $1]) << (8 * UInt64($1)) })
            let data = Array(bytes[(i + 12)..<(i + 12 + n)])
            i += 16 + n
            var step = 0, isStart = false
            for (field, value) in fields(data) {
                if field == 2, case .varint(let v) = value { step = Int(v) }
                if field == 7, case .bytes(let log) = value {
                    isStart = fields(log).contains { $0.0 == 1 && { if case .varint(1) = $0.1 { return true }; return false }($0) }
                }
            }
            if isStart { starts.append(step) }
        }
        return starts
    }

    /// What TensorBoard shows for a run directory: the files in name order, each
    /// SessionLog.START at step s dropping the events read so far at steps >= s.
    static func shown(_ dir: URL) throws -> [(Int, String, Float)] {
        let files = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasPrefix("events.out.tfevents.") }.sorted()
        var shown: [(Int, String, Float)] = []
        for name in files {
            let url = dir.appendingPathComponent(name)
            for start in try sessionStarts(url) { shown.removeAll { $0.0 >= start } }
            shown += try read(url).scalars
        }
        return shown
    }

    // Issue 24 item 10: a resumed run's event file starts with SessionLog.START at the
    // resumed step, so TensorBoard drops the killed run's rows past the checkpoint.
    @Test func aRestartedWriterSupersedesLaterSteps() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("umd-tb-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let first = try TensorBoardWriter(directory: dir)
        for step in 1...6 { try first.write(step: step, scalars: ["loss": Double(step)]) }
        let resumed = try TensorBoardWriter(directory: dir, restartAt: 5)
        #expect(resumed.url != first.url, "a new file, even within the same second")
        for step in 5...8 { try resumed.write(step: step, scalars: ["loss": Double(10 * step)]) }
        #expect(try Self.sessionStarts(resumed.url) == [5])
        #expect(try Self.sessionStarts(first.url) == [])
        #expect(try Self.shown(dir).map { "\($0.0):\($0.2)" } == ["1:1.0", "2:2.0", "3:3.0", "4:4.0", "5:50.0", "6:60.0", "7:70.0", "8:80.0"])
    }

    @Test func writtenScalarsReadBack() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("umd-tb-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let writer = try TensorBoardWriter(directory: dir)
        try writer.write(step: 1, scalars: ["pretrain/loss": 4.25, "pretrain/lr": 1e-4, "skipped": .nan])
        try writer.write(step: 300, scalars: ["pretrain/loss": 0.5])
        let (version, scalars) = try Self.read(writer.url)
        #expect(version == "brain.Event:2")
        #expect(scalars.map { "\($0.0) \($0.1) \($0.2)" } == ["1 pretrain/loss 4.25", "1 pretrain/lr 0.0001", "300 pretrain/loss 0.5"],
                "non-finite values are left out")
    }
}
