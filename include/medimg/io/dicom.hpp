// SPDX-License-Identifier: MIT
// io/dicom.hpp: reads a DICOM image through GDCM (Grassroots DICOM, Debian libgdcm-dev), the
// library that parses the file and decodes its pixel data in every transfer syntax it knows:
// implicit / explicit VR, little and big endian, deflated, JPEG baseline / extended / lossless,
// JPEG-LS, JPEG 2000 and RLE. medimg does not parse DICOM itself. What it adds:
//   - limits checked before any pixel is decoded (file size, rows x columns x frames x samples),
//     and native pixel data shorter than rows x columns x frames x samples x bits refused;
//   - the stored values as a (frames, samples, rows, columns) float tensor, exactly (every 8- and
//     16-bit value; 32-bit values beyond 2^24 in magnitude round to float);
//   - the modality rescale (Rescale Slope / Intercept at the top level, as pydicom's
//     apply_modality_lut: Hounsfield units for CT), the first VOI window with its VOI LUT
//     Function, Pixel Spacing, and MONOCHROME1 inverted by data::to_unit_range;
//   - one-line IoErrors "dicom: <file>: ..." naming what is wrong (an unsupported transfer syntax
//     by UID and name). GDCM's own diagnostics are silenced: they would be many lines on stderr.
// Deliberately not here: YBR and palette colour (refused: convert to RGB first, docs/formats.md),
// VOI LUT and Modality LUT sequences (the window and the rescale are used), per-frame functional
// groups of enhanced multi-frame objects (the top-level values are used), overlays, icons.
// Needs GDCM: link medimg::dicom (it defines MEDIMG_WITH_DICOM); docs/formats.md.
#pragma once

#if !defined(MEDIMG_WITH_DICOM)
#  error "medimg/io/dicom.hpp needs GDCM: link the target medimg::dicom (it defines MEDIMG_WITH_DICOM); docs/formats.md"
#endif

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <istream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <gdcmDataSet.h>
#include <gdcmException.h>
#include <gdcmGlobal.h>
#include <gdcmImage.h>
#include <gdcmImageWriter.h>
#include <gdcmReader.h>
#include <gdcmSequenceOfFragments.h>
#include <gdcmTrace.h>
#include <gdcmTransferSyntax.h>

#include "medimg/core/tensor.hpp"
#include "medimg/data/image.hpp"
#include "medimg/data/intensity.hpp"
#include "medimg/error.hpp"
#include "medimg/io/atomic_file.hpp"

namespace medimg::io {

/// Limits checked before any pixel is decoded.
struct DicomLimits {
    /// Largest rows x columns x frames x samples accepted (default 256 Mi: a 1 GiB float tensor).
    std::int64_t max_values = std::int64_t{1} << 28;
    /// Largest file accepted, in bytes (default 1 GiB).
    std::int64_t max_file_bytes = std::int64_t{1} << 30;
};

/// A decoded DICOM image and the attributes that say how to show it.
struct DicomImage {
    Tensor<float, Cpu> stored;  // (frames, samples, rows, columns): the stored values
    int rows = 0, columns = 0, frames = 1, samples = 1;
    int bits_allocated = 0, bits_stored = 0;
    bool is_signed = false;
    std::string photometric;          // MONOCHROME1, MONOCHROME2 or RGB
    double slope = 1.0, intercept = 0.0;  // Rescale Slope / Intercept (0028,1053) / (0028,1052)
    std::optional<data::Window> window;   // the first Window Center / Width (0028,1050) / (0028,1051)
    std::optional<std::array<double, 2>> pixel_spacing;  // (row, column) mm: Pixel Spacing, else Imager Pixel Spacing
    std::string modality;             // (0008,0060), e.g. CT, MR, CR
    std::string transfer_syntax_uid, transfer_syntax_name;
    std::string name;                 // the file, for messages

