// SPDX-License-Identifier: MIT
// Tests for metrics/compare.hpp (medimg-compare's parser, measurements, reports and errors) and
// metrics/colormap.hpp (the viridis fit). The fixture pair in tests/data/compare and its
// scikit-image numbers come from tests/data/make_compare_fixtures.py; other images are written to
// a scratch folder as 8-bit PNGs with values k / 255, so what read_image returns is known exactly.
#include <boost/test/unit_test.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "helpers.hpp"
#include "medimg/core/rng.hpp"
#include "medimg/data/phantom.hpp"
#include "medimg/metrics/compare.hpp"

using namespace medimg;
using medimg::metrics::CompareOptions;
using medimg::metrics::Window;
using medimg::test::message_contains;
namespace fs = std::filesystem;

namespace {

// Agreement with scikit-image on the fixture pair. skimage worked on float64 k / 255; medimg
// reads float32 k / 255 and widens it, which moves SSIM by 7.4e-9 and MAE by < 1e-8 (measured by
// the script); the issue asks for 1e-6.
constexpr double kSkimageTol = 1e-6;
// Hand-computed values on float32 pixels vs medimg's float64 arithmetic: a few ulp.
constexpr double kHandTol = 1e-12;
// The viridis fit vs its published anchors: the fit passes within 2.2 / 255 (make_compare_fixtures.py).
constexpr double kAnchorTol = 2.5 / 255.0;

struct TempDir {
    fs::path path;
    TempDir() {
        path = fs::temp_directory_path() / ("medimg-compare-" + std::to_string(Rng(std::random_device{}()).next_u64()));
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::string fixture(const std::string& name) { return std::string(MEDIMG_TEST_DATA_DIR) + "/compare/" + name; }

std::map<std::string, double> expected_values() {
    std::ifstream in(fixture("expected.txt"));
    BOOST_REQUIRE_MESSAGE(in, "cannot open " << fixture("expected.txt"));
    std::map<std::string, double> v;
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream ls(line);
        std::string key;
        double value = 0.0;
        ls >> key >> value;
        v[key] = value;
    }
    return v;
}

/// A (1, H, W) image of codes k / 255 from a function of (row, column).
template <class F>
Tensor<float, Cpu> codes_image(std::int64_t H, std::int64_t W, F code) {
    auto t = Tensor<float, Cpu>::empty(Shape{1, H, W});
    for (std::int64_t i = 0; i < H; ++i)
        for (std::int64_t j = 0; j < W; ++j) t[i * W + j] = static_cast<float>(code(i, j)) / 255.0f;
    return t;
}

/// A textured image: smooth waves plus seeded noise, 8-bit codes.
Tensor<float, Cpu> textured(std::int64_t H, std::int64_t W, std::uint64_t seed) {
    Rng rng(seed);
    return codes_image(H, W, [&](std::int64_t i, std::int64_t j) {
        const double v = 128 + 60 * std::sin(0.21 * i + 0.05 * seed) * std::cos(0.13 * j) + 40 * (rng.uniform() - 0.5);
        return static_cast<int>(std::lround(std::min(255.0, std::max(0.0, v))));
    });
}

/// Options comparing the pixels as given (--align none): the tests of the comparison itself.
CompareOptions opts(const std::string& ref, const std::string& tgt) {
    CompareOptions o;
    o.reference = ref;
    o.target = tgt;
    o.align = "none";
    return o;
}

struct Run {
    int rc;
    std::string out, err;
};
Run run(std::vector<std::string> args) {
    args.insert(args.begin(), "medimg-compare");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    std::ostringstream out, err;
    const int rc = metrics::run_compare(static_cast<int>(argv.size()), argv.data(), out, err);
    return {rc, out.str(), err.str()};
}

/// The failure contract: exit 1, nothing on stdout, exactly one line on stderr with the prefix.
void check_one_line_error(const Run& r, const std::string& needle) {
    BOOST_TEST(r.rc == 1);
    BOOST_TEST(r.out.empty());
    BOOST_TEST(r.err.rfind("medimg-compare: ", 0) == 0, "stderr: " << r.err);
    BOOST_TEST(r.err.find('\n') == r.err.size() - 1, "not one line: " << r.err);
    BOOST_TEST(r.err.find(needle) != std::string::npos, "'" << needle << "' not in: " << r.err);
}

metrics::CompareOptions parse(std::vector<std::string> args) {
    args.insert(args.begin(), "medimg-compare");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    return metrics::parse_compare_args(static_cast<int>(argv.size()), argv.data());
}

}  // namespace

BOOST_AUTO_TEST_SUITE(compare)

// ---- the argument parser -----------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(parser_reads_every_option_in_both_forms) {
    const auto o = parse({"--reference", "a.png", "--target=b.png", "--json", "--window", "gaussian", "--resize",
                          "--mask=m.png", "--ssim-map", "s.png", "--diff-map", "d.png"});
    BOOST_TEST(o.reference == "a.png");
    BOOST_TEST(o.target == "b.png");
    BOOST_TEST(o.json);
    BOOST_TEST((o.window == Window::gaussian));
    BOOST_TEST(o.resize);
    BOOST_TEST(o.mask == "m.png");
    BOOST_TEST(o.ssim_map == "s.png");
    BOOST_TEST(o.diff_map == "d.png");
    BOOST_TEST(!o.help);
    const auto d = parse({"--target", "b.png", "--reference", "a.png"});  // defaults
    BOOST_TEST((d.window == Window::uniform));
    BOOST_TEST((!d.json && !d.resize && d.mask.empty() && d.ssim_map.empty() && d.diff_map.empty()));
    BOOST_TEST(d.align == "rigid");
    BOOST_TEST(parse({"--reference", "a", "--target", "b", "--align=affine"}).align == "affine");
    BOOST_TEST(parse({"--window=uniform", "--reference", "a", "--target", "b"}).reference == "a");
    BOOST_TEST(parse({"--reference=--odd.png", "--target", "b"}).reference == "--odd.png");
}

