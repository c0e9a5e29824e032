// SPDX-License-Identifier: MIT
// ssim.hpp: SSIM (Wang et al. 2004), MS-SSIM (Wang, Simoncelli & Bovik 2003) and mean absolute error
// for (H, W) or (C, H, W) float/double images in [0, data_range], computed in float64 on the CPU.
// SSIM matches scikit-image 0.19 structural_similarity: scipy 'reflect' borders (d c b a | a b c d |
// d c b a), the mean over the map with the window radius cropped off each side, the per-channel mean
// for (C, H, W); two windows (see Window). Fast path: separable, one fused row-then-column sweep over
// row bands (threads) x column strips, running sums for the uniform window, AVX2 chosen at run time.
// Tensor<T, Cuda> images go through SsimImpl<Cuda> (cuda/ssim.cuh; same conventions, float64).
// Deliberately not here: the SSIM gradient (autograd/ssim_loss.hpp), 3-D volumes, integer images
// (scale them to [0, 1] first), float32 arithmetic (skimage computes float32 inputs in float32;
// this widens to float64).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "medimg/config.hpp"
#include "medimg/core/parallel.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"

namespace medimg::metrics {

// SSIM(x, y) = ((2 mu_x mu_y + C1)(2 s_xy + C2)) / ((mu_x^2 + mu_y^2 + C1)(s_x^2 + s_y^2 + C2)),
// C1 = (K1 L)^2, C2 = (K2 L)^2, L = data_range, with mu, s^2, s_xy the window-weighted local means,
// variances and covariance (Wang, Bovik, Sheikh & Simoncelli 2004, "Image quality assessment: from
// error visibility to structural similarity", IEEE TIP 13(4):600-612, eq. 13). Numbers cross-check
// against https://scikit-image.org/docs/0.19.x/api/skimage.metrics.html#structural-similarity.

/// The two windows of DESIGN.md "SSIM conventions"; both exactly as scikit-image computes them.
enum class Window {
    /// skimage's default: win_size x win_size (7x7) uniform window, sample covariance (x NP/(NP-1),
    /// NP = win_size^2). = structural_similarity(a, b, data_range=1.0).
    uniform,
    /// Wang et al. 2004: Gaussian sigma 1.5 truncated at 3.5 sigma (11 taps, normalised to sum 1),
    /// population covariance. = structural_similarity(a, b, data_range=1.0, gaussian_weights=True,
    /// sigma=1.5, use_sample_covariance=False).
    gaussian,
};

/// The arithmetic of the CPU SSIM kernels (SsimOptions::arithmetic).
enum class Arithmetic { float64, float32 };

/// "uniform 7x7 (skimage default, sample covariance)" or "gaussian 11x11 sigma 1.5 (Wang et al.
/// 2004, population covariance)": the line programs print next to an SSIM value.
inline std::string describe_window(Window w, int win_size = 7, double sigma = 1.5);

struct SsimOptions {
    Window window = Window::uniform;
    /// Side of the uniform window (odd, >= 3). Ignored for Window::gaussian, whose side is
    /// 2 * int(3.5 * sigma + 0.5) + 1 as in scipy.ndimage (11 for sigma 1.5).
    int win_size = 7;
    /// Standard deviation of the Gaussian window (Window::gaussian only), > 0.
    double sigma = 1.5;
    /// L, the distance between the smallest and largest possible pixel value (1 for images read
    /// as 8-bit / 255 or 16-bit / 65535), > 0.
    double data_range = 1.0;
    double k1 = 0.01;  ///< Wang et al. 2004, >= 0
    double k2 = 0.03;  ///< Wang et al. 2004, >= 0
    /// Also return the full SSIM map (border included, computed with the reflect boundary).
    bool full = false;
    /// float64 (default): scikit-image's numbers to ~1e-13. float32: the window sums and the SSIM
    /// formula in float (twice the SIMD lanes; measured 1.3-1.7x faster for the mean, less with the
    /// map, benchmarks/RESULTS.md), the crop mean still summed in double; differs from float64
    /// by up to ~1e-5 in the mean (docs/compare.md). The GPU backend always computes in float64.
    Arithmetic arithmetic = Arithmetic::float64;

