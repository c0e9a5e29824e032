// SPDX-License-Identifier: MIT
// data/transforms.hpp: image transforms on one (C, H, W) float tensor, numbered as torchvision's
// tensor functions (torchvision.transforms.functional, v0.14) so fixtures pin them: resize (bilinear,
// antialias=True), center/random-resized crops, flips, rotation, brightness/contrast, grey
// conversion, normalize; and TransformPipeline with train_pipeline / eval_pipeline, the usual
// torchvision recipes. Randomness comes only from the Rng& passed in, so a seeded Rng reproduces a
// pipeline exactly (the random numbers differ from torch's; the sampling procedures are the same).
// Deliberately not here: batches, uint8 images, nearest/bicubic modes, in-place variants, threads
// (the DataLoader runs transforms on its worker threads, one image each).
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "medimg/core/rng.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"

namespace medimg::data {

using ImageTensor = Tensor<float, Cpu>;  // (C, H, W), values in [0, 1] until normalize

/// Largest height x width a resize may produce or hold in its intermediate (64 Mi = 8192 x 8192,
/// the same as ReadOptions::max_pixels). The reader's limit bounds the input only: a valid but
/// extreme image (3 x 40000 pixels) asked to have its shorter side 256 would become 256 x 3413333,
/// about 10 GB of floats; resize checks the sizes it is about to allocate and refuses such images
/// before allocating (ShapeError, which the data pipeline reports with the file's name).
inline constexpr std::int64_t max_resize_pixels = std::int64_t{1} << 26;

namespace detail {

inline void check_chw_image(const char* fn, const ImageTensor& img) {
    MEDIMG_CHECK(img.defined() && img.rank() == 3, ShapeError, fn, ": expected a (C, H, W) image, got shape ",
                 img.defined() ? img.shape().to_string() : std::string("<undefined>"));
    MEDIMG_CHECK(img.size(0) >= 1 && img.size(1) >= 1 && img.size(2) >= 1, ShapeError, fn,
                 ": expected a non-empty (C, H, W) image, got shape ", img.shape());
}

/// Python's round(): to nearest, ties to even (torchvision computes crop offsets with it).
inline std::int64_t round_half_even(double x) {
    const double f = std::floor(x);
    const double d = x - f;
    auto r = static_cast<std::int64_t>(f);
    if (d > 0.5 || (d == 0.5 && (r % 2 != 0))) ++r;
    return r;
}

/// One axis of the antialiased bilinear resize: output i reads input [start[i], start[i] + count[i])
/// with weights w[i * taps + k]. Follows PyTorch's _upsample_bilinear2d_aa
/// (aten/src/ATen/native/cpu/UpSampleKernel.cpp, _compute_indices_weights_aa), which follows PIL's
/// ImagingResample (libImaging/Resample.c): a triangle filter whose support is stretched by the
/// scale when downscaling (scale = in/out > 1), so every input pixel under it contributes; when
/// upscaling the support is 1 and this is ordinary bilinear with align_corners=False, clamped at the
/// borders. The index arithmetic is done in float, as PyTorch does for float images, so the same
/// input pixels are selected; the weights are computed and normalised in double.
struct AxisWeights {
    std::vector<std::int64_t> start, count;
    std::vector<double> w;
    std::int64_t taps = 0;
};
inline AxisWeights antialias_bilinear_weights(std::int64_t in, std::int64_t out) {
    AxisWeights a;
    const float scale = static_cast<float>(in) / static_cast<float>(out);
    const float support = scale >= 1.0f ? scale : 1.0f;  // (interp_size / 2) * scale, interp_size = 2
    const double invscale = scale >= 1.0f ? 1.0 / static_cast<double>(scale) : 1.0;
    a.taps = static_cast<std::int64_t>(std::ceil(support)) * 2 + 1;
    a.start.resize(static_cast<std::size_t>(out));
    a.count.resize(static_cast<std::size_t>(out));
    a.w.assign(static_cast<std::size_t>(out * a.taps), 0.0);
    for (std::int64_t i = 0; i < out; ++i) {
        const float center = scale * (static_cast<float>(i) + 0.5f);
        const std::int64_t lo = std::max<std::int64_t>(static_cast<std::int64_t>(center - support + 0.5f), 0);
        const std::int64_t hi = std::min<std::int64_t>(static_cast<std::int64_t>(center + support + 0.5f), in);
        double* w = a.w.data() + i * a.taps;
        double total = 0.0;
        for (std::int64_t j = lo; j < hi; ++j) {
            const double x = std::abs((static_cast<double>(j) - static_cast<double>(center) + 0.5) * invscale);
            const double v = x < 1.0 ? 1.0 - x : 0.0;  // triangle filter
            w[j - lo] = v;
            total += v;
        }
        if (total != 0.0)
            for (std::int64_t j = lo; j < hi; ++j) w[j - lo] /= total;
        a.start[static_cast<std::size_t>(i)] = lo;
        a.count[static_cast<std::size_t>(i)] = hi - lo;
    }
    return a;
}

}  // namespace detail

// ---- geometry -------------------------------------------------------------------------------------

/// Bilinear resize with antialiasing, as torchvision.transforms.functional.resize(img, [out_h, out_w],
/// InterpolationMode.BILINEAR, antialias=True) on a float tensor, and as PIL's Image.resize(BILINEAR).
/// https://pytorch.org/vision/0.14/generated/torchvision.transforms.functional.resize.html
/// Separable: along W first, then along H (PyTorch's order). img: (C, H, W) -> (C, out_h, out_w).
inline ImageTensor resize(const ImageTensor& img, std::int64_t out_h, std::int64_t out_w) {
    detail::check_chw_image("resize", img);
    MEDIMG_CHECK(out_h >= 1 && out_w >= 1, ValueError, "resize: output size must be positive, got ", out_h, " x ", out_w);
    const std::int64_t C = img.size(0), H = img.size(1), W = img.size(2);
    if (H == out_h && W == out_w) return img.clone();
    // The W pass holds (C, H, out_w) doubles and the result is (C, out_h, out_w) floats: both are
    // bounded before either is allocated (each factor <= 2^31, so the products cannot overflow).
    const std::int64_t held = std::max(H, out_h);
    MEDIMG_CHECK(out_h <= max_resize_pixels && out_w <= max_resize_pixels && held * out_w <= max_resize_pixels, ShapeError,
                 "resize: ", H, " x ", W, " -> ", out_h, " x ", out_w, " needs ", held, " x ", out_w, " = ", static_cast<double>(held) * static_cast<double>(out_w),
                 " pixels per channel, more than the limit of ", max_resize_pixels,
                 " (data::max_resize_pixels; refused before allocating)");
    // Along W: (C, H, W) -> (C, H, out_w), kept in double.
    std::vector<double> tmp(static_cast<std::size_t>(C * H * out_w));
    const float* src = img.data();
    if (W == out_w) {
        for (std::int64_t i = 0; i < C * H * W; ++i) tmp[static_cast<std::size_t>(i)] = src[i];
    } else {
        const auto ax = detail::antialias_bilinear_weights(W, out_w);
        for (std::int64_t row = 0; row < C * H; ++row) {
            const float* in = src + row * W;
            double* o = tmp.data() + row * out_w;
            for (std::int64_t x = 0; x < out_w; ++x) {
                const double* w = ax.w.data() + x * ax.taps;
                const float* p = in + ax.start[static_cast<std::size_t>(x)];
                double s = 0.0;
                for (std::int64_t k = 0; k < ax.count[static_cast<std::size_t>(x)]; ++k) s += w[k] * p[k];
                o[x] = s;
            }
        }
    }
    // Along H: (C, H, out_w) -> (C, out_h, out_w).
    auto out = ImageTensor::empty(Shape{C, out_h, out_w});
    float* dst = out.data();
    if (H == out_h) {
        for (std::int64_t i = 0; i < C * H * out_w; ++i) dst[i] = static_cast<float>(tmp[static_cast<std::size_t>(i)]);
        return out;
    }
    const auto ay = detail::antialias_bilinear_weights(H, out_h);
    std::vector<double> acc(static_cast<std::size_t>(out_w));
    for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t y = 0; y < out_h; ++y) {
            std::fill(acc.begin(), acc.end(), 0.0);
            const double* w = ay.w.data() + y * ay.taps;
            const std::int64_t y0 = ay.start[static_cast<std::size_t>(y)];
            for (std::int64_t k = 0; k < ay.count[static_cast<std::size_t>(y)]; ++k) {
                const double* r = tmp.data() + (c * H + y0 + k) * out_w;
                for (std::int64_t x = 0; x < out_w; ++x) acc[static_cast<std::size_t>(x)] += w[k] * r[x];
            }
            float* o = dst + (c * out_h + y) * out_w;
            for (std::int64_t x = 0; x < out_w; ++x) o[x] = static_cast<float>(acc[static_cast<std::size_t>(x)]);
        }
    return out;
}

