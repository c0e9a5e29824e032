// SPDX-License-Identifier: MIT
// medimg-evaluate: accuracy, per-class sensitivity and specificity, ROC AUC (binary; macro
// one-vs-rest for more classes) and the confusion matrix of a checkpoint on a split of the
// configured data (--split train|val|test, default test), then every figure with its 95%
// interval (metrics/summary.hpp: Wilson, DeLong, optional bootstrap), PR AUC, Brier, log loss
// and ECE / MCE (docs/evaluation.md). Preprocessing comes from the checkpoint. --report DIR also
// writes DIR/report.html: every figure with its interval, the curves, the confusion matrix, the
// reliability diagram, the training curves and the worst errors with their Grad-CAM.
#include <medimg/medimg.hpp>
#include <medimg/train/run.hpp>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "device.hpp"
#include "explain_overlay.hpp"

static const char* kUsage = R"(usage: medimg-evaluate --config FILE --checkpoint FILE [--split test|val|train] [--json]
                       [--threshold P] [--bootstrap N] [--seed S] [--calibration none|temperature]
                       [--report DIR] [--set key=value ...]

  --config FILE      the configuration naming the data folders and classes
  --checkpoint FILE  a medimg checkpoint
  --split NAME       which split of the config to evaluate (default: test)
  --json             one JSON object instead of the text report
  --threshold RULE   two classes: the operating point p(second class) >= P for a number P (default
                     0.5), or chosen on the validation split: youden (Youden's J) or sensitivity=S
                     (the highest threshold reaching sensitivity S), then reported on --split
  --bootstrap N      also a stratified bootstrap 95% interval for the ROC AUC, N replicates (default 0: none)
  --seed S           the bootstrap's seed (default 0)
  --calibration MODE none or temperature: the probabilities divided by the temperature medimg-train
                     fitted on the validation split (default: temperature when the checkpoint holds one)
  --report DIR       also write DIR/report.html (created if missing): one self-contained page with
                     every figure and its interval, the ROC curve with a bootstrap band, the PR curve,
                     the confusion matrix, the reliability diagram before and after calibration, the
                     training curves (the metrics.csv beside the checkpoint's folder) and the worst
                     false negatives and false positives with their Grad-CAM
  --help             this text

Research software: not for clinical diagnosis.
)";

/// The checkpoint's model on backend B over every batch of `loader`.
template <class B>
medimg::train::Evaluation evaluate_on(const medimg::io::Checkpoint& ck, medimg::data::DataLoader& loader, std::int64_t classes) {
    using namespace medimg;
    auto model = nn::make_model<float, B>(ck.meta().architecture, train::model_options(ck.meta(), classes));
    ck.load_into(*model, ck.meta().architecture);
    return train::evaluate(*model, loader, classes);
}

/// evaluate_on<Gpu> when `gpu`, else on the CPU. A template so that in a g++ build (no CUDA
/// backend) the Gpu branch is discarded, not instantiated.
template <class Gpu>
medimg::train::Evaluation evaluate_on_device(bool gpu, const medimg::io::Checkpoint& ck, medimg::data::DataLoader& loader,
                                             std::int64_t classes) {
    if constexpr (medimg::backend_available<Gpu>) {
        if (gpu) return evaluate_on<Gpu>(ck, loader, classes);
    }
    return evaluate_on<medimg::Cpu>(ck, loader, classes);
}

/// The report gallery's thumbnails (explain_overlay.hpp) of each list of cases, with one copy of the
/// checkpoint's model, on the GPU when `gpu`, else on the CPU.
template <class Gpu>
std::vector<std::vector<medimg::report::Thumbnail>> gallery_on_device(bool gpu, const medimg::io::Checkpoint& ck,
                                                                      const medimg::train::Preprocessing& pre,
                                                                      const std::vector<std::vector<GalleryCase>>& lists,
                                                                      std::int64_t target, std::string& layer) {
    using namespace medimg;
    const auto run = [&](auto backend) {
        using B = decltype(backend);
        const auto& m = ck.meta();
        auto model = nn::make_model<float, B>(m.architecture, train::model_options(m));
        ck.load_into(*model, m.architecture);
        layer = model->default_cam_layer(pre.image_size);
        std::vector<std::vector<report::Thumbnail>> out;
        for (const auto& cases : lists) out.push_back(gallery_thumbnails<B>(*model, pre, m.classes, cases, target));
        return out;
    };
    if constexpr (backend_available<Gpu>) {
        if (gpu) return run(Gpu{});
    }
    return run(Cpu{});
}

int main(int argc, char** argv) try {
    using namespace medimg;
    const auto args = cli::parse(argc, argv, {"--config", "--checkpoint", "--split", "--set", "--threshold", "--bootstrap", "--seed",
                                  "--calibration", "--report"},
                                 {"--json", "--help"}, kUsage);
    if (args.has("--help")) {
        std::cout << kUsage;
        return 0;
    }
    auto cfg = io::load_config(args.require("--config"), args.all("--set"));
    if (cfg.runtime.threads > 0) set_num_threads(static_cast<int>(cfg.runtime.threads));
    const std::string split = args.get("--split", "test");
    const std::string root = split == "train" ? cfg.data.train : split == "val" ? cfg.data.val : split == "test" ? cfg.data.test : "";
    MEDIMG_CHECK(!root.empty(), ConfigError, "--split must be train, val or test (with a folder configured), got '", split, "'");
    const std::string report_dir = args.get("--report");
    MEDIMG_CHECK(!args.has("--report") || !report_dir.empty(), ConfigError, "--report needs a folder");
    if (!report_dir.empty()) {  // before the evaluation: a folder that cannot be made fails at once
        std::error_code ec;
        std::filesystem::create_directories(report_dir, ec);
        MEDIMG_CHECK(!ec && std::filesystem::is_directory(report_dir), IoError, "--report: cannot create the folder '", report_dir,
                     "'", ec ? ": " + ec.message() : std::string(" (a file of that name exists)"));
    }
    const auto ck = io::Checkpoint::load(args.require("--checkpoint"));
    MEDIMG_CHECK(ck.meta().classes == cfg.data.classes, IoError, "evaluate: ", args.get("--checkpoint"),
                 " was trained on other classes than data.classes of ", cfg.source);
    const auto pre = train::Preprocessing::from_meta(ck.meta());
    const bool gpu = use_gpu<Cuda>(cfg, "medimg-evaluate");
    const auto ds = data::FolderDataset::scan(root, cfg.data.classes, pre.volume_options());
    auto loader = train::make_loader(ds, pre.eval(), pre.read_settings(), cfg, false);
    const auto classes = static_cast<std::int64_t>(cfg.data.classes.size());
    metrics::SummaryOptions so;
    // --threshold P, or chosen on the validation split: youden | sensitivity=S (docs/evaluation.md)
    const std::string tspec = args.get("--threshold");
    const bool choose = tspec == "youden" || tspec.rfind("sensitivity=", 0) == 0;
    if (!choose) so.threshold = args.number("--threshold", 0.0, 1.0, false, so.threshold);
    so.bootstrap = static_cast<std::int64_t>(args.number("--bootstrap", 0, 1e6, true, 0));
    so.bootstrap_seed = static_cast<std::uint64_t>(args.number("--seed", 0, 9007199254740992.0, true, 0));
    const double temperature = train::calibration_temperature(ck.meta(), args.get("--calibration"), args.get("--checkpoint"));
    const auto calibrate = [&](train::Evaluation& e) {
        if (temperature == 1.0) return;
        e.probs = metrics::with_temperature(e.probs, classes, temperature);
        e.report = metrics::classification_report(e.probs, e.labels, classes);
    };
    std::string threshold_rule = "given";
    if (choose) {
        MEDIMG_CHECK(classes == 2, ConfigError, "--threshold ", tspec, ": a chosen threshold is for two classes; ", cfg.source,
                     " has ", classes);
        double target = 0;
        if (tspec != "youden") {
            const std::string v = tspec.substr(std::string("sensitivity=").size());
            MEDIMG_CHECK(io::parse_number(v, target) && target > 0 && target <= 1, ConfigError,
                         "--threshold: sensitivity=S needs S in (0, 1], got '", v, "'");
        }
        MEDIMG_CHECK(!cfg.data.val.empty(), ConfigError, "--threshold ", tspec, ": chosen on the validation split, but ", cfg.source,
                     " names none (data.val)");
        const auto val_ds = data::FolderDataset::scan(cfg.data.val, cfg.data.classes, pre.volume_options());  // outlives its loader
        auto val_loader = train::make_loader(val_ds, pre.eval(), pre.read_settings(), cfg, false);
        auto val = evaluate_on_device<Cuda>(gpu, ck, *val_loader, classes);
        calibrate(val);
        std::vector<double> score;
        std::vector<bool> positive;
        for (std::size_t i = 0; i < val.labels.size(); ++i) {
            score.push_back(val.probs[i * 2 + 1]);
            positive.push_back(val.labels[i] == 1);
        }
        so.threshold = tspec == "youden" ? metrics::youden_threshold(score, positive)
                                         : metrics::threshold_for_sensitivity(score, positive, target);
        threshold_rule = tspec == "youden" ? "Youden's J on the val split" : "sensitivity >= " + tspec.substr(12) + " on the val split";
    }
    auto ev = evaluate_on_device<Cuda>(gpu, ck, *loader, classes);
    const auto raw = metrics::summarize(ev.probs, ev.labels, classes, so);  // before calibration
    const std::vector<double> raw_probs = ev.probs;
    calibrate(ev);
    const auto sum = metrics::summarize(ev.probs, ev.labels, classes, so);
    if (args.has("--json")) {
        nlohmann::ordered_json j;
        j["split"] = split;
        j["images"] = ev.report.count;
        j["accuracy"] = ev.report.accuracy;
        j["roc_auc"] = ev.report.macro_auc;
        j["loss"] = ev.loss;
        for (std::size_t k = 0; k < cfg.data.classes.size(); ++k) {
            j["per_class"][cfg.data.classes[k]] = {{"sensitivity", ev.report.sensitivity[k]},
                                                   {"specificity", ev.report.specificity[k]},
                                                   {"roc_auc", ev.report.auc[k]}};
        }
        j["confusion_matrix"] = ev.report.confusion;
        j["classes"] = cfg.data.classes;
        const auto pair = [](const metrics::Interval& v) { return nlohmann::ordered_json::array({v.lo, v.hi}); };
        j["accuracy_ci"] = pair(sum.accuracy);
        for (std::size_t k = 0; k < cfg.data.classes.size(); ++k) {
            auto& c = j["per_class"][cfg.data.classes[k]];
            c["roc_auc_ci"] = pair(sum.per_class[k].auc.auc);
            if (so.bootstrap > 0) c["roc_auc_bootstrap_ci"] = pair(sum.per_class[k].auc_bootstrap);
            c["average_precision"] = sum.per_class[k].average_precision;
        }
        if (classes == 2) {
            j["roc_auc_ci"] = pair(sum.per_class[1].auc.auc);
            const auto& p = sum.at_threshold;
            j["operating_point"] = {{"threshold", p.threshold}, {"threshold_rule", threshold_rule}, {"positive_class", cfg.data.classes[1]},
                                    {"tp", p.tp}, {"fp", p.fp}, {"tn", p.tn}, {"fn", p.fn},
                                    {"sensitivity", p.sensitivity.value}, {"sensitivity_ci", pair(p.sensitivity)},
                                    {"specificity", p.specificity.value}, {"specificity_ci", pair(p.specificity)},
                                    {"ppv", p.ppv.value}, {"ppv_ci", pair(p.ppv)}, {"npv", p.npv.value}, {"npv_ci", pair(p.npv)}};
        }
        j["brier"] = sum.brier;
        j["log_loss"] = sum.log_loss;
        j["ece"] = sum.calibration.ece;
        j["mce"] = sum.calibration.mce;
        j["calibration"] = {{"method", temperature != 1.0 ? "temperature" : "none"}, {"temperature", temperature},
                            {"uncalibrated", {{"ece", raw.calibration.ece}, {"mce", raw.calibration.mce},
                                              {"log_loss", raw.log_loss}, {"brier", raw.brier}}}};
        std::cout << j.dump() << "\n";
    } else {
        train::print_report(std::cout, split.c_str(), ev, cfg.data.classes);
        train::print_uncertainty(std::cout, sum, cfg.data.classes, so);
        char line[200];
        if (choose) {
            std::snprintf(line, sizeof line, "  threshold %.6g chosen by %s\n", so.threshold, threshold_rule.c_str());
            std::cout << line;
        }
        if (temperature != 1.0)
            std::snprintf(line, sizeof line, "  calibration: temperature %.4f from the checkpoint; uncalibrated ECE %.4f, MCE %.4f, log loss %.4f\n",
                          temperature, raw.calibration.ece, raw.calibration.mce, raw.log_loss);
        else
            std::snprintf(line, sizeof line, "  calibration: none (probabilities as the softmax gives them)\n");
        std::cout << line;
    }
    if (!report_dir.empty()) {
        const auto t0 = std::chrono::steady_clock::now();
        namespace fs = std::filesystem;
        report::EvaluationInput in;
        in.title = "medimg-evaluate: the " + split + " split";
        in.about = {{"configuration", cfg.source},
                    {"checkpoint", args.get("--checkpoint") + " (" + ck.meta().architecture + ", epoch " + std::to_string(ck.meta().epoch) + ")"},
                    {"split", split + ": " + root},
                    {"device", gpu ? "cuda" : "cpu"}};
        in.classes = cfg.data.classes;
        in.probs = ev.probs;
        in.labels = ev.labels;
        if (temperature != 1.0) in.uncalibrated = raw_probs;
        in.temperature = temperature;
        in.options = so;
        in.threshold_rule = threshold_rule;
        // the training log: <run>/metrics.csv beside <run>/checkpoints/
        const auto log = fs::path(args.get("--checkpoint")).parent_path().parent_path() / "metrics.csv";
        try {
            in.training.push_back({"", train::read_metrics_csv(log.string(), INT64_MAX)});
        } catch (const std::exception& e) {
            in.training_note = "No training curves: " + log.string() + " " +
                               (fs::exists(log) ? std::string("is not a medimg metrics.csv (") + e.what() + ")" : "does not exist") + ".";
        }
        const auto [fn, fp] = report::worst_errors(ev.probs, ev.labels, classes, so.threshold, 6);
        const auto cases = [&](const std::vector<std::size_t>& which) {
            std::vector<GalleryCase> out;
            for (auto i : which)
                out.push_back({ds.name(ev.indices[i]), ev.labels[i],
                               std::vector<double>(ev.probs.begin() + static_cast<std::ptrdiff_t>(i * static_cast<std::size_t>(classes)),
                                                   ev.probs.begin() + static_cast<std::ptrdiff_t>((i + 1) * static_cast<std::size_t>(classes)))});
            return out;
        };
        const std::int64_t target = classes == 2 ? 1 : -1;  // two classes: what the model saw of the positive class
        std::string layer;
        auto thumbs = gallery_on_device<Cuda>(gpu, ck, pre, {cases(fn), cases(fp)}, target, layer);
        in.false_negatives = std::move(thumbs[0]);
        in.false_positives = std::move(thumbs[1]);
        in.gallery_note = "Grad-CAM at " + layer + " for " +
                          (classes == 2 ? "'" + cfg.data.classes[1] + "' (what the model saw of the positive class)" : "the predicted class") +
                          ", min-max scaled per image; at most 6 of each.";
        const auto page = report::evaluation_report(in);
        const std::string file = (fs::path(report_dir) / "report.html").string();
        page.save(file);
        const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        char line[160];
        std::snprintf(line, sizeof line, " (%zu figures, %.2f s)\n", page.images(), secs);
        std::cerr << "medimg-evaluate: report: " << file << line;
    }
    if (loader->skipped()) std::cerr << "medimg-evaluate: skipped " << loader->skipped() << " unreadable images\n";
    return 0;
} catch (...) {
    return medimg::cli::fail("medimg-evaluate");  // one line for any exception (medimg::current_exception_message)
}
