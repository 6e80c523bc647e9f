import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writing and reading whole files with plain system calls.
///
/// One `write(2)` or `read(2)` moves at most 0x7ffff000 bytes on Linux, and any call may
/// move fewer bytes than asked or be interrupted; Foundation's one-call writes once
/// corrupted every file over 2 GiB. Everything umd writes goes through `AtomicFileWriter`,
/// which loops until every byte is out, and reaches the final name only complete.
public struct FileError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let problem: String
    public init(path: String, problem: String) { self.path = path; self.problem = problem }
    public var description: String { "\(path): \(problem)" }

    /// Why a Foundation file operation at `url` failed, in words (not an NSCocoaErrorDomain code).
    public static func describe(_ error: Error, at url: URL) -> String {
        var isDirectory: ObjCBool = false
        var ancestor = url
        while !FileManager.default.fileExists(atPath: ancestor.path, isDirectory: &isDirectory) && ancestor.path != "/" {
            ancestor = ancestor.deletingLastPathComponent()
        }
        if ancestor.path != url.path && !isDirectory.boolValue { return "\(ancestor.path) is a file, not a directory" }
        if ancestor.path == url.path && !isDirectory.boolValue { return "it exists as a file" }
        if access(ancestor.path, W_OK) != 0 { return "\(ancestor.path) is not writable" }
        return (error as NSError).localizedDescription
    }

    static func fromErrno(_ path: String, _ what: String) -> FileError {
        FileError(path: path, problem: "\(what) failed (\(String(cString: strerror(errno))))")
    }
}

/// A file written under a temporary name beside its destination and renamed into place
/// by `commit()` after an fsync (then the directory is fsynced); dropped without `commit()`
/// the temporary file is removed. Readers therefore see the old file or the whole new one.
public final class AtomicFileWriter {
    public let url: URL
    let temporaryPath: String
    let maxBytesPerCall: Int
    private var fd: Int32
    public private(set) var bytesWritten = 0

    /// `maxBytesPerCall` bounds each `write(2)` (tests use a tiny one to exercise the loop).
    public init(_ url: URL, maxBytesPerCall: Int = 1 << 30) throws {
        self.url = url
        self.maxBytesPerCall = max(1, maxBytesPerCall)
        temporaryPath = url.path + ".tmp-\(getpid())"
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let directory = url.deletingLastPathComponent().path
            if !FileManager.default.fileExists(atPath: directory) {
                throw FileError(path: url.path, problem: "cannot be written: the directory \(directory) does not exist")
            }
            throw FileError.fromErrno(temporaryPath, "creating the file")
        }
    }

    deinit {
        if fd >= 0 {
            close(fd)
            unlink(temporaryPath)
        }
    }

    public func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard fd >= 0 else { throw FileError(path: url.path, problem: "written after commit") }
        try Self.writeAll(fd: fd, bytes, path: temporaryPath, maxBytesPerCall: maxBytesPerCall)
        bytesWritten += bytes.count
    }

    public func append(_ data: Data) throws { try data.withUnsafeBytes { try append($0) } }

    /// fsync, close, rename into place, fsync the directory.
    public func commit() throws {
        guard fd >= 0 else { return }
        let synced = fsync(fd) == 0
        let syncError = errno
        close(fd)
        fd = -1
        guard synced else {
            unlink(temporaryPath)
            errno = syncError
            throw FileError.fromErrno(temporaryPath, "fsync")
        }
        guard rename(temporaryPath, url.path) == 0 else {
            let error = FileError.fromErrno(url.path, "renaming \(temporaryPath) into place")
            unlink(temporaryPath)
            throw error
        }
        syncDirectory(url.deletingLastPathComponent())
    }

    /// Writes every byte of `bytes` to `fd`: loops over short writes, retries on EINTR.
    public static func writeAll(fd: Int32, _ bytes: UnsafeRawBufferPointer, path: String,
                                maxBytesPerCall: Int = 1 << 30) throws {
        var done = 0
        while done < bytes.count {
            let n = Glibc.write(fd, bytes.baseAddress! + done, min(bytes.count - done, maxBytesPerCall))
            if n > 0 {
                done += n
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                throw n == 0 ? FileError(path: path, problem: "write made no progress at byte \(done)")
                    : FileError.fromErrno(path, "write at byte \(done) of \(bytes.count)")
            }
        }
    }

    /// Writes `data` to `url` atomically.
    public static func write(_ data: Data, to url: URL) throws {
        let writer = try AtomicFileWriter(url)
        try writer.append(data)
        try writer.commit()
    }

    /// Writes UTF-8 `text` to `url` atomically.
    public static func write(_ text: String, to url: URL) throws { try write(Data(text.utf8), to: url) }
}

/// fsyncs a directory so a rename in it survives a crash (best effort).
public func syncDirectory(_ url: URL) {
    let fd = open(url.path, O_RDONLY | O_DIRECTORY)
    if fd >= 0 { fsync(fd); close(fd) }
}

/// What a file of this `st_mode` is when it is not a regular file ("a FIFO (named pipe)",
/// "a directory", …), nil for a regular file.
public func nonRegularKind(mode: mode_t) -> String? {
    switch mode & S_IFMT {
    case S_IFREG: return nil
    case S_IFDIR: return "a directory"
    case S_IFIFO: return "a FIFO (named pipe)"
    case S_IFCHR, S_IFBLK: return "a device"
    case S_IFSOCK: return "a socket"
    default: return "not a regular file"
    }
}

/// What `url` is when it is not a regular file, nil for a regular (or missing) file. `stat`
/// never blocks, where opening a FIFO waits for a writer forever.
public func nonRegularFileKind(_ url: URL) -> String? {
    var info = stat()
    guard stat(url.path, &info) == 0 else { return nil }      // missing: the opener names the error
    return nonRegularKind(mode: info.st_mode)
}

/// Reads a whole file with `read(2)` in bounded calls (loops over short reads, retries on EINTR).
public func readWholeFile(_ url: URL, maxBytesPerCall: Int = 1 << 30) throws -> Data {
    // O_NONBLOCK: opening a FIFO returns at once (and is refused below) instead of waiting
    // for a writer; a regular file ignores the flag.
    let fd = open(url.path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
    guard fd >= 0 else { throw FileError.fromErrno(url.path, "opening the file") }
    defer { close(fd) }
    var info = stat()
    guard fstat(fd, &info) == 0 else { throw FileError.fromErrno(url.path, "stat") }
    if let kind = nonRegularKind(mode: info.st_mode) {
        throw FileError(path: url.path, problem: kind == "not a regular file" ? kind : "\(kind), not a regular file")
    }
    let size = Int(info.st_size)
    var data = Data(count: size)
    try data.withUnsafeMutableBytes { buffer in
        var done = 0
        while done < size {
            let n = read(fd, buffer.baseAddress! + done, min(size - done, maxBytesPerCall))
            if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else if n == 0 {
                throw FileError(path: url.path, problem: "the file ended at byte \(done) of \(size) (changed while read?)")
            } else {
                throw FileError.fromErrno(url.path, "read at byte \(done)")
            }
        }
    }
    return data
}

/// Appends whole lines to a log file (`metrics.jsonl`): O_APPEND, every byte written.
public func appendToFile(_ data: Data, at url: URL) throws {
    let fd = open(url.path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw FileError.fromErrno(url.path, "opening for append") }
    defer { close(fd) }
    try data.withUnsafeBytes { try AtomicFileWriter.writeAll(fd: fd, $0, path: url.path) }
}
