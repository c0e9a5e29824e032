// SPDX-License-Identifier: MIT
// metrics/compare.hpp: everything medimg-compare does, as functions a test can call: the argument
// parser (parse_compare_args), the comparison of two image files (compare_images: alignment of the
// target to the reference (register/register.hpp; --align none|translation|rigid|affine, rigid by
// default), SSIM and MAE over the pixels both cover, optional mask, resize, colour-mapped SSIM /
// difference maps), the plain and JSON reports, and
// run_compare, the whole program with its one-line errors. examples/compare.cpp only calls
// run_compare. The command line is a stable contract (DESIGN.md "The programs"; docs/compare.md).
// Conventions: images are read as grey [0, 1] (data::read_image(path, 1)), data_range 1, SSIM as
// scikit-image computes it (metrics/ssim.hpp). Deliberately not here: colour SSIM, 3-D volumes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "medimg/core/tensor.hpp"
#include "medimg/data/image.hpp"
#include "medimg/data/readers.hpp"
#include "medimg/data/transforms.hpp"
#include "medimg/error.hpp"
#include "medimg/io/text.hpp"
#include "medimg/io/utf8.hpp"
#include "medimg/metrics/colormap.hpp"
#include "medimg/metrics/regions.hpp"
#include "medimg/metrics/ssim.hpp"
#include "medimg/register/register.hpp"
#include "medimg/report/panel.hpp"

