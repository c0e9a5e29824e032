// SPDX-License-Identifier: MIT
// train/run.hpp: what medimg-train does with a validated configuration, top to bottom:
// index the splits -> build loaders, model (pretrained if asked), optimizer, schedule, loss ->
// (resume from last.safetensors) -> fit -> evaluate the best checkpoint on the test split.
// Resuming restores weights, optimizer state, schedule, the epoch counter, the best score and
// the earlier metrics.csv rows; the data order and augmentation are pure functions of
// (seed, epoch, index), so a resumed CPU run continues exactly as an uninterrupted one.
#pragma once

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "medimg/core/parallel.hpp"
#include "medimg/core/precision.hpp"
#include "medimg/metrics/summary.hpp"
#include "medimg/train/setup.hpp"

namespace medimg::train {

/// Reads the rows of an existing metrics.csv (up to and including `last_epoch`).
inline std::vector<EpochRow> read_metrics_csv(const std::string& path, std::int64_t last_epoch) {
    std::vector<EpochRow> rows;
    std::ifstream in(path);
    MEDIMG_CHECK(in.good(), IoError, "resume: cannot read '", path, "'");
    std::string line;
    std::getline(in, line);
    MEDIMG_CHECK(line == csv_header(), IoError, "resume: '", path, "' does not start with the metrics header");
    while (std::getline(in, line)) {
        EpochRow r;
        long long e = 0;
        if (std::sscanf(line.c_str(), "%lld,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &e, &r.train_loss, &r.train_acc, &r.val_loss, &r.val_acc,
                        &r.val_auc, &r.lr, &r.seconds) != 8)
            throw IoError("resume: '" + path + "': unreadable row '" + line + "'");
        r.epoch = e;
        if (r.epoch <= last_epoch) rows.push_back(r);
    }
    return rows;
}

inline void print_split(std::ostream& out, const char* name, const data::FolderDataset& ds) {
    out << name << ": " << ds.size() << " images (";
    for (std::size_t k = 0; k < ds.classes().size(); ++k)
        out << (k ? ", " : "") << ds.classes()[k] << " " << ds.class_counts()[k];
    out << ")";
    if (ds.skipped_non_images()) out << ", " << ds.skipped_non_images() << " non-image files skipped";
    out << "\n";
}

inline void print_report(std::ostream& out, const char* split, const Evaluation& ev, const std::vector<std::string>& classes) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s: accuracy %.4f, ROC AUC %.4f, loss %.4f (%lld images)\n", split, ev.report.accuracy,
                  ev.report.macro_auc, ev.loss, static_cast<long long>(ev.report.count));
    out << buf;
    for (std::size_t k = 0; k < classes.size(); ++k) {
        std::snprintf(buf, sizeof buf, "  %-12s sensitivity %.4f  specificity %.4f\n", classes[k].c_str(), ev.report.sensitivity[k],
                      ev.report.specificity[k]);
        out << buf;
    }
    out << "  confusion matrix (rows: true, columns: predicted):\n";
    for (std::size_t k = 0; k < classes.size(); ++k) {
        std::snprintf(buf, sizeof buf, "  %-12s", classes[k].c_str());
        out << buf;
        for (auto v : ev.report.confusion[k]) out << " " << v;
        out << "\n";
    }
}

/// The figures of metrics::summarize with their 95% intervals, after print_report's lines.
inline void print_uncertainty(std::ostream& out, const metrics::Summary& s, const std::vector<std::string>& classes,
                              const metrics::SummaryOptions& o) {
    char buf[320];
    const auto ci = [](const metrics::Interval& v) {
        char b[64];
        std::snprintf(b, sizeof b, "%.4f-%.4f", v.lo, v.hi);
        return std::string(b);
    };
    std::snprintf(buf, sizeof buf, "  accuracy %.4f (95%% CI %s, Wilson)\n", s.accuracy.value, ci(s.accuracy).c_str());
    out << buf;
    for (std::size_t k = 0; k < classes.size(); ++k) {
        if (s.num_classes == 2 && k == 0) continue;  // two classes: class 1's AUC is the AUC
        const auto& f = s.per_class[k];
        std::snprintf(buf, sizeof buf, "  ROC AUC %s%.4f (95%% CI %s, DeLong%s%s), PR AUC (average precision) %.4f\n",
                      s.num_classes == 2 ? "" : (classes[k] + " vs rest ").c_str(), f.auc.auc.value, ci(f.auc.auc).c_str(),
                      o.bootstrap > 0 ? "; bootstrap " : "", o.bootstrap > 0 ? ci(f.auc_bootstrap).c_str() : "",
                      f.average_precision);
        out << buf;
    }
    if (s.num_classes == 2) {
        const auto& p = s.at_threshold;
        std::snprintf(buf, sizeof buf,
                      "  at p(%s) >= %g: sensitivity %.4f (%s), specificity %.4f (%s), PPV %.4f (%s), NPV %.4f (%s) (Wilson)\n",
                      classes[1].c_str(), p.threshold, p.sensitivity.value, ci(p.sensitivity).c_str(), p.specificity.value,
                      ci(p.specificity).c_str(), p.ppv.value, ci(p.ppv).c_str(), p.npv.value, ci(p.npv).c_str());
        out << buf;
    }
    std::snprintf(buf, sizeof buf, "  Brier %.4f, log loss %.4f, ECE %.4f, MCE %.4f (%d bins)\n", s.brier, s.log_loss,
                  s.calibration.ece, s.calibration.mce, o.calibration_bins);
    out << buf;
}

