// SPDX-License-Identifier: MIT
// metrics/colormap.hpp: the viridis colour map as a closed-form fit, and colour-mapping a (H, W)
// scalar map into an RGB (3, H, W) float image in [0, 1] that data::write_png can save.
// viridis (van der Walt & Smith 2015, https://bids.github.io/colormap/) is perceptually uniform,
// monotone in lightness from dark purple (0) to yellow (1) and readable with colour-vision
// deficiencies. It is evaluated here as a degree-7 polynomial per channel fitted by least squares
// to eleven published viridis colours (tests/data/make_compare_fixtures.py derives it); no lookup
// table is copied. Deliberately not here: other colour maps, colour bars, gamma handling.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"

namespace medimg::metrics {

namespace detail {
// Coefficients of t^0 .. t^7 per channel (R, G, B), from np.polyfit of degree 7 through the
// anchors viridis(k / 10), k = 0..10:
//   #440154 #482475 #414487 #355f8d #2a788e #21918c #22a884 #44bf70 #7ad151 #bddf26 #fde725
// (the hex codes matplotlib's viridis and R's viridisLite::viridis(11) print). The fit passes
// within 2.2 / 255 of every anchor and within 2.8 / 255 of matplotlib 3.6's 256-colour table
// (measured by the script, which stores nothing from that table): invisible in a picture.
inline constexpr double kViridisR[8] = {0.26644243876076806, 1.0434281212835297, -14.588557296867931,
                                        78.552553751532557,  -227.86120229892771, 345.68435217221526,
                                        -252.81942842492521, 70.714560333921767};
inline constexpr double kViridisG[8] = {0.0038909187698105332, 1.3316878815148063,  1.459350447066911,
                                        -13.538666094892742,   37.260200711747288,  -48.939510444679698,
                                        31.109829552717905,    -7.7808901338254719};
inline constexpr double kViridisB[8] = {0.32921092748082337, 1.788913566249458,   -6.1270367592201733,
                                        16.972429243207515,  -45.537342639458892, 84.150326797435838,
                                        -83.012943739619431, 31.581259954970612};

/// c[0] + c[1] t + ... + c[7] t^7 by Horner's rule.
inline double horner8(const double* c, double t) {
    double v = c[7];
    for (int k = 6; k >= 0; --k) v = v * t + c[k];
    return v;
}
}  // namespace detail

/// viridis(t) as {R, G, B} in [0, 1]. t is clamped to [0, 1]; NaN maps to 0 (the dark end).
inline std::array<double, 3> viridis(double t) {
    if (!(t >= 0.0)) t = 0.0;  // also catches NaN
    if (t > 1.0) t = 1.0;
    auto ch = [t](const double* c) { return std::min(1.0, std::max(0.0, detail::horner8(c, t))); };
    return {ch(detail::kViridisR), ch(detail::kViridisG), ch(detail::kViridisB)};
}

/// Colour-maps a scalar map: value v -> viridis((v - lo) / (hi - lo)), values outside [lo, hi]
/// clipped to its ends; when hi == lo every pixel gets viridis(0).
///   map: (H, W), or (1, H, W) -> (3, H, W) float RGB in [0, 1], ready for data::write_png.
/// Requires finite lo <= hi; throws ShapeError / ValueError starting "apply_viridis: ".
template <class T>
Tensor<float, Cpu> apply_viridis(const Tensor<T, Cpu>& map, double lo, double hi) {
    MEDIMG_CHECK(map.defined() && (map.rank() == 2 || (map.rank() == 3 && map.size(0) == 1)), ShapeError,
                 "apply_viridis: expected a (H, W) or (1, H, W) map, got ", map.shape());
    MEDIMG_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, ValueError,
                 "apply_viridis: need finite lo <= hi, got lo ", lo, ", hi ", hi);
    const std::int64_t H = map.size(-2), W = map.size(-1), hw = H * W;
    auto out = Tensor<float, Cpu>::empty(Shape{3, H, W});
    const double span = hi - lo;
    for (std::int64_t i = 0; i < hw; ++i) {
        const double t = span > 0.0 ? (static_cast<double>(map[i]) - lo) / span : 0.0;
        const auto rgb = viridis(t);
        for (int c = 0; c < 3; ++c) out[c * hw + i] = static_cast<float>(rgb[static_cast<std::size_t>(c)]);
    }
    return out;
}

}  // namespace medimg::metrics
