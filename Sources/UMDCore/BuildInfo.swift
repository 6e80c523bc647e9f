import Foundation

/// Which umd made a file: the version, and the commit the program was built from — written
/// by `make build`/`make release` into `umd-build-info` beside the executable (a file, not a
/// compile flag, so a new commit does not rebuild every module). Recorded in config.json,
/// checkpoint manifests and weights metadata; printed by `umd-mpirun --version`.
public enum BuildInfo {
    public static let version = "0.7.0"

    /// The commit (with "-dirty" when the tree had uncommitted changes), or "unknown" for a
    /// binary built without the Makefile or moved without its `umd-build-info`.
    public static let commit: String = {
        guard let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") else {
            return "unknown"
        }
        let file = URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("umd-build-info")
        guard let text = try? String(contentsOf: file, encoding: .utf8) else { return "unknown" }
        let commit = text.trimmingCharacters(in: .whitespacesAndNewlines)
        return commit.isEmpty ? "unknown" : commit
    }()

    public static var description: String { "umd \(version) (commit \(commit))" }
}
