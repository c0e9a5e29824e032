// SPDX-License-Identifier: MIT
// Tests for io/checkpoint.hpp: round trips (weights, integer counters, optimizer state,
// metadata), refusal of another architecture / class count / truncated file with one clear line,
// atomic writes, and pretrained loading with the 3 -> 1 channel conv1 adaptation and fc reset.
#include <boost/test/unit_test.hpp>

#include <tuple>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <tuple>

#include "helpers.hpp"
#include "medimg/io/checkpoint.hpp"
#include "medimg/medimg.hpp"
#include "medimg/nn/nn.hpp"

using namespace medimg;
using medimg::test::message_contains;
namespace fs = std::filesystem;

namespace {
struct TempDir {
    fs::path path;
    TempDir() : path(fs::temp_directory_path() / ("medimg-ckpt-" + std::to_string(Rng(std::random_device{}()).next_u64()))) {
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string operator/(const std::string& f) const { return (path / f).string(); }
};
io::CheckpointMeta meta() {
    io::CheckpointMeta m;
    m.architecture = "resnet18";
    m.classes = {"normal", "lesao"};
    m.in_channels = 1;
    m.image_size = 64;
    m.mean = {0.5};
    m.std = {0.25};
    m.epoch = 7;
    m.metrics = {{"val_acc", 0.875}, {"val_loss", 0.31}};
    m.config = "model: resnet18\n";
    return m;
}
}  // namespace

BOOST_AUTO_TEST_SUITE(checkpoint)

BOOST_AUTO_TEST_CASE(round_trip_restores_weights_counters_optimizer_state_and_metadata) {
    TempDir dir;
    nn::ResNet18<float> a(nn::ResNetOptions{2, 1, 1});
    a.train();
    {  // one forward so the running stats and num_batches_tracked move
        autograd::NoGrad g;
        a(autograd::Var<float>(Tensor<float>::full({2, 1, 32, 32}, 0.5f)));
    }
    std::map<std::string, Tensor<float>> opt{{"fc.weight.exp_avg", Tensor<float>::full({2, 512}, 0.25f)}};
    io::save_checkpoint(dir / "last.safetensors", a, meta(), opt);
    BOOST_TEST(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator{}) == 1);  // no temp file left

    const auto c = io::Checkpoint::load(dir / "last.safetensors");
    BOOST_TEST(c.meta().architecture == "resnet18");
    BOOST_TEST((c.meta().classes == std::vector<std::string>{"normal", "lesao"}));
    BOOST_TEST(c.meta().epoch == 7);
    BOOST_TEST(c.meta().metrics.at("val_acc") == 0.875);
    BOOST_TEST(c.meta().std[0] == 0.25);
    BOOST_TEST(c.meta().config == "model: resnet18\n");
    BOOST_TEST((c.file().dtype("bn1.num_batches_tracked") == io::DType::I64));
    BOOST_TEST(c.optimizer_state<float>().at("fc.weight.exp_avg")[5] == 0.25f);

    nn::ResNet18<float> b(nn::ResNetOptions{2, 1, 2});
    c.load_into(b, "resnet18");
    auto sa = a.state_dict(), sb = b.state_dict();
    for (std::size_t i = 0; i < sa.size(); ++i) MEDIMG_CHECK_CLOSE_TENSORS(sb[i].value, sa[i].value, 0.0, 0.0);
}

BOOST_AUTO_TEST_CASE(refuses_another_architecture_class_count_or_a_truncated_file) {
    TempDir dir;
    nn::ResNet18<float> a(nn::ResNetOptions{2, 1});
    io::save_checkpoint(dir / "m.safetensors", a, meta());
    const auto c = io::Checkpoint::load(dir / "m.safetensors");
    nn::ResNet34<float> deeper(nn::ResNetOptions{2, 1});
    BOOST_CHECK_EXCEPTION(c.load_into(deeper, "resnet34"), IoError, message_contains("holds a resnet18 but the model is a resnet34"));
    BOOST_CHECK_EXCEPTION(c.load_into(deeper), IoError, message_contains("missing key"));
    nn::ResNet18<float> three(nn::ResNetOptions{3, 1});
    BOOST_CHECK_EXCEPTION(c.load_into(three), IoError, message_contains("'fc.weight' is [2,512] in the file but [3,512] in the model (another class count?)"));

    const auto size = fs::file_size(dir / "m.safetensors");
    fs::copy_file(dir / "m.safetensors", dir / "cut.safetensors");
    fs::resize_file(dir / "cut.safetensors", size / 2);
    BOOST_CHECK_EXCEPTION(io::Checkpoint::load(dir / "cut.safetensors"), IoError, message_contains("cut.safetensors"));

    io::SafetensorsWriter w;  // a safetensors file that is not a checkpoint
    w.add("x", Tensor<float>::zeros({1}));
    w.write(dir / "plain.safetensors");
    BOOST_CHECK_EXCEPTION(io::Checkpoint::load(dir / "plain.safetensors"), IoError, message_contains("metadata key 'format' is missing"));
}