BOOST_AUTO_TEST_CASE(help_anywhere_wins_and_prints_usage) {
    BOOST_TEST(parse({"--bogus", "--help"}).help);
    BOOST_TEST(parse({"-h"}).help);
    const auto r = run({"--help"});
    BOOST_TEST(r.rc == 0);
    BOOST_TEST(r.err.empty());
    BOOST_TEST(r.out.find("usage: medimg-compare --reference FILE --target FILE") != std::string::npos);
    BOOST_TEST(r.out.find("--window NAME") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(parser_rejects_bad_arguments_with_config_errors) {
    const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
        {{"--reference", "a", "--target", "b", "--frobnicate"}, "unknown option '--frobnicate'"},
        {{"--reference", "a", "--target"}, "option --target needs a value (FILE)"},
        {{"--reference", "--target", "b"}, "option --reference needs a value (FILE), got option '--target'"},
        {{"--reference=", "--target", "b"}, "option --reference needs a non-empty value (FILE)"},
        {{"--reference", "a", "--reference", "c", "--target", "b"}, "option --reference given twice"},
        {{"--reference", "a", "--target", "b", "--json", "--json"}, "option --json given twice"},
        {{"--reference", "a", "--target", "b", "--json=yes"}, "option --json takes no value"},
        {{"--reference", "a", "--target", "b", "--window", "box"}, "unknown window 'box' for --window; expected uniform or gaussian"},
        {{"--reference", "a", "--target", "b", "--window", "gaussian", "--window", "uniform"}, "option --window given twice"},
        {{"--reference", "a", "--target", "b", "extra"}, "unexpected argument 'extra'"},
        {{"--reference", "a", "--target", "b", "--align", "elastic"},
         "unknown motion 'elastic' for --align; expected none, translation, rigid or affine"},
        {{"--reference", "a", "--target", "b", "--align", "none", "--align", "rigid"}, "option --align given twice"},
        {{"--reference", "a", "--target", "b", "--any-angle=yes"}, "option --any-angle takes no value"},
        {{"--reference", "a", "--target", "b", "--any-angle", "--any-angle"}, "option --any-angle given twice"},
        {{"--reference", "a", "--target", "b", "--any-angle", "--align", "translation"},
         "--any-angle needs --align rigid or affine (it turns the images), not --align translation"},
        {{"--reference", "a", "--target", "b", "--align=none", "--any-angle"}, "--any-angle needs --align rigid or affine"},
        {{"--target", "b"}, "missing --reference FILE"},
        {{"--reference", "a"}, "missing --target FILE"},
        {{}, "missing --reference FILE"},
    };
    for (const auto& [args, needle] : cases) {
        BOOST_CHECK_EXCEPTION(parse(args), ConfigError, message_contains("compare: " + needle));
        check_one_line_error(run(args), needle);
    }
}

// ---- numbers -----------------------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(fixture_pair_matches_scikit_image_in_both_conventions) {
    const auto e = expected_values();
    for (const auto w : {Window::uniform, Window::gaussian}) {
        auto o = opts(fixture("reference.png"), fixture("target.png"));
        o.window = w;
        const auto r = metrics::compare_images(o);
        const std::string name = w == Window::uniform ? "uniform" : "gaussian";
        BOOST_TEST(r.ssim == e.at("ssim_" + name), boost::test_tools::tolerance(kSkimageTol));
        BOOST_TEST(std::abs(r.ssim - e.at("ssim_" + name)) <= kSkimageTol);
        BOOST_TEST(std::abs(r.mae - e.at("mae")) <= kSkimageTol);
        BOOST_TEST(std::abs(r.max_abs_diff - e.at("max_abs_diff")) <= kSkimageTol);
        BOOST_TEST(r.height == static_cast<std::int64_t>(e.at("height")));
        BOOST_TEST(r.width == static_cast<std::int64_t>(e.at("width")));
        const std::int64_t rad = w == Window::uniform ? 3 : 5;
        BOOST_TEST(r.ssim_pixels == (r.height - 2 * rad) * (r.width - 2 * rad));
        BOOST_TEST(r.masked_pixels == r.height * r.width);

        o.mask = fixture("mask.png");
        const auto m = metrics::compare_images(o);
        BOOST_TEST(std::abs(m.ssim - e.at("masked_ssim_" + name)) <= kSkimageTol);
        BOOST_TEST(m.ssim_pixels == static_cast<std::int64_t>(e.at("masked_ssim_pixels_" + name)));
        BOOST_TEST(std::abs(m.mae - e.at("masked_mae")) <= kSkimageTol);
        BOOST_TEST(m.masked_pixels == static_cast<std::int64_t>(e.at("masked_pixels")));
    }
}

