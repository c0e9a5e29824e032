// SPDX-License-Identifier: MIT
// End-to-end tests of train/ (suite "fit_loop": "train" would clash with the namespace): a tiny ResNet18 run on generated phantoms (train -> checkpoint ->
// predict -> evaluate) that must beat chance by a margin; the same seed and thread count give the
// same metrics.csv (every column but the wall-clock seconds); a run stopped after one epoch and
// resumed ends with the same rows and the same weights as an uninterrupted run.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "helpers.hpp"
#include "medimg/data/phantom.hpp"
#include "medimg/train/run.hpp"

using namespace medimg;
namespace fs = std::filesystem;

namespace {
struct Fixture {
    fs::path root = fs::temp_directory_path() / ("medimg-train-" + std::to_string(Rng(std::random_device{}()).next_u64()));
    Fixture() {
        const std::int64_t counts[3] = {160, 40, 40};
        data::write_phantom_dataset((root / "data").string(), 40, counts, 3);
    }
    ~Fixture() { fs::remove_all(root); }
    io::Config config(const std::string& out, std::int64_t epochs) const {
        const std::string d = (root / "data").string();
        return io::parse_config("data: {image_size: 40, resize: 40, channels: 1, mean: [0.3], std: [0.25],"
                                " augment: {random_resized_crop: false, hflip: true}}\n"
                                "train: {batch_size: 16, optimizer: adam, lr: 0.001, scheduler: cosine, seed: 5}\n",
                                "test.yaml",
                                {"data.train=" + d + "/train", "data.val=" + d + "/val", "data.test=" + d + "/test",
                                 "train.epochs=" + std::to_string(epochs), "output.dir=" + (root / out).string(), "runtime.workers=2"});
    }
    std::vector<std::string> csv_without_seconds(const std::string& out) const {
        std::ifstream in(root / out / "metrics.csv");
        std::vector<std::string> lines;
        for (std::string l; std::getline(in, l);) lines.push_back(l.substr(0, l.rfind(',')));
        return lines;
    }
};
}  // namespace

BOOST_FIXTURE_TEST_SUITE(fit_loop, Fixture)

BOOST_AUTO_TEST_CASE(a_tiny_run_beats_chance_and_its_checkpoint_predicts_and_evaluates) {
    std::ostringstream log;
    const auto rows = train::run_training<float, Cpu>(config("a", 4), false, log);
    BOOST_TEST_MESSAGE(log.str());
    BOOST_REQUIRE(rows.size() == 4u);
    BOOST_TEST(rows.back().train_loss < rows.front().train_loss);
    BOOST_TEST(fs::exists(root / "a" / "checkpoints" / "best.safetensors"));

    const auto ck = io::Checkpoint::load((root / "a" / "checkpoints" / "best.safetensors").string());
    BOOST_TEST(ck.meta().in_channels == 1);
    BOOST_TEST(ck.meta().extra.at("read_channels") == "1");
    // Temperature scaling fitted on the validation split and stored in best (not in last).
    BOOST_REQUIRE(ck.meta().extra.count("temperature"));
    const double t = std::stod(ck.meta().extra.at("temperature"));
    BOOST_TEST(t >= metrics::kMinTemperature);
    BOOST_TEST(t <= metrics::kMaxTemperature);
    BOOST_TEST(log.str().find("calibration (val, temperature scaling): T = ") != std::string::npos);
    BOOST_TEST(train::calibration_temperature(ck.meta(), "", "best") == t);
    BOOST_TEST(train::calibration_temperature(ck.meta(), "none", "best") == 1.0);
    const auto last = io::Checkpoint::load((root / "a" / "checkpoints" / "last.safetensors").string());
    BOOST_TEST(!last.meta().extra.count("temperature"));
    BOOST_CHECK_EXCEPTION(train::calibration_temperature(last.meta(), "temperature", "last.safetensors"), ConfigError,
                          [](const ConfigError& e) { return std::string(e.what()).find("last.safetensors holds no temperature") != std::string::npos; });
    const auto pre = train::Preprocessing::from_meta(ck.meta());
    auto model = nn::make_resnet<float, Cpu>(ck.meta().architecture, nn::ResNetOptions{2, 1});
    ck.load_into(*model, "resnet18");
    const auto cfg = config("a", 4);
    const auto test_ds = data::FolderDataset::scan(cfg.data.test, cfg.data.classes, pre.volume_options());
    auto loader = train::make_loader(test_ds, pre.eval(), pre.read_settings(), cfg, false);
    const auto ev = train::evaluate(*model, *loader, 2);
    BOOST_TEST_MESSAGE("test accuracy " << ev.report.accuracy << ", AUC " << ev.report.macro_auc);
    BOOST_TEST(ev.report.accuracy >= 0.7);  // chance is 0.5 on the balanced test split
    BOOST_TEST(ev.report.macro_auc >= 0.75);
    // predict's path: one file through the checkpoint's own preprocessing gives the same
    // probabilities as the batch evaluation.
    model->eval();
    autograd::NoGrad g;
    const auto x = pre.load_eval(test_ds.path(0));
    const auto logits = model->forward(autograd::Var<float>(x.reshape({1, 1, 40, 40}))).value();
    const double p1 = 1.0 / (1.0 + std::exp(static_cast<double>(logits[0] - logits[1])));
    std::size_t at = 0;
    while (ev.indices[at] != 0) ++at;
    BOOST_TEST(p1 == ev.probs[2 * at + 1], boost::test_tools::tolerance(1e-5));
}