// #22 item 3: a damaged metadata value was read with std::stoll / nlohmann and reported as
// "malformed metadata (stoll)" or "[json.exception...]"; each is now one line naming the key.
BOOST_AUTO_TEST_CASE(damaged_metadata_values_are_refused_naming_the_key_and_the_file) {
    TempDir dir;
    const std::map<std::string, std::string> good{{"format", "medimg-checkpoint"}, {"architecture", "resnet18"},
                                                  {"classes", "[\"normal\",\"lesao\"]"}, {"in_channels", "1"},
                                                  {"image_size", "64"}, {"normalize_mean", "[0.5]"}, {"normalize_std", "[0.25]"},
                                                  {"epoch", "7"}, {"metrics", "{\"val_acc\":0.5}"}};
    auto load_with = [&](const std::string& key, const std::string& value) {
        io::SafetensorsWriter w;
        w.add("x", Tensor<float>::zeros({1}));
        for (const auto& [k, v] : good) w.set_metadata(k, k == key ? value : v);
        w.write(dir / "m.safetensors");
        return io::Checkpoint::load(dir / "m.safetensors");
    };
    BOOST_TEST(load_with("", "").meta().image_size == 64);
    const std::string where = "checkpoint: " + (dir / "m.safetensors") + ": metadata ";
    for (const char* bad : {"abc", "", "12abc", "1e400", "99999999999999999999", "3.5", " 3"})
        BOOST_TEST_CONTEXT(bad) {
            BOOST_CHECK_EXCEPTION(load_with("in_channels", bad), IoError,
                                  message_contains(where + "'in_channels' must be a whole number, got '" + bad + "'"));
        }
    BOOST_CHECK_EXCEPTION(load_with("epoch", std::string(200, '9')), IoError,
                          message_contains("'epoch' must be a whole number, got '" + std::string(60, '9') + "...'"));
    BOOST_CHECK_EXCEPTION(load_with("classes", "[\"normal\","), IoError,
                          message_contains(where + "'classes' must be a JSON list of class names, got '[\"normal\",'"));
    BOOST_CHECK_EXCEPTION(load_with("classes", "[1, 2]"), IoError, message_contains("'classes' must be a JSON list of class names"));
    BOOST_CHECK_EXCEPTION(load_with("normalize_std", "{}"), IoError, message_contains("'normalize_std' must be a JSON list of numbers"));
    BOOST_CHECK_EXCEPTION(load_with("metrics", "[1]"), IoError, message_contains("'metrics' must be a JSON object of numbers, got '[1]'"));
}