/// The (height, width) torchvision's Resize(size) with an int size produces: the shorter side
/// becomes `size`, the longer int(size * long / short) (truncated), as in
/// torchvision.transforms.functional._compute_resized_output_size.
inline std::pair<std::int64_t, std::int64_t> shorter_side_size(std::int64_t h, std::int64_t w, std::int64_t size) {
    MEDIMG_CHECK(size >= 1, ValueError, "shorter_side_size: size must be positive, got ", size);
    MEDIMG_CHECK(h >= 1 && w >= 1, ShapeError, "shorter_side_size: image size must be positive, got ", h, " x ", w);
    const std::int64_t shorter = std::min(h, w), longer = std::max(h, w);
    const auto new_long = static_cast<std::int64_t>(static_cast<double>(size) * static_cast<double>(longer) /
                                                    static_cast<double>(shorter));
    return w <= h ? std::make_pair(new_long, size) : std::make_pair(size, new_long);
}

/// torchvision Resize(size) with an int: the shorter side becomes `size`, keeping the aspect ratio.
/// img: (C, H, W) -> (C, H', W') with min(H', W') = size.
inline ImageTensor resize_shorter_side(const ImageTensor& img, std::int64_t size) {
    detail::check_chw_image("resize_shorter_side", img);
    MEDIMG_CHECK(size >= 1, ValueError, "resize_shorter_side: size must be positive, got ", size);
    const std::int64_t H = img.size(1), W = img.size(2);
    const auto [h, w] = shorter_side_size(H, W, size);
    // A long, thin image keeps its aspect ratio: its longer side grows with size / shorter side.
    // Say so in the words of the transform (resize would only give the sizes).
    const std::int64_t held = std::max(H, h);
    MEDIMG_CHECK(h <= max_resize_pixels && w <= max_resize_pixels && held * w <= max_resize_pixels, ShapeError,
                 "resize_shorter_side: Resize(", size, ") of a ", H, " x ", W, " image (aspect ratio ",
                 std::max(H, W) / std::min(H, W), ":1) would be ", h, " x ", w, ", more than the limit of ", max_resize_pixels,
                 " pixels (data::max_resize_pixels; refused before allocating)");
    return resize(img, h, w);
}

