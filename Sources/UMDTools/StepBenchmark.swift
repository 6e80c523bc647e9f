import Collective
import Foundation
import UMDDistributed
import UMDCore
import UMDData
import UMDModel

/// `umd-mpirun bench step`: samples/s of a full MR-Pretrain step (the `TrainingStep` that
/// training runs: forward, backward, bucketed gradient sync, AdamW, EMA) on synthetic inputs.
///
/// Run under mpirun with R ranks. Phase 1: every rank trains alone at the same time (so the
/// machine is as loaded as in phase 2) — the 1-rank baseline. Phase 2: the ranks train
/// together. Weak-scaling efficiency = phase-2 samples/s ÷ (R × phase-1 samples/s). The
/// gradient-sync bandwidth of phase 2 is printed next to a plain MPI_Allreduce of the same
/// bytes measured in the same run.
public enum StepBenchmark {
    /// bench step's defaults where they differ from training's: the small preset, 5 timed
    /// steps, a VQA-like classifier of 100 answers when fine-tuning, model seed 1.
    public static var defaults: RunConfiguration {
        var c = RunConfiguration()
        c.preset = "small"
        c.steps = 5
        c.answers = 100
        c.seed = 1
        return c
    }

    /// `samples` synthetic samples for `model`'s stage at the given shapes, assembled as
    /// training assembles them (bench step and `--dry-run` run steps on them).
    static func syntheticBatch(_ model: StageModel, samples: Int, imageSize H: Int, textLength L: Int, vocabularySize V: Int,
                               classes: Int, seed: UInt64) throws -> StepBatch {
        let source = InMemoryBatchSource.synthetic(globalBatch: samples, imageSize: H, textLength: L, vocabularySize: V,
                                                   classes: classes, seed: seed)
        let assembler = BatchAssembler(seed: seed, imageSize: H, textLength: L, patchSize: model.config.patchSize,
                                       vocabularySize: V)
        return try assembler.batch(model.batchKind, source: source, positions: Array(0..<samples), step: 0, epoch: 0)
    }

    /// A linear schedule of `steps` at the configuration's dropout, for steps that are timed,
    /// not trained.
    static func stepSettings(_ config: RunConfiguration, steps: Int) -> StepSettings {
        var settings = StepSettings(schedule: LearningRateSchedule(shape: .linear, totalSteps: steps))
        settings.dropout = config.dropout
        return settings
    }

