import Testing
import UMDData

/// libpng and libjpeg are found through pkg-config and linked.
struct ImageLibraryLinkTests {
    @Test func libpngIsVersion16() { #expect(ImageCodec.pngVersion.hasPrefix("1.6")) }
    @Test func libjpegAPIIsAtLeast62() { #expect(ImageCodec.jpegVersion >= 62) }
}