// #22 item 2: metadata values flow into allocation sizes (the head's class count, the resize) and
// parsers; each is range-checked at load as the YAML config checks the same setting, and refused
// in one line naming the key and the file.
BOOST_AUTO_TEST_CASE(metadata_values_outside_the_config_ranges_are_refused_naming_the_key_and_the_file) {
    TempDir dir;
    const std::map<std::string, std::string> good{{"format", "medimg-checkpoint"}, {"format_version", "1"},
                                                  {"architecture", "resnet18"}, {"classes", "[\"normal\",\"lesao\"]"},
                                                  {"in_channels", "1"}, {"image_size", "64"}, {"normalize_mean", "[0.5]"},
                                                  {"normalize_std", "[0.25]"}, {"epoch", "7"}, {"metrics", "{\"val_acc\":0.5}"},
                                                  {"read_channels", "1"}, {"resize", "73"}, {"window", "file"},
                                                  {"volume_axis", "axial"}, {"volume_slices", "all"}, {"temperature", "1.5"}};
    auto load_with = [&](const std::string& key, const std::string& value, std::int64_t head_outputs = 2) {
        io::SafetensorsWriter w;
        w.add("fc.weight", Tensor<float>::zeros({head_outputs, 4}));
        for (const auto& [k, v] : good) w.set_metadata(k, k == key ? value : v);
        if (!good.count(key) && !key.empty()) w.set_metadata(key, value);
        w.write(dir / "m.safetensors");
        return io::Checkpoint::load(dir / "m.safetensors");
    };
    BOOST_TEST(load_with("", "").meta().extra.at("resize") == "73");
    BOOST_TEST(load_with("resize", "none").meta().extra.at("resize") == "none");
    const std::string where = "checkpoint: " + (dir / "m.safetensors") + ": metadata ";
    const std::vector<std::tuple<std::string, std::string, std::string>> cases{
        {"architecture", "resnet 18;", "'architecture' must be a model name of 1 to 64 letters, digits, '_', '-' or '.' (one of "
                                       "resnet18, resnet34, resnet50, densenet121, efficientnet_b0, vit_tiny_patch16_224, "
                                       "vit_small_patch16_224, vit_b_16 for the programs); got 'resnet 18;'"},
        {"classes", "[\"only\"]", "'classes' must have at least 2 entries, got 1"},
        {"classes", "[\"a\",\"\"]", "'classes' entries must be non-empty names, got '' at position 1"},
        {"classes", "[\"a\",\"a\"]", "'classes' lists 'a' twice"},
        {"classes", "[\"a\",\"b\\nc\"]", "'classes' entry 1 contains the control character 10"},
        {"classes", "[\"a\",\"b\",\"c\"]", "'classes' lists 3 classes but the head 'fc.weight' has 2 outputs [2,4]"},
        {"in_channels", "2", "'in_channels' must be 1 or 3, got 2"},
        {"in_channels", "1000000000", "'in_channels' must be 1 or 3, got 1000000000"},
        {"image_size", "31", "'image_size' must be >= 32 and <= 4096, got 31"},
        {"image_size", "100000", "'image_size' must be >= 32 and <= 4096, got 100000"},
        {"normalize_mean", "[0.5, 0.5]", "'normalize_mean' has 2 values for 1 channels"},
        {"normalize_mean", "[1e300]", "'normalize_mean' must be >= -1e+06 and <= 1e+06, got 1e+300"},
        {"normalize_std", "[0]", "'normalize_std' must be > 0, got 0"},
        {"normalize_std", "[-1]", "'normalize_std' must be > 0, got -1"},
        {"epoch", "-1", "'epoch' must be >= 0 and <= 100000, got -1"},
        {"format_version", "2", "'format_version' must be 1 (this medimg's checkpoint format), got '2'"},
        {"read_channels", "2", "'read_channels' must be 1 or 3, got 2"},
        {"read_channels", "abc", "'read_channels' must be an integer, got 'abc'"},
        {"resize", "100000000", "'resize' must be >= 32 and <= 8192, got 1e+08"},
        {"resize", "48", "'resize' (48) must be >= image_size (64)"},
        {"resize", "0x100", "'resize' must be an integer, got '0x100'"},
        {"temperature", "-1", "'temperature' must be a number > 0, got '-1'"},
        {"temperature", "nan", "'temperature' must be a number > 0, got 'nan'"},
        {"window", "liver", "'window' must be file, minmax"},
        {"volume_axis", "up", "'data.volume_axis' must be axial, coronal or sagittal; got 'up'"},
        {"volume_slices", "every 0", "'data.volume_slices' must be all, middle, every N or range [a, b]; got 'every 0'"},
    };
    for (const auto& [key, value, message] : cases)
        BOOST_TEST_CONTEXT(key << " = " << value) {
            BOOST_CHECK_EXCEPTION(load_with(key, value), IoError, [&](const IoError& e) {
                const std::string m = e.what();
                const bool ok = m.find(where + message) != std::string::npos && m.find('\n') == std::string::npos;
                if (!ok) BOOST_TEST_MESSAGE("message: " << m);
                return ok;
            });
        }
    // The head's size is what the classes are checked against, whichever layout names it.
    BOOST_CHECK_EXCEPTION(load_with("", "", 1000), IoError,
                          message_contains("'classes' lists 2 classes but the head 'fc.weight' has 1000 outputs"));
}