    /// Times the step `given` describes (`--stage pretrain`: MR-Pretrain; `finetune`: GM-Coord
    /// fine-tuning with a classifier head) at `--local-batch` samples per rank. `--phases`
    /// (the profiler) also prints where the time of the ranks-together steps went, and the
    /// matmul utilisation (FLOPs from the model's shapes ÷ step time ÷ same-run sgemm rate).
    public static func run(_ given: RunConfiguration, world: Communicator) throws {
        var given = given
        switch given.stage {
        case .pretrain:
            // Each rank pairs ITM images within its own synthetic batch (MODEL_SPEC.md section 5: G >= 2).
            if given.localBatch < 2 {
                throw RunError("--stage pretrain needs --local-batch of at least 2 (ITM pairs within each rank's batch)")
            }
        case .finetune: given.headKind = .vqa
        case .calib: throw RunError("bench step times pretrain or finetune steps; --stage calib is not one of them")
        }
        let config = try given.atPresetSizes()
        let preset = try config.presetValue, localBatch = config.localBatch, steps = config.steps
        let showPhases = config.profile, matmul = config.matmul
        let R = world.size
        ThreadBudget.configure()
        Matmul.backend = try matmul.makeBackend()
        let vocabulary = config.vocabularySize ?? 1000
        let finetuning = config.stage == .finetune
        let factory = RunFactory(config)
        let model = try factory.model(classes: finetuning ? config.answers : 0, vocabularySize: vocabulary, world: world)
        let segments = model.trainedSegments
        let trainedBytes = segments.reduce(0) { $0 + $1.count } * 4
        // Every rank trains on its own synthetic batch, through the same assembler as training.
        let batch = try syntheticBatch(model, samples: localBatch, imageSize: preset.imageSize, textLength: preset.textLength,
                                       vocabularySize: vocabulary, classes: config.answers, seed: UInt64(world.rank))
        let settings = stepSettings(config, steps: steps + 1)
        // The matmul work of one step on this rank, from the shapes (MODEL_SPEC.md).
        let flopsPerStep: Double, recomputedFlops: Double
        switch batch {
        case .pretrain(let b):
            let selected = b.mlmLabels.reduce(0) { $0 + ($1 != Losses.ignoreLabel ? 1 : 0) }
            let itm = config.stage == .pretrain
            flopsPerStep = StepFlops.pretrain(model.config, batch: localBatch, textLength: preset.textLength,
                                              selectedTokens: selected, itm: itm)
            recomputedFlops = StepFlops.recomputedScores(model.config, batch: localBatch, textLength: preset.textLength,
                                                         pretrain: true, itm: itm)
        default:
            flopsPerStep = StepFlops.finetuneClassifier(model.config, batch: localBatch, textLength: preset.textLength,
                                                        answers: config.answers)
            recomputedFlops = StepFlops.recomputedScores(model.config, batch: localBatch, textLength: preset.textLength,
                                                         pretrain: false, itm: false)
        }
        // Same-run baseline: every rank runs sgemm at once, as they will run the steps.
        try world.barrier()
        let sgemmBefore = try world.allreduce(BLAS.sgemmRate(), op: .min)

        func phase(world w: Communicator?, steps: Int = steps, profiled: Bool = false) throws
            -> (seconds: Double, wait: Double, reduceSeconds: Double, bytes: Int,
                phases: [(name: String, seconds: Double)], pageFaults: Int) {
            // Errors are never dropped: a failed allreduce aborts the job, as in training.
            let trainingStep = try factory.step(model, world: w, during: { "bench step, the allreduce of loss sums" },
                                                settings: settings)
            defer { trainingStep.stop() }
            var wait = 0.0, reduceSeconds = 0.0, bytes = 0, faults = 0
            var start = Date()
            for step in 0...steps {
                if step == 1 {   // step 0 warms up
                    start = Date(); wait = 0; reduceSeconds = 0; bytes = 0
                    Profiler.reset()
                    Profiler.enabled = profiled
                    KernelProfile.flops = 0
                    faults = minorPageFaults()
                }
                try trainingStep.run(batch, step: step)
                wait += trainingStep.communicationWaitSeconds
                reduceSeconds += trainingStep.reduceSeconds
                bytes += trainingStep.reducedBytes
            }
            Profiler.enabled = false
            return (Date().timeIntervalSince(start), wait, reduceSeconds, bytes, Profiler.table,
                    minorPageFaults() - faults)
        }

        try world.barrier()
        // Every rank at once, no communication. (A sharded optimizer gathers its shares even
        // here, so its "alone" figure includes that allgather.)
        let alone = try phase(world: nil)
        let aloneSeconds = try world.allreduce(alone.seconds, op: .max)
        try world.barrier()
        KernelProfile.countingFlops = true
        let together = try phase(world: world, profiled: showPhases)
        KernelProfile.countingFlops = false
        let countedFlops = KernelProfile.flops / Double(steps)
        let togetherSeconds = try world.allreduce(together.seconds, op: .max)
        // The baseline again right after the timed steps: on a shared host the rate can move
        // within minutes; the utilisation uses the mean and says when the two disagree.
        try world.barrier()
        let sgemmAfter = try world.allreduce(BLAS.sgemmRate(), op: .min)
        let sgemmBaseline = (sgemmBefore + sgemmAfter) / 2
        let baselineDrift = abs(sgemmAfter - sgemmBefore) / sgemmBaseline
        // The fastest backend this CPU runs, by the same square product on all ranks at once:
        // the utilisation against it says what the step leaves on the table here.
        var fastest = (choice: matmul, rate: sgemmBaseline)
        if showPhases {
            let chosen = Matmul.backend
            for other in MatmulChoice.allCases where other != matmul && (other != .bf16 || OneDNNBackend.hasBFloat16) {
                Matmul.backend = try other.makeBackend()
                try world.barrier()
                let rate = try world.allreduce(BLAS.sgemmRate(), op: .min)
                if rate > fastest.rate { fastest = (other, rate) }
            }
            Matmul.backend = chosen
        }
        // Kernel families and sgemm shapes, timed call by call in steps of their own (the
        // clock reads would blur the phase table): is the gap to the sgemm rate outside the
        // matrix products, or sgemm itself running slower on the step's shapes?
        var kernelSeconds: [Double] = [], shapes: [(KernelProfile.GemmShape, (calls: Int, seconds: Double))] = []
        var kernelElements: [KernelProfile.KernelWidth: (count: Int, seconds: Double)] = [:]   // per step
        var shapeRates: [(choice: MatmulChoice, rate: Double)] = []
        var shapesAlone: [KernelProfile.GemmShape: Double] = [:]   // the run's backend, each shape alone, per step
        let profiledSteps = 2
        if showPhases {
            try world.barrier()
            KernelProfile.reset()
            KernelProfile.enabled = true
            let profiled = try phase(world: world, steps: profiledSteps)
            KernelProfile.enabled = false
            kernelSeconds = KernelProfile.seconds.map { $0 / Double(profiledSteps + 1) } + [profiled.seconds / Double(profiledSteps)]
            kernelElements = KernelProfile.elements.mapValues { ($0.count / (profiledSteps + 1), $0.seconds / Double(profiledSteps + 1)) }
            shapes = KernelProfile.gemmShapes.map { ($0.key, $0.value) }
            // Every backend on this step's own products (per step: the profiled calls / steps),
            // all ranks at once.
            let perStep = shapes.map { ($0.0, max(1, $0.1.calls / (profiledSteps + 1))) }
            for choice in MatmulChoice.allCases where choice != .bf16 || OneDNNBackend.hasBFloat16 {
                try world.barrier()
                let measured = try StepShapeRates.rate(choice, shapes: perStep)
                shapeRates.append((choice, try world.allreduce(measured.rate, op: .min)))
                if choice == matmul { shapesAlone = measured.secondsPerStep }
            }
        }
        let waitShare = try world.allreduce(together.wait, op: .max) / togetherSeconds

        // The engine alone: every bucket launched at once, nothing else running.
        let engine = try GradientSynchronizer(world: world, gradients: model.student.grads, segments: segments,
                                              bucketBytes: Int(config.bucketMB * 1_048_576), precision: config.syncPrecision,
                                              watchdog: nil)
        defer { engine.stop() }
        engine.beginStep(0); try engine.finish()
        try world.barrier()
        let engineStart = Date()
        for r in 1...3 { engine.beginStep(r); try engine.finish() }
        let engineSeconds = try world.allreduce(Date().timeIntervalSince(engineStart) / 3, op: .max)

        // A plain allreduce of the same bytes, same run.
        var plain = [Float](repeating: 1, count: trainedBytes / 4)
        try world.allreduce(&plain, op: .sum)
        try world.barrier()
        let plainStart = Date()
        let repeats = 3
        for _ in 0..<repeats { try world.allreduce(&plain, op: .sum) }
        let plainSeconds = try world.allreduce(Date().timeIntervalSince(plainStart) / Double(repeats), op: .max)
        let syncRate = together.reduceSeconds > 0 ? Double(together.bytes) / together.reduceSeconds : 0
        let plainRate = Double(trainedBytes) / plainSeconds

        if world.rank == 0 {
            let perStepAlone = Double(localBatch * steps) / aloneSeconds
            let perStepTogether = Double(localBatch * R * steps) / togetherSeconds
            let momentsMiB = Double(8 * model.optimizer.owned.count) / 1048576
            print("# umd step benchmark: \(config.stage.rawValue)\(finetuning ? " (GM-Coord on)" : ""), preset \(preset.name), "
                  + "local batch \(localBatch), \(steps) timed steps, buckets \(config.bucketMB) MB, gradients sent as "
                  + "\(config.syncPrecision.rawValue), "
                  + "matmul \(matmul.description), OpenBLAS threads \(BLAS.threadCount), "
                  + "\(String(format: "%.1f", Double(trainedBytes) / 1048576)) MiB of gradients")
            print(String(format: "optimizer: %@, AdamW moments on rank 0 %.1f MiB, peak resident memory of rank 0 %.2f GB",
                         model.sharding == nil ? "replicated" : "sharded over \(R) ranks (ZeRO-1)", momentsMiB,
                         Double(peakResidentBytes()) / 1e9))
            print(String(format: "1 rank (each rank alone, all at once): %8.2f samples/s per rank (%.1f ms/step)",
                         perStepAlone, aloneSeconds / Double(steps) * 1000))
            print(String(format: "%d ranks together:                     %8.2f samples/s (%.1f ms/step)", R, perStepTogether,
                         togetherSeconds / Double(steps) * 1000))
            if showPhases {
                // Rank 0's phases while the ranks train together; the rest of the step is data
                // (none here: the batch is in memory) and bookkeeping.
                let total = together.seconds
                print("where a step's time goes (rank 0, ranks together, per step):")
                for line in Profiler.lines(together.phases, steps: steps, total: total) { print("  " + line) }
                let stepSeconds = togetherSeconds / Double(steps)
                let achieved = flopsPerStep / stepSeconds / 1e9
                print(String(format: "matmul FLOPs per step and rank (from the shapes): %.6g GFLOP + %.6g GFLOP of attention "
                             + "scores backward recomputes (sgemm calls made: %.6g GFLOP)",
                             flopsPerStep / 1e9, recomputedFlops / 1e9, countedFlops / 1e9))
                // A buffer touched fresh every step would show here (the kernel zeroes each new page).
                print(String(format: "page faults per step after the first (rank 0, all threads): %.1f",
                             Double(together.pageFaults) / Double(steps)))
                print(String(format: "matmul utilisation: %.2f GFLOP/s per rank = %.1f %% of same-run sgemm (%.2f GFLOP/s, "
                             + "2048^3, %d thread%@, all ranks at once; %.2f before the steps, %.2f after)", achieved,
                             100 * achieved / sgemmBaseline, sgemmBaseline, BLAS.threadCount, BLAS.threadCount == 1 ? "" : "s",
                             sgemmBefore, sgemmAfter))
                print(String(format: "  against the fastest backend on this CPU (%@, %.2f GFLOP/s on the same square): %.1f %%",
                             fastest.choice.rawValue, fastest.rate, 100 * achieved / fastest.rate))
                if let best = shapeRates.max(by: { $0.rate < $1.rate }) {
                    print("matmul rate on this step's own products (each shape alone, as often as a step makes it): "
                          + shapeRates.map { String(format: "%@ %.2f", $0.choice.rawValue, $0.rate) }.joined(separator: ", ")
                          + " GFLOP/s")
                    print(String(format: "matmul utilisation against the fastest backend on the step's products (%@, "
                                 + "%.2f GFLOP/s): %.1f %% (target >= 85 %%)", best.choice.rawValue, best.rate,
                                 100 * achieved / best.rate))
                }
                if baselineDrift > 0.05 {
                    print(String(format: "warning: the sgemm baseline moved %.0f %% during the run (a busy or shared "
                                 + "host): the utilisation is unreliable, run again", 100 * baselineDrift))
                }
                printKernelProfile(kernelSeconds: kernelSeconds, kernelElements: kernelElements, shapes: shapes,
                                   steps: profiledSteps + 1, sgemmRate: sgemmBaseline * 1e9, aloneSeconds: shapesAlone)
                printMemory(model, localBatch: localBatch)
            }
            if R > 1 {
                print(String(format: "weak-scaling efficiency 1 -> %d ranks:  %7.1f %%  (target >= 85 %%)", R,
                             100 * perStepTogether / (Double(R) * perStepAlone)))
                print(String(format: "step time waiting on communication:    %7.1f %%", 100 * waitShare))
                let engineRate = Double(trainedBytes) / engineSeconds
                print(String(format: "plain MPI_Allreduce of the %.1f MiB:  %7.2f GB/s", Double(trainedBytes) / 1048576,
                             plainRate / 1e9))
                print(String(format: "gradient sync alone (all buckets):     %7.2f GB/s = %.1f %% of plain (target >= 90 %%)",
                             engineRate / 1e9, 100 * engineRate / plainRate))
                print(String(format: "gradient sync overlapped with backward: %6.2f GB/s = %.1f %% of plain (cores shared with compute)",
                             syncRate / 1e9, 100 * syncRate / plainRate))
            }
        }
    }
}

