import Foundation
import Testing
@testable import UMDModel

/// Issue 28's accounting: buffers are charged to the owner current on their thread when they
/// first grow, their growth adds, their release subtracts; a buffer handed to a `BufferPool`
/// (`--recompute blocks`) moves its bytes to the pool's line and back when it grows again.
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

    @Test func aPooledBufferMovesItsBytesToThePoolAndBack() {
        let owner = "pooled owner \(UUID().uuidString)"
        let poolLine = "test pool \(UUID().uuidString)"
        let pool = BufferPool(ledgerOwner: poolLine)
        let (a, b) = MemoryLedger.scope(owner) { () -> (FloatBuffer, FloatBuffer) in
            let a = FloatBuffer(), b = FloatBuffer()
            a.ensure(1000)
            return (a, b)
        }
        a.ensure(1000)[999] = 7
        a.release(to: pool)
        #expect(bytes(owner) == 0 && bytes(poolLine) == 4000)
        // Another buffer growing while the pool lends takes that allocation (no new bytes).
        let p = MemoryLedger.scope(owner) { pool.lend { b.ensure(800) } }
        #expect(bytes(owner) == 4000 && bytes(poolLine) == 0, "the 4000 bytes came back from the pool")
        #expect(b.capacity == 1000, "best fit: the pooled allocation, not a new one of 800")
        p[0] = 1
        // Growing past the pooled size allocates anew, charged to its owner.
        a.ensure(10)
        #expect(bytes(owner) == 4040)
    }
}