    bool monochrome() const { return samples == 1; }
    /// stored x slope + intercept, in double then float: (frames, 1, rows, columns).
    Tensor<float, Cpu> rescaled() const {
        MEDIMG_CHECK(monochrome(), ValueError, "dicom: ", name, ": rescaled() is for greyscale images; this one is ", photometric);
        auto r = Tensor<float, Cpu>::empty(stored.shape());
        const float* s = stored.data();
        float* d = r.data();
        for (std::int64_t i = 0, n = stored.numel(); i < n; ++i)
            d[i] = static_cast<float>(static_cast<double>(s[i]) * slope + intercept);
        return r;
    }
    /// Values in [0, 1] as the model sees them: (frames, samples, rows, columns). Greyscale: the
    /// rescaled values through `setting` (data/intensity.hpp; min-max over all frames), MONOCHROME1
    /// inverted. RGB: stored / (2^bits_stored - 1), the setting unused.
    Tensor<float, Cpu> to_unit(const data::IntensitySetting& setting) const {
        if (!monochrome()) {
            auto r = Tensor<float, Cpu>::empty(stored.shape());
            const double full = std::ldexp(1.0, bits_stored) - 1.0;
            const float* s = stored.data();
            float* d = r.data();
            for (std::int64_t i = 0, n = stored.numel(); i < n; ++i) d[i] = static_cast<float>(static_cast<double>(s[i]) / full);
            return r;
        }
        if (setting.kind == data::IntensitySetting::Kind::file && window) {
            const auto& w = *window;
            const bool ok = std::isfinite(w.center) && std::isfinite(w.width) &&
                            (w.function == data::VoiFunction::linear ? w.width >= 1.0 : w.width > 0.0);
            MEDIMG_CHECK(ok, IoError, "dicom: ", name, ": the file's window (center ", w.center, ", width ", w.width,
                         ") is not usable (width must be >= 1); set data.window to minmax, a preset or [center, width]");
        }
        auto r = rescaled();
        data::to_unit_range(r.data(), static_cast<std::size_t>(r.numel()), setting, window, photometric == "MONOCHROME1",
                            "dicom: " + name);
        return r;
    }
};

namespace detail {

/// An std::streambuf over bytes in memory (GDCM reads from an std::istream), seekable both ways.
/// It also notes reads that ask for more than is left: GDCM sizes an element's value from its
/// length field and reads what it can, so a value cut by the end of the file would otherwise
/// pass as read (its tail left as zeros). Reads of at most 8 bytes that find nothing left are
/// GDCM probing for the next tag at the end of the data set, not truncation.
class MemoryStreamBuf : public std::streambuf {
public:
    MemoryStreamBuf(const std::uint8_t* p, std::size_t n) {
        char* b = const_cast<char*>(reinterpret_cast<const char*>(p));  // read-only: no put area is set
        setg(b, b, b + n);
    }
    /// The largest number of bytes a read asked for beyond the end (0: none was cut short).
    std::int64_t shortfall() const { return shortfall_; }

protected:
    std::streamsize xsgetn(char* dst, std::streamsize n) override {
        const std::streamsize avail = egptr() - gptr();
        const std::streamsize got = n < avail ? n : avail;
        if (n > avail && (avail > 0 || n > 8)) shortfall_ = std::max<std::int64_t>(shortfall_, static_cast<std::int64_t>(n - avail));
        if (got > 0) {
            std::memcpy(dst, gptr(), static_cast<std::size_t>(got));
            setg(eback(), gptr() + got, egptr());
        }
        return got;
    }
    pos_type seekoff(off_type off, std::ios_base::seekdir dir, std::ios_base::openmode) override {
        char* base = dir == std::ios_base::beg ? eback() : dir == std::ios_base::cur ? gptr() : egptr();
        const std::ptrdiff_t target = (base - eback()) + static_cast<std::ptrdiff_t>(off);
        if (target < 0 || target > egptr() - eback()) return pos_type(off_type(-1));
        setg(eback(), eback() + target, egptr());
        return pos_type(target);
    }
    pos_type seekpos(pos_type pos, std::ios_base::openmode which) override { return seekoff(off_type(pos), std::ios_base::beg, which); }

private:
    std::int64_t shortfall_ = 0;
};

/// GDCM's dictionaries built and its diagnostics silenced, once per process, before the first
/// read (so several loader threads may read at once: each read has its own reader and stream).
inline void gdcm_init() {
    static std::once_flag once;
    std::call_once(once, [] {
        static std::ostream quiet(nullptr);  // no buffer: every write is dropped
        gdcm::Trace::SetStream(quiet);
        gdcm::Trace::SetDebugStream(quiet);
        gdcm::Trace::SetWarningStream(quiet);
        gdcm::Trace::SetErrorStream(quiet);
        gdcm::Trace::DebugOff();
        gdcm::Trace::WarningOff();
        gdcm::Trace::ErrorOff();
        (void)gdcm::Global::GetInstance().GetDicts();
    });
}

/// The value of a string element (trailing spaces and NULs removed), or "" when absent.
inline std::string element_text(const gdcm::DataSet& ds, std::uint16_t group, std::uint16_t element) {
    const gdcm::Tag tag(group, element);
    if (!ds.FindDataElement(tag)) return {};
    const gdcm::ByteValue* bv = ds.GetDataElement(tag).GetByteValue();
    if (!bv || !bv->GetPointer()) return {};
    std::string s(bv->GetPointer(), bv->GetLength());
    while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
    std::size_t b = 0;
    while (b < s.size() && s[b] == ' ') ++b;
    return s.substr(b);
}

/// The numbers of a DS (decimal string) value, split at backslashes; nothing when absent or
/// when a part is not a number.
inline std::optional<std::vector<double>> decimal_strings(const std::string& s) {
    if (s.empty()) return std::nullopt;
    std::vector<double> out;
    std::size_t at = 0;
    while (at <= s.size()) {
        std::size_t end = s.find('\\', at);
        if (end == std::string::npos) end = s.size();
        std::string part = s.substr(at, end - at);
        while (!part.empty() && part.back() == ' ') part.pop_back();
        std::size_t b = 0;
        while (b < part.size() && part[b] == ' ') ++b;
        part = part.substr(b);
        char* stop = nullptr;
        const double v = std::strtod(part.c_str(), &stop);
        if (part.empty() || stop != part.c_str() + part.size() || !std::isfinite(v)) return std::nullopt;
        out.push_back(v);
        at = end + 1;
    }
    return out;
}

/// A walk over the file's element structure before GDCM sees it. Debian's GDCM is built with
/// assertions on, and on some malformed files (a length that runs past the end, a garbled value
/// representation, a preamble with nothing after it) it aborts the process instead of failing
/// the read, or sizes a buffer from a 4 GB length field before noticing the file is short. So
/// every element header is checked here, without interpreting any value (PS3.10 7.1 for the
/// preamble and meta group, PS3.5 7.1 for element encodings, 7.5 for sequences and items, A.4
/// for encapsulated pixel data): the 'DICM' prefix, the meta group in explicit VR little endian,
/// then the data set in the encoding its transfer syntax names, each value inside the file (or
/// its enclosing item), explicit VRs among those PS3.5 defines, undefined lengths only where the
/// standard allows them (SQ, UN, encapsulated pixel data), nesting at most 32 deep. Deflated data
/// sets are refused here (rare for images; gdcmconv --raw converts them).
class StructureWalk {
public:
    StructureWalk(const std::uint8_t* p, std::size_t n, const std::string& name) : p_(p), n_(n), name_(name) {}

    /// "(GGGG,EEEE)" of a tag given as group << 16 | element.
    static std::string tag_text(std::uint32_t tag) { return "(" + hex4(tag >> 16) + "," + hex4(tag & 0xffff) + ")"; }
    /// Checks the preamble and the meta group; returns the Transfer Syntax UID.
    std::string meta() {
        if (n_ < 132 || std::memcmp(p_ + 128, "DICM", 4) != 0)
            throw error("not a DICOM file: no 'DICM' at byte 128 (files without the PS3.10 preamble are not read)");
        std::size_t at = 132;
        std::string ts;
        // File meta information: group 0002, explicit VR little endian.
        std::optional<std::size_t> group_end;  // where (0002,0000) says the meta group ends
        // PS3.10 7.1: the meta group starts with its length, (0002,0000) UL (type 1); GDCM's
        // fallback for a file without it asserts on several malformed inputs (fuzzing).
        if (n_ < 144 || u16(132, true) != 0x0002 || u16(134, true) != 0x0000 || p_[136] != 'U' || p_[137] != 'L')
            throw error("the meta group does not start with its length, (0002,0000) UL (PS3.10 7.1)");
        while (at + 4 <= n_ && u16(at, true) == 0x0002) {
            const Header h = header(at, true, true, 0);
            if (h.length == undefined) throw error("meta element (0002,", hex4(h.tag & 0xffff), ") has an undefined length");
            if (h.tag == 0x00020010u) ts = text(h.value, h.length);
            at = h.value + h.length;
            if (h.tag == 0x00020000u) {
                if (h.length != 4) throw error("the meta group length (0002,0000) has ", h.length, " bytes, not 4");
                group_end = at + u32(h.value, true);
            }
        }
        // GDCM reads the meta group by its length element; one that disagrees with the elements
        // makes it read a tag from the middle of a value (and assert).
        if (group_end && *group_end != at)
            throw error("the meta group length (0002,0000) says it ends at byte ", *group_end, " but its elements end at byte ", at);
        if (ts.empty()) throw error("the meta group has no Transfer Syntax UID (0002,0010)");
        // GDCM asserts when the file ends with the meta group (it reads on for one more element).
        if (at + 8 > n_) throw error("no data set follows the meta group (", n_ - at, " bytes after it)");
        data_set_ = at;
        return ts;
    }
    /// Checks the data set after the meta group, encoded as transfer syntax `ts` says.
    void data_set(const std::string& ts) {
        if (ts == "1.2.840.10008.1.2.1.99")
            throw error("transfer syntax ", ts, " (Deflated Explicit VR Little Endian) is not read (gdcmconv --raw inflates it)");
        const bool explicit_vr = ts != "1.2.840.10008.1.2";
        const bool little = ts != "1.2.840.10008.1.2.2";
        // A data set written in implicit VR under an explicit transfer syntax is a known writer
        // error; pydicom reads it as implicit, GDCM 3.0 misreads it (as explicit: garbage lengths).
        if (explicit_vr && data_set_ + 8 <= n_) {
            const char vr[2] = {static_cast<char>(p_[data_set_ + 4]), static_cast<char>(p_[data_set_ + 5])};
            if (!known_vr(vr))
                throw error("the data set is written in implicit VR but transfer syntax ", ts,
                            " says explicit (a writer's error that GDCM does not read)");
        }
        walk(data_set_, n_, explicit_vr, little, 0, false);
    }
    /// Number of Frames (0028,0008) of the top-level data set as the walk saw it ("" when absent).
    const std::string& number_of_frames() const { return frames_; }

private:
    static constexpr std::uint32_t undefined = 0xffffffffu;
    struct Header {
        std::uint32_t tag = 0;
        char vr[2] = {0, 0};
        std::uint32_t length = 0;
        std::size_t value = 0;  // offset of the value
    };
    const std::uint8_t* p_;
    std::size_t n_;
    const std::string& name_;
    std::size_t data_set_ = 0;
    std::string frames_;

