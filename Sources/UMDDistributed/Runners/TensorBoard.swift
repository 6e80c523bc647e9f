import Foundation
import UMDCore

/// TensorBoard event files beside `metrics.jsonl`, so `tensorboard --logdir RUNS` shows a
/// run's scalars. An event file is a TFRecord stream — each record is
/// `u64 length, u32 masked-CRC32C(length), data, u32 masked-CRC32C(data)` — of `Event`
/// protocol buffers: the first holds `file_version = "brain.Event:2"`, then one per logged
/// step with a `Summary` of (tag, simple_value) pairs. The few protobuf fields are written
/// by hand (wire format: varint keys, fixed64 wall_time, varint step, length-delimited
/// strings and messages, fixed32 floats).
final class TensorBoardWriter {
    let url: URL

    /// Opens a new event file in `directory` (named as TensorBoard's writers name them).
    /// `restartAt`: a resumed run's first step. The file then starts with a
    /// `SessionLog.START` event at that step, TensorBoard's convention for a restart: it
    /// drops the earlier files' events from that step on (the killed run's rows past its
    /// checkpoint, which metrics.jsonl drops too).
    init(directory: URL, restartAt: Int? = nil) throws {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
        let stem = "events.out.tfevents.\(Int(Date().timeIntervalSince1970)).\(host)"
        // A new file every time (a resume within the same second must not append to the old
        // one), named to sort after it: TensorBoard reads a directory's files in name order.
        var candidate = directory.appendingPathComponent(stem + ".umd"), n = 2
        while FileManager.default.fileExists(atPath: candidate.path) {
            candidate = directory.appendingPathComponent(stem + ".umd." + String(format: "%04d", n)); n += 1
        }
        url = candidate
        var event = Protobuf()
        event.fixed64(field: 1, Date().timeIntervalSince1970.bitPattern)
        event.string(field: 3, "brain.Event:2")
        var data = Self.record(event.bytes)
        if let restartAt {
            var session = Protobuf()
            session.varint(field: 1, 1)                          // SessionLog.status = START
            var start = Protobuf()
            start.fixed64(field: 1, Date().timeIntervalSince1970.bitPattern)
            start.varint(field: 2, UInt64(bitPattern: Int64(restartAt)))
            start.message(field: 7, session)                     // Event.session_log
            data += Self.record(start.bytes)
        }
        try appendToFile(data, at: url)
    }

    /// One event at `step` with every finite value of `scalars` under its tag.
    func write(step: Int, scalars: [String: Double]) throws {
        var summary = Protobuf()
        for (tag, value) in scalars.sorted(by: { $0.key < $1.key }) where value.isFinite {
            var entry = Protobuf()
            entry.string(field: 1, tag)
            entry.fixed32(field: 2, Float(value).bitPattern)
            summary.message(field: 1, entry)
        }
        var event = Protobuf()
        event.fixed64(field: 1, Date().timeIntervalSince1970.bitPattern)
        event.varint(field: 2, UInt64(bitPattern: Int64(step)))
        event.message(field: 5, summary)
        try appendToFile(Self.record(event.bytes), at: url)
    }

    /// TFRecord framing of one record.
    static func record(_ data: [UInt8]) -> Data {
        var out = [UInt8]()
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian) { Array($0) }
        out += length
        out += withUnsafeBytes(of: maskedCRC(length).littleEndian) { Array($0) }
        out += data
        out += withUnsafeBytes(of: maskedCRC(data).littleEndian) { Array($0) }
        return Data(out)
    }

    /// TFRecord's masked CRC32C.
    static func maskedCRC(_ bytes: [UInt8]) -> UInt32 {
        let c = CRC32C.checksum(bytes)
        return ((c >> 15) | (c << 17)) &+ 0xA282_EAD8
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table driven.
enum CRC32C {
    static let table: [UInt32] = (0..<256).map { i -> UInt32 in
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    static func checksum(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return ~c
    }
}

/// The protobuf wire format, for the handful of fields an event needs.
struct Protobuf {
    private(set) var bytes: [UInt8] = []

    mutating func rawVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 { bytes.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        bytes.append(UInt8(v))
    }
    mutating func key(_ field: Int, _ wireType: UInt64) { rawVarint(UInt64(field) << 3 | wireType) }
    mutating func varint(field: Int, _ v: UInt64) { key(field, 0); rawVarint(v) }
    mutating func fixed64(field: Int, _ v: UInt64) {
        key(field, 1)
        bytes += withUnsafeBytes(of: v.littleEndian) { Array($0) }
    }
    mutating func fixed32(field: Int, _ v: UInt32) {
        key(field, 5)
        bytes += withUnsafeBytes(of: v.littleEndian) { Array($0) }
    }
    mutating func lengthDelimited(field: Int, _ data: [UInt8]) {
        key(field, 2); rawVarint(UInt64(data.count)); bytes += data
    }
    mutating func string(field: Int, _ s: String) { lengthDelimited(field: field, Array(s.utf8)) }
    mutating func message(field: Int, _ m: Protobuf) { lengthDelimited(field: field, m.bytes) }
}