    /// skimage's default convention (Window::uniform, 7x7).
    static SsimOptions skimage_default() { return {}; }
    /// Wang et al. 2004 (Window::gaussian, sigma 1.5, 11x11).
    static SsimOptions wang2004() {
        SsimOptions o;
        o.window = Window::gaussian;
        return o;
    }
    /// The window side used for the size check and the border crop (7, or 11 for the Gaussian).
    int window_side() const { return window == Window::uniform ? win_size : 2 * static_cast<int>(3.5 * sigma + 0.5) + 1; }
};

struct SsimResult {
    /// Mean SSIM over the map cropped by (window_side - 1) / 2 on every side; for (C, H, W) the
    /// mean of the per-channel means (skimage's channel_axis).
    double mean = 0.0;
    /// The full SSIM map, same shape as the images, when SsimOptions::full; otherwise undefined.
    Tensor<double, Cpu> map;
    /// Which convention produced `mean` (DESIGN.md: report it in the output).
    Window window = Window::uniform;
};

/// SSIM of two images.
///   a, b: (H, W) or (C, H, W), same shape, float or double, values in [0, data_range].
/// Requires: equal shapes; H and W >= options.window_side(); valid options (see SsimOptions).
///   Throws ShapeError / ValueError with messages starting "ssim: ".
/// Ensures: identical images give exactly 1; agrees with skimage 0.19 to ~1e-13 (fixtures in
///   tests/data/ssim); for a fixed thread count the result is bit-identical run to run.
template <class T>
SsimResult ssim(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b, const SsimOptions& options = {});

struct MsSsimOptions {
    double data_range = 1.0;
    double k1 = 0.01;
    double k2 = 0.03;
    /// Gaussian window sigma (11 taps for 1.5), as in Wang et al. 2003 and tf.image.ssim_multiscale.
    double sigma = 1.5;
    /// One weight per scale, finest first (Wang, Simoncelli & Bovik 2003, Table 1 / eq. 7).
    std::vector<double> weights = {0.0448, 0.2856, 0.3001, 0.2363, 0.1333};
};

/// Multi-scale SSIM (Wang, Simoncelli & Bovik 2003, "Multiscale structural similarity for image
/// quality assessment", Asilomar), with the definition of tf.image.ssim_multiscale and
/// pytorch-msssim (the two agree for even sides):
///   scale j = 0..M-1 (M = weights.size()): the Gaussian-window (11-tap, sigma 1.5, population
///   covariance) contrast-structure mean cs_j = mean((2 s_xy + C2) / (s_x^2 + s_y^2 + C2)) at
///   j < M-1 and the full SSIM mean at j = M-1, both over the valid region (exactly skimage's
///   Gaussian SSIM crop, so scale 0's SSIM equals ssim(a, b, SsimOptions::wang2004()).mean);
///   between scales a 2x2 mean, an odd side first repeating its last row/column (TF's
///   SYMMETRIC pad); MS-SSIM = prod_j max(cs_j, 0)^w_j * max(ssim_{M-1}, 0)^w_{M-1}.
///   Negative cs or SSIM (anti-correlated structure) is clamped to 0 as both libraries do, so the
///   result is in [0, 1] and 0 for e.g. an inverted image; a raw power of a negative mean would be NaN.
///   (C, H, W): the mean over channels of per-channel MS-SSIM.
/// Requires: H and W > (11 - 1) * 2^(M-1) = 160 for the defaults, so the coarsest scale still
///   holds the window; throws ShapeError / ValueError with messages starting "ms_ssim: ".
template <class T>
double ms_ssim(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b, const MsSsimOptions& options = {});

/// mean(|a - b|) over all elements, accumulated in double. Any rank; shapes must match.
template <class T>
double mean_absolute_error(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b);

// ------------------------------------------------------------------------------------------------
namespace detail {

/// What one (H, W) plane needs: the window as taps, the covariance factor and the constants.
struct SsimKernel {
    bool uniform = true;
    int radius = 3;             // window side = 2 * radius + 1; also the border crop (skimage's pad)
    std::vector<double> half;   // Gaussian taps by distance from the centre: half[k] = w(+-k)
    double inv_norm = 1.0;      // uniform: 1 / win_size^2 (the filter sums); Gaussian: 1
    double cov_norm = 1.0;      // uniform: NP / (NP - 1) (sample covariance); Gaussian: 1
    double c1 = 0.0, c2 = 0.0;  // (K1 L)^2, (K2 L)^2
};

inline SsimKernel make_kernel(bool uniform, int win_size, double sigma, double data_range, double k1, double k2) {
    SsimKernel k;
    k.uniform = uniform;
    k.c1 = (k1 * data_range) * (k1 * data_range);
    k.c2 = (k2 * data_range) * (k2 * data_range);
    if (uniform) {
        k.radius = (win_size - 1) / 2;
        const double np = static_cast<double>(win_size) * win_size;
        k.inv_norm = 1.0 / np;
        k.cov_norm = np / (np - 1.0);
    } else {
        // scipy.ndimage._gaussian_kernel1d: radius = int(truncate * sigma + 0.5), truncate = 3.5
        // (skimage's choice for an 11-tap window at sigma 1.5); w(x) = exp(-0.5 x^2 / sigma^2) / sum.
        k.radius = static_cast<int>(3.5 * sigma + 0.5);
        std::vector<double> w(static_cast<std::size_t>(2 * k.radius + 1));
        double sum = 0.0;
        for (int x = -k.radius; x <= k.radius; ++x) {
            w[static_cast<std::size_t>(x + k.radius)] = std::exp(-0.5 / (sigma * sigma) * static_cast<double>(x * x));
            sum += w[static_cast<std::size_t>(x + k.radius)];
        }
        k.half.resize(static_cast<std::size_t>(k.radius + 1));
        for (int d = 0; d <= k.radius; ++d)
            k.half[static_cast<std::size_t>(d)] = w[static_cast<std::size_t>(k.radius + d)] / sum;
    }
    return k;
}

/// scipy.ndimage mode='reflect' (half-sample symmetric): -1 -> 0, -2 -> 1, n -> n-1, n+1 -> n-2.
/// Valid for -n <= i < 2n, which holds because the window never exceeds the image.
inline std::int64_t reflect_index(std::int64_t i, std::int64_t n) {
    if (i < 0) return -i - 1;
    if (i >= n) return 2 * n - i - 1;
    return i;
}

// ---- the hot loops, each over one strip row (<= kStrip pixels) ----------------------------------
// Written once as always-inline bodies and compiled twice through the Isa structs below: for the
// build's baseline and, on x86 with GCC/Clang, for AVX2 + FMA chosen at run time.
#if defined(__GNUC__) || defined(__clang__)
#  define MEDIMG_SSIM_INLINE inline __attribute__((always_inline))
#else
#  define MEDIMG_SSIM_INLINE inline
#endif

/// Asks for the cache lines of p[0 .. n) ahead of use (a no-op where the builtin is missing).
#if defined(__GNUC__) || defined(__clang__)
template <class T>
MEDIMG_SSIM_INLINE void prefetch_lines(const T* p, std::int64_t n) {
    for (std::int64_t i = 0; i < n; i += 64 / static_cast<std::int64_t>(sizeof(T))) __builtin_prefetch(p + i);
}
#else
template <class T>
MEDIMG_SSIM_INLINE void prefetch_lines(const T*, std::int64_t) {}
#endif

/// px = x, py = y, pxy = x y, pdd = (x - y)^2 over n pixels, in the arithmetic type A (double:
/// the exact mode; float: SsimOptions::arithmetic = float32).
template <class A, class T>
MEDIMG_SSIM_INLINE void load_products(const T* __restrict xr, const T* __restrict yr, std::int64_t n, A* __restrict px,
                                      A* __restrict py, A* __restrict pxy, A* __restrict pdd) {
    for (std::int64_t p = 0; p < n; ++p) {
        const A xv = static_cast<A>(xr[p]), yv = static_cast<A>(yr[p]);
        px[p] = xv;
        py[p] = yv;
        pxy[p] = xv * yv;
        pdd[p] = (xv - yv) * (xv - yv);
    }
}

/// Symmetric correlation along a row (scipy's symmetric-kernel path), in: n + 2r padded values:
///   out[t] = h_0 in[t+r] + sum_{k=1..r} h_k (in[t+r-k] + in[t+r+k]).
/// R > 0 fixes the radius at compile time (the tap loop unrolls, the t loop vectorises); R == 0
/// reads it from r_rt.
template <int R, class A>
MEDIMG_SSIM_INLINE void conv_row_sym(const A* __restrict in, A* __restrict out, std::int64_t n, const A* h_in, int r_rt) {
    if constexpr (R > 0) {
        A h[R + 1];
        for (int k = 0; k <= R; ++k) h[k] = h_in[k];
        for (std::int64_t t = 0; t < n; ++t) {
            A acc = h[0] * in[t + R];
            for (int k = 1; k <= R; ++k) acc += h[k] * (in[t + R - k] + in[t + R + k]);
            out[t] = acc;
        }
    } else {
        for (std::int64_t t = 0; t < n; ++t) out[t] = h_in[0] * in[t + r_rt];
        for (int k = 1; k <= r_rt; ++k) {
            const A hk = h_in[k];
            for (std::int64_t t = 0; t < n; ++t) out[t] += hk * (in[t + r_rt - k] + in[t + r_rt + k]);
        }
    }
}

/// The same down the columns: rows[0 .. 2r] are the row-filtered rows i-r .. i+r.
template <int R, class A>
MEDIMG_SSIM_INLINE void conv_col_sym(const A* const* rows, A* __restrict out, std::int64_t n, const A* h_in, int r_rt) {
    if constexpr (R > 0) {
        A h[R + 1];
        const A* p[2 * R + 1];
        for (int k = 0; k <= R; ++k) h[k] = h_in[k];
        for (int k = 0; k <= 2 * R; ++k) p[k] = rows[k];
        for (std::int64_t t = 0; t < n; ++t) {
            A acc = h[0] * p[R][t];
            for (int k = 1; k <= R; ++k) acc += h[k] * (p[R - k][t] + p[R + k][t]);
            out[t] = acc;
        }
    } else {
        const A* mid = rows[r_rt];
        for (std::int64_t t = 0; t < n; ++t) out[t] = h_in[0] * mid[t];
        for (int k = 1; k <= r_rt; ++k) {
            const A* lo = rows[r_rt - k];
            const A* hi = rows[r_rt + k];
            const A hk = h_in[k];
            for (std::int64_t t = 0; t < n; ++t) out[t] += hk * (lo[t] + hi[t]);
        }
    }
}

/// Uniform window along a row: running sums of 2r+1 values, so the cost per pixel does not
/// depend on the window (four independent chains, one per quantity).
template <class A>
MEDIMG_SSIM_INLINE void box_row(const A* px, const A* py, const A* pxy, const A* pdd, std::int64_t n, int r, A* __restrict o0,
                                A* __restrict o1, A* __restrict o2, A* __restrict o3) {
    A s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int t = 0; t <= 2 * r; ++t) {
        s0 += px[t];
        s1 += py[t];
        s2 += pxy[t];
        s3 += pdd[t];
    }
    o0[0] = s0, o1[0] = s1, o2[0] = s2, o3[0] = s3;
    for (std::int64_t t = 1; t < n; ++t) {
        s0 += px[t + 2 * r] - px[t - 1];
        s1 += py[t + 2 * r] - py[t - 1];
        s2 += pxy[t + 2 * r] - pxy[t - 1];
        s3 += pdd[t + 2 * r] - pdd[t - 1];
        o0[t] = s0, o1[t] = s1, o2[t] = s2, o3[t] = s3;
    }
}

/// Uniform window down the columns: out += add - sub (slide by one row), or out += add (start).
template <class A>
MEDIMG_SSIM_INLINE void box_col_slide(A* __restrict out, const A* add, const A* sub, std::int64_t n) {
    for (std::int64_t t = 0; t < n; ++t) out[t] += add[t] - sub[t];
}
template <class A>
MEDIMG_SSIM_INLINE void box_col_add(A* __restrict out, const A* add, std::int64_t n) {
    for (std::int64_t t = 0; t < n; ++t) out[t] += add[t];
}

/// SSIM (and cs = (2 s_xy + C2) / (s_x^2 + s_y^2 + C2)) from the window sums q0..q3 of
/// x, y, x y, (x - y)^2 (times inv: 1 / NP for the uniform sums, 1 for the normalised Gaussian).
template <class A>
MEDIMG_SSIM_INLINE void ssim_values(const A* q0, const A* q1, const A* q2, const A* q3, std::int64_t n, const SsimKernel& k,
                                    A* __restrict s_out, A* __restrict cs_out) {
    const A inv = static_cast<A>(k.inv_norm), cov = static_cast<A>(k.cov_norm), c1 = static_cast<A>(k.c1),
            c2 = static_cast<A>(k.c2);
    for (std::int64_t t = 0; t < n; ++t) {
        const A mx = q0[t] * inv, my = q1[t] * inv;
        const A mxy = mx * my, d = mx - my;
        const A a1 = A(2) * mxy + c1;                          // 2 mu_x mu_y + C1
        const A b1 = a1 + d * d;                               // mu_x^2 + mu_y^2 + C1
        const A a2 = A(2) * (cov * (q2[t] * inv - mxy)) + c2;  // 2 s_xy + C2
        const A b2 = a2 + cov * (q3[t] * inv - d * d);         // s_x^2 + s_y^2 + C2
        s_out[t] = (a1 * a2) / (b1 * b2);
        if (cs_out) cs_out[t] = a2 / b2;
    }
}

/// The loops above compiled for the build's instruction set.
struct BaselineIsa {
    static constexpr const char* name = "baseline";
    template <class A, class T>
    static void load_products(const T* xr, const T* yr, std::int64_t n, A* px, A* py, A* pxy, A* pdd) {
        detail::load_products(xr, yr, n, px, py, pxy, pdd);
    }
    template <int R, class A>
    static void conv_row(const A* in, A* out, std::int64_t n, const A* h, int r) {
        conv_row_sym<R>(in, out, n, h, r);
    }
    template <int R, class A>
    static void conv_col(const A* const* rows, A* out, std::int64_t n, const A* h, int r) {
        conv_col_sym<R>(rows, out, n, h, r);
    }
    template <class A>
    static void box_row(const A* px, const A* py, const A* pxy, const A* pdd, std::int64_t n, int r, A* o0, A* o1, A* o2,
                        A* o3) {
        detail::box_row(px, py, pxy, pdd, n, r, o0, o1, o2, o3);
    }
    template <class A>
    static void box_col_slide(A* out, const A* add, const A* sub, std::int64_t n) {
        detail::box_col_slide(out, add, sub, n);
    }
    template <class A>
    static void box_col_add(A* out, const A* add, std::int64_t n) {
        detail::box_col_add(out, add, n);
    }
    template <class A>
    static void ssim_values(const A* q0, const A* q1, const A* q2, const A* q3, std::int64_t n, const SsimKernel& k, A* s_out,
                            A* cs_out) {
        detail::ssim_values(q0, q1, q2, q3, n, k, s_out, cs_out);
    }
};

/// Test hook: true makes ssim / ms_ssim use BaselineIsa even where AVX2 is available.
inline bool& force_baseline_isa() {
    static bool force = false;
    return force;
}

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__)) && !defined(__AVX2__)
#  define MEDIMG_SSIM_AVX2_DISPATCH 1
#  define MEDIMG_SSIM_AVX2 __attribute__((target("avx2,fma")))
/// The same loops compiled for AVX2 + FMA (4 doubles or 8 floats per instruction; FMA changes
/// rounding only in the last bits), used when the CPU has both and the build does not already target them.
struct Avx2Isa {
    static constexpr const char* name = "avx2+fma";
    template <class A, class T>
    MEDIMG_SSIM_AVX2 static void load_products(const T* xr, const T* yr, std::int64_t n, A* px, A* py, A* pxy, A* pdd) {
        detail::load_products(xr, yr, n, px, py, pxy, pdd);
    }
    template <int R, class A>
    MEDIMG_SSIM_AVX2 static void conv_row(const A* in, A* out, std::int64_t n, const A* h, int r) {
        conv_row_sym<R>(in, out, n, h, r);
    }
    template <int R, class A>
    MEDIMG_SSIM_AVX2 static void conv_col(const A* const* rows, A* out, std::int64_t n, const A* h, int r) {
        conv_col_sym<R>(rows, out, n, h, r);
    }
    template <class A>
    MEDIMG_SSIM_AVX2 static void box_row(const A* px, const A* py, const A* pxy, const A* pdd, std::int64_t n, int r, A* o0,
                                         A* o1, A* o2, A* o3) {
        detail::box_row(px, py, pxy, pdd, n, r, o0, o1, o2, o3);
    }
    template <class A>
    MEDIMG_SSIM_AVX2 static void box_col_slide(A* out, const A* add, const A* sub, std::int64_t n) {
        detail::box_col_slide(out, add, sub, n);
    }
    template <class A>
    MEDIMG_SSIM_AVX2 static void box_col_add(A* out, const A* add, std::int64_t n) {
        detail::box_col_add(out, add, n);
    }
    template <class A>
    MEDIMG_SSIM_AVX2 static void ssim_values(const A* q0, const A* q1, const A* q2, const A* q3, std::int64_t n,
                                             const SsimKernel& k, A* s_out, A* cs_out) {
        detail::ssim_values(q0, q1, q2, q3, n, k, s_out, cs_out);
    }
};
inline bool use_avx2() {
    static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return has && !force_baseline_isa();
}
#  undef MEDIMG_SSIM_AVX2
#else
#  define MEDIMG_SSIM_AVX2_DISPATCH 0
#endif