    template <class... Args>
    IoError error(Args&&... what) const {
        return IoError(medimg::detail::concat("dicom: ", name_, ": ", std::forward<Args>(what)...));
    }
    static std::string hex4(std::uint32_t v) {
        static const char* digits = "0123456789ABCDEF";
        std::string s(4, '0');
        for (int i = 3; i >= 0; --i, v >>= 4) s[static_cast<std::size_t>(i)] = digits[v & 0xf];
        return s;
    }
    std::string tag_name(std::uint32_t tag) const { return tag_text(tag); }
    std::uint16_t u16(std::size_t at, bool little) const {
        return little ? static_cast<std::uint16_t>(p_[at] | (p_[at + 1] << 8)) : static_cast<std::uint16_t>((p_[at] << 8) | p_[at + 1]);
    }
    std::uint32_t u32(std::size_t at, bool little) const {
        return little ? (std::uint32_t{p_[at]} | std::uint32_t{p_[at + 1]} << 8 | std::uint32_t{p_[at + 2]} << 16 | std::uint32_t{p_[at + 3]} << 24)
                      : (std::uint32_t{p_[at]} << 24 | std::uint32_t{p_[at + 1]} << 16 | std::uint32_t{p_[at + 2]} << 8 | std::uint32_t{p_[at + 3]});
    }
    std::string text(std::size_t at, std::uint32_t len) const {
        std::string s(reinterpret_cast<const char*>(p_ + at), len);
        while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
        return s;
    }
    static std::string printable(const char* vr) {  // 'AB', or the bytes in hex when not printable
        const auto c0 = static_cast<unsigned char>(vr[0]), c1 = static_cast<unsigned char>(vr[1]);
        if (c0 >= 0x20 && c0 < 0x7f && c1 >= 0x20 && c1 < 0x7f) return std::string("'") + vr[0] + vr[1] + "'";
        static const char* digits = "0123456789ABCDEF";
        return std::string("0x") + digits[c0 >> 4] + digits[c0 & 15] + digits[c1 >> 4] + digits[c1 & 15];
    }
    static bool long_form(const char* vr) {  // VRs with 2 reserved bytes and a 32-bit length (PS3.5 Table 7.1-1)
        for (const char* v : {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
            if (vr[0] == v[0] && vr[1] == v[1]) return true;
        return false;
    }
    static bool known_vr(const char* vr) {  // PS3.5 6.2
        for (const char* v : {"AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW",
                              "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV"})
            if (vr[0] == v[0] && vr[1] == v[1]) return true;
        return false;
    }
    /// One element header at `at`, within [.., end): tag, VR, length; the value must fit.
    Header header(std::size_t at, bool explicit_vr, bool little, std::size_t end_hint) const {
        const std::size_t end = end_hint ? end_hint : n_;
        Header h;
        if (at + 8 > end) throw error("truncated: an element header at byte ", at, " runs past the end (", end, ")");
        h.tag = std::uint32_t{u16(at, little)} << 16 | u16(at + 2, little);
        const bool item_tag = (h.tag >> 16) == 0xfffe;
        if (explicit_vr && !item_tag) {
            h.vr[0] = static_cast<char>(p_[at + 4]);
            h.vr[1] = static_cast<char>(p_[at + 5]);
            if (!known_vr(h.vr))
                throw error("element ", tag_name(h.tag), " at byte ", at, " has value representation ", printable(h.vr),
                            ", not one DICOM defines (a garbled file?)");
            if (long_form(h.vr)) {
                if (at + 12 > end) throw error("truncated: the element header of ", tag_name(h.tag), " at byte ", at, " runs past the end");
                h.length = u32(at + 8, little);
                h.value = at + 12;
            } else {
                h.length = u16(at + 6, little);
                h.value = at + 8;
            }
        } else {
            h.length = u32(at + 4, little);
            h.value = at + 8;
        }
        if (h.length != undefined && h.value + h.length > end)
            throw error("truncated: element ", tag_name(h.tag), " at byte ", at, " has length ", h.length, " but only ", end - h.value,
                        " bytes remain");
        return h;
    }
    /// Elements from `at` to `end` (or to an item delimiter when `in_undefined_item`); returns where it stopped.
    std::size_t walk(std::size_t at, std::size_t end, bool explicit_vr, bool little, int depth, bool in_undefined_item) {
        if (depth > 32) throw error("sequences nested more than 32 deep");
        while (at < end) {
            if (!in_undefined_item && end == n_ && at + 8 > end) throw error("truncated: ", end - at, " stray bytes at the end");
            const Header h = header(at, explicit_vr, little, end);
            if (h.tag == 0xfffee00du) {  // item delimiter
                if (!in_undefined_item) throw error("an item delimiter at byte ", at, " outside an item");
                if (h.length != 0) throw error("the item delimiter at byte ", at, " has length ", h.length, ", not 0");
                return h.value;
            }
            if ((h.tag >> 16) == 0xfffe) throw error("item tag ", tag_name(h.tag), " at byte ", at, " outside a sequence");
            const bool pixel_data = h.tag == 0x7fe00010u;
            // Pixel Data is OB or OW (or UN); GDCM asserts on any other VR there (fuzzing).
            if (pixel_data && explicit_vr && !((h.vr[0] == 'O' && (h.vr[1] == 'B' || h.vr[1] == 'W')) || (h.vr[0] == 'U' && h.vr[1] == 'N')))
                throw error("Pixel Data (7FE0,0010) at byte ", at, " has value representation ", printable(h.vr), ", not OB or OW");
            if (h.length == undefined) {
                const bool sq = !explicit_vr || (h.vr[0] == 'S' && h.vr[1] == 'Q') || (h.vr[0] == 'U' && h.vr[1] == 'N');
                if (pixel_data && (!explicit_vr || h.vr[0] == 'O')) {
                    at = fragments(h.value, end, little);
                } else if (sq && !pixel_data) {
                    const bool inner_explicit = explicit_vr && !(h.vr[0] == 'U' && h.vr[1] == 'N');  // UN: implicit VR LE inside
                    at = items(h.value, end, inner_explicit, inner_explicit ? little : true, depth + 1, true);
                } else {
                    throw error("element ", tag_name(h.tag), " at byte ", at, " has an undefined length, which only sequences and "
                                "encapsulated pixel data may have");
                }
                continue;
            }
            if (depth == 0 && h.tag == 0x00280008u) frames_ = text(h.value, h.length);
            // A sequence of defined length: its items are checked too (GDCM parses them).
            const bool sq = explicit_vr ? (h.vr[0] == 'S' && h.vr[1] == 'Q')
                                        : (h.length >= 8 && u16(h.value, little) == 0xfffe && u16(h.value + 2, little) == 0xe000);
            if (sq && h.length > 0) items(h.value, h.value + h.length, explicit_vr, little, depth + 1, false);
            at = h.value + h.length;
        }
        if (in_undefined_item) throw error("truncated: an item of undefined length has no item delimiter before byte ", end);
        return at;
    }
    /// Items of a sequence from `at`: to `end` when the sequence has a defined length, else to its delimiter.
    std::size_t items(std::size_t at, std::size_t end, bool explicit_vr, bool little, int depth, bool undefined_sequence) {
        while (at < end) {
            if (at + 8 > end) throw error("truncated: an item header at byte ", at, " runs past the end");
            const std::uint32_t tag = std::uint32_t{u16(at, little)} << 16 | u16(at + 2, little);
            const std::uint32_t len = u32(at + 4, little);
            if (tag == 0xfffee0ddu) {
                if (!undefined_sequence) throw error("a sequence delimiter at byte ", at, " in a sequence of defined length");
                if (len != 0) throw error("the sequence delimiter at byte ", at, " has length ", len, ", not 0");
                return at + 8;
            }
            if (tag != 0xfffee000u) throw error("expected an item (FFFE,E000) at byte ", at, ", found ", tag_name(tag));
            if (len == undefined) {
                at = walk(at + 8, end, explicit_vr, little, depth, true);
            } else {
                if (at + 8 + len > end) throw error("truncated: an item at byte ", at, " has length ", len, " but only ", end - at - 8, " bytes remain");
                walk(at + 8, at + 8 + len, explicit_vr, little, depth, false);
                at += 8 + len;
            }
        }
        if (undefined_sequence) throw error("truncated: a sequence of undefined length has no delimiter before byte ", end);
        return at;
    }
    /// Encapsulated pixel data: items of defined length (the offset table, then fragments), then a sequence delimiter.
    std::size_t fragments(std::size_t at, std::size_t end, bool little) const {
        while (true) {
            if (at + 8 > end) throw error("truncated: the encapsulated pixel data has no sequence delimiter before byte ", end);
            const std::uint32_t tag = std::uint32_t{u16(at, little)} << 16 | u16(at + 2, little);
            const std::uint32_t len = u32(at + 4, little);
            if (tag == 0xfffee0ddu) {
                // PS3.5 7.5: delimiters have length 0 (GDCM would size a buffer by any other)
                if (len != 0) throw error("the pixel data's sequence delimiter at byte ", at, " has length ", len, ", not 0");
                return at + 8;
            }
            if (tag != 0xfffee000u) throw error("encapsulated pixel data: expected a fragment (FFFE,E000) at byte ", at, ", found ", tag_name(tag));
            if (len == undefined || at + 8 + len > end)
                throw error("truncated: a pixel data fragment at byte ", at, " has length ", len == undefined ? std::string("undefined") : std::to_string(len),
                            " but only ", end - at - 8, " bytes remain");
            at += 8 + len;
        }
    }
};

/// Checks the marker structure of one JPEG stream (ITU-T T.81 B.1; JPEG-LS T.87 uses the same
/// framing) in a pixel data fragment before GDCM decodes it: Debian's GDCM aborts the process
/// (gdcm_assert in JPEGBITSCodec::DecodeByStreams) when libjpeg raises a *warning* while reading
/// the header, e.g. for stray bytes before a marker or a stream cut short. So: SOI first, every
/// segment starting at a marker and fitting, a frame header with sane dimensions before the first
/// scan, each scan's entropy-coded data ending at a marker, and EOI before the fragment ends.
/// The frame header must also agree with the data set (rows, columns, samples, at most the bits
/// allocated): GDCM's codecs size their buffers by the JPEG header, not by the checked attributes.
template <class Fail>
void check_jpeg_stream(const std::uint8_t* p, std::size_t n, bool jpeg_ls, const DicomImage& im, const Fail& fail) {
    if (n < 4 || p[0] != 0xFF || p[1] != 0xD8) throw fail("a compressed frame does not start with a JPEG start-of-image marker (FF D8)");
    std::size_t pos = 2;
    bool have_sof = false;
    for (;;) {
        if (pos >= n) throw fail("truncated JPEG frame: it ends before the end-of-image marker (FF D9)");
        if (p[pos] != 0xFF) throw fail("corrupt JPEG frame: stray bytes at offset ", pos, " where a marker should start");
        while (pos < n && p[pos] == 0xFF) ++pos;
        if (pos >= n) throw fail("truncated JPEG frame: it ends inside a marker");
        const unsigned m = p[pos++];
        if (m == 0xD9) return;
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue;
        if (m == 0x00 || m == 0xD8) throw fail("corrupt JPEG frame: marker FF ", m == 0 ? "00" : "D8", " at offset ", pos - 2);
        if (n - pos < 2) throw fail("truncated JPEG frame: a marker at offset ", pos - 2, " has no length");
        const std::size_t len = (std::size_t{p[pos]} << 8) | p[pos + 1];
        if (len < 2 || n - pos < len) throw fail("truncated JPEG frame: a segment at offset ", pos, " needs ", len, " bytes, ", n - pos, " remain");
        const bool sof = (m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC) || m == 0xF7;  // F7: JPEG-LS SOF55
        if (sof) {
            if (len < 8) throw fail("corrupt JPEG frame: a frame header of ", len, " bytes");
            const unsigned precision = p[pos + 2], height = (p[pos + 3] << 8) | p[pos + 4], width = (p[pos + 5] << 8) | p[pos + 6],
                           comps = p[pos + 7];
            if (precision < 2 || precision > 16 || height == 0 || width == 0 || comps < 1 || comps > 4 || len < 8 + 3 * comps)
                throw fail("corrupt JPEG frame: frame header of ", precision, "-bit, ", width, " x ", height, ", ", comps, " components");
            if (static_cast<int>(width) != im.columns || static_cast<int>(height) != im.rows || static_cast<int>(comps) != im.samples ||
                static_cast<int>(precision) > im.bits_allocated)
                throw fail("the JPEG frame is ", width, " x ", height, " with ", comps, " components of ", precision, " bits but the data set says ",
                           im.columns, " x ", im.rows, " with ", im.samples, " of at most ", im.bits_allocated);
            have_sof = true;
        }
        pos += len;
        if (m == 0xDA) {
            if (!have_sof) throw fail("corrupt JPEG frame: a scan before the frame header");
            // a marker ends it: T.81 stuffs FF 00 and uses RSTn inside; T.87 (JPEG-LS) stuffs a
            // zero bit after FF, so only FF 80..FF are markers there
            auto data_byte = [&](std::uint8_t next) { return jpeg_ls ? next < 0x80 : next == 0x00 || (next >= 0xD0 && next <= 0xD7); };
            while (pos + 1 < n && !(p[pos] == 0xFF && !data_byte(p[pos + 1]))) ++pos;
            if (pos + 1 >= n) throw fail("truncated JPEG frame: it ends inside the scan data, before FF D9");
        }
    }
}

/// A JPEG 2000 frame's image size (ISO/IEC 15444-1 A.5.1, the SIZ segment after SOC) must agree with
/// the data set, for the same reason as above: openjpeg allocates by it.
template <class Fail>
void check_j2k_stream(const std::uint8_t* p, std::size_t n, const DicomImage& im, const Fail& fail) {
    if (n < 4 || p[0] != 0xFF || p[1] != 0x4F) return;  // not a bare codestream (a JP2 file): GDCM decides
    if (n < 42 || p[2] != 0xFF || p[3] != 0x51) throw fail("corrupt JPEG 2000 frame: no image size (SIZ) segment after its start");
    auto u32 = [&](std::size_t at) { return std::uint32_t{p[at]} << 24 | std::uint32_t{p[at + 1]} << 16 | std::uint32_t{p[at + 2]} << 8 | p[at + 3]; };
    const std::uint32_t xsiz = u32(8), ysiz = u32(12), x0 = u32(16), y0 = u32(20);
    const unsigned comps = (p[40] << 8) | p[41];
    if (xsiz <= x0 || ysiz <= y0 || xsiz - x0 != static_cast<std::uint32_t>(im.columns) || ysiz - y0 != static_cast<std::uint32_t>(im.rows) ||
        comps != static_cast<unsigned>(im.samples))
        throw fail("the JPEG 2000 frame is ", xsiz - std::min(x0, xsiz), " x ", ysiz - std::min(y0, ysiz), " with ", comps,
                   " components but the data set says ", im.columns, " x ", im.rows, " with ", im.samples);
}

/// An RLE frame (PS3.5 Annex G) checked before GDCM decodes it: GDCM 3.0.21's RLE decoder reads
/// past its input on a malformed segment (a SEGV under AddressSanitizer; fuzzing). The 64-byte
/// header must list bits allocated / 8 x samples segments at increasing offsets inside the
/// fragment, the first at 64, and each segment's PackBits runs (G.3.1) must produce rows x columns
/// bytes without reading past the segment's end.
template <class Fail>
void check_rle_frame(const std::uint8_t* p, std::size_t n, const DicomImage& im, const Fail& fail) {
    auto u32 = [&](std::size_t at) { return std::uint32_t{p[at]} | std::uint32_t{p[at + 1]} << 8 | std::uint32_t{p[at + 2]} << 16 | std::uint32_t{p[at + 3]} << 24; };
    if (n < 64) throw fail("truncated RLE frame: ", n, " bytes, shorter than its 64-byte header");
    const std::uint32_t segments = u32(0), expected = static_cast<std::uint32_t>(im.bits_allocated / 8 * im.samples);
    if (segments != expected)
        throw fail("the RLE frame has ", segments, " segments but ", im.samples, " samples of ", im.bits_allocated, " bits need ", expected);
    const std::size_t plane = static_cast<std::size_t>(im.rows) * static_cast<std::size_t>(im.columns);
    for (std::uint32_t k = 0; k < segments; ++k) {
        const std::size_t begin = u32(4 + 4 * k), end = k + 1 < segments ? u32(8 + 4 * k) : n;
        if ((k == 0 && begin != 64) || begin >= end || end > n)
            throw fail("corrupt RLE frame: segment ", k, " spans bytes ", begin, " to ", end, " of a ", n, "-byte fragment");
        std::size_t at = begin, produced = 0;
        while (produced < plane) {
            if (at >= end) throw fail("truncated RLE frame: segment ", k, " ends after ", produced, " of its ", plane, " bytes");
            const int c = static_cast<std::int8_t>(p[at++]);
            if (c >= 0) {
                if (end - at < static_cast<std::size_t>(c) + 1) throw fail("truncated RLE frame: a literal run of segment ", k, " runs past its end");
                at += static_cast<std::size_t>(c) + 1;
                produced += static_cast<std::size_t>(c) + 1;
            } else if (c != -128) {
                if (at >= end) throw fail("truncated RLE frame: a replicate run of segment ", k, " runs past its end");
                ++at;
                produced += static_cast<std::size_t>(1 - c);
            }
        }
    }
}

inline bool is_jpeg_family(gdcm::TransferSyntax::TSType t) {
    using TS = gdcm::TransferSyntax;
    return t == TS::JPEGBaselineProcess1 || t == TS::JPEGExtendedProcess2_4 || t == TS::JPEGExtendedProcess3_5 ||
           t == TS::JPEGSpectralSelectionProcess6_8 || t == TS::JPEGFullProgressionProcess10_12 || t == TS::JPEGLosslessProcess14 ||
           t == TS::JPEGLosslessProcess14_1 || t == TS::JPEGLSLossless || t == TS::JPEGLSNearLossless;
}

/// Names of transfer syntaxes newer than GDCM 3.0 (PS3.6 Table A-1), for the refusal message.
inline const char* transfer_syntax_name(const std::string& uid) {
    struct Name { const char* uid; const char* name; };
    static constexpr Name names[] = {
        {"1.2.840.10008.1.2.4.201", "High-Throughput JPEG 2000 Image Compression (Lossless Only)"},
        {"1.2.840.10008.1.2.4.202", "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)"},
        {"1.2.840.10008.1.2.4.203", "High-Throughput JPEG 2000 Image Compression"},
        {"1.2.840.10008.1.2.4.110", "JPEG XL Lossless"},
        {"1.2.840.10008.1.2.4.111", "JPEG XL JPEG Recompression"},
        {"1.2.840.10008.1.2.4.112", "JPEG XL"},
        {"1.2.840.10008.1.2.8.1", "Deflated Image Frame Compression"},
        {"1.2.840.10008.1.2.4.95", "JPIP Referenced Deflate"},
        {"1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video"},
        {"1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video"},
        {"1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2"},
        {"1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1"},
        {"1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1"},
    };
    for (const auto& n : names)
        if (uid == n.uid) return n.name;
    const auto ts = gdcm::TransferSyntax::GetTSType(uid.c_str());
    if (ts != gdcm::TransferSyntax::TS_END) return gdcm::TransferSyntax::GetTSString(ts);
    return "a transfer syntax this build does not know";
}

/// Stored samples of one scalar type -> float, (frames, samples, rows, columns) from GDCM's buffer
/// (frames of rows x columns pixels; samples interleaved per pixel or, planar configuration 1, per plane).
template <class S>
void samples_to_float(const char* buf, DicomImage& im, bool planar) {
    const std::int64_t plane = std::int64_t{im.rows} * im.columns, S_ = im.samples;
    float* out = im.stored.data();
    for (std::int64_t f = 0; f < im.frames; ++f) {
        const char* src = buf + static_cast<std::size_t>(f * plane * S_) * sizeof(S);
        float* dst = out + f * plane * S_;
        for (std::int64_t s = 0; s < S_; ++s)
            for (std::int64_t p = 0; p < plane; ++p) {
                const std::int64_t at = planar ? s * plane + p : p * S_ + s;
                S v;
                std::memcpy(&v, src + static_cast<std::size_t>(at) * sizeof(S), sizeof(S));
                dst[s * plane + p] = static_cast<float>(v);
            }
    }
}

}  // namespace detail

/// Decodes a DICOM file held in memory; `name` is used in messages (usually the file's path).
/// GDCM parses the data set (gdcm::Reader) and decodes the pixel data (gdcm::Image::GetBuffer,
/// its codecs); the image attributes are read here from the data set, not through GDCM's
/// ImageReader, whose per-SOP-class heuristics (spacing, origin, frame increments) assert on
/// files that lack what they expect (an RT Dose without Number of Frames aborts the process).
/// Errors: IoError "dicom: <name>: ..." (not DICOM, malformed, no pixel data, an unsupported
/// transfer syntax or photometric interpretation, truncated pixel data, over the limits).
inline DicomImage read_dicom_from_memory(const std::uint8_t* data, std::size_t size, const std::string& name,
                                         const DicomLimits& limits = {}) {
    detail::gdcm_init();
    auto fail = [&](auto&&... what) { return IoError(medimg::detail::concat("dicom: ", name, ": ", what...)); };
    if (size == 0) throw fail("empty file");
    detail::StructureWalk walk(data, size, name);
    const std::string ts_uid = walk.meta();
    const auto ts_type = gdcm::TransferSyntax::GetTSType(ts_uid.c_str());
    if (ts_type == gdcm::TransferSyntax::TS_END)
        throw fail("transfer syntax ", ts_uid, " (", detail::transfer_syntax_name(ts_uid), ") is not one GDCM can decode");
    walk.data_set(ts_uid);

    detail::MemoryStreamBuf buf(data, size);
    std::istream in(&buf);
    gdcm::Reader reader;
    reader.SetStream(in);
    bool ok = false;
    try {
        ok = reader.Read();
    } catch (const std::bad_alloc&) {
        throw fail("an element's length asks for more memory than there is (a corrupt length field?)");
    } catch (const std::exception&) {
        ok = false;
    }
    if (!ok) throw fail("GDCM could not parse the data set (", size, " bytes; malformed?)");
    if (buf.shortfall() > 0)
        throw fail("truncated: an element's value runs ", buf.shortfall(), " bytes past the end of the ", size, "-byte file");
    const gdcm::DataSet& ds = reader.GetFile().GetDataSet();
    const gdcm::Tag pixel_tag(0x7fe0, 0x0010);
    if (!ds.FindDataElement(pixel_tag)) throw fail("holds no pixel data (a DICOM object without an image)");

    // The Image Pixel module (PS3.3 C.7.6.3). GDCM stores values little endian whatever the
    // file's byte order, so US values are read as such.
    auto us = [&](std::uint16_t g, std::uint16_t e, const char* what, std::optional<int> dflt) -> int {
        const gdcm::Tag tag(g, e);
        const gdcm::ByteValue* bv = ds.FindDataElement(tag) ? ds.GetDataElement(tag).GetByteValue() : nullptr;
        if (!bv || bv->GetLength() == 0) {
            if (dflt) return *dflt;
            throw fail("the image has no ", what, " (", detail::StructureWalk::tag_text(std::uint32_t{g} << 16 | e), ")");
        }
        if (bv->GetLength() != 2) throw fail(what, " has ", bv->GetLength(), " bytes, not the 2 of an unsigned short");
        const auto* b = reinterpret_cast<const std::uint8_t*>(bv->GetPointer());
        return b[0] | (b[1] << 8);
    };
    DicomImage im;
    im.name = name;
    im.transfer_syntax_uid = ts_uid;
    im.transfer_syntax_name = detail::transfer_syntax_name(ts_uid);
    im.rows = us(0x0028, 0x0010, "Rows", std::nullopt);
    im.columns = us(0x0028, 0x0011, "Columns", std::nullopt);
    im.samples = us(0x0028, 0x0002, "Samples per Pixel", 1);
    im.bits_allocated = us(0x0028, 0x0100, "Bits Allocated", std::nullopt);
    im.bits_stored = us(0x0028, 0x0101, "Bits Stored", im.bits_allocated);
    const int high_bit = us(0x0028, 0x0102, "High Bit", im.bits_stored - 1);
    const int representation = us(0x0028, 0x0103, "Pixel Representation", 0);
    const int planar = im.samples > 1 ? us(0x0028, 0x0006, "Planar Configuration", 0) : 0;
    im.is_signed = representation == 1;
    const std::string frames_text = detail::element_text(ds, 0x0028, 0x0008);
    if (!frames_text.empty()) {
        const auto f = detail::decimal_strings(frames_text);
        if (!f || (*f)[0] != std::floor((*f)[0]) || (*f)[0] < 1 || (*f)[0] > 1e9) throw fail("Number of Frames '", frames_text, "' is not a whole number >= 1");
        im.frames = static_cast<int>((*f)[0]);
    }
    im.photometric = detail::element_text(ds, 0x0028, 0x0004);
    im.modality = detail::element_text(ds, 0x0008, 0x0060);
    if (im.rows <= 0 || im.columns <= 0) throw fail("image of ", im.rows, " rows x ", im.columns, " columns");
    const std::int64_t values = std::int64_t{im.rows} * im.columns * im.frames * im.samples;
    if (values > limits.max_values)
        throw fail(im.rows, " rows x ", im.columns, " columns x ", im.frames, " frames x ", im.samples, " samples = ", values,
                   " values exceeds the limit of ", limits.max_values, " (DicomLimits::max_values)");
    const bool grey = im.photometric == "MONOCHROME1" || im.photometric == "MONOCHROME2";
    if (!(grey && im.samples == 1) && !(im.photometric == "RGB" && im.samples == 3))
        throw fail("photometric interpretation ", im.photometric.empty() ? std::string("(none)") : im.photometric, " with ", im.samples,
                   " samples per pixel is not read (greyscale MONOCHROME1/2 and RGB are; convert colour to RGB first, "
                   "e.g. gdcmconv --raw)");
    if (!grey && im.is_signed) throw fail("signed RGB samples are not read (colour samples are unsigned, PS3.3 C.7.6.3.1.4)");
    if (im.bits_allocated != 8 && im.bits_allocated != 16 && im.bits_allocated != 32)
        throw fail(im.bits_allocated, " bits allocated is not read (8, 16 and 32-bit integer samples are)");
    if (im.bits_stored < 1 || im.bits_stored > im.bits_allocated || high_bit != im.bits_stored - 1 || representation > 1 || planar > 1)
        throw fail("inconsistent pixel format: bits allocated ", im.bits_allocated, ", stored ", im.bits_stored, ", high bit ", high_bit,
                   ", pixel representation ", representation, ", planar configuration ", planar);
    // GDCM 3.0.21's codecs assert (abort) on 8 or 32 bits allocated with fewer stored (fuzzing):
    // refused. (16 bits allocated with 12 stored, the usual CT and MR case, is read.)
    if ((im.bits_allocated == 8 || im.bits_allocated == 32) && im.bits_stored != im.bits_allocated)
        throw fail(im.bits_allocated, " bits allocated with ", im.bits_stored, " stored is not read (GDCM needs all ", im.bits_allocated,
                   " bits stored)");
    const int bytes_per_sample = im.bits_allocated / 8;
    const gdcm::TransferSyntax ts(ts_type);
    const gdcm::DataElement& pixel_data = ds.GetDataElement(pixel_tag);
    // Native (not encapsulated) pixel data must hold every sample it announces; GDCM would
    // otherwise hand back a buffer whose tail is undefined.
    if (!ts.IsEncapsulated()) {
        const gdcm::ByteValue* bv = pixel_data.GetByteValue();
        const std::int64_t have = bv ? static_cast<std::int64_t>(bv->GetLength()) : 0;
        const std::int64_t need = values * bytes_per_sample;
        if (have < need)
            throw fail("pixel data holds ", have, " bytes but ", im.rows, " rows x ", im.columns, " columns x ", im.frames, " frames x ",
                       im.samples, " samples x ", im.bits_allocated, " bits need ", need, " (truncated file?)");
    } else if (const gdcm::SequenceOfFragments* frags = pixel_data.GetSequenceOfFragments(); !frags || frags->GetNumberOfFragments() == 0) {
        throw fail("transfer syntax ", ts_uid, " (", im.transfer_syntax_name, ") is encapsulated but the pixel data holds no fragments");
    } else if (ts_type == gdcm::TransferSyntax::RLELossless) {
        if (frags->GetNumberOfFragments() != static_cast<std::size_t>(im.frames))  // PS3.5 A.4.2: one fragment per frame
            throw fail("RLE pixel data has ", frags->GetNumberOfFragments(), " fragments for ", im.frames, " frames");
        for (std::size_t f = 0; f < frags->GetNumberOfFragments(); ++f) {
            const gdcm::ByteValue* fv = frags->GetFragment(f).GetByteValue();
            detail::check_rle_frame(fv && fv->GetPointer() ? reinterpret_cast<const std::uint8_t*>(fv->GetPointer()) : nullptr,
                                    fv ? static_cast<std::size_t>(fv->GetLength()) : std::size_t{0}, im, [&](auto&&... what) { return fail("frame ", f, ": ", what...); });
        }
    } else if (ts_type == gdcm::TransferSyntax::JPEG2000Lossless || ts_type == gdcm::TransferSyntax::JPEG2000) {
        // One codestream per frame; the first fragment of each starts it (the basic offset table,
        // fragment 0, is skipped by GDCM's own count): checked when it is a bare codestream.
        for (std::size_t f = 0; f < frags->GetNumberOfFragments(); ++f) {
            const gdcm::ByteValue* fv = frags->GetFragment(f).GetByteValue();
            if (fv && fv->GetPointer())
                detail::check_j2k_stream(reinterpret_cast<const std::uint8_t*>(fv->GetPointer()), fv->GetLength(), im,
                                         [&](auto&&... what) { return fail("fragment ", f, ": ", what...); });
        }
    } else if (detail::is_jpeg_family(ts_type)) {
        // One JPEG stream per frame, possibly split over several fragments: the fragments joined
        // hold `frames` streams, each checked (a trailing pad byte after the last EOI is allowed).
        std::vector<std::uint8_t> joined;
        for (std::size_t f = 0; f < frags->GetNumberOfFragments(); ++f) {
            const gdcm::ByteValue* fv = frags->GetFragment(f).GetByteValue();
            if (fv && fv->GetPointer()) joined.insert(joined.end(), fv->GetPointer(), fv->GetPointer() + fv->GetLength());
        }
        std::size_t at = 0;
        for (int f = 0; f < im.frames; ++f) {
            while (at < joined.size() && joined[at] == 0x00) ++at;  // padding to an even fragment length
            const std::size_t start = at;
            auto frame_fail = [&](auto&&... what) { return fail("frame ", f, ": ", what...); };
            // the stream's end: the first EOI after its start (entropy data cannot contain FF D9)
            std::size_t end = start;
            while (end + 1 < joined.size() && !(joined[end] == 0xFF && joined[end + 1] == 0xD9)) ++end;
            end = std::min(joined.size(), end + 2);
            detail::check_jpeg_stream(joined.data() + start, end - start,
                                      ts_type == gdcm::TransferSyntax::JPEGLSLossless || ts_type == gdcm::TransferSyntax::JPEGLSNearLossless,
                                      im, frame_fail);
            at = end;
        }
    }

    gdcm::Image img;
    img.SetNumberOfDimensions(im.frames > 1 ? 3 : 2);
    img.SetDimension(0, static_cast<unsigned int>(im.columns));
    img.SetDimension(1, static_cast<unsigned int>(im.rows));
    if (im.frames > 1) img.SetDimension(2, static_cast<unsigned int>(im.frames));
    img.SetPixelFormat(gdcm::PixelFormat(static_cast<unsigned short>(im.samples), static_cast<unsigned short>(im.bits_allocated),
                                         static_cast<unsigned short>(im.bits_stored), static_cast<unsigned short>(high_bit),
                                         static_cast<unsigned short>(representation)));
    img.SetPhotometricInterpretation(gdcm::PhotometricInterpretation(gdcm::PhotometricInterpretation::GetPIType(im.photometric.c_str())));
    img.SetTransferSyntax(ts);
    img.SetPlanarConfiguration(static_cast<unsigned int>(planar));
    img.SetDataElement(pixel_data);
    const unsigned long length = img.GetBufferLength();
    if (static_cast<std::int64_t>(length) != values * bytes_per_sample)
        throw fail("GDCM reports ", length, " bytes of pixels for ", values, " samples of ", bytes_per_sample, " bytes");
    std::vector<char> pixels(length);
    bool decoded = false;
    try {
        decoded = img.GetBuffer(pixels.data());
    } catch (const std::bad_alloc&) {
        throw fail("decoding the pixel data asks for more memory than there is");
    } catch (const std::exception&) {
        decoded = false;
    }
    if (!decoded)
        throw fail("GDCM could not decode the pixel data (transfer syntax ", ts_uid, ", ", im.transfer_syntax_name, "): corrupt or truncated");
    im.stored = Tensor<float, Cpu>::empty(Shape{im.frames, im.samples, im.rows, im.columns});
    const bool planes = im.samples > 1 && img.GetPlanarConfiguration() == 1;
    const int kind = bytes_per_sample * 2 + (im.is_signed ? 1 : 0);
    switch (kind) {
        case 2: detail::samples_to_float<std::uint8_t>(pixels.data(), im, planes); break;
        case 3: detail::samples_to_float<std::int8_t>(pixels.data(), im, planes); break;
        case 4: detail::samples_to_float<std::uint16_t>(pixels.data(), im, planes); break;
        case 5: detail::samples_to_float<std::int16_t>(pixels.data(), im, planes); break;
        case 8: detail::samples_to_float<std::uint32_t>(pixels.data(), im, planes); break;
        default: detail::samples_to_float<std::int32_t>(pixels.data(), im, planes); break;
    }

    // Modality rescale, window and spacing (as pydicom's apply_modality_lut / apply_voi_lut read them).
    if (auto v = detail::decimal_strings(detail::element_text(ds, 0x0028, 0x1053))) im.slope = (*v)[0];
    if (auto v = detail::decimal_strings(detail::element_text(ds, 0x0028, 0x1052))) im.intercept = (*v)[0];
    if (!std::isfinite(im.slope) || !std::isfinite(im.intercept) || im.slope == 0.0)
        throw fail("Rescale Slope ", im.slope, " / Intercept ", im.intercept, " is not usable (slope must be finite and non-zero)");
    const auto centers = detail::decimal_strings(detail::element_text(ds, 0x0028, 0x1050));
    const auto widths = detail::decimal_strings(detail::element_text(ds, 0x0028, 0x1051));
    if (centers && widths) {
        data::Window w{(*centers)[0], (*widths)[0], data::VoiFunction::linear};
        const std::string fn = detail::element_text(ds, 0x0028, 0x1056);
        if (fn == "LINEAR_EXACT") w.function = data::VoiFunction::linear_exact;
        else if (fn == "SIGMOID") w.function = data::VoiFunction::sigmoid;
        else if (!fn.empty() && fn != "LINEAR") throw fail("VOI LUT Function '", fn, "' is not LINEAR, LINEAR_EXACT or SIGMOID");
        im.window = w;
    }
    auto spacing = detail::decimal_strings(detail::element_text(ds, 0x0028, 0x0030));
    if (!spacing) spacing = detail::decimal_strings(detail::element_text(ds, 0x0018, 0x1164));
    if (spacing && spacing->size() >= 2) im.pixel_spacing = std::array<double, 2>{(*spacing)[0], (*spacing)[1]};
    return im;
}

/// The number of frames of a DICOM file without decoding it: the structure check of
/// read_dicom_from_memory and the top-level Number of Frames (1 when absent). For data set
/// indexing; a file that passes here may still fail to decode. Errors as read_dicom's.
inline int read_dicom_frames(const std::string& path, const DicomLimits& limits = {}) {
    const auto bytes = data::detail::read_whole_file(path, limits.max_file_bytes, "dicom", "DicomLimits::max_file_bytes");
    if (bytes.empty()) throw IoError("dicom: " + path + ": empty file");
    detail::StructureWalk walk(bytes.data(), bytes.size(), path);
    const std::string ts = walk.meta();
    if (gdcm::TransferSyntax::GetTSType(ts.c_str()) == gdcm::TransferSyntax::TS_END)
        throw IoError("dicom: " + path + ": transfer syntax " + ts + " (" + detail::transfer_syntax_name(ts) + ") is not one GDCM can decode");
    walk.data_set(ts);
    std::string t = walk.number_of_frames();
    while (!t.empty() && (t.back() == ' ' || t.back() == '\0')) t.pop_back();
    if (t.empty()) return 1;
    const auto f = detail::decimal_strings(t);
    if (!f || (*f)[0] != std::floor((*f)[0]) || (*f)[0] < 1 || (*f)[0] > 1e9)
        throw IoError("dicom: " + path + ": Number of Frames '" + t + "' is not a whole number >= 1");
    return static_cast<int>((*f)[0]);
}

/// Reads a DICOM file (see read_dicom_from_memory). Errors: IoError "dicom: <path>: ...".
inline DicomImage read_dicom(const std::string& path, const DicomLimits& limits = {}) {
    const auto bytes = data::detail::read_whole_file(path, limits.max_file_bytes, "dicom", "DicomLimits::max_file_bytes");
    return read_dicom_from_memory(bytes.data(), bytes.size(), path, limits);
}

/// What write_dicom_ct puts in a file besides the pixels.
struct DicomCtOptions {
    double pixel_spacing = 1.0;               // mm, rows and columns
    data::Window window{40, 80};              // Window Center / Width (the brain window)
    std::string patient_name = "Phantom^Synthetic", patient_id = "PHANTOM";
    std::string uid_suffix = "1";             // digits: distinguishes the UIDs of one file from another's
};

/// Writes a single-frame CT slice, Explicit VR Little Endian, through GDCM's writer: `hu` is
/// (1, H, W) or (H, W) in Hounsfield units, stored as 12-bit unsigned values hu + 1024 (clipped to
/// 0..4095, rounded) with Rescale Intercept -1024, Slope 1, and the window of `o`. UIDs are
/// 2.25.<number> (PS3.5 B.2) built from `o.uid_suffix`, so a seeded data set is written the same
/// each time. Atomic (io/atomic_file.hpp). Used by medimg-phantoms --format dicom.
inline void write_dicom_ct(const std::string& path, const Tensor<float, Cpu>& hu, const DicomCtOptions& o = {}) {
    detail::gdcm_init();
    MEDIMG_CHECK((hu.rank() == 3 && hu.size(0) == 1) || hu.rank() == 2, ShapeError, "write_dicom_ct: expected (1, H, W) or (H, W), got ",
                 hu.shape());
    MEDIMG_CHECK(!o.uid_suffix.empty() && o.uid_suffix.size() <= 30 &&
                     o.uid_suffix.find_first_not_of("0123456789") == std::string::npos && o.uid_suffix[0] != '0',
                 ValueError, "write_dicom_ct: uid_suffix must be 1 to 30 digits without a leading zero, got '", o.uid_suffix, "'");
    const auto H = static_cast<unsigned>(hu.size(hu.rank() - 2)), W = static_cast<unsigned>(hu.size(hu.rank() - 1));
    std::vector<std::uint16_t> stored(static_cast<std::size_t>(H) * W);
    for (std::size_t i = 0; i < stored.size(); ++i) {
        const double v = std::nearbyint(static_cast<double>(hu.data()[i]) + 1024.0);
        stored[i] = static_cast<std::uint16_t>(std::clamp(v, 0.0, 4095.0));
    }
    gdcm::ImageWriter writer;
    gdcm::Image& img = writer.GetImage();
    img.SetNumberOfDimensions(2);
    img.SetDimension(0, W);
    img.SetDimension(1, H);
    img.SetPixelFormat(gdcm::PixelFormat(1, 16, 12, 11, 0));
    img.SetPhotometricInterpretation(gdcm::PhotometricInterpretation::MONOCHROME2);
    img.SetTransferSyntax(gdcm::TransferSyntax::ExplicitVRLittleEndian);
    img.SetIntercept(-1024.0);
    img.SetSlope(1.0);
    img.SetSpacing(0, o.pixel_spacing);
    img.SetSpacing(1, o.pixel_spacing);
    gdcm::DataElement pixels(gdcm::Tag(0x7fe0, 0x0010));
    pixels.SetVR(gdcm::VR::OW);
    pixels.SetByteValue(reinterpret_cast<const char*>(stored.data()), static_cast<std::uint32_t>(stored.size() * 2));
    img.SetDataElement(pixels);

    gdcm::DataSet& ds = writer.GetFile().GetDataSet();
    auto put = [&](std::uint16_t g, std::uint16_t e, gdcm::VR::VRType vr, std::string v) {
        if (v.size() % 2) v += vr == gdcm::VR::UI ? '\0' : ' ';  // values have even lengths (PS3.5 7.1.1)
        gdcm::DataElement de(gdcm::Tag(g, e));
        de.SetVR(vr);
        de.SetByteValue(v.data(), static_cast<std::uint32_t>(v.size()));
        ds.Replace(de);
    };
    auto number = [](double v) {
        std::ostringstream os;
        os.precision(10);
        os << v;
        return os.str();
    };
    const std::string root = "2.25." + o.uid_suffix;
    put(0x0008, 0x0016, gdcm::VR::UI, "1.2.840.10008.5.1.4.1.1.2");  // CT Image Storage
    put(0x0008, 0x0018, gdcm::VR::UI, root + "1");
    put(0x0008, 0x0020, gdcm::VR::DA, "20000101");  // fixed: GDCM would write today's date and time
    put(0x0008, 0x0030, gdcm::VR::TM, "000000");
    put(0x0008, 0x0060, gdcm::VR::CS, "CT");
    put(0x0010, 0x0010, gdcm::VR::PN, o.patient_name);
    put(0x0010, 0x0020, gdcm::VR::LO, o.patient_id);
    put(0x0020, 0x000d, gdcm::VR::UI, root + "2");
    put(0x0020, 0x000e, gdcm::VR::UI, root + "3");
    put(0x0028, 0x1050, gdcm::VR::DS, number(o.window.center));
    put(0x0028, 0x1051, gdcm::VR::DS, number(o.window.width));
    put(0x0028, 0x1054, gdcm::VR::LO, "HU");
    std::ostringstream out;
    writer.SetStream(out);
    bool ok = false;
    try {
        ok = writer.Write();
    } catch (const std::exception&) {
        ok = false;
    }
    MEDIMG_CHECK(ok, IoError, "dicom: ", path, ": GDCM could not write the image");
    const std::string bytes = out.str();
    write_file_atomically(path, {{bytes.data(), bytes.size()}}, "dicom");
}

}  // namespace medimg::io
