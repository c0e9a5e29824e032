// SPDX-License-Identifier: MIT
// data/image.hpp: reads PNG, JPEG, BMP and binary PGM/PPM files into (C, H, W) float tensors with
// values in [0, 1] (8-bit samples / 255, 16-bit / 65535, PGM/PPM / maxval), and writes 8- and 16-bit
// PNGs atomically. PNG/BMP pixels are decoded by stb_image, JPEG pixels by libjpeg-turbo with PIL's
// settings (so they equal PIL's and torchvision's exactly); every header is parsed here first (PNG
// chunks and CRCs, JPEG markers, BMP and PNM headers), so truncated files and decompression bombs
// are refused before a decoder allocates anything. Every read error is an IoError of one line
// starting "image: <file>: ". Deliberately not here: DICOM, TIFF, EXIF orientation, ICC profiles,
// gamma; alpha is dropped, never composited (as PIL's convert("L") / convert("RGB") do).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/io/atomic_file.hpp"
#include "medimg/io/input_file.hpp"

// ---- stb_image / stb_image_write: a private copy in every translation unit ----------------------
// This header is the only place medimg touches stb. STB_IMAGE_STATIC / STB_IMAGE_WRITE_STATIC give
// every stbi_* function internal linkage, so each translation unit that includes this header compiles
// its own copy and no external symbol is defined twice: the ODR holds without a separate .cpp file,
// and there is nothing to link. (Debian's libstb.so exports extern stbi_* symbols; medimg neither
// links it nor collides with it.) The price is the decoder's code once per translation unit.
// Only BMP is compiled in: JPEG goes to libjpeg-turbo (below), PNG to zlib and medimg's own
// unfiltering (decode_png), and PGM/PPM are parsed here (stb 2.27 does not byte-swap 16-bit PNM
// samples and accepts truncated PNM data silently). stb_image_write still encodes 8-bit PNGs.
// A TU that included stb_image.h *before* this header already has extern declarations, which
// would turn these definitions into external ones; that is refused at compile time. Including stb
// headers after this one is fine as long as that TU does not define STB_IMAGE_IMPLEMENTATION again.
#if defined(STBI_INCLUDE_STB_IMAGE_H) && !defined(MEDIMG_STB_PRIVATE_COPY)
#  error "medimg/data/image.hpp: include it before <stb/stb_image.h> (medimg compiles a private static copy of stb_image)"
#endif
#if defined(INCLUDE_STB_IMAGE_WRITE_H) && !defined(MEDIMG_STB_PRIVATE_COPY)
#  error "medimg/data/image.hpp: include it before <stb/stb_image_write.h> (medimg compiles a private static copy)"
#endif
#ifndef MEDIMG_STB_PRIVATE_COPY
#  define MEDIMG_STB_PRIVATE_COPY 1
#  if defined(__GNUC__)
#    pragma GCC diagnostic push
#    pragma GCC diagnostic ignored "-Wunused-function"
#    pragma GCC diagnostic ignored "-Wunused-parameter"
#    pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#    pragma GCC diagnostic ignored "-Wsign-compare"
#    pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#    pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#    pragma GCC diagnostic ignored "-Wtype-limits"
#    pragma GCC diagnostic ignored "-Wshadow"
#    pragma GCC diagnostic ignored "-Wconversion"
#    pragma GCC diagnostic ignored "-Wdouble-promotion"
#    pragma GCC diagnostic ignored "-Wcast-qual"
#    pragma GCC diagnostic ignored "-Wold-style-cast"
#    if !defined(__clang__)
#      pragma GCC diagnostic ignored "-Wuseless-cast"  // GCC only; clang would warn about the unknown option
#    endif
#  endif
#  define STB_IMAGE_STATIC
#  define STB_IMAGE_IMPLEMENTATION
#  define STBI_ONLY_BMP
#  define STBI_NO_STDIO  // files are read here (errno-accurate messages, size limit), then decoded from memory
#  define STBI_NO_LINEAR
#  define STBI_NO_HDR
#  include <stb/stb_image.h>
#  undef STB_IMAGE_IMPLEMENTATION
#  define STB_IMAGE_WRITE_STATIC
#  define STB_IMAGE_WRITE_IMPLEMENTATION
#  define STBI_WRITE_NO_STDIO
#  include <stb/stb_image_write.h>
#  undef STB_IMAGE_WRITE_IMPLEMENTATION
#  if defined(__GNUC__)
#    pragma GCC diagnostic pop
#  endif
#endif

// ---- libjpeg-turbo: JPEG decoding (Debian: libjpeg62-turbo-dev; link -ljpeg, CMake JPEG::JPEG) ----
// The library PIL and torchvision decode JPEG with. jpeglib.h expects FILE and size_t to be declared
// before it is included (libjpeg.txt, "Mechanics of usage"); it declares its API extern "C" itself.
#include <csetjmp>
#include <cstdio>
#include <jpeglib.h>
// zlib: PNG image data, inflated here into a buffer of the size IHDR declares (inflate_png).
#include <zlib.h>

