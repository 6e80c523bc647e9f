import Testing
import UMDData

/// libpng and libjpeg are found through pkg-config and linked.
struct ImageLibraryLinkTests {
    @Test func libpngIsVersion16() { #expect(ImageLibraries.pngVersion.hasPrefix("1.6")) }
    @Test func libjpegAPIIsAtLeast62() { #expect(ImageLibraries.jpegVersion >= 62) }
}
