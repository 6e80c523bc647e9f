import Foundation
import Testing
import UMDCore

/// `HugePageMemory`: arrays from 2 MiB up are 2 MiB-aligned and advised into transparent huge
/// pages (the kernel then counts their mapping THP-eligible), smaller ones 64-byte aligned.
struct HugePageMemoryTests {
    /// The mapping holding `address` in /proc/self/smaps: its VmFlags ("hg": advised into huge
    /// pages) and THPeligible; nil when it is not listed.
    static func mapping(of address: UInt) -> (flags: [Substring], eligible: Bool?)? {
        guard let handle = FileHandle(forReadingAtPath: "/proc/self/smaps") else { return nil }
        let smaps = String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
        var inside = false, eligible: Bool? = nil
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = fields.first else { continue }
            if !first.hasSuffix(":") {   // a mapping's header: start-end perms offset device inode [path]
                let bounds = first.split(separator: "-").compactMap { UInt($0, radix: 16) }
                inside = bounds.count == 2 && bounds[0] <= address && address < bounds[1]
            } else if inside && first == "THPeligible:" {
                eligible = fields.count > 1 ? fields[1] == "1" : nil
            } else if inside && first == "VmFlags:" {
                return (Array(fields.dropFirst()), eligible)
            }
        }
        return nil
    }

    @Test func largeArraysAreHugePageAlignedAndAdvised() throws {
        let count = 3 << 20   // 12 MiB of Float
        let large = HugePageMemory.allocate(Float.self, capacity: count)
        defer { HugePageMemory.deallocate(large) }
        large.initialize(repeating: 1, count: count)
        let address = UInt(bitPattern: large)
        #expect(address % UInt(HugePageMemory.hugePageBytes) == 0)
        let small = HugePageMemory.allocate(UInt16.self, capacity: 1000)
        defer { HugePageMemory.deallocate(small) }
        #expect(UInt(bitPattern: small) % 64 == 0)
        // The advice is recorded on the mapping wherever the kernel has THP, and the mapping is
        // eligible where the kernel gives huge pages to advised memory.
        if let setting = HugePageMemory.kernelSetting {
            let mapping = try #require(Self.mapping(of: address), "the array's mapping is not in /proc/self/smaps")
            #expect(mapping.flags.contains("hg"), "THP \(setting): the 12 MiB array was not advised: \(mapping.flags)")
            if setting == "madvise" || setting == "always" {
                #expect(mapping.eligible == true, "THP \(setting): the array's mapping is not THP-eligible")
            }
        }
        #expect(large[count - 1] == 1)
    }
}
