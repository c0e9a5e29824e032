// SPDX-License-Identifier: MIT
// data/slices.hpp: which 2-D slices of a volume (a NIfTI file, a multi-frame DICOM) become samples:
// data.volume_axis names the axis of the volume in its RAS+ orientation (sagittal: first, coronal:
// second, axial: third, as nibabel's as_closest_canonical orders them) and data.volume_slices the
// slices along it. The selection is stored in a checkpoint's metadata (docs/formats.md).
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <string>
#include <vector>

#include "medimg/error.hpp"

namespace medimg::data {

/// The axis a NIfTI volume is sliced along, in its RAS+ form: sagittal 0, coronal 1, axial 2.
inline int volume_axis(const std::string& name) {
    if (name == "sagittal") return 0;
    if (name == "coronal") return 1;
    MEDIMG_CHECK(name == "axial", ConfigError, "'data.volume_axis' must be axial, coronal or sagittal; got '", name, "'");
    return 2;
}

/// Which slices of a volume become samples (data.volume_slices): all | middle | every N | range [a, b]
/// (a and b inclusive, 0-based, clipped to the volume; a single slice's file is always its slice 0).
struct SliceSelection {
    enum class Kind { all, middle, every, range };
    Kind kind = Kind::all;
    std::int64_t a = 0, b = 0;  // every: a = N; range: [a, b]

    static SliceSelection parse(const std::string& s) {
        SliceSelection r;
        auto bad = [&]() {
            return ConfigError("'data.volume_slices' must be all, middle, every N or range [a, b]; got '" + s + "'");
        };
        auto number = [&](std::string t) -> std::int64_t {
            t.erase(std::remove(t.begin(), t.end(), ' '), t.end());
            if (t.empty() || t.size() > 9 || !std::all_of(t.begin(), t.end(), [](unsigned char c) { return std::isdigit(c); })) throw bad();
            return std::stoll(t);
        };
        if (s == "all") return r;
        if (s == "middle") {
            r.kind = Kind::middle;
            return r;
        }
        if (s.rfind("every ", 0) == 0) {
            r.kind = Kind::every;
            r.a = number(s.substr(6));
            if (r.a < 1) throw bad();
            return r;
        }
        if (s.rfind("range", 0) == 0) {
            std::string t = s.substr(5);
            const auto open = t.find('['), comma = t.find(','), close = t.find(']');
            if (open == std::string::npos || comma == std::string::npos || close == std::string::npos || !(open < comma && comma < close) ||
                t.find_first_not_of(' ') != open || t.find_first_not_of(' ', close + 1) != std::string::npos)
                throw bad();
            r.kind = Kind::range;
            r.a = number(t.substr(open + 1, comma - open - 1));
            r.b = number(t.substr(comma + 1, close - comma - 1));
            if (r.b < r.a) throw bad();
            return r;
        }
        throw bad();
    }
    std::string text() const {
        switch (kind) {
            case Kind::all: return "all";
            case Kind::middle: return "middle";
            case Kind::every: return "every " + std::to_string(a);
            case Kind::range: return "range [" + std::to_string(a) + ", " + std::to_string(b) + "]";
        }
        return "all";
    }
    /// The slice indices of a volume of `depth` slices (may be empty for a range past its end).
    std::vector<std::int64_t> indices(std::int64_t depth) const {
        std::vector<std::int64_t> out;
        if (depth <= 0) return out;
        switch (kind) {
            case Kind::all:
                for (std::int64_t k = 0; k < depth; ++k) out.push_back(k);
                break;
            case Kind::middle: out.push_back(depth / 2); break;
            case Kind::every:
                for (std::int64_t k = 0; k < depth; k += a) out.push_back(k);
                break;
            case Kind::range:
                for (std::int64_t k = a; k <= std::min(b, depth - 1); ++k) out.push_back(k);
                break;
        }
        return out;
    }
};

}  // namespace medimg::data
