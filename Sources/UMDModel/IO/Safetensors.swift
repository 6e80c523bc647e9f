import Foundation

/// The safetensors format: an 8-byte little-endian header length, a JSON header mapping
/// each tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the
/// data section) plus an optional "__metadata__" string map, then the raw little-endian data.
public enum Safetensors {
    public enum DType: String, Sendable {
        case f32 = "F32", i32 = "I32"
        var size: Int { 4 }
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
    }

    public struct File: Sendable {
        /// Tensors in file order.
        public var tensors: [Tensor]
        public var metadata: [String: String]
        public init(tensors: [Tensor], metadata: [String: String] = [:]) { self.tensors = tensors; self.metadata = metadata }
        public subscript(name: String) -> Tensor? { tensors.first { $0.name == name } }
        public var byName: [String: Tensor] { Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a }) }
    }

    public struct FormatError: Error, CustomStringConvertible {
        public let path: String
        public let problem: String
        public var description: String { "\(path): not a valid safetensors file: \(problem)" }
    }

    /// Writes `tensors` in the given order; the header is padded with spaces to a multiple of 8.
    public static func write(_ tensors: [Tensor], metadata: [String: String] = [:], to url: URL) throws {
        var header: [String: Any] = [:]
        var offset = 0
        var seen = Set<String>()
        for t in tensors {
            guard seen.insert(t.name).inserted else {
                throw FormatError(path: url.path, problem: "tensor \(t.name) appears twice")
            }
            guard t.data.count == t.count * t.dtype.size else {
                throw FormatError(path: url.path, problem: "tensor \(t.name) has \(t.data.count) bytes for shape \(t.shape)")
            }
            header[t.name] = ["dtype": t.dtype.rawValue, "shape": t.shape, "data_offsets": [offset, offset + t.data.count]]
            offset += t.data.count
        }
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data(capacity: 8 + json.count + offset)
        var length = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &length) { out.append(contentsOf: $0) }
        out.append(json)
        for t in tensors { out.append(t.data) }
        try out.write(to: url, options: .atomic)
    }

    /// Reads and validates a whole file.
    public static func read(_ url: URL) throws -> File {
        let path = url.path
        let bytes: Data
        do { bytes = try Data(contentsOf: url) } catch {
            throw FormatError(path: path, problem: "cannot read the file (\(error.localizedDescription))")
        }
        guard bytes.count >= 8 else { throw FormatError(path: path, problem: "shorter than the 8-byte header length") }
        let headerLength = bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }.littleEndian
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw FormatError(path: path, problem: "header length \(headerLength) exceeds the file size \(bytes.count)")
        }
        let headerData = bytes.subdata(in: 8..<(8 + Int(headerLength)))
        guard let header = (try? JSONSerialization.jsonObject(with: headerData)) as? [String: Any] else {
            throw FormatError(path: path, problem: "the header is not a JSON object")
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
                throw FormatError(path: path, problem: "tensor \(name) lacks dtype, shape or data_offsets")
            }
            guard let dtype = DType(rawValue: dtypeName) else {
                throw FormatError(path: path, problem: "tensor \(name) has dtype \(dtypeName); umd reads F32 and I32")
            }
            let (begin, end) = (offsets[0], offsets[1])
            let expected = shape.reduce(1, *) * dtype.size
            guard begin >= 0, end >= begin, end <= dataLength else {
                throw FormatError(path: path, problem: "tensor \(name) has data_offsets [\(begin), \(end)] outside the "
                                  + "\(dataLength)-byte data section (truncated file?)")
            }
            guard end - begin == expected else {
                throw FormatError(path: path, problem: "tensor \(name) holds \(end - begin) bytes but shape \(shape) "
                                  + "needs \(expected)")
            }
            let data = bytes.subdata(in: (dataStart + begin)..<(dataStart + end))
            entries.append((begin, Tensor(name: name, dtype: dtype, shape: shape, data: data)))
        }
        entries.sort { $0.begin < $1.begin || ($0.begin == $1.begin && $0.tensor.name < $1.tensor.name) }
        return File(tensors: entries.map(\.tensor), metadata: metadata)
    }
}
