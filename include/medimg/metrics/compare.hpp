// SPDX-License-Identifier: MIT
// metrics/compare.hpp: everything medimg-compare does, as functions a test can call: the argument
// parser (parse_compare_args), the comparison of two image files (compare_images: SSIM and MAE,
// optional mask, resize, colour-mapped SSIM / difference maps), the plain and JSON reports, and
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
#include "medimg/data/transforms.hpp"
#include "medimg/error.hpp"
#include "medimg/io/utf8.hpp"
#include "medimg/metrics/colormap.hpp"
#include "medimg/metrics/ssim.hpp"

namespace medimg::metrics {

/// What the command line asked for. Empty strings mean "not given".
struct CompareOptions {
    std::string reference;  ///< --reference FILE (required)
    std::string target;     ///< --target FILE (required)
    bool json = false;      ///< --json: one JSON object instead of text lines
    /// --window uniform (default: scikit-image's default, 7x7, sample covariance) | gaussian
    /// (Wang et al. 2004: 11x11, sigma 1.5, population covariance).
    Window window = Window::uniform;
    bool resize = false;    ///< --resize: resize the target to the reference size instead of failing
    std::string mask;       ///< --mask FILE: grey image, nonzero = region of interest
    std::string ssim_map;   ///< --ssim-map OUT.png: colour-mapped SSIM map
    std::string diff_map;   ///< --diff-map OUT.png: colour-mapped |reference - target|
    bool help = false;      ///< --help / -h: print compare_usage() and exit 0
};

/// The --help text.
inline std::string compare_usage() {
    return "usage: medimg-compare --reference FILE --target FILE [--json] [--window uniform|gaussian]\n"
           "                      [--resize] [--mask FILE] [--ssim-map OUT.png] [--diff-map OUT.png] [--help]\n"
           "\n"
           "SSIM and mean absolute error (MAE) of two images, read as greyscale in [0, 1]\n"
           "(8-bit / 255, 16-bit / 65535; colour is converted with ITU-R 601-2 luma); data_range 1.\n"
           "\n"
           "  --reference FILE   the reference image (PNG, JPEG, BMP, PGM/PPM)\n"
           "  --target FILE      the image compared with it; must have the same size unless --resize\n"
           "  --json             print one JSON object instead of text lines\n"
           "  --window NAME      uniform (default): scikit-image's default, 7x7 uniform window, sample\n"
           "                     covariance; gaussian: Wang et al. 2004, 11x11 Gaussian, sigma 1.5,\n"
           "                     population covariance. Both exclude the border the window cannot\n"
           "                     cover (3 or 5 pixels) from the mean, as scikit-image does.\n"
           "  --resize           resize the target to the reference size (bilinear, antialiased)\n"
           "  --mask FILE        grey image of the reference's size; nonzero pixels are the region of\n"
           "                     interest: SSIM = mean of the SSIM map over mask pixels outside the\n"
           "                     border, MAE = mean over mask pixels\n"
           "  --ssim-map OUT.png write the SSIM map, clipped to [0, 1], with the viridis colour map\n"
           "                     (0 = dark purple, 1 = yellow)\n"
           "  --diff-map OUT.png write |reference - target| with viridis over [0, largest difference]\n"
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
    bool seen_window = false, seen_json = false, seen_resize = false;
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
            if (!field.empty() || (name == "--window" && seen_window))
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
        } else if (name == "--window") {
            std::string w;
            take(w, "uniform or gaussian");
            seen_window = true;
            if (w == "uniform") o.window = Window::uniform;
            else if (w == "gaussian") o.window = Window::gaussian;
            else throw ConfigError("compare: unknown window '" + w + "' for --window; expected uniform or gaussian");
        } else if (name == "--json") {
            flag(seen_json, o.json);
        } else if (name == "--resize") {
            flag(seen_resize, o.resize);
        } else {
            throw ConfigError("compare: unknown option '" + name + "' (see --help)");
        }
    }
    if (o.reference.empty()) throw ConfigError("compare: missing --reference FILE (see --help)");
    if (o.target.empty()) throw ConfigError("compare: missing --target FILE (see --help)");
    return o;
}

/// What compare_images measured (and wrote).
struct CompareResult {
    std::string reference, target;  // the paths as given
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
    for (const std::string* out : {&o.ssim_map, &o.diff_map}) {
        if (out->empty()) continue;
        for (const std::string* in : {&o.reference, &o.target, &o.mask})
            MEDIMG_CHECK(in->empty() || !detail::same_path(*out, *in), ConfigError, "compare: output ", *out,
                         " is also an input; refusing to overwrite it");
    }
    MEDIMG_CHECK(o.ssim_map.empty() || o.diff_map.empty() || !detail::same_path(o.ssim_map, o.diff_map), ConfigError,
                 "compare: --ssim-map and --diff-map both name ", o.ssim_map);