BOOST_AUTO_TEST_CASE(numbers_equal_metrics_ssim_and_mae_on_the_pixels_read) {
    TempDir dir;
    const auto a = textured(40, 52, 1), b = textured(40, 52, 2);
    data::write_png(dir / "a.png", a);
    data::write_png(dir / "b16.png", b, 16);  // 16-bit target: read as k / 65535
    const auto ra = data::read_image(dir / "a.png", 1).pixels.reshape(Shape{40, 52});
    const auto rb = data::read_image(dir / "b16.png", 1).pixels.reshape(Shape{40, 52});
    for (const auto w : {Window::uniform, Window::gaussian}) {
        auto o = opts(dir / "a.png", dir / "b16.png");
        o.window = w;
        const auto r = metrics::compare_images(o);
        metrics::SsimOptions so;
        so.window = w;
        BOOST_TEST(r.ssim == metrics::ssim(ra, rb, so).mean);  // the same function on the same data
        BOOST_TEST(r.mae == metrics::mean_absolute_error(ra, rb));
        BOOST_TEST((r.window == w));
        BOOST_TEST(!r.resized);
    }
}

BOOST_AUTO_TEST_CASE(mask_restricts_both_measures_hand_checked) {
    // 20 x 20, reference 0.4 everywhere; target 0.6 in columns 0..9 and 0.4 elsewhere.
    TempDir dir;
    data::write_png(dir / "ref.png", codes_image(20, 20, [](auto, auto) { return 102; }));
    data::write_png(dir / "tgt.png", codes_image(20, 20, [](auto, auto j) { return j < 10 ? 153 : 102; }));
    // Right mask: columns >= 13, where every 7x7 window sees equal flat images: SSIM 1, MAE 0.
    data::write_png(dir / "right.png", codes_image(20, 20, [](auto, auto j) { return j >= 13 ? 255 : 0; }));
    // Left mask: columns < 7, where every window sees flat 0.4 vs flat 0.6: variances and
    // covariance are 0, so SSIM = (2 mx my + C1) / (mx^2 + my^2 + C1) and MAE = 0.2.
    data::write_png(dir / "left.png", codes_image(20, 20, [](auto, auto j) { return j < 7 ? 1 : 0; }));

    auto o = opts(dir / "ref.png", dir / "tgt.png");
    o.mask = dir / "right.png";
    auto r = metrics::compare_images(o);
    BOOST_TEST(r.ssim == 1.0);
    BOOST_TEST(r.mae == 0.0);
    BOOST_TEST(r.masked_pixels == 20 * 7);
    BOOST_TEST(r.ssim_pixels == 14 * 4);  // rows 3..16 x columns 13..16 (the crop drops 3 per side)

    o.mask = dir / "left.png";
    r = metrics::compare_images(o);
    const double mx = static_cast<double>(102.0f / 255.0f), my = static_cast<double>(153.0f / 255.0f);
    const double c1 = 0.01 * 0.01;
    BOOST_TEST(std::abs(r.ssim - (2 * mx * my + c1) / (mx * mx + my * my + c1)) <= kHandTol);
    BOOST_TEST(std::abs(r.mae - (my - mx)) <= kHandTol);
    BOOST_TEST(r.masked_pixels == 20 * 7);
    BOOST_TEST(r.ssim_pixels == 14 * 4);  // rows 3..16 x columns 3..6

    // Without a mask both measures mix the two halves.
    o.mask.clear();
    r = metrics::compare_images(o);
    BOOST_TEST(std::abs(r.mae - 0.5 * (my - mx)) <= kHandTol);
    BOOST_TEST(r.ssim > 0.5);
    BOOST_TEST(r.ssim < 1.0);
}

BOOST_AUTO_TEST_CASE(resize_resizes_the_target_to_the_reference_and_says_so) {
    TempDir dir;
    const auto ref = textured(40, 52, 3);
    const auto small = textured(30, 26, 4);
    data::write_png(dir / "ref.png", ref);
    data::write_png(dir / "small.png", small);
    auto o = opts(dir / "ref.png", dir / "small.png");
    BOOST_CHECK_EXCEPTION(metrics::compare_images(o), ShapeError, message_contains("pass --resize"));
    o.resize = true;
    const auto r = metrics::compare_images(o);
    BOOST_TEST(r.resized);
    BOOST_TEST((r.height == 40 && r.width == 52 && r.target_height == 30 && r.target_width == 26));
    const auto ra = data::read_image(dir / "ref.png", 1).pixels;
    const auto rb = data::resize(data::read_image(dir / "small.png", 1).pixels, 40, 52);
    BOOST_TEST(r.ssim == metrics::ssim(ra, rb).mean);
    BOOST_TEST(r.mae == metrics::mean_absolute_error(ra, rb));

    const auto t = run({"--reference", dir / "ref.png", "--target", dir / "small.png", "--resize", "--align", "none"});
    BOOST_TEST(t.rc == 0);
    BOOST_TEST(t.out.find("resized target from 26x30 to 52x40\n") != std::string::npos, t.out);
    // Same sizes with --resize: nothing to resize, nothing said.
    const auto same = run({"--reference", dir / "ref.png", "--target", dir / "ref.png", "--resize", "--json"});
    BOOST_TEST(nlohmann::json::parse(same.out)["resized"] == false);
    BOOST_TEST(nlohmann::json::parse(same.out)["ssim"] == 1.0);
}

