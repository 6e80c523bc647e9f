import CZstd
import Collective
import UMDModel
import UMDData

/// Versions of the libraries a run records in its configuration.
public enum LinkedLibraries {
    public static var zstdVersion: String { String(cString: ZSTD_versionString()) }
    public static var summary: String {
        "zstd \(zstdVersion), libpng \(ImageCodec.pngVersion), libjpeg API \(ImageCodec.jpegVersion), "
            + "OpenBLAS threads \(BLAS.threadCount)"
    }
}