BOOST_AUTO_TEST_CASE(weights_holding_nan_or_infinity_are_refused_naming_the_tensor) {
    TempDir dir;
    for (const float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity()}) {
        nn::ResNet18<float> a(nn::ResNetOptions{2, 1});
        a.parameter("layer3.1.bn2.weight").value()[5] = bad;
        io::save_checkpoint(dir / "bad.safetensors", a, meta());
        const auto c = io::Checkpoint::load(dir / "bad.safetensors");
        nn::ResNet18<float> b(nn::ResNetOptions{2, 1});
        BOOST_CHECK_EXCEPTION(c.load_into(b), IoError,
                              message_contains("bad.safetensors: 'layer3.1.bn2.weight' holds " +
                                               std::string(std::isnan(bad) ? "nan" : bad > 0 ? "inf" : "-inf") +
                                               " at element 5 of [256]; the weights are damaged or training diverged"));
        BOOST_CHECK_EXCEPTION(io::load_pretrained(b, dir / "bad.safetensors"), IoError,
                              message_contains("pretrained: " + (dir / "bad.safetensors") + ": 'layer3.1.bn2.weight' holds"));
    }
}

BOOST_AUTO_TEST_CASE(a_failed_write_leaves_the_existing_checkpoint_intact) {
    TempDir dir;
    nn::ResNet18<float> a(nn::ResNetOptions{2, 1});
    BOOST_CHECK_THROW(io::save_checkpoint(dir / "no/such/dir/best.safetensors", a, meta()), IoError);
    io::save_checkpoint(dir / "best.safetensors", a, meta());
    const auto before = fs::file_size(dir / "best.safetensors");
    fs::create_directory(dir / "best-dir.safetensors");  // a directory in the way
    BOOST_CHECK_THROW(io::save_checkpoint(dir / "best-dir.safetensors", a, meta()), IoError);
    BOOST_TEST(fs::file_size(dir / "best.safetensors") == before);
    BOOST_TEST(std::distance(fs::directory_iterator(dir.path), fs::directory_iterator{}) == 2);
}

BOOST_AUTO_TEST_CASE(pretrained_rgb_weights_adapt_to_one_channel_and_a_new_head) {
    TempDir dir;
    // A torchvision-style file: ResNet18, 3 channels, 1000 classes, no metadata, no counters.
    nn::ResNet18<float> imagenet(nn::ResNetOptions{1000, 3, 5});
    io::SafetensorsWriter w;
    for (const auto& e : imagenet.state_dict())
        if (e.name.find("num_batches_tracked") == std::string::npos) w.add(e.name, e.value);
    w.write(dir / "resnet18-imagenet.safetensors");

    nn::ResNet18<float> gray(nn::ResNetOptions{2, 1, 6});
    const auto fc_before = gray.fc().weight().value().clone();
    const auto r = io::load_pretrained(gray, dir / "resnet18-imagenet.safetensors");
    BOOST_TEST(r.adapted.size() == 1u);
    BOOST_TEST(r.reinitialised.size() == 2u);  // fc.weight, fc.bias
    BOOST_TEST(r.ignored.empty());
    const auto& w3 = imagenet.conv1().weight().value();
    const auto& w1 = gray.conv1().weight().value();
    BOOST_TEST(w1.shape() == (Shape{64, 1, 7, 7}));
    BOOST_TEST(w1[0] == w3[0] + w3[49] + w3[98], boost::test_tools::tolerance(1e-6f));
    MEDIMG_CHECK_CLOSE_TENSORS(gray.fc().weight().value(), fc_before, 0.0, 0.0);
    // A gray image x through the adapted model equals the RGB image (x, x, x) through the original.
    imagenet.eval();
    gray.eval();
    autograd::NoGrad g;
    auto x1 = Tensor<float>::empty({1, 1, 32, 32});
    Rng(3).fill_uniform(x1, 0, 1);
    auto x3 = Tensor<float>::empty({1, 3, 32, 32});
    for (int c = 0; c < 3; ++c)
        for (int i = 0; i < 1024; ++i) x3[c * 1024 + i] = x1[i];
    auto stem = [](auto& m, const Tensor<float>& x) { return m.conv1()(autograd::Var<float>(x)).value(); };
    MEDIMG_CHECK_CLOSE_TENSORS(stem(gray, x1), stem(imagenet, x3), test::kFloatRtol, test::kFloatAtol);

    nn::ResNet34<float> deeper(nn::ResNetOptions{2, 3});
    BOOST_CHECK_EXCEPTION(io::load_pretrained(deeper, dir / "resnet18-imagenet.safetensors"), IoError,
                          message_contains("missing 'layer1.2.conv1.weight'"));
}

BOOST_AUTO_TEST_SUITE_END()