/// The rows [top, top + height) and columns [left, left + width); the box must lie inside the image
/// (torchvision pads with zeros instead; medimg refuses, a crop outside the image is a bug upstream).
/// img: (C, H, W) -> (C, height, width).
inline ImageTensor crop(const ImageTensor& img, std::int64_t top, std::int64_t left, std::int64_t height, std::int64_t width) {
    detail::check_chw_image("crop", img);
    const std::int64_t C = img.size(0), H = img.size(1), W = img.size(2);
    MEDIMG_CHECK(height >= 1 && width >= 1, ValueError, "crop: crop size must be positive, got ", height, " x ", width);
    MEDIMG_CHECK(top >= 0 && left >= 0 && top + height <= H && left + width <= W, ShapeError, "crop: box (top ", top,
                 ", left ", left, ", ", height, " x ", width, ") does not fit inside the image ", img.shape());
    auto out = ImageTensor::empty(Shape{C, height, width});
    for (std::int64_t c = 0; c < C; ++c)
        for (std::int64_t y = 0; y < height; ++y) {
            const float* s = img.data() + (c * H + top + y) * W + left;
            std::copy(s, s + width, out.data() + (c * height + y) * width);
        }
    return out;
}

/// The central out_h x out_w window, offsets round((H - out_h) / 2) with Python's round (ties to
/// even), as torchvision.transforms.functional.center_crop. Requires out_h <= H and out_w <= W
/// (torchvision zero-pads a larger crop; here that is a ShapeError). img: (C, H, W) -> (C, out_h, out_w).
inline ImageTensor center_crop(const ImageTensor& img, std::int64_t out_h, std::int64_t out_w) {
    detail::check_chw_image("center_crop", img);
    MEDIMG_CHECK(out_h >= 1 && out_w >= 1, ValueError, "center_crop: crop size must be positive, got ", out_h, " x ", out_w);
    MEDIMG_CHECK(out_h <= img.size(1) && out_w <= img.size(2), ShapeError, "center_crop: crop ", out_h, " x ", out_w,
                 " is larger than the image ", img.shape());
    const std::int64_t top = detail::round_half_even(static_cast<double>(img.size(1) - out_h) / 2.0);
    const std::int64_t left = detail::round_half_even(static_cast<double>(img.size(2) - out_w) / 2.0);
    return crop(img, top, left, out_h, out_w);
}

/// A crop box: rows [top, top + height), columns [left, left + width).
struct CropBox {
    std::int64_t top = 0, left = 0, height = 0, width = 0;
};

