// SPDX-License-Identifier: MIT
// register/transform.hpp: 2-D transforms of an image registration and bilinear resampling.
// A Transform2D maps a point of the reference (fixed) image to the target (moving) image,
//   W(x) = A (x - c) + c + t,
// with c the centre of the reference, (W - 1) / 2 and (H - 1) / 2 in pixel coordinates (x the
// column, y the row, pixel centres at whole numbers, as ITK and scikit-image). Aligning the target
// is sampling it at W(x) for every reference pixel x (resample). The parameters p it is fitted
// over, by motion model:
//   translation  (tx, ty)                                  A = I
//   rigid        (theta, tx, ty), theta in radians         A = [cos -sin; sin cos]
//   affine       (a00 - 1, a01, a10, a11 - 1, tx, ty)
// Deliberately not here: perspective and deformable transforms, 3-D.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"

namespace medimg::reg {

enum class Motion { translation, rigid, affine };

inline const char* motion_name(Motion m) {
    return m == Motion::translation ? "translation" : m == Motion::rigid ? "rigid" : "affine";
}
/// The number of parameters of a motion model.
inline int parameter_count(Motion m) { return m == Motion::translation ? 2 : m == Motion::rigid ? 3 : 6; }

inline constexpr double kPi = 3.14159265358979323846;

struct Transform2D {
    Motion motion = Motion::rigid;
    std::array<double, 4> a{1, 0, 0, 1};  // A, row-major: a[0] a[1] / a[2] a[3]
    double tx = 0, ty = 0;                // t, pixels
    double cx = 0, cy = 0;                // c, the reference's centre
    double theta = 0;                     // rigid: the angle of A, radians (counter-clockwise on screen is negative: y points down)

    /// The identity about the centre of an H x W reference.
    static Transform2D identity(Motion m, std::int64_t height, std::int64_t width) {
        Transform2D t;
        t.motion = m;
        t.cx = (static_cast<double>(width) - 1) / 2;
        t.cy = (static_cast<double>(height) - 1) / 2;
        return t;
    }

    /// W(x, y).
    void apply(double x, double y, double& u, double& v) const {
        const double dx = x - cx, dy = y - cy;
        u = a[0] * dx + a[1] * dy + cx + tx;
        v = a[2] * dx + a[3] * dy + cy + ty;
    }

    /// The fitted parameters p (see the file comment).
    std::vector<double> parameters() const {
        if (motion == Motion::translation) return {tx, ty};
        if (motion == Motion::rigid) return {theta, tx, ty};
        return {a[0] - 1, a[1], a[2], a[3] - 1, tx, ty};
    }
    /// Sets the transform from p; A follows from theta for rigid motion.
    void set_parameters(const std::vector<double>& p) {
        MEDIMG_CHECK(static_cast<int>(p.size()) == parameter_count(motion), ValueError, "reg::Transform2D: ", p.size(),
                     " parameters for a ", motion_name(motion), " transform, which has ", parameter_count(motion));
        if (motion == Motion::translation) {
            tx = p[0], ty = p[1];
        } else if (motion == Motion::rigid) {
            theta = p[0], tx = p[1], ty = p[2];
            a = {std::cos(theta), -std::sin(theta), std::sin(theta), std::cos(theta)};
        } else {
            a = {1 + p[0], p[1], p[2], 1 + p[3]};
            tx = p[4], ty = p[5];
        }
    }

    /// The same mapping written for images shrunk by `factor` (pyramid level pixels: x_level =
    /// (x - o) / factor, o = (factor - 1) / 2, the centre of the block a level pixel averages).
    Transform2D scaled(double factor) const {
        Transform2D s = *this;
        const double o = (factor - 1) / 2;
        s.cx = (cx - o) / factor;
        s.cy = (cy - o) / factor;
        s.tx = tx / factor;
        s.ty = ty / factor;
        return s;
    }

    /// The rotation angle of A in degrees (rigid; for affine, of A's rotation part).
    double angle_degrees() const { return std::atan2(a[2], a[0]) * 180.0 / kPi; }
};

/// Bilinear value of img (H x W, row-major) at (x, y); false when (x, y) is outside the square
/// hull of the pixel centres, [0, W - 1] x [0, H - 1], with a 1e-9 tolerance.
inline bool bilinear(const float* img, std::int64_t H, std::int64_t W, double x, double y, double& out) {
    constexpr double tol = 1e-9;
    if (!(x >= -tol && y >= -tol && x <= static_cast<double>(W - 1) + tol && y <= static_cast<double>(H - 1) + tol)) return false;
    x = std::min(std::max(x, 0.0), static_cast<double>(W - 1));
    y = std::min(std::max(y, 0.0), static_cast<double>(H - 1));
    const auto x0 = std::min(static_cast<std::int64_t>(x), W - 1), y0 = std::min(static_cast<std::int64_t>(y), H - 1);
    const std::int64_t x1 = std::min(x0 + 1, W - 1), y1 = std::min(y0 + 1, H - 1);
    const double fx = x - static_cast<double>(x0), fy = y - static_cast<double>(y0);
    const double top = (1 - fx) * img[y0 * W + x0] + fx * img[y0 * W + x1];
    const double bottom = (1 - fx) * img[y1 * W + x0] + fx * img[y1 * W + x1];
    out = (1 - fy) * top + fy * bottom;
    return true;
}

/// The target sampled on the reference's H x W grid through T (bilinear), and where it could be
/// sampled (mask: 1 inside the target, 0 where T leads outside it; those pixels are set to fill).
struct Resampled {
    Tensor<float, Cpu> image;  // (H, W)
    Tensor<float, Cpu> mask;   // (H, W), 1 or 0
    std::int64_t inside = 0;   // the number of mask pixels
};
inline Resampled resample(const Tensor<float, Cpu>& target, const Transform2D& T, std::int64_t H, std::int64_t W, float fill = 0.0f) {
    MEDIMG_CHECK(target.rank() == 2 && target.numel() > 0 && H > 0 && W > 0, ShapeError, "reg::resample: need a non-empty (H, W) target "
                 "and a positive output size, got ", target.shape(), " to ", H, "x", W);
    const std::int64_t h = target.size(0), w = target.size(1);
    Resampled r{Tensor<float, Cpu>::empty(Shape{H, W}), Tensor<float, Cpu>::empty(Shape{H, W}), 0};
    const float* src = target.data();
    for (std::int64_t y = 0; y < H; ++y)
        for (std::int64_t x = 0; x < W; ++x) {
            double u = 0, v = 0, val = 0;
            T.apply(static_cast<double>(x), static_cast<double>(y), u, v);
            const bool in = bilinear(src, h, w, u, v, val);
            r.image[y * W + x] = in ? static_cast<float>(val) : fill;
            r.mask[y * W + x] = in ? 1.0f : 0.0f;
            r.inside += in ? 1 : 0;
        }
    return r;
}

}  // namespace medimg::reg