// ---- reports -----------------------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(text_report_states_the_convention_and_data_range) {
    const auto r = run({"--reference", fixture("reference.png"), "--target", fixture("target.png")});
    BOOST_TEST(r.rc == 0);
    BOOST_TEST(r.err.empty());
    // the pair is already aligned: rigid alignment (the default) keeps it as given
    BOOST_TEST(r.out ==
               "ssim 0.704326 (uniform 7x7, sample covariance, scikit-image default; data_range 1)\n"
               "mae 0.035634\n"
               "aligned rigid: kept as given (no transform raised the correlation, NCC 0.9780)\n"
               "low-SSIM regions (local SSIM < 0.30, at least 7 px): 3; the largest 189 px at (69.6, 90.5), mean SSIM 0.235\n");
    const auto g = run({"--reference", fixture("reference.png"), "--target", fixture("target.png"), "--window", "gaussian",
                        "--mask", fixture("mask.png")});
    BOOST_TEST(g.out ==
               "ssim 0.683782 (gaussian 11x11 sigma 1.5, population covariance, Wang et al. 2004; data_range 1; over "
               "1257 mask pixels, border excluded)\n"
               "mae 0.081857 (over 1257 mask pixels)\n"
               "aligned rigid: kept as given (no transform raised the correlation, NCC 0.9780)\n"
               "low-SSIM regions (local SSIM < 0.30, at least 11 px): 0\n"
               "mask " + fixture("mask.png") + ": 1257 of 14336 pixels\n");
}

BOOST_AUTO_TEST_CASE(json_report_has_every_field) {
    const auto e = expected_values();
    auto r = run({"--reference", fixture("reference.png"), "--target", fixture("target.png"), "--json"});
    BOOST_TEST(r.rc == 0);
    BOOST_TEST(r.out.find('\n') == r.out.size() - 1);  // one line
    auto j = nlohmann::ordered_json::parse(r.out);
    BOOST_TEST(j["reference"] == fixture("reference.png"));
    BOOST_TEST(j["target"] == fixture("target.png"));
    BOOST_TEST(std::abs(j["ssim"].get<double>() - e.at("ssim_uniform")) <= kSkimageTol);
    BOOST_TEST(std::abs(j["mae"].get<double>() - e.at("mae")) <= kSkimageTol);
    BOOST_TEST(j["window"] == "uniform");
    BOOST_TEST(j["window_description"] == "uniform 7x7, sample covariance, scikit-image default");
    BOOST_TEST(j["data_range"].is_number_float());
    BOOST_TEST(j["data_range"] == 1.0);
    BOOST_TEST(j["resized"] == false);
    BOOST_TEST(j["mask"].is_null());
    BOOST_TEST(j["masked_pixels"] == 112 * 128);
    BOOST_TEST(j["ssim_pixels"] == 106 * 122);
    BOOST_TEST((j["width"] == 128 && j["height"] == 112 && j["target_width"] == 128 && j["target_height"] == 112));
    BOOST_TEST(j["ssim_map"].is_null());
    BOOST_TEST(j["diff_map"].is_null());
    BOOST_TEST(std::abs(j["max_abs_diff"].get<double>() - e.at("max_abs_diff")) <= kSkimageTol);
    // The keys come in the documented order, starting with the issue's.
    const std::vector<std::string> first = {"reference", "target", "ssim", "mae", "window"};
    auto it = j.begin();
    for (const auto& k : first) BOOST_TEST((it++).key() == k);
    // The full numbers, not the text report's six decimals.
    BOOST_TEST(j["ssim"].get<double>() == metrics::compare_images(opts(fixture("reference.png"), fixture("target.png"))).ssim);

    r = run({"--reference", fixture("reference.png"), "--target", fixture("target.png"), "--json", "--window", "gaussian",
             "--mask", fixture("mask.png")});
    j = nlohmann::ordered_json::parse(r.out);
    BOOST_TEST(j["window"] == "gaussian");
    BOOST_TEST(j["mask"] == fixture("mask.png"));
    BOOST_TEST(j["masked_pixels"] == 1257);
    BOOST_TEST(std::abs(j["ssim"].get<double>() - e.at("masked_ssim_gaussian")) <= kSkimageTol);
}