/// torchvision.transforms.RandomResizedCrop.get_params with medimg's Rng: up to 10 attempts draw an
/// area fraction from U(scale) and a log-uniform aspect ratio w/h from ratio, w = round(sqrt(A*r)),
/// h = round(sqrt(A/r)) (Python round), and accept a box that fits, placed uniformly; otherwise the
/// fallback is the central crop of the whole image with the aspect ratio clamped into `ratio`.
/// https://pytorch.org/vision/0.14/generated/torchvision.transforms.RandomResizedCrop.html
inline CropBox random_resized_crop_params(std::int64_t height, std::int64_t width, Rng& rng,
                                          std::array<double, 2> scale = {0.08, 1.0},
                                          std::array<double, 2> ratio = {3.0 / 4.0, 4.0 / 3.0}) {
    MEDIMG_CHECK(height >= 1 && width >= 1, ShapeError, "random_resized_crop: image size must be positive, got ", height,
                 " x ", width);
    MEDIMG_CHECK(scale[0] > 0.0 && scale[0] <= scale[1], ValueError,
                 "random_resized_crop: scale must satisfy 0 < min <= max, got (", scale[0], ", ", scale[1], ")");
    MEDIMG_CHECK(ratio[0] > 0.0 && ratio[0] <= ratio[1], ValueError,
                 "random_resized_crop: ratio must satisfy 0 < min <= max, got (", ratio[0], ", ", ratio[1], ")");
    const double area = static_cast<double>(height) * static_cast<double>(width);
    const double log_lo = std::log(ratio[0]), log_hi = std::log(ratio[1]);
    for (int attempt = 0; attempt < 10; ++attempt) {
        const double target_area = area * rng.uniform(scale[0], scale[1]);
        const double aspect = std::exp(rng.uniform(log_lo, log_hi));
        const std::int64_t w = detail::round_half_even(std::sqrt(target_area * aspect));
        const std::int64_t h = detail::round_half_even(std::sqrt(target_area / aspect));
        if (w > 0 && w <= width && h > 0 && h <= height) {
            const auto top = static_cast<std::int64_t>(rng.randint(static_cast<std::uint64_t>(height - h + 1)));
            const auto left = static_cast<std::int64_t>(rng.randint(static_cast<std::uint64_t>(width - w + 1)));
            return {top, left, h, w};
        }
    }
    const double in_ratio = static_cast<double>(width) / static_cast<double>(height);
    std::int64_t w = width, h = height;
    if (in_ratio < ratio[0]) {
        h = detail::round_half_even(static_cast<double>(w) / ratio[0]);
    } else if (in_ratio > ratio[1]) {
        w = detail::round_half_even(static_cast<double>(h) * ratio[1]);
    }
    return {(height - h) / 2, (width - w) / 2, h, w};
}

/// RandomResizedCrop(size=(out_h, out_w), scale, ratio, antialias=True): the box above, cropped and
/// resized with antialiasing (what PIL-based torchvision pipelines do; tensor pipelines in
/// torchvision < 0.17 default to antialias=False). img: (C, H, W) -> (C, out_h, out_w).
inline ImageTensor random_resized_crop(const ImageTensor& img, std::int64_t out_h, std::int64_t out_w, Rng& rng,
                                       std::array<double, 2> scale = {0.08, 1.0},
                                       std::array<double, 2> ratio = {3.0 / 4.0, 4.0 / 3.0}) {
    detail::check_chw_image("random_resized_crop", img);
    MEDIMG_CHECK(out_h >= 1 && out_w >= 1, ValueError, "random_resized_crop: output size must be positive, got ", out_h,
                 " x ", out_w);
    const CropBox b = random_resized_crop_params(img.size(1), img.size(2), rng, scale, ratio);
    return resize(crop(img, b.top, b.left, b.height, b.width), out_h, out_w);
}

/// Mirrors left-right, as torchvision.transforms.functional.hflip. img: (C, H, W) -> (C, H, W).
inline ImageTensor horizontal_flip(const ImageTensor& img) {
    detail::check_chw_image("horizontal_flip", img);
    const std::int64_t rows = img.size(0) * img.size(1), W = img.size(2);
    auto out = ImageTensor::empty(img.shape());
    for (std::int64_t r = 0; r < rows; ++r) std::reverse_copy(img.data() + r * W, img.data() + (r + 1) * W, out.data() + r * W);
    return out;
}

/// Rotates by `degrees` counter-clockwise about the image centre ((W-1)/2, (H-1)/2), same size,
/// bilinear, fill 0: as torchvision.transforms.RandomRotation (fill=0) applies
/// torchvision.transforms.functional.rotate to a float tensor. That path samples the image and a
/// ones-mask with grid_sample(padding_mode="zeros", align_corners=False) and returns image * mask,
/// so pixels near the border fade to zero smoothly (twice, once per factor) - reproduced here.
/// https://pytorch.org/vision/0.14/generated/torchvision.transforms.functional.rotate.html
/// img: (C, H, W) -> (C, H, W).
inline ImageTensor rotate(const ImageTensor& img, double degrees) {
    detail::check_chw_image("rotate", img);
    MEDIMG_CHECK(std::isfinite(degrees), ValueError, "rotate: angle must be finite, got ", degrees);
    const std::int64_t C = img.size(0), H = img.size(1), W = img.size(2);
    // Output pixel (x, y) relative to the centre reads input (cos t * x - sin t * y, sin t * x + cos t * y):
    // torchvision's inverse affine matrix for rotate(angle) with rot = radians(-angle).
    const double t = degrees * 3.14159265358979323846 / 180.0;
    const double ct = std::cos(t), st = std::sin(t);
    const double cx = 0.5 * static_cast<double>(W - 1), cy = 0.5 * static_cast<double>(H - 1);
    auto out = ImageTensor::empty(img.shape());
    const std::int64_t hw = H * W;
    std::vector<double> acc(static_cast<std::size_t>(C));
    for (std::int64_t y = 0; y < H; ++y)
        for (std::int64_t x = 0; x < W; ++x) {
            const double xr = static_cast<double>(x) - cx, yr = static_cast<double>(y) - cy;
            const double ix = ct * xr - st * yr + cx, iy = st * xr + ct * yr + cy;
            const double x0f = std::floor(ix), y0f = std::floor(iy);
            const double fx = ix - x0f, fy = iy - y0f;
            const auto x0 = static_cast<std::int64_t>(x0f), y0 = static_cast<std::int64_t>(y0f);
            const std::int64_t xs[2] = {x0, x0 + 1}, ys[2] = {y0, y0 + 1};
            const double wx[2] = {1.0 - fx, fx}, wy[2] = {1.0 - fy, fy};
            double mask = 0.0;  // the bilinearly sampled ones-image
            std::fill(acc.begin(), acc.end(), 0.0);
            for (int a = 0; a < 2; ++a)
                for (int b = 0; b < 2; ++b) {
                    if (ys[a] < 0 || ys[a] >= H || xs[b] < 0 || xs[b] >= W) continue;  // zero padding
                    const double wgt = wy[a] * wx[b];
                    mask += wgt;
                    for (std::int64_t c = 0; c < C; ++c)
                        acc[static_cast<std::size_t>(c)] += wgt * img.data()[c * hw + ys[a] * W + xs[b]];
                }
            for (std::int64_t c = 0; c < C; ++c)
                out.data()[c * hw + y * W + x] = static_cast<float>(acc[static_cast<std::size_t>(c)] * mask);
        }
    return out;
}

