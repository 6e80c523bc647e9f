import Foundation
import Testing
import UMDCore
@testable import UMDModel

/// The SIMD element-wise kernels against Double-precision references: the accuracy the
/// header of VectorMath.swift states, measured here (and printed next to the scalar libm
/// code they replaced, so the comparison is in the test log).
struct VectorMathTests {
    /// Max relative error of `f` (vector) against `reference` (Double) over `xs`, ignoring
    /// references below `floor` in magnitude.
    func maxRelativeError(_ xs: [Float], floor: Double = 0, _ f: (FloatLanes) -> FloatLanes,
                          _ reference: (Double) -> Double) -> (error: Double, at: Float) {
        var worst = (error: 0.0, at: Float.nan)
        var i = 0
        while i < xs.count {
            let n = min(FloatLanes.scalarCount, xs.count - i)
            let lanes = xs.withUnsafeBufferPointer { VectorMath.loadPartial($0.baseAddress!, i, n) }
            let out = f(lanes)
            for j in 0..<n {
                let ref = reference(Double(xs[i + j]))
                guard abs(ref) > floor else { continue }
                let e = abs(Double(out[j]) / ref - 1)
                if e > worst.error { worst = (e, xs[i + j]) }
            }
            i += n
        }
        return worst
    }

    func grid(_ lo: Float, _ hi: Float, _ count: Int) -> [Float] {
        (0..<count).map { lo + (hi - lo) * Float($0) / Float(count - 1) }
    }

    func phi(_ x: Double) -> Double { 0.5 * erfc(-x / 2.0.squareRoot()) }

    /// Both variants: multiply-and-add (debug and portable builds) and fused multiply-add
    /// (release builds for an FMA CPU; here through libm's fmaf when the test build lacks FMA).
    @Test(arguments: [false, true])
    func expIsWithinThreeUlpsAndKeepsNaN(fused: Bool) {
        let worst = maxRelativeError(grid(-87, 88, 200_001), { VectorMath.exp($0, fused: fused) }) { Foundation.exp($0) }
        print("VectorMath.exp (fused \(fused)): max relative error \(worst.error) at x = \(worst.at) on [-87, 88]")
        #expect(worst.error < 3.6e-7)   // 3 ulp
        let special = VectorMath.exp(FloatLanes(.nan, -.infinity, -1e9, 0, 1e9, .infinity, -0.0, 1,
                                                -88, -100, 89, 100, 2, 3, 4, 5), fused: fused)
        #expect(special[0].isNaN)
        #expect(special[1] == 0 && special[2] == 0 && special[9] == 0)   // softmax's masked keys weigh nothing
        #expect(special[3] == 1 && special[6] == 1)
        #expect(special[4].isFinite && special[4] > 2e38 && special[10] > 2e38)
    }

    @Test(arguments: [false, true])
    func normalCDFIsAccurateOnBothTails(fused: Bool) {
        let cdf = { (x: FloatLanes) in VectorMath.normalCDF(x, fused: fused) }
        let main = maxRelativeError(grid(-6.3, 12, 200_001), cdf, phi)
        let farLeft = maxRelativeError(grid(-12, -6.3, 50_001), floor: 1e-35, cdf, phi)
        // The code this replaced: ½(1 + erff(x/√2)), libm, in Float.
        var libm = (error: 0.0, at: Float.nan)
        for x in grid(-6.3, 12, 200_001) {
            let v = 0.5 * (1 + erff(x * 0.70710678118654752))
            let e = abs(Double(v) / phi(Double(x)) - 1)
            if e > libm.error { libm = (e, x) }
        }
        print("VectorMath.normalCDF (fused \(fused)): max relative error \(main.error) at \(main.at) on [-6.3, 12], "
              + "\(farLeft.error) at \(farLeft.at) on [-12, -6.3]; "
              + "libm ½(1+erff) on [-6.3, 12]: \(libm.error) at \(libm.at)")
        #expect(main.error < 6e-6)
        #expect(farLeft.error < 3e-5)
        #expect(VectorMath.normalCDF(FloatLanes(repeating: .nan), fused: fused)[0].isNaN)
        #expect(abs(VectorMath.normalCDF(FloatLanes(repeating: 0), fused: fused)[0] - 0.5) <= 3e-7)
        let infinities = VectorMath.normalCDF(FloatLanes(-.infinity, .infinity, -20, 20, 0, 0, 0, 0,
                                                         0, 0, 0, 0, 0, 0, 0, 0), fused: fused)
        #expect(infinities[0] == 0 && infinities[1] == 1 && infinities[2] == 0 && infinities[3] == 1)
    }