/// Sums of one plane's SSIM (and cs) over the cropped region.
struct PlaneSums {
    double ssim = 0.0;
    double cs = 0.0;
};

// Processes one (H, W) plane. Output rows [i_lo, i_hi) and columns [j_lo, j_hi) are computed:
// everything for the full map, only the crop [r, H-r) x [r, W-r) otherwise (which needs no
// reflected pixel at all). The output is tiled into row bands (one contiguous run of bands per
// thread) and, inside a band, column strips of kStrip. A strip walks down its rows keeping a ring
// of the last 2r+1 (uniform: 2r+2) row-filtered rows of the four quantities
//   q0 = x, q1 = y, q2 = x y, q3 = (x - y)^2
// and filters them down the columns as each new row arrives, so every input pixel is read once
// per strip and the ring (slots x 4 x kStrip doubles) stays in cache. Four quantities, not the
// textbook five (x, y, x^2, y^2, xy): SSIM needs s_x^2 + s_y^2 only as a sum, and
//   s_x^2 + s_y^2 = 2 s_xy + cov (E[(x-y)^2] - (mu_x - mu_y)^2),
// exact algebra that saves a filter and makes identical images give exactly 1 (q3 = 0, mu_x = mu_y).
// A is the arithmetic type: double (exact, the default) or float (SsimOptions::arithmetic =
// float32: twice the SIMD lanes; map values are computed in float and widened into `map`).
template <class Isa, int R, class A, class T>
PlaneSums ssim_plane_impl(const T* x, const T* y, std::int64_t H, std::int64_t W, const SsimKernel& k, double* map,
                          bool want_cs) {
    constexpr bool exact = std::is_same_v<A, double>;
    constexpr std::int64_t kStrip = 128;             // columns per strip
    constexpr std::int64_t kRowStride = kStrip + 8;  // ring rows 1088 B apart, not 1 KiB: no L1 set conflicts
    const int r = R > 0 ? R : k.radius;
    const bool full = map != nullptr;
    const std::int64_t i_lo = full ? 0 : r, i_hi = full ? H : H - r;
    const std::int64_t j_lo = full ? 0 : r, j_hi = full ? W : W - r;
    const std::int64_t rows = i_hi - i_lo;
    const int slots = k.uniform ? 2 * r + 2 : 2 * r + 1;
    std::vector<double> row_ssim(static_cast<std::size_t>(H), 0.0), row_cs(want_cs ? static_cast<std::size_t>(H) : 0, 0.0);
    std::vector<A> taps(k.half.begin(), k.half.end());

    // Bands: a fixed number per thread (so the partition depends only on the thread count and
    // the result is bit-identical run to run), at most ~512 rows each (128 in float, whose
    // running sums drift 2^29 times faster) to bound running-sum drift.
    constexpr std::int64_t kBand = exact ? 512 : 128;
    const std::int64_t nt = std::max<std::int64_t>(1, std::min<std::int64_t>(in_parallel() ? 1 : num_threads(), rows / 16));
    const std::int64_t nbands = nt * std::max<std::int64_t>(1, (rows + nt * kBand - 1) / (nt * kBand));

    parallel_chunks(0, nbands, [&](std::int64_t b_lo, std::int64_t b_hi, int) {
        // Per-thread scratch, allocated once per call (never per pixel).
        const std::int64_t pstride = kStrip + 2 * r;
        std::vector<A> ring(static_cast<std::size_t>(slots) * 4 * kRowStride);
        std::vector<A> pad(4 * static_cast<std::size_t>(pstride));  // one padded strip row, 4 quantities
        std::vector<A> vert(4 * kStrip);                            // column-filtered values (uniform: sums)
        std::vector<A> s_blk(kStrip), cs_blk(kStrip);
        A* px = pad.data();
        A* py = px + pstride;
        A* pxy = py + pstride;
        A* pdd = pxy + pstride;
        A* vq[4] = {vert.data(), vert.data() + kStrip, vert.data() + 2 * kStrip, vert.data() + 3 * kStrip};
        const A* h = taps.data();

        for (std::int64_t band = b_lo; band < b_hi; ++band) {
            const std::int64_t i0 = i_lo + rows * band / nbands, i1 = i_lo + rows * (band + 1) / nbands;
            if (i0 >= i1) continue;
            const std::int64_t v_base = i0 - r;  // virtual row stored in slot 0
            auto ring_row = [&](std::int64_t v, int q) {
                return ring.data() + (((v - v_base) % slots) * 4 + q) * kRowStride;
            };
            for (std::int64_t jb = j_lo; jb < j_hi; jb += kStrip) {
                const std::int64_t n = std::min(kStrip, j_hi - jb);

                // Row pass for virtual row v (source row reflect(v)), output columns [jb, jb + n).
                auto row_pass = [&](std::int64_t v) {
                    const std::int64_t src = reflect_index(v, H);
                    const T* xr = x + src * W;
                    const T* yr = y + src * W;
                    const std::int64_t c0 = jb - r, np = n + 2 * r;  // padded row covers columns [c0, c0 + np)
                    if (c0 >= 0 && c0 + np <= W) {
                        if (src + 2 < H) {  // a strip walks down with a row stride: help the prefetcher
                            prefetch_lines(xr + 2 * W + c0, np);
                            prefetch_lines(yr + 2 * W + c0, np);
                        }
                        Isa::load_products(xr + c0, yr + c0, np, px, py, pxy, pdd);
                    } else {
                        for (std::int64_t p = 0; p < np; ++p) {
                            const std::int64_t c = reflect_index(c0 + p, W);
                            const A xv = static_cast<A>(xr[c]), yv = static_cast<A>(yr[c]);
                            px[p] = xv;
                            py[p] = yv;
                            pxy[p] = xv * yv;
                            pdd[p] = (xv - yv) * (xv - yv);
                        }
                    }
                    A* o0 = ring_row(v, 0);
                    if (k.uniform) {
                        Isa::box_row(px, py, pxy, pdd, n, r, o0, o0 + kRowStride, o0 + 2 * kRowStride, o0 + 3 * kRowStride);
                    } else {
                        for (int q = 0; q < 4; ++q)
                            Isa::template conv_row<R>(pad.data() + q * pstride, o0 + q * kRowStride, n, h, r);
                    }
                };

                for (std::int64_t v = i0 - r; v < i0 + r; ++v) row_pass(v);  // warm-up: rows i0-r .. i0+r-1
                for (std::int64_t i = i0; i < i1; ++i) {
                    row_pass(i + r);  // the ring now holds rows i-r .. i+r
                    for (int q = 0; q < 4; ++q) {
                        if (k.uniform) {
                            // Column sums of rows i-r .. i+r: summed directly at the band's first
                            // row, then slid by one row (add the new, subtract the one that left).
                            if (i == i0) {
                                std::fill(vq[q], vq[q] + n, A(0));
                                for (std::int64_t v = i - r; v <= i + r; ++v) Isa::box_col_add(vq[q], ring_row(v, q), n);
                            } else {
                                Isa::box_col_slide(vq[q], ring_row(i + r, q), ring_row(i - r - 1, q), n);
                            }
                        } else {
                            const A* rows_q[2 * 64 + 1];  // radius <= 64 is checked by the front door
                            for (int t = 0; t <= 2 * r; ++t) rows_q[t] = ring_row(i - r + t, q);
                            Isa::template conv_col<R>(rows_q, vq[q], n, h, r);
                        }
                    }
                    A* s_out = s_blk.data();
                    if constexpr (exact)
                        if (full) s_out = map + i * W + jb;  // straight into the map
                    Isa::ssim_values(vq[0], vq[1], vq[2], vq[3], n, k, s_out, want_cs ? cs_blk.data() : nullptr);
                    if constexpr (!exact)
                        if (full) std::copy(s_out, s_out + n, map + i * W + jb);  // widened to double
                    if (i < r || i >= H - r) continue;  // the crop: rows and columns within r of the border
                    const std::int64_t t0 = std::max<std::int64_t>(jb, r) - jb;
                    const std::int64_t t1 = std::min<std::int64_t>(jb + n, W - r) - jb;
                    double s = 0.0, c = 0.0;  // the crop sums in double in both modes
                    for (std::int64_t t = t0; t < t1; ++t) s += static_cast<double>(s_out[t]);
                    row_ssim[static_cast<std::size_t>(i)] += s;
                    if (want_cs) {
                        for (std::int64_t t = t0; t < t1; ++t) c += static_cast<double>(cs_blk[static_cast<std::size_t>(t)]);
                        row_cs[static_cast<std::size_t>(i)] += c;
                    }
                }
            }
        }
    });

    PlaneSums sums;
    for (std::int64_t i = r; i < H - r; ++i) {
        sums.ssim += row_ssim[static_cast<std::size_t>(i)];
        if (want_cs) sums.cs += row_cs[static_cast<std::size_t>(i)];
    }
    return sums;
}

