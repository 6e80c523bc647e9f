import Foundation
import Testing
@testable import UMDModel

/// Files are written whole, whatever the size and however the system splits the writes.
@Suite(.serialized)
struct LargeFileTests {
    func temporaryFile(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("umd-test-\(UUID().uuidString)-\(name)")
    }

    @Test func aWriterThatMovesSevenBytesPerCallStillWritesEveryByte() throws {
        let url = temporaryFile("short-writes.safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        let tensors = [Safetensors.Tensor(name: "a", shape: [1000], floats: (0..<1000).map { Float($0) * 0.5 }),
                       Safetensors.Tensor(name: "b", shape: [3], ints: [1, 2, 3])]
        try Safetensors.write(tensors, metadata: ["k": "v"], to: url, maxBytesPerCall: 7)
        let file = try Safetensors.read(url)
        #expect(file.tensors == tensors && file.metadata == ["k": "v"])
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: url.deletingLastPathComponent().path)
            .filter { $0.hasPrefix(url.lastPathComponent + ".tmp") }
        #expect(leftovers.isEmpty, "no temporary file is left behind")
    }

    @Test func anUncommittedWriteLeavesNothingAndAMissingDirectoryIsNamed() throws {
        let url = temporaryFile("never.bin")
        do {
            let writer = try AtomicFileWriter(url)
            try writer.append(Data([1, 2, 3]))
        }   // dropped without commit
        #expect(!FileManager.default.fileExists(atPath: url.path))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("umd-no-such-dir-\(UUID().uuidString)")
        #expect(throws: FileError.self) { try AtomicFileWriter.write("x", to: dir.appendingPathComponent("f")) }
        do { try AtomicFileWriter.write("x", to: dir.appendingPathComponent("f")) } catch {
            #expect("\(error)".contains("the directory \(dir.path) does not exist"), "\(error)")
        }
    }

    /// A tensor of 2^31 + 8 MiB bytes: every MiB holds its own index, so a writer that
    /// repeated the file's beginning past 0x7ffff000 (what one Foundation write did) shows.
    @Test func aFileLargerThanTwoGiBReadsBackBitForBit() throws {
        let url = temporaryFile("large.safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        let mib = 1 << 20, chunks = 2048 + 8
        var data = Data(count: chunks * mib)
        data.withUnsafeMutableBytes { buffer in
            for c in 0..<chunks {
                let words = (buffer.baseAddress! + c * mib).bindMemory(to: UInt32.self, capacity: mib / 4)
                words.initialize(repeating: UInt32(c) &* 2654435761, count: mib / 4)
            }
        }
        let tensor = Safetensors.Tensor(name: "big", dtype: .f32, shape: [chunks * mib / 4], data: data)
        let small = Safetensors.Tensor(name: "tail", shape: [2], floats: [1, 2])
        try Safetensors.write([tensor, small], to: url)
        let size = try FileManager.default.attributesOfItem(atPath: url.path)[.size] as? Int ?? 0
        #expect(size > Int(Int32.max))
        let back = try Safetensors.read(url)
        #expect(back.tensors.count == 2)
        #expect(back["big"]?.data == data, "the large tensor differs after a round trip")
        #expect(back["tail"]?.floats == [1, 2])
    }
}
