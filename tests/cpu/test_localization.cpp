// SPDX-License-Identifier: MIT
// Tests for explain/localization.hpp, and the question it answers for the demo: do the maps point
// at the lesion? The masks and scores on hand-made maps, then a ResNet18 trained here on phantom
// slices (the demo's recipe on a smaller set) is explained on every correctly classified lesion
// slice of its test split; the pointing-game rate of each method (at layer3: layer4 of a 64 px
// input is 2x2) must be at least twice that of a random point. The figures, with the image-centre
// baseline, are printed (ctest -V) and recorded in docs/explain.md.
#include <boost/test/unit_test.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "helpers.hpp"
#include "medimg/medimg.hpp"
#include "medimg/train/run.hpp"

using namespace medimg;
using medimg::test::message_contains;
namespace fs = std::filesystem;

BOOST_AUTO_TEST_SUITE(localization)

BOOST_AUTO_TEST_CASE(disc_masks_pointing_hits_and_energy_on_hand_made_maps) {
    const auto m = explain::disc_mask(5, 6, 2.0, 1.0, 1.0);  // (2, 1) and its 4 neighbours
    BOOST_TEST(m.to_vector() == (std::vector<float>{0, 0, 1, 0, 0, 0,  //
                                                    0, 1, 1, 1, 0, 0,  //
                                                    0, 0, 1, 0, 0, 0,  //
                                                    0, 0, 0, 0, 0, 0,  //
                                                    0, 0, 0, 0, 0, 0}),
               boost::test_tools::per_element());
    auto map = Tensor<float>::zeros({5, 6});
    map[1 * 6 + 3] = 1.f;  // inside
    map[4 * 6 + 5] = 0.5f;
    BOOST_TEST(explain::pointing_hit(map, m));
    BOOST_TEST(explain::energy_inside(map, m) == 1.0 / 1.5, boost::test_tools::tolerance(1e-12));
    map[4 * 6 + 5] = 1.f;  // two maxima: their centroid (row 2.5 -> 3, col 4) is outside
    BOOST_TEST(!explain::pointing_hit(map, m));
    BOOST_TEST(explain::energy_inside(Tensor<float>::zeros({5, 6}), m) == 0.0);
    BOOST_CHECK_EXCEPTION(explain::pointing_hit(Tensor<float>::zeros({5, 5}), m), ShapeError,
                          message_contains("explain::pointing_hit: need a non-empty (H, W) map and a mask of the same shape"));
    map[0] = -1.f;
    BOOST_CHECK_EXCEPTION(explain::energy_inside(map, m), ValueError, message_contains("must be non-negative"));
}

BOOST_AUTO_TEST_CASE(the_phantom_writer_records_every_lesion) {
    const fs::path root = fs::temp_directory_path() / ("medimg-lesions-" + std::to_string(Rng(std::random_device{}()).next_u64()));
    const std::int64_t counts[3] = {4, 2, 6};
    data::write_phantom_dataset(root.string(), 48, counts, 1);
    std::ifstream in(root / "lesions.csv");
    std::vector<std::string> lines;
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    fs::remove_all(root);
    BOOST_REQUIRE(lines.size() == 1u + 2 + 1 + 3);  // header + half of each split
    BOOST_TEST(lines[0] == "path,cx,cy,sigma");
    BOOST_TEST(lines[1].rfind("train/lesao/0000.png,", 0) == 0u);
    BOOST_TEST(lines.back().rfind("test/lesao/0002.png,", 0) == 0u);
    // The lesion drawn is where the row says: re-draw slice 1 of the same stream and compare.
    Rng rng(1);
    data::phantom_slice(rng, 48, false);
    data::PhantomLesion where;
    data::phantom_slice(rng, 48, true, &where);
    char want[96];
    std::snprintf(want, sizeof want, "train/lesao/0000.png,%.4f,%.4f,%.4f", where.cx, where.cy, where.sigma);
    BOOST_TEST(lines[1] == want);
    BOOST_TEST(where.sigma >= 0.06 * 48);
    BOOST_TEST(where.sigma <= 0.12 * 48);
}

namespace {
/// One method's tally over the lesion slices.
struct Tally {
    std::string name;
    int hits = 0;
    double energy = 0;
};
}  // namespace