namespace medimg::metrics {

/// What the command line asked for. Empty strings mean "not given".
struct CompareOptions {
    std::string reference;  ///< --reference FILE (required)
    std::string target;     ///< --target FILE (required)
    bool json = false;      ///< --json: one JSON object instead of text lines
    /// --window uniform (default: scikit-image's default, 7x7, sample covariance) | gaussian
    /// (Wang et al. 2004: 11x11, sigma 1.5, population covariance).
    Window window = Window::uniform;
    /// --align none | translation | rigid (default) | affine: register the target to the reference
    /// first (reg::align), then compare over the pixels both cover; none compares the pixels as
    /// given, exactly as scikit-image does.
    std::string align = "rigid";
    /// --any-angle: the exams may be turned by any angle (reg::AlignOptions::any_angle; rigid, affine)
    bool any_angle = false;
    bool resize = false;    ///< --resize: resize the target to the reference size first
    std::string mask;       ///< --mask FILE: grey image, nonzero = region of interest
    std::string ssim_map;   ///< --ssim-map OUT.png: colour-mapped SSIM map
    std::string diff_map;   ///< --diff-map OUT.png: colour-mapped |reference - target|
    std::string panel;      ///< --panel OUT.png: reference | aligned target | SSIM map | difference
    double threshold = 0.3; ///< --threshold T: regions where the local SSIM is below T
    double pixel_spacing = 0; ///< --pixel-spacing MM: square pixels of this side (0: unknown)
    /// --intensity SETTING: how DICOM / NIfTI values become [0, 1] (data.window's values:
    /// file | minmax | brain | subdural | bone | lung | abdomen | [center, width]); images unaffected.
    std::string intensity = "file";
    bool help = false;      ///< --help / -h: print compare_usage() and exit 0
};

/// The --help text.
inline std::string compare_usage() {
    return "usage: medimg-compare --reference FILE --target FILE [--align none|translation|rigid|affine] [--any-angle]\n"
           "                      [--json] [--window uniform|gaussian] [--resize] [--mask FILE] [--ssim-map OUT.png]\n"
           "                      [--diff-map OUT.png] [--intensity SETTING] [--help]\n"
           "\n"
           "SSIM and mean absolute error (MAE) of two images, read as greyscale in [0, 1]\n"
           "(8-bit / 255, 16-bit / 65535; colour is converted with ITU-R 601-2 luma; DICOM and NIfTI\n"
           "through --intensity); data_range 1.\n"
           "The target is first aligned to the reference (two exams are never taken in the same pose).\n"
           "\n"
           "  --reference FILE   the reference image (PNG, JPEG, BMP, PGM/PPM, DICOM, a NIfTI slice as\n"
           "                     FILE[k])\n"
           "  --target FILE      the image compared with it; with --align none it must have the same\n"
           "                     size unless --resize\n"
           "  --align MOTION     rigid (default: rotation and shift), translation, affine, or none.\n"
           "                     The transform maximising the correlation of the two images (ECC,\n"
           "                     coarse to fine) is printed; the target is resampled (bilinear) onto\n"
           "                     the reference and both are compared over the pixels both cover.\n"
           "                     none: the pixels as given, exactly as scikit-image compares them\n"
           "  --any-angle        the exams may be turned by any angle (rigid, affine): the search also\n"
           "                     starts from the target turned by every 30 degrees. Without it, turns\n"
           "                     up to about 60 degrees are found; with it, nearly symmetric anatomy\n"
           "                     may be matched turned by about 180 degrees\n"
           "  --json             print one JSON object instead of text lines\n"
           "  --window NAME      uniform (default): scikit-image's default, 7x7 uniform window, sample\n"
           "                     covariance; gaussian: Wang et al. 2004, 11x11 Gaussian, sigma 1.5,\n"
           "                     population covariance. Both exclude the border the window cannot\n"
           "                     cover (3 or 5 pixels) from the mean, as scikit-image does.\n"
           "  --resize           resize the target to the reference size first (bilinear, antialiased)\n"
           "  --mask FILE        grey image of the reference's size; nonzero pixels are the region of\n"
           "                     interest: SSIM = mean of the SSIM map over mask pixels outside the\n"
           "                     border, MAE = mean over mask pixels\n"
           "  --ssim-map OUT.png write the SSIM map, clipped to [0, 1], with the viridis colour map\n"
           "                     (0 = dark purple, 1 = yellow)\n"
           "  --diff-map OUT.png write |reference - target| with viridis over [0, largest difference]\n"
           "  --panel OUT.png    write one picture to look at: reference | aligned target | SSIM map |\n"
           "                     difference, each with its title and colour bar, small exams enlarged,\n"
           "                     the 5 largest low-SSIM regions outlined in red\n"
           "  --threshold T      low-SSIM regions: connected pixels whose local SSIM is below T\n"
           "                     (default 0.3), at least the window's side in pixels; reported with\n"
           "                     area, centroid and mean SSIM\n"
           "  --pixel-spacing MM the side of a (square) pixel in mm, to report areas in mm^2 too\n"
           "  --intensity SET    DICOM / NIfTI values to [0, 1]: file (default: each DICOM file's own\n"
           "                     window, else min-max), minmax, a CT preset (brain, subdural, bone,\n"
           "                     lung, abdomen) or [center,width]. To compare two exams use one window\n"
           "                     for both (a preset or [center,width]); docs/formats.md\n"
           "  --help             print this text\n"
           "\n"
           "Exit status 0 on success; 1 with one line 'medimg-compare: <message>' on stderr otherwise.\n";
}

/// Parses medimg-compare's arguments (argv[0] is the program name and is skipped). Options take
/// "--name VALUE" or "--name=VALUE". If --help or -h appears anywhere, returns {help = true}.
/// Throws ConfigError starting "compare: " for an unknown option, a missing or empty value, an
/// option given twice, a stray argument, an unknown window, or a missing --reference / --target.
inline CompareOptions parse_compare_args(int argc, const char* const* argv) {
    CompareOptions o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i] ? argv[i] : "";
        if (a == "--help" || a == "-h") {
            o.help = true;
            return o;
        }
    }
    bool seen_window = false, seen_json = false, seen_resize = false, seen_align = false, seen_threshold = false,
         seen_spacing = false, seen_any_angle = false;
    for (int i = 1; i < argc; ++i) {
        std::string arg = argv[i] ? argv[i] : "";
        std::string name = arg, value;
        bool inline_value = false;
        if (arg.rfind("--", 0) == 0) {
            const auto eq = arg.find('=');
            if (eq != std::string::npos) {
                name = arg.substr(0, eq);
                value = arg.substr(eq + 1);
                inline_value = true;
            }
        } else {
            throw ConfigError("compare: unexpected argument '" + arg +
                              "' (options take the form --name VALUE; see --help)");
        }
        auto flag = [&](bool& seen, bool& field) {
            if (inline_value) throw ConfigError("compare: option " + name + " takes no value, got '" + arg + "'");
            if (seen) throw ConfigError("compare: option " + name + " given twice");
            seen = field = true;
        };
        auto take = [&](std::string& field, const char* what) {
            if (!inline_value) {
                if (i + 1 >= argc || !argv[i + 1])
                    throw ConfigError("compare: option " + name + " needs a value (" + what + ")");
                value = argv[++i];
                if (value.rfind("--", 0) == 0)
                    throw ConfigError("compare: option " + name + " needs a value (" + what + "), got option '" + value +
                                      "' (write " + name + "=" + value + " for a file name starting with --)");
            }
            if (value.empty()) throw ConfigError("compare: option " + name + " needs a non-empty value (" + what + ")");
            if (!field.empty() || (name == "--window" && seen_window) || (name == "--align" && seen_align))
                throw ConfigError("compare: option " + name + " given twice");
            field = value;
        };
        if (name == "--reference") {
            take(o.reference, "FILE");
        } else if (name == "--target") {
            take(o.target, "FILE");
        } else if (name == "--mask") {
            take(o.mask, "FILE");
        } else if (name == "--ssim-map") {
            take(o.ssim_map, "OUT.png");
        } else if (name == "--diff-map") {
            take(o.diff_map, "OUT.png");
        } else if (name == "--panel") {
            take(o.panel, "OUT.png");
        } else if (name == "--threshold" || name == "--pixel-spacing") {
            std::string v;
            take(v, name == "--threshold" ? "a number in (-1, 1]" : "millimetres > 0");
            double x = 0;
            const bool threshold = name == "--threshold";
            if (!io::parse_number(v, x) || (threshold ? !(x > -1 && x <= 1) : !(x > 0)))
                throw ConfigError("compare: option " + name + " needs " + (threshold ? "a number in (-1, 1]" : "a positive number of millimetres") +
                                  ", got '" + v + "'");
            double& field = threshold ? o.threshold : o.pixel_spacing;
            if (threshold ? seen_threshold : seen_spacing) throw ConfigError("compare: option " + name + " given twice");
            (threshold ? seen_threshold : seen_spacing) = true;
            field = x;
        } else if (name == "--window") {
            std::string w;
            take(w, "uniform or gaussian");
            seen_window = true;
            if (w == "uniform") o.window = Window::uniform;
            else if (w == "gaussian") o.window = Window::gaussian;
            else throw ConfigError("compare: unknown window '" + w + "' for --window; expected uniform or gaussian");
        } else if (name == "--align") {
            std::string a;
            take(a, "none, translation, rigid or affine");
            seen_align = true;
            if (a != "none" && a != "translation" && a != "rigid" && a != "affine")
                throw ConfigError("compare: unknown motion '" + a + "' for --align; expected none, translation, rigid or affine");
            o.align = a;
        } else if (name == "--intensity") {
            std::string v;
            take(v, "file, minmax, a preset or [center,width]");
            try {
                o.intensity = data::IntensitySetting::parse(v, "--intensity").text();
            } catch (const ConfigError& e) {
                throw ConfigError(std::string("compare: ") + e.what());
            }
        } else if (name == "--json") {
            flag(seen_json, o.json);
        } else if (name == "--resize") {
            flag(seen_resize, o.resize);
        } else if (name == "--any-angle") {
            flag(seen_any_angle, o.any_angle);
        } else {
            throw ConfigError("compare: unknown option '" + name + "' (see --help)");
        }
    }
    if (o.reference.empty()) throw ConfigError("compare: missing --reference FILE (see --help)");
    if (o.target.empty()) throw ConfigError("compare: missing --target FILE (see --help)");
    if (o.any_angle && o.align != "rigid" && o.align != "affine")
        throw ConfigError("compare: --any-angle needs --align rigid or affine (it turns the images), not --align " + o.align);
    return o;
}

