import CZstd
import Foundation
import UMDCore
#if canImport(Glibc)
import Glibc
#endif

/// Streaming zstd (content checksum on) to and from files, with XXH64 of the uncompressed
/// bytes and fsync, for checkpoint shards.
public enum ShardIO {
    public struct Written: Sendable {
        public var uncompressedBytes: Int
        public var compressedBytes: Int
        public var xxh64: UInt64
    }

    static func zstdError(_ code: Int) -> String { String(cString: ZSTD_getErrorName(code)) }

    /// Compresses the byte ranges `pieces` (in order) into `url` via a temporary name,
    /// fsyncs the file, renames it into place and fsyncs the directory.
    /// `crashAfterBytes` (testing aid): SIGKILL this process mid-write after that many input bytes.
    /// `checksumSeed` seeds the XXH64 (the checkpoint's step), so a manifest whose step was
    /// changed no longer matches its shards.
    public static func write(_ pieces: [UnsafeRawBufferPointer], to url: URL, level: Int32, checksumSeed: UInt64 = 0,
                             crashAfterBytes: Int? = nil) throws -> Written {
        let pieces = pieces.filter { $0.count > 0 }
        let temporary = url.appendingPathExtension("tmp")
        let fd = open(temporary.path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw RunError.shard(path: temporary.path, problem: "cannot create (\(String(cString: strerror(errno))))") }
        var closed = false, renamed = false
        // A failed write (a full disk) leaves no partial shard behind to keep the disk full.
        defer {
            if !closed { close(fd) }
            if !renamed { unlink(temporary.path) }
        }
        guard let cctx = ZSTD_createCCtx() else { throw RunError.shard(path: url.path, problem: "zstd: out of memory") }
        defer { ZSTD_freeCCtx(cctx) }
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1)
        let outCapacity = ZSTD_CStreamOutSize()
        let out = UnsafeMutableRawPointer.allocate(byteCount: outCapacity, alignment: 16)
        defer { out.deallocate() }
        var hash = XXH64(seed: checksumSeed)
        var total = 0, compressed = 0
        func drain(_ output: inout ZSTD_outBuffer) throws {
            try AtomicFileWriter.writeAll(fd: fd, UnsafeRawBufferPointer(start: out, count: output.pos), path: temporary.path)
            compressed += output.pos
            output.pos = 0
        }
        let chunk = 4 << 20
        for (index, piece) in pieces.enumerated() {
            var offset = 0
            while offset < piece.count || (index == pieces.count - 1 && offset == piece.count) {
                let end = min(piece.count, offset + chunk)
                let last = index == pieces.count - 1 && end == piece.count
                let slice = UnsafeRawBufferPointer(rebasing: piece[offset..<end])
                hash.update(slice)
                total += slice.count
                if let limit = crashAfterBytes, total >= limit { kill(getpid(), SIGKILL) }
                var input = ZSTD_inBuffer(src: slice.baseAddress, size: slice.count, pos: 0)
                var finished = false
                repeat {
                    var output = ZSTD_outBuffer(dst: out, size: outCapacity, pos: 0)
                    let remaining = ZSTD_compressStream2(cctx, &output, &input, last ? ZSTD_e_end : ZSTD_e_continue)
                    if ZSTD_isError(remaining) != 0 { throw RunError.shard(path: url.path, problem: "zstd: \(zstdError(remaining))") }
                    try drain(&output)
                    finished = last ? remaining == 0 : input.pos == input.size
                } while !finished
                offset = end
                if last { break }
            }
        }
        if pieces.isEmpty {
            var input = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
            var remaining = 1
            while remaining != 0 {
                var output = ZSTD_outBuffer(dst: out, size: outCapacity, pos: 0)
                remaining = ZSTD_compressStream2(cctx, &output, &input, ZSTD_e_end)
                if ZSTD_isError(remaining) != 0 { throw RunError.shard(path: url.path, problem: "zstd: \(zstdError(remaining))") }
                try drain(&output)
            }
        }
        guard fsync(fd) == 0 else {
            throw RunError.shard(path: temporary.path, problem: "fsync failed (\(String(cString: strerror(errno))))")
        }
        close(fd)
        closed = true
        guard rename(temporary.path, url.path) == 0 else {
            throw RunError.shard(path: url.path, problem: "rename failed (\(String(cString: strerror(errno))))")
        }
        renamed = true
        syncDirectory(url.deletingLastPathComponent())
        return Written(uncompressedBytes: total, compressedBytes: compressed, xxh64: hash.finalize())
    }


    /// Decompresses `url` into the byte ranges `pieces` (in order, their total must be the
    /// uncompressed size), checking zstd's frame checksum and `expected` XXH64.
    public static func read(_ url: URL, into pieces: [UnsafeMutableRawBufferPointer], expectedBytes: Int,
                            expectedXXH64: UInt64, checksumSeed: UInt64 = 0) throws {
        guard let file = fopen(url.path, "rb") else {
            throw RunError.shard(path: url.path, problem: "missing or unreadable (\(String(cString: strerror(errno))))")
        }
        defer { fclose(file) }
        guard let dctx = ZSTD_createDCtx() else { throw RunError.shard(path: url.path, problem: "zstd: out of memory") }
        defer { ZSTD_freeDCtx(dctx) }
        let inCapacity = ZSTD_DStreamInSize()
        let inBuffer = UnsafeMutableRawPointer.allocate(byteCount: inCapacity, alignment: 16)
        defer { inBuffer.deallocate() }
        let scratch = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)
        defer { scratch.deallocate() }
        let pieces = pieces.filter { $0.count > 0 }
        var hash = XXH64(seed: checksumSeed)
        var pieceIndex = 0, pieceOffset = 0, produced = 0
        var frameDone = false
        while true {
            let n = fread(inBuffer, 1, inCapacity, file)
            if n == 0 { break }
            var input = ZSTD_inBuffer(src: inBuffer, size: n, pos: 0)
            while input.pos < input.size {
                // Once every piece is full the frame may still hold its checksum epilogue:
                // give zstd a scratch byte so it can consume it; real output there is an error.
                let full = pieceIndex == pieces.count
                let target = full ? scratch : pieces[pieceIndex].baseAddress! + pieceOffset
                let room = full ? 1 : pieces[pieceIndex].count - pieceOffset
                var output = ZSTD_outBuffer(dst: target, size: room, pos: 0)
                let ret = ZSTD_decompressStream(dctx, &output, &input)
                if ZSTD_isError(ret) != 0 {
                    throw RunError.shard(path: url.path, problem: "corrupted: zstd says \(zstdError(ret))")
                }
                if full && output.pos > 0 {
                    throw RunError.shard(path: url.path, problem: "holds more data than the manifest says (\(expectedBytes) bytes)")
                }
                if !full {
                    hash.update(UnsafeRawBufferPointer(start: target, count: output.pos))
                    pieceOffset += output.pos
                    produced += output.pos
                    if pieceOffset == pieces[pieceIndex].count { pieceIndex += 1; pieceOffset = 0 }
                }
                if ret == 0 { frameDone = true }
            }
            if feof(file) != 0 { break }
        }
        guard frameDone, produced == expectedBytes else {
            throw RunError.shard(path: url.path, problem: "truncated: \(produced) of \(expectedBytes) bytes could be read")
        }
        guard hash.finalize() == expectedXXH64 else {
            throw RunError.shard(path: url.path, problem: "corrupted: XXH64 of the contents does not match the manifest "
                             + "(a changed byte, or a manifest whose step was edited)")
        }
    }
}
