import Foundation
import UMDCore

/// Start-of-run and periodic agreement checks across ranks.
public enum Consistency {
    public struct Mismatch: Error, CustomStringConvertible {
        public let message: String
        public var description: String { message }
    }

    /// FNV-1a's step over the Floats' 32-bit patterns (one word per element, not bytes): a
    /// cheap checksum of an arena slice, bitwise, so any divergence between replicas shows.
    public static func checksum(_ pointer: UnsafePointer<Float>, count: Int) -> UInt64 {
        var h = FNV1a.offsetBasis
        let prime = FNV1a.prime
        let words = UnsafeRawPointer(pointer).bindMemory(to: UInt32.self, capacity: count)
        for i in 0..<count {
            h ^= UInt64(words[i])
            h = h &* prime
        }
        return h
    }

    /// Every rank passes its value; throws on every rank, naming the first rank whose value
    /// differs from rank 0's, when they disagree.
    public static func requireAgreement(_ value: UInt64, what: String, world: Communicator) throws {
        let all = try world.allgather([Int64(bitPattern: value)]).map { UInt64(bitPattern: $0) }
        if let mismatch = disagreement(all, what: what) { throw mismatch }
    }

    /// The same for a count (sizes, steps), which messages show in decimal.
    public static func requireAgreement(count: Int, what: String, world: Communicator) throws {
        let all = try world.allgather([Int64(count)]).map { UInt64(bitPattern: $0) }
        if let mismatch = disagreement(all, what: what, hexadecimal: false) { throw mismatch }
    }

    /// The error naming the first rank whose value differs from rank 0's (`values[r]` is
    /// rank r's), or nil when all agree. Checksums show in hexadecimal, counts in decimal.
    public static func disagreement(_ values: [UInt64], what: String, hexadecimal: Bool = true) -> Mismatch? {
        guard let bad = values.firstIndex(where: { $0 != values[0] }) else { return nil }
        func text(_ v: UInt64) -> String { hexadecimal ? String(v, radix: 16) : String(Int64(bitPattern: v)) }
        return Mismatch(message: "\(what) differs between rank 0 (\(text(values[0]))) and rank \(bad) (\(text(values[bad])))")
    }
}