BOOST_AUTO_TEST_CASE(maps_are_written_as_rgb_pngs_of_the_reference_size) {
    TempDir dir;
    const auto r = run({"--reference", fixture("reference.png"), "--target", fixture("target.png"), "--ssim-map",
                        dir / "ssim.png", "--diff-map", dir / "diff.png"});
    BOOST_TEST(r.rc == 0, r.err);
    BOOST_TEST(r.out.find("wrote ssim map " + (dir / "ssim.png") + " (viridis, SSIM clipped to [0, 1]: 0 = dark purple ... 1 = yellow)\n") !=
               std::string::npos, r.out);
    BOOST_TEST(r.out.find("wrote diff map " + (dir / "diff.png") + " (viridis, |reference - target| over [0, 0.486275]") !=
               std::string::npos, r.out);
    for (const char* name : {"ssim.png", "diff.png"}) {
        const auto info = data::read_image_info(dir / name);
        BOOST_TEST(info.format == "PNG");
        BOOST_TEST((info.width == 128 && info.height == 112 && info.stored_channels == 3 && info.bit_depth == 8));
    }
    // The JSON report names the files too.
    const auto j = nlohmann::json::parse(run({"--reference", fixture("reference.png"), "--target", fixture("target.png"),
                                              "--json", "--ssim-map", dir / "s2.png"})
                                             .out);
    BOOST_TEST(j["ssim_map"] == dir / "s2.png");
    BOOST_TEST(fs::exists(dir / "s2.png"));
}

BOOST_AUTO_TEST_CASE(map_colours_follow_the_stated_ranges) {
    // Identical top half (SSIM 1, difference 0); bottom rows differ by a ramp whose largest step is
    // the top of the diff map's range.
    TempDir dir;
    data::write_png(dir / "ref.png", codes_image(24, 24, [](auto, auto) { return 100; }));
    data::write_png(dir / "tgt.png", codes_image(24, 24, [](auto i, auto j) { return i < 12 ? 100 : 100 + 5 * j; }));
    auto o = opts(dir / "ref.png", dir / "tgt.png");
    o.ssim_map = dir / "s.png";
    o.diff_map = dir / "d.png";
    const auto r = metrics::compare_images(o);
    BOOST_TEST(std::abs(r.max_abs_diff - 115.0 / 255.0) <= 1e-6);
    const auto s = data::read_image(dir / "s.png", 3).pixels;  // (3, 24, 24)
    const auto d = data::read_image(dir / "d.png", 3).pixels;
    const std::int64_t hw = 24 * 24;
    auto colour_is = [&](const Tensor<float, Cpu>& img, std::int64_t i, std::int64_t j, double t) {
        const auto c = metrics::viridis(t);
        bool ok = true;
        for (int ch = 0; ch < 3; ++ch) ok = ok && std::abs(img[ch * hw + i * 24 + j] - c[ch]) <= 0.5 / 255.0 + 1e-6;
        return ok;
    };
    BOOST_TEST(colour_is(s, 2, 2, 1.0));    // equal flat images: SSIM 1 -> yellow
    BOOST_TEST(colour_is(d, 2, 2, 0.0));    // no difference -> the dark end
    BOOST_TEST(colour_is(d, 20, 23, 1.0));  // the largest difference -> yellow
    BOOST_TEST(colour_is(d, 20, 0, 0.0));   // column 0 of the ramp: no difference
}

// ---- failures ----------------------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(every_failure_is_one_line_on_stderr_and_exit_1) {
    TempDir dir;
    data::write_png(dir / "a.png", textured(20, 30, 5));
    data::write_png(dir / "b.png", textured(22, 30, 6));
    data::write_png(dir / "tiny.png", textured(5, 9, 7));
    data::write_png(dir / "nine.png", textured(9, 12, 8));
    data::write_png(dir / "nine2.png", textured(9, 12, 9));
    data::write_png(dir / "m_small.png", codes_image(5, 5, [](auto, auto) { return 255; }));
    data::write_png(dir / "m_empty.png", codes_image(20, 30, [](auto, auto) { return 0; }));
    data::write_png(dir / "m_edge.png", codes_image(20, 30, [](auto i, auto) { return i < 3 ? 255 : 0; }));
    {
        std::ofstream f(dir / "junk.png", std::ios::binary);
        f << "this is not an image";
    }
    const std::string a = dir / "a.png";
    check_one_line_error(run({"--reference", a, "--target", dir / "missing.png"}), "missing.png");
    check_one_line_error(run({"--reference", dir / "junk.png", "--target", a}), "junk.png");
    check_one_line_error(run({"--reference", a, "--target", dir / "b.png", "--align", "none"}),
                         "image sizes differ: reference " + a + " is 30x20 but target " + (dir / "b.png") +
                             " is 30x22; align them (--align rigid) or pass --resize");
    data::write_png(dir / "flat.png", codes_image(20, 30, [](auto, auto) { return 90; }));
    check_one_line_error(run({"--reference", a, "--target", dir / "flat.png"}),
                         "cannot align " + (dir / "flat.png") + " to " + a + ": the target is constant where the images overlap");
    check_one_line_error(run({"--reference", dir / "tiny.png", "--target", dir / "tiny.png"}),
                         "is 9x5, smaller than the 7x7 SSIM window");
    check_one_line_error(run({"--reference", dir / "nine.png", "--target", dir / "nine2.png", "--window", "gaussian"}),
                         "is 12x9, smaller than the 11x11 SSIM window");
    check_one_line_error(run({"--reference", a, "--target", a, "--mask", dir / "m_small.png"}),
                         "mask " + (dir / "m_small.png") + " is 5x5 but the reference");
    check_one_line_error(run({"--reference", a, "--target", a, "--mask", dir / "m_empty.png"}), "has no nonzero pixels");
    check_one_line_error(run({"--reference", a, "--target", a, "--mask", dir / "m_edge.png"}),
                         "none inside the region SSIM is averaged over");
    check_one_line_error(run({"--reference", a, "--target", a, "--ssim-map", a}), "is also an input");
    check_one_line_error(run({"--reference", a, "--target", a, "--ssim-map", dir / "x.png", "--diff-map", dir / "./x.png"}),
                         "both name");
    check_one_line_error(run({"--reference", a, "--target", a, "--diff-map", dir / "no/such/dir/d.png"}), "write_png");
    check_one_line_error(run({"--reference", a, "--target", a, "--window"}), "option --window needs a value");
}