/// RandomRotation(max_degrees): an angle from U(-max_degrees, max_degrees), then rotate().
inline ImageTensor random_rotation(const ImageTensor& img, double max_degrees, Rng& rng) {
    detail::check_chw_image("random_rotation", img);
    MEDIMG_CHECK(max_degrees >= 0.0 && std::isfinite(max_degrees), ValueError,
                 "random_rotation: max_degrees must be finite and >= 0, got ", max_degrees);
    return rotate(img, rng.uniform(-max_degrees, max_degrees));
}

// ---- colour ----------------------------------------------------------------------------------------

/// ITU-R 601-2 luma with torchvision's float weights, L = 0.2989 R + 0.587 G + 0.114 B, as
/// torchvision.transforms.functional.rgb_to_grayscale on a float tensor (read_image uses PIL's
/// integer form for 8-bit files instead). img: (3, H, W) -> (1, H, W).
inline ImageTensor rgb_to_grayscale(const ImageTensor& img) {
    detail::check_chw_image("rgb_to_grayscale", img);
    MEDIMG_CHECK(img.size(0) == 3, ShapeError, "rgb_to_grayscale: expected 3 channels, got shape ", img.shape());
    const std::int64_t hw = img.size(1) * img.size(2);
    auto out = ImageTensor::empty(Shape{1, img.size(1), img.size(2)});
    const float* r = img.data();
    const float* g = r + hw;
    const float* b = g + hw;
    for (std::int64_t i = 0; i < hw; ++i) out.data()[i] = 0.2989f * r[i] + 0.587f * g[i] + 0.114f * b[i];
    return out;
}

/// 1 or 3 channels: RGB -> grey with rgb_to_grayscale, grey -> RGB by replication; same count: a copy.
/// img: (C, H, W) with C in {1, 3} -> (channels, H, W).
inline ImageTensor to_channels(const ImageTensor& img, int channels) {
    detail::check_chw_image("to_channels", img);
    MEDIMG_CHECK(channels == 1 || channels == 3, ValueError, "to_channels: channels must be 1 or 3, got ", channels);
    const std::int64_t C = img.size(0);
    MEDIMG_CHECK(C == 1 || C == 3, ShapeError, "to_channels: input must have 1 or 3 channels, got shape ", img.shape());
    if (C == channels) return img.clone();
    if (channels == 1) return rgb_to_grayscale(img);
    const std::int64_t hw = img.size(1) * img.size(2);
    auto out = ImageTensor::empty(Shape{3, img.size(1), img.size(2)});
    for (int c = 0; c < 3; ++c) std::copy(img.data(), img.data() + hw, out.data() + c * hw);
    return out;
}

namespace detail {
/// torchvision's _blend for float images: clamp(ratio * img + (1 - ratio) * other, 0, 1), in float.
inline ImageTensor blend_with_constant(const ImageTensor& img, double ratio, float other) {
    auto out = ImageTensor::empty(img.shape());
    const float r = static_cast<float>(ratio), q = static_cast<float>(1.0 - ratio);
    for (std::int64_t i = 0; i < img.numel(); ++i) {
        const float v = r * img.data()[i] + q * other;
        out.data()[i] = std::min(1.0f, std::max(0.0f, v));
    }
    return out;
}
}  // namespace detail

/// img * factor clamped to [0, 1], as torchvision.transforms.functional.adjust_brightness.
/// Requires factor >= 0. img: (C, H, W) -> (C, H, W).
inline ImageTensor adjust_brightness(const ImageTensor& img, double factor) {
    detail::check_chw_image("adjust_brightness", img);
    MEDIMG_CHECK(factor >= 0.0 && std::isfinite(factor), ValueError, "adjust_brightness: factor must be finite and >= 0, got ",
                 factor);
    return detail::blend_with_constant(img, factor, 0.0f);
}

