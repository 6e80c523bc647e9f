/// What a fine-tuning step produced.
public struct FinetuneResult: Sendable {
    /// Global-batch task loss.
    public var loss: Double
    /// This rank's contribution sums S_t, S_i (MODEL_SPEC.md section 9).
    public var localSumText: Double, localSumImage: Double
    /// ρ and k from the global sums.
    public var coefficients: GMCoord.Coefficients
}

/// One sample's modality contributions under both `--gm-contribution` variants.
public struct SampleContributions: Sendable, Equatable {
    public var referenceText: Double, referenceImage: Double
    public var ablationText: Double, ablationImage: Double

    public init(referenceText: Double, referenceImage: Double, ablationText: Double, ablationImage: Double) {
        self.referenceText = referenceText; self.referenceImage = referenceImage
        self.ablationText = ablationText; self.ablationImage = ablationImage
    }
}

/// GM-Coord fine-tuning: one unmasked student pass, the task loss, the contributions
/// (not differentiated) and backward. Modulation is a separate call (`GMCoord.modulate`)
/// because it must follow gradient averaging.
public final class FinetuneObjective {
    public let params: UMDParameters
    public var beta = 0.1
    let vision: VisionEncoder, text: TextEncoder, fusion: FusionModule
    let classifier: ClassifierHead?
    let score: Linear?
    let pixels = FloatBuffer()
    let ids = IntBuffer(), keyMask = FloatBuffer()
    let dLogits = FloatBuffer(), dCls = FloatBuffer()
    var labels: [Int32] = []
    // Retrieval pair expansion.
    let pairImages = FloatBuffer(), pairTexts = FloatBuffer(), pairMask = FloatBuffer()
    let dTextEncoded = FloatBuffer(), dImageEncoded = FloatBuffer()
    let pairFusion: FusionModule
    /// Called during backward with an arena offset below which every gradient is final.
    public var gradientsReady: ((Int) -> Void)?
    /// `--gm-contribution`: how S_t and S_i are measured.
    public var contribution = GMContribution.reference
    // The mean ablation's head passes run on their own layers, so the task head keeps what
    // its backward needs. Rows [B, 2D] with one modality's half replaced by the batch mean.
    let ablationHead: ClassifierHead?
    let ablationScore: Linear?
    let ablationRows = FloatBuffer()

    /// `--recompute blocks` (see `PretrainObjective.recompute`).
    public var recompute = false {
        didSet {
            vision.recompute = recompute; text.recompute = recompute; fusion.recompute = recompute
            pairFusion.recompute = recompute
        }
    }
    /// Logits of the last step, [B, A] (classification) or [B, 1+R] (retrieval).
    public let lastLogits = FloatBuffer()
    /// Pooled features [z_t; z_i] of the last classification step, [B, 2D].
    public var lastPooled: UnsafePointer<Float> { UnsafePointer(fusion.pooled.pointer) }

    public init(params: UMDParameters) {
        self.params = params
        let c = params.config, D = c.width
        vision = VisionEncoder(params.vision, width: D, patchSize: c.patchSize)
        text = TextEncoder(params.text, width: D)
        fusion = FusionModule(params.fusion, width: D, pooling: c.pooling)
        pairFusion = FusionModule(params.fusion, width: D, pooling: c.pooling)
        guard let head = params.head else { preconditionFailure("fine-tuning needs a model with a task head") }
        classifier = head.fc1 != nil ? ClassifierHead(head) : nil
        score = head.score.map(Linear.init)
        ablationHead = head.fc1 != nil ? ClassifierHead(head) : nil
        ablationScore = head.score.map(Linear.init)
    }

