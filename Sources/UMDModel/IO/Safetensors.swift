import Foundation

/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping
/// each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the
/// data section) plus an optional "__metadata__" string map, then the raw little-endian data.
public enum Safetensors {
    /// umd writes F32 and I32; other files (Hugging Face's) may also hold half floats,
    /// doubles and 64-bit integers, which the converter reads as F32 (`asFloats`).
    public enum DType: String, Sendable {
        case f32 = "F32", i32 = "I32", f16 = "F16", bf16 = "BF16", f64 = "F64", i64 = "I64"
        var size: Int {
            switch self {
            case .f32, .i32: return 4
            case .f16, .bf16: return 2
            case .f64, .i64: return 8
            }
        }
    }

    public struct Tensor: Sendable, Equatable {
        public var name: String
        public var dtype: DType
        public var shape: [Int]
        public var data: Data            // raw little-endian bytes

        public var count: Int { shape.reduce(1, *) }

        public init(name: String, dtype: DType, shape: [Int], data: Data) {
            self.name = name; self.dtype = dtype; self.shape = shape; self.data = data
        }

        public init(name: String, shape: [Int], floats: UnsafeBufferPointer<Float>) {
            self.init(name: name, dtype: .f32, shape: shape, data: Data(buffer: floats))
        }

        /// A tensor whose bytes stay where they are (an arena view): no copy. The memory
        /// must outlive every use of the tensor (writing a file from live arenas).
        public init(name: String, shape: [Int], borrowing floats: UnsafeBufferPointer<Float>) {
            let data = floats.isEmpty ? Data() : Data(bytesNoCopy: UnsafeMutableRawPointer(mutating: floats.baseAddress!),
                                                      count: floats.count * 4, deallocator: .none)
            self.init(name: name, dtype: .f32, shape: shape, data: data)
        }

        public init(name: String, shape: [Int], floats: [Float]) {
            self.init(name: name, dtype: .f32, shape: shape, data: floats.withUnsafeBufferPointer { Data(buffer: $0) })
        }

        public init(name: String, shape: [Int], ints: [Int32]) {
            self.init(name: name, dtype: .i32, shape: shape, data: ints.withUnsafeBufferPointer { Data(buffer: $0) })
        }

        public var floats: [Float] {
            precondition(dtype == .f32)
            return data.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        }

        public var ints: [Int32] {
            precondition(dtype == .i32)
            return data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
        }

        /// The values as Float32 whatever the floating dtype (F16/BF16 widen exactly, F64
        /// rounds to nearest); nil for integer tensors.
        public var asFloats: [Float]? {
            switch dtype {
            case .f32: return floats
            case .f64: return data.withUnsafeBytes { $0.bindMemory(to: Double.self).map { Float($0) } }
            case .bf16: return data.withUnsafeBytes { $0.bindMemory(to: UInt16.self).map { Float(bitPattern: UInt32($0) << 16) } }
            case .f16: return data.withUnsafeBytes { $0.bindMemory(to: UInt16.self).map { Float(Float16(bitPattern: $0)) } }
            case .i32, .i64: return nil
            }
        }
    }

