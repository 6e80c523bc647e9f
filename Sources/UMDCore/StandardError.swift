#if canImport(Glibc)
import Glibc
#endif

/// Writes to stderr without going through Foundation (safe in signal-adjacent paths),
/// looping until every byte is out (a write may be partial or interrupted).
public func writeToStandardError(_ text: String) {
    let bytes = Array(text.utf8)
    bytes.withUnsafeBytes { buffer in
        var done = 0
        while done < buffer.count {
            let n = write(2, buffer.baseAddress! + done, buffer.count - done)
            if n > 0 { done += n } else if n < 0 && errno == EINTR { continue } else { return }
        }
    }
}