    /// The vector square root AdamW uses is IEEE's, lane for lane: bitwise the scalar root
    /// on random bit patterns of every magnitude (normal, subnormal, 0, −0, ∞, NaN, negative).
    @Test func vectorSquareRootIsBitwiseTheScalarOne() {
        var bits = (0..<(1 << 14)).map { UInt32(truncatingIfNeeded: CounterRandom.bits(11, UInt64($0))) }
        bits += [0, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 1, 0x007F_FFFF, 0x3F80_0000]
        while bits.count % FloatLanes.scalarCount != 0 { bits.append(0x4000_0000) }
        var differing = 0
        for start in stride(from: 0, to: bits.count, by: FloatLanes.scalarCount) {
            var x = FloatLanes()
            for lane in 0..<FloatLanes.scalarCount { x[lane] = Float(bitPattern: bits[start + lane]) }
            let root = VectorMath.squareRoot(x)
            for lane in 0..<FloatLanes.scalarCount {
                let expected = x[lane].squareRoot()
                let same = expected.isNaN ? root[lane].isNaN : root[lane].bitPattern == expected.bitPattern
                if !same { differing += 1 }
            }
        }
        #expect(differing == 0, "\(differing) of \(bits.count) roots differ from Float.squareRoot()")
    }

    @Test func activationKernelsMatchTheirDoubleReferences() {
        // Counts that are not multiples of 16 exercise the padded tail.
        for count in [1, 15, 16, 17, 1000] {
            let x = (0..<count).map { Float(sin(Double($0) * 0.37) * 6) }
            let dy = (0..<count).map { Float(cos(Double($0) * 0.11)) }
            var out = [Float](repeating: 0, count: count), dx = [Float](repeating: 0.25, count: count)
            func check(_ forward: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void,
                       _ backward: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>,
                                    UnsafePointer<Float>, Int) -> Void,
                       value: (Double) -> Double, derivative: (Double) -> Double, name: String) {
                forward(&out, x, count)
                dx = [Float](repeating: 0.25, count: count)
                backward(&dx, dy, x, out, count)   // from the input and the forward's output
                for i in 0..<count {
                    let v = Double(x[i])
                    #expect(abs(Double(out[i]) - value(v)) <= 2e-6 * max(1, abs(value(v))), "\(name)(\(v)) = \(out[i])")
                    let d = Double(dy[i]) * derivative(v)   // written over the 0.25 already there
                    #expect(abs(Double(dx[i]) - d) <= 2e-6 * max(1, abs(d)), "\(name)'(\(v)): \(dx[i]) vs \(d)")
                }
            }
            let pdf = { (v: Double) in Foundation.exp(-0.5 * v * v) / (2 * Double.pi).squareRoot() }
            check({ Elementwise.geluForward($0, $1, count: $2) }, { Elementwise.geluBackward($0, $1, $2, output: $3, count: $4) },
                  value: { $0 * phi($0) }, derivative: { phi($0) + $0 * pdf($0) }, name: "gelu")
            let sigma = { (v: Double) in 1 / (1 + Foundation.exp(-1.702 * v)) }
            check({ Elementwise.quickGeluForward($0, $1, count: $2) },
                  { Elementwise.quickGeluBackward($0, $1, $2, output: $3, count: $4) },
                  value: { $0 * sigma($0) }, derivative: { sigma($0) + 1.702 * $0 * sigma($0) * (1 - sigma($0)) },
                  name: "quickgelu")
        }
    }

    /// 16 lanes of signed 24-bit random integers ÷ `scale`, + `offset` (state advanced per lane).
    static func randomLanes(_ state: inout UInt64, scale: Float, offset: Float = 0) -> FloatLanes {
        var v = FloatLanes()
        for j in 0..<FloatLanes.scalarCount {
            state = CounterRandom.mix(state)
            v[j] = Float(Int64(bitPattern: state) >> 40) / scale + offset
        }
        return v
    }

    /// The tree of vector maxima (`umd_largest_lane16`) is the lanes' largest element, wherever
    /// it sits: every lane position, negative and mixed rows, −∞ lanes (a row padded with −∞),
    /// ties, and ±0 (either zero is a right answer: x − max is the same for both).
    @Test func largestLaneIsTheLargestElementAtEveryPosition() {
        var state: UInt64 = 17
        for trial in 0..<2000 {
            var v = Self.randomLanes(&state, scale: 1e4, offset: trial % 2 == 0 ? 0 : -1e3)
            if trial % 5 == 0 { for j in 0..<(trial % 16) { v[j] = -.infinity } }
            if trial % 7 == 0 { v[trial % 16] = v[(trial + 3) % 16] }          // a tie
            let position = trial % FloatLanes.scalarCount
            if trial % 3 == 0 { v[position] = 1e6 }                             // the maximum at every lane in turn
            var expected = v[0]
            for j in 1..<FloatLanes.scalarCount { expected = Swift.max(expected, v[j]) }
            #expect(VectorMath.largestLane(v) == expected, "trial \(trial): \(v)")
        }
        #expect(VectorMath.largestLane(FloatLanes(repeating: -.infinity)) == -.infinity)
        var zeros = FloatLanes(repeating: -1)
        zeros[3] = 0; zeros[11] = -0
        #expect(VectorMath.largestLane(zeros) == 0)
    }

    /// `laneSum` adds by the tree it documents — halves, then quarters, then pairs — bit for
    /// bit, so a softmax row's sum does not depend on how the compiler lowers it.
    @Test func laneSumIsTheTreeOfHalves() {
        var state: UInt64 = 5
        for _ in 0..<500 {
            let v = Self.randomLanes(&state, scale: 1e5)
            let a = (0..<8).map { v[$0] + v[$0 + 8] }
            let b = (0..<4).map { a[$0] + a[$0 + 4] }
            #expect(VectorMath.laneSum(v).bitPattern == ((b[0] + b[2]) + (b[1] + b[3])).bitPattern, "\(v)")
        }
    }

    /// A row holding a NaN comes out NaN in every column, wherever the NaN sits (the row's
    /// maximum may pass over it; its exponential does not), and the other rows stay finite.
    @Test func softmaxRowWithNaNIsNaNThroughout() {
        for width in [16, 37, 65] {
            for position in [0, width / 2, width - 1] {
                var x = (0..<(2 * width)).map { Float(sin(Double($0))) }
                x[position] = .nan
                Elementwise.softmaxRows(&x, rows: 2, width: width)
                let allNaN = x[0..<width].allSatisfy { $0.isNaN }, othersFinite = x[width...].allSatisfy { $0.isFinite }
                #expect(allNaN && othersFinite, "width \(width), NaN at \(position)")
            }
        }
    }

    @Test func softmaxRowsSumToOneAndIgnoreMaskedKeys() {
        let width = 37
        var x = (0..<(3 * width)).map { Float(sin(Double($0)) * 4) }
        var mask = [Float](repeating: 0, count: width)
        for j in 30..<width { mask[j] = -1e9 }
        let original = x
        Elementwise.softmaxRows(&x, rows: 3, width: width, additiveMask: mask)
        for r in 0..<3 {
            let row = Array(original[(r * width)..<(r * width + 30)]).map(Double.init)
            let m = row.max()!
            let sum = row.reduce(0) { $0 + Foundation.exp($1 - m) }
            for j in 0..<width {
                let expected = j < 30 ? Foundation.exp(row[j] - m) / sum : 0
                #expect(abs(Double(x[r * width + j]) - expected) <= 1e-6, "row \(r) column \(j)")
            }
        }
    }

    /// The 16-lane integer form of the keep decision is its scalar definition, element for
    /// element, from an even and an odd start (draws hold two elements) and in a tail: element e
    /// of an item is kept ⟺ 32-bit half (e & 1) of SplitMix64 draw e >> 1 of the item's key
    /// is ≥ ⌈p·2³²⌉. Written out here from `CounterRandom.mix`, not through the site's helpers.
    @Test func dropoutMaskEqualsTheScalarDefinition() {
        for p: Float in [0.1, 0.5, 0.9] {
            let site = DropoutSite(name: "test.site")
            let context = ForwardContext(dropout: p, passKey: 42, sampleIDs: [7, 3])
            let perItem = 203
            var x = [Float](repeating: 1, count: 2 * perItem)
            site.forward(&x, batch: 2, perItem: perItem, context)
            // The same elements applied in windows starting at odd offsets, as attention's heads do.
            let ones = [Float](repeating: 1, count: 2 * perItem)
            var windowed = [Float](repeating: -1, count: 2 * perItem)
            var start = 0
            for length in [37, 64, 1, 100, 203, 1] where start < 2 * perItem {
                let count = min(length, 2 * perItem - start)
                ones.withUnsafeBufferPointer { o in windowed.withUnsafeMutableBufferPointer { w in
                    site.apply(o.baseAddress! + start, into: w.baseAddress! + start, offset: start, count: count)
                } }
                start += count
            }
            let scale = 1 / (1 - p)
            let threshold = UInt64((Double(p) * 4_294_967_296).rounded(.up))
            var dropped = 0
            for b in 0..<2 {
                let key = context.key(site: site.site, batchItem: b)
                for i in 0..<perItem {
                    let draw = CounterRandom.mix(key &+ UInt64(i / 2) &* 0x9E37_79B9_7F4A_7C15)
                    let word = i % 2 == 0 ? draw & 0xFFFF_FFFF : draw >> 32
                    let keep = word >= threshold
                    #expect(x[b * perItem + i] == (keep ? scale : 0), "p \(p), item \(b), element \(i)")
                    #expect(windowed[b * perItem + i] == (keep ? scale : 0), "windowed: p \(p), item \(b), element \(i)")
                    dropped += keep ? 0 : 1
                }
            }
            #expect(start == 2 * perItem)
            #expect(abs(Double(dropped) / Double(2 * perItem) - Double(p)) < 0.1)
        }
    }
}

