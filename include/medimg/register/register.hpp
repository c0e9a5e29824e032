// SPDX-License-Identifier: MIT
// register/register.hpp: aligns a target image to a reference before they are compared: the
// transform (register/transform.hpp) that maximises the correlation coefficient (normalised
// cross-correlation, NCC) of the reference and the resampled target over the pixels both cover.
//   auto r = reg::align(reference, target, reg::AlignOptions{});   // rigid by default
//   auto aligned = reg::resample(target, r.transform, H, W);
// The optimiser is the enhanced correlation coefficient (ECC) algorithm of Evangelidis & Psarakis
// ("Parametric image alignment using enhanced correlation coefficient maximization", IEEE PAMI
// 30(10), 2008): Gauss-Newton-like steps that maximise the correlation coefficient itself, which
// is invariant to the exams' brightness and contrast (gain and offset), coarse to fine over an
// image pyramid (each level half the size of the one below, 2x2 block means, until the shorter
// side would fall under AlignOptions::min_side), the coarser levels smoothed by a Gaussian (sigma
// 1 pixel of that level) to widen the basin of convergence, the full-resolution level by sigma
// 0.7: bilinear interpolation of a noisy exam is biased towards whole-pixel shifts (between pixel
// centres it averages the noise away), and a slight blur removes the bias (on the fixtures of
// tests/data/register: worst corner error 0.19 px unsmoothed, 0.017 px at sigma 0.7, while more
// blur spreads the empty border of a moved exam into the overlap). Convergence rule at each
// level: stop when the correlation rose by less than `tolerance` in an iteration, or after
// `max_iterations`. Starts: the centres on each other, the images as given (top-left corners; for
// a target of another size), the best whole-pixel shift of an exhaustive search at the coarsest
// level (large offsets, crops cut from anywhere) and, with AlignOptions::any_angle, the centred
// start turned by every 30 degrees; the coarsest level runs from each, the three best distinct
// ends go on through the finer levels, and the highest correlation at full resolution wins.
// NCC and not mutual information is the criterion: exams compared here come from one modality and
// protocol, where a linear relation of intensities holds and NCC's optimum is sharp and smooth;
// Mattes mutual information is what exams of different contrast (T1 vs T2) would need, and is not
// here yet (docs/compare.md).
// Deliberately not here: mutual information, deformable registration, 3-D volumes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Dense>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/register/transform.hpp"