    /// Σ_b softmax(z W_half^T + b/2)[label] over `rows` rows, for the contribution of one modality.
    static func contribution(features z: UnsafePointer<Float>, featureStride: Int, featureOffset: Int,
                             weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?, classes: Int, width D: Int,
                             weightOffset: Int, labels: [Int32], groups: Int, groupSize: Int) -> Double {
        // For classification groups = B rows with `classes` outputs each (groupSize 1);
        // for retrieval one output per candidate and a softmax across the group's candidates.
        var total = 0.0
        var logits = [Double](repeating: 0, count: max(classes, groupSize))
        for g in 0..<groups {
            // A sample without a known answer (eval's answers outside the vocabulary, predict's
            // questions) has no true-class probability: it contributes nothing.
            if groupSize == 1 && (labels[g] < 0 || Int(labels[g]) >= classes) { continue }
            var count = 0
            for m in 0..<groupSize {
                let row = z + (g * groupSize + m) * featureStride + featureOffset
                for a in 0..<classes {
                    var s = Double(bias?[a] ?? 0) / 2
                    let w = weight + a * 2 * D + weightOffset
                    for j in 0..<D { s += Double(row[j]) * Double(w[j]) }
                    logits[count] = s
                    count += 1
                }
            }
            total += softmax(at: groupSize == 1 ? Int(labels[g]) : 0, count: count) { logits[$0] }
        }
        return total
    }

    /// softmax(logits)[label] over `count` logits, in Double — both contribution variants'.
    @inline(__always)
    static func softmax(at label: Int, count: Int, _ logit: (Int) -> Double) -> Double {
        var maxValue = logit(0)
        for i in 1..<max(count, 1) { maxValue = max(maxValue, logit(i)) }
        var sum = 0.0
        for i in 0..<count { sum += exp(logit(i) - maxValue) }
        return exp(logit(label) - maxValue) / sum
    }

    /// Both modalities' contribution sums: fc2's (or head.score's) text half applied to
    /// z_t = cls[:, 0..<D], its image half to z_i = cls[:, D..<2D].
    static func contributions(_ cls: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                              classes: Int, width D: Int, labels: [Int32], groups: Int,
                              groupSize: Int) -> (text: Double, image: Double) {
        (contribution(features: cls, featureStride: 2 * D, featureOffset: 0, weight: weight, bias: bias, classes: classes,
                      width: D, weightOffset: 0, labels: labels, groups: groups, groupSize: groupSize),
         contribution(features: cls, featureStride: 2 * D, featureOffset: D, weight: weight, bias: bias, classes: classes,
                      width: D, weightOffset: D, labels: labels, groups: groups, groupSize: groupSize))
    }

    /// The global-batch means z̄ = [z̄_t; z̄_i] [2D] of `rows` rows of `cls` (stride `stride` rows
    /// apart: retrieval's positive pairs), by one allreduce of the sums and the count. A rank
    /// with no rows (nil) still takes part in the allreduce.
    static func globalMeans(_ cls: UnsafePointer<Float>?, rows: Int, stride: Int, width D: Int,
                            _ reduction: GlobalReduction) -> [Float] {
        var local = [Double](repeating: 0, count: 1 + 2 * D)
        if let cls {
            local[0] = Double(rows)
            for r in 0..<rows {
                let row = cls + r * stride * 2 * D
                for j in 0..<(2 * D) { local[1 + j] += Double(row[j]) }
            }
        }
        let global = reduction.sum(local)
        return (0..<(2 * D)).map { Float(global[1 + $0] / max(global[0], 1)) }
    }

    /// `rows` copies of `cls` with one modality's half (`replace`: 0 text, 1 image) set to
    /// that half of `means` → [rows, 2D].
    func ablated(_ cls: UnsafePointer<Float>, rows: Int, width D: Int, means: [Float], replace half: Int)
        -> UnsafePointer<Float> {
        let out = ablationRows.ensure(rows * 2 * D)
        out.update(from: cls, count: rows * 2 * D)
        means.withUnsafeBufferPointer { m in
            for r in 0..<rows { (out + r * 2 * D + half * D).update(from: m.baseAddress! + half * D, count: D) }
        }
        return UnsafePointer(out)
    }

    /// Σ over groups of softmax(logits of the group)[label]: classification groups are rows of
    /// `classes` logits with their labels (unknown labels contribute nothing); retrieval groups
    /// are `groupSize` one-logit rows with the positive at 0.
    static func labelProbabilitySum(_ logits: UnsafePointer<Float>, groups: Int, classes: Int, groupSize: Int,
                                    labels: [Int32]) -> Double {
        var total = 0.0
        let width = groupSize == 1 ? classes : groupSize
        for g in 0..<groups {
            if groupSize == 1 && (labels[g] < 0 || Int(labels[g]) >= classes) { continue }
            let row = logits + g * width
            total += softmax(at: groupSize == 1 ? Int(labels[g]) : 0, count: width) { Double(row[$0]) }
        }
        return total
    }