/// The GM-Coord noise: log and cos(2π·) accurate, the normals normal.
struct NoiseTests {
    @Test func logAndCosineAreAccurate() {
        var worstLog = 0.0, worstCos = 0.0
        var i = 0
        while i < 100_000 {
            var x = FloatLanes(), u = FloatLanes()
            for j in 0..<16 {
                x[j] = Float(Double(i + j + 1) / 100_000)         // (0, 1]
                u[j] = Float(Double(i + j) / 99_999)              // [0, 1]
            }
            let l = VectorMath.log(x), c = VectorMath.cosTwoPi(u)
            for j in 0..<16 {
                let ref = Foundation.log(Double(x[j]))
                if ref != 0 { worstLog = max(worstLog, abs(Double(l[j]) - ref) / max(abs(ref), 1e-30)) }
                worstCos = max(worstCos, abs(Double(c[j]) - Foundation.cos(2 * Double.pi * Double(u[j]))))
            }
            i += 16
        }
        print("VectorMath.log: max relative error \(worstLog) on (0, 1]; cosTwoPi: max absolute error \(worstCos)")
        #expect(worstLog < 1e-6)
        #expect(worstCos < 1e-6)
    }

    /// GM-Coord walks a tensor with `NormalStates.advance()` (an addition per group): the
    /// same normals, bit for bit, as drawing each group from its counter.
    @Test func advancingNormalStatesEqualsDrawingFromTheCounter() {
        let key: UInt64 = 0xDEAD_BEEF_1234, start: UInt64 = 12_345   // an arena offset, not a multiple of 16
        var states = VectorMath.NormalStates(key: key, firstCounter: start)
        var differing = 0
        for group in 0..<1_000 {
            let walked = VectorMath.normals(states), drawn = VectorMath.normals(key: key, firstCounter: start + 16 * UInt64(group))
            for lane in 0..<FloatLanes.scalarCount where walked[lane].bitPattern != drawn[lane].bitPattern { differing += 1 }
            states.advance()
        }
        #expect(differing == 0, "\(differing) of \(1_000 * FloatLanes.scalarCount) normals differ")
    }

