import Foundation
import UMDCore
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive lock on a run directory, held by rank 0 for the run's life: `flock` on
/// `RUN/.lock`, which names the holder (pid, host, start time). A second run into the same
/// `--out` (fresh, `--resume` or `--overwrite`) is refused naming the holder, instead of two
/// jobs writing one metrics.jsonl and racing on checkpoint renames. The kernel releases the
/// lock when the holder dies, however it dies, so a stale lock file never blocks a restart.
public final class RunDirectoryLock {
    public let url: URL
    private var fd: Int32

    private init(url: URL, fd: Int32) { self.url = url; self.fd = fd }

    /// Locks `directory` (which must exist) or throws naming the run that holds it.
    public static func acquire(_ directory: URL) throws -> RunDirectoryLock {
        let url = directory.appendingPathComponent(".lock")
        let fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            throw RunError("cannot create the lock file \(url.path) (\(reason)); choose --out in a writable place")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(decoding: readWholeFile(url), as: UTF8.self))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(fd)
            throw RunError("\(directory.path) is in use by another run (\(holder.isEmpty ? "its holder did not say who" : holder)); "
                           + "wait for it to end, stop it, or choose another --out")
        }
        let host = ProcessInfo.processInfo.hostName
        let text = "pid \(getpid()) on host \(host), started \(ISO8601DateFormatter().string(from: Date()))\n"
        _ = ftruncate(fd, 0)
        try? Data(text.utf8).withUnsafeBytes { try AtomicFileWriter.writeAll(fd: fd, $0, path: url.path) }
        return RunDirectoryLock(url: url, fd: fd)
    }

    /// Releases the lock (also done when the object goes away or the process ends).
    public func release() {
        if fd >= 0 { close(fd); fd = -1 }
    }

    deinit { release() }
}

/// Ranks started by mpirun stop when their launcher is gone (`kill -9` of mpirun leaves
/// them with parent pid 1): a thread checks the parent every 250 ms and ends the process
/// at once, without saving or publishing anything — the run resumes from its last complete
/// checkpoint. Only under mpirun (OMPI_COMM_WORLD_SIZE set): a rank started by hand may
/// outlive the shell that started it (nohup). `UMD_LAUNCHER_WATCH=1` turns it on for a
/// process started without mpirun (how the tests check it without killing an mpirun).
public enum LauncherWatch {
    // Written once by `start` before the watch thread exists; read-only afterwards.
    nonisolated(unsafe) private static var launcher: pid_t = 0
    nonisolated(unsafe) private static var rank = 0

    public static func start(rank: Int) {
        let environment = ProcessInfo.processInfo.environment
        guard launcher == 0, environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["UMD_LAUNCHER_WATCH"] == "1" else { return }
        launcher = getppid()
        Self.rank = rank
        let thread = Thread {
            while true {
                usleep(250_000)
                stopIfOrphaned()
            }
        }
        thread.name = "launcher-watch"
        thread.start()
    }

    /// Ends the process at once when the launcher is gone; the trainer also calls it right
    /// before a checkpoint is published, so no save starts after the launcher died.
    public static func stopIfOrphaned() {
        guard launcher != 0, getppid() != launcher else { return }
        writeToStandardError("umd-mpirun: rank \(rank): the launcher (pid \(launcher)) is gone; stopping without saving. "
                             + "Resume the run with --resume (from its last complete checkpoint).\n")
        _exit(70)
    }
}
