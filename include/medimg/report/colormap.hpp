// SPDX-License-Identifier: MIT
// report/colormap.hpp: Rgb, an 8-bit colour, and viridis(t), matplotlib's default colour map:
// perceptually uniform, readable in grey and by the colour-blind (S. van der Walt & N. Smith,
// "A better default colormap for Matplotlib", SciPy 2015). The one viridis of the library is
// metrics/colormap.hpp's (a degree-7 fit within 2.8 codes of matplotlib's table); this header only
// rounds it to 8-bit codes for drawing. Deliberately not here: other colour maps, alpha.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "medimg/metrics/colormap.hpp"

namespace medimg::report {

/// An 8-bit sRGB colour.
struct Rgb {
    std::uint8_t r = 0, g = 0, b = 0;
    friend bool operator==(const Rgb& x, const Rgb& y) { return x.r == y.r && x.g == y.g && x.b == y.b; }
    friend bool operator!=(const Rgb& x, const Rgb& y) { return !(x == y); }
};

/// The viridis colour of t: dark purple (68, 1, 84) at 0, teal (33, 145, 140) near 0.5, yellow
/// (253, 231, 37) at 1. t is clamped to [0, 1]; NaN gives the colour of 0.
inline Rgb viridis(double t) {
    const auto c = metrics::viridis(t);  // clamps t; NaN -> 0
    const auto code = [](double v) { return static_cast<std::uint8_t>(std::lround(std::clamp(v, 0.0, 1.0) * 255.0)); };
    return Rgb{code(c[0]), code(c[1]), code(c[2])};
}

}  // namespace medimg::report