BOOST_AUTO_TEST_CASE(a_failed_run_leaves_no_output_file) {
    TempDir dir;
    data::write_png(dir / "a.png", textured(20, 30, 5));
    data::write_png(dir / "b.png", textured(22, 30, 6));
    // Measurement fails (sizes differ): nothing is written.
    auto r = run({"--reference", dir / "a.png", "--target", dir / "b.png", "--align", "none", "--ssim-map", dir / "s.png",
                  "--diff-map", dir / "d.png"});
    BOOST_TEST(r.rc == 1);
    BOOST_TEST(!fs::exists(dir / "s.png"));
    BOOST_TEST(!fs::exists(dir / "d.png"));
    // The second output cannot be written: the first is complete, no temporary file is left.
    r = run({"--reference", dir / "a.png", "--target", dir / "a.png", "--ssim-map", dir / "s.png", "--diff-map",
             dir / "missing/d.png"});
    BOOST_TEST(r.rc == 1);
    BOOST_TEST(data::read_image(dir / "s.png", 0).pixels.shape() == Shape({3, 20, 30}));
    int files = 0;
    for (const auto& entry : fs::directory_iterator(dir.path)) files += entry.path().filename().string().find(".tmp") == std::string::npos ? 1 : 100;
    BOOST_TEST(files == 3);  // a.png, b.png, s.png
}

// ---- alignment ---------------------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(a_moved_exam_is_aligned_before_it_is_compared) {
    // tests/data/register: a phantom slice turned by -15 degrees and shifted by (-12.8, -12.8) px
    const std::string dir = std::string(MEDIMG_TEST_DATA_DIR) + "/register/";
    auto o = opts(dir + "ref_1.png", dir + "rigid_15deg.png");
    const auto as_given = metrics::compare_images(o);
    o.align = "rigid";
    const auto r = metrics::compare_images(o);
    BOOST_TEST(as_given.ssim < 0.2);
    BOOST_TEST(r.ssim > 0.9);
    BOOST_TEST(r.ssim_before == as_given.ssim);
    BOOST_TEST(r.mae < 0.25 * as_given.mae);
    BOOST_TEST(std::abs(r.alignment.transform.angle_degrees() + 15.0) < 0.5);
    BOOST_TEST(std::abs(r.alignment.transform.tx + 12.8) < 0.5);
    BOOST_TEST(r.alignment.moved);
    // compared over the part the moved target covers, and the SSIM over windows wholly inside it
    BOOST_TEST(r.masked_pixels == r.overlap_pixels);
    BOOST_TEST(r.masked_pixels < 128 * 128);
    BOOST_TEST(r.ssim_pixels < r.masked_pixels);
    const auto j = nlohmann::ordered_json::parse(run({"--reference", dir + "ref_1.png", "--target", dir + "rigid_15deg.png", "--json"}).out);
    BOOST_TEST(j["align"]["motion"] == "rigid");
    BOOST_TEST(std::abs(j["align"]["angle_deg"].get<double>() + 15.0) < 0.5);
    BOOST_TEST(j["align"]["shift_px"].size() == 2u);
    BOOST_TEST(j["align"]["ncc_after"].get<double>() > j["align"]["ncc_before"].get<double>());
    BOOST_TEST(j["align"]["ssim_before"].get<double>() == as_given.ssim);
    BOOST_TEST(j["ssim"].get<double>() == r.ssim);
    const auto t = run({"--reference", dir + "ref_1.png", "--target", dir + "rigid_15deg.png"});
    BOOST_TEST(t.out.find("aligned rigid: rotation -15.0") != std::string::npos, t.out);
    BOOST_TEST(nlohmann::json::parse(run({"--reference", dir + "ref_1.png", "--target", dir + "rigid_15deg.png", "--json",
                                          "--align", "none"}).out)["align"].is_null());
}

