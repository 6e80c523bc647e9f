import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs the built `umd-mpirun` under `mpirun` (or directly) from a test, with a watchdog.
///
/// Tests never initialise MPI themselves: every multi-rank check is a separate mpirun job.
/// Jobs are serialised process-wide (a lock), because the machines have 2 cores and
/// several oversubscribed jobs at once would only time each other out.
public enum MPIJob {
    public struct Result: Sendable, CustomStringConvertible {
        public let exitCode: Int32
        public let stdout: String
        public let stderr: String
        public let timedOut: Bool
        public let seconds: Double
        /// stdout followed by stderr, for searching messages wherever a rank wrote them.
        public var output: String { stdout + "\n" + stderr }
        public var description: String {
            "exit \(exitCode)\(timedOut ? " (killed by the watchdog)" : "") after \(String(format: "%.1f", seconds)) s\n"
                + "--- stdout\n\(stdout)\n--- stderr\n\(stderr)"
        }
    }

    public enum Failure: Error, CustomStringConvertible {
        case binaryNotFound([String])
        case launchFailed(String)
        public var description: String {
            switch self {
            case .binaryNotFound(let looked):
                return "umd-mpirun not found; looked in: \(looked.joined(separator: ", ")). Build first (swift build) "
                    + "or set UMD_MPIRUN_BINARY."
            case .launchFailed(let why): return "could not start the job: \(why)"
            }
        }
    }

    private static let lock = NSLock()

    /// The environment every job gets: OpenMPI's root permission (CI runs as root), one
    /// OpenBLAS thread per rank, and no inherited MCA settings that could change results.
    public static func environment(extra: [String: String] = [:]) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        env["OPENBLAS_NUM_THREADS"] = "1"
        for (k, v) in extra { env[k] = v.isEmpty ? nil : v }     // "" removes a variable
        return env
    }

    /// The `umd-mpirun` next to the test bundle (SwiftPM puts both in the products directory),
    /// or `UMD_MPIRUN_BINARY`.
    public static func binary() throws -> URL {
        var candidates: [String] = []
        if let explicit = ProcessInfo.processInfo.environment["UMD_MPIRUN_BINARY"] { candidates.append(explicit) }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            candidates.append(dir.appendingPathComponent("umd-mpirun").path)
            dir = dir.deletingLastPathComponent()
        }
        for path in candidates where FileManager.default.isExecutableFile(atPath: path) {
            return URL(fileURLWithPath: path)
        }
        throw Failure.binaryNotFound(candidates)
    }

    static var mpirun: String {
        ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? "mpirun"
    }

    /// `mpirun -np N --oversubscribe umd-mpirun ARGS`, killed after `timeout` seconds.
    public static func run(ranks: Int, _ arguments: [String], timeout: Double = 120,
                           environment extra: [String: String] = [:]) throws -> Result {
        let command = ["-np", String(ranks), "--oversubscribe", try binary().path] + arguments
        return try launch(executable: mpirun, command, timeout: timeout, environment: environment(extra: extra))
    }

    /// A job with extra mpirun options (e.g. a simulated cluster's hostfile and rsh agent).
    public static func run(mpirunOptions: [String], ranks: Int, _ arguments: [String], timeout: Double = 120) throws -> Result {
        let command = mpirunOptions + ["-np", String(ranks), "-x", "OPENBLAS_NUM_THREADS", "-x", "OMPI_ALLOW_RUN_AS_ROOT",
                                       "-x", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", try binary().path] + arguments
        return try launch(executable: mpirun, command, timeout: timeout, environment: environment())
    }

    /// Any program (a script), with the same watchdog and output capture.
    public static func runProgram(_ executable: String, _ arguments: [String], timeout: Double = 60) throws -> Result {
        try launch(executable: executable, arguments, timeout: timeout, environment: environment())
    }

    /// One job whose ranks run different arguments (MPMD): `mpirun -np 1 umd A : -np 1 umd B …`.
    public static func runMPMD(_ perRank: [[String]], timeout: Double = 120) throws -> Result {
        let binary = try binary().path
        var command = ["--oversubscribe"]
        for (i, arguments) in perRank.enumerated() {
            if i > 0 { command.append(":") }
            command += ["-np", "1", binary] + arguments
        }
        return try launch(executable: mpirun, command, timeout: timeout, environment: environment())
    }

    /// The binary alone, no mpirun: MPI's singleton mode (rank 0 of 1).
    public static func runDirect(_ arguments: [String], timeout: Double = 120,
                                 environment extra: [String: String] = [:]) throws -> Result {
        try launch(executable: try binary().path, arguments, timeout: timeout, environment: environment(extra: extra))
    }

    private static func launch(executable: String, _ arguments: [String], timeout: Double,
                               environment: [String: String]) throws -> Result {
        lock.lock()
        defer { lock.unlock() }
        // Output goes to files, not pipes: a chatty job can never block on a full pipe.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("umd-job-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let outURL = dir.appendingPathComponent("stdout"), errURL = dir.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: outURL.path, contents: nil)
        _ = FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = environment
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        let start = Date()
        do { try process.run() } catch { throw Failure.launchFailed("\(executable): \(error)") }

        // Watchdog: SIGTERM (mpirun forwards it to its ranks), then SIGKILL after a grace period.
        var timedOut = false
        while process.isRunning {
            if Date().timeIntervalSince(start) > timeout {
                timedOut = true
                kill(process.processIdentifier, SIGTERM)
                let grace = Date()
                while process.isRunning && Date().timeIntervalSince(grace) < 10 { usleep(50_000) }
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
                break
            }
            usleep(20_000)
        }
        process.waitUntilExit()
        try? out.close()
        try? err.close()
        let stdout = (try? String(contentsOf: outURL, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOf: errURL, encoding: .utf8)) ?? ""
        return Result(exitCode: process.terminationStatus, stdout: stdout, stderr: stderr, timedOut: timedOut,
                      seconds: Date().timeIntervalSince(start))
    }
}

/// Whether this machine lets the tests do what a few of them need as root; probed once.
public enum Capabilities {
    static func succeeds(_ path: String, _ arguments: [String]) -> Bool {
        guard FileManager.default.isExecutableFile(atPath: path) else { return false }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = arguments
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    /// Network namespaces can be created (root with CAP_NET_ADMIN, iproute2, unshare).
    public static let networkNamespaces: Bool = {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/usr/bin/unshare") else { return false }
        let name = "umdprobe\(getpid())"
        guard succeeds("/usr/sbin/ip", ["netns", "add", name]) else { return false }
        return succeeds("/usr/sbin/ip", ["netns", "del", name])
    }()

    /// A small tmpfs can be mounted (root with CAP_SYS_ADMIN).
    public static let tmpfsMounts: Bool = {
        guard getuid() == 0 else { return false }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("umd-mount-probe-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        guard succeeds("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir.path]) else { return false }
        return succeeds("/bin/umount", [dir.path])
    }()
}