/// What compare_images measured (and wrote).
struct CompareResult {
    std::string reference, target;  // the paths as given
    std::string intensity = "file";  // how DICOM / NIfTI values became [0, 1] (CompareOptions::intensity)
    bool medical = false;            // an input was DICOM or NIfTI (the text report names the setting)
    Window window = Window::uniform;
    double ssim = 0.0;  // mean SSIM (over mask pixels outside the border when a mask is given)
    double mae = 0.0;   // mean |reference - target| (over mask pixels when a mask is given)
    std::int64_t height = 0, width = 0;                // the compared size (the reference's)
    bool resized = false;                              // the target was resized to it
    std::int64_t target_height = 0, target_width = 0;  // the target's size as read
    std::string mask;                                  // empty: no mask
    std::int64_t masked_pixels = 0;  // pixels MAE averages over: mask pixels, or H * W without a mask
    std::int64_t ssim_pixels = 0;    // map values SSIM averages over (the crop, or mask pixels in it)
    double max_abs_diff = 0.0;       // largest |reference - target|: the top of the diff map's range
    std::string ssim_map, diff_map;  // files written (empty: not asked for)
    // --align (align == "none": no alignment, the fields below unused)
    std::string align = "none";
    bool any_angle = false;          // --any-angle: the search started from turned placements too
    reg::Alignment alignment;        // the transform (reference pixel -> target pixel) and NCC before / after
    double ssim_before = NAN;        // SSIM of the images as given (NaN when their sizes differ)
    std::int64_t overlap_pixels = 0; // reference pixels the aligned target covers
    // where they differ: connected pixels of local SSIM < threshold (among those SSIM averages)
    double threshold = 0.3;
    std::int64_t min_region = 0;     // smaller regions are dropped (the window's side, in pixels)
    std::vector<Region> regions;     // largest first
    std::vector<std::int32_t> region_labels;  // H x W: 1 + the index into regions, 0 outside them
    double pixel_spacing = 0;        // mm per pixel side (0: unknown)
    std::string panel;               // written (empty: not asked for)
};