/// Compiled-in radii for the two standard windows (3: 7x7 uniform; 5: the 11-tap Gaussian).
template <class Isa, class A, class T>
PlaneSums ssim_plane_radius(const T* x, const T* y, std::int64_t H, std::int64_t W, const SsimKernel& k, double* map,
                            bool want_cs) {
    if (!k.uniform && k.radius == 5) return ssim_plane_impl<Isa, 5, A>(x, y, H, W, k, map, want_cs);
    if (k.uniform && k.radius == 3) return ssim_plane_impl<Isa, 3, A>(x, y, H, W, k, map, want_cs);
    return ssim_plane_impl<Isa, 0, A>(x, y, H, W, k, map, want_cs);
}

/// One (H, W) plane: sums of SSIM (and cs) over the crop, whose size is (H - 2r)(W - 2r); the
/// full map into `map` (H x W) when it is not null. A: double (exact) or float (fast).
#if MEDIMG_SSIM_AVX2_DISPATCH
template <class A = double, class T>
PlaneSums ssim_plane(const T* x, const T* y, std::int64_t H, std::int64_t W, const SsimKernel& k, double* map,
                     bool want_cs) {
    return use_avx2() ? ssim_plane_radius<Avx2Isa, A>(x, y, H, W, k, map, want_cs)
                      : ssim_plane_radius<BaselineIsa, A>(x, y, H, W, k, map, want_cs);
}
inline const char* active_isa() { return use_avx2() ? Avx2Isa::name : BaselineIsa::name; }
#else
template <class A = double, class T>
PlaneSums ssim_plane(const T* x, const T* y, std::int64_t H, std::int64_t W, const SsimKernel& k, double* map,
                     bool want_cs) {
    return ssim_plane_radius<BaselineIsa, A>(x, y, H, W, k, map, want_cs);
}
inline const char* active_isa() { return BaselineIsa::name; }
#endif