BOOST_AUTO_TEST_CASE(any_angle_finds_an_exam_turned_upside_down) {
    // the phantom slice turned by 180 degrees, pixel for pixel: from the centred start alone ECC
    // ends elsewhere; --any-angle starts from every 30 degrees and compares the exam with itself
    TempDir dir;
    const std::string reg_dir = std::string(MEDIMG_TEST_DATA_DIR) + "/register/";
    const auto ref = data::read_image(reg_dir + "ref_1.png", 1).pixels;
    const std::int64_t H = ref.size(1), W = ref.size(2);
    auto turned = Tensor<float, Cpu>::empty(Shape{1, H, W});
    for (std::int64_t y = 0; y < H; ++y)
        for (std::int64_t x = 0; x < W; ++x) turned[y * W + x] = ref[(H - 1 - y) * W + (W - 1 - x)];
    data::write_png(dir / "turned.png", turned);
    const auto plain = run({"--reference", reg_dir + "ref_1.png", "--target", dir / "turned.png", "--json"});
    const auto any = run({"--reference", reg_dir + "ref_1.png", "--target", dir / "turned.png", "--json", "--any-angle"});
    BOOST_TEST_REQUIRE(any.rc == 0, any.err);
    const auto jp = nlohmann::json::parse(plain.out), ja = nlohmann::json::parse(any.out);
    BOOST_TEST(jp["align"]["any_angle"] == false);
    BOOST_TEST(ja["align"]["any_angle"] == true);
    BOOST_TEST(std::abs(std::abs(ja["align"]["angle_deg"].get<double>()) - 180.0) < 0.01);
    BOOST_TEST(ja["ssim"].get<double>() > 0.999);
    BOOST_TEST(jp["ssim"].get<double>() < 0.99);
}

BOOST_AUTO_TEST_CASE(alignment_compares_exams_of_different_sizes) {
    // the reference cut out of a larger exam: no --resize needed, the crop is found
    TempDir dir;
    const auto big = textured(60, 70, 11);
    auto crop = Tensor<float, Cpu>::empty(Shape{1, 40, 44});
    for (std::int64_t y = 0; y < 40; ++y)
        for (std::int64_t x = 0; x < 44; ++x) crop[y * 44 + x] = big[(y + 7) * 70 + (x + 12)];
    data::write_png(dir / "big.png", big);
    data::write_png(dir / "crop.png", crop);
    auto o = opts(dir / "crop.png", dir / "big.png");
    o.align = "translation";
    const auto r = metrics::compare_images(o);
    BOOST_TEST(std::abs(r.alignment.transform.tx - 12.0) < 0.05);
    BOOST_TEST(std::abs(r.alignment.transform.ty - 7.0) < 0.05);
    BOOST_TEST(r.ssim > 0.99);
    BOOST_TEST(std::isnan(r.ssim_before));  // the sizes differ: no "before"
}

BOOST_AUTO_TEST_CASE(regions_and_the_panel_show_where_the_exams_differ) {
    // the fixture pair: the target has a bright blob centred at row 40, column 85 (make_compare_fixtures.py)
    TempDir dir;
    const auto t = run({"--reference", fixture("reference.png"), "--target", fixture("target.png"), "--align", "none", "--threshold",
                        "0.2", "--pixel-spacing", "0.5", "--panel", dir / "panel.png", "--json"});
    BOOST_TEST(t.rc == 0, t.err);
    const auto j = nlohmann::ordered_json::parse(t.out);
    BOOST_TEST(j["threshold"] == 0.2);
    BOOST_TEST(j["pixel_spacing_mm"] == 0.5);
    BOOST_TEST(j["panel"] == dir / "panel.png");
    BOOST_TEST(!j["regions"].empty());
    std::int64_t previous = INT64_MAX;
    for (const auto& g : j["regions"]) {
        BOOST_TEST(g["area_px"].get<std::int64_t>() <= previous);  // largest first
        previous = g["area_px"].get<std::int64_t>();
        BOOST_TEST(g["area_px"].get<std::int64_t>() >= 7);       // at least the window's side
        BOOST_TEST(g["area_mm2"].get<double>() == 0.25 * static_cast<double>(previous));
        BOOST_TEST(g["mean_ssim"].get<double>() < 0.2);
        const auto c = g["centroid_px"];
        const auto b = g["bbox_px"];
        BOOST_TEST((b[0] <= c[0] && c[0] <= b[2] && b[1] <= c[1] && c[1] <= b[3]));
    }
    // the panel: four tiles of the 128x112 pair enlarged 3x (to at least 256 px a side)
    const auto info = data::read_image_info(dir / "panel.png");
    BOOST_TEST(info.height > 3 * 112);
    BOOST_TEST(info.width > 4 * 3 * 128);
    check_one_line_error(run({"--reference", fixture("reference.png"), "--target", fixture("target.png"), "--threshold", "1.5"}),
                         "option --threshold needs a number in (-1, 1], got '1.5'");
    check_one_line_error(run({"--reference", fixture("reference.png"), "--target", fixture("target.png"), "--pixel-spacing", "0"}),
                         "option --pixel-spacing needs a positive number of millimetres, got '0'");
    check_one_line_error(run({"--reference", fixture("reference.png"), "--target", fixture("target.png"), "--panel", dir / "p.png",
                              "--ssim-map", dir / "p.png"}),
                         "both name");
}