    @Test func normalsHaveTheMomentsOfAStandardNormalAndRepeat() {
        let n = 1 << 20
        var sum = 0.0, sq = 0.0, fourth = 0.0, beyond3 = 0
        var c: UInt64 = 0
        while c < UInt64(n) {
            let v = VectorMath.normals(key: 12345, firstCounter: c)
            for j in 0..<16 {
                let x = Double(v[j])
                #expect(x.isFinite)
                sum += x; sq += x * x; fourth += x * x * x * x
                if abs(x) > 3 { beyond3 += 1 }
            }
            c += 16
        }
        let mean = sum / Double(n), variance = sq / Double(n) - mean * mean, kurtosis = fourth / Double(n)
        print("normals: mean \(mean), variance \(variance), E[x^4] \(kurtosis), P(|x| > 3) \(Double(beyond3) / Double(n))")
        // Standard errors at 2^20 samples: mean 0.001, variance 0.0014, E[x⁴] 0.009; P(|x|>3) = 0.0027.
        #expect(abs(mean) < 0.005 && abs(variance - 1) < 0.007 && abs(kurtosis - 3) < 0.05)
        #expect(abs(Double(beyond3) / Double(n) - 0.0027) < 0.0005)
        #expect(VectorMath.normals(key: 7, firstCounter: 32) == VectorMath.normals(key: 7, firstCounter: 32))
        var worstRoot = 0.0
        for i in 0..<10_000 {
            let x = FloatLanes(repeating: Float(i) * 0.37 + 1e-3)
            worstRoot = max(worstRoot, abs(Double(VectorMath.approximateSquareRoot(x)[0]) / Double(x[0]).squareRoot() - 1))
        }
        #expect(worstRoot < 5e-7, "approximate square root: relative error \(worstRoot)")
        #expect(VectorMath.approximateSquareRoot(FloatLanes())[0] == 0)
        #expect(VectorMath.normals(key: 7, firstCounter: 32) != VectorMath.normals(key: 8, firstCounter: 32))
    }
}