    /// Each row's contributions p_t, p_i — the softmax at its label of the text-only and the
    /// image-only prediction (section 9) — under both variants: `reference` (fc2's column
    /// halves) and `ablation` (the whole head, the other modality set to its mean over every
    /// rank's rows: one allreduce, which every rank joins, with rows or without). Diagnostics
    /// of a trained model (`eval --predictions`); nil for rows without a known label.
    public func sampleContributions(_ student: ParameterStore, cls: UnsafePointer<Float>?, rows: Int, labels: [Int32],
                                    reduction: GlobalReduction) -> [SampleContributions?] {
        guard let head = params.head, let fc2 = head.fc2, let ablationHead else { return [] }
        let D = params.config.width, A = fc2.outFeatures
        let means = Self.globalMeans(cls, rows: rows, stride: 1, width: D, reduction)
        guard let cls, rows > 0 else { return [] }
        let w = UnsafePointer(student.value(fc2.weight)), b = fc2.bias.map { UnsafePointer(student.value($0)) }
        // The head's output buffer is reused by the second pass: keep the first's logits [rows, A].
        let textOnly = Array(UnsafeBufferPointer(start: ablationHead.forward(student, ablated(cls, rows: rows, width: D, means: means,
                                                                                              replace: 1), rows: rows), count: rows * A))
        let imageOnly = ablationHead.forward(student, ablated(cls, rows: rows, width: D, means: means, replace: 0), rows: rows)
        return textOnly.withUnsafeBufferPointer { textLogits in
            (0..<rows).map { r in
                guard labels[r] >= 0 && Int(labels[r]) < A else { return nil }
                let label = [labels[r]]
                let reference = Self.contributions(cls + r * 2 * D, weight: w, bias: b, classes: A, width: D, labels: label,
                                                   groups: 1, groupSize: 1)
                return SampleContributions(
                    referenceText: reference.text, referenceImage: reference.image,
                    ablationText: Self.labelProbabilitySum(textLogits.baseAddress! + r * A, groups: 1, classes: A, groupSize: 1,
                                                           labels: label),
                    ablationImage: Self.labelProbabilitySum(imageOnly + r * A, groups: 1, classes: A, groupSize: 1, labels: label))
            }
        }
    }

    /// The global loss and contribution sums (one allreduce) and the coefficients from them.
    func result(loss: Double, sumText: Double, sumImage: Double, _ reduction: GlobalReduction) -> FinetuneResult {
        let global = reduction.sum([loss, sumText, sumImage])
        return FinetuneResult(loss: global[0], localSumText: sumText, localSumImage: sumImage,
                              coefficients: GMCoord.coefficients(sumText: global[1], sumImage: global[2], beta: beta))
    }