/// Blends with the mean grey level, clamp(factor * img + (1 - factor) * mean, 0, 1), as
/// torchvision.transforms.functional.adjust_contrast: the mean is over rgb_to_grayscale(img) for 3
/// channels and over the image itself for 1 channel. Requires factor >= 0. img: (C, H, W) -> (C, H, W).
inline ImageTensor adjust_contrast(const ImageTensor& img, double factor) {
    detail::check_chw_image("adjust_contrast", img);
    MEDIMG_CHECK(factor >= 0.0 && std::isfinite(factor), ValueError, "adjust_contrast: factor must be finite and >= 0, got ",
                 factor);
    MEDIMG_CHECK(img.size(0) == 1 || img.size(0) == 3, ShapeError, "adjust_contrast: expected 1 or 3 channels, got shape ",
                 img.shape());
    const ImageTensor gray = img.size(0) == 3 ? rgb_to_grayscale(img) : img;
    double sum = 0.0;
    for (std::int64_t i = 0; i < gray.numel(); ++i) sum += gray.data()[i];
    const auto mean = static_cast<float>(sum / static_cast<double>(gray.numel()));
    return detail::blend_with_constant(img, factor, mean);
}

/// (img[c] - mean[c]) / std[c] per channel in float, as torchvision.transforms.functional.normalize.
/// Requires mean.size() == std.size() == C and every std != 0. img: (C, H, W) -> (C, H, W).
inline ImageTensor normalize(const ImageTensor& img, const std::vector<double>& mean, const std::vector<double>& std) {
    detail::check_chw_image("normalize", img);
    const std::int64_t C = img.size(0);
    MEDIMG_CHECK(static_cast<std::int64_t>(mean.size()) == C && static_cast<std::int64_t>(std.size()) == C, ShapeError,
                 "normalize: need one mean and one std per channel; got ", mean.size(), " means and ", std.size(),
                 " stds for an image of shape ", img.shape());
    for (std::size_t c = 0; c < std.size(); ++c)
        MEDIMG_CHECK(std[c] != 0.0 && std::isfinite(std[c]) && std::isfinite(mean[c]), ValueError, "normalize: std[", c,
                     "] = ", std[c], " and mean[", c, "] = ", mean[c], "; std must be finite and non-zero");
    auto out = ImageTensor::empty(img.shape());
    const std::int64_t hw = img.size(1) * img.size(2);
    for (std::int64_t c = 0; c < C; ++c) {
        const auto m = static_cast<float>(mean[static_cast<std::size_t>(c)]);
        const auto s = static_cast<float>(std[static_cast<std::size_t>(c)]);
        for (std::int64_t i = 0; i < hw; ++i) out.data()[c * hw + i] = (img.data()[c * hw + i] - m) / s;
    }
    return out;
}

// ---- pipelines -------------------------------------------------------------------------------------

/// One step of a pipeline: image (C, H, W) and the caller's generator -> new image.
using Transform = std::function<ImageTensor(const ImageTensor&, Rng&)>;

/// transforms.Compose: steps applied in order, each with a description for logs.
/// Thread-safe to call concurrently (the steps hold no state); give every image its own Rng, e.g.
/// Rng(seed).fork() per sample, so results do not depend on which worker ran first. Steps never
/// modify their input; one that has nothing to do (no flip drawn, channels already right) passes the
/// same handle on, so the result may share storage with the input.
class TransformPipeline {
public:
    TransformPipeline& add(std::string description, Transform step) {
        MEDIMG_CHECK(static_cast<bool>(step), ValueError, "TransformPipeline::add: empty step '", description, "'");
        names_.push_back(std::move(description));
        steps_.push_back(std::move(step));
        return *this;
    }
    ImageTensor operator()(const ImageTensor& img, Rng& rng) const {
        ImageTensor x = img;
        for (const auto& s : steps_) x = s(x, rng);
        return x;
    }
    std::size_t size() const { return steps_.size(); }
    bool empty() const { return steps_.empty(); }
    const std::vector<std::string>& descriptions() const { return names_; }
    /// "Compose(ToChannels(3), Resize(256), CenterCrop(224), Normalize(...))"
    std::string to_string() const {
        std::string s = "Compose(";
        for (std::size_t i = 0; i < names_.size(); ++i) s += (i ? ", " : "") + names_[i];
        return s + ")";
    }

private:
    std::vector<std::string> names_;
    std::vector<Transform> steps_;
};

