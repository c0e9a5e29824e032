// SPDX-License-Identifier: MIT
// data/readers.hpp: one front door for every file a data set may hold, whatever its format:
//   images  .png .jpg .jpeg .bmp .pgm .ppm .pnm (.tga is listed but refused by the decoder)
//   DICOM   .dcm .dicom, and files of any other name that carry 'DICM' at byte 128
//   NIfTI   .nii .nii.gz
// Names decide what a folder scan takes; reading, the file's bytes decide by each format's rule:
// 'DICM' at byte 128 makes a DICOM file whatever its name and whatever its 128-byte preamble looks
// like (PS3.10 7.1 leaves the preamble to applications; it may hold a TIFF, PNG or JPEG header).
// A sample is a file and, for a volume (a NIfTI file, a multi-frame DICOM), one slice of it
// (SampleRef). read_sample turns it into the (C, H, W) float tensor in [0, 1] the transforms take:
// images as data/image.hpp reads them; DICOM and NIfTI through the windowing of data.window
// (data/intensity.hpp), min-max over the whole volume so that its slices share one scale.
// DICOM needs medimg::dicom and NIfTI medimg::nifti (docs/formats.md): without them such a file is
// refused with a line saying so, and everything else works.
// Volumes are decoded whole; a small cache (VolumeCache, 1 GiB by default) keeps recently used
// ones in their [0, 1] form, so an epoch over the slices of a few volumes decodes each once.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "medimg/core/tensor.hpp"
#include "medimg/data/image.hpp"
#include "medimg/data/intensity.hpp"
#include "medimg/data/slices.hpp"
#include "medimg/error.hpp"
#if defined(MEDIMG_WITH_DICOM)
#  include "medimg/io/dicom.hpp"
#endif
#if defined(MEDIMG_WITH_NIFTI)
#  include "medimg/io/nifti.hpp"
#endif

namespace medimg::data {

enum class FileFormat { unknown, image, dicom, nifti };

/// The lower-cased name of a path's last component.
inline std::string lower_name(const std::filesystem::path& p) {
    std::string s = p.filename().string();
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s;
}

/// True when the regular file `p` carries 'DICM' at byte 128 (PS3.10 7.1). Reads 132 bytes; never
/// opens anything but a regular file (io/input_file.hpp), so a FIFO in a folder cannot block a scan.
inline bool file_has_dicom_marker(const std::filesystem::path& p) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(p, ec)) return false;
    std::ifstream in(p, std::ios::binary);
    char head[132];
    return in.read(head, sizeof head) && std::memcmp(head + 128, "DICM", 4) == 0;
}

/// A file's format from its name, or for a name with none of the extensions below from its first
/// 132 bytes (the DICOM preamble's 'DICM': a PACS export names files IM0001 or by UID,
/// 1.2.840...3.5, whose "extension" is a number). Names are compared case-insensitively. A file
/// named as an image may still be DICOM; read_sample looks at its bytes.
inline FileFormat file_format(const std::filesystem::path& p) {
    const std::string name = lower_name(p);
    auto ends = [&](const char* e) { const std::size_t n = std::strlen(e); return name.size() > n && name.compare(name.size() - n, n, e) == 0; };
    for (const char* e : {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pnm", ".tga"})
        if (ends(e)) return FileFormat::image;
    if (ends(".dcm") || ends(".dicom")) return FileFormat::dicom;
    if (ends(".nii") || ends(".nii.gz")) return FileFormat::nifti;
    if (!name.empty() && name.front() != '.' && file_has_dicom_marker(p)) return FileFormat::dicom;
    return FileFormat::unknown;
}
inline bool is_readable_file(const std::filesystem::path& p) { return file_format(p) != FileFormat::unknown; }

/// Whether this build reads `f` (DICOM and NIfTI are optional components).
inline bool format_available(FileFormat f) {
#if defined(MEDIMG_WITH_DICOM)
    if (f == FileFormat::dicom) return true;
#endif
#if defined(MEDIMG_WITH_NIFTI)
    if (f == FileFormat::nifti) return true;
#endif
    return f == FileFormat::image;
}

/// One sample: a file and, for a volume, the slice of it (-1: the whole file is one 2-D image).
struct SampleRef {
    std::string path;
    std::int64_t slice = -1;
    /// "path" or "path[slice]", as programs print it.
    std::string display() const { return slice < 0 ? path : path + "[" + std::to_string(slice) + "]"; }
    /// The inverse of display(): "file[12]" names slice 12 of file when no file is named
    /// "file[12]" itself; anything else is a whole file.
    static SampleRef from_display(const std::string& s) {
        const auto open = s.rfind('[');
        if (s.empty() || s.back() != ']' || open == std::string::npos || open + 2 > s.size() - 1) return {s, -1};
        const std::string digits = s.substr(open + 1, s.size() - open - 2);
        if (digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); })) return {s, -1};
        std::error_code ec;
        if (std::filesystem::exists(s, ec)) return {s, -1};
        return {s.substr(0, open), std::stoll(digits)};
    }
};

