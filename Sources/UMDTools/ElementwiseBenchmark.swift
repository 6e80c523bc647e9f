import Foundation
import UMDModel

/// Element-wise kernels' time per element: on data that stays in L1 (what the arithmetic
/// alone costs, the kernel's floor) and on a buffer of several MiB (what memory adds).
/// `umd-mpirun bench elementwise` prints both; `bench step --phases` uses the floors at the
/// step's own row widths to bound what the step's element-wise work could cost at best.
public final class ElementwiseBenchmark {
    let largest: Int
    // Operands, `largest` floats each (2 MiB-aligned, random).
    let x, y, dy, out: UnsafeMutablePointer<Float>
    // LayerNorm's affine parameters and their gradients (up to 4096 wide), its per-row statistics.
    let weight, bias, dWeight, dBias, mean, rstd: UnsafeMutablePointer<Float>
    let dropout = DropoutSite(name: "bench.elementwise")

    public init(largest: Int = 4 << 20) {
        self.largest = largest
        (x, y, dy, out) = (BlockBench.randomBuffer(largest), BlockBench.randomBuffer(largest),
                           BlockBench.randomBuffer(largest), BlockBench.randomBuffer(largest))
        (weight, bias, dWeight, dBias) = (BlockBench.randomBuffer(4096), BlockBench.randomBuffer(4096),
                                          BlockBench.randomBuffer(4096), BlockBench.randomBuffer(4096))
        (mean, rstd) = (BlockBench.randomBuffer(largest), BlockBench.randomBuffer(largest))
        Elementwise.geluForward(y, x, count: largest)   // a forward output for the backward kernels
        dropout.record(perItem: largest, ForwardContext(dropout: 0.1, passKey: 1))
    }

    deinit { for p in [x, y, dy, out, weight, bias, dWeight, dBias, mean, rstd] { HugePageMemory.deallocate(p) } }

    /// The kernel over `count` elements (whole rows of `width`), once; nil for kernels not
    /// measured here (tanh, embedding: a step's share of them is negligible).
    func runner(_ kernel: KernelProfile.Kernel, width: Int) -> ((Int) -> Void)? {
        let (x, y, dy, out, mean, rstd) = (self.x, self.y, self.dy, self.out, self.mean, self.rstd)
        let (weight, bias, dWeight, dBias, dropout) = (self.weight, self.bias, self.dWeight, self.dBias, self.dropout)
        let w = max(1, width)
        switch kernel {
        case .geluForward: return { Elementwise.geluForward(out, x, count: $0) }
        case .geluBackward: return { Elementwise.geluBackward(out, dy, x, output: y, count: $0) }
        case .quickGeluForward: return { Elementwise.quickGeluForward(out, x, count: $0) }
        case .quickGeluBackward: return { Elementwise.quickGeluBackward(out, dy, x, output: y, count: $0) }
        case .softmaxForward:
            return { out.update(from: x, count: $0); Elementwise.softmaxRows(out, rows: $0 / w, width: w) }
        case .softmaxBackward: return { Elementwise.softmaxBackwardRows(out, dy, y, rows: $0 / w, width: w) }
        case .layerNormForward:
            return { Elementwise.layerNormForward(out, mean: mean, rstd: rstd, x, weight: weight, bias: bias,
                                                  rows: $0 / w, width: w) }
        case .layerNormBackward:
            return { Elementwise.layerNormBackward(out, dWeight: dWeight, dBias: dBias, dy, x, weight: weight,
                                                   mean: mean, rstd: rstd, rows: $0 / w, width: w) }
        case .add: return { Elementwise.add(out, x, y, count: $0) }
        case .dropout: return { dropout.apply(x, into: out, offset: 0, count: $0) }
        case .tanh, .embedding: return nil
        }
    }

    /// Nanoseconds per element of `kernel` at row width `width`: in L1 (about 4096 elements,
    /// whole rows) or over `largest` elements. The fastest of repeats over `seconds`. The
    /// softmax forward's time includes refreshing its in-place input (a copy, ~0.01 ns).
    public func nanosecondsPerElement(_ kernel: KernelProfile.Kernel, width: Int, inL1: Bool,
                                      seconds: Double = 0.2) -> Double? {
        guard width <= 4096, let run = runner(kernel, width: width) else { return nil }
        let w = max(1, width)
        let count = inL1 ? max(1, 4096 / w) * w : largest / w * w
        run(count)
        let best = fastestSeconds(atLeast: seconds) { run(count) }
        return best * 1e9 / Double(count)
    }

    /// `bench elementwise`: every kernel at the widths the presets use.
    public static func printTable(seconds: Double) {
        let bench = ElementwiseBenchmark()
        print("# element-wise kernels, ns per element (1 thread): in L1 (~4096 elements: the arithmetic alone) "
              + "and over \(bench.largest >> 20) Mi elements (memory)")
        var rows: [(KernelProfile.Kernel, Int)] = [(.geluForward, 0), (.geluBackward, 0), (.quickGeluForward, 0),
                                                  (.quickGeluBackward, 0), (.add, 0), (.dropout, 0)]
        for width in [32, 65, 325] { rows += [(.softmaxForward, width), (.softmaxBackward, width)] }
        for width in [256, 768] { rows += [(.layerNormForward, width), (.layerNormBackward, width)] }
        for (kernel, width) in rows {
            guard let l1 = bench.nanosecondsPerElement(kernel, width: width, inL1: true, seconds: seconds),
                  let memory = bench.nanosecondsPerElement(kernel, width: width, inL1: false, seconds: seconds) else { continue }
            let label = kernel.rawValue + (width > 0 ? ", rows of \(width)" : "")
            print("  " + label.padding(toLength: 36, withPad: " ", startingAt: 0)
                  + String(format: "  in L1 %6.3f   from memory %6.3f", l1, memory))
        }
    }
}
