import Testing
@testable import UMDModel

/// Finite-difference gradient checks for layers and losses.
///
/// The scalar checked is L = Σ out ⊙ R for a fixed random R (so every output element
/// matters), computed in Double. Central differences with step ε = 1e-2 on Float32:
///  - rounding: each output element carries ~6e-8 relative error, so for ≤ ~10⁴ outputs of
///    size O(1) the noise in L is ≲ 1e-5 and in (L₊ − L₋)/2ε ≲ 5e-4;
///  - truncation: ε²/6 · |f'''| ≈ 2e-5 for the O(1)-scaled smooth functions used here.
/// Hence an element passes when |analytic − numeric| ≤ 2e-3 + 2e-2 · max(|analytic|, |numeric|):
/// several times the expected error, yet a wrong term (a missing factor, a swapped
/// index, a dropped path) is off by O(|g|) and fails. A directional check over all
/// parameters at once complements the sampled elements.
struct GradientChecker {
    struct Input {
        let name: String
        let values: UnsafeMutablePointer<Float>
        let gradient: UnsafeMutablePointer<Float>
        let count: Int
    }

    let store: ParameterStore
    var inputs: [Input] = []
    let forward: () -> (UnsafePointer<Float>, Int)
    let backward: (UnsafePointer<Float>) -> Void
    var epsilon: Float = 1e-2
    var absoluteTolerance = 2e-3
    var relativeTolerance = 2e-2
    var samplesPerTensor = 4

    func loss(_ r: [Float]) -> Double {
        let (out, n) = forward()
        var s = 0.0
        for i in 0..<n { s += Double(out[i]) * Double(r[i]) }
        return s
    }

    /// Runs the check and records an `Issue` per mismatching element. Returns the number checked.
    @discardableResult
    /// Runs the check with every matrix-product backend in turn (the OpenBLAS reference,
    /// then oneDNN fp32, on this thread only) and returns the elements checked per backend.
    func run(seed: UInt64 = 1, sourceLocation: SourceLocation = #_sourceLocation) -> Int {
        let checked = runOnce(seed: seed, sourceLocation: sourceLocation)
        // A backend of its own per check: tests run in parallel, and one backend's cached
        // primitives must not serve two threads at once.
        guard let onednn = try? OneDNNBackend() else {
            Issue.record("oneDNN could not be started", sourceLocation: sourceLocation)
            return checked
        }
        Matmul.threadBackend = onednn
        defer { Matmul.threadBackend = nil }
        return min(checked, runOnce(seed: seed, sourceLocation: sourceLocation))
    }

    private func runOnce(seed: UInt64, sourceLocation: SourceLocation) -> Int {
        let (_, outCount) = forward()
        let r = (0..<outCount).map { Float(CounterRandom.normal(seed &+ 99, UInt64($0))) }
        store.zeroGradients()
        for input in inputs { input.gradient.update(repeating: 0, count: input.count) }
        _ = forward()
        r.withUnsafeBufferPointer { backward($0.baseAddress!) }
        let analyticParams = Array(UnsafeBufferPointer(start: store.grads, count: store.count))
        let analyticInputs = inputs.map { Array(UnsafeBufferPointer(start: $0.gradient, count: $0.count)) }

        var checked = 0
        func compare(_ label: String, _ value: UnsafeMutablePointer<Float>, _ analytic: Float) {
            let saved = value.pointee
            value.pointee = saved + epsilon
            let plus = loss(r)
            value.pointee = saved - epsilon
            let minus = loss(r)
            value.pointee = saved
            let numeric = (plus - minus) / (2 * Double(epsilon))
            let a = Double(analytic)
            let allowed = absoluteTolerance + relativeTolerance * max(abs(a), abs(numeric))
            checked += 1
            #expect(abs(a - numeric) <= allowed, "\(label): analytic \(a) vs numeric \(numeric)",
                    sourceLocation: sourceLocation)
        }
        for view in store.views {
            for index in sampleIndices(count: view.count, seed: CounterRandom.hash(view.name)) {
                compare("\(view.name)[\(index)]", store.values + view.offset + index,
                        analyticParams[view.offset + index])
            }
        }
        for (k, input) in inputs.enumerated() {
            for index in sampleIndices(count: input.count, seed: CounterRandom.hash(input.name)) {
                compare("input \(input.name)[\(index)]", input.values + index, analyticInputs[k][index])
            }
        }

