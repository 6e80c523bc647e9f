extension PretrainObjective {
    /// The counts this rank's batch contributes to the losses' divisors (MODEL_SPEC.md
    /// section 10a): selected MLM tokens, non-pad tokens, samples, masked patches, FeaMIM
    /// tokens. Known from the batch alone, so a step can sum them before any forward pass.
    public static func localCounts(_ batch: PretrainBatch, patchCount N: Int) -> [Double] {
        let B = batch.batch, K = N / 4
        let mlm = batch.mlmLabels.reduce(0) { $0 + ($1 != Losses.ignoreLabel ? 1 : 0) }
        let nonPad = batch.attention.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }
        return [Double(mlm), Double(nonPad), Double(B), Double(B * (N - K)), Double(B * (1 + K))]
    }
}

/// Global-batch losses of one step (MODEL_SPEC.md section 6).
public struct PretrainLosses: Sendable, Equatable {
    public var mim = 0.0, mlm = 0.0, feaMIM = 0.0, feaMLM = 0.0, itm = 0.0, total = 0.0
}

/// Which losses contribute, and with which weights (for tests that train one loss alone).
public struct LossWeights: Sendable, Equatable {
    public var mim: Float = 1, mlm: Float = 1, feaMIM: Float = 1, feaMLM: Float = 1, itm: Float = 1
    public init() {}

    /// The objectives' names, as `--objectives` and the metrics call them (ITM: pretraining only).
    public static func objectives(itm: Bool) -> [String] { ["mim", "mlm", "feamim", "feamlm"] + (itm ? ["itm"] : []) }

    /// Weight 1 for the named objectives, 0 for the others.
    public static func only(_ names: [String]) -> LossWeights {
        var w = LossWeights()
        w.mim = names.contains("mim") ? 1 : 0; w.mlm = names.contains("mlm") ? 1 : 0
        w.feaMIM = names.contains("feamim") ? 1 : 0; w.feaMLM = names.contains("feamlm") ? 1 : 0
        w.itm = names.contains("itm") ? 1 : 0
        return w
    }
    public static func only(_ name: String) -> LossWeights { only([name]) }
}

/// MR-Pretrain (three passes, five losses) and TD-Calib (passes 1–2, four losses):
/// forward, losses, and backward into the student's gradient arena.
///
/// L = (1 − α)(L_MIM + L_MLM) + α (L_FeaMIM + L_FeaMLM) [+ L_ITM].
public final class PretrainObjective {
    public let params: UMDParameters
    public var alpha: Float = 0.5
    /// False for TD-Calib (no ITM pass, no ITM loss).
    public let includeITM: Bool
    /// Extra per-loss weights on top of α (1 in training; tests switch losses off).
    public var weights = LossWeights()
    /// Called during backward with an arena offset below which every gradient is final, so
    /// gradient averaging can start while backward goes on.
    public var gradientsReady: ((Int) -> Void)?

    // Pass 1: student, masked.  Pass 2: teacher, unmasked.  Pass 3: student, unmasked (ITM).
    // All three run on one stack of layers, one after the other (issue 28): the teacher's
    // pass first (it has no backward; the losses keep only its fea.* targets), then pass 3
    // and its backward (only the ITM loss reads pass 3), then pass 1, its heads and its
    // backward. So the step keeps the activations of one pass, not three. The gradients add
    // up in the order they always did (pass 3's, then pass 1's): bitwise the same step.
    let vision: VisionEncoder, text: TextEncoder, fusion: FusionModule
    let mim: MIMDecoder, mlm: MLMHead
    let feaText: Linear, feaImage: Linear, teacherFeaText: Linear, teacherFeaImage: Linear
    let itm: Linear