    /// VQA / classification step. Accumulates gradients into `student.grads` when asked.
    @discardableResult
    public func step(student: ParameterStore, batch: ClassificationBatch, dropout: Float = 0, passKey: UInt64 = 0,
                     reduction: GlobalReduction = .local, computeGradients: Bool = true) -> FinetuneResult {
        guard let classifier, let head = params.head, let fc2 = head.fc2 else {
            preconditionFailure("this model has a retrieval head; use retrievalStep")
        }
        let c = params.config, D = c.width
        let B = batch.batch, L = batch.textLength, H = batch.imageSize
        let N = (H / c.patchSize) * (H / c.patchSize), A = fc2.outFeatures
        var laps = Profiler.laps()
        MemoryLedger.chargeTo("fine-tuning pass (forward)")
        let ctx = ForwardContext(dropout: dropout, passKey: passKey, sampleIDs: batch.sampleIDs)
        let px = pixels.ensure(B * 3 * H * H)
        batch.pixels.withUnsafeBufferPointer { px.update(from: $0.baseAddress!, count: B * 3 * H * H) }
        let idp = ids.ensure(B * L)
        batch.textIDs.withUnsafeBufferPointer { idp.update(from: $0.baseAddress!, count: B * L) }
        let km = keyMask.ensure(B * L)
        batch.attention.withUnsafeBufferPointer { additiveKeyMask(km, attention: $0.baseAddress!, count: B * L) }
        labels = batch.labels

        let zi = vision.forward(student, pixels: px, batch: B, imageSize: H, keep: nil, keptCount: N)
        let zt = text.forward(student, ids: idp, keyMask: km, batch: B, length: L, ctx)
        fusion.forward(student, text: zt, image: zi, textMask: km, batch: B, textLength: L, imageLength: 1 + N, ctx)
        laps.lap("student forward")
        MemoryLedger.chargeTo("heads and losses")
        let cls = fusion.pool(student)                                   // [B, 2D]
        let logits = classifier.forward(student, cls, rows: B)           // [B, A]
        lastLogits.ensure(B * A).update(from: logits, count: B * A)

        let sT: Double, sI: Double
        switch contribution {
        case .reference:
            // Contributions (Eq. 10 as the reference computes it): fc2's column halves applied
            // to the pooled features themselves.
            let w = UnsafePointer(student.value(fc2.weight)), b = fc2.bias.map { UnsafePointer(student.value($0)) }
            (sT, sI) = Self.contributions(cls, weight: w, bias: b, classes: A, width: D, labels: labels, groups: B,
                                          groupSize: 1)
        case .ablation:
            // Each modality through the whole head, the other replaced by its global-batch mean.
            let means = Self.globalMeans(cls, rows: B, stride: 1, width: D, reduction)
            let head = ablationHead!
            sT = Self.labelProbabilitySum(head.forward(student, ablated(cls, rows: B, width: D, means: means, replace: 1), rows: B),
                                          groups: B, classes: A, groupSize: 1, labels: labels)
            sI = Self.labelProbabilitySum(head.forward(student, ablated(cls, rows: B, width: D, means: means, replace: 0), rows: B),
                                          groups: B, classes: A, groupSize: 1, labels: labels)
        }

        let globalSamples = reduction.counts([Double(B)])[0]
        let loss = labels.withUnsafeBufferPointer {
            Losses.crossEntropy(logits: logits, labels: $0.baseAddress!, gradient: dLogits.ensure(B * A), rows: B,
                                classes: A, divisor: globalSamples)
        }
        laps.lap("heads + losses (forward)")
        MemoryLedger.chargeTo("backward (activation gradients)")
        if computeGradients {
            let dc = dCls.zeroed(B * 2 * D)
            classifier.backward(student, dLogits.pointer, dCls: dc)
            fusion.beginBackward()
            fusion.poolBackward(student, dc)
            backwardThroughEncoders(student, params: params, fusion: fusion, text: text, vision: vision,
                                    report: gradientsReady)
        }
        laps.lap("backward")
        defer { laps.lap("heads + losses (forward)"); MemoryLedger.chargeTo("other") }
        return result(loss: loss, sumText: sT, sumImage: sI, reduction)
    }

