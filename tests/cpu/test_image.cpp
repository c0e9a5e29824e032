// SPDX-License-Identifier: MIT
// test_image.cpp: medimg::data::read_image on every supported format and channel conversion against
// tests/data/images/expected.txt (made with numpy and PIL by tests/data/make_transform_fixtures.py),
// every bad input giving one IoError line that names the file, the pixel limit (decompression bombs),
// and write_png round trips at 8 and 16 bits. PNG decoding against the ground truth: random images
// of every colour type, bit depth and interlace, each scanline filtered with a random filter by an
// encoder written here, must decode to exactly the samples they were made from.
#include <boost/test/unit_test.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <random>
#include <vector>

#include <zlib.h>

#include "helpers.hpp"
#include "medimg/core/rng.hpp"
#include "medimg/data/image.hpp"

using namespace medimg;
using namespace medimg::data;
using medimg::test::message_contains;

namespace {

std::string fixture(const std::string& name) { return std::string(MEDIMG_TEST_DATA_DIR) + "/images/" + name; }

struct Expectation {
    std::string file;
    int channels = 0;
    Shape shape;
    double divisor = 1;
    double tol = 0;
    std::vector<std::int64_t> codes;  // (C, H, W)
};

const std::vector<Expectation>& expectations() {
    static const std::vector<Expectation> all = [] {
        std::vector<Expectation> v;
        std::ifstream in(fixture("expected.txt"));
        BOOST_REQUIRE_MESSAGE(in, "cannot open " << fixture("expected.txt"));
        std::string key;
        while (in >> key) {
            if (key[0] == '#') {
                std::getline(in, key);
                continue;
            }
            BOOST_REQUIRE_EQUAL(key, "expect");
            Expectation e;
            std::int64_t c, h, w;
            in >> e.file >> e.channels >> c >> h >> w >> e.divisor >> e.tol;
            e.shape = Shape{c, h, w};
            e.codes.resize(static_cast<std::size_t>(c * h * w));
            for (auto& x : e.codes) in >> x;
            BOOST_REQUIRE(in);
            v.push_back(e);
        }
        return v;
    }();
    return all;
}

/// A temporary directory removed at scope exit.
struct TempDir {
    std::filesystem::path path;
    TempDir() {
        path = std::filesystem::temp_directory_path() /
               ("medimg_test_image_" + std::to_string(::getpid()) + "_" + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count()));
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

/// A read error: an IoError of one line, starting "image: <file>: " and containing `what`.
void check_read_error(const std::string& name, const std::string& what, const ReadOptions& opts = {}) {
    const std::string path = fixture(name);
    try {
        read_image(path, 0, opts);
        BOOST_ERROR("reading " << name << " did not throw");
    } catch (const IoError& e) {
        const std::string msg = e.what();
        BOOST_TEST_MESSAGE(name << " -> " << msg);
        BOOST_CHECK_MESSAGE(msg.rfind("image: " + path + ": ", 0) == 0, "message does not start with the file: " << msg);
        BOOST_CHECK_MESSAGE(msg.find(what) != std::string::npos, "message lacks '" << what << "': " << msg);
        BOOST_CHECK_MESSAGE(msg.find('\n') == std::string::npos, "message is not one line: " << msg);
    }
}

}  // namespace

BOOST_AUTO_TEST_SUITE(image)

BOOST_AUTO_TEST_CASE(every_format_and_channel_conversion_gives_the_expected_pixels) {
    BOOST_REQUIRE_GE(expectations().size(), 25u);
    for (const auto& e : expectations()) {
        BOOST_TEST_CONTEXT(e.file << " read with channels=" << e.channels) {
            const Image img = read_image(fixture(e.file), e.channels);
            BOOST_REQUIRE_MESSAGE(img.pixels.shape() == e.shape, "shape " << img.pixels.shape() << ", expected " << e.shape);
            double worst = 0;
            std::int64_t where = -1;
            for (std::int64_t i = 0; i < img.pixels.numel(); ++i) {
                // Exact cases: the reader computes code / divisor in float, so the test does too.
                const double want = e.divisor <= 65535
                                        ? static_cast<double>(static_cast<float>(e.codes[static_cast<std::size_t>(i)]) /
                                                              static_cast<float>(e.divisor))
                                        : static_cast<double>(e.codes[static_cast<std::size_t>(i)]) / e.divisor;
                const double d = std::abs(static_cast<double>(img.pixels[i]) - want);
                if (d > worst) worst = d, where = i;
            }
            BOOST_TEST_MESSAGE(e.file << " channels=" << e.channels << ": max |diff| " << worst);
            BOOST_CHECK_MESSAGE(worst <= e.tol, "largest |diff| " << worst << " at flat index " << where << " exceeds "
                                                                  << e.tol);
        }
    }
}

BOOST_AUTO_TEST_CASE(sixteen_bit_precision_is_kept) {
    const Image png = read_image(fixture("gray16.png"));
    BOOST_CHECK_EQUAL(png.bit_depth, 16);
    BOOST_CHECK_EQUAL(png.stored_channels, 1);
    BOOST_CHECK(png.pixels.shape() == Shape({1, 5, 7}));
    BOOST_CHECK_EQUAL(png.pixels[0], 1000.0f / 65535.0f);  // (0, 0)
    BOOST_CHECK_EQUAL(png.pixels[1], 1.0f);                // 65535
    BOOST_CHECK_EQUAL(png.pixels[2], 0.0f);
    BOOST_CHECK_EQUAL(png.pixels[7], 256.0f / 65535.0f);   // no 8-bit code is this value
    const Image pgm = read_image(fixture("gray16.pgm"));
    BOOST_CHECK_EQUAL(pgm.bit_depth, 16);
    BOOST_CHECK_EQUAL(pgm.pixels[0], 1000.0f / 65535.0f);
    BOOST_CHECK_EQUAL(read_image(fixture("gray8.png")).bit_depth, 8);
    BOOST_CHECK_EQUAL(read_image(fixture("gray4.png")).bit_depth, 8);
}

BOOST_AUTO_TEST_CASE(reports_stored_channels_and_drops_alpha) {
    BOOST_CHECK_EQUAL(read_image(fixture("graya8.png")).stored_channels, 2);
    BOOST_CHECK_EQUAL(read_image(fixture("graya8.png")).channels(), 1);
    BOOST_CHECK_EQUAL(read_image(fixture("rgba8.png")).stored_channels, 4);
    BOOST_CHECK_EQUAL(read_image(fixture("rgba8.png")).channels(), 3);
    BOOST_CHECK_EQUAL(read_image(fixture("palette.png")).stored_channels, 3);
    BOOST_CHECK_EQUAL(read_image(fixture("cmyk.jpg")).stored_channels, 3);  // CMYK is decoded to RGB, as PIL's convert("RGB")
    BOOST_CHECK_EQUAL(read_image_info(fixture("cmyk.jpg")).stored_channels, 3);
    const Image g = read_image(fixture("rgb8.png"), 1);
    BOOST_CHECK_EQUAL(g.channels(), 1);
    BOOST_CHECK_EQUAL(g.height(), 5);
    BOOST_CHECK_EQUAL(g.width(), 7);
}

BOOST_AUTO_TEST_CASE(image_info_reads_only_the_header) {
    const ImageInfo png = read_image_info(fixture("rgb16.png"));
    BOOST_CHECK_EQUAL(png.format, "PNG");
    BOOST_CHECK_EQUAL(png.width, 7);
    BOOST_CHECK_EQUAL(png.height, 5);
    BOOST_CHECK_EQUAL(png.stored_channels, 3);
    BOOST_CHECK_EQUAL(png.bit_depth, 16);
    const ImageInfo bomb = read_image_info(fixture("bomb.png"));  // the header alone is harmless
    BOOST_CHECK_EQUAL(bomb.width, 100000);
    BOOST_CHECK_EQUAL(read_image_info(fixture("rgb.jpg")).format, "JPEG");
    BOOST_CHECK_EQUAL(read_image_info(fixture("rgb.bmp")).format, "BMP");
    BOOST_CHECK_EQUAL(read_image_info(fixture("gray1023.pgm")).bit_depth, 16);
}

BOOST_AUTO_TEST_CASE(reads_from_memory_with_the_given_name) {
    std::ifstream in(fixture("rgb8.png"), std::ios::binary);
    const std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const Image a = read_image_from_memory(bytes, "upload#3", 3);
    const Image b = read_image(fixture("rgb8.png"), 3);
    BOOST_REQUIRE(a.pixels.shape() == b.pixels.shape());
    for (std::int64_t i = 0; i < a.pixels.numel(); ++i) BOOST_REQUIRE_EQUAL(a.pixels[i], b.pixels[i]);
    const std::vector<std::uint8_t> cut(bytes.begin(), bytes.begin() + 40);
    BOOST_CHECK_EXCEPTION(read_image_from_memory(cut, "upload#3"), IoError, message_contains("image: upload#3: truncated PNG"));
}

// #22 item 6: detection follows each format's rule. A DICOM file's 128-byte preamble is free and may
// hold a whole valid PNG (or a JPEG or TIFF header); 'DICM' at byte 128 decides, so the image
// reader refuses such a file as DICOM (data::read_sample reads it as DICOM: test_dicom.cpp).
// A NIfTI file is named too (its magic is at byte 344, or at 4 for NIfTI-2).
BOOST_AUTO_TEST_CASE(a_dicom_marker_at_byte_128_wins_over_the_signature_at_byte_0) {
    std::ifstream in(fixture("gray8.png"), std::ios::binary);
    std::vector<std::uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    BOOST_REQUIRE(bytes.size() <= 128);
    BOOST_TEST(read_image_from_memory(bytes, "plain").width() == 7);  // the PNG alone reads
    for (const std::vector<std::uint8_t>& head : {bytes, std::vector<std::uint8_t>{0xff, 0xd8, 0xff, 0xe0}, std::vector<std::uint8_t>{'B', 'M'},
                                                  std::vector<std::uint8_t>{'P', '5', '\n'}, std::vector<std::uint8_t>{'I', 'I', '*', 0}}) {
        std::vector<std::uint8_t> dicom(head);
        dicom.resize(128, 0);
        for (char c : std::string("DICM\x02\x00\x00\x00")) dicom.push_back(static_cast<std::uint8_t>(c));
        BOOST_CHECK_EXCEPTION(read_image_from_memory(dicom, "x.png"), IoError,
                              message_contains("image: x.png: a DICOM file ('DICM' at byte 128), not an image of the formats data::read_image reads"));
    }
    std::vector<std::uint8_t> nifti(352, 0);
    nifti[0] = 0x5c, nifti[1] = 0x01;  // sizeof_hdr 348
    for (int i = 0; i < 4; ++i) nifti[static_cast<std::size_t>(344 + i)] = static_cast<std::uint8_t>("n+1"[i]);
    BOOST_CHECK_EXCEPTION(read_image_from_memory(nifti, "x.png"), IoError, message_contains("unsupported format: NIfTI-1 (name it .nii)"));
}

BOOST_AUTO_TEST_CASE(bad_files_give_one_line_io_errors_naming_the_file) {
    check_read_error("does_not_exist.png", "file not found");
    check_read_error("empty.png", "empty file (0 bytes)");
    check_read_error("truncated.png", "truncated PNG");
    check_read_error("corrupt_crc.png", "corrupt PNG: CRC mismatch in chunk 'IDAT'");
    check_read_error("bad_zlib.png", "corrupt PNG: damaged compressed image data (zlib: incorrect header check)");
    // (zlib's verdict: detail::inflate_png; an incomplete Huffman code or a wrong Adler-32 is refused too.)
    check_read_error("truncated.jpg", "truncated JPEG");
    check_read_error("bad_huffman.jpg", "corrupt JPEG: bad Huffman table");
    check_read_error("truncated.pgm", "truncated PGM: pixel data has 25 bytes, expected 35");
    check_read_error("truncated.bmp", "truncated BMP");
    check_read_error("image.gif", "unsupported format: GIF");
    check_read_error("ascii.pgm", "unsupported format: ASCII PGM/PPM");
    check_read_error("notes.txt", "unsupported format: unrecognised signature");
    // A directory is not an image either.
    const std::string dir = std::string(MEDIMG_TEST_DATA_DIR) + "/images";
    BOOST_CHECK_EXCEPTION(read_image(dir), IoError, message_contains("image: " + dir + ": is a folder, not a regular file"));
}

BOOST_AUTO_TEST_CASE(decompression_bombs_are_refused_before_decoding) {
    // bomb.png: a valid IHDR of 100000 x 100000 with a 1 kB IDAT; decoding would need 10 GB.
    check_read_error("bomb.png", "PNG of 100000 x 100000 = 10000000000 pixels exceeds the limit of 67108864");
    check_read_error("bomb.jpg", "JPEG of 50000 x 50000 = 2500000000 pixels exceeds the limit");
    // The limit is the caller's: 7 x 5 = 35 pixels pass at 35 and fail at 34.
    ReadOptions tight;
    tight.max_pixels = 35;
    BOOST_CHECK_NO_THROW(read_image(fixture("rgb8.png"), 0, tight));
    tight.max_pixels = 34;
    check_read_error("rgb8.png", "35 pixels exceeds the limit of 34 (ReadOptions::max_pixels", tight);
    check_read_error("gray.pgm", "exceeds the limit of 34", tight);
    ReadOptions small_file;
    small_file.max_file_bytes = 100;
    check_read_error("rgb8.png", "exceeds the limit of 100 (ReadOptions::max_file_bytes)", small_file);
}

BOOST_AUTO_TEST_CASE(rejects_a_bad_channel_request) {
    BOOST_CHECK_EXCEPTION(read_image(fixture("rgb8.png"), 2), ValueError, message_contains("read_image: channels must be"));
}

BOOST_AUTO_TEST_CASE(write_png_round_trips_8_and_16_bit) {
    TempDir dir;
    Rng rng(11);
    for (int c : {1, 3, 2, 4}) {
        auto t = Tensor<float, Cpu>::empty(Shape{c, 9, 13});  // (C, H, W)
        rng.fill_uniform(t, 0.0, 1.0);
        t[0] = 0.0f;
        t[1] = 1.0f;
        for (int depth : {8, 16}) {
            BOOST_TEST_CONTEXT(c << " channels, " << depth << " bit") {
                const std::string path = dir.file("rt_" + std::to_string(c) + "_" + std::to_string(depth) + ".png");
                write_png(path, t, depth);
                const ImageInfo info = read_image_info(path);
                BOOST_CHECK_EQUAL(info.bit_depth, depth);
                BOOST_CHECK_EQUAL(info.stored_channels, c);
                const Image back = read_image(path, c >= 3 ? 3 : 1);
                BOOST_REQUIRE(back.pixels.shape() == Shape({c >= 3 ? 3 : 1, 9, 13}));
                const double full = depth == 8 ? 255.0 : 65535.0;
                double worst = 0;
                for (std::int64_t i = 0; i < back.pixels.numel(); ++i) {
                    // Each value comes back as round(v * full) / full: exactly that code.
                    const double code = std::floor(static_cast<double>(t[i]) * full + 0.5);
                    BOOST_REQUIRE_EQUAL(back.pixels[i], static_cast<float>(code) / static_cast<float>(full));
                    worst = std::max(worst, std::abs(static_cast<double>(back.pixels[i]) - t[i]));
                }
                BOOST_CHECK_LE(worst, 0.5 / full + 1e-7);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(written_16_bit_png_is_standard_and_exact) {
    // The 16-bit encoder is medimg's own: its output must be a PNG any decoder reads, with every code exact.
    TempDir dir;
    auto t = Tensor<float, Cpu>::empty(Shape{1, 3, 4});
    const int codes[12] = {0, 1, 255, 256, 1000, 4095, 32768, 40000, 65000, 65534, 65535, 12345};
    for (int i = 0; i < 12; ++i) t[i] = static_cast<float>(codes[i]) / 65535.0f;
    const std::string path = dir.file("codes16.png");
    write_png(path, t, 16);
    const Image back = read_image(path);
    BOOST_CHECK_EQUAL(back.bit_depth, 16);
    for (int i = 0; i < 12; ++i) BOOST_CHECK_EQUAL(back.pixels[i], static_cast<float>(codes[i]) / 65535.0f);
    // (H, W) tensors are written as grey.
    write_png(dir.file("hw.png"), Tensor<float, Cpu>::full(Shape{4, 6}, 0.5f));
    BOOST_CHECK(read_image(dir.file("hw.png")).pixels.shape() == Shape({1, 4, 6}));
    BOOST_CHECK_EQUAL(read_image(dir.file("hw.png")).pixels[0], 128.0f / 255.0f);
}

BOOST_AUTO_TEST_CASE(write_png_clamps_and_is_atomic) {
    TempDir dir;
    auto t = Tensor<float, Cpu>::from_vector(Shape{1, 1, 3}, {-0.5f, 0.5f, 2.0f});
    const std::string path = dir.file("clamp.png");
    write_png(path, t);
    const Image back = read_image(path);
    BOOST_CHECK_EQUAL(back.pixels[0], 0.0f);
    BOOST_CHECK_EQUAL(back.pixels[2], 1.0f);
    // Overwriting replaces the file whole and leaves no temporary behind.
    write_png(path, Tensor<float, Cpu>::full(Shape{1, 2, 2}, 1.0f));
    BOOST_CHECK(read_image(path).pixels.shape() == Shape({1, 2, 2}));
    int entries = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path)) entries += e.is_regular_file() ? 1 : 0;
    BOOST_CHECK_EQUAL(entries, 1);
}

BOOST_AUTO_TEST_CASE(write_png_errors_name_the_path) {
    TempDir dir;
    const auto t = Tensor<float, Cpu>::zeros(Shape{1, 2, 2});
    const std::string missing_dir = dir.file("no/such/dir/x.png");
    BOOST_CHECK_EXCEPTION(write_png(missing_dir, t), IoError, message_contains("write_png: cannot write " + missing_dir + ": creating temporary file"));
    BOOST_CHECK_EXCEPTION(write_png(dir.file("a.png"), t, 12), ValueError, message_contains("bit_depth must be 8 or 16"));
    BOOST_CHECK_EXCEPTION(write_png(dir.file("a.png"), Tensor<float, Cpu>::zeros(Shape{5, 2, 2})), ShapeError,
                          message_contains("write_png: " + dir.file("a.png")));
    auto nan = Tensor<float, Cpu>::zeros(Shape{1, 2, 2});
    nan[3] = std::nanf("");
    BOOST_CHECK_EXCEPTION(write_png(dir.file("a.png"), nan), ValueError, message_contains("non-finite value"));
    BOOST_CHECK(!std::filesystem::exists(dir.file("a.png")));
}

BOOST_AUTO_TEST_SUITE_END()

// ---- PNG decoding against the ground truth ------------------------------------------------------
namespace {

void put_be32(std::vector<std::uint8_t>& b, std::uint32_t v) {
    for (int k = 3; k >= 0; --k) b.push_back(static_cast<std::uint8_t>(v >> (8 * k)));
}
void png_chunk(std::vector<std::uint8_t>& out, const char* type, const std::vector<std::uint8_t>& data) {
    put_be32(out, static_cast<std::uint32_t>(data.size()));
    std::vector<std::uint8_t> td(type, type + 4);
    td.insert(td.end(), data.begin(), data.end());
    out.insert(out.end(), td.begin(), td.end());
    put_be32(out, static_cast<std::uint32_t>(crc32(0, td.data(), static_cast<uInt>(td.size()))));
}
int paeth_predictor(int a, int b, int c) {  // spec 9.4, written as the spec's pseudocode
    const int p = a + b - c, pa = std::abs(p - a), pb = std::abs(p - b), pc = std::abs(p - c);
    if (pa <= pb && pa <= pc) return a;
    return pb <= pc ? b : c;
}

/// A PNG of the given samples (w x h x spp, each < 2^depth), every scanline filtered with a filter
/// drawn at random, the zlib stream split over three IDAT chunks; Adam7 when `interlaced`.
std::vector<std::uint8_t> encode_png(int w, int h, int ct, int depth, bool interlaced, const std::vector<unsigned>& samples,
                                     const std::vector<std::uint8_t>& plte, bool trns, std::mt19937& rng) {
    const int spp = ct == 2 ? 3 : ct == 4 ? 2 : ct == 6 ? 4 : 1;
    const int bpp = std::max(1, spp * depth / 8);
    std::vector<std::uint8_t> raw;
    const int passes[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    for (int ps = 0; ps < (interlaced ? 7 : 1); ++ps) {
        const int x0 = interlaced ? passes[ps][0] : 0, y0 = interlaced ? passes[ps][1] : 0;
        const int dx = interlaced ? passes[ps][2] : 1, dy = interlaced ? passes[ps][3] : 1;
        std::vector<std::uint8_t> prev;
        for (int y = y0; y < h; y += dy) {
            std::vector<std::uint8_t> line;  // the packed samples of this pass's row
            int bitpos = 0;
            for (int x = x0; x < w; x += dx)
                for (int c = 0; c < spp; ++c) {
                    const unsigned v = samples[(static_cast<std::size_t>(y) * w + x) * spp + c];
                    if (depth == 16) {
                        line.push_back(static_cast<std::uint8_t>(v >> 8));
                        line.push_back(static_cast<std::uint8_t>(v));
                    } else {
                        if (bitpos % 8 == 0) line.push_back(0);
                        line.back() = static_cast<std::uint8_t>(line.back() | (v << (8 - depth - bitpos % 8)));
                        bitpos += depth;
                    }
                }
            if (line.empty()) break;  // an empty pass: no scanlines at all
            if (prev.empty()) prev.assign(line.size(), 0);
            const int f = static_cast<int>(rng() % 5);
            raw.push_back(static_cast<std::uint8_t>(f));
            for (std::size_t i = 0; i < line.size(); ++i) {
                const int a = i >= static_cast<std::size_t>(bpp) ? line[i - bpp] : 0, b = prev[i];
                const int c = i >= static_cast<std::size_t>(bpp) ? prev[i - bpp] : 0;
                const int pred = f == 0 ? 0 : f == 1 ? a : f == 2 ? b : f == 3 ? (a + b) / 2 : paeth_predictor(a, b, c);
                raw.push_back(static_cast<std::uint8_t>(line[i] - pred));
            }
            prev = line;
        }
    }
    uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
    std::vector<std::uint8_t> z(zlen);
    BOOST_REQUIRE(compress2(z.data(), &zlen, raw.data(), static_cast<uLong>(raw.size()), 6) == Z_OK);
    z.resize(zlen);
    std::vector<std::uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    std::vector<std::uint8_t> ihdr;
    put_be32(ihdr, static_cast<std::uint32_t>(w));
    put_be32(ihdr, static_cast<std::uint32_t>(h));
    ihdr.insert(ihdr.end(), {static_cast<std::uint8_t>(depth), static_cast<std::uint8_t>(ct), 0, 0,
                             static_cast<std::uint8_t>(interlaced)});
    png_chunk(out, "IHDR", ihdr);
    if (ct == 3) png_chunk(out, "PLTE", plte);
    if (trns) png_chunk(out, "tRNS", ct == 3 ? std::vector<std::uint8_t>{0, 128} : std::vector<std::uint8_t>(ct == 2 ? 6 : 2, 0));
    const std::size_t third = z.size() / 3;
    png_chunk(out, "IDAT", std::vector<std::uint8_t>(z.begin(), z.begin() + static_cast<std::ptrdiff_t>(third)));
    png_chunk(out, "IDAT", std::vector<std::uint8_t>(z.begin() + static_cast<std::ptrdiff_t>(third), z.begin() + static_cast<std::ptrdiff_t>(2 * third)));
    png_chunk(out, "IDAT", std::vector<std::uint8_t>(z.begin() + static_cast<std::ptrdiff_t>(2 * third), z.end()));
    png_chunk(out, "IEND", {});
    return out;
}

}  // namespace

BOOST_AUTO_TEST_CASE(png_of_every_type_depth_filter_and_interlace_decodes_to_its_samples) {
    std::mt19937 rng(20261207);
    const int types[][2] = {{0, 1}, {0, 2}, {0, 4}, {0, 8}, {0, 16}, {2, 8}, {2, 16}, {3, 1}, {3, 2},
                            {3, 4}, {3, 8}, {4, 8}, {4, 16}, {6, 8}, {6, 16}};
    const int sizes[][2] = {{1, 1}, {3, 2}, {8, 8}, {13, 7}, {1, 17}, {33, 5}};
    int cases = 0;
    for (const auto& td : types)
        for (const auto& sz : sizes)
            for (int interlaced = 0; interlaced < 2; ++interlaced) {
                const int ct = td[0], depth = td[1], w = sz[0], h = sz[1];
                const int spp = ct == 2 ? 3 : ct == 4 ? 2 : ct == 6 ? 4 : 1;
                const unsigned top = (1u << depth) - 1u;
                std::vector<std::uint8_t> plte;
                if (ct == 3) {  // a palette shorter than the indices can reach: the rest reads as black
                    const unsigned entries = 1u + static_cast<unsigned>(rng() % std::min(256u, top + 1u));
                    for (unsigned i = 0; i < 3 * entries; ++i) plte.push_back(static_cast<std::uint8_t>(rng()));
                }
                std::vector<unsigned> samples(static_cast<std::size_t>(w) * h * spp);
                for (auto& v : samples) v = rng() % (top + 1u);
                const bool trns = (ct == 0 || ct == 2 || ct == 3) && rng() % 2 == 0;
                const std::vector<std::uint8_t> png = encode_png(w, h, ct, depth, interlaced != 0, samples, plte, trns, rng);
                BOOST_TEST_CONTEXT("colour type " << ct << ", depth " << depth << ", " << w << " x " << h
                                                   << (interlaced ? ", Adam7" : "") << (trns ? ", tRNS" : "")) {
                    const Image img = read_image_from_memory(png, "random.png");
                    const int colour = ct == 0 || ct == 4 ? 1 : 3;
                    BOOST_TEST(img.pixels.shape() == Shape({colour, h, w}));
                    BOOST_TEST(img.bit_depth == (depth == 16 ? 16 : 8));
                    BOOST_TEST(img.stored_channels == spp + (trns ? 1 : 0) + (ct == 3 ? 2 : 0));
                    const float scale = depth == 16 ? 65535.0f : 255.0f;
                    int wrong = 0;
                    for (int y = 0; y < h; ++y)
                        for (int x = 0; x < w; ++x)
                            for (int c = 0; c < colour; ++c) {
                                const unsigned v = samples[(static_cast<std::size_t>(y) * w + x) * spp + (ct == 3 ? 0 : c)];
                                unsigned want = v;
                                if (ct == 3) want = 3 * v + c < plte.size() ? plte[3 * v + c] : 0u;
                                else if (depth < 8) want = v * 255u / top;
                                const float got = img.pixels[(static_cast<std::int64_t>(c) * h + y) * w + x];
                                if (got != static_cast<float>(want) / scale) ++wrong;
                            }
                    BOOST_TEST(wrong == 0);
                }
                ++cases;
            }
    BOOST_TEST(cases == 180);
}

BOOST_AUTO_TEST_CASE(png_image_data_of_the_wrong_length_or_filter_is_refused) {
    std::mt19937 rng(7);
    const std::vector<unsigned> samples(4 * 3, 100);
    const std::vector<std::uint8_t> good = encode_png(4, 3, 0, 8, false, samples, {}, false, rng);
    BOOST_TEST(read_image_from_memory(good, "ok.png").pixels[5] == 100.0f / 255.0f);
    // The same header over 2 rows of data, over 4, and a row with filter type 5.
    auto with_rows = [&](const std::vector<std::uint8_t>& raw) {
        uLongf zlen = compressBound(static_cast<uLong>(raw.size()));
        std::vector<std::uint8_t> z(zlen);
        compress2(z.data(), &zlen, raw.data(), static_cast<uLong>(raw.size()), 6);
        z.resize(zlen);
        std::vector<std::uint8_t> out(good.begin(), good.begin() + 33);  // signature and IHDR
        png_chunk(out, "IDAT", z);
        png_chunk(out, "IEND", {});
        return out;
    };
    std::vector<std::uint8_t> row = {0, 1, 2, 3, 4};
    std::vector<std::uint8_t> two, four, bad_filter;
    for (int r = 0; r < 2; ++r) two.insert(two.end(), row.begin(), row.end());
    for (int r = 0; r < 4; ++r) four.insert(four.end(), row.begin(), row.end());
    bad_filter = two;
    bad_filter.insert(bad_filter.end(), {5, 1, 2, 3, 4});
    BOOST_CHECK_EXCEPTION(read_image_from_memory(with_rows(two), "short.png"), IoError,
                          message_contains("image: short.png: corrupt PNG: the image data inflates to 10 of the 15 bytes its header declares (4 x 3)"));
    BOOST_CHECK_EXCEPTION(read_image_from_memory(with_rows(four), "long.png"), IoError,
                          message_contains("image: long.png: corrupt PNG: the image data inflates to more than the 15 bytes its header declares (4 x 3)"));
    BOOST_CHECK_EXCEPTION(read_image_from_memory(with_rows(bad_filter), "filter.png"), IoError,
                          message_contains("image: filter.png: corrupt PNG: scanline 2 has filter type 5 (0 to 4 are defined)"));
    // The zlib stream cut after its first half: truncated.
    std::vector<std::uint8_t> cut = with_rows(four);
    std::vector<std::uint8_t> three(two);
    three.insert(three.end(), row.begin(), row.end());
    {
        uLongf zlen = compressBound(15);
        std::vector<std::uint8_t> z(zlen);
        compress2(z.data(), &zlen, three.data(), 15, 0);  // stored: the bytes come out as they go in
        z.resize(zlen - 12);                               // cut inside the stored block
        cut.assign(good.begin(), good.begin() + 33);
        png_chunk(cut, "IDAT", z);
        png_chunk(cut, "IEND", {});
    }
    BOOST_CHECK_EXCEPTION(read_image_from_memory(cut, "cut.png"), IoError,
                          message_contains("image: cut.png: truncated PNG: the image data ends after "));
    // A PLTE that is not whole RGB entries.
    std::vector<std::uint8_t> pal(good.begin(), good.begin() + 33);
    pal.resize(8);  // the signature; IHDR again with colour type 3
    std::vector<std::uint8_t> ihdr(good.begin() + 16, good.begin() + 29);
    ihdr[9] = 3;
    png_chunk(pal, "IHDR", ihdr);
    png_chunk(pal, "PLTE", {1, 2, 3, 4});
    png_chunk(pal, "IEND", {});
    BOOST_CHECK_EXCEPTION(read_image_from_memory(pal, "pal.png"), IoError,
                          message_contains("image: pal.png: corrupt PNG: PLTE chunk of 4 bytes (1 to 256 RGB entries of 3 bytes)"));
}
