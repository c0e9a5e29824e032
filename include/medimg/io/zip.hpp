// SPDX-License-Identifier: MIT
// io/zip.hpp: a minimal read-only ZIP reader over an archive image held in memory, enough for the
// archives torch.save writes (io/torch_pth.hpp). Follows PKWARE's APPNOTE.TXT 6.3.x: the end of
// central directory record (4.3.16; ZIP64 locator and record, 4.3.14-4.3.15), central directory
// headers (4.3.12) with the ZIP64 extended information extra field (4.5.3), local file headers
// (4.3.7) checked against the central directory, methods 0 (stored, what torch.save writes) and 8
// (deflated, inflated by zlib), CRC-32 always verified (zlib's crc32).
// Hostile archives: every offset and size is checked against the buffer before it is read, the
// entry count and the central directory's size are capped, entries may not overlap (the
// overlapping-entry zip bomb), the entries and the directory must account for every byte of the
// file (no unexplained data between them: so a file's size is what its directory says it needs),
// an inflated entry never grows past its declared size nor the archive's total cap (ZipLimits), and
// a declared size beyond deflate's 1032:1 maximum ratio is refused before anything is inflated.
// ZipArchive::check_layout runs the same checks on a file not yet read, fetching only the end
// records, the central directory and the local headers: structure first, data after.
// Errors: IoError "<tag>: <archive>: <fault>", one line (tag "zip", or the caller's, e.g. "pth").
// Deliberately not here: writing, encryption, multi-disk (spanned) archives, methods other than 0
// and 8, archives with data prepended (self-extractors), data-descriptor cross-checks (the CRC of
// the data is checked against the central directory instead), streaming from a file.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <zlib.h>

#include "medimg/error.hpp"
#include "medimg/io/utf8.hpp"

