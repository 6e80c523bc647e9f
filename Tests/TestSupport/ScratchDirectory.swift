import Foundation

/// Directories for a suite's shared fixtures (data sets, tokenizers, runs reused across its
/// tests), under the system temporary directory and removed when the test process exits —
/// after failed expectations too, since swift-testing records them and carries on. (A
/// suite's static fixtures outlive every test, so no test can remove them; before this the
/// multi-rank suites left ~1 GB in /tmp per `swift test`.)
public enum ScratchDirectory {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var created: [URL] = []

    /// A new empty directory named `prefix-UUID`, removed at exit.
    public static func make(_ prefix: String) -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        lock.withLock {
            if created.isEmpty { atexit { ScratchDirectory.removeAll() } }
            created.append(url)
        }
        return url
    }

    private static func removeAll() {
        lock.withLock {
            for url in created { try? FileManager.default.removeItem(at: url) }
            created = []
        }
    }
}
