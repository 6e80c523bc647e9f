/// XXH64 (xxHash, 64-bit), streaming: the checksum a checkpoint manifest keeps of each
/// uncompressed shard. Follows the reference algorithm (Yann Collet's xxhash.h).
public struct XXH64: Sendable {
    static let p1: UInt64 = 0x9E37_79B1_85EB_CA87
    static let p2: UInt64 = 0xC2B2_AE3D_27D4_EB4F
    static let p3: UInt64 = 0x1656_67B1_9E37_79F9
    static let p4: UInt64 = 0x85EB_CA77_C2B2_AE63
    static let p5: UInt64 = 0x27D4_EB2F_1656_67C5

    private var v1, v2, v3, v4: UInt64
    private let seed: UInt64
    private var totalLength: UInt64 = 0
    private var buffer = [UInt8](repeating: 0, count: 32)
    private var buffered = 0

    public init(seed: UInt64 = 0) {
        self.seed = seed
        v1 = seed &+ Self.p1 &+ Self.p2
        v2 = seed &+ Self.p2
        v3 = seed
        v4 = seed &- Self.p1
    }

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }
    @inline(__always) static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }
    @inline(__always) static func merge(_ acc: UInt64, _ v: UInt64) -> UInt64 {
        (acc ^ round(0, v)) &* p1 &+ p4
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var p = 0
        let n = bytes.count
        totalLength &+= UInt64(n)
        if buffered > 0 {
            let take = min(32 - buffered, n)
            for i in 0..<take { buffer[buffered + i] = base.load(fromByteOffset: i, as: UInt8.self) }
            buffered += take
            p = take
            if buffered < 32 { return }
            buffer.withUnsafeBytes { b in
                v1 = Self.round(v1, b.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian)
                v2 = Self.round(v2, b.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian)
                v3 = Self.round(v3, b.loadUnaligned(fromByteOffset: 16, as: UInt64.self).littleEndian)
                v4 = Self.round(v4, b.loadUnaligned(fromByteOffset: 24, as: UInt64.self).littleEndian)
            }
            buffered = 0
        }
        while p + 32 <= n {
            v1 = Self.round(v1, base.loadUnaligned(fromByteOffset: p, as: UInt64.self).littleEndian)
            v2 = Self.round(v2, base.loadUnaligned(fromByteOffset: p + 8, as: UInt64.self).littleEndian)
            v3 = Self.round(v3, base.loadUnaligned(fromByteOffset: p + 16, as: UInt64.self).littleEndian)
            v4 = Self.round(v4, base.loadUnaligned(fromByteOffset: p + 24, as: UInt64.self).littleEndian)
            p += 32
        }
        while p < n {
            buffer[buffered] = base.load(fromByteOffset: p, as: UInt8.self)
            buffered += 1
            p += 1
        }
    }

    public mutating func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    public func finalize() -> UInt64 {
        var h: UInt64
        if totalLength >= 32 {
            h = Self.rotl(v1, 1) &+ Self.rotl(v2, 7) &+ Self.rotl(v3, 12) &+ Self.rotl(v4, 18)
            h = Self.merge(h, v1); h = Self.merge(h, v2); h = Self.merge(h, v3); h = Self.merge(h, v4)
        } else {
            h = seed &+ Self.p5
        }
        h &+= totalLength
        var p = 0
        buffer.withUnsafeBytes { b in
            while p + 8 <= buffered {
                let k = Self.round(0, b.loadUnaligned(fromByteOffset: p, as: UInt64.self).littleEndian)
                h = Self.rotl(h ^ k, 27) &* Self.p1 &+ Self.p4
                p += 8
            }
            if p + 4 <= buffered {
                h ^= UInt64(b.loadUnaligned(fromByteOffset: p, as: UInt32.self).littleEndian) &* Self.p1
                h = Self.rotl(h, 23) &* Self.p2 &+ Self.p3
                p += 4
            }
            while p < buffered {
                h ^= UInt64(b[p]) &* Self.p5
                h = Self.rotl(h, 11) &* Self.p1
                p += 1
            }
        }
        h ^= h >> 33; h &*= Self.p2
        h ^= h >> 29; h &*= Self.p3
        h ^= h >> 32
        return h
    }

    public static func hash(_ bytes: [UInt8], seed: UInt64 = 0) -> UInt64 {
        var x = XXH64(seed: seed)
        x.update(bytes)
        return x.finalize()
    }
}