namespace medimg::reg {

struct AlignOptions {
    Motion motion = Motion::rigid;
    int min_side = 24;          // the coarsest pyramid level keeps its shorter side at least this long
    int max_levels = 6;         // at most this many levels (1: no pyramid)
    int max_iterations = 200;   // per level
    double tolerance = 1e-7;    // stop a level when the correlation rose by less than this
    double sigma = 1.0;         // Gaussian smoothing of the coarser levels, in that level's pixels (0: none)
    double fine_sigma = 0.7;    // ... and of the full-resolution level (see the file comment)
    /// Rigid and affine: also start from the centred placement turned by 30, 60, ..., 330 degrees,
    /// for exams turned by more than ECC reaches from one start (about 60 degrees on a smooth exam).
    /// Off by default: anatomy that is nearly symmetric may then be matched turned by about 180.
    bool any_angle = false;
};

struct LevelReport {
    std::int64_t height = 0, width = 0;
    int iterations = 0;
    double ncc = 0;             // at the end of the level
};

struct Alignment {
    Transform2D transform;      // reference pixel -> target pixel
    double ncc_before = 0;      // the correlation of the images as given (identity; over their common grid)
    double ncc_after = 0;       // after alignment, over the pixels both cover, full resolution, unsmoothed
    std::int64_t overlap = 0;   // reference pixels whose transformed position lies inside the target
    bool moved = true;          // false: a placement as given was kept (the centres on each other, or top-left corners for a target of another size)
    std::vector<LevelReport> levels;  // coarsest first
};

namespace detail {

/// (H, W) image as plain row-major floats.
struct Plane {
    std::int64_t h = 0, w = 0;
    std::vector<float> v;
    float at(std::int64_t y, std::int64_t x) const { return v[static_cast<std::size_t>(y * w + x)]; }
};

inline Plane plane_of(const Tensor<float, Cpu>& t) {
    Plane p{t.size(0), t.size(1), {}};
    p.v.assign(t.data(), t.data() + t.numel());
    return p;
}

/// Half the size: each pixel the mean of a 2x2 block (an odd last row or column is dropped).
inline Plane half(const Plane& p) {
    Plane q{p.h / 2, p.w / 2, {}};
    q.v.resize(static_cast<std::size_t>(q.h * q.w));
    for (std::int64_t y = 0; y < q.h; ++y)
        for (std::int64_t x = 0; x < q.w; ++x)
            q.v[static_cast<std::size_t>(y * q.w + x)] =
                0.25f * (p.at(2 * y, 2 * x) + p.at(2 * y, 2 * x + 1) + p.at(2 * y + 1, 2 * x) + p.at(2 * y + 1, 2 * x + 1));
    return q;
}

/// Separable Gaussian blur (radius ceil(3 sigma), edges replicated).
inline Plane blur(const Plane& p, double sigma) {
    if (sigma <= 0) return p;
    const int r = static_cast<int>(std::ceil(3 * sigma));
    std::vector<double> k(static_cast<std::size_t>(2 * r + 1));
    double sum = 0;
    for (int i = -r; i <= r; ++i) sum += k[static_cast<std::size_t>(i + r)] = std::exp(-0.5 * i * i / (sigma * sigma));
    for (auto& v : k) v /= sum;
    Plane tmp = p, out = p;
    const auto clampi = [](std::int64_t v, std::int64_t n) { return std::min(std::max<std::int64_t>(v, 0), n - 1); };
    for (std::int64_t y = 0; y < p.h; ++y)
        for (std::int64_t x = 0; x < p.w; ++x) {
            double s = 0;
            for (int i = -r; i <= r; ++i) s += k[static_cast<std::size_t>(i + r)] * p.at(y, clampi(x + i, p.w));
            tmp.v[static_cast<std::size_t>(y * p.w + x)] = static_cast<float>(s);
        }
    for (std::int64_t y = 0; y < p.h; ++y)
        for (std::int64_t x = 0; x < p.w; ++x) {
            double s = 0;
            for (int i = -r; i <= r; ++i) s += k[static_cast<std::size_t>(i + r)] * tmp.at(clampi(y + i, p.h), x);
            out.v[static_cast<std::size_t>(y * p.w + x)] = static_cast<float>(s);
        }
    return out;
}

/// Central differences (one-sided at the edges): d/dx and d/dy.
inline void gradients(const Plane& p, Plane& gx, Plane& gy) {
    gx = p;
    gy = p;
    for (std::int64_t y = 0; y < p.h; ++y)
        for (std::int64_t x = 0; x < p.w; ++x) {
            const std::int64_t xl = std::max<std::int64_t>(x - 1, 0), xr = std::min(x + 1, p.w - 1);
            const std::int64_t yu = std::max<std::int64_t>(y - 1, 0), yd = std::min(y + 1, p.h - 1);
            gx.v[static_cast<std::size_t>(y * p.w + x)] =
                xr > xl ? (p.at(y, xr) - p.at(y, xl)) / static_cast<float>(xr - xl) : 0.0f;
            gy.v[static_cast<std::size_t>(y * p.w + x)] =
                yd > yu ? (p.at(yd, x) - p.at(yu, x)) / static_cast<float>(yd - yu) : 0.0f;
        }
}

/// The correlation coefficient of a and b over the pixels where mask is set; 0 when either is
/// constant there.
inline double ncc(const std::vector<double>& a, const std::vector<double>& b) {
    const auto n = static_cast<double>(a.size());
    if (a.empty()) return 0;
    double ma = 0, mb = 0;
    for (std::size_t i = 0; i < a.size(); ++i) ma += a[i], mb += b[i];
    ma /= n, mb /= n;
    double sab = 0, saa = 0, sbb = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        sab += (a[i] - ma) * (b[i] - mb);
        saa += (a[i] - ma) * (a[i] - ma);
        sbb += (b[i] - mb) * (b[i] - mb);
    }
    return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : 0.0;
}

/// One pyramid level of ECC, from T (reference -> target, in this level's pixels); returns the
/// final correlation and updates T and `iterations`.
inline double ecc_level(const Plane& ref, const Plane& tgt, Transform2D& T, const AlignOptions& o, int& iterations) {
    Plane gx, gy;
    gradients(tgt, gx, gy);
    const int n = parameter_count(T.motion);
    std::vector<double> t, iw;         // reference and warped target over the overlap
    std::vector<double> G;             // Jacobian, one row of n per overlap pixel
    double last = -2;
    iterations = 0;
    for (; iterations < o.max_iterations; ++iterations) {
        t.clear(), iw.clear(), G.clear();
        const double c = std::cos(T.theta), s = std::sin(T.theta);
        for (std::int64_t y = 0; y < ref.h; ++y)
            for (std::int64_t x = 0; x < ref.w; ++x) {
                double u = 0, v = 0, val = 0, dx = 0, dy = 0;
                T.apply(static_cast<double>(x), static_cast<double>(y), u, v);
                if (!bilinear(tgt.v.data(), tgt.h, tgt.w, u, v, val)) continue;
                bilinear(gx.v.data(), tgt.h, tgt.w, u, v, dx);
                bilinear(gy.v.data(), tgt.h, tgt.w, u, v, dy);
                t.push_back(ref.at(y, x));
                iw.push_back(val);
                const double px = static_cast<double>(x) - T.cx, py = static_cast<double>(y) - T.cy;
                if (T.motion == Motion::translation) {
                    G.insert(G.end(), {dx, dy});
                } else if (T.motion == Motion::rigid) {  // dW/dtheta = R'(theta) (x - c)
                    G.insert(G.end(), {dx * (-s * px - c * py) + dy * (c * px - s * py), dx, dy});
                } else {
                    G.insert(G.end(), {dx * px, dx * py, dy * px, dy * py, dx, dy});
                }
            }
        const auto N = static_cast<std::int64_t>(t.size());
        MEDIMG_CHECK(N >= 2 * n + 2, ValueError, "align: the images no longer overlap (", N, " common pixels at ", ref.w, "x", ref.h,
                     "); they cannot be aligned");
        // zero-mean vectors (the criterion is invariant to gain and offset) and centred Jacobian
        Eigen::VectorXd tv = Eigen::Map<Eigen::VectorXd>(t.data(), N), iv = Eigen::Map<Eigen::VectorXd>(iw.data(), N);
        Eigen::MatrixXd J = Eigen::Map<Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(G.data(), N, n);
        tv.array() -= tv.mean();
        iv.array() -= iv.mean();
        J.rowwise() -= J.colwise().mean();
        if ((tv.array() == iv.array()).all() && iterations == 0) {  // already aligned, to the last bit: nothing to improve
            last = 1.0;
            break;
        }
        const double tn = tv.norm(), in = iv.norm();
        MEDIMG_CHECK(tn > 0 && in > 0, ValueError, "align: ", tn > 0 ? "the target" : "the reference",
                     " is constant where the images overlap; there is nothing to align by");
        const double corr = tv.dot(iv);
        const double rho = corr / (tn * in);
        if (rho - last < o.tolerance && iterations > 0) break;
        last = rho;
        const Eigen::MatrixXd H = J.transpose() * J;
        const Eigen::LDLT<Eigen::MatrixXd> solve(H);
        if (solve.info() != Eigen::Success || !(H.diagonal().minCoeff() > 0)) break;  // flat target: no direction to move
        const Eigen::VectorXd ip = J.transpose() * iv, tp = J.transpose() * tv;
        const Eigen::VectorXd Hip = solve.solve(ip);
        // Evangelidis & Psarakis 2008, eq. (24)-(26): the scale lambda of the template in the update
        const double lambda_n = in * in - ip.dot(Hip);
        const double lambda_d = corr - tp.dot(Hip);
        const double lambda = lambda_d > 0 ? lambda_n / lambda_d : 0.0;
        Eigen::VectorXd dp;
        if (lambda_d > 0) {
            dp = solve.solve(J.transpose() * (lambda * tv - iv));
        } else {  // eq. (27): the correlation is not yet positive along J; step to make it so
            const double lambda1 = std::sqrt(std::max(ip.dot(Hip), 0.0) / std::max(tp.dot(solve.solve(tp)), 1e-300));
            const double lambda2 = (tp.dot(Hip) - corr) / std::max(tp.dot(solve.solve(tp)), 1e-300);
            dp = solve.solve(J.transpose() * (std::max(lambda1, lambda2) * tv - iv));
        }
        std::vector<double> p = T.parameters();
        for (int k = 0; k < n; ++k) p[static_cast<std::size_t>(k)] += dp[k];
        if (!std::all_of(p.begin(), p.end(), [](double v) { return std::isfinite(v); })) break;
        T.set_parameters(p);
    }
    return last;
}

/// The correlation of ref and the target resampled through T over the pixels both cover.
inline double overlap_ncc(const Plane& ref, const Plane& tgt, const Transform2D& T, std::int64_t& overlap) {
    std::vector<double> a, b;
    for (std::int64_t y = 0; y < ref.h; ++y)
        for (std::int64_t x = 0; x < ref.w; ++x) {
            double u = 0, v = 0, val = 0;
            T.apply(static_cast<double>(x), static_cast<double>(y), u, v);
            if (!bilinear(tgt.v.data(), tgt.h, tgt.w, u, v, val)) continue;
            a.push_back(ref.at(y, x));
            b.push_back(val);
        }
    overlap = static_cast<std::int64_t>(a.size());
    return ncc(a, b);
}

/// The largest distance between where p and q send the four corners of an H x W reference.
inline double corner_distance(const Transform2D& p, const Transform2D& q, std::int64_t H, std::int64_t W) {
    double worst = 0;
    for (double x : {0.0, static_cast<double>(W - 1)})
        for (double y : {0.0, static_cast<double>(H - 1)}) {
            double u1 = 0, v1 = 0, u2 = 0, v2 = 0;
            p.apply(x, y, u1, v1);
            q.apply(x, y, u2, v2);
            worst = std::max(worst, std::hypot(u1 - u2, v1 - v2));
        }
    return worst;
}

/// The whole-pixel shift (dx, dy) that maximises the correlation of ref(y, x) and tgt(y + dy,
/// x + dx) over every shift keeping at least half of the smaller image in common: an exhaustive
/// search, on copies halved until neither is wider or taller than 64 pixels (the shift is returned
/// in the pixels of ref, a multiple of the halving factor).
inline std::pair<double, double> best_shift(Plane ref, Plane tgt) {
    double factor = 1;
    while (std::max({ref.h, ref.w, tgt.h, tgt.w}) > 64 && std::min({ref.h, ref.w, tgt.h, tgt.w}) >= 16)
        ref = half(ref), tgt = half(tgt), factor *= 2;
    const std::int64_t min_common = (std::min(ref.h * ref.w, tgt.h * tgt.w) + 1) / 2;
    double best = -2;
    std::pair<double, double> at{0, 0};
    for (std::int64_t dy = 1 - ref.h; dy < tgt.h; ++dy) {
        const std::int64_t y0 = std::max<std::int64_t>(0, -dy), y1 = std::min(ref.h, tgt.h - dy);
        for (std::int64_t dx = 1 - ref.w; dx < tgt.w; ++dx) {
            const std::int64_t x0 = std::max<std::int64_t>(0, -dx), x1 = std::min(ref.w, tgt.w - dx);
            if ((y1 - y0) * (x1 - x0) < min_common) continue;
            double sa = 0, sb = 0, saa = 0, sbb = 0, sab = 0;
            for (std::int64_t y = y0; y < y1; ++y)
                for (std::int64_t x = x0; x < x1; ++x) {
                    const double a = ref.at(y, x), b = tgt.at(y + dy, x + dx);
                    sa += a, sb += b, saa += a * a, sbb += b * b, sab += a * b;
                }
            const double n = static_cast<double>((y1 - y0) * (x1 - x0));
            const double va = saa - sa * sa / n, vb = sbb - sb * sb / n;
            const double r = va > 0 && vb > 0 ? (sab - sa * sb / n) / std::sqrt(va * vb) : 0.0;
            // the smallest shift among equals: ties keep the first strictly better
            if (r > best + 1e-12 || (std::abs(r - best) <= 1e-12 && std::abs(dx) + std::abs(dy) < std::abs(at.first) + std::abs(at.second)))
                best = r, at = {static_cast<double>(dx), static_cast<double>(dy)};
        }
    }
    return {at.first * factor, at.second * factor};
}

}  // namespace detail

