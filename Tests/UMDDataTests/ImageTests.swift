import CImageCodecs
import Foundation
import Testing
@testable import UMDData

struct ImageTests {
    func pngBytes(_ pixels: [UInt8], width: Int, height: Int, format: UInt32) throws -> Data {
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        var message = [CChar](repeating: 0, count: 200)
        let status = pixels.withUnsafeBytes { umd_png_encode_format($0.baseAddress, Int32(width), Int32(height), format, &out, &size, &message) }
        #expect(status == 0, "\(String(cString: message))")
        defer { umd_image_free(out) }
        return Data(bytes: out!, count: size)
    }

    @Test func pngRoundTripsExactlyAndJPEGClosely() throws {
        let rgb: [UInt8] = (0..<45).map { (i: Int) -> UInt8 in UInt8((i * 37) % 256) }
        let png = try ImageCodec.encode(rgb, width: 5, height: 3, channels: 3, as: .png)
        #expect(ImageCodec.sniff(png) == .png)
        #expect(try ImageCodec.decode(png, path: "x.png") == RGBImage(width: 5, height: 3, pixels: rgb))
        let smooth: [UInt8] = (0..<768).map { (i: Int) -> UInt8 in UInt8(100 + (i / 3) % 16) }
        let jpeg = try ImageCodec.encode(smooth, width: 16, height: 16, channels: 3, as: .jpeg, quality: 95)
        #expect(ImageCodec.sniff(jpeg) == .jpeg)
        let decoded = try ImageCodec.decode(jpeg, path: "x.jpg")
        #expect(decoded.width == 16 && decoded.height == 16)
        #expect(zip(decoded.pixels, smooth).allSatisfy { abs(Int($0) - Int($1)) <= 6 })
    }

    @Test func greyRGBAAnd16BitInputsBecomeRGB8() throws {
        // Grey JPEG and grey PNG: three equal channels.
        let grey: [UInt8] = [0, 64, 128, 255]
        for format in [ImageCodec.Format.png, .jpeg] {
            let image = try ImageCodec.decode(try ImageCodec.encode(grey, width: 2, height: 2, channels: 1, as: format), path: "g")
            for i in 0..<4 { #expect(image.pixels[3 * i] == image.pixels[3 * i + 1] && image.pixels[3 * i + 1] == image.pixels[3 * i + 2]) }
            if format == .png { #expect(stride(from: 0, to: 12, by: 3).map { image.pixels[$0] } == grey) }
        }
        // Opaque RGBA keeps its colours.
        let rgba: [UInt8] = [10, 20, 30, 255, 200, 100, 50, 255]
        let fromRGBA = try ImageCodec.decode(try pngBytes(rgba, width: 2, height: 1, format: 3), path: "rgba.png")
        #expect(fromRGBA.pixels == [10, 20, 30, 200, 100, 50])
        // 16-bit linear grey (format flag 4 = linear): full scale stays white, zero stays black.
        let sixteen: [UInt16] = [0, 65535]
        let bytes = sixteen.withUnsafeBytes { Array($0) }
        let from16 = try ImageCodec.decode(try pngBytes(bytes, width: 2, height: 1, format: 4), path: "16.png")
        #expect(from16.pixels == [0, 0, 0, 255, 255, 255])
    }

    @Test func corruptImagesAreErrorsNamingTheFile() throws {
        let jpeg = try ImageCodec.encode([UInt8](repeating: 90, count: 32 * 32 * 3), width: 32, height: 32, channels: 3, as: .jpeg)
        let png = try ImageCodec.encode([UInt8](repeating: 90, count: 32 * 32 * 3), width: 32, height: 32, channels: 3, as: .png)
        #expect { try ImageCodec.decode(jpeg.prefix(40), path: "cut.jpg") } throws: { "\($0)".hasPrefix("cut.jpg: corrupt image: JPEG") }
        #expect { try ImageCodec.decode(png.prefix(60), path: "cut.png") } throws: { "\($0)".hasPrefix("cut.png: corrupt image: PNG") }
        #expect { try ImageCodec.decode(Data("hello world".utf8), path: "t.jpg") } throws: { "\($0)".contains("neither a PNG nor a JPEG") }
        #expect { try ImageCodec.decode(file: URL(fileURLWithPath: "/nonexistent/a.png")) } throws: { "\($0)".contains("missing") }
    }

    @Test func preprocessingResizesCropsAndNormalises() {
        // A 4x2 image: left half black, right half white, resized to 2x2 after centre crop
        // of the 4x2 → shorter side 2 is already H, crop takes columns 1...2.
        var pixels = [UInt8]()
        for _ in 0..<2 { for x in 0..<4 { pixels += [UInt8](repeating: x < 2 ? 0 : 255, count: 3) } }
        let out = ImagePreprocessing.normalizedPixels(RGBImage(width: 4, height: 2, pixels: pixels), size: 2)
        for c in 0..<3 {
            let black = -ImagePreprocessing.mean[c] / ImagePreprocessing.std[c]
            let white = (1 - ImagePreprocessing.mean[c]) / ImagePreprocessing.std[c]
            #expect(abs(out[c * 4 + 0] - black) < 1e-5 && abs(out[c * 4 + 1] - white) < 1e-5, "channel \(c)")
            #expect(abs(out[c * 4 + 2] - black) < 1e-5 && abs(out[c * 4 + 3] - white) < 1e-5)
        }
        // Upscaling a constant image keeps it constant.
        let constant = ImagePreprocessing.normalizedPixels(RGBImage(width: 3, height: 5, pixels: [UInt8](repeating: 128, count: 45)), size: 8)
        #expect(Set(constant[0..<64]).count == 1)
    }
}

struct TruncatedJPEGTests {
    /// libjpeg only warns about a file cut inside its scan data and fills the rest with grey;
    /// umd treats that as a corrupt image.
    @Test func aJPEGCutInsideItsScanIsCorrupt() throws {
        let pixels: [UInt8] = (0..<(64 * 64 * 3)).map { (i: Int) -> UInt8 in UInt8((i * 7 + i / 192) % 256) }
        let jpeg = try ImageCodec.encode(pixels, width: 64, height: 64, channels: 3, as: .jpeg)
        #expect(throws: Never.self) { try ImageCodec.decode(jpeg, path: "whole.jpg") }
        #expect { try ImageCodec.decode(jpeg.prefix(jpeg.count * 3 / 4), path: "cut.jpg") } throws: {
            "\($0)".contains("cut.jpg: corrupt image: JPEG")
        }
    }
}