/// What train_pipeline / eval_pipeline build; defaults are torchvision's ImageNet recipe.
struct TransformOptions {
    std::int64_t image_size = 224;      // output is image_size x image_size
    static constexpr std::int64_t no_resize = -1;
    std::int64_t resize_to = 0;         // eval: shorter side before the centre crop; 0 = image_size * 256 / 224;
                                        // no_resize: CenterCrop(image_size) alone, no resampling (train too)
    bool center_crop = true;            // eval: Resize(resize_to) + CenterCrop(image_size); false: Resize((s, s))
    bool random_resized_crop = true;    // train: RandomResizedCrop(image_size); false: Resize((s, s)), or
                                        // with no_resize CenterCrop(image_size)
    std::array<double, 2> crop_scale{0.08, 1.0};            // RandomResizedCrop scale
    std::array<double, 2> crop_ratio{3.0 / 4.0, 4.0 / 3.0};  // RandomResizedCrop ratio (w / h)
    double hflip_p = 0.5;               // train: RandomHorizontalFlip(p); 0 disables
    double rotation_degrees = 0.0;      // train: RandomRotation(+-degrees), bilinear, fill 0; 0 disables
    double brightness = 0.0;            // train: ColorJitter brightness, factor ~ U(max(0, 1-b), 1+b); 0 disables
    double contrast = 0.0;              // train: ColorJitter contrast, same range rule; 0 disables
    std::vector<double> mean{0.485, 0.456, 0.406};  // Normalize; empty (with std empty) = no normalisation
    std::vector<double> std{0.229, 0.224, 0.225};
    int channels = 3;                   // images are converted to 1 or 3 channels first
};

namespace detail {
inline std::string describe_number(double v) {
    std::ostringstream os;
    os.precision(6);
    os << v;
    return os.str();
}
inline std::string describe_list(const std::vector<double>& v) {
    std::string s = "(";
    for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + describe_number(v[i]);
    return s + ")";
}
inline std::int64_t effective_resize_to(const TransformOptions& o) {
    return o.resize_to > 0 ? o.resize_to : o.image_size * 256 / 224;
}
inline void check_options(const char* fn, const TransformOptions& o) {
    MEDIMG_CHECK(o.image_size >= 1, ValueError, fn, ": image_size must be positive, got ", o.image_size);
    MEDIMG_CHECK(o.resize_to >= 0 || o.resize_to == TransformOptions::no_resize, ValueError, fn,
                 ": resize_to must be >= 0 (0 = image_size * 256 / 224) or no_resize (-1), got ", o.resize_to);
    MEDIMG_CHECK(!o.center_crop || o.resize_to == TransformOptions::no_resize || effective_resize_to(o) >= o.image_size,
                 ValueError, fn, ": resize_to ",
                 effective_resize_to(o), " is smaller than image_size ", o.image_size, ", so the centre crop would not fit");
    MEDIMG_CHECK(o.channels == 1 || o.channels == 3, ValueError, fn, ": channels must be 1 or 3, got ", o.channels);
    MEDIMG_CHECK(o.crop_scale[0] > 0.0 && o.crop_scale[0] <= o.crop_scale[1], ValueError, fn,
                 ": crop_scale must satisfy 0 < min <= max, got (", o.crop_scale[0], ", ", o.crop_scale[1], ")");
    MEDIMG_CHECK(o.crop_ratio[0] > 0.0 && o.crop_ratio[0] <= o.crop_ratio[1], ValueError, fn,
                 ": crop_ratio must satisfy 0 < min <= max, got (", o.crop_ratio[0], ", ", o.crop_ratio[1], ")");
    MEDIMG_CHECK(o.hflip_p >= 0.0 && o.hflip_p <= 1.0, ValueError, fn, ": hflip_p must be in [0, 1], got ", o.hflip_p);
    MEDIMG_CHECK(o.rotation_degrees >= 0.0 && std::isfinite(o.rotation_degrees), ValueError, fn,
                 ": rotation_degrees must be finite and >= 0, got ", o.rotation_degrees);
    MEDIMG_CHECK(o.brightness >= 0.0 && std::isfinite(o.brightness), ValueError, fn, ": brightness must be >= 0, got ",
                 o.brightness);
    MEDIMG_CHECK(o.contrast >= 0.0 && std::isfinite(o.contrast), ValueError, fn, ": contrast must be >= 0, got ", o.contrast);
    MEDIMG_CHECK(o.mean.size() == o.std.size(), ValueError, fn, ": mean has ", o.mean.size(), " values but std has ",
                 o.std.size());
    MEDIMG_CHECK(o.mean.empty() || static_cast<int>(o.mean.size()) == o.channels, ValueError, fn, ": mean/std have ",
                 o.mean.size(), " values but channels is ", o.channels, " (give one per channel, or none)");
    for (std::size_t c = 0; c < o.std.size(); ++c)
        MEDIMG_CHECK(o.std[c] != 0.0 && std::isfinite(o.std[c]) && std::isfinite(o.mean[c]), ValueError, fn, ": std[", c,
                     "] = ", o.std[c], ", mean[", c, "] = ", o.mean[c], "; std must be finite and non-zero");
}
inline void add_channels_step(TransformPipeline& p, int channels) {
    p.add("ToChannels(" + std::to_string(channels) + ")",
          [channels](const ImageTensor& x, Rng&) { return x.size(0) == channels ? x : to_channels(x, channels); });
}
inline void add_center_crop_step(TransformPipeline& p, std::int64_t s) {
    p.add("CenterCrop(" + std::to_string(s) + ")", [s](const ImageTensor& x, Rng&) { return center_crop(x, s, s); });
}
inline void add_normalize_step(TransformPipeline& p, const TransformOptions& o) {
    if (o.mean.empty()) return;
    p.add("Normalize(mean=" + describe_list(o.mean) + ", std=" + describe_list(o.std) + ")",
          [mean = o.mean, std = o.std](const ImageTensor& x, Rng&) { return normalize(x, mean, std); });
}
}  // namespace detail