/// How a file becomes model input.
struct ReadSettings {
    int channels = 0;              // 0: as stored, 1 grey, 3 RGB (grey replicated)
    IntensitySetting intensity;    // DICOM / NIfTI windowing
    int axis = 2;                  // NIfTI slicing axis (RAS+): 0 sagittal, 1 coronal, 2 axial
};

namespace detail {

[[noreturn]] inline void format_missing(FileFormat f, const std::string& path) {
    if (f == FileFormat::dicom)
        throw IoError("dicom: " + path + ": this program was built without DICOM support (link medimg::dicom, with GDCM; docs/formats.md)");
    throw IoError("nifti: " + path + ": this program was built without NIfTI support (link medimg::nifti, with nifticlib; docs/formats.md)");
}

/// (S, H, W) in [0, 1] -> (channels, H, W): grey replicated to 3, RGB to grey by ITU-R 601-2 luma
/// (in float, as image.hpp does for 16-bit samples).
inline Tensor<float, Cpu> planes_to_channels(const float* src, std::int64_t s, std::int64_t h, std::int64_t w, int channels) {
    const std::int64_t c = channels == 0 ? s : channels, plane = h * w;
    auto out = Tensor<float, Cpu>::empty(Shape{c, h, w});
    float* d = out.data();
    if (c == s) {
        std::copy(src, src + s * plane, d);
    } else if (s == 1) {
        for (std::int64_t k = 0; k < c; ++k) std::copy(src, src + plane, d + k * plane);
    } else {
        for (std::int64_t i = 0; i < plane; ++i)
            d[i] = static_cast<float>(0.299 * src[i] + 0.587 * src[plane + i] + 0.114 * src[2 * plane + i]);
    }
    return out;
}

}  // namespace detail

/// Volumes in their [0, 1] form, shared by the loader's threads, least recently used dropped first
/// once more than `max_bytes` are held. Keyed by path, intensity setting and axis.
class VolumeCache {
public:
    explicit VolumeCache(std::int64_t max_bytes = std::int64_t{1} << 30) : max_bytes_(max_bytes) {}
    using Loader = std::function<std::shared_ptr<const Tensor<float, Cpu>>()>;
    std::shared_ptr<const Tensor<float, Cpu>> get(const std::string& key, const Loader& load) {
        {
            std::lock_guard<std::mutex> lock(m_);
            const auto it = map_.find(key);
            if (it != map_.end()) {
                order_.splice(order_.begin(), order_, it->second.second);
                return it->second.first;
            }
        }
        auto v = load();  // outside the lock: two threads may decode the same volume once each
        std::lock_guard<std::mutex> lock(m_);
        if (map_.count(key)) return map_[key].first;
        const std::int64_t bytes = v->numel() * static_cast<std::int64_t>(sizeof(float));
        if (bytes > max_bytes_) return v;  // too big to keep: used once
        order_.push_front(key);
        map_[key] = {v, order_.begin()};
        held_ += bytes;
        while (held_ > max_bytes_ && !order_.empty()) {
            const auto& old = order_.back();
            held_ -= map_[old].first->numel() * static_cast<std::int64_t>(sizeof(float));
            map_.erase(old);
            order_.pop_back();
        }
        return v;
    }
    /// The process-wide cache read_sample uses.
    static VolumeCache& shared() {
        static VolumeCache cache;
        return cache;
    }

private:
    std::mutex m_;
    std::int64_t max_bytes_, held_ = 0;
    std::list<std::string> order_;
    std::unordered_map<std::string, std::pair<std::shared_ptr<const Tensor<float, Cpu>>, std::list<std::string>::iterator>> map_;
};

