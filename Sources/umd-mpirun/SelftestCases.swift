import Foundation
import Collective
import UMDModel

/// One collective check: returns nil when the result matches the arithmetic answer,
/// else a description of the first mismatch.
struct SelftestCase {
    let name: String
    let check: (Communicator) throws -> String?
}

enum SelftestCases {
    static func all(largeCount: Int) -> [SelftestCase] {
        [
            SelftestCase(name: "ranks", check: ranks),
            // This rank's BLAS computes correctly (a node with a broken build fails here, not
            // after a week of wrong gradients).
            SelftestCase(name: "blas-sgemm") { _ in
                let problems = BLASCheck.problems()
                return problems.isEmpty ? nil : problems.joined(separator: "; ")
            },
            // The same cases through oneDNN (`--matmul onednn`), with its kernels named.
            SelftestCase(name: "onednn-matmul") { _ in
                let problems = try BLASCheck.problems(BLASCheck.product(of: OneDNNBackend()))
                return problems.isEmpty ? nil : "oneDNN \(OneDNNBackend.instructionSet): " + problems.joined(separator: "; ")
            },
            SelftestCase(name: "barrier") { try $0.barrier(); return nil },
            SelftestCase(name: "broadcast-typed", check: broadcastTyped),
            SelftestCase(name: "broadcast-data", check: broadcastData),
            SelftestCase(name: "broadcast-codable", check: broadcastCodable),
            SelftestCase(name: "allreduce-large-float-sum") { try allreduceLarge($0, count: largeCount) },
            SelftestCase(name: "allreduce-in-place", check: { try allreduceAllTypes($0, mode: .inPlace) }),
            SelftestCase(name: "allreduce-out-of-place", check: { try allreduceAllTypes($0, mode: .outOfPlace) }),
            SelftestCase(name: "allreduce-scalar", check: allreduceScalar),
            SelftestCase(name: "allreduce-nonblocking-wait", check: { try allreduceAllTypes($0, mode: .nonBlockingWait) }),
            SelftestCase(name: "allreduce-nonblocking-test", check: { try allreduceAllTypes($0, mode: .nonBlockingTest) }),
            SelftestCase(name: "allreduce-nonblocking-out-of-place",
                         check: { try allreduceAllTypes($0, mode: .nonBlockingOutOfPlace) }),
            SelftestCase(name: "allgather", check: allgatherFixed),
            SelftestCase(name: "allgather-variable", check: allgatherVariable),
            SelftestCase(name: "gather", check: gatherFixed),
            SelftestCase(name: "gather-variable", check: gatherVariable),
        ]
    }

    static func ranks(_ world: Communicator) throws -> String? {
        let all = try world.allgather([Int64(world.rank), Int64(world.size)])
        for r in 0..<world.size where all[2 * r] != Int64(r) || all[2 * r + 1] != Int64(world.size) {
            return "slot \(r) reports rank \(all[2 * r]) of \(all[2 * r + 1])"
        }
        return nil
    }

    static func broadcastTyped(_ world: Communicator) throws -> String? {
        // Root is the last rank, so a root other than 0 is exercised whenever size > 1.
        let root = world.size - 1
        var floats: [Float] = world.rank == root ? (0..<1000).map { Float($0) * 0.5 } : []
        try world.broadcast(&floats, root: root)
        if floats.count != 1000 || floats.enumerated().contains(where: { $0.element != Float($0.offset) * 0.5 }) {
            return "Float array differs from root's"
        }
        var doubles: [Double] = world.rank == 0 ? [Double.pi, -1e300, 0] : [7]
        try world.broadcast(&doubles, root: 0)
        if doubles != [Double.pi, -1e300, 0] { return "Double array \(doubles)" }
        var ints32: [Int32] = world.rank == 0 ? [Int32.min, 0, Int32.max] : []
        try world.broadcast(&ints32, root: 0)
        if ints32 != [Int32.min, 0, Int32.max] { return "Int32 array \(ints32)" }
        var ints64: [Int64] = world.rank == root ? [Int64.min, 42, Int64.max] : [1, 2, 3, 4, 5]
        try world.broadcast(&ints64, root: root)
        if ints64 != [Int64.min, 42, Int64.max] { return "Int64 array \(ints64)" }
        var empty: [Float] = world.rank == 0 ? [] : [1, 2]
        try world.broadcast(&empty, root: 0)
        if !empty.isEmpty { return "empty broadcast left \(empty.count) elements" }
        return nil
    }