    /// Retrieval step: cross-entropy over each image's 1+R candidate texts, positive at 0.
    @discardableResult
    public func retrievalStep(student: ParameterStore, batch: RetrievalBatch, dropout: Float = 0, passKey: UInt64 = 0,
                              reduction: GlobalReduction = .local, computeGradients: Bool = true) -> FinetuneResult {
        guard let score else { preconditionFailure("this model has a classifier head; use step") }
        let c = params.config, D = c.width
        let B = batch.batch, L = batch.textLength, H = batch.imageSize, T = batch.textCount
        let C = batch.candidatesPerImage, P = B * C
        let N = (H / c.patchSize) * (H / c.patchSize), Li = 1 + N
        var laps = Profiler.laps()
        MemoryLedger.chargeTo("fine-tuning pass (forward)")
        let px = pixels.ensure(B * 3 * H * H)
        batch.pixels.withUnsafeBufferPointer { px.update(from: $0.baseAddress!, count: B * 3 * H * H) }
        let idp = ids.ensure(T * L)
        batch.textIDs.withUnsafeBufferPointer { idp.update(from: $0.baseAddress!, count: T * L) }
        let km = keyMask.ensure(T * L)
        batch.attention.withUnsafeBufferPointer { additiveKeyMask(km, attention: $0.baseAddress!, count: T * L) }
        // Dropout keys: text t by its data-set index (the same on any rank and in any slot),
        // pair (n, j) by image sample and candidate slot.
        let textCtx = ForwardContext(dropout: dropout, passKey: CounterRandom.key(passKey, 1),
                                     sampleIDs: batch.textSampleIDs.isEmpty ? (0..<T).map { UInt64($0) } : batch.textSampleIDs)
        let pairCtx = ForwardContext(dropout: dropout, passKey: CounterRandom.key(passKey, 2),
                                     sampleIDs: (0..<P).map { batch.sampleIDs[$0 / C] &* 1024 &+ UInt64($0 % C) })

        // Each image and each text is encoded once; the fusion runs per (image, candidate) pair.
        let zi = vision.forward(student, pixels: px, batch: B, imageSize: H, keep: nil, keptCount: N)
        let zt = text.forward(student, ids: idp, keyMask: km, batch: T, length: L, textCtx)
        let pi = pairImages.ensure(P * Li * D), pt = pairTexts.ensure(P * L * D), pm = pairMask.ensure(P * L)
        for pair in 0..<P {
            let n = pair / C, t = Int(batch.candidates[pair])
            (pi + pair * Li * D).update(from: zi + n * Li * D, count: Li * D)
            (pt + pair * L * D).update(from: zt + t * L * D, count: L * D)
            (pm + pair * L).update(from: km + t * L, count: L)
        }
        pairFusion.forward(student, text: pt, image: pi, textMask: pm, batch: P, textLength: L, imageLength: Li, pairCtx)
        laps.lap("student forward")
        MemoryLedger.chargeTo("heads and losses")
        let cls = pairFusion.pool(student)                                // [P, 2D]
        let scores = score.forward(student, cls, rows: P)                 // [P, 1] = [B, 1+R]
        lastLogits.ensure(P).update(from: scores, count: P)

        let w = UnsafePointer(student.value(score.params.weight))
        let b = score.params.bias.map { UnsafePointer(student.value($0)) }
        let zeros = [Int32](repeating: 0, count: B)
        let sT: Double, sI: Double
        switch contribution {
        case .reference:
            (sT, sI) = Self.contributions(cls, weight: w, bias: b, classes: 1, width: D, labels: zeros, groups: B,
                                          groupSize: C)
        case .ablation:
            // Per candidate: score([z_t^c; z̄_i]) and score([z̄_t; z_i^c]), z̄ over the positive pairs.
            let means = Self.globalMeans(cls, rows: B, stride: C, width: D, reduction)
            let head = ablationScore!
            sT = Self.labelProbabilitySum(head.forward(student, ablated(cls, rows: P, width: D, means: means, replace: 1), rows: P),
                                          groups: B, classes: 1, groupSize: C, labels: zeros)
            sI = Self.labelProbabilitySum(head.forward(student, ablated(cls, rows: P, width: D, means: means, replace: 0), rows: P),
                                          groups: B, classes: 1, groupSize: C, labels: zeros)
        }

        let globalSamples = reduction.counts([Double(B)])[0]
        let loss = zeros.withUnsafeBufferPointer {
            Losses.crossEntropy(logits: scores, labels: $0.baseAddress!, gradient: dLogits.ensure(P), rows: B,
                                classes: C, divisor: globalSamples)
        }
        laps.lap("heads + losses (forward)")
        MemoryLedger.chargeTo("backward (activation gradients)")
        if computeGradients {
            let dc = dCls.zeroed(P * 2 * D)
            score.backward(student, dLogits.pointer, dx: dc)
            pairFusion.beginBackward()
            pairFusion.poolBackward(student, dc)
            backwardThroughEncoders(student, params: params, fusion: pairFusion, text: text, vision: vision,
                                    report: gradientsReady) { dpt, dpi in
                // Each pair's input gradients summed into its text's and its image's.
                let dzt = dTextEncoded.zeroed(T * L * D), dzi = dImageEncoded.zeroed(B * Li * D)
                for pair in 0..<P {
                    let n = pair / C, t = Int(batch.candidates[pair])
                    Elementwise.accumulate(dzi + n * Li * D, dpi + pair * Li * D, count: Li * D)
                    Elementwise.accumulate(dzt + t * L * D, dpt + pair * L * D, count: L * D)
                }
                return (UnsafePointer(dzt), UnsafePointer(dzi))
            }
        }
        laps.lap("backward")
        defer { laps.lap("heads + losses (forward)"); MemoryLedger.chargeTo("other") }
        return result(loss: loss, sumText: sT, sumImage: sI, reduction)
    }
}

#if canImport(Glibc)
import Glibc
#endif