namespace detail {

/// "uniform 7x7, sample covariance, scikit-image default" / "gaussian 11x11 sigma 1.5, population
/// covariance, Wang et al. 2004": the convention as the report prints it.
inline std::string compare_window_text(Window w) {
    return w == Window::uniform ? "uniform 7x7, sample covariance, scikit-image default"
                                : "gaussian 11x11 sigma 1.5, population covariance, Wang et al. 2004";
}
inline const char* compare_window_name(Window w) { return w == Window::uniform ? "uniform" : "gaussian"; }

/// "W x H" as the messages print sizes (width first, like image viewers).
inline std::string size_text(std::int64_t h, std::int64_t w) { return std::to_string(w) + "x" + std::to_string(h); }

/// %.6f, the precision of the text report.
inline std::string fixed6(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.6f", v);
    return buf;
}

/// The same file named twice (lexically, after making both absolute).
inline bool same_path(const std::string& a, const std::string& b) {
    namespace fs = std::filesystem;
    std::error_code ec1, ec2;
    const auto pa = fs::absolute(fs::path(a), ec1).lexically_normal();
    const auto pb = fs::absolute(fs::path(b), ec2).lexically_normal();
    return ec1 || ec2 ? a == b : pa == pb;
}

}  // namespace detail

/// How many of the largest low-SSIM regions --panel outlines.
inline constexpr int kPanelRegions = 5;

