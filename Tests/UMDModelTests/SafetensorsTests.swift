import Foundation
import Testing
@testable import UMDModel

struct SafetensorsTests {
    func temporaryFile(_ name: String) -> URL {
        FileManager.default.temporaryDirectory.appendingPathComponent("umd-test-\(UUID().uuidString)-\(name)")
    }

    @Test func aWrittenFileReadsBackIdentically() throws {
        let url = temporaryFile("a.safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        let tensors = [Safetensors.Tensor(name: "x.weight", shape: [2, 3], floats: [1, -2, 3.5, .pi, 0, -0]),
                       Safetensors.Tensor(name: "ids", shape: [4], ints: [0, -100, Int32.max, 7]),
                       Safetensors.Tensor(name: "scalar", shape: [1], floats: [42])]
        try Safetensors.write(tensors, metadata: ["stage": "pretrain"], to: url)
        let file = try Safetensors.read(url)
        #expect(file.tensors == tensors)
        #expect(file.metadata == ["stage": "pretrain"])
        // The layout of the format: 8-byte little-endian length, header padded to 8.
        let bytes = try Data(contentsOf: url)
        let length = bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) }
        #expect(length % 8 == 0 && bytes.count == 8 + Int(length) + 6 * 4 + 4 * 4 + 4)
    }

    @Test func aModelExportsAndImportsExactly() throws {
        let params = UMDParameters(SyntheticBatch.config())
        let a = ParameterStore(layout: params.layout), b = ParameterStore(layout: params.layout)
        params.initialize(a, seed: 1)
        let url = temporaryFile("model.safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        let teacher = ParameterStore(layout: params.layout, withGradients: false) { UMDParameters.isTeacherTensor($0.name) }
        params.initialize(teacher, seed: 2)
        try ModelIO.export(student: a, teacher: teacher, to: url)
        let file = try Safetensors.read(url)
        #expect(file["vision.patch_embed.weight"]?.shape == [64, 192])
        #expect(file["teacher.fea.text.weight"] != nil && file["teacher.itm.weight"] == nil)
        try ModelIO.load(into: b, from: file, path: url.path)
        #expect(memcmp(a.values, b.values, a.count * 4) == 0)
        let t2 = ParameterStore(layout: params.layout, withGradients: false) { UMDParameters.isTeacherTensor($0.name) }
        try ModelIO.load(into: t2, from: file, path: url.path, prefix: "teacher.")
        #expect(memcmp(teacher.values, t2.values, teacher.count * 4) == 0)
    }

    @Test func missingOrMisshapedTensorsAreNamed() throws {
        let params = UMDParameters(SyntheticBatch.config())
        let store = ParameterStore(layout: params.layout)
        params.initialize(store, seed: 1)
        var tensors = ModelIO.tensors(of: store).filter { $0.name != "mlm.bias" }
        let i = tensors.firstIndex { $0.name == "itm.weight" }!
        tensors[i] = Safetensors.Tensor(name: "itm.weight", shape: [3, 128], floats: [Float](repeating: 0, count: 384))
        tensors.append(Safetensors.Tensor(name: "head.fc9.weight", shape: [1], floats: [0]))
        let url = temporaryFile("bad.safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try Safetensors.write(tensors, to: url)
        let before = Array(UnsafeBufferPointer(start: store.values, count: store.count))
        #expect {
            try ModelIO.load(into: store, from: try Safetensors.read(url), path: url.path)
        } throws: { error in
            let text = "\(error)"
            return text.contains("missing 1 tensor(s): mlm.bias") && text.contains("itm.weight is [3, 128], expected [2, 128]")
                && text.contains("head.fc9.weight") && text.contains(url.path)
        }
        #expect(Array(UnsafeBufferPointer(start: store.values, count: store.count)) == before, "nothing changes on error")
        // A subset import ignores what it was not asked for.
        let fresh = ParameterStore(layout: params.layout)
        let report = try ModelIO.load(into: fresh, from: try Safetensors.read(url), path: url.path) {
            $0.hasPrefix("vision.") || $0.hasPrefix("text.")
        }
        #expect(report.loaded.count == store.views.filter { $0.name.hasPrefix("vision.") || $0.name.hasPrefix("text.") }.count)
    }

    @Test func truncatedOrCorruptFilesGiveClearErrors() throws {
        let url = temporaryFile("t.safetensors")
        defer { try? FileManager.default.removeItem(at: url) }
        try Safetensors.write([Safetensors.Tensor(name: "w", shape: [100], floats: [Float](repeating: 1, count: 100))], to: url)
        let bytes = try Data(contentsOf: url)
        try bytes.prefix(bytes.count - 10).write(to: url)
        #expect { try Safetensors.read(url) } throws: { "\($0)".contains("outside the") && "\($0)".contains(url.path) }
        try Data([1, 2, 3]).write(to: url)
        #expect { try Safetensors.read(url) } throws: { "\($0)".contains("shorter than the 8-byte header") }
    }

    /// A file with this header (JSON text, padded) and `dataBytes` zero bytes of data.
    func rawFile(header: String, dataBytes: Int) throws -> URL {
        let url = temporaryFile("raw.safetensors")
        var json = Data(header.utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var bytes = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Data($0) }
        bytes += json + Data(count: dataBytes)
        try bytes.write(to: url)
        return url
    }

    // Issue 24 item 15: an element count that overflows trapped (Illegal instruction);
    // overlapping data_offsets were accepted.
    @Test func hostileShapesAndOverlappingOffsetsAreRefused() throws {
        let huge = try rawFile(header: #"{"w":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,16]}}"#,
                               dataBytes: 16)
        defer { try? FileManager.default.removeItem(at: huge) }
        #expect { try Safetensors.read(huge) } throws: { "\($0)".contains("overflows") && "\($0)".contains("tensor w") }
        let negative = try rawFile(header: #"{"w":{"dtype":"F32","shape":[-4,-1],"data_offsets":[0,16]}}"#, dataBytes: 16)
        defer { try? FileManager.default.removeItem(at: negative) }
        #expect { try Safetensors.read(negative) } throws: { "\($0)".contains("negative") }
        let overlap = try rawFile(header: #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"#
                                  + #""b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}"#, dataBytes: 24)
        defer { try? FileManager.default.removeItem(at: overlap) }
        #expect { try Safetensors.read(overlap) } throws: { "\($0)".contains("a and b overlap") }
        // Adjacent tensors are fine.
        let adjacent = try rawFile(header: #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"#
                                   + #""b":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}"#, dataBytes: 24)
        defer { try? FileManager.default.removeItem(at: adjacent) }
        #expect(try Safetensors.read(adjacent).tensors.map(\.name) == ["a", "b"])
    }

    @Test func positionTableResizeFollowsBicubicInterpolation() {
        let width = 2
        // Identity: same grid, same table.
        let table = (0..<((1 + 9) * width)).map { Float($0) * 0.25 }
        #expect(PositionResize.bicubic(table, fromGrid: 3, toGrid: 3, width: width) == table)
        // Downsampling 4 -> 2 of a grid constant along y with values a, b, c, d along x:
        // output x = 0 samples source 0.5 with weights (-0.09375, 0.59375, 0.59375, -0.09375)
        // on columns (clamped) 0, 0, 1, 2  →  0.5 a + 0.59375 b − 0.09375 c.
        let (a, b, c, d): (Float, Float, Float, Float) = (1, 2, 4, 8)
        var grid = [Float](repeating: 0, count: (1 + 16) * 1)
        grid[0] = 99
        for y in 0..<4 { for (x, v) in [a, b, c, d].enumerated() { grid[1 + y * 4 + x] = v } }
        let out = PositionResize.bicubic(grid, fromGrid: 4, toGrid: 2, width: 1)
        #expect(out[0] == 99, "the CLS row is kept")
        #expect(abs(out[1] - (0.5 * a + 0.59375 * b - 0.09375 * c)) < 1e-6)
        // Output x = 1 samples source 2.5: columns 1, 2, 3, 3 → −0.09375 b + 0.59375 c + 0.5 d.
        #expect(abs(out[2] - (-0.09375 * b + 0.59375 * c + 0.5 * d)) < 1e-6)
        // A constant grid stays constant when upsampled.
        let constant = [Float](repeating: 3, count: 1 + 4)
        #expect(PositionResize.bicubic(constant, fromGrid: 2, toGrid: 5, width: 1).allSatisfy { abs($0 - 3) < 1e-6 })
    }

    @Test func importResizesPositionsForAnotherImageSize() throws {
        let small = UMDParameters(SyntheticBatch.config())                                      // 32 px: 4x4 grid
        let large = UMDParameters(ModelConfig(preset: .tiny, vocabularySize: SyntheticBatch.vocabularySize,
                                              imageSize: 48))                                     // 6x6 grid
        let a = ParameterStore(layout: small.layout), b = ParameterStore(layout: large.layout)
        small.initialize(a, seed: 3)
        let file = Safetensors.File(tensors: ModelIO.tensors(of: a), metadata: [:])
        let report = try ModelIO.load(into: b, from: file, path: "memory")
        #expect(report.resizedPositions == ["vision.pos_embed"])
        #expect(b.view(named: "vision.pos_embed")?.shape == [37, 64])
    }
}
