// SPDX-License-Identifier: MIT
// data/phantom.hpp: seeded synthetic brain-like slices for demos and tests. A "normal" slice is a
// bright skull ring, soft tissue with texture and two dark ventricles, each of varied size,
// position, intensity and noise; a "lesao" slice adds one soft-edged blob of varied size, contrast
// (brighter or darker) and place inside the brain. Not a physical simulation of any modality.
// Every lesion's centre and width are also written to OUT/lesions.csv, the ground truth that the
// explanation tests score heat maps against (docs/explain.md). write_phantom_pairs makes exam
// pairs for medimg-compare: one phantom without a lesion, then the same phantom with a lesion in
// another pose (a rigid motion) and with its own noise, as a follow-up exam would be.
#pragma once

#include <algorithm>
#include <cmath>

#include <filesystem>
#include <functional>
#include <string>

#include "medimg/core/rng.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/data/image.hpp"

namespace medimg::data {

namespace detail {

inline double ellipse(double x, double y, double cx, double cy, double ax, double ay, double theta) {
    const double c = std::cos(theta), s = std::sin(theta);
    const double u = ((x - cx) * c + (y - cy) * s) / ax, v = (-(x - cx) * s + (y - cy) * c) / ay;
    return u * u + v * v;  // < 1 inside
}
/// A smooth step from 1 inside (r < 1 - w) to 0 outside (r > 1 + w).
inline double soft(double r2, double w) { return 0.5 * (1.0 - std::tanh((std::sqrt(r2) - 1.0) / w)); }

}  // namespace detail

/// Where a lesion blob is: a Gaussian of standard deviation sigma (pixels) centred at (cx, cy)
/// (x to the right, y down, pixel centres at whole numbers). Its mask, as docs/explain.md uses it,
/// is the disc of radius 2 sigma, where the blob is above exp(-2) = 13.5% of its peak.
struct PhantomLesion {
    double cx = 0, cy = 0, sigma = 0;
    double radius() const { return 2.0 * sigma; }
};

/// How a slice is taken: the phantom moved by M(p) = R(angle) (p - c) + c + (tx, ty) about the
/// slice's centre c (pixel (x, y) shows the phantom's point M^-1(x, y)), its noise drawn from
/// `noise` when given (otherwise from the generator that draws the phantom).
struct PhantomPose {
    double angle_deg = 0, tx = 0, ty = 0;
    Rng* noise = nullptr;
};

/// One slice (1, side, side) in [0, 1]; lesion adds the blob (described in *where when given, in
/// the slice's pixels). Draws everything from rng, the same numbers whether or not there is a
/// lesion, so the same seed gives the same phantom with and without one.
inline Tensor<float, Cpu> phantom_slice(Rng& rng, int side, bool lesion, PhantomLesion* where = nullptr, const PhantomPose& pose = {}) {
    using detail::ellipse;
    using detail::soft;
    auto img = Tensor<float, Cpu>::empty({1, side, side});
    const double S = side, cx = S / 2 + rng.uniform(-0.04, 0.04) * S, cy = S / 2 + rng.uniform(-0.04, 0.04) * S;
    const double ax = rng.uniform(0.36, 0.44) * S, ay = rng.uniform(0.40, 0.47) * S, th = rng.uniform(-0.3, 0.3);
    const double skull = rng.uniform(0.75, 0.95), tissue = rng.uniform(0.35, 0.5), vent = rng.uniform(0.08, 0.18);
    const double noise = rng.uniform(0.015, 0.04), tex_f = rng.uniform(0.15, 0.35), tex_a = rng.uniform(0.01, 0.04);
    const double vx = rng.uniform(0.05, 0.09) * S, vy = rng.uniform(0.10, 0.16) * S, vsep = rng.uniform(0.07, 0.11) * S;
    // Lesion: inside the brain, away from the skull.
    const double lr = rng.uniform(0.06, 0.12) * S, la = rng.uniform(0.0, 6.28), ld = rng.uniform(0.0, 0.5);
    const double lx = cx + std::cos(la) * ld * ax, ly = cy + std::sin(la) * ld * ay;
    const double lc = (rng.uniform() < 0.75 ? 1.0 : -1.0) * rng.uniform(0.2, 0.4);
    const bool moved = pose.angle_deg != 0 || pose.tx != 0 || pose.ty != 0;
    const double pa = pose.angle_deg * 3.14159265358979323846 / 180, pc = std::cos(pa), ps = std::sin(pa), mid = (S - 1) / 2;
    if (lesion && where)  // M(lx, ly): where the moved slice shows it
        *where = PhantomLesion{pc * (lx - mid) - ps * (ly - mid) + mid + pose.tx, ps * (lx - mid) + pc * (ly - mid) + mid + pose.ty, lr};
    Rng& noise_rng = pose.noise ? *pose.noise : rng;
    for (int py = 0; py < side; ++py)
        for (int px = 0; px < side; ++px) {
            double x = px, y = py;  // the phantom's point this pixel shows: M^-1(px, py)
            if (moved) {
                const double dx = px - mid - pose.tx, dy = py - mid - pose.ty;
                x = pc * dx + ps * dy + mid;
                y = -ps * dx + pc * dy + mid;
            }
            const double outer = ellipse(x, y, cx, cy, ax, ay, th), inner = ellipse(x, y, cx, cy, ax * 0.9, ay * 0.9, th);
            double v = 0.02 + skull * (soft(outer, 0.03) - soft(inner, 0.03));
            const double brain = soft(inner, 0.03);
            v += brain * (tissue + tex_a * std::sin(tex_f * x + 0.7 * std::cos(tex_f * y)));
            const double l1 = ellipse(x, y, cx - vsep, cy, vx, vy, th + 0.2), l2 = ellipse(x, y, cx + vsep, cy, vx, vy, th - 0.2);
            v -= brain * (tissue - vent) * std::max(soft(l1, 0.15), soft(l2, 0.15));
            if (lesion) v += brain * lc * std::exp(-((x - lx) * (x - lx) + (y - ly) * (y - ly)) / (2 * lr * lr));
            v += noise_rng.normal(0.0, noise);
            img[py * side + px] = static_cast<float>(std::clamp(v, 0.0, 1.0));
        }
    return img;
}
/// Grey level [0, 1] of a phantom -> Hounsfield units, for the DICOM form of the data set
/// (medimg-phantoms --format dicom): piecewise linear and increasing through background (0) ->
/// -1000 (air), 0.06 -> -100, 0.1 -> 0 (the ventricles ~ 0-15, as CSF), 0.5 -> 45 (the tissue ~
/// 30-45, as brain), 0.75 -> 85, 0.8 -> 300, 1 -> 1500 (the skull, bone), so the brain window
/// (W:80 L:40) shows the tissue, ventricles and lesions with the contrast the PNGs have.
inline double phantom_hu(double v) {
    static constexpr double knots[][2] = {{0.0, -1000}, {0.06, -100}, {0.1, 0}, {0.5, 45}, {0.75, 85}, {0.8, 300}, {1.0, 1500}};
    if (v <= 0) return knots[0][1];
    for (std::size_t i = 1; i < sizeof knots / sizeof knots[0]; ++i)
        if (v <= knots[i][0])
            return knots[i - 1][1] + (v - knots[i - 1][0]) / (knots[i][0] - knots[i - 1][0]) * (knots[i][1] - knots[i - 1][1]);
    return knots[6][1];
}

/// Writes one phantom (1, side, side) in [0, 1] to a file; `stem` is the path without extension
/// and `index` numbers the image within the whole data set. Returns the file's path.
using PhantomWriter = std::function<std::string(const std::string& stem, const Tensor<float, Cpu>& slice, std::int64_t index)>;
/// 16-bit PNG, the default.
inline std::string write_phantom_png(const std::string& stem, const Tensor<float, Cpu>& slice, std::int64_t) {
    write_png(stem + ".png", slice, 16);
    return stem + ".png";
}

/// Writes root/{train,val,test}/{normal,lesao}/NNNN.png as 16-bit PNGs (or what `writer` writes),
/// counts[k] images in split k (alternating classes), and root/lesions.csv: one row per lesao
/// image, "path,cx,cy,sigma" (path relative to root; PhantomLesion's units). Refuses a root that
/// exists and is not empty. Returns the number of images.
inline std::int64_t write_phantom_dataset(const std::string& root, int side, const std::int64_t (&counts)[3], std::uint64_t seed,
                                          const PhantomWriter& writer = write_phantom_png) {
    namespace fs = std::filesystem;
    std::error_code ec;
    MEDIMG_CHECK(!fs::exists(root, ec) || fs::is_empty(root, ec), IoError, "phantoms: '", root,
                 "' already exists and is not empty; refusing to overwrite it");
    MEDIMG_CHECK(side >= 32 && side <= 1024, ValueError, "phantoms: side must be in [32, 1024], got ", side);
    Rng rng(seed);
    std::int64_t written = 0;
    const char* splits[3] = {"train", "val", "test"};
    std::string csv = "path,cx,cy,sigma\n";
    for (int k = 0; k < 3; ++k) {
        MEDIMG_CHECK(counts[k] >= 2, ValueError, "phantoms: the ", splits[k], " split needs at least 2 images, got ", counts[k]);
        for (std::int64_t i = 0; i < counts[k]; ++i) {
            const bool lesion = i % 2 == 1;
            const fs::path dir = fs::path(root) / splits[k] / (lesion ? "lesao" : "normal");
            fs::create_directories(dir);
            char name[32];
            std::snprintf(name, sizeof name, "%04lld", static_cast<long long>(i / 2));
            PhantomLesion where;
            const auto file = fs::path(writer((dir / name).string(), phantom_slice(rng, side, lesion, &where), written)).filename().string();
            if (lesion) {
                char row[160];
                std::snprintf(row, sizeof row, "%s/lesao/%s,%.4f,%.4f,%.4f\n", splits[k], file.c_str(), where.cx, where.cy, where.sigma);
                csv += row;
            }
            ++written;
        }
    }
    io::write_file_atomically((fs::path(root) / "lesions.csv").string(), {{reinterpret_cast<const std::uint8_t*>(csv.data()), csv.size()}},
                              "phantoms");
    return written;
}

/// Writes root/NNNN_reference.png (a phantom without a lesion) and root/NNNN_moved_lesion.png (the
/// same phantom with a lesion, turned by up to max_angle degrees and shifted by up to max_shift of
/// the side in x and y, uniformly, with noise of its own), n pairs of 16-bit PNGs, and
/// root/pairs.csv: "reference,target,angle_deg,tx,ty,lesion_cx,lesion_cy,lesion_sigma", the motion
/// (reference pixel -> target pixel, about the centre, as reg::Transform2D) and the lesion where it
/// lies in the reference's frame (in the aligned target). Refuses a root that exists and is not empty.
inline std::int64_t write_phantom_pairs(const std::string& root, int side, std::int64_t n, std::uint64_t seed, double max_angle = 10.0,
                                        double max_shift = 0.06) {
    namespace fs = std::filesystem;
    std::error_code ec;
    MEDIMG_CHECK(!fs::exists(root, ec) || fs::is_empty(root, ec), IoError, "phantoms: '", root,
                 "' already exists and is not empty; refusing to overwrite it");
    MEDIMG_CHECK(side >= 32 && side <= 1024, ValueError, "phantoms: side must be in [32, 1024], got ", side);
    MEDIMG_CHECK(n >= 1 && n <= 100000, ValueError, "phantoms: --pairs must be in [1, 100000], got ", n);
    fs::create_directories(root);
    Rng master(seed);
    std::string csv = "reference,target,angle_deg,tx,ty,lesion_cx,lesion_cy,lesion_sigma\n";
    const double mid = (side - 1) / 2.0;
    for (std::int64_t i = 0; i < n; ++i) {
        const std::uint64_t anatomy = master.next_u64();
        Rng noise_a(master.next_u64()), noise_b(master.next_u64());
        PhantomPose pose{master.uniform(-max_angle, max_angle), master.uniform(-max_shift, max_shift) * side,
                         master.uniform(-max_shift, max_shift) * side, &noise_b};
        Rng ra(anatomy), rb(anatomy);
        PhantomPose still;
        still.noise = &noise_a;
        PhantomLesion moved;
        const auto reference = phantom_slice(ra, side, false, nullptr, still);
        const auto target = phantom_slice(rb, side, true, &moved, pose);
        // the lesion in the reference's frame: M^-1 of where the moved slice shows it
        const double a = pose.angle_deg * 3.14159265358979323846 / 180, c = std::cos(a), s = std::sin(a);
        const double dx = moved.cx - mid - pose.tx, dy = moved.cy - mid - pose.ty;
        char ref_name[32], tgt_name[40], row[256];
        std::snprintf(ref_name, sizeof ref_name, "%04lld_reference.png", static_cast<long long>(i));
        std::snprintf(tgt_name, sizeof tgt_name, "%04lld_moved_lesion.png", static_cast<long long>(i));
        write_png((fs::path(root) / ref_name).string(), reference, 16);
        write_png((fs::path(root) / tgt_name).string(), target, 16);
        std::snprintf(row, sizeof row, "%s,%s,%.6f,%.6f,%.6f,%.4f,%.4f,%.4f\n", ref_name, tgt_name, pose.angle_deg, pose.tx, pose.ty,
                      c * dx + s * dy + mid, -s * dx + c * dy + mid, moved.sigma);
        csv += row;
    }
    io::write_file_atomically((fs::path(root) / "pairs.csv").string(), {{reinterpret_cast<const std::uint8_t*>(csv.data()), csv.size()}},
                              "phantoms");
    return 2 * n;
}

}  // namespace medimg::data