/// Reads both images (and the mask), measures SSIM and MAE, and writes the requested maps.
/// Requires: the options of parse_compare_args. Throws (messages name the files and sizes):
///   IoError "image: <file>: ..." for a missing or unreadable image, "write_png: ..." when a map
///   cannot be written; ShapeError starting "compare: " for mismatched sizes (without --resize), an
///   image smaller than the window, or a mask of another size; ValueError starting "compare: " for a
///   mask without nonzero pixels (in the image, or outside the border for SSIM); ConfigError for an
///   output path that names an input or the other output.
/// Ensures: without a mask, ssim and mae equal metrics::ssim(reference, target).mean and
///   metrics::mean_absolute_error on the pixels read_image returns (float32, widened to double); maps are written only after everything was measured, each
///   atomically (data::write_png), so a failure never leaves a half-written file.
inline CompareResult compare_images(const CompareOptions& o) {
    MEDIMG_CHECK(!o.reference.empty() && !o.target.empty(), ConfigError, "compare: need --reference and --target files");
    const std::pair<const char*, const std::string*> outputs[] = {{"--ssim-map", &o.ssim_map}, {"--diff-map", &o.diff_map}, {"--panel", &o.panel}};
    for (const auto& [flag, out] : outputs) {
        if (out->empty()) continue;
        for (const std::string* in : {&o.reference, &o.target, &o.mask})
            MEDIMG_CHECK(in->empty() || !detail::same_path(*out, *in), ConfigError, "compare: output ", *out,
                         " is also an input; refusing to overwrite it");
        for (const auto& [flag2, out2] : outputs)
            MEDIMG_CHECK(out2 == out || out2->empty() || !detail::same_path(*out, *out2) || std::string(flag) > flag2, ConfigError,
                         "compare: ", flag, " and ", flag2, " both name ", *out);
    }

    CompareResult r;
    r.reference = o.reference;
    r.target = o.target;
    r.window = o.window;
    r.mask = o.mask;
    r.align = o.align;
    r.any_angle = o.any_angle;
    const bool aligning = o.align != "none";
    data::ReadSettings grey;  // images as read_image(path, 1); DICOM / NIfTI through the intensity setting
    grey.channels = 1;
    grey.intensity = data::IntensitySetting::parse(o.intensity, "--intensity");
    r.intensity = o.intensity;
    for (const auto* p : {&o.reference, &o.target}) {
        const auto f = data::file_format(data::SampleRef::from_display(*p).path);
        r.medical = r.medical || f == data::FileFormat::dicom || f == data::FileFormat::nifti;
    }
    const auto ref = data::read_sample(data::SampleRef::from_display(o.reference), grey);  // (1, H, W) float in [0, 1]
    auto tgt = data::read_sample(data::SampleRef::from_display(o.target), grey);           // (1, H', W')
    const std::int64_t H = ref.size(1), W = ref.size(2);
    r.height = H;
    r.width = W;
    r.target_height = tgt.size(1);
    r.target_width = tgt.size(2);
    if (r.target_height != H || r.target_width != W) {
        MEDIMG_CHECK(o.resize || aligning, ShapeError, "compare: image sizes differ: reference ", o.reference, " is ",
                     detail::size_text(H, W), " but target ", o.target, " is ",
                     detail::size_text(r.target_height, r.target_width),
                     "; align them (--align rigid) or pass --resize to resize the target to the reference size");
        if (o.resize) {
            tgt = data::resize(tgt, H, W);
            r.resized = true;
        }
    }

    SsimOptions so;
    so.window = o.window;
    so.data_range = 1.0;
    const std::int64_t side = so.window_side(), rad = (side - 1) / 2;
    MEDIMG_CHECK(H >= side && W >= side, ShapeError, "compare: reference ", o.reference, " is ", detail::size_text(H, W),
                 ", smaller than the ", side, "x", side, " SSIM window (", detail::compare_window_text(o.window),
                 "); both sides must be at least ", side, " pixels");

    Tensor<float, Cpu> mask;  // (H, W) 1 inside the region of interest, 0 outside
    if (!o.mask.empty()) {
        const auto m = data::read_image(o.mask, 1).pixels;  // (1, Hm, Wm)
        MEDIMG_CHECK(m.size(1) == H && m.size(2) == W, ShapeError, "compare: mask ", o.mask, " is ",
                     detail::size_text(m.size(1), m.size(2)), " but the reference ", o.reference, " is ",
                     detail::size_text(H, W), "; the mask must have the reference's size");
        mask = Tensor<float, Cpu>::empty(Shape{H, W});
        for (std::int64_t i = 0; i < H * W; ++i) mask[i] = m[i] > 0.0f ? 1.0f : 0.0f;
    }

    const auto a = ref.reshape(Shape{H, W});
    auto b = tgt.reshape(Shape{tgt.size(1), tgt.size(2)});
    Tensor<float, Cpu> covered;  // aligning: (H, W) 1 where the aligned target has a value
    if (aligning) {
        reg::AlignOptions ao;
        ao.motion = o.align == "translation" ? reg::Motion::translation : o.align == "affine" ? reg::Motion::affine : reg::Motion::rigid;
        ao.any_angle = o.any_angle;
        try {
            r.alignment = reg::align(a, b, ao);
        } catch (const ValueError& e) {  // "align: ..." -> one line naming both files
            throw ValueError(medimg::detail::concat("compare: cannot align ", o.target, " to ", o.reference, ": ",
                                                    std::string(e.what()).substr(std::string(e.what()).rfind("align: ", 0) == 0 ? 7 : 0)));
        }
        r.overlap_pixels = r.alignment.overlap;
        const bool same_size = b.size(0) == H && b.size(1) == W;
        if (same_size) r.ssim_before = ssim(a, b, so).mean;
    }
    // resampled: the target moved onto the reference's grid. An alignment that kept the identity
    // compares the pixels as given, exactly as --align none does.
    const bool resampled = aligning && (r.alignment.moved || b.size(0) != H || b.size(1) != W);
    if (resampled) {
        auto rs = reg::resample(b, r.alignment.transform, H, W);
        covered = rs.mask;
        r.overlap_pixels = rs.inside;
        for (std::int64_t i = 0; i < H * W; ++i)
            if (covered[i] == 0.0f) rs.image[i] = a[i];  // no false edge where the target ends; not counted anyway
        b = rs.image;
    }
    SsimOptions plain = so;  // the mean alone, exactly as metrics::ssim gives it
    so.full = true;          // the map: for the regions, the mask, the overlap and the pictures
    const SsimResult s = ssim(a, b, so);  // (H, W) map when full

    // The pixels that count: the mask's, and where aligned, those the target covers (MAE) and
    // those whose whole SSIM window it covers (SSIM).
    const auto counts = [&](std::int64_t i) { return (!mask.defined() || mask[i] != 0.0f) && (!resampled || covered[i] != 0.0f); };
    std::vector<std::int64_t> window_covered;  // resampled: the covered pixels in each pixel's window
    if (resampled) {
        std::vector<std::int64_t> integral(static_cast<std::size_t>((H + 1) * (W + 1)), 0);
        for (std::int64_t i = 0; i < H; ++i)
            for (std::int64_t j = 0; j < W; ++j)
                integral[static_cast<std::size_t>((i + 1) * (W + 1) + j + 1)] =
                    (covered[i * W + j] != 0.0f ? 1 : 0) + integral[static_cast<std::size_t>(i * (W + 1) + j + 1)] +
                    integral[static_cast<std::size_t>((i + 1) * (W + 1) + j)] - integral[static_cast<std::size_t>(i * (W + 1) + j)];
        window_covered.assign(static_cast<std::size_t>(H * W), 0);
        for (std::int64_t i = rad; i < H - rad; ++i)
            for (std::int64_t j = rad; j < W - rad; ++j) {
                const auto at = [&](std::int64_t y, std::int64_t x) { return integral[static_cast<std::size_t>(y * (W + 1) + x)]; };
                window_covered[static_cast<std::size_t>(i * W + j)] =
                    at(i + rad + 1, j + rad + 1) - at(i - rad, j + rad + 1) - at(i + rad + 1, j - rad) + at(i - rad, j - rad);
            }
    }

    // MAE and the difference map, in double.
    auto diff = Tensor<double, Cpu>::empty(Shape{H, W});
    double sum_mask = 0.0;
    std::int64_t n_mask = 0;
    for (std::int64_t i = 0; i < H * W; ++i) {
        const double d = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
        diff[i] = d;
        if (resampled && covered[i] == 0.0f) continue;
        r.max_abs_diff = std::max(r.max_abs_diff, d);
        if (counts(i)) {
            sum_mask += d;
            ++n_mask;
        }
    }
    if (mask.defined() || resampled) {
        MEDIMG_CHECK(n_mask > 0, ValueError, "compare: ",
                     !mask.defined() ? std::string("the aligned target covers no pixel of the reference")
                                     : "mask " + o.mask + " has no nonzero pixels" + (resampled ? " where the aligned target covers the reference" : ""),
                     "; nothing to compare");
        // SSIM over counted pixels inside the region scikit-image averages: rows and columns
        // [rad, H - rad) x [rad, W - rad), where the window lies wholly inside the image (and,
        // aligned, wholly inside the part the target covers).
        double sum_s = 0.0;
        std::int64_t n_s = 0;
        for (std::int64_t i = rad; i < H - rad; ++i)
            for (std::int64_t j = rad; j < W - rad; ++j)
                if (counts(i * W + j) && (!resampled || window_covered[static_cast<std::size_t>(i * W + j)] == side * side)) {
                    sum_s += s.map[i * W + j];
                    ++n_s;
                }
        MEDIMG_CHECK(n_s > 0, ValueError, "compare: ", mask.defined() ? "mask " + o.mask + " has " : "the aligned images share ", n_mask,
                     mask.defined() ? " nonzero pixels" : " pixels", " but none inside the region SSIM is averaged over (the ", rad,
                     "-pixel border the ", side, "x", side, " window cannot cover is excluded, as scikit-image does",
                     resampled ? ", and so are pixels whose window leaves the aligned target" : "", ")");
        r.ssim = sum_s / static_cast<double>(n_s);
        r.ssim_pixels = n_s;
        r.mae = sum_mask / static_cast<double>(n_mask);
        r.masked_pixels = n_mask;
    } else {
        r.ssim = ssim(a, b, plain).mean;
        r.ssim_pixels = (H - 2 * rad) * (W - 2 * rad);
        r.mae = mean_absolute_error(a, b);  // the library's own blocked sum
        r.masked_pixels = H * W;
    }

    // Where they differ: regions of low local SSIM among the pixels SSIM averages over.
    {
        std::vector<bool> valid(static_cast<std::size_t>(H * W), false);
        for (std::int64_t i = rad; i < H - rad; ++i)
            for (std::int64_t j = rad; j < W - rad; ++j)
                valid[static_cast<std::size_t>(i * W + j)] =
                    counts(i * W + j) && (!resampled || window_covered[static_cast<std::size_t>(i * W + j)] == side * side);
        r.threshold = o.threshold;
        r.min_region = side;
        r.pixel_spacing = o.pixel_spacing;
        auto found = low_ssim_regions(s.map, valid, o.threshold, r.min_region);
        r.regions = std::move(found.regions);
        r.region_labels = std::move(found.label);
    }

    // Everything is measured; now the outputs, each written atomically. Where the aligned target
    // does not reach, the maps are mid-grey (no value there).
    const auto grey_outside = [&](Tensor<float, Cpu> rgb) {
        if (resampled)
            for (std::int64_t i = 0; i < H * W; ++i)
                if (covered[i] == 0.0f) rgb[i] = rgb[H * W + i] = rgb[2 * H * W + i] = 0.5f;
        return rgb;
    };
    if (!o.ssim_map.empty()) {
        data::write_png(o.ssim_map, grey_outside(apply_viridis(s.map, 0.0, 1.0)));  // (3, H, W), SSIM < 0 shown as 0
        r.ssim_map = o.ssim_map;
    }
    if (!o.diff_map.empty()) {
        data::write_png(o.diff_map, grey_outside(apply_viridis(diff, 0.0, r.max_abs_diff)));  // (3, H, W)
        r.diff_map = o.diff_map;
    }
    if (!o.panel.empty()) {
        const auto file = [](const std::string& p) { return std::filesystem::path(p).filename().string(); };
        char what[160];
        const auto& T = r.alignment.transform;
        if (!resampled)
            std::snprintf(what, sizeof what, "target, as given");
        else if (T.motion == reg::Motion::translation)
            std::snprintf(what, sizeof what, "target aligned: (%.1f, %.1f) px", T.tx, T.ty);
        else
            std::snprintf(what, sizeof what, "target aligned: %.1f deg, (%.1f, %.1f) px", T.angle_degrees(), T.tx, T.ty);
        auto ssim_f = Tensor<float, Cpu>::empty(Shape{H, W}), diff_f = Tensor<float, Cpu>::empty(Shape{H, W});
        for (std::int64_t i = 0; i < H * W; ++i) ssim_f[i] = static_cast<float>(s.map[i]), diff_f[i] = static_cast<float>(diff[i]);
        Tensor<float, Cpu> invalid;
        if (resampled) {
            invalid = Tensor<float, Cpu>::empty(Shape{H, W});
            for (std::int64_t i = 0; i < H * W; ++i) invalid[i] = covered[i] == 0.0f ? 1.0f : 0.0f;
        }
        char ssim_title[96], diff_title[96];
        std::snprintf(ssim_title, sizeof ssim_title, "SSIM %.3f; red: the %d largest regions < %.2f", r.ssim, kPanelRegions, o.threshold);
        std::snprintf(diff_title, sizeof diff_title, "|difference|, MAE %.4f", r.mae);
        const std::vector<report::PanelImage> tiles = {
            {a, 0.0, 1.0, false, "reference: " + file(o.reference), "intensity", false, false},
            {b, 0.0, 1.0, false, what, "intensity", true},
            {ssim_f, 0.0, 1.0, true, ssim_title, "local SSIM", true},
            {diff_f, 0.0, r.max_abs_diff > 0 ? r.max_abs_diff : 1.0, true, diff_title, "abs. difference", false}};
        // the panel outlines the largest few (all of them are in the JSON): in noisy flat tissue
        // many small ones pass the threshold, and tracing them all would hide the exam
        std::vector<std::int32_t> shown = r.region_labels;
        for (auto& l : shown)
            if (l > kPanelRegions) l = 0;
        const auto canvas = report::image_panel(tiles, invalid, shown);
        data::write_png(o.panel, canvas.to_tensor());
        r.panel = o.panel;
    }
    return r;
}