    // Inputs copied from the batch: layers keep pointers to them until backward.
    let pixels = FloatBuffer(), itmPixels = FloatBuffer()          // [B, 3, H, H]
    let ids = IntBuffer(), maskedIDs = IntBuffer()                 // [B, L]
    let keyMask = FloatBuffer()                                    // [B, L] additive
    let keep = IntBuffer()                                         // [B, K]
    // Loss workspaces.
    let patches = FloatBuffer()            // [B, N, CPP]
    let mimTarget = FloatBuffer()          // [B, 1+N, CPP]
    let dMIM = FloatBuffer()               // [B, 1+N, CPP]
    var mimSelected: [Bool] = []           // [B·(1+N)] true at masked patches
    let mlmRows = FloatBuffer()            // [M, D]
    let dMLMRows = FloatBuffer()           // [M, D]
    let dMLMLogits = FloatBuffer()         // [M, V]
    var mlmPositions: [Int] = []           // row index in [B·L] of each selected token
    var mlmTargets: [Int32] = []           // [M]
    var nonPad: [Bool] = []                // [B·L]
    let dFeaText = FloatBuffer()           // [B·L, Dp]
    let teacherImageRows = FloatBuffer()   // [B·(1+K), D]
    let dFeaImage = FloatBuffer()          // [B·(1+K), Dp]
    let dITMLogits = FloatBuffer()         // [B, 2]
    let dPooled = FloatBuffer()            // [B, 2D]
    var itmLabels: [Int32] = []

    /// `--recompute blocks`: every encoder, fusion and decoder block keeps only its output
    /// and is computed again in backward (bitwise the same gradients; less memory, more time).
    public var recompute = false {
        didSet { vision.recompute = recompute; text.recompute = recompute; fusion.recompute = recompute; mim.recompute = recompute }
    }

    public init(params: UMDParameters, includeITM: Bool) {
        self.params = params
        self.includeITM = includeITM
        let c = params.config, D = c.width
        vision = VisionEncoder(params.vision, width: D, patchSize: c.patchSize)
        text = TextEncoder(params.text, width: D)
        fusion = FusionModule(params.fusion, width: D, pooling: .cls)     // ITM reads the poolers (section 3)
        mim = MIMDecoder(params.mim, width: c.preset.decoderWidth)
        mlm = MLMHead(params.mlm, vocabularySize: c.vocabularySize)
        feaText = Linear(params.feaText); feaImage = Linear(params.feaImage)
        teacherFeaText = Linear(params.feaText); teacherFeaImage = Linear(params.feaImage)
        itm = Linear(params.itm)
    }

