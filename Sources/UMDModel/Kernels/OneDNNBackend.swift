import COneDNN
import Foundation

/// Which backend computes the matrix products (`--matmul`): OpenBLAS (the default and the
/// reference), oneDNN in fp32, or oneDNN with bf16 inputs and fp32 accumulation.
public enum MatmulChoice: String, Sendable, CaseIterable, Codable {
    case openblas, onednn, bf16

    /// The backend; `bf16` on a CPU without bf16 instructions is an error naming them.
    public func makeBackend() throws -> any MatmulBackend {
        switch self {
        case .openblas: return Matmul.reference
        case .onednn: return try OneDNNBackend()
        case .bf16: return try OneDNNBackend(bf16: true)
        }
    }

    /// For logs: the backend and the kernels it runs on this CPU.
    public var description: String {
        switch self {
        case .openblas: return "openblas (kernels \(BLASCheck.kernelFamily))"
        case .onednn, .bf16: return "\(rawValue) (oneDNN \(OneDNNBackend.version), \(OneDNNBackend.instructionSet))"
        }
    }
}

/// Matrix products through oneDNN's matmul primitive (`--matmul onednn`, `bf16`): kernels
/// picked from the instruction sets the CPU reports (AVX2, AVX-512, AVX512-BF16, AMX), where
/// Debian's OpenBLAS 0.3.21 runs its AVX2 kernels on CPUs it does not know (AMD Zen 4/5).
/// A primitive is created once per product shape (creation costs far more than a product)
/// and kept; `bf16` rounds A and B to bfloat16 (nearest even) and accumulates in fp32.
public final class OneDNNBackend: MatmulBackend, @unchecked Sendable {
    // @unchecked Sendable: the primitive cache is guarded by `lock`; a backend serves one
    // thread's products at a time (a rank's training thread; each test makes its own), since
    // a cached primitive's operand handles and the message buffer are per backend.
    public let bf16: Bool
    private var primitives: [Key: OpaquePointer] = [:]
    private let lock = NSLock()
    /// Where a failing product's C call writes why (allocated once: products are a hot loop).
    private let message = UnsafeMutablePointer<CChar>.allocate(capacity: Int(UMD_ONEDNN_MESSAGE_LENGTH))
    /// bf16: rounded copies of parameter operands (by address), made once per
    /// `Matmul.reusingParameterCopies` scope. The buffers stay allocated from step to step
    /// (charged to the memory ledger as fixed memory); `current` says whether this scope has filled one.
    private var parameterCopies: [UnsafeRawPointer: ParameterCopy] = [:]
    private var reusingParameters = false

    final class ParameterCopy {
        let values: UnsafeMutablePointer<UInt16>   // [count] bfloat16
        let count: Int
        var current = false
        init(count: Int) { self.count = count; values = HugePageMemory.allocate(UInt16.self, capacity: count) }
        deinit { HugePageMemory.deallocate(values) }
    }
    static let parameterCopiesOwner = "bf16 copies of the trained weights"

    struct Key: Hashable {
        let transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int
        let alpha: UInt32, accumulate: Bool, bias: Bool
        var batch = 1, strideA = 0, strideB = 0, strideC = 0
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// `bf16` needs AVX512-BF16 or AMX (`OneDNNBackend.hasBFloat16`): without it the backend
    /// is refused, not emulated slowly.
    public init(bf16: Bool = false) throws {
        var message = [CChar](repeating: 0, count: Int(UMD_ONEDNN_MESSAGE_LENGTH))
        guard umd_onednn_init(&message) == 0 else { throw Failure(description: String(cString: message)) }
        if bf16 && !Self.hasBFloat16 {
            // oneDNN's kernels can also be capped below the CPU's (ONEDNN_MAX_CPU_ISA, as an
            // AVX2-only node is emulated): then say so, since the CPU may well have them.
            let environment = ProcessInfo.processInfo.environment
            let cap = ["ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"].first { environment[$0] != nil }
            let whose = cap.map { "which oneDNN may not use here ($\($0)=\(environment[$0]!) caps its kernels" }
                ?? "which this CPU lacks (oneDNN's kernels here"
            throw Failure(description: "--matmul bf16 needs AVX512-BF16 or AMX, \(whose): \(Self.instructionSet)); "
                          + "use --matmul onednn (fp32) instead")
        }
        self.bf16 = bf16
    }

    deinit {
        for p in primitives.values { umd_onednn_matmul_destroy(p) }
        message.deallocate()
        let bytes = parameterCopies.values.reduce(0) { $0 + 2 * $1.count }
        if bytes > 0 { MemoryLedger.chargeFixed(Self.parameterCopiesOwner, -bytes) }
    }

    public func beginParameterReuse() { reusingParameters = bf16 }