/// The text report: "ssim ...", "mae ...", then a line per resize, mask and written map.
inline std::string format_compare_text(const CompareResult& r) {
    std::string s = "ssim " + detail::fixed6(r.ssim) + " (" + detail::compare_window_text(r.window) + "; data_range 1" +
                    (r.medical ? " on values windowed by " + r.intensity : std::string());
    if (!r.mask.empty()) s += "; over " + std::to_string(r.ssim_pixels) + " mask pixels, border excluded";
    s += ")\nmae " + detail::fixed6(r.mae);
    if (!r.mask.empty()) s += " (over " + std::to_string(r.masked_pixels) + " mask pixels)";
    s += "\n";
    if (r.align != "none" && !r.alignment.moved && r.target_height == r.height && r.target_width == r.width) {
        char buf[256];
        std::snprintf(buf, sizeof buf, "aligned %s: kept as given (no transform raised the correlation, NCC %.4f)\n", r.align.c_str(),
                      r.alignment.ncc_after);
        s += buf;
    } else if (r.align != "none") {
        const auto& T = r.alignment.transform;
        char buf[512];
        std::snprintf(buf, sizeof buf, "aligned %s: rotation %.3f deg, shift (%.3f, %.3f) px", r.align.c_str(), T.angle_degrees(), T.tx, T.ty);
        s += buf;
        if (T.motion == reg::Motion::affine) {
            std::snprintf(buf, sizeof buf, ", matrix [[%.5f, %.5f], [%.5f, %.5f]]", T.a[0], T.a[1], T.a[2], T.a[3]);
            s += buf;
        }
        std::snprintf(buf, sizeof buf, " (reference pixel -> target, about (%.1f, %.1f)); NCC %.4f -> %.4f", T.cx, T.cy,
                      r.alignment.ncc_before, r.alignment.ncc_after);
        s += buf;
        if (!std::isnan(r.ssim_before)) s += "; SSIM before alignment " + detail::fixed6(r.ssim_before);
        s += "\ncompared over " + std::to_string(r.masked_pixels) + " of " + std::to_string(r.height * r.width) +
             " pixels (those the aligned target covers" + std::string(r.mask.empty() ? "" : ", inside the mask") + ")\n";
    }
    {
        char buf[256];
        std::snprintf(buf, sizeof buf, "low-SSIM regions (local SSIM < %.2f, at least %lld px): %zu", r.threshold,
                      static_cast<long long>(r.min_region), r.regions.size());
        s += buf;
        if (!r.regions.empty()) {
            const auto& g = r.regions[0];
            std::snprintf(buf, sizeof buf, "; the largest %lld px", static_cast<long long>(g.area));
            s += buf;
            if (r.pixel_spacing > 0) {
                std::snprintf(buf, sizeof buf, " (%.2f mm^2)", static_cast<double>(g.area) * r.pixel_spacing * r.pixel_spacing);
                s += buf;
            }
            std::snprintf(buf, sizeof buf, " at (%.1f, %.1f), mean SSIM %.3f", g.cx, g.cy, g.mean_ssim);
            s += buf;
        }
        s += "\n";
    }
    if (r.resized)
        s += "resized target from " + detail::size_text(r.target_height, r.target_width) + " to " +
             detail::size_text(r.height, r.width) + "\n";
    if (!r.mask.empty())
        s += "mask " + r.mask + ": " + std::to_string(r.masked_pixels) + " of " + std::to_string(r.height * r.width) +
             " pixels\n";
    if (!r.ssim_map.empty())
        s += "wrote ssim map " + r.ssim_map + " (viridis, SSIM clipped to [0, 1]: 0 = dark purple ... 1 = yellow)\n";
    if (!r.diff_map.empty())
        s += "wrote diff map " + r.diff_map + " (viridis, |reference - target| over [0, " + detail::fixed6(r.max_abs_diff) +
             "]: 0 = dark purple ... " + detail::fixed6(r.max_abs_diff) + " = yellow)\n";
    if (!r.panel.empty())
        s += "wrote panel " + r.panel + " (reference | target | SSIM map | difference; the largest low-SSIM regions in red)\n";
    return s;
}

