import RealModule

/// Global-norm gradient clipping (PyTorch's clip_grad_norm_) over the trained segments of
/// a gradient arena: ‖g‖ is taken over all segments together; if `maxNorm` is given and
/// ‖g‖ > maxNorm, every gradient in them is scaled by maxNorm / (‖g‖ + 1e-6). The training
/// step measures the norm (`gradientNorm`) and the fused optimizer pass applies the factor
/// (`clipScale`) as it reads each gradient, so no pass of its own scales the arena.

/// ‖g‖₂ over all `segments` together.
public func gradientNorm(of gradients: UnsafePointer<Float>, segments: [Range<Int>]) -> Double {
    segments.reduce(0.0) { squares, segment in
        let n = gradientNorm(gradients + segment.lowerBound, count: segment.count)
        return squares + n * n
    }.squareRoot()
}

/// The factor clipping multiplies every gradient by: maxNorm / (‖g‖ + 1e-6) when ‖g‖ >
/// maxNorm, else exactly 1.
public func clipScale(norm: Double, maxNorm: Float?) -> Float {
    guard let maxNorm, norm > Double(maxNorm) else { return 1 }
    return Float(Double(maxNorm) / (norm + 1e-6))
}

/// ‖g‖₂ accumulated in Double.
public func gradientNorm(_ gradients: UnsafePointer<Float>, count: Int) -> Double {
    var sum = 0.0
    var i = 0
    // Blocks of Float partial sums keep the loop vectorisable and the total accurate.
    while i < count {
        let end = min(i + 4096, count)
        var partial: Float = 0
        for j in i..<end { partial = Relaxed.multiplyAdd(gradients[j], gradients[j], partial) }
        sum += Double(partial)
        i = end
    }
    return sum.squareRoot()
}
