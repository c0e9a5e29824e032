// SPDX-License-Identifier: MIT
// data/intensity.hpp: how the values of a medical image (Hounsfield units of a CT, arbitrary MR
// intensities) become the [0, 1] grey values the transforms and models take, the role 8-bit / 255
// plays for a PNG. One setting, `data.window` in the configuration, chooses:
//   file           the window the file states (DICOM Window Center / Width, first value, with its
//                  VOI LUT Function), else min-max (the default)
//   minmax         (v - min) / (max - min) over the image (over the whole volume for NIfTI)
//   brain | subdural | bone | lung | abdomen   a named CT preset (HU), see window_preset
//   [center, width]                            a window of one's own, in the file's rescaled units
// A window is the VOI function of DICOM PS3.3 C.11.2.1.2 with output range [0, 1]: LINEAR (the
// default, also for presets and configured windows), LINEAR_EXACT or SIGMOID when the file says so.
// MONOCHROME1 images (low values white) are inverted after windowing (y -> 1 - y) so every image
// reaches the model as MONOCHROME2, as a viewer shows it.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "medimg/error.hpp"

namespace medimg::data {

/// DICOM VOI LUT Function (0028,1056), PS3.3 C.11.2.1.3.
enum class VoiFunction { linear, linear_exact, sigmoid };

/// A value-of-interest window in the image's rescaled units (HU for CT).
struct Window {
    double center = 0.0;
    double width = 1.0;
    VoiFunction function = VoiFunction::linear;
};

/// The named CT presets (center, width in HU), after Radiopaedia's "Windowing (CT)" table: brain
/// W:80 L:40, subdural W:130-300 L:50-100 (the middle of both ranges: W:215 L:75), bone W:1800
/// L:400, lung W:1500 L:-600, abdomen (soft tissue) W:400 L:50. Nothing for another name.
inline std::optional<Window> window_preset(const std::string& name) {
    struct Preset { const char* name; double center, width; };
    static constexpr Preset presets[] = {
        {"brain", 40, 80}, {"subdural", 75, 215}, {"bone", 400, 1800}, {"lung", -600, 1500}, {"abdomen", 50, 400}};
    for (const auto& p : presets)
        if (name == p.name) return Window{p.center, p.width, VoiFunction::linear};
    return std::nullopt;
}

/// The windowing setting (`data.window`), as parsed from the configuration or a checkpoint.
struct IntensitySetting {
    enum class Kind { file, minmax, fixed };
    Kind kind = Kind::file;
    Window window;  // kind == fixed
    std::string preset;  // the preset's name when the fixed window came from one