    public struct File: Sendable {
        /// Tensors in file order.
        public var tensors: [Tensor]
        public var metadata: [String: String]
        public init(tensors: [Tensor], metadata: [String: String] = [:]) { self.tensors = tensors; self.metadata = metadata }
        public subscript(name: String) -> Tensor? { tensors.first { $0.name == name } }
        public var byName: [String: Tensor] { Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }) }
    }

    /// Writes `tensors` in the given order; the header is padded with spaces to a multiple of 8.
    /// Every byte goes through `AtomicFileWriter` (bounded, looping writes; temporary name,
    /// fsync, rename); the header is re-read afterwards. `maxBytesPerCall` is for tests.
    public static func write(_ tensors: [Tensor], metadata: [String: String] = [:], to url: URL,
                             maxBytesPerCall: Int = 1 << 30) throws {
        var header: [String: Any] = [:]
        var offset = 0
        var seen = Set<String>()
        for t in tensors {
            guard seen.insert(t.name).inserted else {
                throw ModelError.safetensors(path: url.path, problem: "tensor \(t.name) appears twice")
            }
            guard t.data.count == t.count * t.dtype.size else {
                throw ModelError.safetensors(path: url.path, problem: "tensor \(t.name) has \(t.data.count) bytes for shape \(t.shape)")
            }
            header[t.name] = ["dtype": t.dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + t.data.count]]
            offset += t.data.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        // Streamed piece by piece (no second copy of a model-sized buffer), atomically.
        let writer = try AtomicFileWriter(url, maxBytesPerCall: maxBytesPerCall)
        var length = UInt64(json.count).littleEndian
        try withUnsafeBytes(of: &length) { try writer.append($0) }
        try writer.append(json)
        for t in tensors { try writer.append(t.data) }
        try writer.commit()
        try checkWritten(url, tensorBytes: offset)
    }

    /// Re-reads the header of a file just written and checks the file's size against the
    /// header's offsets, so a short or corrupted write is an error, not a file that loads later.
    public static func checkWritten(_ url: URL, tensorBytes: Int) throws {
        let (headerLength, header, fileSize) = try readHeader(url)
        let end = header.values.compactMap { ($0 as? [String: Any])?["data_offsets"] as? [Any] }
            .compactMap { ($0.last as? NSNumber)?.intValue }.max() ?? 0
        guard end == tensorBytes, fileSize == 8 + headerLength + end else {
            throw ModelError.safetensors(path: url.path, problem: "after writing, the file has \(fileSize) bytes but its header "
                              + "describes \(8 + headerLength + end) (expected \(8 + headerLength + tensorBytes))")
        }
    }

    /// The header alone: its length, the parsed JSON object, and the file's size.
    public static func readHeader(_ url: URL) throws -> (length: Int, header: [String: Any], fileSize: Int) {
        let path = url.path
        if let kind = nonRegularFileKind(url) {
            throw ModelError.safetensors(path: path, problem: "\(kind), not a weights file")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw ModelError.safetensors(path: path, problem: "cannot open the file")
        }
        defer { try? handle.close() }
        let fileSize = Int((try? handle.seekToEnd()) ?? 0)
        try handle.seek(toOffset: 0)
        let lengthBytes = try handle.read(upToCount: 8) ?? Data()
        guard lengthBytes.count == 8 else { throw ModelError.safetensors(path: path, problem: "shorter than the 8-byte header length") }
        let headerLength = lengthBytes.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian
        guard headerLength <= UInt64(fileSize - 8) else {
            throw ModelError.safetensors(path: path, problem: "header length \(headerLength) exceeds the file size \(fileSize)")
        }
        let headerData = try handle.read(upToCount: Int(headerLength)) ?? Data()
        guard headerData.count == Int(headerLength),
              let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
            throw ModelError.safetensors(path: path, problem: "the header is not a JSON object")
        }
        return (Int(headerLength), header, fileSize)
    }

    /// Reads and validates a whole file.
    public static func read(_ url: URL) throws -> File {
        let path = url.path
        let bytes: Data
        do { bytes = try readWholeFile(url) } catch {
            throw ModelError.safetensors(path: path, problem: "cannot read the file (\(error))")
        }
        guard bytes.count >= 8 else { throw ModelError.safetensors(path: path, problem: "shorter than the 8-byte header length") }
        let headerLength = bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw ModelError.safetensors(path: path, problem: "header length \(headerLength) exceeds the file size \(bytes.count)")
        }
        let headerData = bytes.subdata(in: 8..<(8 + Int(headerLength)))
        guard let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
            throw ModelError.safetensors(path: path, problem: "the header is not a JSON object")
        }
        let dataStart = 8 + Int(headerLength)
        let dataLength = bytes.count - dataStart
        var metadata: [String: String] = [:]
        var entries: [(begin: Int, tensor: Tensor)] = []
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            guard let info = value as? [String: Any], let dtypeName = info["dtype"] as? String,
                  let shape = (info["shape"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  let offsets = (info["data_offsets"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  offsets.count == 2 else {
                throw ModelError.safetensors(path: path, problem: "tensor \(name) lacks dtype, shape or data_offsets")
            }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw ModelError.safetensors(path: path, problem: "tensor \(name) has dtype \(dtypeName); umd reads F32, F16, BF16, F64, I32 and I64")
            }
            let (begin, end) = (offsets[0], offsets[1])
            // The element count must not overflow (a hostile shape like [2^40, 2^40] would trap).
            var expected = dtype.size
            for d in shape {
                let (product, overflow) = expected.multipliedReportingOverflow(by: d)
                guard d >= 0, !overflow else {
                    throw ModelError.safetensors(path: path, problem: "tensor \(name) has shape \(shape), whose size overflows or is negative")
                }
                expected = product
            }
            guard begin >= 0, end >= begin, end <= dataLength else {
                throw ModelError.safetensors(path: path, problem: "tensor \(name) has data_offsets [\(begin), \(end)] outside the "
                                  + "\(dataLength)-byte data section (truncated file?)")
            }
            guard end - begin == expected else {
                throw ModelError.safetensors(path: path, problem: "tensor \(name) holds \(end - begin) bytes but shape \(shape) "
                                  + "needs \(expected)")
            }
            // A slice shares the file's buffer: no second copy of a model-sized file.
            let data = bytes[(bytes.startIndex + dataStart + begin)..<(bytes.startIndex + dataStart + end)]
            entries.append((begin, Tensor(name: name, dtype: dtype, shape: shape, data: data)))
        }
        entries.sort { $0.begin < $1.begin || ($0.begin == $1.begin && $0.tensor.name < $1.tensor.name) }
        // Tensors must not share bytes: overlapping data_offsets would alias two weights.
        for (previous, next) in zip(entries, entries.dropFirst())
        where next.begin < previous.begin + previous.tensor.data.count && next.tensor.data.count > 0 {
            throw ModelError.safetensors(path: path, problem: "tensors \(previous.tensor.name) and \(next.tensor.name) overlap "
                              + "(data_offsets starting at \(previous.begin) and \(next.begin))")
        }
        return File(tensors: entries.map(\.tensor), metadata: metadata)
    }
}
