// SPDX-License-Identifier: MIT
// Tests for io/config.hpp: the shipped default config, overrides, the YAML round trip, and one
// clear ConfigError for each kind of bad input (unknown key, wrong type, out of range, bad list,
// bad YAML, missing file, cross-field mismatch).
#include <boost/test/unit_test.hpp>

#include "helpers.hpp"
#include "medimg/io/config.hpp"

using namespace medimg;
using medimg::test::message_contains;

namespace {
std::string default_config() { return std::string(MEDIMG_TEST_DATA_DIR) + "/../../configs/default.yaml"; }
void expect_error(const std::string& yaml, const std::string& fragment, const std::vector<std::string>& sets = {}) {
    BOOST_CHECK_EXCEPTION(io::parse_config(yaml, "x.yaml", sets), ConfigError, message_contains(fragment));
}
}  // namespace

BOOST_AUTO_TEST_SUITE(config)

BOOST_AUTO_TEST_CASE(the_shipped_default_config_loads_with_the_documented_values) {
    const auto c = io::load_config(default_config());
    BOOST_TEST(c.model.name == "resnet18");
    BOOST_TEST((c.data.classes == std::vector<std::string>{"normal", "lesao"}));
    BOOST_TEST(c.data.image_size == 224);
    BOOST_TEST(c.train.lr == 1e-3);
    BOOST_TEST(c.train.betas[1] == 0.999);
    BOOST_TEST(c.runtime.device == "cpu");
    BOOST_TEST(c.runtime.precision == "fp32");
    BOOST_TEST(c.output_dir == "artifacts");
}

BOOST_AUTO_TEST_CASE(a_key_given_twice_is_refused_naming_it_and_both_lines) {
    expect_error("train:\n  lr: 0.1\n  epochs: 3\n  lr: 0.01\n", "config: x.yaml: key 'train.lr' appears twice (lines 2 and 4); YAML requires unique keys");
    expect_error("train: {lr: 0.1}\ndata: {channels: 1}\ntrain: {epochs: 2}\n", "key 'train' appears twice (lines 1 and 3)");
    expect_error("data:\n  augment: {hflip: true, hflip: false}\n", "key 'data.augment.hflip' appears twice (lines 2 and 2)");
    BOOST_CHECK_NO_THROW(io::parse_config("train: {lr: 0.1}\ndata: {train: a, val: a}\n", "x.yaml"));  // equal values, other keys
}

BOOST_AUTO_TEST_CASE(overrides_apply_and_are_validated) {
    const auto c = io::load_config(default_config(), {"train.lr=0.01", "data.classes=[a, b, c]", "train.class_weights=[1, 2, 3]",
                                                      "data.channels=1", "data.mean=[0.5]", "data.std=[0.25]"});
    BOOST_TEST(c.train.lr == 0.01);
    BOOST_TEST(c.data.classes.size() == 3u);
    BOOST_TEST(c.train.class_weight_values[2] == 3.0);
    BOOST_TEST(c.data.mean.size() == 1u);
    BOOST_CHECK_EXCEPTION(io::load_config(default_config(), {"train.lerning_rate=1"}), ConfigError,
                          message_contains("config: --set: unknown key 'train.lerning_rate'"));
    BOOST_CHECK_EXCEPTION(io::load_config(default_config(), {"train.lr=-0.1"}), ConfigError,
                          message_contains("config: --set: 'train.lr' must be > 0, got -0.1"));
    BOOST_CHECK_EXCEPTION(io::load_config(default_config(), {"train.lr"}), ConfigError, message_contains("expected key=value"));
}

BOOST_AUTO_TEST_CASE(to_yaml_round_trips) {
    auto c = io::parse_config("train: {optimizer: sgd, lr: 0.05, class_weights: [2, 1]}\ndata: {channels: 1, mean: [0.4], std: [0.2]}",
                              "x.yaml");
    const auto back = io::parse_config(io::to_yaml(c), "round-trip");
    BOOST_TEST(back.train.optimizer == "sgd");
    BOOST_TEST(back.train.lr == 0.05);
    BOOST_TEST(back.train.class_weights == "list");
    BOOST_TEST(back.train.class_weight_values[0] == 2.0);
    BOOST_TEST(back.data.channels == 1);
    BOOST_TEST(io::to_yaml(back) == io::to_yaml(c));
    const auto gpu = io::parse_config("runtime: {device: auto, precision: fp16}", "y.yaml");
    BOOST_TEST(io::parse_config(io::to_yaml(gpu), "round-trip").runtime.precision == "fp16");
}

BOOST_AUTO_TEST_CASE(words_for_none_and_default_read_and_round_trip) {
    const auto c = io::parse_config("data: {image_size: 64, resize: none}\nmodel: {name: efficientnet_b0, dropout: 0, "
                                    "stochastic_depth: 0.1, head_init: linear}", "x.yaml");
    BOOST_TEST(c.data.resize == io::DataConfig::no_resize);
    BOOST_TEST(c.model.dropout.value_or(-1) == 0.0);
    BOOST_TEST(c.model.stochastic_depth.value_or(-1) == 0.1);
    BOOST_TEST(c.model.head_init == "linear");
    const std::string dumped = io::to_yaml(c);
    BOOST_TEST(dumped.find("resize: none") != std::string::npos, dumped);
    const auto back = io::parse_config(dumped, "round-trip");
    BOOST_TEST(back.data.resize == io::DataConfig::no_resize);
    BOOST_TEST(back.model.stochastic_depth.value_or(-1) == 0.1);
    BOOST_TEST(io::to_yaml(back) == dumped);
    // the defaults: the architecture's own rates, written back as the word
    const auto d = io::parse_config("model: {name: efficientnet_b0}", "d.yaml");
    BOOST_TEST(!d.model.dropout.has_value());
    BOOST_TEST(d.model.head_init == "torchvision");
    BOOST_TEST(io::to_yaml(d).find("dropout: default") != std::string::npos);
    BOOST_TEST(!io::parse_config(io::to_yaml(d), "round-trip").model.dropout.has_value());
    BOOST_TEST(io::load_config(default_config(), {"model.name=efficientnet_b0", "model.dropout=0.3", "model.dropout=default"})
                   .model.dropout.has_value() == false);
}