/// The kernel families' share of a step (rank 0, `steps` steps' totals, the last entry the
/// profiled steps' wall time per step) and the sgemm shapes that lose the most time against
/// the large-square rate `sgemmRate` (FLOP/s).
private func printKernelProfile(kernelSeconds: [Double], kernelElements: [KernelProfile.KernelWidth: (count: Int, seconds: Double)],
                                shapes: [(KernelProfile.GemmShape, (calls: Int, seconds: Double))], steps: Int,
                                sgemmRate: Double, aloneSeconds: [KernelProfile.GemmShape: Double]) {
    guard let stepSeconds = kernelSeconds.last, stepSeconds > 0 else { return }
    print("kernel families (rank 0, timed call by call; per step):")
    for family in KernelProfile.Family.allCases {
        let seconds = kernelSeconds[family.rawValue]
        let elements = kernelElements.reduce(0) { $0 + ($1.key.kernel.family == family ? $1.value.count : 0) }
        // Time per element touched: which element-wise family is far from its floor.
        let perElement = elements > 0
            ? String(format: "  %7.2f M elements  %5.3f ns each", Double(elements) / 1e6, seconds * 1e9 / Double(elements)) : ""
        print("  " + family.name.padding(toLength: 40, withPad: " ", startingAt: 0)
              + String(format: "%9.1f ms  %5.1f %%", seconds * 1000, 100 * seconds / stepSeconds) + perElement)
    }
    let gemmFlops = shapes.reduce(0.0) { $0 + $1.0.flops * Double($1.1.calls) } / Double(steps)
    let gemmSeconds = kernelSeconds[KernelProfile.Family.gemm.rawValue]
    print(String(format: "sgemm inside the step: %.2f GFLOP/s = %.1f %% of the 2048^3 rate (the ceiling of the utilisation "
                 + "line without any non-matmul work)", gemmFlops / gemmSeconds / 1e9, 100 * gemmFlops / gemmSeconds / sgemmRate))
    // Time lost per shape = its seconds − what its FLOPs take at the large-square rate.
    let lost = shapes.map { shape, cost in
        (shape, cost, (cost.seconds - Double(cost.calls) * shape.flops / sgemmRate) / Double(steps))
    }.sorted { $0.2 > $1.2 }
    print("sgemm shapes losing the most time against that rate (per step):")
    for (shape, cost, lostSeconds) in lost.prefix(8) {
        let rate = shape.flops * Double(cost.calls) / cost.seconds
        print(String(format: "  %@ m %5d n %5d k %5d  %5d calls  %7.1f ms  %6.1f GFLOP/s  lost %6.1f ms",
                     shape.label, shape.m, shape.n, shape.k, cost.calls / steps, cost.seconds / Double(steps) * 1000,
                     rate / 1e9, lostSeconds * 1000))
    }
    // Inside the step against the same products alone (same backend, compact operands, warm
    // caches): what the step's surroundings cost the products — cold operands, strided views,
    // accumulation into C — apart from what the shapes themselves reach.
    guard !aloneSeconds.isEmpty else { return }
    // Per shape and step: calls, seconds inside the step, seconds alone (a shape not measured alone counts as unslowed).
    let inStep = shapes.map { shape, cost in
        let seconds = cost.seconds / Double(steps)
        return (shape: shape, calls: cost.calls / steps, seconds: seconds, alone: aloneSeconds[shape] ?? seconds)
    }
    let alone = inStep.reduce(0.0) { $0 + $1.alone }, together = inStep.reduce(0.0) { $0 + $1.seconds }
    print(String(format: "the step's products inside the step %.1f ms, the same products alone %.1f ms (per step; "
                 + "%.1f %%): the shapes slowed most by the step around them:", together * 1000, alone * 1000,
                 100 * alone / together))
    for s in inStep.sorted(by: { $0.seconds - $0.alone > $1.seconds - $1.alone }).prefix(8) {
        print(String(format: "  %@ m %5d n %5d k %5d  %5d calls  in the step %7.1f ms, alone %7.1f ms  (+%.1f ms)",
                     s.shape.label, s.shape.m, s.shape.n, s.shape.k, s.calls, s.seconds * 1000, s.alone * 1000,
                     (s.seconds - s.alone) * 1000))
    }
    // What the rest of the step leaves reachable: the utilisation against the products' own rate
    // is about (products alone) ÷ (step), so with every product at its rate alone and the other
    // work as measured it would be alone ÷ (step − together + alone). A target above this line
    // needs less non-matmul work (fusion, less recomputing), not faster products.
    let rest = stepSeconds - together
    print(String(format: "with every product at its rate alone, the rest of the step (%.1f ms: element-wise, optimizer, "
                 + "heads, sync) as measured: utilisation ~%.1f %% (the profiled step; its timing adds a little)",
                 rest * 1000, 100 * alone / (rest + alone)))
    // This step's ceiling: every product at its rate alone and, on top, every element-wise
    // kernel at its rate in L1 (its arithmetic alone, no memory traffic, at the step's own row
    // widths). Fusing element-wise work into the products can save its memory traffic, not its
    // arithmetic. What stays as measured: the optimizer, the heads' and losses' own loops, embeddings.
    // First each element-wise kernel at each row width: its time in the step and at its rate in L1
    // (the floors need only L1's worth of operands). Kernels without a floor here (tanh, the
    // embeddings: microseconds a step) stay in the rest as measured.
    let floors = ElementwiseBenchmark(largest: 4096)
    print("element-wise kernels in the step against their rate in L1 (bench elementwise), per step:")
    var elementwiseMeasured = 0.0, elementwiseFloor = 0.0
    for (key, cost) in kernelElements.sorted(by: { $0.value.seconds > $1.value.seconds }) {
        let inL1 = floors.nanosecondsPerElement(key.kernel, width: key.width, inL1: true, seconds: 0.05)
        let floorSeconds = Double(cost.count) * 1e-9 * (inL1 ?? 0)
        if inL1 != nil { elementwiseMeasured += cost.seconds; elementwiseFloor += floorSeconds }
        let label = key.kernel.rawValue + (key.width > 0 ? ", rows of \(key.width)" : "")
        print("  " + label.padding(toLength: 36, withPad: " ", startingAt: 0)
              + String(format: "%8.2f M elements  %6.1f ms  %5.3f ns each", Double(cost.count) / 1e6, cost.seconds * 1000,
                       cost.seconds * 1e9 / Double(max(1, cost.count)))
              + (inL1.map { String(format: "  in L1 %5.3f ns: %6.1f ms", $0, floorSeconds * 1000) } ?? ""))
    }
    let restAtFloors = max(0, rest - elementwiseMeasured + elementwiseFloor)
    print(String(format: "and every element-wise kernel at its rate in L1 (bench elementwise; %.1f ms of element-wise work "
                 + "in the step would take %.1f ms): utilisation ~%.1f %% — this step's ceiling without fusing "
                 + "element-wise work into the products or changing its arithmetic",
                 elementwiseMeasured * 1000, elementwiseFloor * 1000, 100 * alone / (restAtFloors + alone)))
}

