import UMDCore

/// The fastest of repeated runs of `body`, in seconds: at least `repeats` runs and `seconds`
/// of timed runs in all. A busy host only ever adds time, so the fastest run is the steadiest
/// reading (a mean lets one disturbed run move it by several percent).
func fastestSeconds(repeats: Int = 5, atLeast seconds: Double, _ body: () -> Void) -> Double {
    var runs = 0, elapsed = 0.0, fastest = Double.infinity
    while runs < repeats || elapsed < seconds {
        let start = Profiler.now()
        body()
        let run = Profiler.now() - start
        fastest = min(fastest, run)
        elapsed += run
        runs += 1
    }
    return fastest
}
