import CImageCodecs
import CPNG
import CJPEG
import Foundation
import UMDCore

/// An 8-bit RGB image, row-major, [height, width, 3].
public struct RGBImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        precondition(pixels.count == width * height * 3)
        self.width = width; self.height = height; self.pixels = pixels
    }
}

/// PNG and JPEG decoding to RGB8 and encoding (for synthetic data). Errors inside libjpeg
/// and libpng come back as `DataError.image` naming the file.
public enum ImageCodec {
    public enum Format: String, Sendable { case png, jpeg }

    /// The format from the file's first bytes, nil when it is neither.
    public static func sniff(_ data: Data) -> Format? {
        if data.count >= 8 && data.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return .png }
        if data.count >= 3 && data.prefix(3) == Data([0xFF, 0xD8, 0xFF]) { return .jpeg }
        return nil
    }

    /// The width and height a PNG or JPEG header declares, read from the first bytes (PNG's
    /// IHDR; JPEG's first frame header, found by walking the marker segments), without
    /// decoding. nil when no size is found. Lets a reader refuse an image whose header
    /// claims more pixels than the limit when the sample table is built, not at its first
    /// batch, which would stop the run.
    public static func declaredSize(_ handle: FileHandle) -> (width: Int, height: Int)? {
        func bytes(at offset: UInt64, _ count: Int) -> [UInt8]? {
            guard (try? handle.seek(toOffset: offset)) != nil, let data = try? handle.read(upToCount: count),
                  data.count == count else { return nil }
            return [UInt8](data)
        }
        guard let head = bytes(at: 0, 24) ?? bytes(at: 0, 4) else { return nil }
        func be(_ b: [UInt8], _ i: Int, _ n: Int) -> Int { (i..<(i + n)).reduce(0) { $0 << 8 | Int(b[$1]) } }
        if head.count == 24, sniff(Data(head)) == .png { return (be(head, 16, 4), be(head, 20, 4)) }
        guard head.count >= 3, sniff(Data(head)) == .jpeg else { return nil }
        var offset: UInt64 = 2
        for _ in 0..<256 {                       // a header has a few dozen segments at most
            guard var marker = bytes(at: offset, 2), marker[0] == 0xFF else { return nil }
            while marker[1] == 0xFF {            // fill bytes before a marker
                offset += 1
                guard let next = bytes(at: offset, 2) else { return nil }
                marker = next
            }
            let code = marker[1]
            if code == 0xD8 || code == 0x01 || (0xD0...0xD7).contains(code) { offset += 2; continue }
            if code == 0xD9 || code == 0xDA { return nil }       // end of image / scan before any frame header
            guard let segment = bytes(at: offset + 2, 7) else { return nil }
            let length = be(segment, 0, 2)
            guard length >= 2 else { return nil }
            if (0xC0...0xCF).contains(code) && ![0xC4, 0xC8, 0xCC].contains(code) {
                return (be(segment, 5, 2), be(segment, 3, 2))
            }
            offset += 2 + UInt64(length)
        }
        return nil
    }

    /// Default limit on the pixels of one image (64 megapixels: far above radiology images,
    /// far below what would exhaust a node when a damaged header claims 65500x65500).
    public static let defaultMaxPixels = 64_000_000

    public static func decode(_ data: Data, path: String, maxPixels: Int = defaultMaxPixels) throws -> RGBImage {
        guard let format = sniff(data) else {
            throw DataError.image(path: path, reason: "neither a PNG nor a JPEG (unknown first bytes)")
        }
        var image = umd_image()
        let status = data.withUnsafeBytes { raw -> Int32 in
            let p = raw.bindMemory(to: UInt8.self).baseAddress
            return format == .png ? umd_png_decode(p, data.count, maxPixels, &image)
                : umd_jpeg_decode(p, data.count, maxPixels, &image)
        }
        guard status == 0, let pointer = image.pixels else {
            let message = withUnsafeBytes(of: image.message) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            throw DataError.image(path: path, reason: "corrupt image: \(message)")
        }
        defer { umd_image_free(pointer) }
        let count = Int(image.width) * Int(image.height) * 3
        guard image.width > 0, image.height > 0 else { throw DataError.image(path: path, reason: "image has no pixels") }
        return RGBImage(width: Int(image.width), height: Int(image.height),
                        pixels: Array(UnsafeBufferPointer(start: pointer, count: count)))
    }

    public static func decode(file url: URL, maxPixels: Int = defaultMaxPixels) throws -> RGBImage {
        if let problem = regularFileProblem(url) { throw DataError.image(path: url.path, reason: problem) }
        let data: Data
        do { data = try readWholeFile(url) } catch {
            throw DataError.image(path: url.path, reason: "cannot read the image (\(error))")
        }
        return try decode(data, path: url.path, maxPixels: maxPixels)
    }

    /// nil when `url` is a regular file (symlinks followed), else what it is instead —
    /// checked before opening, since opening a FIFO blocks and a directory is no image.
    public static func regularFileProblem(_ url: URL) -> String? {
        var info = stat()
        if stat(url.path, &info) != 0 {
            switch errno {
            case ENOENT: return "missing"
            case ELOOP: return "a symbolic link loop"
            case EACCES: return "not readable (permission denied)"
            default: return "cannot be read (\(String(cString: strerror(errno))))"
            }
        }
        return nonRegularKind(mode: info.st_mode).map { $0 == "not a regular file" ? $0 : "\($0), not an image file" }
    }

    /// Encodes RGB (3 channels) or grey (1 channel) pixels.
    public static func encode(_ pixels: [UInt8], width: Int, height: Int, channels: Int, as format: Format,
                              quality: Int = 92) throws -> Data {
        precondition(pixels.count == width * height * channels && (channels == 1 || channels == 3))
        var out: UnsafeMutablePointer<UInt8>? = nil
        var size = 0
        var message = [CChar](repeating: 0, count: Int(UMD_IMAGE_MESSAGE_LENGTH))
        let status = pixels.withUnsafeBufferPointer { p in
            format == .png
                ? umd_png_encode(p.baseAddress, Int32(width), Int32(height), Int32(channels), &out, &size, &message)
                : umd_jpeg_encode(p.baseAddress, Int32(width), Int32(height), Int32(channels), Int32(quality), &out,
                                  &size, &message)
        }
        guard status == 0, let out else {
            throw DataError.image(path: "<memory>", reason: "encoding failed: \(String(cString: message))")
        }
        defer { umd_image_free(out) }
        return Data(bytes: out, count: size)
    }

    public static var pngVersion: String { String(cString: png_get_libpng_ver(nil)) }
    public static var jpegVersion: Int { Int(JPEG_LIB_VERSION) }
}