BOOST_AUTO_TEST_CASE(same_seed_gives_the_same_metrics_and_resume_continues_exactly) {
    std::ostringstream log;
    train::run_training<float, Cpu>(config("full", 2), false, log);
    train::run_training<float, Cpu>(config("again", 2), false, log);
    BOOST_TEST((csv_without_seconds("full") == csv_without_seconds("again")));

    train::run_training<float, Cpu>(config("resumed", 2), false, log, false, /*stop_after_epoch=*/1);  // interrupted
    train::run_training<float, Cpu>(config("resumed", 2), /*resume=*/true, log);                          // continued
    BOOST_TEST((csv_without_seconds("resumed") == csv_without_seconds("full")));
    const auto a = io::SafetensorsFile::load((root / "full" / "checkpoints" / "last.safetensors").string());
    const auto b = io::SafetensorsFile::load((root / "resumed" / "checkpoints" / "last.safetensors").string());
    for (const auto& k : a.keys()) {
        const auto ta = a.tensor<float>(k), tb = b.tensor<float>(k);
        for (std::int64_t i = 0; i < ta.numel(); ++i) BOOST_REQUIRE_MESSAGE(ta[i] == tb[i], k << "[" << i << "] differs");
    }
}

BOOST_AUTO_TEST_CASE(fit_with_a_loss_scaler_skips_overflowing_steps_backs_off_and_saves_the_scaler) {
    // The fp16 path of fit (ctx.scaler) on the CPU: a scale of 2^127 makes the scaled gradients
    // overflow float, so the first steps are skipped and the scale halves until they fit; the
    // run then learns as usual, and last.safetensors carries the scaler's state for --resume.
    const auto c = config("scaled", 2);
    const auto pre = train::Preprocessing::from_config(c);
    const auto train_ds = data::FolderDataset::scan(c.data.train, c.data.classes, pre.volume_options());
    const auto val_ds = data::FolderDataset::scan(c.data.val, c.data.classes, pre.volume_options());
    auto train_loader = train::make_loader(train_ds, train::train_transforms(c, pre), pre.read_settings(), c, true);
    auto val_loader = train::make_loader(val_ds, pre.eval(), pre.read_settings(), c, false);
    auto model = nn::make_resnet<float, Cpu>("resnet18", nn::ResNetOptions{2, 1, 5});
    auto opt = train::make_optimizer<float, Cpu>(c, model->named_parameters());
    optim::GradScaler<float, Cpu> scaler(optim::GradScalerOptions{std::ldexp(1.0, 127), 2.0, 0.5, 2000});
    train::FitContext<float, Cpu> ctx;
    ctx.model = model.get();
    ctx.optimizer = opt.get();
    ctx.train = train_loader.get();
    ctx.val = val_loader.get();
    ctx.scaler = &scaler;
    ctx.meta.architecture = "resnet18";
    ctx.meta.classes = c.data.classes;
    pre.to_meta(ctx.meta);
    train::FitOptions fo;
    fo.epochs = 2;
    fo.output_dir = (root / "scaled").string();
    std::ostringstream log;
    const auto rows = train::fit(ctx, fo, log);
    BOOST_TEST_MESSAGE(log.str());
    BOOST_REQUIRE(rows.size() == 2u);
    BOOST_TEST(log.str().find("steps skipped (gradient overflow), scale now") != std::string::npos);
    BOOST_TEST(scaler.get_scale() < std::ldexp(1.0, 127));
    BOOST_TEST(opt->step_count() > 0);
    BOOST_TEST(opt->step_count() < 20);  // 10 batches per epoch, some skipped
    BOOST_TEST(std::isfinite(rows.back().train_loss));
    const auto ck = io::Checkpoint::load((root / "scaled" / "checkpoints" / "last.safetensors").string());
    const auto saved = train::grad_scaler_state_from_json(ck.meta().extra.at("grad_scaler_state"));
    BOOST_TEST(saved.scale == scaler.get_scale());
    BOOST_TEST(saved.growth_tracker == scaler.state().growth_tracker);
}

BOOST_AUTO_TEST_CASE(a_last_batch_of_one_image_is_left_out_not_fatal) {
    // 160 training images in batches of 53: the last would hold 1, where batch norm cannot compute
    // training statistics (PyTorch stops; a cross-validation fold meets this by chance)
    auto c = config("one", 1);
    c.train.batch_size = 53;
    std::ostringstream log;
    const auto rows = train::run_training<float, Cpu>(c, false, log);
    BOOST_TEST(rows.size() == 1u);
    BOOST_TEST(log.str().find("note: the last training batch would hold 1 image (160 images, train.batch_size 53); batch norm "
                              "cannot train on one image") != std::string::npos, log.str());
    BOOST_TEST(std::isfinite(rows.back().train_loss));
    // whole batches: no note
    c.train.batch_size = 40;
    c.output_dir = (root / "full_batches").string();
    std::ostringstream log2;
    train::run_training<float, Cpu>(c, false, log2);
    BOOST_TEST(log2.str().find("note: the last training batch") == std::string::npos);
}

BOOST_AUTO_TEST_CASE(mixed_precision_on_the_cpu_is_refused_with_one_line) {
    auto c = config("mixed", 1);
    c.runtime.device = "auto";  // no GPU in a CPU run
    c.runtime.precision = "bf16";
    std::ostringstream log;
    const auto run = [&] { train::run_training<float, Cpu>(c, false, log); };
    BOOST_CHECK_EXCEPTION(run(), ConfigError,
                          medimg::test::message_contains("'runtime.precision' is bf16 but this run is on the CPU (runtime.device auto)"));
}

BOOST_AUTO_TEST_SUITE_END()