    public func endParameterReuse() {
        reusingParameters = false
        for copy in parameterCopies.values { copy.current = false }
    }

    public func beginOperandSharing() { if bf16 { umd_onednn_share_begin() } }
    public func endOperandSharing() { if bf16 { umd_onednn_share_end() } }

    /// B rounded to bf16 for this scope (converted by its first product), or nil when the
    /// product converts B itself: fp32, no scope, B not a parameter or not compact.
    private func parameterCopy(_ p: MatmulProblem) -> UnsafePointer<UInt16>? {
        guard reusingParameters, p.parameterB else { return nil }
        let (rows, columns) = p.transposeB ? (p.n, p.k) : (p.k, p.n)
        guard p.ldb == columns else { return nil }
        let count = rows * columns, address = UnsafeRawPointer(p.b)
        let copy: ParameterCopy
        if let known = parameterCopies[address], known.count == count {
            copy = known
        } else {
            // New, or the address now holds a tensor of another size: a copy of the new size.
            let replaced = parameterCopies[address]?.count ?? 0
            copy = ParameterCopy(count: count)
            parameterCopies[address] = copy
            MemoryLedger.chargeFixed(Self.parameterCopiesOwner, 2 * (count - replaced))
        }
        if !copy.current {
            umd_onednn_to_bf16(p.b, Int64(count), copy.values)
            copy.current = true
        }
        return UnsafePointer(copy.values)
    }

    public var name: String { bf16 ? "bf16" : "onednn" }
    public var takesRoundedOperands: Bool { bf16 }
    public var isFloat32: Bool { !bf16 }

    /// The instruction set oneDNN's kernels use on this CPU ("avx512_core_bf16", "avx2", …).
    public static var instructionSet: String { String(cString: umd_onednn_isa()) }
    /// Whether this CPU has bf16 dot products oneDNN uses (AVX512-BF16 or AMX).
    public static var hasBFloat16: Bool { umd_onednn_has_bf16() != 0 }
    public static var version: String { String(cString: umd_onednn_version()) }
    /// Sets oneDNN's (OpenMP's) threads, like OpenBLAS's per rank.
    @discardableResult
    public static func setThreadCount(_ n: Int) -> Bool { umd_onednn_set_threads(Int32(max(1, n))) != 0 }

    /// The implementation oneDNN chose for a product of this shape ("brg:avx512_core", …).
    public func implementation(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int) throws -> String {
        let ldA = transposeA ? m : k, ldB = transposeB ? k : n
        let key = Key(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, lda: ldA, ldb: ldB, ldc: n,
                      alpha: Float(1).bitPattern, accumulate: false, bias: false)
        return String(cString: umd_onednn_matmul_implementation(try primitive(key)))
    }

    private func primitive(_ key: Key) throws -> OpaquePointer {
        lock.lock()
        defer { lock.unlock() }
        if let p = primitives[key] { return p }
        guard let p = umd_onednn_matmul_create(key.transposeA ? 1 : 0, key.transposeB ? 1 : 0, Int64(key.m), Int64(key.n),
                                               Int64(key.k), Int64(key.lda), Int64(key.ldb), Int64(key.ldc),
                                               Float(bitPattern: key.alpha), key.accumulate ? 1 : 0, key.bias ? 1 : 0,
                                               bf16 ? 1 : 0, Int64(key.batch), Int64(key.strideA), Int64(key.strideB),
                                               Int64(key.strideC), message) else {
            throw Failure(description: String(cString: message)
                          + " (product \(key.m)x\(key.n)x\(key.k), transposes \(key.transposeA)/\(key.transposeB))")
        }
        primitives[key] = p
        return p
    }

    public func compute(_ p: MatmulProblem) {
        var key = Key(transposeA: p.transposeA, transposeB: p.transposeB, m: p.m, n: p.n, k: p.k, lda: p.lda, ldb: p.ldb,
                      ldc: p.ldc, alpha: p.alpha.bitPattern, accumulate: p.accumulate, bias: p.bias != nil)
        if p.batch > 1 {   // strides mean nothing for one product: keep them out of its key
            (key.batch, key.strideA, key.strideB, key.strideC) = (p.batch, p.batchStrideA, p.batchStrideB, p.batchStrideC)
        }
        do {
            let primitive = try primitive(key)
            let a16 = bf16 ? p.aRounded : nil, b16 = bf16 ? parameterCopy(p) ?? p.bRounded : nil
            guard umd_onednn_matmul_run(primitive, p.a, p.b, p.bias, p.c, a16, b16, message) == 0 else {
                throw Failure(description: String(cString: message))
            }
        } catch {
            // A product that cannot run leaves C undefined: stop rather than train on it (under
            // mpirun one rank's exit ends the job).
            writeToStandardError("umd-mpirun: error: \(error)\n")
            exit(70)
        }
    }
}