/// Where rank 0's memory goes (issue 28): the arenas (fixed: they do not grow with the batch)
/// and, from `MemoryLedger`, the activation and scratch buffers of each part of the step, with
/// their share per sample of the local batch.
private func printMemory(_ model: StageModel, localBatch: Int) {
    func mib(_ bytes: Int) -> String { String(format: "%9.1f MiB", Double(bytes) / 1048576) }
    let student = model.student.count * 4
    let fixed: [(String, Int)] = [("parameters (student)", student), ("gradients", model.student.hasGradients ? student : 0),
                                  ("AdamW moments (this rank's share)", model.optimizer.owned.count * 8),
                                  ("EMA teacher", (model.teacher?.count ?? 0) * 4)] + MemoryLedger.fixedTable
    print("memory of rank 0 — fixed (arenas, weight copies; the same at every batch size):")
    for (name, bytes) in fixed where bytes > 0 {
        print("  " + name.padding(toLength: 40, withPad: " ", startingAt: 0) + mib(bytes))
    }
    let activations = MemoryLedger.table
    let total = activations.reduce(0) { $0 + $1.bytes }
    print("memory of rank 0 — activations and scratch kept between steps (local batch \(localBatch); per sample):")
    for (owner, bytes) in activations {
        print("  " + owner.padding(toLength: 40, withPad: " ", startingAt: 0) + mib(bytes) + "  " + mib(bytes / max(1, localBatch)))
    }
    print("  " + "all activations and scratch".padding(toLength: 40, withPad: " ", startingAt: 0) + mib(total) + "  "
          + mib(total / max(1, localBatch)))
    print("  " + "peak resident (the process)".padding(toLength: 40, withPad: " ", startingAt: 0) + mib(peakResidentBytes()))
}

/// Minor page faults of this process so far (getrusage).
func minorPageFaults() -> Int {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return usage.ru_minflt
}