BOOST_AUTO_TEST_CASE(grad_cam_grad_cam_pp_and_occlusion_point_at_the_lesions_of_a_trained_model) {
    const fs::path root = fs::temp_directory_path() / ("medimg-pointing-" + std::to_string(Rng(std::random_device{}()).next_u64()));
    struct Cleanup {
        fs::path p;
        ~Cleanup() { fs::remove_all(p); }
    } cleanup{root};
    const std::int64_t side = 64, counts[3] = {400, 100, 100};
    data::write_phantom_dataset((root / "data").string(), static_cast<int>(side), counts, 7);
    const std::string d = (root / "data").string();
    const auto config = io::parse_config(
        "data: {classes: [normal, lesao], image_size: 64, resize: 64, channels: 1, mean: [0.3], std: [0.25],"
        " augment: {random_resized_crop: false, hflip: true}}\n"
        "model: {name: resnet18}\n"
        "train: {batch_size: 32, epochs: 4, optimizer: adam, lr: 0.001, scheduler: cosine, seed: 42}\n",
        "pointing.yaml",
        {"data.train=" + d + "/train", "data.val=" + d + "/val", "data.test=" + d + "/test",
         "output.dir=" + (root / "out").string(), "runtime.workers=2"});
    std::ostringstream log;
    train::run_training<float, Cpu>(config, false, log);
    BOOST_TEST_MESSAGE(log.str());

    const auto ck = io::Checkpoint::load((root / "out" / "checkpoints" / "best.safetensors").string());
    const auto pre = train::Preprocessing::from_meta(ck.meta());
    auto model = nn::make_resnet<float, Cpu>("resnet18", nn::ResNetOptions{2, 1});
    ck.load_into(*model, "resnet18");
    model->eval();

    // Two masks per lesion: the blob's extent (disc of 2 sigma) and the same dilated by Zhang et
    // al.'s 15 px of tolerance at 224 px, scaled to this image size (the pointing game's mask).
    const double tolerance = 15.0 * static_cast<double>(side) / 224.0;
    std::vector<Tally> tally{{"gradcam layer4"},   {"gradcam layer3"},   {"gradcam layer2"},
                            {"gradcam++ layer4"}, {"gradcam++ layer3"}, {"gradcam++ layer2"}, {"occlusion"}};
    std::vector<int> strict_hits(tally.size(), 0);
    int lesions = 0, correct = 0, centre_hits = 0, centre_strict = 0;
    double random_rate = 0, random_strict = 0;
    std::ifstream csv(root / "data" / "lesions.csv");
    std::string line;
    std::getline(csv, line);  // header
    while (std::getline(csv, line)) {
        if (line.rfind("test/", 0) != 0) continue;
        ++lesions;
        std::istringstream row(line);
        std::string path, f;
        std::getline(row, path, ',');
        double v[3];
        for (double& x : v) {
            std::getline(row, f, ',');
            x = std::stod(f);
        }
        const auto img = pre.load_eval((root / "data" / path).string());  // (1, 64, 64)
        const auto x = img.reshape({1, 1, side, side});
        {
            autograd::NoGrad ng;
            const auto logits = (*model)(autograd::Var<float>(x)).value();
            if (!(logits[1] > logits[0])) continue;  // explain only the correctly classified lesions
        }
        ++correct;
        const auto mask = explain::disc_mask(side, side, v[0], v[1], 2.0 * v[2] + tolerance);
        const auto strict = explain::disc_mask(side, side, v[0], v[1], 2.0 * v[2]);
        const auto area = [&](const Tensor<float>& m) {
            double a = 0;
            for (float b : m.to_vector()) a += b;
            return a / static_cast<double>(side * side);
        };
        random_rate += area(mask);
        random_strict += area(strict);
        const std::int64_t centre = (side / 2) * side + side / 2;
        centre_hits += mask[centre] > 0.5f;
        centre_strict += strict[centre] > 0.5f;
        std::vector<explain::Explanation> maps;
        for (const auto method : {explain::CamMethod::grad_cam, explain::CamMethod::grad_cam_pp})
            for (const char* layer : {"layer4", "layer3", "layer2"}) {
                explain::CamOptions o;
                o.method = method;
                o.layer = layer;
                o.classes = {1};
                maps.push_back(explain::grad_cam(*model, x, o));
            }
        explain::OcclusionOptions oo;  // medimg-predict's defaults at 64 px: patch 64 / 7 = 9, stride 4
        oo.patch = side / 7;
        oo.stride = oo.patch / 2;
        oo.classes = {1};
        maps.push_back(explain::occlusion(*model, x, oo));
        for (std::size_t k = 0; k < maps.size(); ++k) {
            const auto heat = maps[k].heatmap.reshape({side, side});
            tally[k].hits += explain::pointing_hit(heat, mask);
            strict_hits[k] += explain::pointing_hit(heat, strict);
            tally[k].energy += explain::energy_inside(heat, strict);
        }
    }
    BOOST_REQUIRE_MESSAGE(correct >= 30, "only " << correct << " of " << lesions << " lesion slices classified correctly");
    random_rate /= correct;
    random_strict /= correct;
    BOOST_TEST_MESSAGE("lesion slices in the test split: " << lesions << ", correctly classified: " << correct);
    BOOST_TEST_MESSAGE("baselines (dilated mask 2 sigma + " << tolerance << " px / strict mask 2 sigma): a uniformly random point "
                       << random_rate << " / " << random_strict << ", the image centre "
                       << static_cast<double>(centre_hits) / correct << " / " << static_cast<double>(centre_strict) / correct
                       << "; energy inside the strict mask of a uniform map " << random_strict);
    for (std::size_t k = 0; k < tally.size(); ++k) {
        const auto& t = tally[k];
        const double rate = static_cast<double>(t.hits) / correct;
        BOOST_TEST_MESSAGE(t.name << ": pointing game (dilated) " << t.hits << "/" << correct << " = " << rate << ", strict "
                                  << strict_hits[k] << "/" << correct << " = " << static_cast<double>(strict_hits[k]) / correct
                                  << ", mean energy inside the strict mask " << t.energy / correct);
        // layer4 of a 64 px input is a 2x2 map: it cannot point anywhere finer than a quadrant, and
        // layer2 (8x8) spreads its mass more thinly than layer3: both are reported, not held to the
        // bar (docs/explain.md; medimg-predict uses layer3 at this size).
        if (t.name.find("layer3") == std::string::npos && t.name != "occlusion") continue;
        BOOST_TEST_CONTEXT(t.name) {
            BOOST_TEST(rate >= 2.0 * random_rate);           // at least twice the rate of a random point
            BOOST_TEST(t.energy / correct >= 1.5 * random_strict);  // and more mass on the lesion than a flat map
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