#undef MEDIMG_SSIM_INLINE

/// (H, W) -> (ceil(H/2), ceil(W/2)) 2x2 mean; an odd side repeats its last row/column first.
template <class T>
void downsample2(const T* in, std::int64_t H, std::int64_t W, std::vector<double>& out) {
    const std::int64_t h = (H + 1) / 2, w = (W + 1) / 2;
    out.resize(static_cast<std::size_t>(h * w));
    parallel_for(
        0, h,
        [&](std::int64_t i) {
            const T* r0 = in + (2 * i) * W;
            const T* r1 = in + std::min(2 * i + 1, H - 1) * W;
            double* o = out.data() + i * w;
            for (std::int64_t j = 0; j < w; ++j) {
                const std::int64_t j0 = 2 * j, j1 = std::min(2 * j + 1, W - 1);
                o[j] = 0.25 * ((static_cast<double>(r0[j0]) + static_cast<double>(r0[j1])) +
                               (static_cast<double>(r1[j0]) + static_cast<double>(r1[j1])));
            }
        },
        16);
}

template <class T, class B>
void check_pair(const char* fn, const Tensor<T, B>& a, const Tensor<T, B>& b) {
    MEDIMG_CHECK(a.defined() && b.defined(), ShapeError, fn, ": undefined image tensor (a ", a.shape(), ", b ", b.shape(),
                 ")");
    MEDIMG_CHECK(a.shape() == b.shape(), ShapeError, fn, ": image shapes differ: a ", a.shape(), " vs b ", b.shape());
    MEDIMG_CHECK(a.rank() == 2 || a.rank() == 3, ShapeError, fn, ": expected (H, W) or (C, H, W) images, got rank ",
                 a.rank(), " (a ", a.shape(), ", b ", b.shape(), ")");
    MEDIMG_CHECK(a.rank() == 2 || a.size(0) >= 1, ShapeError, fn, ": (C, H, W) images need C >= 1, got a ", a.shape(),
                 ", b ", b.shape());
}