    static func broadcastData(_ world: Communicator) throws -> String? {
        let expected = Data((0..<100_003).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
        let received = try world.broadcast(world.rank == 0 ? expected : nil, root: 0)
        return received == expected ? nil : "received \(received.count) bytes that differ from root's"
    }

    struct Sample: Codable, Equatable {
        var name: String
        var values: [Double]
        var nested: [String: Int]
        var optional: String?
    }

    static func broadcastCodable(_ world: Communicator) throws -> String? {
        let expected = Sample(name: "umd ✓ ROCO_00001", values: [1.5, -2, 1e-7], nested: ["a": 1, "b": -2],
                              optional: nil)
        let received: Sample = try world.broadcast(world.rank == 0 ? expected : nil, root: 0)
        return received == expected ? nil : "received \(received)"
    }

    /// Large Float sum: element i on rank r is (r+1) * (i % 13 + 1); the sum is
    /// n(n+1)/2 * (i % 13 + 1), exact in Float for any rank count umd tests with.
    static func allreduceLarge(_ world: Communicator, count: Int) throws -> String? {
        let n = world.size
        var buffer = (0..<count).map { Float((world.rank + 1) * ($0 % 13 + 1)) }
        try world.allreduce(&buffer, op: .sum)
        let ranksSum = n * (n + 1) / 2
        for i in 0..<count where buffer[i] != Float(ranksSum * (i % 13 + 1)) {
            return "element \(i) is \(buffer[i]), expected \(ranksSum * (i % 13 + 1))"
        }
        return nil
    }

    enum Mode { case inPlace, outOfPlace, nonBlockingWait, nonBlockingTest, nonBlockingOutOfPlace }

    static func allreduceAllTypes(_ world: Communicator, mode: Mode) throws -> String? {
        for op in ReductionOp.allCases {
            if let p = try allreduceOne(Float.self, world, op, mode) { return "Float \(op): \(p)" }
            if let p = try allreduceOne(Double.self, world, op, mode) { return "Double \(op): \(p)" }
            if let p = try allreduceOne(Int32.self, world, op, mode) { return "Int32 \(op): \(p)" }
            if let p = try allreduceOne(Int64.self, world, op, mode) { return "Int64 \(op): \(p)" }
        }
        return nil
    }

    /// Rank r holds (r+1) * (i % 7 + 1) at element i; the answer follows from the operation.
    static func allreduceOne<T: MPIScalar & BinaryInteger>(_: T.Type, _ world: Communicator, _ op: ReductionOp,
                                                           _ mode: Mode) throws -> String? {
        try allreduceCheck(world, op, mode, make: { T($0) }, equal: { $0 == T($1) })
    }
    static func allreduceOne<T: MPIScalar & BinaryFloatingPoint>(_: T.Type, _ world: Communicator, _ op: ReductionOp,
                                                                 _ mode: Mode) throws -> String? {
        try allreduceCheck(world, op, mode, make: { T($0) }, equal: { $0 == T($1) })
    }

    static func allreduceCheck<T: MPIScalar & Numeric>(_ world: Communicator, _ op: ReductionOp, _ mode: Mode,
                                                       make: (Int) -> T, equal: (T, Int) -> Bool) throws -> String? {
        let count = 10_007  // odd, so no implementation can get away with pairs only
        let n = world.size
        let mine = (0..<count).map { make((world.rank + 1) * ($0 % 7 + 1)) }
        var result = [T](repeating: 0, count: count)
        var send = mine
        switch mode {
        case .inPlace:
            result = mine
            try world.allreduce(&result, op: op)
        case .outOfPlace:
            try send.withUnsafeBufferPointer { s in
                try result.withUnsafeMutableBufferPointer { try world.allreduce(s, into: $0, op: op) }
            }
        case .nonBlockingWait, .nonBlockingTest:
            result = mine
            try result.withUnsafeMutableBufferPointer { buffer in
                let request = try world.allreduceNonBlocking(buffer, op: op)
                if mode == .nonBlockingWait {
                    try request.wait()
                } else {
                    var polls = 0
                    while try !request.test() { polls += 1 }
                    _ = polls
                }
            }
        case .nonBlockingOutOfPlace:
            try send.withUnsafeMutableBufferPointer { s in
                try result.withUnsafeMutableBufferPointer { r in
                    try world.allreduceNonBlocking(UnsafeBufferPointer(s), into: r, op: op).wait()
                }
            }
        }
        if send.count != count { return "send buffer changed size" }
        for i in 0..<count {
            let unit = i % 7 + 1
            let expected: Int
            switch op {
            case .sum: expected = n * (n + 1) / 2 * unit
            case .max: expected = n * unit
            case .min: expected = unit
            }
            if !equal(result[i], expected) { return "element \(i) is \(result[i]), expected \(expected)" }
        }
        if mode == .outOfPlace || mode == .nonBlockingOutOfPlace {
            for i in 0..<count where !equal(send[i], (world.rank + 1) * (i % 7 + 1)) {
                return "out-of-place call modified the send buffer at \(i)"
            }
        }
        return nil
    }

    static func allreduceScalar(_ world: Communicator) throws -> String? {
        let n = world.size
        let total = try world.allreduce(Double(world.rank) + 0.5, op: .sum)
        if total != Double(n * (n - 1)) / 2 + 0.5 * Double(n) { return "Double sum \(total)" }
        let largest = try world.allreduce(Int64(world.rank), op: .max)
        if largest != Int64(n - 1) { return "Int64 max \(largest)" }
        let smallest = try world.allreduce(Int32(world.rank) - 5, op: .min)
        if smallest != -5 { return "Int32 min \(smallest)" }
        return nil
    }

    static func allgatherFixed(_ world: Communicator) throws -> String? {
        func contribution(_ r: Int) -> [Int32] { (0..<3).map { Int32(r * 10 + $0) } }
        let all = try world.allgather(contribution(world.rank))
        let expected: [Int32] = (0..<world.size).flatMap(contribution)
        return all == expected ? nil : "got \(all)"
    }

    /// Rank r contributes r elements (rank 0 none), each equal to 100 r + index.
    static func allgatherVariable(_ world: Communicator) throws -> String? {
        let parts = try world.allgatherVariable((0..<world.rank).map { Float(100 * world.rank + $0) })
        for r in 0..<world.size where parts[r] != (0..<r).map({ Float(100 * r + $0) }) {
            return "part of rank \(r) is \(parts[r])"
        }
        let strings = try world.allgatherData(Data("rank-\(world.rank)".utf8)).map { String(decoding: $0, as: UTF8.self) }
        if strings != (0..<world.size).map({ "rank-\($0)" }) { return "strings \(strings)" }
        return nil
    }

    static func gatherFixed(_ world: Communicator) throws -> String? {
        let root = world.size - 1
        let gathered = try world.gather([Double(world.rank), -Double(world.rank)], root: root)
        if world.rank == root {
            let expected = (0..<world.size).flatMap { [Double($0), -Double($0)] }
            if gathered != expected { return "root got \(String(describing: gathered))" }
        } else if gathered != nil {
            return "a non-root rank received gather output"
        }
        return nil
    }

    static func gatherVariable(_ world: Communicator) throws -> String? {
        let parts = try world.gatherVariable((0...world.rank).map { Int64($0 * world.rank) }, root: 0)
        if world.rank == 0 {
            guard let parts, parts.count == world.size else { return "root got \(String(describing: parts))" }
            for r in 0..<world.size where parts[r] != (0...r).map({ Int64($0 * r) }) {
                return "part of rank \(r) is \(parts[r])"
            }
        } else if parts != nil {
            return "a non-root rank received gather output"
        }
        return nil
    }
}