BOOST_AUTO_TEST_CASE(after_alignment_the_largest_low_ssim_region_is_the_lesion) {
    // 40 phantom pairs (data::write_phantom_pairs, 64x64): a normal exam, then the same phantom with a
    // lesion turned by up to 10 degrees and shifted by up to 6% of the side, with noise of its own.
    // A hit: at least half of the largest low-SSIM region (default threshold) lies inside the
    // lesion's disc (radius 2 sigma, in the reference's frame). docs/compare.md records the figures.
    TempDir dir;
    data::write_phantom_pairs(dir / "pairs", 64, 40, 7);
    std::ifstream in(dir / "pairs/pairs.csv");
    std::string line;
    std::getline(in, line);
    int hits[2] = {0, 0}, pairs = 0;
    while (std::getline(in, line)) {
        std::stringstream ss(line);
        std::string ref, tgt, field;
        std::getline(ss, ref, ',');
        std::getline(ss, tgt, ',');
        std::vector<double> v;
        while (std::getline(ss, field, ',')) v.push_back(std::stod(field));
        const double lx = v[3], ly = v[4], radius = 2 * v[5];
        ++pairs;
        for (int aligned = 0; aligned < 2; ++aligned) {
            auto o = opts(dir / ("pairs/" + ref), dir / ("pairs/" + tgt));
            o.align = aligned ? "rigid" : "none";
            const auto r = metrics::compare_images(o);
            if (r.regions.empty()) continue;
            std::int64_t inside = 0;
            for (std::int64_t i = 0; i < r.height * r.width; ++i)
                if (r.region_labels[static_cast<std::size_t>(i)] == 1 &&
                    std::hypot(static_cast<double>(i % r.width) - lx, static_cast<double>(i / r.width) - ly) <= radius)
                    ++inside;
            hits[aligned] += 2 * inside >= r.regions[0].area ? 1 : 0;
        }
    }
    BOOST_TEST(pairs == 40);
    BOOST_TEST_MESSAGE("largest low-SSIM region on the lesion: " << hits[0] << "/40 as given, " << hits[1] << "/40 aligned");
    BOOST_TEST(hits[1] >= 28, hits[1] << "/40 aligned");  // measured 30/40 (2026-12-06)
    BOOST_TEST(hits[0] <= 8, hits[0] << "/40 as given");  // measured 5/40
}

// ---- the colour map ----------------------------------------------------------------------------
BOOST_AUTO_TEST_CASE(viridis_fit_passes_through_the_published_anchors) {
    // viridis(k / 10), k = 0..10 (matplotlib / viridisLite), the colours the fit was derived from.
    const char* anchors[11] = {"440154", "482475", "414487", "355f8d", "2a788e", "21918c",
                               "22a884", "44bf70", "7ad151", "bddf26", "fde725"};
    for (int k = 0; k <= 10; ++k) {
        const auto c = metrics::viridis(k / 10.0);
        for (int ch = 0; ch < 3; ++ch) {
            const double want = std::stoi(std::string(anchors[k] + 2 * ch, 2), nullptr, 16) / 255.0;
            BOOST_TEST(std::abs(c[ch] - want) <= kAnchorTol, "anchor " << k << " channel " << ch << ": " << c[ch] << " vs " << want);
        }
    }
}

BOOST_AUTO_TEST_CASE(viridis_lightness_rises_monotonically_and_inputs_are_clamped) {
    double prev = -1.0;
    for (int i = 0; i <= 1000; ++i) {
        const auto c = metrics::viridis(i / 1000.0);
        const double luma = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];  // Rec. 709 weights
        BOOST_TEST(luma > prev, "lightness not increasing at t = " << i / 1000.0);
        prev = luma;
        for (double v : c) BOOST_TEST((v >= 0.0 && v <= 1.0));
    }
    BOOST_TEST((metrics::viridis(-3.0) == metrics::viridis(0.0)));
    BOOST_TEST((metrics::viridis(7.0) == metrics::viridis(1.0)));
    BOOST_TEST((metrics::viridis(std::nan("")) == metrics::viridis(0.0)));
}

BOOST_AUTO_TEST_CASE(apply_viridis_maps_the_range_and_checks_arguments) {
    auto m = Tensor<double, Cpu>::from_vector(Shape{1, 4}, {-1.0, 0.0, 0.5, 2.0});
    const auto rgb = metrics::apply_viridis(m, 0.0, 1.0);  // (3, 1, 4)
    BOOST_TEST(rgb.shape() == Shape({3, 1, 4}));
    const auto lo = metrics::viridis(0.0), mid = metrics::viridis(0.5), hi = metrics::viridis(1.0);
    for (int c = 0; c < 3; ++c) {
        BOOST_TEST(rgb[c * 4 + 0] == static_cast<float>(lo[c]));
        BOOST_TEST(rgb[c * 4 + 1] == static_cast<float>(lo[c]));
        BOOST_TEST(rgb[c * 4 + 2] == static_cast<float>(mid[c]));
        BOOST_TEST(rgb[c * 4 + 3] == static_cast<float>(hi[c]));
    }
    const auto flat = metrics::apply_viridis(m, 0.3, 0.3);  // empty range: all the dark end
    for (int i = 0; i < 4; ++i) BOOST_TEST(flat[i] == static_cast<float>(lo[0]));
    BOOST_CHECK_EXCEPTION(metrics::apply_viridis(m, 1.0, 0.0), ValueError, message_contains("apply_viridis: need finite lo <= hi"));
    BOOST_CHECK_EXCEPTION(metrics::apply_viridis(Tensor<double, Cpu>::zeros(Shape{2, 2, 2}), 0.0, 1.0), ShapeError,
                          message_contains("apply_viridis: expected a (H, W)"));
}

BOOST_AUTO_TEST_SUITE_END()