inline void check_constants(const char* fn, double data_range, double k1, double k2, double sigma, bool uses_sigma) {
    MEDIMG_CHECK(data_range > 0.0 && std::isfinite(data_range), ValueError, fn, ": data_range must be > 0, got ",
                 data_range);
    MEDIMG_CHECK(k1 >= 0.0 && k2 >= 0.0, ValueError, fn, ": K1 and K2 must be >= 0, got K1 ", k1, ", K2 ", k2);
    if (uses_sigma)
        MEDIMG_CHECK(sigma > 0.0 && 3.5 * sigma + 0.5 < 65.0, ValueError, fn,
                     ": Gaussian sigma must be in (0, 18.4] (window radius int(3.5 sigma + 0.5) <= 64), got ", sigma);
}

/// Everything ssim() checks before computing (shared by every backend, so the messages match).
template <class T, class B>
void check_ssim_args(const Tensor<T, B>& a, const Tensor<T, B>& b, const SsimOptions& options) {
    detail::check_pair("ssim", a, b);
    const bool uniform = options.window == Window::uniform;
    detail::check_constants("ssim", options.data_range, options.k1, options.k2, options.sigma, !uniform);
    if (uniform)
        MEDIMG_CHECK(options.win_size >= 3 && options.win_size % 2 == 1 && options.win_size <= 129, ValueError,
                     "ssim: win_size must be odd and in [3, 129], got ", options.win_size);
    const int side = options.window_side();
    const std::int64_t H = a.size(-2), W = a.size(-1);
    MEDIMG_CHECK(H >= side && W >= side, ShapeError, "ssim: images a ", a.shape(), " and b ", b.shape(),
                 " are smaller than the ", side, "x", side, " window (",
                 describe_window(options.window, options.win_size, options.sigma), "); H and W must be >= ", side);
}

/// Everything ms_ssim() checks before computing.
template <class T, class B>
void check_ms_ssim_args(const Tensor<T, B>& a, const Tensor<T, B>& b, const MsSsimOptions& options) {
    detail::check_pair("ms_ssim", a, b);
    detail::check_constants("ms_ssim", options.data_range, options.k1, options.k2, options.sigma, true);
    const auto& w = options.weights;
    MEDIMG_CHECK(!w.empty() && w.size() <= 12, ValueError, "ms_ssim: need 1 to 12 scale weights, got ", w.size());
    for (double wj : w) MEDIMG_CHECK(wj >= 0.0, ValueError, "ms_ssim: scale weights must be >= 0, got ", wj);
    const int levels = static_cast<int>(w.size());
    const std::int64_t side = 2 * static_cast<std::int64_t>(3.5 * options.sigma + 0.5) + 1, H = a.size(-2), W = a.size(-1);
    // The coarsest scale has ceil(H / 2^(M-1)) rows; it holds the window iff H > (side - 1) 2^(M-1).
    const std::int64_t min_side = (side - 1) << (levels - 1);
    MEDIMG_CHECK(H > min_side && W > min_side, ShapeError, "ms_ssim: images a ", a.shape(), " and b ", b.shape(),
                 " are too small for ", levels, " scales with a ", side, "x", side, " window; H and W must be > ", min_side,
                 " ((", side, " - 1) * 2^", levels - 1, ")");
}