    CompareResult r;
    r.reference = o.reference;
    r.target = o.target;
    r.window = o.window;
    r.mask = o.mask;
    const auto ref = data::read_image(o.reference, 1).pixels;  // (1, H, W) float in [0, 1]
    auto tgt = data::read_image(o.target, 1).pixels;           // (1, H', W')
    const std::int64_t H = ref.size(1), W = ref.size(2);
    r.height = H;
    r.width = W;
    r.target_height = tgt.size(1);
    r.target_width = tgt.size(2);
    if (r.target_height != H || r.target_width != W) {
        MEDIMG_CHECK(o.resize, ShapeError, "compare: image sizes differ: reference ", o.reference, " is ",
                     detail::size_text(H, W), " but target ", o.target, " is ",
                     detail::size_text(r.target_height, r.target_width),
                     "; pass --resize to resize the target to the reference size");
        tgt = data::resize(tgt, H, W);
        r.resized = true;
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
    const auto b = tgt.reshape(Shape{H, W});
    so.full = mask.defined() || !o.ssim_map.empty();
    const SsimResult s = ssim(a, b, so);  // (H, W) map when full

    // MAE and the difference map, in double.
    auto diff = Tensor<double, Cpu>::empty(Shape{H, W});
    double sum_mask = 0.0;
    std::int64_t n_mask = 0;
    for (std::int64_t i = 0; i < H * W; ++i) {
        const double d = std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
        diff[i] = d;
        r.max_abs_diff = std::max(r.max_abs_diff, d);
        if (mask.defined() && mask[i] != 0.0f) {
            sum_mask += d;
            ++n_mask;
        }
    }
    if (mask.defined()) {
        MEDIMG_CHECK(n_mask > 0, ValueError, "compare: mask ", o.mask, " has no nonzero pixels; nothing to compare");
        // SSIM over mask pixels inside the region scikit-image averages: rows and columns
        // [rad, H - rad) x [rad, W - rad), where the window lies wholly inside the image.
        double sum_s = 0.0;
        std::int64_t n_s = 0;
        for (std::int64_t i = rad; i < H - rad; ++i)
            for (std::int64_t j = rad; j < W - rad; ++j)
                if (mask[i * W + j] != 0.0f) {
                    sum_s += s.map[i * W + j];
                    ++n_s;
                }
        MEDIMG_CHECK(n_s > 0, ValueError, "compare: mask ", o.mask, " has ", n_mask,
                     " nonzero pixels but none inside the region SSIM is averaged over (the ", rad,
                     "-pixel border the ", side, "x", side, " window cannot cover is excluded, as scikit-image does)");
        r.ssim = sum_s / static_cast<double>(n_s);
        r.ssim_pixels = n_s;
        r.mae = sum_mask / static_cast<double>(n_mask);
        r.masked_pixels = n_mask;
    } else {
        r.ssim = s.mean;
        r.ssim_pixels = (H - 2 * rad) * (W - 2 * rad);
        r.mae = mean_absolute_error(a, b);  // the library's own blocked sum
        r.masked_pixels = H * W;
    }

    // Everything is measured; now the outputs, each written atomically.
    if (!o.ssim_map.empty()) {
        data::write_png(o.ssim_map, apply_viridis(s.map, 0.0, 1.0));  // (3, H, W), SSIM < 0 shown as 0
        r.ssim_map = o.ssim_map;
    }
    if (!o.diff_map.empty()) {
        data::write_png(o.diff_map, apply_viridis(diff, 0.0, r.max_abs_diff));  // (3, H, W)
        r.diff_map = o.diff_map;
    }
    return r;
}

/// The text report: "ssim ...", "mae ...", then a line per resize, mask and written map.
inline std::string format_compare_text(const CompareResult& r) {
    std::string s = "ssim " + detail::fixed6(r.ssim) + " (" + detail::compare_window_text(r.window) + "; data_range 1";
    if (!r.mask.empty()) s += "; over " + std::to_string(r.ssim_pixels) + " mask pixels, border excluded";
    s += ")\nmae " + detail::fixed6(r.mae);
    if (!r.mask.empty()) s += " (over " + std::to_string(r.masked_pixels) + " mask pixels)";
    s += "\n";
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
    return j;
}

/// The whole program: parse, compare, print the report to `out`. Returns the exit status: 0 on
/// success (and for --help), 1 after printing one line "medimg-compare: <message>" to `err`.
/// The message is the exception's, without the "compare: " prefix and with newlines flattened.
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
    } catch (const std::exception& e) {
        std::string msg = e.what();
        if (msg.rfind("compare: ", 0) == 0) msg.erase(0, 9);
        std::replace(msg.begin(), msg.end(), '\n', ' ');
        std::replace(msg.begin(), msg.end(), '\r', ' ');
        err << "medimg-compare: " << msg << "\n";
        return 1;
    }
}

}  // namespace medimg::metrics