    /// The setting's text, as the configuration spells it and the checkpoint's metadata stores it:
    /// "file", "minmax", a preset name, or "[center, width]" (shortest round-tripping decimals).
    std::string text() const {
        if (kind == Kind::file) return "file";
        if (kind == Kind::minmax) return "minmax";
        if (!preset.empty()) return preset;
        std::ostringstream os;
        os.precision(17);
        os << '[' << window.center << ", " << window.width << ']';
        return os.str();
    }
    /// "file", "minmax", a preset name, or "[c, w]" / "c,w". `what` names the setting in errors.
    static IntensitySetting parse(const std::string& s, const std::string& what = "data.window") {
        IntensitySetting r;
        if (s == "file") return r;
        if (s == "minmax") {
            r.kind = Kind::minmax;
            return r;
        }
        if (auto w = window_preset(s)) {
            r.kind = Kind::fixed;
            r.window = *w;
            r.preset = s;
            return r;
        }
        std::string t = s;
        if (t.size() >= 2 && t.front() == '[' && t.back() == ']') t = t.substr(1, t.size() - 2);
        const auto comma = t.find(',');
        double c = 0, w = 0;
        bool ok = comma != std::string::npos;
        if (ok) {
            try {
                std::size_t used = 0;
                const std::string a = t.substr(0, comma), b = t.substr(comma + 1);
                c = std::stod(a, &used);
                ok = a.find_first_not_of(" \t", used) == std::string::npos;
                w = std::stod(b, &used);
                ok = ok && b.find_first_not_of(" \t", used) == std::string::npos;
            } catch (const std::exception&) {
                ok = false;
            }
        }
        MEDIMG_CHECK(ok, ConfigError, "'", what, "' must be file, minmax, brain, subdural, bone, lung, abdomen or [center, width]; got '",
                     s, "'");
        return fixed(Window{c, w, VoiFunction::linear}, what);
    }
    /// A window of one's own; width must be >= 1 (PS3.3 C.11.2.1.2.1) and both finite.
    static IntensitySetting fixed(const Window& w, const std::string& what = "data.window") {
        MEDIMG_CHECK(std::isfinite(w.center) && std::isfinite(w.width) && w.width >= 1.0, ConfigError, "'", what,
                     "' must have a width >= 1 and finite numbers; got center ", w.center, ", width ", w.width);
        IntensitySetting r;
        r.kind = Kind::fixed;
        r.window = w;
        return r;
    }
};

/// One value through a window, output in [0, 1] (PS3.3 C.11.2.1.2.1 LINEAR, C.11.2.1.3.2
/// LINEAR_EXACT, C.11.2.1.3.1 SIGMOID with y_min = 0, y_max = 1).
inline double apply_window(double x, const Window& w) {
    const double c = w.center, width = w.width;
    switch (w.function) {
        case VoiFunction::linear: {
            if (x <= c - 0.5 - (width - 1.0) / 2.0) return 0.0;
            if (x > c - 0.5 + (width - 1.0) / 2.0) return 1.0;
            return (x - (c - 0.5)) / (width - 1.0) + 0.5;
        }
        case VoiFunction::linear_exact: {
            if (x <= c - width / 2.0) return 0.0;
            if (x > c + width / 2.0) return 1.0;
            return (x - c) / width + 0.5;
        }
        case VoiFunction::sigmoid: return 1.0 / (1.0 + std::exp(-4.0 * (x - c) / width));
    }
    return 0.0;
}

/// Windows `n` values in place; then y -> 1 - y when `invert` (MONOCHROME1).
inline void window_in_place(float* v, std::size_t n, const Window& w, bool invert) {
    MEDIMG_CHECK(std::isfinite(w.center) && std::isfinite(w.width) &&
                     (w.function == VoiFunction::linear ? w.width >= 1.0 : w.width > 0.0),
                 ValueError, "window_in_place: window width must be ", w.function == VoiFunction::linear ? ">= 1" : "> 0",
                 " and both numbers finite; got center ", w.center, ", width ", w.width);
    for (std::size_t i = 0; i < n; ++i) {
        const double y = apply_window(static_cast<double>(v[i]), w);
        v[i] = static_cast<float>(invert ? 1.0 - y : y);
    }
}

/// (v - min) / (max - min) in place over all `n` values (a constant image becomes 0); then
/// y -> 1 - y when `invert`. Non-finite values are refused (an IoError naming `name`).
inline void minmax_in_place(float* v, std::size_t n, bool invert, const std::string& name) {
    if (n == 0) return;
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (std::size_t i = 0; i < n; ++i) {
        MEDIMG_CHECK(std::isfinite(v[i]), IoError, name, ": value ", v[i], " at element ", i, " is not finite");
        lo = std::min(lo, static_cast<double>(v[i]));
        hi = std::max(hi, static_cast<double>(v[i]));
    }
    const double span = hi - lo;
    for (std::size_t i = 0; i < n; ++i) {
        const double y = span > 0 ? (static_cast<double>(v[i]) - lo) / span : 0.0;
        v[i] = static_cast<float>(invert ? 1.0 - y : y);
    }
}

/// Applies `setting` to values (already rescaled) in place: the configured window, else the file's
/// window when it has one, else min-max. `file_window` is what the file states (nothing for NIfTI).
/// Non-finite values (a NIfTI float volume may hold NaN or Inf) are refused: an IoError naming `name`.
inline void to_unit_range(float* v, std::size_t n, const IntensitySetting& setting, const std::optional<Window>& file_window,
                          bool invert, const std::string& name) {
    for (std::size_t i = 0; i < n; ++i)
        MEDIMG_CHECK(std::isfinite(v[i]), IoError, name, ": value ", v[i], " at element ", i,
                     " is not finite (a model cannot take it; replace NaN / Inf in the file)");
    if (setting.kind == IntensitySetting::Kind::fixed)
        window_in_place(v, n, setting.window, invert);
    else if (setting.kind == IntensitySetting::Kind::file && file_window)
        window_in_place(v, n, *file_window, invert);
    else
        minmax_in_place(v, n, invert, name);
}

}  // namespace medimg::data