/// mean_absolute_error()'s checks.
template <class T, class B>
void check_mae_args(const Tensor<T, B>& a, const Tensor<T, B>& b) {
    MEDIMG_CHECK(a.defined() && b.defined(), ShapeError, "mean_absolute_error: undefined tensor (a ", a.shape(), ", b ",
                 b.shape(), ")");
    MEDIMG_CHECK(a.shape() == b.shape(), ShapeError, "mean_absolute_error: shapes differ: a ", a.shape(), " vs b ",
                 b.shape());
    MEDIMG_CHECK(a.numel() > 0, ShapeError, "mean_absolute_error: empty tensors ", a.shape());
}

}  // namespace detail

// ------------------------------------------------------------------------------------------------
inline std::string describe_window(Window w, int win_size, double sigma) {
    if (w == Window::uniform) {
        const std::string s = std::to_string(win_size);
        return "uniform " + s + "x" + s + (win_size == 7 ? " (skimage default, sample covariance)" : " (sample covariance)");
    }
    const int side = 2 * static_cast<int>(3.5 * sigma + 0.5) + 1;
    std::string sg = std::to_string(sigma);
    sg.erase(sg.find_last_not_of('0') + 1);
    if (!sg.empty() && sg.back() == '.') sg.pop_back();
    return "gaussian " + std::to_string(side) + "x" + std::to_string(side) + " sigma " + sg +
           " (Wang et al. 2004, population covariance)";
}

template <class T>
SsimResult ssim(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b, const SsimOptions& options) {
    static_assert(std::is_floating_point_v<T>,
                  "medimg: ssim needs float or double images in [0, data_range]; convert integer images first (e.g. / 255)");
    detail::check_ssim_args(a, b, options);
    const bool uniform = options.window == Window::uniform;
    const std::int64_t H = a.size(-2), W = a.size(-1), C = a.rank() == 3 ? a.size(0) : 1;

    const auto kern =
        detail::make_kernel(uniform, options.win_size, options.sigma, options.data_range, options.k1, options.k2);
    SsimResult res;
    res.window = options.window;
    if (options.full) res.map = Tensor<double, Cpu>::empty(a.shape());
    const double crop = static_cast<double>(H - 2 * kern.radius) * static_cast<double>(W - 2 * kern.radius);
    double total = 0.0;
    for (std::int64_t c = 0; c < C; ++c) {
        double* map = options.full ? res.map.data() + c * H * W : nullptr;
        const auto s = options.arithmetic == Arithmetic::float32
                           ? detail::ssim_plane<float>(a.data() + c * H * W, b.data() + c * H * W, H, W, kern, map, false)
                           : detail::ssim_plane<double>(a.data() + c * H * W, b.data() + c * H * W, H, W, kern, map, false);
        total += s.ssim / crop;  // per-channel mean, then the mean over channels (skimage's channel_axis)
    }
    res.mean = total / static_cast<double>(C);
    return res;
}

template <class T>
double ms_ssim(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b, const MsSsimOptions& options) {
    static_assert(
        std::is_floating_point_v<T>,
        "medimg: ms_ssim needs float or double images in [0, data_range]; convert integer images first (e.g. / 255)");
    detail::check_ms_ssim_args(a, b, options);
    const auto& w = options.weights;
    const auto kern = detail::make_kernel(false, 0, options.sigma, options.data_range, options.k1, options.k2);
    const int levels = static_cast<int>(w.size());
    const std::int64_t H = a.size(-2), W = a.size(-1), C = a.rank() == 3 ? a.size(0) : 1;

    double total = 0.0;
    std::vector<double> xa, ya, xb, yb;  // the current scale and the next (ping-pong)
    for (std::int64_t c = 0; c < C; ++c) {
        const T* x0 = a.data() + c * H * W;
        const T* y0 = b.data() + c * H * W;
        std::int64_t h = H, wd = W;
        double value = 1.0;
        for (int j = 0; j < levels; ++j) {
            const bool last = j == levels - 1;
            const auto s = j == 0 ? detail::ssim_plane(x0, y0, h, wd, kern, nullptr, !last)
                                  : detail::ssim_plane(xa.data(), ya.data(), h, wd, kern, nullptr, !last);
            const double n = static_cast<double>(h - 2 * kern.radius) * static_cast<double>(wd - 2 * kern.radius);
            const double v = (last ? s.ssim : s.cs) / n;
            value *= std::pow(std::max(v, 0.0), w[static_cast<std::size_t>(j)]);  // relu, then the scale's weight
            if (last) break;
            if (j == 0) {
                detail::downsample2(x0, h, wd, xb);
                detail::downsample2(y0, h, wd, yb);
            } else {
                detail::downsample2(xa.data(), h, wd, xb);
                detail::downsample2(ya.data(), h, wd, yb);
            }
            xa.swap(xb);
            ya.swap(yb);
            h = (h + 1) / 2;
            wd = (wd + 1) / 2;
        }
        total += value;
    }
    return total / static_cast<double>(C);
}

template <class T>
double mean_absolute_error(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b) {
    detail::check_mae_args(a, b);
    // Fixed 64k-element blocks summed in order: the same result for any thread count.
    constexpr std::int64_t kBlock = 1 << 16;
    const std::int64_t n = a.numel(), nb = (n + kBlock - 1) / kBlock;
    std::vector<double> part(static_cast<std::size_t>(nb));
    const T* pa = a.data();
    const T* pb = b.data();
    parallel_for(0, nb, [&](std::int64_t blk) {
        double s = 0.0;
        for (std::int64_t i = blk * kBlock, e = std::min(n, (blk + 1) * kBlock); i < e; ++i)
            s += std::abs(static_cast<double>(pa[i]) - static_cast<double>(pb[i]));
        part[static_cast<std::size_t>(blk)] = s;
    });
    double s = 0.0;
    for (double p : part) s += p;
    return s / static_cast<double>(n);
}