namespace medimg::data {

/// Limits checked before any pixel is decoded.
struct ReadOptions {
    /// Largest width * height accepted (default 64 Mi = 8192 x 8192). Checked from the header, before
    /// decoding, so a file whose header claims 100000 x 100000 pixels is refused without allocating.
    std::int64_t max_pixels = std::int64_t{1} << 26;
    /// Largest file accepted, in bytes (default 1 GiB; stb_image addresses at most 2 GiB).
    std::int64_t max_file_bytes = std::int64_t{1} << 30;
};

/// A decoded image: pixels as (C, H, W) float in [0, 1], the layout transforms and models take.
struct Image {
    Tensor<float, Cpu> pixels;  // (C, H, W), C = 1 (gray) or 3 (RGB)
    int bit_depth = 8;          // precision of the stored samples: 8 (1..8-bit files) or 16
    int stored_channels = 0;    // in the file as decoded: 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA
    int channels() const { return static_cast<int>(pixels.size(0)); }
    int height() const { return static_cast<int>(pixels.size(1)); }
    int width() const { return static_cast<int>(pixels.size(2)); }
};

/// What a file's header says, without decoding pixels.
struct ImageInfo {
    std::string format;       // "PNG", "JPEG", "BMP", "PGM" or "PPM"
    int width = 0;
    int height = 0;
    int stored_channels = 0;  // as for Image::stored_channels
    int bit_depth = 8;        // 8 or 16
};

namespace detail {

/// "image: <name>: <what>" as an IoError.
template <class... Args>
IoError image_error(const std::string& name, Args&&... what) {
    return IoError(medimg::detail::concat("image: ", name, ": ", std::forward<Args>(what)...));
}

/// CRC-32 (ISO 3309 / ITU-T V.42, polynomial 0xEDB88320), as PNG chunks use: zlib's crc32, the
/// same function with the same conditioning (crc32(0, ...) starts a CRC), several bytes a step.
inline std::uint32_t png_crc32(std::uint32_t crc, const std::uint8_t* p, std::size_t n) {
    uLong c = crc;
    for (std::size_t done = 0; done < n;) {
        const std::size_t k = std::min<std::size_t>(n - done, std::size_t{1} << 30);
        c = ::crc32(c, p + done, static_cast<uInt>(k));
        done += k;
    }
    return static_cast<std::uint32_t>(c);
}

inline std::uint32_t load_be32(const std::uint8_t* p) {
    return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}
inline std::uint32_t load_be16(const std::uint8_t* p) { return (std::uint32_t{p[0]} << 8) | p[1]; }
inline std::uint32_t load_le32(const std::uint8_t* p) {
    return (std::uint32_t{p[3]} << 24) | (std::uint32_t{p[2]} << 16) | (std::uint32_t{p[1]} << 8) | p[0];
}
inline std::uint32_t load_le16(const std::uint8_t* p) { return (std::uint32_t{p[1]} << 8) | p[0]; }

enum class ImageFormat { png, jpeg, bmp, pnm };

/// Everything the decoders need from the header.
struct ImageHeader {
    ImageFormat format = ImageFormat::png;
    ImageInfo info;
    // PGM/PPM only: samples start here; maxval scales them to [0, 1].
    std::size_t pnm_data_offset = 0;
    std::uint32_t pnm_maxval = 255;
    // JPEG only: components in the frame (1 grey, 3 YCbCr/RGB, 4 CMYK/YCCK).
    int jpeg_components = 0;
    // PNG only: the IDAT chunks' data (offset, length), and the size of the filtered scanlines
    // their zlib stream must inflate to, from IHDR (width, height, bit depth, colour type, interlace).
    std::vector<std::pair<std::size_t, std::size_t>> png_idat;
    std::uint64_t png_raw_bytes = 0;
    int png_depth = 8, png_color_type = 0;  // IHDR's bit depth (1, 2, 4, 8, 16) and colour type (0, 2, 3, 4, 6)
    bool png_interlaced = false;            // Adam7
    std::size_t png_plte = 0, png_plte_len = 0;  // the PLTE chunk's data (colour type 3)
};

/// Bytes of filtered scanlines a PNG of w x h with `samples` samples of `depth` bits per pixel
/// holds: a filter byte and ceil(w * samples * depth / 8) bytes per row, over the seven Adam7
/// passes (PNG spec, 8.2) when interlaced. w, h < 2^31, so the sum fits in 64 bits.
inline std::uint64_t png_raw_size(std::uint64_t w, std::uint64_t h, std::uint64_t samples, std::uint64_t depth, bool interlaced) {
    auto rows = [&](std::uint64_t pw, std::uint64_t ph) { return pw && ph ? ph * (1 + (pw * samples * depth + 7) / 8) : 0; };
    if (!interlaced) return rows(w, h);
    static const int pass[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    std::uint64_t total = 0;
    for (const auto& q : pass) {
        const std::uint64_t x0 = q[0], y0 = q[1], dx = q[2], dy = q[3];
        total += rows(w > x0 ? (w - x0 + dx - 1) / dx : 0, h > y0 ? (h - y0 + dy - 1) / dy : 0);
    }
    return total;
}

/// Most scans a JPEG may have. Real progressive files have about 10; each scan costs a pass over
/// the whole coefficient buffer, so thousands of tiny scans are a cheap denial of service. 500 is
/// libjpeg-turbo's own guard (TJFLAG_LIMITSCANS in turbojpeg.h, djpeg -maxscans).
inline constexpr int max_jpeg_scans = 500;

/// True when bytes 128-131 are "DICM": a DICOM file (PS3.10 7.1), whatever its first 128 bytes.
/// That preamble is free for applications to fill (PS3.10 7.1 names a TIFF header as an example of
/// a dual-format file), so it may start with any other format's signature; the marker decides.
inline bool has_dicom_marker(const std::uint8_t* p, std::size_t n) { return n >= 132 && std::memcmp(p + 128, "DICM", 4) == 0; }

/// The format from the first bytes; anything unsupported is refused by name where it is recognisable.
/// Each format by its own rule: DICOM first (its marker is at byte 128, and its preamble may look
/// like PNG, JPEG, TIFF or BMP), then the signatures at byte 0.
inline ImageFormat sniff_format(const std::uint8_t* p, std::size_t n, const std::string& name) {
    auto starts = [&](const char* sig, std::size_t len) { return n >= len && std::memcmp(p, sig, len) == 0; };
    if (has_dicom_marker(p, n))
        throw image_error(name, "a DICOM file ('DICM' at byte 128), not an image of the formats data::read_image reads; "
                                "DICOM is read by data::read_sample with medimg::dicom (docs/formats.md)");
    if (starts("\x89PNG\r\n\x1a\n", 8)) return ImageFormat::png;
    if (starts("\xFF\xD8\xFF", 3)) return ImageFormat::jpeg;
    if (starts("BM", 2)) return ImageFormat::bmp;
    if (starts("P5", 2) || starts("P6", 2)) return ImageFormat::pnm;
    const char* what = nullptr;
    if (starts("\x89PNG", 4)) what = "a damaged PNG signature";
    else if (starts("GIF87a", 6) || starts("GIF89a", 6)) what = "GIF";
    else if (starts("II*\0", 4) || starts("MM\0*", 4)) what = "TIFF";
    else if (n >= 348 && (std::memcmp(p + 344, "n+1\0", 4) == 0 || std::memcmp(p + 344, "ni1\0", 4) == 0)) what = "NIfTI-1 (name it .nii)";
    else if (n >= 8 && (std::memcmp(p + 4, "n+2\0", 4) == 0 || std::memcmp(p + 4, "ni2\0", 4) == 0)) what = "NIfTI-2 (name it .nii)";
    else if (starts("RIFF", 4) && n >= 12 && std::memcmp(p + 8, "WEBP", 4) == 0) what = "WebP";
    else if (starts("\0\0\0\x0CjP  ", 8) || starts("\xFF\x4F\xFF\x51", 4)) what = "JPEG 2000";
    else if (starts("P1", 2) || starts("P4", 2)) what = "PBM bitmap (P1/P4)";
    else if (starts("P2", 2) || starts("P3", 2)) what = "ASCII PGM/PPM (P2/P3)";
    else if (starts("P7", 2)) what = "PAM (P7)";
    if (what) throw image_error(name, "unsupported format: ", what, "; medimg reads PNG, JPEG, BMP and binary PGM/PPM (P5/P6)");
    throw image_error(name, "unsupported format: unrecognised signature; medimg reads PNG, JPEG, BMP and binary PGM/PPM (P5/P6)");
}

/// Walks the PNG chunks: each must lie inside the file, critical chunks must match their CRC,
/// IHDR must come first and be valid, and an IEND must end the stream.
inline ImageHeader parse_png(const std::uint8_t* p, std::size_t n, const std::string& name) {
    ImageHeader h;
    h.format = ImageFormat::png;
    h.info.format = "PNG";
    std::size_t pos = 8;
    bool have_ihdr = false, have_idat = false, have_trns = false, have_plte = false;
    int color_type = 0, depth = 0;
    for (;;) {
        if (n - pos < 12)
            throw image_error(name, "truncated PNG: ", n - pos, " bytes at offset ", pos,
                              " cannot hold a chunk and no IEND chunk was found");
        const std::uint32_t len = load_be32(p + pos);
        const std::uint8_t* type = p + pos + 4;
        const std::string tname(reinterpret_cast<const char*>(type), 4);
        if (len > 0x7FFFFFFFu) throw image_error(name, "corrupt PNG: chunk length ", len, " at offset ", pos);
        if (n - pos - 12 < len)
            throw image_error(name, "truncated PNG: chunk '", tname, "' at offset ", pos, " needs ", len + 12u,
                              " bytes but only ", n - pos, " remain");
        const bool critical = (type[0] & 0x20) == 0;
        const std::uint32_t stored_crc = load_be32(p + pos + 8 + len);
        if (critical && png_crc32(0, type, 4 + std::size_t{len}) != stored_crc)
            throw image_error(name, "corrupt PNG: CRC mismatch in chunk '", tname, "' at offset ", pos);
        const std::uint8_t* d = p + pos + 8;
        if (!have_ihdr) {
            if (tname != "IHDR" || len != 13) throw image_error(name, "corrupt PNG: first chunk is '", tname, "', not IHDR");
            const std::uint32_t w = load_be32(d), hh = load_be32(d + 4);
            depth = d[8];
            color_type = d[9];
            if (w == 0 || hh == 0 || w > 0x7FFFFFFFu || hh > 0x7FFFFFFFu)
                throw image_error(name, "corrupt PNG: dimensions ", w, " x ", hh);
            const bool ok_depth = (color_type == 0 && (depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16)) ||
                                  (color_type == 3 && (depth == 1 || depth == 2 || depth == 4 || depth == 8)) ||
                                  ((color_type == 2 || color_type == 4 || color_type == 6) && (depth == 8 || depth == 16));
            if (!ok_depth) throw image_error(name, "corrupt PNG: bit depth ", depth, " with colour type ", color_type);
            if (d[10] != 0 || d[11] != 0 || d[12] > 1)
                throw image_error(name, "corrupt PNG: unknown compression/filter/interlace method");
            h.info.width = static_cast<int>(w);
            h.info.height = static_cast<int>(hh);
            h.info.bit_depth = depth == 16 ? 16 : 8;
            const int samples = color_type == 2 ? 3 : color_type == 4 ? 2 : color_type == 6 ? 4 : 1;
            h.png_raw_bytes = png_raw_size(w, hh, static_cast<std::uint64_t>(samples), static_cast<std::uint64_t>(depth), d[12] == 1);
            h.png_depth = depth;
            h.png_color_type = color_type;
            h.png_interlaced = d[12] == 1;
            have_ihdr = true;
        } else if (tname == "IDAT") {
            have_idat = true;
            h.png_idat.emplace_back(pos + 8, std::size_t{len});
        } else if (tname == "PLTE") {
            if (len == 0 || len % 3 != 0 || len > 768)
                throw image_error(name, "corrupt PNG: PLTE chunk of ", len, " bytes (1 to 256 RGB entries of 3 bytes)");
            have_plte = true;
            h.png_plte = pos + 8;
            h.png_plte_len = len;
        } else if (tname == "tRNS") {
            have_trns = true;
        } else if (tname == "IEND") {
            break;
        }
        pos += 12 + std::size_t{len};
    }
    if (!have_idat) throw image_error(name, "corrupt PNG: no IDAT chunk");
    if (color_type == 3 && !have_plte) throw image_error(name, "corrupt PNG: palette image without a PLTE chunk");
    // stb_image adds an alpha channel for a tRNS chunk, as PIL does for "P"/"L"/"RGB" + transparency.
    switch (color_type) {
        case 0: h.info.stored_channels = have_trns ? 2 : 1; break;
        case 2: h.info.stored_channels = have_trns ? 4 : 3; break;
        case 3: h.info.stored_channels = have_trns ? 4 : 3; break;
        case 4: h.info.stored_channels = 2; break;
        default: h.info.stored_channels = 4; break;
    }
    return h;
}

/// Walks every JPEG segment from SOI to EOI: the frame header (SOFn) gives the dimensions, each
/// DHT table is checked (class <= 1, slot <= 3, at most 256 codes, inside its segment), and entropy-
/// coded data after SOS is skipped to the next marker (0xFF is stuffed as FF 00 there). A file that
/// ends before EOI was cut short (libjpeg would report it only as a warning). These checks came
/// with stb_image 2.27, which decoded JPEG before libjpeg-turbo did (a DHT of more than 256 codes
/// made it write past its table); libjpeg refuses such files too, but the messages here name the
/// table or offset, and nothing reaches the decoder that the header already shows to be broken.
inline ImageHeader parse_jpeg(const std::uint8_t* p, std::size_t n, const std::string& name) {
    ImageHeader h;
    h.format = ImageFormat::jpeg;
    h.info.format = "JPEG";
    bool have_sof = false;
    bool progressive = false;
    bool arithmetic = false;  // SOF9-11, 13-15: arithmetic coding, whose scans use no Huffman tables
    int scans = 0;
    // Tables defined so far (bit s: DC/quantization slot s; bit 4 + s: AC slot s) and the frame's
    // components (id, quantization slot). stb_image 2.27 decoded with whatever a slot held, and an
    // undefined slot held uninitialised memory (an out-of-bounds read in stbi__jpeg_huff_decode,
    // fuzzing finding 3), so every scan is checked here first; libjpeg refuses them as well.
    unsigned huffman_defined = 0, quant_defined = 0;
    std::vector<std::array<int, 2>> frame_components;
    std::size_t pos = 2;
    for (;;) {
        while (pos < n && p[pos] != 0xFF) ++pos;  // junk between segments: libjpeg warns, and decode_jpeg refuses
        while (pos < n && p[pos] == 0xFF) ++pos;  // fill bytes
        if (pos >= n) {
            if (!have_sof) throw image_error(name, "truncated JPEG: no frame header (SOF marker) before the end of the file");
            throw image_error(name, "truncated JPEG: the file ends before the end-of-image marker (FF D9)");
        }
        const std::uint32_t m = p[pos++];
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;  // standalone markers
        if (m == 0xD9) {
            if (!have_sof) throw image_error(name, "corrupt JPEG: end of image before any frame header");
            break;
        }
        if (m == 0xD8) throw image_error(name, "corrupt JPEG: a second start-of-image marker at offset ", pos - 2);
        if (n - pos < 2) {
            const char hex[] = "0123456789ABCDEF";
            throw image_error(name, "truncated JPEG: marker FF ", hex[m >> 4], hex[m & 15], " at offset ", pos - 2,
                              " has no length");
        }
        const std::uint32_t len = load_be16(p + pos);
        if (len < 2) throw image_error(name, "corrupt JPEG: segment length ", len, " at offset ", pos);
        if (n - pos < len)
            throw image_error(name, "truncated JPEG: segment at offset ", pos, " needs ", len, " bytes, ", n - pos, " remain");
        const std::uint8_t* seg = p + pos + 2;
        const std::size_t seg_len = len - 2;
        const bool sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
        if (sof && !have_sof) {
            if (seg_len < 6) throw image_error(name, "corrupt JPEG: frame header of ", len, " bytes");
            const int precision = seg[0];
            h.info.height = static_cast<int>(load_be16(seg + 1));
            h.info.width = static_cast<int>(load_be16(seg + 3));
            const int comps = seg[5];
            if (precision != 8)
                throw image_error(name, "unsupported format: ", precision, "-bit JPEG (only 8-bit baseline/progressive)");
            if (h.info.width == 0 || h.info.height == 0)
                throw image_error(name, "corrupt JPEG: dimensions ", h.info.width, " x ", h.info.height);
            if (comps != 1 && comps != 3 && comps != 4) throw image_error(name, "corrupt JPEG: ", comps, " components");
            if (seg_len < 6 + 3 * static_cast<std::size_t>(comps))
                throw image_error(name, "corrupt JPEG: frame header of ", len, " bytes for ", comps, " components");
            for (int c = 0; c < comps; ++c) frame_components.push_back({seg[6 + 3 * c], seg[8 + 3 * c]});
            h.info.stored_channels = comps == 1 ? 1 : 3;  // YCbCr/RGB and CMYK/YCCK are decoded to RGB
            h.jpeg_components = comps;
            progressive = m == 0xC2 || m == 0xCA;
            arithmetic = m >= 0xC9;
            have_sof = true;
        } else if (m == 0xDB) {
            std::size_t q = 0;
            while (q < seg_len) {
                const int precision = seg[q] >> 4, slot = seg[q] & 15;
                const std::size_t bytes = precision == 0 ? 64 : 128;
                if (precision > 1 || slot > 3 || seg_len - q - 1 < bytes)
                    throw image_error(name, "corrupt JPEG: bad quantization table (precision ", precision, ", slot ", slot,
                                      ") at offset ", pos);
                quant_defined |= 1u << slot;
                q += 1 + bytes;
            }
        } else if (m == 0xC4) {
            std::size_t q = 0;
            while (q < seg_len) {
                if (seg_len - q < 17) throw image_error(name, "corrupt JPEG: short Huffman table at offset ", pos);
                const int cls = seg[q] >> 4, slot = seg[q] & 15;
                std::size_t codes = 0;
                for (int i = 1; i <= 16; ++i) codes += seg[q + static_cast<std::size_t>(i)];
                if (cls > 1 || slot > 3 || codes > 256 || seg_len - q - 17 < codes)
                    throw image_error(name, "corrupt JPEG: bad Huffman table (class ", cls, ", slot ", slot, ", ", codes,
                                      " codes) at offset ", pos);
                huffman_defined |= 1u << (4 * cls + slot);
                q += 17 + codes;
            }
        } else if (m == 0xDA && !have_sof) {
            throw image_error(name, "corrupt JPEG: scan before any frame header");
        } else if (m == 0xDA) {
            // Which tables the scan decodes with: baseline uses DC and AC; a progressive scan uses
            // DC only in a first DC scan (Ss = 0, Ah = 0), AC in any AC scan (Ss > 0).
            if (++scans > max_jpeg_scans)
                throw image_error(name, "corrupt JPEG: more than ", max_jpeg_scans, " scans (the scan at offset ", pos,
                                  "); real files have about 10");
            const std::size_t ns = seg_len ? seg[0] : 0;
            if (ns < 1 || ns > 4 || seg_len < 1 + 2 * ns + 3)
                throw image_error(name, "corrupt JPEG: scan header of ", len, " bytes at offset ", pos);
            const int ss = seg[1 + 2 * ns], ah = seg[3 + 2 * ns] >> 4;
            const bool uses_dc = !progressive || (ss == 0 && ah == 0), uses_ac = !progressive || ss > 0;
            for (std::size_t c = 0; c < ns; ++c) {
                const int id = seg[1 + 2 * c], dc = seg[2 + 2 * c] >> 4, ac = seg[2 + 2 * c] & 15;
                const auto comp = std::find_if(frame_components.begin(), frame_components.end(),
                                               [&](const std::array<int, 2>& fc) { return fc[0] == id; });
                if (comp == frame_components.end())
                    throw image_error(name, "corrupt JPEG: the scan at offset ", pos, " names component ", id,
                                      ", which the frame does not have");
                if ((*comp)[1] > 3 || !(quant_defined >> (*comp)[1] & 1u))
                    throw image_error(name, "corrupt JPEG: component ", id, " uses quantization table ", (*comp)[1],
                                      ", which is not defined before the scan at offset ", pos);
                const bool no_dc = !arithmetic && uses_dc && (dc > 3 || !(huffman_defined >> dc & 1u));
                const bool no_ac = !arithmetic && uses_ac && (ac > 3 || !(huffman_defined >> (4 + ac) & 1u));
                if (no_dc || no_ac)
                    throw image_error(name, "corrupt JPEG: the scan at offset ", pos, " uses Huffman table ", no_dc ? "DC " : "AC ",
                                      no_dc ? dc : ac, ", which is not defined");
            }
        }
        pos += len;
        if (m == 0xDA) {  // entropy-coded data runs to the next marker other than FF 00 / RSTn
            while (pos + 1 < n && !(p[pos] == 0xFF && p[pos + 1] != 0x00 && !(p[pos + 1] >= 0xD0 && p[pos + 1] <= 0xD7)))
                ++pos;
            if (pos + 1 >= n) throw image_error(name, "truncated JPEG: the file ends inside the scan data, before FF D9");
        }
    }
    return h;
}

/// Reads the BMP file and info headers; for uncompressed data checks that every row is present.
inline ImageHeader parse_bmp(const std::uint8_t* p, std::size_t n, const std::string& name) {
    ImageHeader h;
    h.format = ImageFormat::bmp;
    h.info.format = "BMP";
    if (n < 26) throw image_error(name, "truncated BMP: ", n, " bytes cannot hold the headers");
    const std::uint32_t offbits = load_le32(p + 10), dib = load_le32(p + 14);
    std::int64_t w = 0, hh = 0;
    std::uint32_t bpp = 0, compression = 0;
    if (dib == 12) {
        w = load_le16(p + 18);
        hh = load_le16(p + 20);
        bpp = load_le16(p + 24);
    } else if (dib >= 40) {
        if (n < 34) throw image_error(name, "truncated BMP: ", n, " bytes cannot hold the info header");
        w = static_cast<std::int32_t>(load_le32(p + 18));
        hh = static_cast<std::int32_t>(load_le32(p + 22));
        bpp = load_le16(p + 28);
        compression = load_le32(p + 30);
    } else {
        throw image_error(name, "corrupt BMP: info header of ", dib, " bytes");
    }
    if (hh < 0) hh = -hh;  // negative height: rows stored top-down
    if (w <= 0 || hh <= 0 || w > 0x7FFFFFFF || hh > 0x7FFFFFFF) throw image_error(name, "corrupt BMP: dimensions ", w, " x ", hh);
    if (bpp != 1 && bpp != 4 && bpp != 8 && bpp != 16 && bpp != 24 && bpp != 32)
        throw image_error(name, "corrupt BMP: ", bpp, " bits per pixel");
    if (compression != 0 && compression != 3)  // BI_RGB, BI_BITFIELDS; stb_image reads nothing else
        throw image_error(name, "unsupported format: BMP with compression ", compression,
                          compression == 1 || compression == 2 ? " (RLE)" : "");
    const std::int64_t row = ((w * bpp + 31) / 32) * 4;  // rows are padded to 4 bytes; w, bpp < 2^31, 2^6
    const std::int64_t avail = static_cast<std::int64_t>(n) - static_cast<std::int64_t>(offbits);
    if (avail < 0 || hh > avail / row)
        throw image_error(name, "truncated BMP: pixel data needs ", hh, " rows of ", row, " bytes from offset ", offbits,
                          ", the file has ", n, " bytes");
    h.info.width = static_cast<int>(w);
    h.info.height = static_cast<int>(hh);
    h.info.stored_channels = bpp == 32 ? 4 : 3;  // palette BMPs (also grey ones) decode to RGB
    h.info.bit_depth = 8;
    return h;
}

/// Binary PGM (P5) / PPM (P6): magic, width, height, maxval (with # comments), one whitespace byte,
/// then width*height*channels samples of 1 byte (maxval < 256) or 2 big-endian bytes.
inline ImageHeader parse_pnm(const std::uint8_t* p, std::size_t n, const std::string& name) {
    ImageHeader h;
    h.format = ImageFormat::pnm;
    const bool color = p[1] == '6';
    h.info.format = color ? "PPM" : "PGM";
    std::size_t pos = 2;
    auto is_space = [](std::uint8_t c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; };
    auto next_int = [&](const char* what) -> std::uint64_t {
        for (;;) {
            while (pos < n && is_space(p[pos])) ++pos;
            if (pos < n && p[pos] == '#') {
                while (pos < n && p[pos] != '\n' && p[pos] != '\r') ++pos;
                continue;
            }
            break;
        }
        if (pos >= n) throw image_error(name, "truncated ", h.info.format, ": header ends before the ", what);
        if (p[pos] < '0' || p[pos] > '9') throw image_error(name, "corrupt ", h.info.format, ": bad ", what, " in the header");
        std::uint64_t v = 0;
        while (pos < n && p[pos] >= '0' && p[pos] <= '9') {
            v = v * 10 + (p[pos++] - '0');
            if (v > 0x7FFFFFFFu) throw image_error(name, "corrupt ", h.info.format, ": ", what, " too large");
        }
        return v;
    };
    const std::uint64_t w = next_int("width"), hh = next_int("height"), maxval = next_int("maxval");
    if (w == 0 || hh == 0) throw image_error(name, "corrupt ", h.info.format, ": dimensions ", w, " x ", hh);
    if (maxval == 0 || maxval > 65535) throw image_error(name, "corrupt ", h.info.format, ": maxval ", maxval, " (1..65535)");
    if (pos >= n || !is_space(p[pos])) throw image_error(name, "truncated ", h.info.format, ": no pixel data after the header");
    ++pos;  // exactly one whitespace byte separates the header from the samples
    h.info.width = static_cast<int>(w);
    h.info.height = static_cast<int>(hh);
    h.info.stored_channels = color ? 3 : 1;
    h.info.bit_depth = maxval > 255 ? 16 : 8;
    h.pnm_data_offset = pos;
    h.pnm_maxval = static_cast<std::uint32_t>(maxval);
    return h;
}

inline ImageHeader parse_header(const std::uint8_t* p, std::size_t n, const std::string& name) {
    if (n == 0) throw image_error(name, "empty file (0 bytes)");
    switch (sniff_format(p, n, name)) {
        case ImageFormat::png: return parse_png(p, n, name);
        case ImageFormat::jpeg: return parse_jpeg(p, n, name);
        case ImageFormat::bmp: return parse_bmp(p, n, name);
        default: return parse_pnm(p, n, name);
    }
}

inline void check_pixel_limit(const ImageHeader& h, const ReadOptions& opts, const std::string& name) {
    const std::int64_t pixels = std::int64_t{h.info.width} * h.info.height;
    if (pixels > opts.max_pixels)
        throw image_error(name, h.info.format, " of ", h.info.width, " x ", h.info.height, " = ", pixels,
                          " pixels exceeds the limit of ", opts.max_pixels,
                          " (ReadOptions::max_pixels; refused before decoding)");
}

/// The whole file, with errno-accurate messages "<who>: <path>: ..."; at most max_bytes (else an
/// error naming `limit_name`). Shared by the image, DICOM and NIfTI readers. Only a regular file is
/// opened (io/input_file.hpp): a FIFO, socket, device or folder is refused by what it is.
inline std::vector<std::uint8_t> read_whole_file(const std::string& path, std::int64_t max_bytes, const char* who, const char* limit_name) {
    auto error = [&](auto&&... what) { return IoError(medimg::detail::concat(who, ": ", path, ": ", what...)); };
    io::check_input_file(path, who);
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // O_NONBLOCK: a FIFO swapped in cannot block open()
    if (fd < 0) {
        const int e = errno;
        if (e == ENOENT) throw error("file not found");
        throw error("cannot open (", std::strerror(e), ")");
    }
    struct Closer {
        int fd;
        ~Closer() { ::close(fd); }
    } closer{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw error("cannot stat (", std::strerror(errno), ")");
    io::check_opened_file(st.st_mode, path, who);
    if (st.st_size > max_bytes) throw error("file of ", st.st_size, " bytes exceeds the limit of ", max_bytes, " (", limit_name, ")");
    std::vector<std::uint8_t> bytes(static_cast<std::size_t>(st.st_size));
    std::size_t got = 0;
    while (got < bytes.size()) {
        const ssize_t r = ::read(fd, bytes.data() + got, bytes.size() - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) throw error("read failed (", std::strerror(errno), ")");
        if (r == 0) break;  // the file shrank while being read; the parsers see the short buffer
        got += static_cast<std::size_t>(r);
    }
    bytes.resize(got);
    return bytes;
}
inline std::vector<std::uint8_t> read_image_file(const std::string& path, const ReadOptions& opts) {
    return read_whole_file(path, opts.max_file_bytes, "image", "ReadOptions::max_file_bytes");
}

/// Interleaved samples (HWC) of `comp` channels -> (C, H, W) float with C = `channels`
/// (0: 1 for grey(+alpha), 3 for RGB(A)). `scale` is the sample's full-scale value (255, 65535 or a
/// PNM maxval). RGB -> grey follows ITU-R 601-2 luma, L = R*299/1000 + G*587/1000 + B*114/1000:
/// for 8-bit samples with PIL's integer form, L = (R*19595 + G*38470 + B*7471 + 0x8000) >> 16,
/// so the result equals Image.open(f).convert("L") exactly; for 16-bit samples in double, without
/// rounding to an integer, to keep the precision. Grey -> RGB replicates; alpha is dropped.
template <class S>
Tensor<float, Cpu> samples_to_chw(const S* src, int width, int height, int comp, int channels, std::uint32_t scale) {
    const bool gray_in = comp <= 2;
    const int out_c = channels == 0 ? (gray_in ? 1 : 3) : channels;
    const std::int64_t hw = std::int64_t{width} * height;
    auto t = Tensor<float, Cpu>::empty(Shape{out_c, height, width});  // (C, H, W)
    float* out = t.data();
    const float fscale = static_cast<float>(scale);
    // code / scale for every 8-bit code: the same quotients, looked up instead of divided.
    std::array<float, 256> unit{};
    if (scale <= 255)
        for (std::uint32_t v = 0; v < 256; ++v) unit[v] = static_cast<float>(v) / fscale;
    if (scale <= 255 && gray_in) {
        for (std::int64_t i = 0; i < hw; ++i) out[i] = unit[src[i * comp] & 0xFFu];
        for (int c = 1; c < out_c; ++c) std::memcpy(out + c * hw, out, static_cast<std::size_t>(hw) * sizeof(float));
        return t;
    }
    if (scale <= 255 && out_c == 3) {
        for (std::int64_t i = 0; i < hw; ++i)
            for (int c = 0; c < 3; ++c) out[c * hw + i] = unit[src[i * comp + c] & 0xFFu];
        return t;
    }
    for (std::int64_t i = 0; i < hw; ++i) {
        const S* px = src + i * comp;
        if (gray_in) {
            const float v = static_cast<float>(px[0]) / fscale;
            for (int c = 0; c < out_c; ++c) out[c * hw + i] = v;
        } else if (out_c == 3) {
            for (int c = 0; c < 3; ++c) out[c * hw + i] = static_cast<float>(px[c]) / fscale;
        } else if (scale <= 255) {
            const std::uint32_t l = (std::uint32_t{px[0]} * 19595u + std::uint32_t{px[1]} * 38470u +
                                     std::uint32_t{px[2]} * 7471u + 0x8000u) >> 16;
            out[i] = unit[l & 0xFFu];
        } else {
            const double l = (double(px[0]) * 299.0 + double(px[1]) * 587.0 + double(px[2]) * 114.0) / 1000.0;
            out[i] = static_cast<float>(l / double(scale));
        }
    }
    return t;
}

inline Image decode_pnm(const std::uint8_t* p, std::size_t n, const ImageHeader& h, int channels, const std::string& name) {
    const int comp = h.info.stored_channels;
    const std::size_t bytes_per = h.pnm_maxval > 255 ? 2 : 1;
    const std::size_t count = static_cast<std::size_t>(h.info.width) * static_cast<std::size_t>(h.info.height) *
                              static_cast<std::size_t>(comp);
    const std::size_t need = count * bytes_per;
    if (n - h.pnm_data_offset < need)
        throw image_error(name, "truncated ", h.info.format, ": pixel data has ", n - h.pnm_data_offset, " bytes, expected ",
                          need);
    std::vector<std::uint16_t> samples(count);
    const std::uint8_t* d = p + h.pnm_data_offset;
    for (std::size_t i = 0; i < count; ++i) {
        const std::uint32_t v = bytes_per == 2 ? load_be16(d + 2 * i) : d[i];
        if (v > h.pnm_maxval)
            throw image_error(name, "corrupt ", h.info.format, ": sample ", v, " exceeds maxval ", h.pnm_maxval);
        samples[i] = static_cast<std::uint16_t>(v);
    }
    Image img;
    img.pixels = samples_to_chw(samples.data(), h.info.width, h.info.height, comp, channels, h.pnm_maxval);
    img.bit_depth = h.info.bit_depth;
    img.stored_channels = comp;
    return img;
}

// ---- JPEG through libjpeg-turbo ----------------------------------------------------------------
// libjpeg reports a fatal error by calling err->error_exit, which must not return (libjpeg.txt,
// "Error handling"; its default calls exit()), and a warning ("the data is corrupt, and a damaged
// output image is likely") through err->emit_message with msg_level -1. Both are routed to one
// longjmp back into jpeg_decode_samples; a warning counts as a corrupt file (the reason to
// override emit_message that libjpeg.txt itself gives: "to abort on warnings"). PIL would decode
// such a file to damaged pixels; a training set is better off without them.
//
// longjmp is undefined behaviour in C++ when a throw/catch in its place would run a non-trivial
// destructor ([csetjmp.syn]). So: the frames it crosses are libjpeg's (C), the two callbacks and
// jpeg_decode_samples itself, none of which holds a C++ object with a destructor; everything
// libjpeg touches lives in JpegSession, a trivially destructible struct owned by the caller, so
// nothing local to the setjmp function is modified between setjmp and longjmp (C11 7.13.2.1).
// The C++ side (the sample buffer, the exception) stays in decode_jpeg, outside that region.

/// Everything one libjpeg decode touches. Trivially destructible by design (see above).
struct JpegSession {
    jpeg_decompress_struct cinfo;
    jpeg_error_mgr err;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];  // libjpeg's text of the error or warning
    bool warning;                   // true: a warning (corrupt data), false: a fatal error
};
static_assert(std::is_trivially_destructible<JpegSession>::value, "JpegSession must survive a longjmp");

/// err->error_exit: keep libjpeg's message and jump back; never returns.
inline void jpeg_error_exit(j_common_ptr cinfo) {
    auto* s = static_cast<JpegSession*>(cinfo->client_data);
    (*cinfo->err->format_message)(cinfo, s->message);
    std::longjmp(s->jump, 1);
}

/// err->emit_message: trace messages (msg_level >= 0) are dropped; a warning (-1) is fatal.
inline void jpeg_emit_message(j_common_ptr cinfo, int msg_level) {
    if (msg_level >= 0) return;
    static_cast<JpegSession*>(cinfo->client_data)->warning = true;
    jpeg_error_exit(cinfo);
}

/// Decodes the JPEG in p[0, n) into `out`: height rows of width * comps 8-bit samples, grey (comps
/// 1), RGB (3) or CMYK as libjpeg writes it (4; Adobe's inverted convention). The dimensions and
/// component count come from parse_jpeg and are checked against libjpeg's before anything is
/// written. Settings are PIL's (its JpegDecode.c leaves libjpeg's defaults): the accurate integer
/// IDCT (JDCT_ISLOW) and fancy (triangle-filter) upsampling of subsampled chroma; YCbCr and YCCK
/// are converted by libjpeg. Returns false with s->message set on any error or warning.
/// No C++ object with a destructor may be added here: see the note above JpegSession.
inline bool jpeg_decode_samples(JpegSession* s, const std::uint8_t* p, std::size_t n, std::uint8_t* out, int width,
                                int height, int comps) {
    s->cinfo.err = jpeg_std_error(&s->err);
    s->err.error_exit = &jpeg_error_exit;
    s->err.emit_message = &jpeg_emit_message;
    s->cinfo.client_data = s;  // jpeg_create_decompress keeps err and client_data
    if (setjmp(s->jump)) {
        jpeg_destroy_decompress(&s->cinfo);  // safe on a partly created object (it checks cinfo->mem)
        return false;
    }
    jpeg_create_decompress(&s->cinfo);
    jpeg_mem_src(&s->cinfo, p, static_cast<unsigned long>(n));
    jpeg_read_header(&s->cinfo, TRUE);
    if (static_cast<long>(s->cinfo.image_width) != width || static_cast<long>(s->cinfo.image_height) != height ||
        s->cinfo.num_components != comps) {
        std::snprintf(s->message, sizeof s->message, "the decoder sees %u x %u with %d components, the header %d x %d with %d",
                      s->cinfo.image_width, s->cinfo.image_height, s->cinfo.num_components, width, height, comps);
        jpeg_destroy_decompress(&s->cinfo);
        return false;
    }
    s->cinfo.out_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
    s->cinfo.dct_method = JDCT_ISLOW;
    s->cinfo.do_fancy_upsampling = TRUE;
    jpeg_start_decompress(&s->cinfo);
    if (static_cast<long>(s->cinfo.output_width) != width || static_cast<long>(s->cinfo.output_height) != height ||
        s->cinfo.output_components != comps) {  // libjpeg guarantees this; `out` holds exactly that much
        std::snprintf(s->message, sizeof s->message, "output of %u x %u x %d samples, expected %d x %d x %d",
                      s->cinfo.output_width, s->cinfo.output_height, s->cinfo.output_components, width, height, comps);
        jpeg_destroy_decompress(&s->cinfo);
        return false;
    }
    const std::size_t row_bytes = static_cast<std::size_t>(width) * static_cast<std::size_t>(comps);
    while (s->cinfo.output_scanline < s->cinfo.output_height) {
        JSAMPROW row = out + static_cast<std::size_t>(s->cinfo.output_scanline) * row_bytes;
        jpeg_read_scanlines(&s->cinfo, &row, 1);
    }
    jpeg_finish_decompress(&s->cinfo);  // reads to EOI; a warning there still fails the file
    jpeg_destroy_decompress(&s->cinfo);
    return true;
}

/// A JPEG as (C, H, W): libjpeg-turbo's samples, then the same channel conversion as every other
/// format. CMYK/YCCK files become RGB exactly as PIL does it: Image.open gives mode "CMYK" read
/// with rawmode "CMYK;I" (it inverts libjpeg's Adobe-convention samples: C' = 255 - C, K' = 255 - K;
/// PIL 9.4 JpegImagePlugin.py), and convert("RGB") computes R = (255 - K') - C' * (255 - K') / 255
/// with PIL's rounded division by 255 (Convert.c cmyk2rgb, MULDIV255: t = a*b + 128,
/// ((t >> 8) + t) >> 8); likewise G from M, B from Y. convert("L") then goes through that RGB.
inline Image decode_jpeg(const std::uint8_t* p, std::size_t n, const ImageHeader& h, int channels, const std::string& name) {
    const int w = h.info.width, hh = h.info.height, comps = h.jpeg_components;
    const std::size_t pixels = static_cast<std::size_t>(w) * static_cast<std::size_t>(hh);
    std::vector<std::uint8_t> samples(pixels * static_cast<std::size_t>(comps));  // (H, W, comps)
    JpegSession session{};
    if (!jpeg_decode_samples(&session, p, n, samples.data(), w, hh, comps)) {
        if (session.warning) throw image_error(name, "corrupt JPEG (libjpeg-turbo: ", session.message, ")");
        throw image_error(name, "cannot decode JPEG (libjpeg-turbo: ", session.message, ")");
    }
    int comp = comps;
    if (comps == 4) {  // CMYK -> RGB in place: pixel i's 3 outputs never overrun pixel i's 4 inputs
        for (std::size_t i = 0; i < pixels; ++i) {
            const std::uint8_t* cmyk = samples.data() + 4 * i;
            const std::uint32_t nk = cmyk[3];  // 255 - K' (K' = 255 - K after PIL's inversion)
            std::uint8_t rgb[3];
            for (int c = 0; c < 3; ++c) {
                const std::uint32_t t = (255u - cmyk[c]) * nk + 128u;  // C' * (255 - K') + 128
                rgb[c] = static_cast<std::uint8_t>(nk - (((t >> 8) + t) >> 8));
            }
            std::memcpy(samples.data() + 3 * i, rgb, 3);
        }
        comp = 3;
    }
    Image img;
    img.pixels = samples_to_chw(samples.data(), w, hh, comp, channels, 255u);
    img.bit_depth = 8;
    img.stored_channels = comp;
    return img;
}

// ---- PNG: zlib, then unfiltering and unpacking here (ISO/IEC 15948:2004, the PNG spec) ------
// stb_image's PNG path inflated the image data into a buffer it doubles for as long as the stream
// produces output, whatever IHDR declares (a 1 x 1 PNG could cost a gigabyte), with an inflater
// more lenient than zlib (incomplete Huffman codes, no Adler-32 check). Checking the stream with
// zlib first and decoding it again with stb cost a fifth to a third of the decode; so PNG is
// decoded here: one zlib pass into a buffer of exactly the size IHDR declares, then the filters
// and the sample unpacking, which are short and fully specified. stb_image keeps BMP.

/// Inflates the IDAT chunks' zlib stream (spec 10) into `raw`, which holds exactly h.png_raw_bytes:
/// refused as soon as the stream would yield one byte more (libpng and PIL stop there too), or
/// when zlib finds it damaged (a bad header, code, distance or Adler-32), or when it ends before
/// every scanline is there. A stream whose scanlines are all there but whose end is missing is
/// accepted, as stb_image and libpng accept it.
inline void inflate_png(const std::uint8_t* p, const ImageHeader& h, std::uint8_t* raw, const std::string& name) {
    z_stream zs{};
    if (inflateInit(&zs) != Z_OK) throw image_error(name, "cannot decode PNG (zlib: inflateInit failed)");
    struct End { z_stream* z; ~End() { inflateEnd(z); } } end{&zs};
    const std::uint64_t want = h.png_raw_bytes;
    std::uint64_t produced = 0;
    std::uint8_t spare = 0;  // where a byte past the declared size would go: its arrival is the refusal
    bool ended = false;
    for (const auto& [offset, length] : h.png_idat) {
        zs.next_in = const_cast<Bytef*>(p + offset);  // zlib's API is not const-correct; it only reads
        zs.avail_in = static_cast<uInt>(length);       // IDAT lengths are < 2^31 (parse_png)
        while (zs.avail_in > 0 && !ended) {
            const bool full = produced == want;
            zs.next_out = full ? &spare : raw + produced;
            zs.avail_out = full ? 1u : static_cast<uInt>(std::min<std::uint64_t>(want - produced, std::uint64_t{1} << 30));
            const uInt before = zs.avail_out;
            const int rc = inflate(&zs, Z_NO_FLUSH);
            const std::uint64_t made = before - zs.avail_out;
            if (full && made > 0)
                throw image_error(name, "corrupt PNG: the image data inflates to more than the ", want,
                                  " bytes its header declares (", h.info.width, " x ", h.info.height,
                                  "); refused while decoding, after ", produced + made, " bytes");
            produced += made;
            if (rc == Z_STREAM_END) ended = true;
            else if (rc == Z_BUF_ERROR) break;  // no progress possible: this chunk's input is used up
            else if (rc != Z_OK)
                throw image_error(name, "corrupt PNG: damaged compressed image data (zlib: ", zs.msg ? zs.msg : "error ",
                                  zs.msg ? "" : std::to_string(rc), ")");
        }
        if (ended) break;  // data after the end of the stream is ignored, as libpng does
    }
    if (produced < want)
        throw image_error(name, ended ? "corrupt PNG: the image data inflates to " : "truncated PNG: the image data ends after ",
                          produced, " of the ", want, " bytes its header declares (", h.info.width, " x ", h.info.height, ")");
}

/// Undoes one scanline's filter in place (spec 9.2-9.4): `prior` is the previous scanline of the
/// same pass, already unfiltered (zeros for the first), `bpp` the bytes per complete pixel
/// (at least 1). Arithmetic is modulo 256, as the spec defines it.
inline bool unfilter_png_row(std::uint8_t* row, const std::uint8_t* prior, std::size_t len, std::size_t bpp, int type) {
    switch (type) {
        case 0: return true;
        case 1:  // Sub
            for (std::size_t i = bpp; i < len; ++i) row[i] = static_cast<std::uint8_t>(row[i] + row[i - bpp]);
            return true;
        case 2:  // Up
            for (std::size_t i = 0; i < len; ++i) row[i] = static_cast<std::uint8_t>(row[i] + prior[i]);
            return true;
        case 3:  // Average
            for (std::size_t i = 0; i < bpp && i < len; ++i) row[i] = static_cast<std::uint8_t>(row[i] + (prior[i] >> 1));
            for (std::size_t i = bpp; i < len; ++i)
                row[i] = static_cast<std::uint8_t>(row[i] + ((unsigned{row[i - bpp]} + prior[i]) >> 1));
            return true;
        case 4:  // Paeth: the neighbour (left a, above b, upper left c) nearest to a + b - c, ties in that order
            for (std::size_t i = 0; i < bpp && i < len; ++i) row[i] = static_cast<std::uint8_t>(row[i] + prior[i]);
            for (std::size_t i = bpp; i < len; ++i) {
                const int a = row[i - bpp], b = prior[i], c = prior[i - bpp];
                const int pa = std::abs(b - c), pb = std::abs(a - c), pc = std::abs(a + b - 2 * c);
                row[i] = static_cast<std::uint8_t>(row[i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c));
            }
            return true;
        default: return false;
    }
}

/// Decodes a PNG whose chunks parse_png has checked. The colour samples come out interleaved
/// (grey 1, else 3 per pixel; alpha is not kept, as read_image drops it): 8-bit files as 0..255,
/// 1, 2 and 4-bit grey scaled by 255 / (2^d - 1) (the spec's sample depth scaling, as stb_image
/// and PIL do), palette indices looked up (an index past the palette's end gives black, as Pillow
/// 13 does; Pillow 9.4 gave the index's grey level), 16-bit files as 0..65535. Adam7 passes
/// (spec 8.2) are scattered to their pixels.
template <class S>
std::vector<S> png_samples(const std::uint8_t* p, const ImageHeader& h, std::vector<std::uint8_t>& raw,
                           int colour, const std::string& name) {
    const int depth = h.png_depth, ct = h.png_color_type;
    const std::size_t spp = ct == 2 ? 3 : ct == 4 ? 2 : ct == 6 ? 4 : 1;  // samples per pixel in the file
    const std::size_t bits = spp * static_cast<std::size_t>(depth), bpp = std::max<std::size_t>(1, bits / 8);
    const std::size_t w = static_cast<std::size_t>(h.info.width), hh = static_cast<std::size_t>(h.info.height);
    const std::size_t oc = static_cast<std::size_t>(colour);
    std::vector<S> out(w * hh * oc);
    std::array<std::uint8_t, 768> palette{};  // entries past PLTE's end stay black
    if (ct == 3) std::memcpy(palette.data(), p + h.png_plte, h.png_plte_len);
    const unsigned grey_scale = depth == 1 ? 255u : depth == 2 ? 85u : depth == 4 ? 17u : 1u;
    static const int adam7[7][4] = {{0, 0, 8, 8}, {4, 0, 8, 8}, {0, 4, 4, 8}, {2, 0, 4, 4}, {0, 2, 2, 4}, {1, 0, 2, 2}, {0, 1, 1, 2}};
    static const int whole[1][4] = {{0, 0, 1, 1}};
    const auto& passes = h.png_interlaced ? adam7 : whole;
    const int npass = h.png_interlaced ? 7 : 1;
    std::vector<std::uint8_t> zeros;
    std::size_t at = 0;  // read position in raw
    for (int ps = 0; ps < npass; ++ps) {
        const std::size_t x0 = static_cast<std::size_t>(passes[ps][0]), y0 = static_cast<std::size_t>(passes[ps][1]);
        const std::size_t dx = static_cast<std::size_t>(passes[ps][2]), dy = static_cast<std::size_t>(passes[ps][3]);
        const std::size_t pw = w > x0 ? (w - x0 + dx - 1) / dx : 0, ph = hh > y0 ? (hh - y0 + dy - 1) / dy : 0;
        if (pw == 0 || ph == 0) continue;  // an empty pass has no scanlines, not even filter bytes
        const std::size_t len = (pw * bits + 7) / 8;
        zeros.assign(len, 0);
        const std::uint8_t* prior = zeros.data();
        for (std::size_t j = 0; j < ph; ++j, at += 1 + len) {
            std::uint8_t* row = raw.data() + at + 1;
            if (!unfilter_png_row(row, prior, len, bpp, raw[at]))
                throw image_error(name, "corrupt PNG: scanline ", j, h.png_interlaced ? " of Adam7 pass " : "",
                                  h.png_interlaced ? std::to_string(ps + 1) : std::string(), " has filter type ",
                                  int{raw[at]}, " (0 to 4 are defined)");
            prior = row;
            S* dst = out.data() + ((y0 + j * dy) * w + x0) * oc;
            const std::size_t step = dx * oc;
            if (depth == 16) {
                for (std::size_t i = 0; i < pw; ++i, dst += step)
                    for (std::size_t c = 0; c < oc; ++c)
                        dst[c] = static_cast<S>(load_be16(row + 2 * (i * spp + c)));
            } else if (depth == 8 && ct != 3) {
                if constexpr (sizeof(S) == 1) {
                    if (oc == spp && dx == 1) {  // the row is the samples: grey or RGB, not interlaced
                        std::memcpy(dst, row, pw * spp);
                        continue;
                    }
                }
                for (std::size_t i = 0; i < pw; ++i, dst += step)
                    for (std::size_t c = 0; c < oc; ++c) dst[c] = static_cast<S>(row[i * spp + c]);
            } else {  // grey or palette indices of 1, 2, 4 or 8 bits, packed from the high bits
                const unsigned mask = (1u << depth) - 1u;
                for (std::size_t i = 0; i < pw; ++i, dst += step) {
                    const std::size_t bit = i * static_cast<std::size_t>(depth);
                    const unsigned v = (unsigned{row[bit / 8]} >> (8 - depth - static_cast<int>(bit % 8))) & mask;
                    if (ct == 3) {
                        for (std::size_t c = 0; c < 3; ++c) dst[c] = static_cast<S>(palette[3 * v + c]);
                    } else {
                        dst[0] = static_cast<S>(v * grey_scale);
                    }
                }
            }
        }
    }
    return out;
}

inline Image decode_png(const std::uint8_t* p, const ImageHeader& h, int channels, const std::string& name) {
    MEDIMG_CHECK(h.png_raw_bytes <= std::numeric_limits<std::size_t>::max(), IoError, "image: ", name,
                 ": PNG of ", h.png_raw_bytes, " bytes of scanlines is more than this machine can address");
    std::vector<std::uint8_t> raw(static_cast<std::size_t>(h.png_raw_bytes));
    inflate_png(p, h, raw.data(), name);
    const int colour = h.png_color_type == 0 || h.png_color_type == 4 ? 1 : 3;
    Image img;
    img.bit_depth = h.info.bit_depth;
    img.stored_channels = h.info.stored_channels;
    if (h.png_depth == 16) {
        const std::vector<std::uint16_t> s = png_samples<std::uint16_t>(p, h, raw, colour, name);
        img.pixels = samples_to_chw(s.data(), h.info.width, h.info.height, colour, channels, 65535u);
    } else {
        const std::vector<std::uint8_t> s = png_samples<std::uint8_t>(p, h, raw, colour, name);
        img.pixels = samples_to_chw(s.data(), h.info.width, h.info.height, colour, channels, 255u);
    }
    return img;
}

inline Image decode_with_stb(const std::uint8_t* p, std::size_t n, const ImageHeader& h, int channels, const std::string& name) {
    if (n > static_cast<std::size_t>(std::numeric_limits<int>::max()))
        throw image_error(name, "file of ", n, " bytes is too large for stb_image (2 GiB)");
    int w = 0, hh = 0, comp = 0;
    Image img;
    img.bit_depth = h.info.bit_depth;
    const int len = static_cast<int>(n);
    if (h.info.bit_depth == 16) {
        stbi_us* px = stbi_load_16_from_memory(p, len, &w, &hh, &comp, 0);
        if (!px) throw image_error(name, "cannot decode ", h.info.format, " (stb_image: ", stbi_failure_reason(), ")");
        struct Free { stbi_us* q; ~Free() { stbi_image_free(q); } } guard{px};
        if (w != h.info.width || hh != h.info.height)
            throw image_error(name, "corrupt ", h.info.format, ": header says ", h.info.width, " x ", h.info.height,
                              ", decoder produced ", w, " x ", hh);
        img.pixels = samples_to_chw(px, w, hh, comp, channels, 65535u);
    } else {
        stbi_uc* px = stbi_load_from_memory(p, len, &w, &hh, &comp, 0);
        if (!px) throw image_error(name, "cannot decode ", h.info.format, " (stb_image: ", stbi_failure_reason(), ")");
        struct Free { stbi_uc* q; ~Free() { stbi_image_free(q); } } guard{px};
        if (w != h.info.width || hh != h.info.height)
            throw image_error(name, "corrupt ", h.info.format, ": header says ", h.info.width, " x ", h.info.height,
                              ", decoder produced ", w, " x ", hh);
        img.pixels = samples_to_chw(px, w, hh, comp, channels, 255u);
    }
    img.stored_channels = comp;
    return img;
}

inline void check_channels_argument(const char* fn, int channels) {
    MEDIMG_CHECK(channels == 0 || channels == 1 || channels == 3, ValueError, fn,
                 ": channels must be 0 (as stored, alpha dropped), 1 or 3, got ", channels);
}

}  // namespace detail

/// Decodes an image held in memory; `name` is used in error messages (usually the file name).
/// Requires: channels is 0 (grey files -> 1, colour files -> 3), 1 or 3.
/// Ensures: pixels is (C, H, W) float in [0, 1]; throws IoError "image: <name>: ..." for an empty,
/// truncated, corrupt or unsupported file, or one with more than opts.max_pixels pixels.
inline Image read_image_from_memory(const std::uint8_t* data, std::size_t size, const std::string& name, int channels = 0,
                                    const ReadOptions& opts = {}) {
    detail::check_channels_argument("read_image_from_memory", channels);
    const detail::ImageHeader h = detail::parse_header(data, size, name);
    detail::check_pixel_limit(h, opts, name);
    if (h.format == detail::ImageFormat::pnm) return detail::decode_pnm(data, size, h, channels, name);
    if (h.format == detail::ImageFormat::jpeg) return detail::decode_jpeg(data, size, h, channels, name);
    if (h.format == detail::ImageFormat::png) return detail::decode_png(data, h, channels, name);
    return detail::decode_with_stb(data, size, h, channels, name);  // BMP
}
inline Image read_image_from_memory(const std::vector<std::uint8_t>& bytes, const std::string& name, int channels = 0,
                                    const ReadOptions& opts = {}) {
    return read_image_from_memory(bytes.data(), bytes.size(), name, channels, opts);
}

/// Reads an image file (PNG 1-16 bit, JPEG, BMP, binary PGM/PPM) as (C, H, W) float in [0, 1].
/// channels: 1 = grey (RGB converted with ITU-R 601-2 luma, as PIL's convert("L")), 3 = RGB (grey
/// replicated), 0 = as stored without alpha. Errors: IoError naming the file (see above).
inline Image read_image(const std::string& path, int channels = 0, const ReadOptions& opts = {}) {
    detail::check_channels_argument("read_image", channels);
    const std::vector<std::uint8_t> bytes = detail::read_image_file(path, opts);
    return read_image_from_memory(bytes, path, channels, opts);
}

/// The header of an image file: format, size, stored channels and bit depth, without decoding.
inline ImageInfo read_image_info(const std::string& path, const ReadOptions& opts = {}) {
    const std::vector<std::uint8_t> bytes = detail::read_image_file(path, opts);
    return detail::parse_header(bytes.data(), bytes.size(), path).info;
}

namespace detail {

inline void stb_append(void* context, void* data, int size) {
    auto* out = static_cast<std::vector<std::uint8_t>*>(context);
    const auto* p = static_cast<const std::uint8_t*>(data);
    out->insert(out->end(), p, p + size);
}

inline void png_chunk(std::vector<std::uint8_t>& out, const char* type, const std::uint8_t* data, std::uint32_t len) {
    const std::uint8_t head[8] = {static_cast<std::uint8_t>(len >> 24), static_cast<std::uint8_t>(len >> 16),
                                  static_cast<std::uint8_t>(len >> 8),  static_cast<std::uint8_t>(len),
                                  static_cast<std::uint8_t>(type[0]),   static_cast<std::uint8_t>(type[1]),
                                  static_cast<std::uint8_t>(type[2]),   static_cast<std::uint8_t>(type[3])};
    out.insert(out.end(), head, head + 8);
    if (len) out.insert(out.end(), data, data + len);
    std::uint32_t crc = png_crc32(0, head + 4, 4);
    if (len) crc = png_crc32(crc, data, len);
    const std::uint8_t tail[4] = {static_cast<std::uint8_t>(crc >> 24), static_cast<std::uint8_t>(crc >> 16),
                                  static_cast<std::uint8_t>(crc >> 8), static_cast<std::uint8_t>(crc)};
    out.insert(out.end(), tail, tail + 4);
}

}  // namespace detail

/// Encodes a (C, H, W) or (H, W) float image with values in [0, 1] as PNG bytes.
/// Requires: C in 1..4 (grey, grey+alpha, RGB, RGBA), H, W >= 1, finite values, bit_depth 8 or 16.
/// Ensures: values are clamped to [0, 1] and rounded to the nearest code (v*255 or v*65535), so
/// read_image returns every written value to within half a code. 8-bit PNGs use stb_image_write
/// (adaptive row filters, zlib level 8); 16-bit PNGs (which stb_image_write cannot write) are
/// assembled here: filter 0 on every row, big-endian samples, deflated by stb's zlib compressor.
inline std::vector<std::uint8_t> encode_png(const Tensor<float, Cpu>& image, int bit_depth = 8) {
    MEDIMG_CHECK(bit_depth == 8 || bit_depth == 16, ValueError, "encode_png: bit_depth must be 8 or 16, got ", bit_depth);
    MEDIMG_CHECK(image.defined() && (image.rank() == 2 || image.rank() == 3), ShapeError,
                 "encode_png: expected a (C, H, W) or (H, W) image, got shape ", image.shape());
    const std::int64_t c = image.rank() == 3 ? image.size(0) : 1;
    const std::int64_t h = image.size(-2), w = image.size(-1);
    MEDIMG_CHECK(c >= 1 && c <= 4 && h >= 1 && w >= 1, ShapeError,
                 "encode_png: need 1 to 4 channels and a non-empty image, got shape ", image.shape());
    MEDIMG_CHECK(w * c * 2 < std::numeric_limits<int>::max() / 2 && h < std::numeric_limits<int>::max(), ShapeError,
                 "encode_png: image too large for PNG encoding, shape ", image.shape());
    MEDIMG_CHECK(h * w * c * (bit_depth / 8) < std::numeric_limits<int>::max() / 2, ShapeError,
                 "encode_png: image too large for PNG encoding, shape ", image.shape());
    const std::int64_t hw = h * w;
    const float* src = image.data();
    const double full = bit_depth == 8 ? 255.0 : 65535.0;
    auto code = [&](std::int64_t ch, std::int64_t i) -> std::uint32_t {
        const float v = src[ch * hw + i];
        MEDIMG_CHECK(std::isfinite(v), ValueError, "encode_png: non-finite value ", v, " at channel ", ch, ", row ", i / w,
                     ", column ", i % w);
        const double x = std::min(1.0, std::max(0.0, static_cast<double>(v)));
        return static_cast<std::uint32_t>(std::floor(x * full + 0.5));
    };
    std::vector<std::uint8_t> out;
    if (bit_depth == 8) {
        std::vector<std::uint8_t> hwc(static_cast<std::size_t>(hw * c));  // (H, W, C)
        for (std::int64_t i = 0; i < hw; ++i)
            for (std::int64_t ch = 0; ch < c; ++ch) hwc[static_cast<std::size_t>(i * c + ch)] = static_cast<std::uint8_t>(code(ch, i));
        const int ok = stbi_write_png_to_func(&detail::stb_append, &out, static_cast<int>(w), static_cast<int>(h),
                                              static_cast<int>(c), hwc.data(), static_cast<int>(w * c));
        MEDIMG_CHECK(ok != 0, IoError, "encode_png: stb_image_write failed for shape ", image.shape());
        return out;
    }
    // 16-bit: raw scanlines = for each row, filter byte 0 then W*C big-endian uint16 samples.
    const std::int64_t row_bytes = 1 + w * c * 2;
    std::vector<std::uint8_t> raw(static_cast<std::size_t>(row_bytes * h));
    for (std::int64_t y = 0; y < h; ++y) {
        std::uint8_t* r = raw.data() + y * row_bytes;
        r[0] = 0;
        for (std::int64_t x = 0; x < w; ++x)
            for (std::int64_t ch = 0; ch < c; ++ch) {
                const std::uint32_t v = code(ch, y * w + x);
                r[1 + (x * c + ch) * 2] = static_cast<std::uint8_t>(v >> 8);
                r[2 + (x * c + ch) * 2] = static_cast<std::uint8_t>(v & 0xFFu);
            }
    }
    int zlen = 0;
    unsigned char* z = stbi_zlib_compress(raw.data(), static_cast<int>(raw.size()), &zlen, 8);  // zlib stream, adler32
    MEDIMG_CHECK(z != nullptr, IoError, "encode_png: zlib compression failed for shape ", image.shape());
    struct Free { unsigned char* q; ~Free() { std::free(q); } } guard{z};
    static const std::uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    out.insert(out.end(), signature, signature + 8);
    const std::uint8_t color_type = c == 1 ? 0 : c == 2 ? 4 : c == 3 ? 2 : 6;
    const auto W = static_cast<std::uint32_t>(w), H = static_cast<std::uint32_t>(h);
    const std::uint8_t ihdr[13] = {static_cast<std::uint8_t>(W >> 24), static_cast<std::uint8_t>(W >> 16),
                                   static_cast<std::uint8_t>(W >> 8),  static_cast<std::uint8_t>(W),
                                   static_cast<std::uint8_t>(H >> 24), static_cast<std::uint8_t>(H >> 16),
                                   static_cast<std::uint8_t>(H >> 8),  static_cast<std::uint8_t>(H),
                                   16, color_type, 0, 0, 0};
    detail::png_chunk(out, "IHDR", ihdr, 13);
    detail::png_chunk(out, "IDAT", z, static_cast<std::uint32_t>(zlen));
    detail::png_chunk(out, "IEND", nullptr, 0);
    return out;
}

/// Writes a (C, H, W) or (H, W) float image in [0, 1] as an 8- or 16-bit PNG (see encode_png),
/// atomically (temporary file in the same directory, fsync, rename). Errors: ValueError/ShapeError
/// for the image, IoError "write_png: cannot write <path>: ..." when the file cannot be written.
inline void write_png(const std::string& path, const Tensor<float, Cpu>& image, int bit_depth = 8) {
    std::vector<std::uint8_t> bytes;
    try {
        bytes = encode_png(image, bit_depth);
    } catch (const ValueError& e) {
        throw ValueError(medimg::detail::concat("write_png: ", path, ": ", e.what()));
    } catch (const ShapeError& e) {
        throw ShapeError(medimg::detail::concat("write_png: ", path, ": ", e.what()));
    }
    io::write_file_atomically(path, {{bytes.data(), bytes.size()}}, "write_png");
}

}  // namespace medimg::data