namespace medimg::io {

/// Limits against hostile archives; the defaults leave room for any real torch.save file.
struct ZipLimits {
    /// Central directory entries (torch.save writes one per storage plus 3 to 5 records).
    std::uint64_t max_entries = 1'000'000;
    /// Bytes inflated from deflated entries over the archive's lifetime (stored entries are views
    /// of the buffer and do not count).
    std::uint64_t max_inflated_bytes = std::uint64_t{4} << 30;
    /// Bytes of the central directory (torch.save writes about 100 per entry).
    std::uint64_t max_directory_bytes = std::uint64_t{128} << 20;
};

/// One file of the archive, as its central directory header describes it.
struct ZipEntry {
    std::string name;
    std::uint16_t flags = 0;              // general purpose bit flag
    std::uint16_t method = 0;             // 0 stored, 8 deflated
    std::uint32_t crc32 = 0;              // of the uncompressed data
    std::uint64_t compressed_size = 0;    // bytes at data_offset
    std::uint64_t uncompressed_size = 0;  // bytes after inflating
    std::uint64_t local_header_offset = 0;
    std::uint64_t data_offset = 0;        // first byte of the (compressed) data in the archive image
};

/// The bytes of one entry: a view of the archive image for a stored entry (offset, size), or the
/// inflated bytes of a deflated one. Holds an offset rather than a pointer, so it stays valid when
/// the owner of the image moves or copies it.
struct ZipData {
    bool is_view = true;
    std::uint64_t offset = 0;            // is_view: where the bytes start in the archive image
    std::uint64_t size = 0;
    std::vector<std::uint8_t> inflated;  // !is_view: the bytes themselves
    const std::uint8_t* data(const std::uint8_t* image) const { return is_view ? image + offset : inflated.data(); }
};

namespace detail {

/// `s` for a message: printable ASCII and valid UTF-8 kept, other bytes as \xNN, at most `cap`
/// bytes of it shown (then "...").
inline std::string printable(std::string_view s, std::size_t cap = 80) {
    std::string out;
    for (std::size_t i = 0; i < s.size();) {
        if (out.size() >= cap) return out + "...";
        const auto c = static_cast<unsigned char>(s[i]);
        const std::size_t n = c >= 0x80 ? utf8_sequence_length(s, i) : (c >= 0x20 && c != 0x7f ? 1 : 0);
        if (n == 0) {
            static const char* hex = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
            ++i;
        } else {
            out.append(s, i, n);
            i += n;
        }
    }
    return out;
}

inline std::uint16_t zip_u16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] | (p[1] << 8)); }
inline std::uint32_t zip_u32(const std::uint8_t* p) {
    return static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
           (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
}
inline std::uint64_t zip_u64(const std::uint8_t* p) {
    return static_cast<std::uint64_t>(zip_u32(p)) | (static_cast<std::uint64_t>(zip_u32(p + 4)) << 32);
}

/// zlib's CRC-32 (the ZIP polynomial) over any length; zlib takes at most 4 GiB per call.
inline std::uint32_t crc32_of(const std::uint8_t* p, std::uint64_t n) {
    uLong crc = ::crc32(0L, Z_NULL, 0);
    while (n > 0) {
        const auto chunk = static_cast<uInt>(std::min<std::uint64_t>(n, std::uint64_t{1} << 30));
        crc = ::crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return static_cast<std::uint32_t>(crc);
}

inline std::string hex32(std::uint32_t v) {
    static const char* hex = "0123456789abcdef";
    std::string s = "0x";
    for (int k = 28; k >= 0; k -= 4) s += hex[(v >> k) & 15u];
    return s;
}

}  // namespace detail

/// A validated view of a ZIP archive image. The constructor reads and checks the central
/// directory and every local header; read() checks and returns one entry's bytes. The image must
/// outlive the ZipArchive (which keeps a pointer, not a copy).
class ZipArchive {
public:
    // Record signatures and sizes (APPNOTE 4.3.7, 4.3.12, 4.3.14, 4.3.15, 4.3.16).
    static constexpr std::uint32_t local_header_signature = 0x04034b50;         // "PK\3\4"
    static constexpr std::uint32_t central_header_signature = 0x02014b50;       // "PK\1\2"
    static constexpr std::uint32_t eocd_signature = 0x06054b50;                 // "PK\5\6"
    static constexpr std::uint32_t zip64_eocd_signature = 0x06064b50;           // "PK\6\6"
    static constexpr std::uint32_t zip64_locator_signature = 0x07064b50;        // "PK\6\7"
    static constexpr std::size_t local_header_size = 30, central_header_size = 46, eocd_size = 22;
    static constexpr std::size_t zip64_locator_size = 20, zip64_eocd_size = 56;
    /// zlib's documented maximum compression factor of deflate (zlib.net/zlib_tech.html: "1032:1"):
    /// a longer declared size cannot be the output of the compressed bytes, so it is refused.
    static constexpr std::uint64_t max_deflate_ratio = 1032;

    /// Parses the archive image [data, data + size). `name` stands for the file and `tag` starts
    /// every message ("zip" when read as a plain archive, "pth" for a torch.save file).
    ZipArchive(const std::uint8_t* data, std::size_t size, std::string name, std::string tag = "zip",
               ZipLimits limits = {})
        : data_(data), size_(size), name_(std::move(name)), tag_(std::move(tag)), limits_(limits) {
        parse_();
    }

    /// reader(offset, count, out) appends bytes [offset, offset + count) of the file to `out`.
    using PieceReader = std::function<void(std::uint64_t, std::uint64_t, std::vector<std::uint8_t>&)>;
    /// Every check of the constructor on an archive of `size` bytes still on disk, reading only
    /// what they look at: the last 64 KiB (the end records), the central directory (at most
    /// ZipLimits::max_directory_bytes) and each local header. Throws the constructor's IoError for
    /// the same faults, so a file whose structure is wrong (or that holds data its directory does not
    /// account for) is refused before its data is read. Nothing is kept.
    static void check_layout(std::uint64_t size, const PieceReader& reader, std::string name, std::string tag = "zip",
                             ZipLimits limits = {}) {
        ZipArchive z(size, reader, std::move(name), std::move(tag), limits);
    }

    const std::string& name() const { return name_; }
    /// Entries in central directory order.
    const std::vector<ZipEntry>& entries() const { return entries_; }
    /// The entry called `name` exactly, or nullptr.
    const ZipEntry* find(std::string_view name) const {
        const auto it = index_.find(std::string(name));
        return it == index_.end() ? nullptr : &entries_[it->second];
    }
    /// Bytes inflated so far (counted against ZipLimits::max_inflated_bytes).
    std::uint64_t inflated_bytes() const { return inflated_total_; }

    /// The entry's uncompressed bytes, CRC-32 checked: a view for a stored entry, inflated for a
    /// deflated one (never past its declared size nor the archive's inflation cap).
    ZipData read(const ZipEntry& e) {
        ZipData out;
        out.size = e.uncompressed_size;
        if (e.method == 0) {
            out.is_view = true;
            out.offset = e.data_offset;
        } else {
            out.is_view = false;
            out.inflated = inflate_(e);
        }
        const std::uint32_t crc = detail::crc32_of(out.data(data_), out.size);
        MEDIMG_CHECK(crc == e.crc32, IoError, prefix_(), "entry '", detail::printable(e.name), "': CRC-32 mismatch (",
                     detail::hex32(crc), " computed, ", detail::hex32(e.crc32),
                     " in the central directory); the file is corrupt");
        return out;
    }

private:
    ZipArchive(std::uint64_t size, const PieceReader& reader, std::string name, std::string tag, ZipLimits limits)
        : data_(nullptr), size_(size), reader_(&reader), name_(std::move(name)), tag_(std::move(tag)), limits_(limits) {
        parse_();
    }

    std::string prefix_() const { return tag_ + ": " + name_ + ": "; }

    // Bytes [off, off + n) of the archive, which the caller has checked lie inside it: the image
    // itself, or (check_layout) a piece read from the file, valid until release_pieces_().
    const std::uint8_t* at_(std::uint64_t off, std::uint64_t n) {
        if (data_) return data_ + off;
        pieces_.emplace_back();
        (*reader_)(off, n, pieces_.back());
        return pieces_.back().data();
    }
    void release_pieces_() { pieces_.clear(); }

    // Is [off, off + n) inside the image? (overflow-safe)
    bool fits_(std::uint64_t off, std::uint64_t n) const { return off <= size_ && n <= size_ - off; }

    void parse_() {
        const std::string p = prefix_();
        // 1. The end of central directory record: the last "PK\5\6" whose comment ends the file exactly.
        MEDIMG_CHECK(size_ >= eocd_size, IoError, p, "file is ", size_,
                     " bytes, too short for a ZIP archive (the end of central directory record alone is 22)");
        std::uint64_t eocd = 0;
        bool found = false;
        const std::uint64_t lowest = size_ - eocd_size > 0xffff ? size_ - eocd_size - 0xffff : 0;
        const std::uint8_t* tail = at_(lowest, size_ - lowest);  // the record and a comment of up to 64 KiB
        for (std::uint64_t pos = size_ - eocd_size + 1; pos-- > lowest;) {
            if (detail::zip_u32(tail + (pos - lowest)) == eocd_signature &&
                pos + eocd_size + detail::zip_u16(tail + (pos - lowest) + 20) == size_) {
                eocd = pos;
                found = true;
                break;
            }
        }
        MEDIMG_CHECK(found, IoError, p,
                     "no end of central directory record (the file is truncated, or not a ZIP archive)");
        const std::uint8_t* r = tail + (eocd - lowest);
        std::uint64_t disk = detail::zip_u16(r + 4), cd_disk = detail::zip_u16(r + 6);
        std::uint64_t count_here = detail::zip_u16(r + 8), count = detail::zip_u16(r + 10);
        std::uint64_t cd_size = detail::zip_u32(r + 12), cd_offset = detail::zip_u32(r + 16);
        std::uint64_t cd_limit = eocd;  // the central directory must end before this

        // 2. ZIP64: a locator right before the record points at the ZIP64 end of central directory.
        const bool sentinels = disk == 0xffff || cd_disk == 0xffff || count_here == 0xffff || count == 0xffff ||
                               cd_size == 0xffffffff || cd_offset == 0xffffffff;
        const bool has_locator =
            eocd >= zip64_locator_size && detail::zip_u32(at_(eocd - zip64_locator_size, 4)) == zip64_locator_signature;
        MEDIMG_CHECK(has_locator || !sentinels, IoError, p,
                     "the end of central directory record holds ZIP64 placeholders (0xffff...) but no ZIP64 locator "
                     "precedes it");
        if (has_locator) {
            const std::uint64_t loc = eocd - zip64_locator_size;
            const std::uint8_t* l = at_(loc, zip64_locator_size);
            const std::uint32_t z_disk = detail::zip_u32(l + 4), disks = detail::zip_u32(l + 16);
            const std::uint64_t z_off = detail::zip_u64(l + 8);
            MEDIMG_CHECK(z_disk == 0 && disks <= 1, IoError, p, "multi-disk (spanned) archives are not supported (",
                         disks, " disks)");
            MEDIMG_CHECK(z_off <= loc && loc - z_off >= zip64_eocd_size, IoError, p,
                         "the ZIP64 locator points at offset ", z_off, ", which leaves no room for the 56-byte ZIP64 "
                         "end of central directory record before the locator at ", loc);
            const std::uint8_t* z = at_(z_off, zip64_eocd_size);
            MEDIMG_CHECK(detail::zip_u32(z) == zip64_eocd_signature, IoError, p,
                         "no ZIP64 end of central directory record at offset ", z_off, " (where the locator points)");
            const std::uint64_t rec = detail::zip_u64(z + 4);  // size of the rest of the record
            MEDIMG_CHECK(rec >= zip64_eocd_size - 12 && rec <= loc - z_off - 12, IoError, p,
                         "the ZIP64 end of central directory record claims ", rec, " bytes, which do not fit before the "
                         "locator");
            disk = detail::zip_u32(z + 16);
            cd_disk = detail::zip_u32(z + 20);
            count_here = detail::zip_u64(z + 24);
            count = detail::zip_u64(z + 32);
            cd_size = detail::zip_u64(z + 40);
            cd_offset = detail::zip_u64(z + 48);
            cd_limit = z_off;
            MEDIMG_CHECK(z_off + 12 + rec == loc, IoError, p, loc - z_off - 12 - rec, " bytes between the ZIP64 end of "
                         "central directory record and its locator, which the archive does not account for");
        }
        MEDIMG_CHECK(disk == 0 && cd_disk == 0 && count_here == count, IoError, p,
                     "multi-disk (spanned) archives are not supported (disk ", disk, ", central directory on disk ",
                     cd_disk, ", ", count_here, " of ", count, " entries on this disk)");
        MEDIMG_CHECK(count <= limits_.max_entries, IoError, p, "the archive declares ", count,
                     " entries, more than the limit of ", limits_.max_entries, " (ZipLimits::max_entries)");
        MEDIMG_CHECK(cd_offset <= cd_limit && cd_size <= cd_limit - cd_offset, IoError, p, "the central directory (",
                     cd_size, " bytes at offset ", cd_offset, ") does not fit before the end of central directory "
                     "record at offset ", cd_limit, " (truncated file, or data prepended to the archive)");
        MEDIMG_CHECK(count <= cd_size / central_header_size, IoError, p, "the archive declares ", count,
                     " entries but its central directory of ", cd_size, " bytes holds at most ",
                     cd_size / central_header_size);
        MEDIMG_CHECK(cd_size <= limits_.max_directory_bytes, IoError, p, "the central directory is ", cd_size,
                     " bytes, more than the limit of ", limits_.max_directory_bytes,
                     " (ZipLimits::max_directory_bytes)");
        MEDIMG_CHECK(cd_offset + cd_size == cd_limit, IoError, p, cd_limit - cd_offset - cd_size,
                     " bytes between the central directory and the end of central directory record, which the archive "
                     "does not account for");

        // 3. Central directory headers.
        entries_.reserve(static_cast<std::size_t>(count));
        std::uint64_t pos = cd_offset;
        const std::uint64_t cd_end = cd_offset + cd_size;
        const std::uint8_t* cd = at_(cd_offset, cd_size);
        for (std::uint64_t i = 0; i < count; ++i) {
            MEDIMG_CHECK(cd_end - pos >= central_header_size, IoError, p, "central directory entry ", i,
                         " at offset ", pos, " runs past the end of the central directory");
            const std::uint8_t* h = cd + (pos - cd_offset);
            MEDIMG_CHECK(detail::zip_u32(h) == central_header_signature, IoError, p, "central directory entry ", i,
                         " at offset ", pos, " has no \"PK\\1\\2\" signature (corrupt central directory)");
            const std::uint64_t name_len = detail::zip_u16(h + 28), extra_len = detail::zip_u16(h + 30),
                                comment_len = detail::zip_u16(h + 32);
            MEDIMG_CHECK(cd_end - pos - central_header_size >= name_len + extra_len + comment_len, IoError, p,
                         "central directory entry ", i, " at offset ", pos, ": its name, extra field and comment (",
                         name_len + extra_len + comment_len, " bytes) run past the end of the central directory");
            ZipEntry e;
            e.name.assign(reinterpret_cast<const char*>(h + central_header_size), static_cast<std::size_t>(name_len));
            e.flags = detail::zip_u16(h + 8);
            e.method = detail::zip_u16(h + 10);
            e.crc32 = detail::zip_u32(h + 16);
            e.compressed_size = detail::zip_u32(h + 20);
            e.uncompressed_size = detail::zip_u32(h + 24);
            std::uint64_t disk_start = detail::zip_u16(h + 34);
            e.local_header_offset = detail::zip_u32(h + 42);
            const std::string q = "entry '" + detail::printable(e.name) + "': ";
            read_zip64_extra_(h + central_header_size + name_len, extra_len, e, &disk_start, q);
            check_entry_(e, disk_start, q);
            MEDIMG_CHECK(index_.emplace(e.name, entries_.size()).second, IoError, p, q,
                         "the name appears twice in the central directory");
            entries_.push_back(std::move(e));
            pos += central_header_size + name_len + extra_len + comment_len;
        }
        MEDIMG_CHECK(pos == cd_end, IoError, p, "the central directory has ", cd_end - pos,
                     " bytes left over after its ", count, " entries");

        // 4. Local headers: present, agreeing with the central directory, data before the central
        //    directory, and no two entries sharing bytes.
        release_pieces_();
        for (ZipEntry& e : entries_) check_local_header_(e, cd_offset);
        std::vector<const ZipEntry*> by_offset;
        by_offset.reserve(entries_.size());
        for (const ZipEntry& e : entries_) by_offset.push_back(&e);
        std::sort(by_offset.begin(), by_offset.end(), [](const ZipEntry* a, const ZipEntry* b) {
            return a->local_header_offset < b->local_header_offset;
        });
        for (std::size_t i = 1; i < by_offset.size(); ++i) {
            const ZipEntry& a = *by_offset[i - 1];
            const ZipEntry& b = *by_offset[i];
            MEDIMG_CHECK(a.data_offset + a.compressed_size <= b.local_header_offset, IoError, p, "entries '",
                         detail::printable(a.name), "' and '", detail::printable(b.name),
                         "' overlap in the file (a zip bomb, or a corrupt archive)");
        }

        // 5. Every byte accounted for: the first local header at 0, each entry's data followed by the
        //    next local header (or the central directory), with at most a data descriptor between
        //    them (APPNOTE 4.3.9: 12 or 16 bytes, 20 or 24 with ZIP64; torch.save writes them). With
        //    the checks of 2 (the directory ends where the end records begin, the last of which ends
        //    the file), the file holds nothing the archive does not say it holds.
        std::uint64_t expect = 0;
        const ZipEntry* before = nullptr;
        for (std::size_t i = 0; i <= by_offset.size(); ++i) {
            const std::uint64_t at = i < by_offset.size() ? by_offset[i]->local_header_offset : cd_offset;
            const std::uint64_t gap = at - expect;  // no underflow: the overlap check above
            const std::uint64_t allowed = before && (before->flags & 0x0008) ? 24 : 0;
            MEDIMG_CHECK(gap <= allowed, IoError, p, gap, " bytes at offset ", expect,
                         before ? " after entry '" + detail::printable(before->name) + "'" : std::string(),
                         " that the archive does not account for (",
                         i < by_offset.size() ? "the next local header is at " : "the central directory is at ", at,
                         "; data prepended or inserted)");
            if (i < by_offset.size()) {
                before = by_offset[i];
                expect = before->data_offset + before->compressed_size;
            }
        }
    }

    // The ZIP64 extended information extra field (header ID 0x0001) holds, in this order, the
    // 64-bit values of exactly those fields that are 0xffffffff (0xffff for the disk) in the header.
    void read_zip64_extra_(const std::uint8_t* x, std::uint64_t len, ZipEntry& e, std::uint64_t* disk_start,
                           const std::string& q) const {
        const std::string p = prefix_() + q;
        const bool need_u = e.uncompressed_size == 0xffffffff, need_c = e.compressed_size == 0xffffffff,
                   need_o = e.local_header_offset == 0xffffffff, need_d = disk_start && *disk_start == 0xffff;
        bool seen = false;
        for (std::uint64_t k = 0; len - k >= 4;) {
            const std::uint16_t id = detail::zip_u16(x + k), n = detail::zip_u16(x + k + 2);
            MEDIMG_CHECK(n <= len - k - 4, IoError, p, "extra field 0x", detail::hex32(id).substr(6), " of ", n,
                         " bytes runs past the end of the extra data");
            if (id == 0x0001) {
                MEDIMG_CHECK(!seen, IoError, p, "two ZIP64 extra fields");
                seen = true;
                const std::uint8_t* f = x + k + 4;
                std::uint64_t left = n;
                auto take8 = [&](std::uint64_t& v) {
                    MEDIMG_CHECK(left >= 8, IoError, p, "the ZIP64 extra field (", n,
                                 " bytes) is too short for the values its header defers to it");
                    v = detail::zip_u64(f);
                    f += 8;
                    left -= 8;
                };
                if (need_u) take8(e.uncompressed_size);
                if (need_c) take8(e.compressed_size);
                if (need_o) take8(e.local_header_offset);
                if (need_d) {
                    MEDIMG_CHECK(left >= 4, IoError, p, "the ZIP64 extra field (", n,
                                 " bytes) is too short for the values its header defers to it");
                    *disk_start = detail::zip_u32(f);
                }
            }
            k += 4 + n;
        }
        MEDIMG_CHECK(seen || !(need_u || need_c || need_o || need_d), IoError, p,
                     "sizes or offset are 0xffffffff (ZIP64) but there is no ZIP64 extra field");
    }

    void check_entry_(const ZipEntry& e, std::uint64_t disk_start, const std::string& q) const {
        const std::string p = prefix_() + q;
        MEDIMG_CHECK(!(e.flags & 0x0001) && !(e.flags & 0x0040) && !(e.flags & 0x2000) && e.method != 99, IoError, p,
                     "is encrypted; encrypted archives are not supported");
        MEDIMG_CHECK(disk_start == 0, IoError, p, "starts on disk ", disk_start,
                     "; multi-disk (spanned) archives are not supported");
        MEDIMG_CHECK(e.method == 0 || e.method == 8, IoError, p, "compression method ", e.method, method_name_(e.method),
                     " is not supported (only 0, stored, and 8, deflated)");
        MEDIMG_CHECK(e.method != 0 || e.compressed_size == e.uncompressed_size, IoError, p, "stored entry has ",
                     e.compressed_size, " bytes in the file but declares ", e.uncompressed_size, " uncompressed");
        MEDIMG_CHECK(e.method != 8 || e.compressed_size == 0 ||
                         e.uncompressed_size / max_deflate_ratio <= e.compressed_size,
                     IoError, p, "declares ", e.uncompressed_size, " bytes inflated from ", e.compressed_size,
                     " compressed, beyond deflate's maximum ratio of 1032:1 (a zip bomb, or a corrupt header)");
        MEDIMG_CHECK(e.method != 8 || e.compressed_size > 0, IoError, p, "deflated entry has no compressed data");
    }

    static const char* method_name_(std::uint16_t m) {
        switch (m) {
            case 1: return " (shrunk)";
            case 6: return " (imploded)";
            case 9: return " (deflate64)";
            case 12: return " (bzip2)";
            case 14: return " (LZMA)";
            case 93: return " (zstd)";
            case 95: return " (xz)";
            default: return "";
        }
    }

    void check_local_header_(ZipEntry& e, std::uint64_t cd_offset) {
        const std::string p = prefix_() + "entry '" + detail::printable(e.name) + "': ";
        const std::uint64_t lh = e.local_header_offset;
        MEDIMG_CHECK(lh <= cd_offset && cd_offset - lh >= local_header_size, IoError, p, "local header offset ", lh,
                     " is not before the central directory at ", cd_offset);
        release_pieces_();  // check_layout: the pieces of the entry before
        const std::uint8_t* h = at_(lh, local_header_size);
        MEDIMG_CHECK(detail::zip_u32(h) == local_header_signature, IoError, p, "no local header (\"PK\\3\\4\") at offset ",
                     lh);
        const std::uint64_t name_len = detail::zip_u16(h + 26), extra_len = detail::zip_u16(h + 28);
        MEDIMG_CHECK(cd_offset - lh - local_header_size >= name_len + extra_len, IoError, p,
                     "the local header's name and extra field run into the central directory");
        h = at_(lh, local_header_size + name_len + extra_len);  // the header with its name and extra field
        const std::uint16_t flags = detail::zip_u16(h + 6), method = detail::zip_u16(h + 8);
        const std::string_view local_name(reinterpret_cast<const char*>(h + local_header_size),
                                          static_cast<std::size_t>(name_len));
        MEDIMG_CHECK(local_name == e.name, IoError, p, "the local header at offset ", lh, " names '",
                     detail::printable(local_name), "' instead");
        MEDIMG_CHECK(method == e.method && (flags & 0x0001) == (e.flags & 0x0001), IoError, p,
                     "the local header says method ", method, ", flags 0x", detail::hex32(flags).substr(6),
                     " but the central directory says method ", e.method, ", flags 0x",
                     detail::hex32(e.flags).substr(6));
        if (!(flags & 0x0008)) {  // without a data descriptor the local header repeats CRC and sizes
            ZipEntry local;
            local.name = e.name;
            local.crc32 = detail::zip_u32(h + 14);
            local.compressed_size = detail::zip_u32(h + 18);
            local.uncompressed_size = detail::zip_u32(h + 22);
            read_zip64_extra_(h + local_header_size + name_len, extra_len, local, nullptr,
                              "entry '" + detail::printable(e.name) + "' (local header): ");
            MEDIMG_CHECK(local.crc32 == e.crc32 && local.compressed_size == e.compressed_size &&
                             local.uncompressed_size == e.uncompressed_size,
                         IoError, p, "the local header says CRC ", detail::hex32(local.crc32), ", ",
                         local.compressed_size, " -> ", local.uncompressed_size, " bytes but the central directory says ",
                         detail::hex32(e.crc32), ", ", e.compressed_size, " -> ", e.uncompressed_size);
        }
        e.data_offset = lh + local_header_size + name_len + extra_len;
        MEDIMG_CHECK(e.compressed_size <= cd_offset - e.data_offset, IoError, p, "its ", e.compressed_size,
                     " bytes of data at offset ", e.data_offset, " run past the start of the central directory at ",
                     cd_offset, " (truncated or corrupt archive)");
    }

    // Raw deflate (RFC 1951) into a buffer that grows with the output, never past the declared
    // size; so memory follows what the data really inflates to, not what the header claims.
    std::vector<std::uint8_t> inflate_(const ZipEntry& e) {
        const std::string p = prefix_() + "entry '" + detail::printable(e.name) + "': ";
        const std::uint64_t want = e.uncompressed_size;
        MEDIMG_CHECK(want <= limits_.max_inflated_bytes && inflated_total_ <= limits_.max_inflated_bytes - want, IoError,
                     p, "inflating its ", want, " bytes would pass the archive's limit of ", limits_.max_inflated_bytes,
                     " inflated bytes (ZipLimits::max_inflated_bytes; ", inflated_total_, " already inflated)");
        MEDIMG_CHECK(want <= std::numeric_limits<std::size_t>::max() / 2, IoError, p, "declares ", want,
                     " bytes, more than this machine can address");
        z_stream zs{};
        MEDIMG_CHECK(inflateInit2(&zs, -MAX_WBITS) == Z_OK, IoError, p, "zlib's inflateInit2 failed");
        struct End {
            z_stream* s;
            ~End() { inflateEnd(s); }
        } end{&zs};

        std::vector<std::uint8_t> out(static_cast<std::size_t>(std::min<std::uint64_t>(want, std::uint64_t{1} << 20)));
        const std::uint8_t* in = data_ + e.data_offset;
        std::uint64_t in_left = e.compressed_size;
        std::uint64_t produced = 0;
        std::uint8_t spare = 0;  // a one-byte window, to see whether the stream goes on past `want`
        for (;;) {
            if (zs.avail_in == 0 && in_left > 0) {
                const auto chunk = static_cast<uInt>(std::min<std::uint64_t>(in_left, std::uint64_t{1} << 30));
                zs.next_in = const_cast<Bytef*>(in);
                zs.avail_in = chunk;
                in += chunk;
                in_left -= chunk;
            }
            if (produced == out.size() && out.size() < want)  // grow by doubling, up to the declared size
                out.resize(static_cast<std::size_t>(std::min<std::uint64_t>(want, 2 * static_cast<std::uint64_t>(out.size()))));
            const bool full = produced == want;
            const std::uint64_t room = full ? 1 : out.size() - produced;
            zs.next_out = full ? &spare : out.data() + produced;
            zs.avail_out = static_cast<uInt>(std::min<std::uint64_t>(room, std::uint64_t{1} << 30));
            const uInt before = zs.avail_out;
            const int rc = ::inflate(&zs, Z_NO_FLUSH);
            const std::uint64_t made = before - zs.avail_out;
            MEDIMG_CHECK(!(full && made > 0), IoError, p, "inflates to more than its declared ", want,
                         " bytes (a zip bomb, or a corrupt header)");
            produced += made;
            if (rc == Z_STREAM_END) break;
            MEDIMG_CHECK(rc == Z_OK || rc == Z_BUF_ERROR, IoError, p, "corrupt deflate data (zlib: ",
                         zs.msg ? zs.msg : "error " + std::to_string(rc), ")");
            MEDIMG_CHECK(!(rc == Z_BUF_ERROR && zs.avail_in == 0 && in_left == 0), IoError, p,
                         "the deflate stream ends early: ", e.compressed_size, " compressed bytes give ", produced,
                         " of the declared ", want);
        }
        MEDIMG_CHECK(produced == want, IoError, p, "inflates to ", produced, " bytes but declares ", want);
        inflated_total_ += produced;
        out.resize(static_cast<std::size_t>(produced));
        return out;
    }

    const std::uint8_t* data_;  // the image; nullptr for check_layout, which reads pieces through reader_
    std::uint64_t size_;
    const PieceReader* reader_ = nullptr;
    std::deque<std::vector<std::uint8_t>> pieces_;  // what at_() read for check_layout
    std::string name_, tag_;
    ZipLimits limits_;
    std::vector<ZipEntry> entries_;
    std::unordered_map<std::string, std::size_t> index_;
    std::uint64_t inflated_total_ = 0;
};

}  // namespace medimg::io