        // Directional derivative over every parameter at once: (L(θ+εd) − L(θ−εd)) / 2ε vs g·d.
        if store.count > 0 {
            let d = (0..<store.count).map { Float(CounterRandom.normal(seed &+ 7, UInt64($0))) }
            let original = Array(UnsafeBufferPointer(start: store.values, count: store.count))
            let small: Float = 1e-3
            for i in 0..<store.count { store.values[i] = original[i] + small * d[i] }
            let plus = loss(r)
            for i in 0..<store.count { store.values[i] = original[i] - small * d[i] }
            let minus = loss(r)
            for i in 0..<store.count { store.values[i] = original[i] }
            let numeric = (plus - minus) / (2 * Double(small))
            var analytic = 0.0
            for i in 0..<store.count { analytic += Double(analyticParams[i]) * Double(d[i]) }
            #expect(abs(analytic - numeric) <= 1e-2 + 2e-2 * max(abs(analytic), abs(numeric)),
                    "directional derivative: analytic \(analytic) vs numeric \(numeric)", sourceLocation: sourceLocation)
        }
        return checked
    }

    func sampleIndices(count: Int, seed: UInt64) -> [Int] {
        if count <= samplesPerTensor { return Array(0..<count) }
        var picked = Set<Int>()
        var c: UInt64 = 0
        while picked.count < samplesPerTensor {
            picked.insert(Int(CounterRandom.bits(seed, c) % UInt64(count)))
            c += 1
        }
        return picked.sorted()
    }
}

/// Test helpers: random parameters (LayerNorm weights near 1) and random buffers.
enum TestData {
    static func randomize(_ store: ParameterStore, seed: UInt64, scale: Float = 0.3) {
        for view in store.views {
            let key = CounterRandom.key(seed, CounterRandom.hash(view.name))
            for i in 0..<view.count {
                let noise = Float(CounterRandom.normal(key, UInt64(i))) * scale
                store.values[view.offset + i] = view.role == .layerNormWeight ? 1 + noise : noise
            }
        }
    }

    static func buffer(_ count: Int, seed: UInt64, scale: Float = 1) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        for i in 0..<count { p[i] = Float(CounterRandom.normal(seed, UInt64(i))) * scale }
        return p
    }

    static func zeros(_ count: Int) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
        p.initialize(repeating: 0, count: max(count, 1))
        return p
    }

    /// Additive key mask [B, L]: the last `padding[b]` keys of item b are padding.
    static func keyMask(batch: Int, length: Int, padding: [Int]) -> UnsafeMutablePointer<Float> {
        let p = zeros(batch * length)
        for b in 0..<batch {
            for t in (length - padding[b])..<length { p[b * length + t] = paddingMaskValue }
        }
        return p
    }
}

/// Directional finite-difference check of a whole-model loss per named parameter group:
/// (L(θ+εd) − L(θ−εd))/2ε against g·d for a normal direction d over the group's tensors.
///
/// Tolerance: the losses are O(1) and their Float32 forward carries ~1e-7–1e-6 absolute
/// rounding noise, so with ε = 1e-3 the numeric derivative has ≲ 1e-3 absolute noise;
/// 2% relative + 2e-3 absolute covers that and the O(ε²) truncation, while a missing path
/// through a group changes its directional derivative by O(100%). (Checked: dropping the
/// mask-token or type-embedding gradient fails it.) Returns the analytic gradients.
@discardableResult
func checkGroupDirections(_ store: ParameterStore, groups: [String], loss: () -> Double, gradients: () -> Void,
                          sourceLocation: SourceLocation = #_sourceLocation) -> [Float] {
    store.zeroGradients()
    gradients()
    let grads = Array(UnsafeBufferPointer(start: store.grads, count: store.count))
    for group in groups {
        var analytic = 0.0
        var direction: [(Int, Float)] = []
        for view in store.views(withPrefix: group) {
            for i in 0..<view.count {
                let d = Float(CounterRandom.normal(CounterRandom.hash(view.name), UInt64(i)))
                direction.append((view.offset + i, d))
                analytic += Double(grads[view.offset + i]) * Double(d)
            }
        }
        #expect(!direction.isEmpty, "no parameters under \(group)", sourceLocation: sourceLocation)
        let eps: Float = 1e-3
        for (o, d) in direction { store.values[o] += eps * d }
        let plus = loss()
        for (o, d) in direction { store.values[o] -= 2 * eps * d }
        let minus = loss()
        for (o, d) in direction { store.values[o] += eps * d }
        let numeric = (plus - minus) / (2 * Double(eps))
        #expect(abs(numeric) > 1e-4, "\(group): the loss does not depend on this group", sourceLocation: sourceLocation)
        #expect(abs(analytic - numeric) <= 2e-3 + 2e-2 * max(abs(analytic), abs(numeric)),
                "\(group): directional derivative analytic \(analytic) vs numeric \(numeric)", sourceLocation: sourceLocation)
    }
    return grads
}
