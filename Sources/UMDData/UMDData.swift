import CPNG
import CJPEG

/// Versions of the image libraries linked into umd (checked at start-up in later issues).
public enum ImageLibraries {
    public static var pngVersion: String { String(cString: png_get_libpng_ver(nil)) }
    public static var jpegVersion: Int { Int(JPEG_LIB_VERSION) }
}