/// Aligns `target` (h, w) to `reference` (H, W), both grey (2-D, or (1, H, W)); sizes may differ.
/// Throws ShapeError for images that are not 2-D or smaller than 8 pixels a side, ValueError
/// "align: ..." for a constant image or when the images stop overlapping.
inline Alignment align(const Tensor<float, Cpu>& reference, const Tensor<float, Cpu>& target, const AlignOptions& o = {}) {
    const auto flat = [](const Tensor<float, Cpu>& t, const char* what) {
        MEDIMG_CHECK((t.rank() == 2 || (t.rank() == 3 && t.size(0) == 1)) && t.size(-1) >= 8 && t.size(-2) >= 8, ShapeError,
                     "align: the ", what, " must be a grey image of at least 8x8 pixels, got shape ", t.shape());
        return t.reshape(Shape{t.size(-2), t.size(-1)});
    };
    MEDIMG_CHECK(o.max_levels >= 1 && o.max_iterations >= 1 && o.min_side >= 8 && o.tolerance >= 0 && o.sigma >= 0 &&
                     o.fine_sigma >= 0,
                 ValueError, "align: need max_levels >= 1, max_iterations >= 1, min_side >= 8, tolerance >= 0 and sigmas >= 0");
    const auto ref0 = detail::plane_of(flat(reference, "reference"));
    const auto tgt0 = detail::plane_of(flat(target, "target"));
    for (const auto* p : {&ref0, &tgt0})
        for (float v : p->v)
            MEDIMG_CHECK(std::isfinite(v), ValueError, "align: the ", p == &ref0 ? "reference" : "target", " has a non-finite pixel");

    // the pyramids: level 0 full size; halve while both images keep min_side
    std::vector<detail::Plane> refs{ref0}, tgts{tgt0};
    while (static_cast<int>(refs.size()) < o.max_levels) {
        const auto& r = refs.back();
        const auto& t = tgts.back();
        if (std::min({r.h, r.w, t.h, t.w}) / 2 < o.min_side) break;
        refs.push_back(detail::half(r));
        tgts.push_back(detail::half(t));
    }
    Alignment out;
    out.transform = Transform2D::identity(o.motion, ref0.h, ref0.w);
    {
        std::int64_t common = 0;  // before: the images as given, over their common top-left grid
        std::vector<double> a, b;
        for (std::int64_t y = 0; y < std::min(ref0.h, tgt0.h); ++y)
            for (std::int64_t x = 0; x < std::min(ref0.w, tgt0.w); ++x) a.push_back(ref0.at(y, x)), b.push_back(tgt0.at(y, x)), ++common;
        out.ncc_before = detail::ncc(a, b);
    }
    // The starts. Either may be the one the images were meant to be compared at: the centres on
    // each other (ITK's geometry initialiser; the same as given when the sizes are equal) and, for a
    // target of another size, the images as given (top-left corners together: a crop of the
    // reference's top-left, an exam padded right and below). A third covers large offsets: the
    // best whole-pixel shift of the coarsest level (an exhaustive search, ECC's basin being about a
    // pixel of each level); with any_angle (rigid and affine motion), eleven more turn the centred
    // start by 30, 60, ..., 330 degrees (ECC finds a smooth exam turned by up to about 60 degrees
    // from one start, not 90). The coarsest level runs from each start.
    const Transform2D identity = out.transform;
    Transform2D centred = identity;
    centred.tx = (static_cast<double>(tgt0.w) - static_cast<double>(ref0.w)) / 2;
    centred.ty = (static_cast<double>(tgt0.h) - static_cast<double>(ref0.h)) / 2;
    std::vector<Transform2D> fallbacks{centred};  // what "kept as given" may keep
    if (tgt0.h != ref0.h || tgt0.w != ref0.w) fallbacks.push_back(identity);
    const std::size_t coarsest = refs.size() - 1;
    const double top_factor = std::ldexp(1.0, static_cast<int>(coarsest));
    const auto r_top = detail::blur(refs[coarsest], o.sigma), t_top = detail::blur(tgts[coarsest], o.sigma);
    std::vector<Transform2D> starts = fallbacks;
    {
        Transform2D shifted = identity;
        const auto d = detail::best_shift(r_top, t_top);
        shifted.tx = d.first * top_factor, shifted.ty = d.second * top_factor;
        const bool is_new = std::none_of(starts.begin(), starts.end(), [&](const Transform2D& s) {
            return detail::corner_distance(s, shifted, ref0.h, ref0.w) < top_factor;
        });
        if (is_new) starts.push_back(shifted);
    }
    if (o.any_angle && o.motion != Motion::translation)  // turned exams: the centred start at every 30 degrees
        for (int k = 1; k < 12; ++k) {
            const double theta = k * kPi / 6;
            Transform2D turned = centred;
            if (o.motion == Motion::rigid)
                turned.set_parameters({theta, centred.tx, centred.ty});
            else
                turned.set_parameters({std::cos(theta) - 1, -std::sin(theta), std::sin(theta), std::cos(theta) - 1, centred.tx, centred.ty});
            starts.push_back(turned);
        }
    const auto to_full = [](Transform2D T, double factor) {  // back to full-resolution pixels: the inverse of scaled()
        const double off = (factor - 1) / 2;
        T.cx = T.cx * factor + off, T.cy = T.cy * factor + off;
        T.tx *= factor, T.ty *= factor;
        return T;
    };
    struct Candidate {
        Transform2D transform;  // full-resolution pixels
        std::vector<LevelReport> levels;
    };
    std::vector<Candidate> candidates;
    std::exception_ptr first_error;
    // One level of ECC for c from its full-resolution transform; false when it loses the overlap
    // (the error kept: thrown if no candidate is left), T its end in the level's pixels.
    const auto run_level = [&](const detail::Plane& r, const detail::Plane& t, std::size_t l, Candidate& c, Transform2D& T) {
        T = c.transform.scaled(std::ldexp(1.0, static_cast<int>(l)));
        LevelReport rep{refs[l].h, refs[l].w, 0, 0};
        try {
            rep.ncc = detail::ecc_level(r, t, T, o, rep.iterations);
        } catch (const ValueError&) {
            if (!first_error) first_error = std::current_exception();
            return false;
        }
        c.levels.push_back(rep);
        c.transform = to_full(T, std::ldexp(1.0, static_cast<int>(l)));
        return true;
    };
    {
        const double sigma = coarsest == 0 ? o.fine_sigma : o.sigma;
        const auto r = coarsest == 0 ? detail::blur(refs[0], sigma) : r_top;
        const auto t = coarsest == 0 ? detail::blur(tgts[0], sigma) : t_top;
        for (const auto& s : starts) {
            Candidate c{s, {}};
            Transform2D T;
            if (!run_level(r, t, coarsest, c, T)) continue;  // this start loses the overlap; another may not
            // a start other than the first counts only while a quarter of the smaller image stays in
            // common (a sliver of overlap can correlate by chance)
            std::int64_t overlap = 0;
            detail::overlap_ncc(r, t, T, overlap);
            if (&s != &starts.front() && 4 * overlap < std::min(r.h * r.w, t.h * t.w)) continue;
            candidates.push_back(std::move(c));
        }
        if (candidates.empty()) std::rethrow_exception(first_error);
    }
    // The three best distinct ends of the coarsest level go on (two ends are one when they put every
    // corner of the reference within one coarsest-level pixel of each other): a coarse level cannot
    // always tell an exam from its turned copy (near-symmetric anatomy), the full resolution decides.
    std::stable_sort(candidates.begin(), candidates.end(),
                     [](const Candidate& a, const Candidate& b) { return a.levels[0].ncc > b.levels[0].ncc; });
    {
        std::vector<Candidate> distinct;
        for (auto& c : candidates) {
            const bool same = std::any_of(distinct.begin(), distinct.end(), [&](const Candidate& d) {
                return detail::corner_distance(c.transform, d.transform, ref0.h, ref0.w) < top_factor;
            });
            if (!same && distinct.size() < 3) distinct.push_back(std::move(c));
        }
        candidates = std::move(distinct);
    }
    for (std::size_t l = coarsest; l-- > 0;) {
        const double sigma = l == 0 ? o.fine_sigma : o.sigma;
        const auto r = detail::blur(refs[l], sigma), t = detail::blur(tgts[l], sigma);
        std::vector<Candidate> going_on;
        for (auto& c : candidates) {
            Transform2D T;
            if (run_level(r, t, l, c, T)) going_on.push_back(std::move(c));
        }
        if (going_on.empty()) std::rethrow_exception(first_error);
        candidates = std::move(going_on);
    }
    for (std::size_t k = 0; k < candidates.size(); ++k) {  // the highest correlation at full resolution, unsmoothed
        std::int64_t overlap = 0;
        const double ncc = detail::overlap_ncc(ref0, tgt0, candidates[k].transform, overlap);
        if (k == 0 || ncc > out.ncc_after) {
            out.transform = candidates[k].transform;
            out.levels = candidates[k].levels;
            out.ncc_after = ncc;
            out.overlap = overlap;
        }
    }
    // Kept only if it raises the correlation of the images as given (the pyramid works on smoothed
    // copies): a pair that is already aligned stays exactly as it is, not resampled by a few
    // hundredths of a pixel. Of two fallbacks (sizes differ), the one with the higher correlation.
    for (const auto& s : fallbacks) {
        std::int64_t overlap = 0;
        const double at = detail::overlap_ncc(ref0, tgt0, s, overlap);
        if (!(out.ncc_after > at)) {
            out.transform = s;
            out.ncc_after = at;
            out.overlap = overlap;
            out.moved = false;
        }
    }
    return out;
}

}  // namespace medimg::reg