/// Slices of `path` along `axis`: 1 for an image or a single-frame DICOM, the frames of a
/// multi-frame DICOM, the extent of a NIfTI volume along the axis. Errors as the readers'.
inline std::int64_t slice_count(const std::string& path, int axis) {
    const FileFormat f = file_format(path);
    if (f == FileFormat::image) return 1;
    if (!format_available(f)) detail::format_missing(f, path);
#if defined(MEDIMG_WITH_DICOM)
    if (f == FileFormat::dicom) return io::read_dicom_frames(path);  // no decoding
#endif
#if defined(MEDIMG_WITH_NIFTI)
    if (f == FileFormat::nifti) return io::read_nifti_info(path).shape[static_cast<std::size_t>(axis)];
#endif
    (void)axis;
    throw IoError("read: " + path + ": not an image, DICOM or NIfTI file (by its name)");
}

/// The sample as a (C, H, W) float tensor in [0, 1] (see the top of this file). For a volume,
/// `s.slice` picks the frame (DICOM) or the slice along settings.axis (NIfTI); -1 means the
/// middle one (frames / 2: the only one of a single-frame file).
inline Tensor<float, Cpu> read_sample(const SampleRef& s, const ReadSettings& settings) {
    FileFormat f = file_format(s.path);
    if (f == FileFormat::image || f == FileFormat::unknown) {
        // The name says image (or nothing); the bytes decide, read once: 'DICM' at byte 128 is a
        // DICOM file even when its preamble starts like a PNG or JPEG (detail::has_dicom_marker).
        const auto bytes = detail::read_image_file(s.path, ReadOptions{});
        if (!detail::has_dicom_marker(bytes.data(), bytes.size()))
            return read_image_from_memory(bytes, s.path, settings.channels).pixels;
        f = FileFormat::dicom;
    }
    if (!format_available(f)) detail::format_missing(f, s.path);
    const std::string key = s.path + '\n' + settings.intensity.text() + '\n' + std::to_string(settings.axis);
#if defined(MEDIMG_WITH_DICOM)
    if (f == FileFormat::dicom) {
        std::int64_t frames = 0, samples = 0, rows = 0, cols = 0;
        auto load = [&]() {
            const auto im = io::read_dicom(s.path);
            return std::make_shared<const Tensor<float, Cpu>>(im.to_unit(settings.intensity));  // (F, S, H, W)
        };
        // A single-frame file is read each time (nothing to share between samples); frames of a
        // multi-frame file go through the cache.
        std::shared_ptr<const Tensor<float, Cpu>> v = s.slice < 0 ? load() : VolumeCache::shared().get(key, load);
        frames = v->size(0), samples = v->size(1), rows = v->size(2), cols = v->size(3);
        const std::int64_t k = s.slice < 0 ? frames / 2 : s.slice;
        MEDIMG_CHECK(k < frames, IoError, "dicom: ", s.path, ": frame ", k, " asked for but the file has ", frames);
        return detail::planes_to_channels(v->data() + k * samples * rows * cols, samples, rows, cols, settings.channels);
    }
#endif
#if defined(MEDIMG_WITH_NIFTI)
    if (f == FileFormat::nifti) {
        auto v = VolumeCache::shared().get(key, [&]() {
            auto vol = io::read_nifti(s.path);
            to_unit_range(vol.values.data(), static_cast<std::size_t>(vol.values.numel()), settings.intensity, std::nullopt, false,
                          "nifti: " + s.path);
            return std::make_shared<const Tensor<float, Cpu>>(std::move(vol.values));  // (I, J, K)
        });
        const std::int64_t depth = v->size(settings.axis);
        const std::int64_t k = s.slice < 0 ? depth / 2 : s.slice;
        MEDIMG_CHECK(k < depth, IoError, "nifti: ", s.path, ": slice ", k, " asked for but the volume has ", depth, " along that axis");
        // numpy's v[k,:,:] / v[:,k,:] / v[:,:,k] of the (I, J, K) array, row-major.
        const std::int64_t I = v->size(0), J = v->size(1), K = v->size(2);
        const std::int64_t H = settings.axis == 0 ? J : I, W = settings.axis == 2 ? J : K;
        auto plane = Tensor<float, Cpu>::empty(Shape{1, H, W});
        const float* src = v->data();
        float* d = plane.data();
        for (std::int64_t r = 0; r < H; ++r)
            for (std::int64_t c = 0; c < W; ++c) {
                const std::int64_t i = settings.axis == 0 ? k : r, j = settings.axis == 0 ? r : settings.axis == 1 ? k : c,
                                   kk = settings.axis == 2 ? k : c;
                d[r * W + c] = src[(i * J + j) * K + kk];
            }
        return detail::planes_to_channels(d, 1, H, W, settings.channels);
    }
#endif
    (void)key;
    detail::format_missing(f, s.path);
}

}  // namespace medimg::data