BOOST_AUTO_TEST_CASE(each_bad_input_gives_one_clear_error) {
    expect_error("trian: {lr: 1}", "config: x.yaml: unknown key 'trian' (did you mean 'train'");
    expect_error("train: {lerning_rate: 1}", "unknown key 'train.lerning_rate'");
    expect_error("train: {lr: abc}", "config: x.yaml: 'train.lr' must be a number, got 'abc'");
    expect_error("train: {lr: -0.5}", "'train.lr' must be > 0, got -0.5");
    expect_error("train: {epochs: 2.5}", "'train.epochs' must be an integer, got '2.5'");
    expect_error("train: {epochs: 0}", "'train.epochs' must be >= 1 and <= 100000, got 0");
    expect_error("train: {optimizer: rmsprop}", "'train.optimizer' must be one of sgd, adam, adamw; got 'rmsprop'");
    expect_error("train: {nesterov: maybe}", "'train.nesterov' must be true or false, got 'maybe'");
    expect_error("train: {betas: [0.9]}", "'train.betas' must have 2 values, got 1");
    expect_error("train: 5", "'train' must be a section");
    expect_error("data: {classes: [normal]}", "'data.classes' must have at least 2 entries, got 1");
    expect_error("data: {classes: [a, a]}", "'data.classes' lists 'a' twice");
    expect_error("data: {std: [0.2, 0, 0.2]}", "'data.std' must be > 0, got 0");
    expect_error("data: {channels: 1}", "'data.mean' has 3 values for 1 channels");
    expect_error("data: {resize: 100}", "'data.resize' (100) must be >= data.image_size (224)");
    expect_error("data: {resize: never}", "'data.resize' must be none or an integer, got 'never'");
    expect_error("data: {resize: [1]}", "'data.resize' must be none or an integer");
    expect_error("data: {resize: 8}", "'data.resize' must be >= 32 and <= 8192, got 8");
    expect_error("model: {name: efficientnet_b0, dropout: 1}", "'model.dropout' must be >= 0 and < 1, got 1");
    expect_error("model: {name: efficientnet_b0, stochastic_depth: some}", "'model.stochastic_depth' must be default or a number, got 'some'");
    expect_error("model: {dropout: 0.2}",
                 "config: x.yaml: 'model.dropout' is set but resnet18 has none (torchvision's resnet18 has no such layer; efficientnet_b0 has)");
    expect_error("model: {name: densenet121, stochastic_depth: 0.1}", "'model.stochastic_depth' is set but densenet121 has none");
    expect_error("model: {head_init: zeros}", "'model.head_init' must be one of torchvision, linear; got 'zeros'");
    expect_error("train: {class_weights: [1, 2, 3]}", "'train.class_weights' has 3 values for 2 classes");
    expect_error("train: {class_weights: sometimes}", "'train.class_weights' must be none, auto or a list of numbers");
    expect_error("train: {lr: [0.1}", "config: x.yaml: not valid YAML (line 1");
    expect_error("- a\n- b", "the top level must be a map");
    expect_error("runtime: {precision: fp8}", "'runtime.precision' must be one of fp32, bf16, fp16; got 'fp8'");
    expect_error("runtime: {precision: bf16}",
                 "config: x.yaml: 'runtime.precision' is bf16, which needs runtime.device cuda or auto (the CPU backend computes in fp32)");
    BOOST_CHECK_EXCEPTION(io::load_config("no/such/config.yaml"), ConfigError, message_contains("config: cannot open 'no/such/config.yaml'"));
}

BOOST_AUTO_TEST_CASE(utf8_validation_follows_rfc_3629) {
    for (const char* ok : {"", "lesao", "les\xc3\xa3o", "\xe2\x82\xac", "\xf0\x9f\xa9\xbb", "\xf4\x8f\xbf\xbf"})
        BOOST_TEST(io::valid_utf8(ok), ok);
    // lone continuation, overlong '/', surrogate U+D800, above U+10FFFF, truncated, Latin-1 byte, 0xFF
    for (const char* bad : {"\x80", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "les\xe3o", "\xff"})
        BOOST_TEST(!io::valid_utf8(bad));
    BOOST_TEST(io::escape_invalid_utf8("a\xff b\xc3\xa3\xe2\x82") == "a\\xff b\xc3\xa3\\xe2\\x82");
    BOOST_TEST(io::escape_invalid_utf8("plain/path") == "plain/path");
}

BOOST_AUTO_TEST_CASE(class_names_must_be_utf8) {
    BOOST_CHECK_EXCEPTION(io::parse_config("data: {classes: [normal, les\xe3o]}\n", "c.yaml"), ConfigError,
                          message_contains("is not valid UTF-8"));
}

BOOST_AUTO_TEST_SUITE_END()