/// Temperature scaling (Guo et al. 2017) of the best checkpoint: T is fitted on the validation
/// split by minimising the NLL (metrics::fit_temperature; the log-probabilities stand for the
/// logits) and stored in best.safetensors's metadata as "temperature", which medimg-predict and
/// medimg-evaluate apply by default. Deterministic, so a resumed run writes the same bytes.
template <class T, class B>
void calibrate_best(nn::Module<T, B>& model, data::DataLoader& val, std::int64_t K, const std::string& best_path, std::ostream& out) {
    auto best = io::Checkpoint::load(best_path);
    best.load_into(model);
    const auto ev = evaluate(model, val, K);
    const auto logp = metrics::log_probabilities(ev.probs);
    const double t = metrics::fit_temperature(logp, ev.labels, K);
    const auto calibrated = metrics::softmax_rows(logp, K, t);
    char line[256];
    std::snprintf(line, sizeof line, "calibration (val, temperature scaling): T = %.4f, ECE %.4f -> %.4f, NLL %.4f -> %.4f\n", t,
                  metrics::calibration_bins(ev.probs, ev.labels, K).ece, metrics::calibration_bins(calibrated, ev.labels, K).ece,
                  metrics::log_loss(ev.probs, ev.labels, K), metrics::log_loss(calibrated, ev.labels, K));
    out << line;
    auto meta = best.meta();
    char tv[32];
    std::snprintf(tv, sizeof tv, "%.17g", t);
    meta.extra["temperature"] = tv;
    io::save_checkpoint(best_path, model, meta, best.template optimizer_state<T>());
}