    /// Runs the step's forward passes and losses and, with `computeGradients`, accumulates
    /// the gradients of this rank's share of the total loss into `student.grads`.
    /// `dropout` applies to the student passes; `passKey` keys their dropout (run seed and step).
    @discardableResult
    public func step(student: ParameterStore, teacher: ParameterStore, batch: PretrainBatch, dropout: Float = 0,
                     passKey: UInt64 = 0, reduction: GlobalReduction = .local,
                     computeGradients: Bool = true) -> PretrainLosses {
        let c = params.config
        let B = batch.batch, L = batch.textLength, H = batch.imageSize, D = c.width
        let grid = H / c.patchSize, N = grid * grid, K = N / 4
        let CPP = c.patchLength, Dp = c.preset.projectionWidth
        precondition(batch.pixels.count == B * 3 * H * H && batch.textIDs.count == B * L
                     && batch.idsKeep.count == B * K, "batch arrays do not match B=\(B), L=\(L), H=\(H)")
        var laps = Profiler.laps()
        MemoryLedger.chargeTo("inputs (pixels, ids, masks)")
        let ctx1 = ForwardContext(dropout: dropout, passKey: CounterRandom.key(passKey, 1), sampleIDs: batch.sampleIDs)
        let ctx3 = ForwardContext(dropout: dropout, passKey: CounterRandom.key(passKey, 3), sampleIDs: batch.sampleIDs)

        // Inputs.
        let px = pixels.ensure(B * 3 * H * H)
        batch.pixels.withUnsafeBufferPointer { px.update(from: $0.baseAddress!, count: B * 3 * H * H) }
        let idp = ids.ensure(B * L), midp = maskedIDs.ensure(B * L), kp = keep.ensure(B * K)
        batch.textIDs.withUnsafeBufferPointer { idp.update(from: $0.baseAddress!, count: B * L) }
        batch.maskedTextIDs.withUnsafeBufferPointer { midp.update(from: $0.baseAddress!, count: B * L) }
        batch.idsKeep.withUnsafeBufferPointer { kp.update(from: $0.baseAddress!, count: B * K) }
        let km = keyMask.ensure(B * L)
        batch.attention.withUnsafeBufferPointer { additiveKeyMask(km, attention: $0.baseAddress!, count: B * L) }

        // Global counts (section 10a): selected MLM tokens, non-pad tokens, samples,
        // masked patches, FeaMIM tokens — from the batch alone, so before any pass.
        mlmPositions.removeAll(keepingCapacity: true)
        mlmTargets.removeAll(keepingCapacity: true)
        for i in 0..<(B * L) where batch.mlmLabels[i] != Losses.ignoreLabel {
            mlmPositions.append(i)
            mlmTargets.append(batch.mlmLabels[i])
        }
        if nonPad.count != B * L { nonPad = [Bool](repeating: false, count: B * L) }
        for i in 0..<(B * L) { nonPad[i] = batch.attention[i] != 0 }
        let counts = reduction.counts(Self.localCounts(batch, patchCount: N))
        let (globalMLM, globalNonPad, globalSamples, globalMasked, globalFeaMIM) =
            (counts[0], counts[1], counts[2], counts[3], counts[4])

        // Pass 2 first: the teacher, full image, original text, no dropout. It keeps only
        // what the losses need from it: its fea.* projections.
        MemoryLedger.chargeTo("passes 2, 3, 1: teacher, student ITM, student masked")
        let zi2 = vision.forward(teacher, pixels: px, batch: B, imageSize: H, keep: nil, keptCount: N)
        let zt2 = text.forward(teacher, ids: idp, keyMask: km, batch: B, length: L, .deterministic)
        fusion.forward(teacher, text: zt2, image: zi2, textMask: km, batch: B, textLength: L, imageLength: 1 + N,
                       .deterministic)
        // The teacher's targets (stop-gradient): fea.text of every token, fea.image of the CLS
        // and the K kept tokens at their original positions (0 and 1 + ids_keep).
        let tText = teacherFeaText.forward(teacher, fusion.textOutput, rows: B * L)
        let zit = fusion.imageOutput
        let gathered = teacherImageRows.ensure(B * (1 + K) * D)
        for b in 0..<B {
            (gathered + b * (1 + K) * D).update(from: zit + b * (1 + N) * D, count: D)
            for j in 0..<K {
                (gathered + (b * (1 + K) + 1 + j) * D).update(from: zit + (b * (1 + N) + 1 + Int(kp[b * K + j])) * D,
                                                              count: D)
            }
        }
        let tImage = teacherFeaImage.forward(teacher, gathered, rows: B * (1 + K))
        laps.lap("teacher forward (no gradients)")

        // Pass 3: student, unmasked, each text with its (possibly swapped) image; the ITM
        // loss and, before pass 1 overwrites the layers' buffers, its backward.
        var lossITM = 0.0
        if includeITM {
            precondition(batch.itmPixels.count == B * 3 * H * H && batch.itmLabels.count == B,
                         "pretraining needs ITM images and labels for every sample")
            MemoryLedger.chargeTo("pass 3: student ITM (its own part)")
            let ipx = itmPixels.ensure(B * 3 * H * H)
            batch.itmPixels.withUnsafeBufferPointer { ipx.update(from: $0.baseAddress!, count: B * 3 * H * H) }
            let zi3 = vision.forward(student, pixels: ipx, batch: B, imageSize: H, keep: nil, keptCount: N)
            let zt3 = text.forward(student, ids: idp, keyMask: km, batch: B, length: L, ctx3)
            fusion.forward(student, text: zt3, image: zi3, textMask: km, batch: B, textLength: L, imageLength: 1 + N,
                           ctx3)
            let itmLogits = itm.forward(student, fusion.pool(student), rows: B)
            itmLabels = batch.itmLabels
            lossITM = itmLabels.withUnsafeBufferPointer {
                Losses.crossEntropy(logits: itmLogits, labels: $0.baseAddress!, gradient: dITMLogits.ensure(B * 2),
                                    rows: B, classes: 2, divisor: globalSamples, scale: weights.itm)
            }
            laps.lap("student forward")
            if computeGradients {
                MemoryLedger.chargeTo("backward (activation gradients)")
                fusion.beginBackward()
                let dp = dPooled.zeroed(B * 2 * D)
                itm.backward(student, dITMLogits.pointer, dx: dp)
                fusion.poolBackward(student, dp)
                // No progress reports: pass 1's backward still adds to every encoder gradient.
                backwardThroughEncoders(student, params: params, fusion: fusion, text: text, vision: vision, report: nil)
                laps.lap("backward")
            }
        }

        // Pass 1: student, masked image and text.
        MemoryLedger.chargeTo("pass 1: student, masked (forward)")
        let zi1 = vision.forward(student, pixels: px, batch: B, imageSize: H, keep: kp, keptCount: K)
        let zt1 = text.forward(student, ids: midp, keyMask: km, batch: B, length: L, ctx1)
        fusion.forward(student, text: zt1, image: zi1, textMask: km, batch: B, textLength: L, imageLength: 1 + K, ctx1)
        laps.lap("student forward")
        MemoryLedger.chargeTo("heads and losses")

        // MIM: predictions at every patch, loss at the masked ones against per-patch
        // normalised pixels.
        let pred = mim.forward(student, fusion.imageOutput, keep: kp, batch: B, keptCount: K, grid: grid)
        let pt = patches.ensure(B * N * CPP)
        patchify(pt, px, batch: B, channels: 3, imageSize: H, patchSize: c.patchSize)
        let target = mimTarget.zeroed(B * (1 + N) * CPP)
        if mimSelected.count != B * (1 + N) { mimSelected = [Bool](repeating: false, count: B * (1 + N)) }
        for b in 0..<B {
            Losses.normalizePatches(target + (b * (1 + N) + 1) * CPP, pt + b * N * CPP, rows: N, width: CPP)
            mimSelected[b * (1 + N)] = false
            for n in 0..<N { mimSelected[b * (1 + N) + 1 + n] = true }
            for j in 0..<K { mimSelected[b * (1 + N) + 1 + Int(kp[b * K + j])] = false }
        }
        let wMIM = (1 - alpha) * weights.mim
        let lossMIM = mimSelected.withUnsafeBufferPointer {
            Losses.meanSquaredError(pred: pred, target: target, gradient: dMIM.ensure(B * (1 + N) * CPP),
                                    rows: B * (1 + N), width: CPP, selected: $0.baseAddress,
                                    divisor: globalMasked, scale: wMIM)
        }

        // MLM at the selected positions only.
        let M = mlmPositions.count
        let zt = fusion.textOutput
        let rows = mlmRows.ensure(max(M, 1) * D)
        for (m, i) in mlmPositions.enumerated() { (rows + m * D).update(from: zt + i * D, count: D) }
        var lossMLM = 0.0
        let wMLM = (1 - alpha) * weights.mlm
        if M > 0 {
            let logits = mlm.forward(student, rows, rows: M)
            lossMLM = mlmTargets.withUnsafeBufferPointer {
                Losses.crossEntropy(logits: logits, labels: $0.baseAddress!,
                                    gradient: dMLMLogits.ensure(M * c.vocabularySize), rows: M,
                                    classes: c.vocabularySize, divisor: globalMLM, scale: wMLM)
            }
        }

        // FeaMLM: student fea.text of every non-pad token against the teacher's.
        let sText = feaText.forward(student, zt, rows: B * L)
        let wFeaMLM = alpha * weights.feaMLM
        let lossFeaMLM = nonPad.withUnsafeBufferPointer {
            Losses.meanSquaredError(pred: sText, target: tText, gradient: dFeaText.ensure(B * L * Dp), rows: B * L,
                                    width: Dp, selected: $0.baseAddress, divisor: globalNonPad, scale: wFeaMLM)
        }

        // FeaMIM: the student's CLS and K kept tokens against the teacher's tokens at the
        // same original positions (tImage, gathered after the teacher's pass).
        let sImage = feaImage.forward(student, fusion.imageOutput, rows: B * (1 + K))
        let wFeaMIM = alpha * weights.feaMIM
        let lossFeaMIM = Losses.meanSquaredError(pred: sImage, target: tImage,
                                                 gradient: dFeaImage.ensure(B * (1 + K) * Dp), rows: B * (1 + K),
                                                 width: Dp, divisor: globalFeaMIM, scale: wFeaMIM)

        laps.lap("heads + losses (forward)")
        MemoryLedger.chargeTo("backward (activation gradients)")
        if computeGradients {
            // Pass 1 backward: every head adds into the fusion outputs' gradients.
            fusion.beginBackward()
            mim.backward(student, dMIM.pointer, dZi: fusion.dImageOutput)
            feaImage.backward(student, dFeaImage.pointer, dx: fusion.dImageOutput)
            feaText.backward(student, dFeaText.pointer, dx: fusion.dTextOutput)
            if M > 0 {
                let dRows = dMLMRows.zeroed(M * D)
                mlm.backward(student, dMLMLogits.pointer, dh: dRows)
                let dzt = fusion.dTextOutput
                for (m, i) in mlmPositions.enumerated() { Elementwise.accumulate(dzt + i * D, dRows + m * D, count: D) }
            }
            backwardThroughEncoders(student, params: params, fusion: fusion, text: text, vision: vision,
                                    report: gradientsReady)
        }
        laps.lap("backward")
        MemoryLedger.chargeTo("other")

        // Global-batch loss values for reporting: each rank's term is (local sum)/(global count).
        let global = reduction.sum([lossMIM, lossMLM, lossFeaMIM, lossFeaMLM, lossITM])
        var losses = PretrainLosses(mim: global[0], mlm: global[1], feaMIM: global[2], feaMLM: global[3],
                                    itm: includeITM ? global[4] : 0)
        let a = Double(alpha)
        losses.total = (1 - a) * (Double(weights.mim) * losses.mim + Double(weights.mlm) * losses.mlm)
            + a * (Double(weights.feaMIM) * losses.feaMIM + Double(weights.feaMLM) * losses.feaMLM)
            + Double(weights.itm) * losses.itm
        laps.lap("heads + losses (forward)")
        return losses
    }
}

/// Backward from the fusion outputs' accumulated gradients through the fusion layers, the
/// text encoder and the vision encoder — the one place backward reports its progress:
/// before each module, every gradient below the module's lowest arena offset is final
/// (`UMDParameters.readyOffsets`). `encoderInputs` turns the fusion's input gradients into
/// the encoders' (retrieval sums each pair's into its text and image; by default they are
/// the same).
func backwardThroughEncoders(_ student: ParameterStore, params: UMDParameters, fusion: FusionModule, text: TextEncoder,
                             vision: VisionEncoder, report: ((Int) -> Void)?,
                             encoderInputs: (_ dText: UnsafePointer<Float>, _ dImage: UnsafePointer<Float>)
                                 -> (text: UnsafePointer<Float>, image: UnsafePointer<Float>) = { ($0, $1) }) {
    let ready = report.map { _ in params.readyOffsets(student) }   // only when someone listens
    if let ready { report?(ready.fusion) }
    fusion.backward(student)
    let d = encoderInputs(fusion.dTextInput.pointer, fusion.dImageInput.pointer)
    if let ready { report?(ready.text) }
    text.backward(student, d.text)
    if let ready { report?(ready.vision) }
    vision.backward(student, d.image)
}