/// The training recipe: ToChannels -> RandomResizedCrop(image_size, crop_scale, crop_ratio) (or
/// Resize((image_size, image_size))) -> RandomHorizontalFlip(hflip_p) -> RandomRotation(rotation_degrees)
/// -> ColorJitter(brightness, contrast) -> Normalize(mean, std); disabled steps are left out.
/// ColorJitter, as torchvision, applies brightness and contrast in a random order, each factor drawn
/// from U(max(0, 1 - v), 1 + v). Randomness is drawn from the Rng in step order.
inline TransformPipeline train_pipeline(const TransformOptions& o) {
    detail::check_options("train_pipeline", o);
    TransformPipeline p;
    const std::int64_t s = o.image_size;
    detail::add_channels_step(p, o.channels);
    if (o.random_resized_crop) {
        p.add("RandomResizedCrop(" + std::to_string(s) + ", scale=(" + detail::describe_number(o.crop_scale[0]) + ", " +
                  detail::describe_number(o.crop_scale[1]) + "), ratio=(" + detail::describe_number(o.crop_ratio[0]) + ", " +
                  detail::describe_number(o.crop_ratio[1]) + "), antialias=True)",
              [s, scale = o.crop_scale, ratio = o.crop_ratio](const ImageTensor& x, Rng& rng) {
                  return random_resized_crop(x, s, s, rng, scale, ratio);
              });
    } else if (o.resize_to == TransformOptions::no_resize) {
        detail::add_center_crop_step(p, s);
    } else {
        p.add("Resize((" + std::to_string(s) + ", " + std::to_string(s) + "), antialias=True)",
              [s](const ImageTensor& x, Rng&) { return resize(x, s, s); });
    }
    if (o.hflip_p > 0.0)
        p.add("RandomHorizontalFlip(p=" + detail::describe_number(o.hflip_p) + ")", [pr = o.hflip_p](const ImageTensor& x, Rng& rng) {
            return rng.uniform() < pr ? horizontal_flip(x) : x;
        });
    if (o.rotation_degrees > 0.0)
        p.add("RandomRotation(" + detail::describe_number(o.rotation_degrees) + ", bilinear, fill=0)",
              [d = o.rotation_degrees](const ImageTensor& x, Rng& rng) { return random_rotation(x, d, rng); });
    if (o.brightness > 0.0 || o.contrast > 0.0)
        p.add("ColorJitter(brightness=" + detail::describe_number(o.brightness) + ", contrast=" + detail::describe_number(o.contrast) + ")",
              [b = o.brightness, c = o.contrast](const ImageTensor& x, Rng& rng) {
                  const bool brightness_first = rng.uniform() < 0.5;
                  const double fb = b > 0.0 ? rng.uniform(std::max(0.0, 1.0 - b), 1.0 + b) : 1.0;
                  const double fc = c > 0.0 ? rng.uniform(std::max(0.0, 1.0 - c), 1.0 + c) : 1.0;
                  ImageTensor y = x;
                  for (int k = 0; k < 2; ++k) {
                      const bool do_brightness = (k == 0) == brightness_first;
                      if (do_brightness && b > 0.0) y = adjust_brightness(y, fb);
                      if (!do_brightness && c > 0.0) y = adjust_contrast(y, fc);
                  }
                  return y;
              });
    detail::add_normalize_step(p, o);
    return p;
}

/// The evaluation recipe: ToChannels -> Resize(resize_to) (shorter side) -> CenterCrop(image_size)
/// -> Normalize; with resize_to = no_resize the Resize is left out (an image smaller than
/// image_size is then a ShapeError, where torchvision's CenterCrop would pad it with zeros); with
/// center_crop = false: ToChannels -> Resize((image_size, image_size)) -> Normalize.
/// Deterministic: the Rng is not used.
inline TransformPipeline eval_pipeline(const TransformOptions& o) {
    detail::check_options("eval_pipeline", o);
    TransformPipeline p;
    const std::int64_t s = o.image_size;
    detail::add_channels_step(p, o.channels);
    if (o.center_crop) {
        if (o.resize_to != TransformOptions::no_resize) {
            const std::int64_t r = detail::effective_resize_to(o);
            p.add("Resize(" + std::to_string(r) + ", antialias=True)",
                  [r](const ImageTensor& x, Rng&) { return resize_shorter_side(x, r); });
        }
        detail::add_center_crop_step(p, s);
    } else {
        p.add("Resize((" + std::to_string(s) + ", " + std::to_string(s) + "), antialias=True)",
              [s](const ImageTensor& x, Rng&) { return resize(x, s, s); });
    }
    detail::add_normalize_step(p, o);
    return p;
}

}  // namespace medimg::data