/// MODEL_SPEC.md section 3: resize the shorter side to H (bilinear, half-pixel centres),
/// centre-crop H×H, scale to [0, 1], normalise per channel with CLIP's mean and std.
/// Output layout [3, H, H].
public enum ImagePreprocessing {
    public static let mean: [Float] = [0.48145466, 0.4578275, 0.40821073]
    public static let std: [Float] = [0.26862954, 0.26130258, 0.27577711]

    public static func normalizedPixels(_ image: RGBImage, size H: Int, into out: UnsafeMutablePointer<Float>) {
        let w = image.width, h = image.height
        let scale = Double(H) / Double(min(w, h))
        let resizedW = max(H, Int((Double(w) * scale).rounded())), resizedH = max(H, Int((Double(h) * scale).rounded()))
        let offsetX = (resizedW - H) / 2, offsetY = (resizedH - H) / 2
        // Source coordinate of resized pixel centre i: (i + 0.5) / scale − 0.5, clamped.
        let sx = Double(w) / Double(resizedW), sy = Double(h) / Double(resizedH)
        let inv: [Float] = (0..<3).map { 1 / (255 * std[$0]) }
        let shift: [Float] = (0..<3).map { mean[$0] / std[$0] }
        image.pixels.withUnsafeBufferPointer { px in
            for y in 0..<H {
                let fy = min(max((Double(y + offsetY) + 0.5) * sy - 0.5, 0), Double(h - 1))
                let y0 = Int(fy), y1 = min(y0 + 1, h - 1)
                let ty = Float(fy - Double(y0))
                for x in 0..<H {
                    let fx = min(max((Double(x + offsetX) + 0.5) * sx - 0.5, 0), Double(w - 1))
                    let x0 = Int(fx), x1 = min(x0 + 1, w - 1)
                    let tx = Float(fx - Double(x0))
                    for c in 0..<3 {
                        let a = Float(px[(y0 * w + x0) * 3 + c]), b = Float(px[(y0 * w + x1) * 3 + c])
                        let d = Float(px[(y1 * w + x0) * 3 + c]), e = Float(px[(y1 * w + x1) * 3 + c])
                        let top = a + (b - a) * tx, bottom = d + (e - d) * tx
                        let value = top + (bottom - top) * ty
                        out[(c * H + y) * H + x] = value * inv[c] - shift[c]
                    }
                }
            }
        }
    }

    public static func normalizedPixels(_ image: RGBImage, size: Int) -> [Float] {
        var out = [Float](repeating: 0, count: 3 * size * size)
        out.withUnsafeMutableBufferPointer { normalizedPixels(image, size: size, into: $0.baseAddress!) }
        return out
    }
}