template <class T = float, class B = Cpu>
std::vector<EpochRow> run_training(const io::Config& c, bool resume, std::ostream& out = std::cout, bool progress = false,
                                   std::int64_t stop_after_epoch = 0) {
    namespace fs = std::filesystem;
    if (c.runtime.threads > 0) set_num_threads(static_cast<int>(c.runtime.threads));
    // runtime.precision: bf16 / fp16 convolutions and linear layers on the GPU (core/precision.hpp);
    // the config refuses them with device cpu, this catches auto without a GPU and CPU-only builds.
    const Precision precision = parse_precision(c.runtime.precision);
    constexpr bool on_cpu = std::is_same_v<B, Cpu>;
    MEDIMG_CHECK(!on_cpu || precision == Precision::fp32, ConfigError, "config: ", c.source,
                 ": 'runtime.precision' is ", c.runtime.precision,
                 " but this run is on the CPU (runtime.device ", c.runtime.device,
                 "), which computes in fp32 only; use fp32 or a CUDA device");
    PrecisionScope<B> precision_scope(precision);
    const auto pre = Preprocessing::from_config(c);
    const auto K = static_cast<std::int64_t>(c.data.classes.size());

    const auto train_ds = data::FolderDataset::scan(c.data.train, c.data.classes, pre.volume_options());
    const auto val_ds = data::FolderDataset::scan(c.data.val, c.data.classes, pre.volume_options());
    print_split(out, "train", train_ds);
    print_split(out, "val", val_ds);
    auto train_loader = make_loader(train_ds, train_transforms(c, pre), pre.read_settings(), c, true);
    auto val_loader = make_loader(val_ds, pre.eval(), pre.read_settings(), c, false);

    auto model = nn::make_model<T, B>(c.model.name, model_options(c, K, pre.model_channels));
    if (!c.model.pretrained.empty() && !resume) {
        const auto r = io::load_pretrained(*model, c.model.pretrained);
        out << "pretrained: " << r.loaded.size() << " tensors from " << c.model.pretrained;
        for (const auto& a : r.adapted) out << "; adapted " << a;
        for (const auto& a : r.reinitialised) out << "; new " << a;
        if (!r.ignored.empty()) out << "; " << r.ignored.size() << " keys ignored";
        out << "\n";
    }
    auto optimizer = make_optimizer<T, B>(c, model->named_parameters());
    auto scheduler = make_scheduler(c, *optimizer);

    FitContext<T, B> ctx;
    ctx.model = model.get();
    ctx.optimizer = optimizer.get();
    ctx.scheduler = scheduler.get();
    ctx.train = train_loader.get();
    ctx.val = val_loader.get();
    ctx.num_classes = K;
    ctx.loss.label_smoothing = c.train.label_smoothing;
    std::vector<double> w;
    if (c.train.class_weights == "auto") w = train_ds.balanced_class_weights();
    if (c.train.class_weights == "list") w = c.train.class_weight_values;
    if (!w.empty()) {
        auto host = Tensor<T, Cpu>::empty({K});
        for (std::int64_t k = 0; k < K; ++k) host[k] = static_cast<T>(w[static_cast<std::size_t>(k)]);
        ctx.loss.weight = to_backend<B>(host);
    }
    ctx.on_epoch_start = [&model, seed = c.train.seed](std::int64_t epoch) {
        model->reseed(seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(epoch));
    };
    ctx.meta.architecture = c.model.name;
    ctx.meta.classes = c.data.classes;
    ctx.meta.config = io::to_yaml(c);
    pre.to_meta(ctx.meta);
    if (scheduler) ctx.extra_meta = [&] { return std::map<std::string, std::string>{{"scheduler_state", nlohmann::json(scheduler->state()).dump()}}; };
    std::unique_ptr<optim::GradScaler<T, B>> scaler;  // fp16 only: bf16 has float32's exponent range
    if (precision == Precision::fp16) {
        scaler = std::make_unique<optim::GradScaler<T, B>>();
        ctx.scaler = scaler.get();
    }

    FitOptions fo;
    fo.epochs = c.train.epochs;
    fo.early_stopping_patience = c.train.early_stopping_patience;
    fo.checkpoint_metric = c.train.checkpoint_metric;
    fo.grad_clip_norm = c.train.grad_clip_norm;
    fo.output_dir = c.output_dir;
    fo.progress = progress;
    fo.stop_after = stop_after_epoch;
    const std::string last = (fs::path(c.output_dir) / "checkpoints" / "last.safetensors").string();
    if (resume) {
        const auto ck = io::Checkpoint::load(last);
        MEDIMG_CHECK(ck.meta().classes == c.data.classes, IoError, "resume: ", last, " was trained on other classes than data.classes");
        ck.load_into(*model, c.model.name);
        optimizer->load_state_dict(ck.optimizer_state<T>());
        if (scheduler) {
            MEDIMG_CHECK(ck.meta().extra.count("scheduler_state"), IoError, "resume: ", last, " has no scheduler state");
            scheduler->load_state(nlohmann::json::parse(ck.meta().extra.at("scheduler_state")).get<optim::SchedulerState>());
        }
        if (scaler && ck.meta().extra.count("grad_scaler_state"))  // absent when the run before was not fp16
            scaler->load_state(grad_scaler_state_from_json(ck.meta().extra.at("grad_scaler_state")));
        fo.start_epoch = ck.meta().epoch + 1;
        ctx.previous_rows = read_metrics_csv((fs::path(c.output_dir) / "metrics.csv").string(), ck.meta().epoch);
        ctx.best_score = std::stod(ck.meta().extra.at("best_score"));
        ctx.epochs_without_improvement = std::stoll(ck.meta().extra.at("epochs_without_improvement"));
        out << "resuming after epoch " << ck.meta().epoch << " from " << last << "\n";
    }
    out << "model " << c.model.name << " (" << model->parameter_count() << " parameters, " << pre.model_channels
        << " input channels), " << c.train.optimizer << " lr " << c.train.lr << ", " << num_threads() << " threads, "
        << c.runtime.workers << " workers";
    if (precision != Precision::fp32)
        out << ", " << c.runtime.precision << " convolutions and linear layers" << (scaler ? " with dynamic loss scaling" : "");
    out << "\n";
    auto rows = fit(ctx, fo, out);
    if (stop_after_epoch > 0 && !rows.empty() && rows.back().epoch < c.train.epochs) {
        out << "stopped after epoch " << rows.back().epoch << " as asked; continue with --resume\n";
        return rows;
    }
    if (train_loader->skipped() || val_loader->skipped())
        out << "skipped unreadable images: " << train_loader->skipped() << " (train), " << val_loader->skipped() << " (val)\n";

    calibrate_best(*model, *val_loader, K, (fs::path(c.output_dir) / "checkpoints" / "best.safetensors").string(), out);

    std::error_code ec;
    if (!c.data.test.empty() && fs::is_directory(c.data.test, ec)) {
        const auto test_ds = data::FolderDataset::scan(c.data.test, c.data.classes, pre.volume_options());
        auto test_loader = make_loader(test_ds, pre.eval(), pre.read_settings(), c, false);
        io::Checkpoint::load((fs::path(c.output_dir) / "checkpoints" / "best.safetensors").string()).load_into(*model);
        print_report(out, "test (best checkpoint)", evaluate(*model, *test_loader, K), c.data.classes);
    }
    return rows;
}

}  // namespace medimg::train
