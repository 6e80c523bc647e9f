import Foundation
import Testing
@testable import UMDModel

/// Issue 28's accounting: buffers are charged to the owner current on their thread when they
/// first grow, their growth adds, their release subtracts; an MR-Pretrain step charges each
/// pass (the teacher's too, which keeps activations it has no backward for — what the issue
/// asks to remove).
struct MemoryLedgerTests {
    func bytes(_ owner: String) -> Int { MemoryLedger.table.first { $0.owner == owner }?.bytes ?? 0 }

    @Test func buffersAreChargedToTheirOwnerAndReleased() {
        let owner = "test owner \(UUID().uuidString)"
        do {
            let buffer = MemoryLedger.scope(owner) { () -> FloatBuffer in
                let b = FloatBuffer()
                b.ensure(1000)
                return b
            }
            #expect(bytes(owner) == 4000)
            buffer.ensure(3000)                      // growth outside the scope: still its owner's
            #expect(bytes(owner) == 12000)
            buffer.ensure(10)                        // no growth, no charge
            #expect(bytes(owner) == 12000)
        }
        #expect(bytes(owner) == 0, "released with the buffer")
    }
}