/// The --json report, keys in this order (docs/compare.md lists every field).
inline nlohmann::ordered_json compare_json(const CompareResult& r) {
    using json = nlohmann::ordered_json;
    json j;
    j["reference"] = io::escape_invalid_utf8(r.reference);  // JSON is UTF-8: other path bytes as \xNN
    j["target"] = io::escape_invalid_utf8(r.target);
    j["ssim"] = r.ssim;
    j["mae"] = r.mae;
    j["window"] = detail::compare_window_name(r.window);
    j["window_description"] = detail::compare_window_text(r.window);
    j["data_range"] = 1.0;
    j["intensity"] = r.intensity;  // DICOM / NIfTI: the window that made the [0, 1] values
    j["width"] = r.width;
    j["height"] = r.height;
    j["resized"] = r.resized;
    j["target_width"] = r.target_width;
    j["target_height"] = r.target_height;
    j["mask"] = r.mask.empty() ? json(nullptr) : json(r.mask);
    j["masked_pixels"] = r.masked_pixels;
    j["ssim_pixels"] = r.ssim_pixels;
    j["max_abs_diff"] = r.max_abs_diff;
    j["ssim_map"] = r.ssim_map.empty() ? json(nullptr) : json(r.ssim_map);
    j["diff_map"] = r.diff_map.empty() ? json(nullptr) : json(r.diff_map);
    j["threshold"] = r.threshold;
    j["pixel_spacing_mm"] = r.pixel_spacing > 0 ? json(r.pixel_spacing) : json(nullptr);
    j["regions"] = json::array();
    for (const auto& g : r.regions) {
        json x;
        x["area_px"] = g.area;
        x["area_mm2"] = r.pixel_spacing > 0 ? json(static_cast<double>(g.area) * r.pixel_spacing * r.pixel_spacing) : json(nullptr);
        x["centroid_px"] = {g.cx, g.cy};
        x["bbox_px"] = {g.x0, g.y0, g.x1, g.y1};
        x["mean_ssim"] = g.mean_ssim;
        j["regions"].push_back(x);
    }
    j["panel"] = r.panel.empty() ? json(nullptr) : json(r.panel);
    if (r.align == "none") {
        j["align"] = nullptr;
    } else {
        const auto& T = r.alignment.transform;
        json a;
        a["motion"] = r.align;
        a["angle_deg"] = T.angle_degrees();
        a["shift_px"] = {T.tx, T.ty};
        a["matrix"] = {{T.a[0], T.a[1]}, {T.a[2], T.a[3]}};
        a["center_px"] = {T.cx, T.cy};
        a["ncc_before"] = r.alignment.ncc_before;
        a["ncc_after"] = r.alignment.ncc_after;
        a["ssim_before"] = std::isnan(r.ssim_before) ? json(nullptr) : json(r.ssim_before);
        a["moved"] = r.alignment.moved;
        a["any_angle"] = r.any_angle;
        a["overlap_pixels"] = r.overlap_pixels;
        j["align"] = a;
    }
    return j;
}

/// The whole program: parse, compare, print the report to `out`. Returns the exit status: 0 on
/// success (and for --help), 1 after printing one line "medimg-compare: <message>" to `err`.
/// The message is the exception's, without the "compare: " prefix, control characters escaped.
inline int run_compare(int argc, const char* const* argv, std::ostream& out, std::ostream& err) {
    try {
        const CompareOptions o = parse_compare_args(argc, argv);
        if (o.help) {
            out << compare_usage();
            return 0;
        }
        const CompareResult r = compare_images(o);
        if (o.json)
            out << compare_json(r).dump() << "\n";
        else
            out << format_compare_text(r);
        out.flush();
        return 0;
    } catch (...) {
        // One line whatever was thrown: control characters in a file name are escaped
        // (medimg::escape_controls, which every medimg::Error applies to its message).
        std::string msg = current_exception_message();
        if (msg.rfind("compare: ", 0) == 0) msg.erase(0, 9);
        err << "medimg-compare: " << msg << "\n";
        return 1;
    }
}

}  // namespace medimg::metrics
