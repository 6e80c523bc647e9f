import Foundation

/// Generated data sets and a tokenizer learnt from them: what most end-to-end suites start
/// from, made once per directory with the program itself (`synth`, `tokenizer train`).
public enum SyntheticFixture {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// `root/<dir>` for each (kind, dir) from `umd-mpirun synth --kind kind`, and `root/tok`
    /// learnt from all of them (`--<kind> root/<dir>`). Nothing is done when `root/tok`
    /// already holds a vocabulary (the suite's earlier test made it).
    public static func make(in root: URL, datasets: [(kind: String, dir: String)], count: Int = 24, imageSize: Int = 32,
                            vocabularySize: Int = 300) throws {
        let tokenizer = root.appendingPathComponent("tok")
        if FileManager.default.fileExists(atPath: tokenizer.appendingPathComponent("vocab.json").path) { return }
        var sources: [String] = []
        for (kind, dir) in datasets {
            let out = root.appendingPathComponent(dir).path
            let r = try MPIJob.runDirect(["synth", "--kind", kind, "--out", out, "--count", String(count),
                                          "--image-size", String(imageSize)])
            guard r.exitCode == 0 else { throw Failure(description: "synth --kind \(kind): \(r)") }
            sources += ["--\(kind)", out]
        }
        let t = try MPIJob.runDirect(["tokenizer", "train"] + sources + ["--vocab-size", String(vocabularySize),
                                                                        "--out", tokenizer.path])
        guard t.exitCode == 0 else { throw Failure(description: "tokenizer train: \(t)") }
    }
}