// ---- other backends (Tensor<T, Cuda>) -----------------------------------------------------------
/// The backend part of ssim / ms_ssim / mean_absolute_error on a non-host backend, and of
/// autograd::ssim's forward and backward there (cuda/ssim.cuh specialises it for Cuda). The
/// Cpu functions above are the reference and do not go through it. Pointers are backend memory:
///   planes(x, y, P, H, W, kernel, map, sums, cs_sums)  SSIM (and cs) maps of P (H, W) planes and
///                                                     their sums over the crop, overwritten
///   mean(sums, P, crop, out)                          out[0] = T((sum_p sums[p] / crop) / P)
///   downsample2(in, P, H, W, out)                     MS-SSIM's 2x2 mean, into double
///   backward(x, y, P, H, W, kernel, dl, denom, dx, dy) dx, dy += the gradient of
///                                                     dl[0] / denom * sum of SSIM over the crops
///   abs_diff_sum(a, b, n)                              sum |a - b| in double, on the host
template <class B>
struct SsimImpl;

/// ssim() on another backend (Tensor<T, Cuda>): the same checks, window, crop and float64
/// arithmetic as the Cpu version; `mean` agrees with it to summation order (~1e-12), and the
/// map, when asked for, is copied to the host (SsimResult::map is a host tensor).
template <class T, class B, std::enable_if_t<!std::is_same_v<B, Cpu>, int> = 0>
SsimResult ssim(const Tensor<T, B>& a, const Tensor<T, B>& b, const SsimOptions& options = {}) {
    static_assert(std::is_floating_point_v<T>,
                  "medimg: ssim needs float or double images in [0, data_range]; convert integer images first (e.g. / 255)");
    detail::check_ssim_args(a, b, options);
    const std::int64_t H = a.size(-2), W = a.size(-1), C = a.rank() == 3 ? a.size(0) : 1;
    const auto kern = detail::make_kernel(options.window == Window::uniform, options.win_size, options.sigma,
                                          options.data_range, options.k1, options.k2);
    SsimResult res;
    res.window = options.window;
    auto sums = Tensor<double, B>::empty({C});
    Tensor<double, B> map = options.full ? Tensor<double, B>::empty({C, H, W}) : Tensor<double, B>();
    SsimImpl<B>::planes(a.data(), b.data(), C, H, W, kern, options.full ? map.data() : nullptr, sums.data(), nullptr);
    if (options.full) res.map = map.reshape(a.shape()).template to<Cpu>();
    const auto host = sums.template to<Cpu>();
    const double crop = static_cast<double>(H - 2 * kern.radius) * static_cast<double>(W - 2 * kern.radius);
    double total = 0.0;
    for (std::int64_t c = 0; c < C; ++c) total += host[c] / crop;  // the Cpu version's order
    res.mean = total / static_cast<double>(C);
    return res;
}

/// ms_ssim() on another backend: each scale's per-channel cs / SSIM sums come to the host, where
/// they are combined exactly as the Cpu version does.
template <class T, class B, std::enable_if_t<!std::is_same_v<B, Cpu>, int> = 0>
double ms_ssim(const Tensor<T, B>& a, const Tensor<T, B>& b, const MsSsimOptions& options = {}) {
    static_assert(
        std::is_floating_point_v<T>,
        "medimg: ms_ssim needs float or double images in [0, data_range]; convert integer images first (e.g. / 255)");
    detail::check_ms_ssim_args(a, b, options);
    const auto& w = options.weights;
    const auto kern = detail::make_kernel(false, 0, options.sigma, options.data_range, options.k1, options.k2);
    const int levels = static_cast<int>(w.size());
    const std::int64_t H = a.size(-2), W = a.size(-1), C = a.rank() == 3 ? a.size(0) : 1;
    std::vector<std::vector<double>> per_scale(static_cast<std::size_t>(levels));  // [j][c]: the mean cs (SSIM at the last)
    Tensor<double, B> xa, ya;
    std::int64_t h = H, wd = W;
    for (int j = 0; j < levels; ++j) {
        const bool last = j == levels - 1;
        auto s = Tensor<double, B>::empty({C});
        auto cs = last ? Tensor<double, B>() : Tensor<double, B>::empty({C});
        if (j == 0)
            SsimImpl<B>::planes(a.data(), b.data(), C, h, wd, kern, nullptr, s.data(), last ? nullptr : cs.data());
        else
            SsimImpl<B>::planes(xa.data(), ya.data(), C, h, wd, kern, nullptr, s.data(), last ? nullptr : cs.data());
        const auto host = (last ? s : cs).template to<Cpu>();
        const double n = static_cast<double>(h - 2 * kern.radius) * static_cast<double>(wd - 2 * kern.radius);
        for (std::int64_t c = 0; c < C; ++c) per_scale[static_cast<std::size_t>(j)].push_back(host[c] / n);
        if (last) break;
        auto xb = Tensor<double, B>::empty({C, (h + 1) / 2, (wd + 1) / 2});
        auto yb = Tensor<double, B>::empty({C, (h + 1) / 2, (wd + 1) / 2});
        if (j == 0) {
            SsimImpl<B>::downsample2(a.data(), C, h, wd, xb.data());
            SsimImpl<B>::downsample2(b.data(), C, h, wd, yb.data());
        } else {
            SsimImpl<B>::downsample2(xa.data(), C, h, wd, xb.data());
            SsimImpl<B>::downsample2(ya.data(), C, h, wd, yb.data());
        }
        xa = std::move(xb);
        ya = std::move(yb);
        h = (h + 1) / 2;
        wd = (wd + 1) / 2;
    }
    double total = 0.0;
    for (std::int64_t c = 0; c < C; ++c) {
        double value = 1.0;
        for (int j = 0; j < levels; ++j)  // relu, then the scale's weight (the Cpu version's order)
            value *= std::pow(std::max(per_scale[static_cast<std::size_t>(j)][static_cast<std::size_t>(c)], 0.0),
                              w[static_cast<std::size_t>(j)]);
        total += value;
    }
    return total / static_cast<double>(C);
}

/// mean_absolute_error() on another backend (a deterministic device reduction in double).
template <class T, class B, std::enable_if_t<!std::is_same_v<B, Cpu>, int> = 0>
double mean_absolute_error(const Tensor<T, B>& a, const Tensor<T, B>& b) {
    detail::check_mae_args(a, b);
    return SsimImpl<B>::abs_diff_sum(a.data(), b.data(), a.numel()) / static_cast<double>(a.numel());
}

}  // namespace medimg::metrics

#if MEDIMG_HAS_CUDA
#include "medimg/cuda/ssim.cuh"
#endif
