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
#include <thread>
#include <tuple>
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
/// In a data-parallel run every rank reads best.safetensors (after rank 0 wrote it) and scores its
/// share of the split; the outputs are gathered, so every rank fits the same T; rank 0 writes it.
template <class T, class B>
void calibrate_best(nn::Module<T, B>& model, data::DataLoader& val, std::int64_t K, const std::string& best_path, std::ostream& out,
                    const Replicas<T, B>& rep = {}) {
    if (rep.barrier) rep.barrier();
    auto best = io::Checkpoint::load(best_path);
    best.load_into(model);
    auto ev = evaluate(model, val, K);
    if (rep.gather) rep.gather(ev);
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
    if (rep.writer()) io::save_checkpoint(best_path, model, meta, best.template optimizer_state<T>());
    if (rep.barrier) rep.barrier();
}

namespace detail {
/// A number from a checkpoint's metadata that --resume needs; one line naming key and file otherwise.
inline double resume_number(const io::CheckpointMeta& m, const std::string& key, const std::string& file) {
    const auto it = m.extra.find(key);
    MEDIMG_CHECK(it != m.extra.end(), IoError, "resume: ", file, " has no '", key, "' in its metadata (not written by medimg-train?)");
    double v = 0;
    std::size_t used = 0;
    try {
        v = std::stod(it->second, &used);
    } catch (const std::exception&) {
        used = 0;
    }
    MEDIMG_CHECK(used == it->second.size() && used > 0 && !std::isnan(v), IoError, "resume: ", file, ": metadata '", key, "' is '",
                 escape_controls(it->second), "', not a number");
    return v;
}
inline std::uint64_t fnv1a(const std::string& s, std::uint64_t h = 1469598103934665603ULL) {
    for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
    return h;
}
}  // namespace detail

/// rep: a data-parallel run's processes (dist/train.hpp); the default is one process. Every rank
/// calls this with the same configuration; rank 0 alone writes, and `out` should be a stream that
/// discards on the other ranks.
template <class T = float, class B = Cpu>
std::vector<EpochRow> run_training(const io::Config& cfg, bool resume, std::ostream& out = std::cout, bool progress = false,
                                   std::int64_t stop_after_epoch = 0, Replicas<T, B> rep = {}) {
    namespace fs = std::filesystem;
    const auto world = static_cast<std::int64_t>(rep.world), rank = static_cast<std::int64_t>(rep.rank);
    if (rep.agree) rep.agree("the configuration (file and --set)", detail::fnv1a(io::to_yaml(cfg)));
    io::Config c = cfg;
    // Linear scaling rule (Goyal et al. 2017): the global batch is world x train.batch_size.
    if (world > 1 && c.train.lr_scaling == "linear") c.train.lr *= static_cast<double>(world);
    if (c.runtime.threads > 0) set_num_threads(static_cast<int>(c.runtime.threads));
    else if (rep.local_world > 1)  // the machine's cores shared by the processes on it
        set_num_threads(std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / rep.local_world));
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
    if (world > 1) {
        // Every rank must see the same files (a node whose copy of the data differs is refused), then
        // every rank needs a share of each split.
        std::uint64_t h = detail::fnv1a("files");
        for (const auto* ds : {&train_ds, &val_ds})
            for (std::int64_t i = 0; i < ds->size(); ++i) h = detail::fnv1a(ds->sample(i).display() + "\n" + std::to_string(ds->labels()[static_cast<std::size_t>(i)]), h);
        rep.agree("the list of training and validation files", h);
        for (const auto& [key, folder, ds] : {std::tuple{"data.train", &c.data.train, &train_ds}, std::tuple{"data.val", &c.data.val, &val_ds}})
            MEDIMG_CHECK(ds->size() >= world, ConfigError, "runtime.distributed: ", world, " ranks but ", key, " ('",
                         escape_controls(*folder), "') holds ", ds->size(),
                         " images; every rank needs at least one image of each split (start fewer ranks)");
        std::error_code ec;  // checked now, not after the training
        if (!c.data.test.empty() && fs::is_directory(c.data.test, ec)) {
            const auto n = data::FolderDataset::scan(c.data.test, c.data.classes, pre.volume_options()).size();
            MEDIMG_CHECK(n >= world, ConfigError, "runtime.distributed: ", world, " ranks but data.test ('", escape_controls(c.data.test),
                         "') holds ", n, " images; every rank needs at least one image of each split (start fewer ranks)");
        }
    }
    auto train_loader = make_loader(train_ds, train_transforms(c, pre), pre.read_settings(), c, true, rank, world);
    auto val_loader = make_loader(val_ds, pre.eval(), pre.read_settings(), c, false, rank, world);

    auto model = nn::make_model<T, B>(c.model.name, model_options(c, K, pre.model_channels));
    if (!c.model.pretrained.empty() && !resume) {
        const auto r = io::load_pretrained(*model, c.model.pretrained);
        out << "pretrained: " << r.loaded.size() << " tensors from " << c.model.pretrained;
        for (const auto& a : r.adapted) out << "; adapted " << a;
        for (const auto& a : r.reinitialised) out << "; new " << a;
        if (!r.ignored.empty()) out << "; " << r.ignored.size() << " keys ignored";
        out << "\n";
    }
    // A last training batch of one image: batch norm cannot compute training statistics from it
    // (PyTorch stops with "Expected more than 1 value per channel when training"), and a fold of
    // medimg-crossval or a data set of 8k + 1 images meets it by chance. Left out of each epoch
    // (another image each epoch: the order is shuffled), and said, instead of stopping the run.
    // SyncBatchNorm over several ranks has the other ranks' images.
    {
        const auto per_epoch = train_loader->epoch_size(), batch = c.train.batch_size;
        bool batch_norm = false;
        for (auto& [name, sub] : model->named_modules()) batch_norm = batch_norm || dynamic_cast<nn::BatchNorm2d<T, B>*>(sub) != nullptr;
        if (!c.train.drop_last && batch > 1 && per_epoch % batch == 1 && batch_norm && !(c.model.sync_bn && world > 1)) {
            out << "note: the last training batch would hold 1 image (" << per_epoch << " images" << (world > 1 ? " per rank" : "")
                << ", train.batch_size " << batch << "); batch norm cannot train on one image, so that batch is left out of each "
                << "epoch, other images each time (as train.drop_last: true would)\n";
            io::Config dropping = c;
            dropping.train.drop_last = true;
            train_loader = make_loader(train_ds, train_transforms(c, pre), pre.read_settings(), dropping, true, rank, world);
        }
    }
    auto optimizer = make_optimizer<T, B>(c, model->named_parameters());
    auto scheduler = make_scheduler(c, *optimizer);

    FitContext<T, B> ctx;
    ctx.replicas = rep;
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
    ctx.on_epoch_start = [&model, seed = c.train.seed, rank](std::int64_t epoch) {  // each rank its own dropout draws
        model->reseed(seed * 0x9e3779b97f4a7c15ULL + static_cast<std::uint64_t>(epoch) +
                      static_cast<std::uint64_t>(rank) * 0xd1b54a32d192ed03ULL);
    };
    ctx.meta.architecture = c.model.name;
    ctx.meta.classes = c.data.classes;
    ctx.meta.config = io::to_yaml(c);
    pre.to_meta(ctx.meta);
    ctx.extra_meta = [&scheduler, world] {
        std::map<std::string, std::string> m{{"world_size", std::to_string(world)}};  // the ranks that trained it (resume notes a change)
        if (scheduler) m["scheduler_state"] = nlohmann::json(scheduler->state()).dump();
        return m;
    };
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
            const auto& text = ck.meta().extra.at("scheduler_state");
            optim::SchedulerState st;
            try {
                st = nlohmann::json::parse(text).get<optim::SchedulerState>();
            } catch (const nlohmann::json::exception&) {
                throw IoError("resume: " + last + ": metadata 'scheduler_state' is '" + escape_controls(text.substr(0, 200)) +
                              "', not a scheduler state written by medimg-train");
            }
            scheduler->load_state(st);
        }
        if (scaler && ck.meta().extra.count("grad_scaler_state"))  // absent when the run before was not fp16
            scaler->load_state(grad_scaler_state_from_json(ck.meta().extra.at("grad_scaler_state")));
        fo.start_epoch = ck.meta().epoch + 1;
        ctx.previous_rows = read_metrics_csv((fs::path(c.output_dir) / "metrics.csv").string(), ck.meta().epoch);
        ctx.best_score = detail::resume_number(ck.meta(), "best_score", last);
        ctx.epochs_without_improvement = static_cast<std::int64_t>(detail::resume_number(ck.meta(), "epochs_without_improvement", last));
        out << "resuming after epoch " << ck.meta().epoch << " from " << last << "\n";
        const auto before = ck.meta().extra.count("world_size") ? static_cast<std::int64_t>(detail::resume_number(ck.meta(), "world_size", last)) : 1;
        if (before != world)  // weights, optimizer and schedule carry over; the batches do not
            out << "note: trained on " << before << (before == 1 ? " process" : " processes") << " before, " << world
                << " now: the global batch is " << world * c.train.batch_size << " (was " << before * c.train.batch_size
                << "), so the steps per epoch and the data each step sees differ from an uninterrupted run"
                << (c.train.lr_scaling == "linear" ? "; the learning rate follows the restored schedule, not the new world size" : "")
                << "\n";
    }
    if (rep.attach) rep.attach(*model);  // rank 0's weights to every rank, gradient hooks, SyncBatchNorm
    out << "model " << c.model.name << " (" << model->parameter_count() << " parameters, " << pre.model_channels
        << " input channels), " << c.train.optimizer << " lr " << c.train.lr << ", " << num_threads() << " threads, "
        << c.runtime.workers << " workers";
    if (world > 1)
        out << ", " << world << " processes (global batch " << world * c.train.batch_size << (c.model.sync_bn ? ", SyncBatchNorm" : "")
            << (c.train.lr_scaling == "linear" ? ", lr scaled x" + std::to_string(world) : "") << ")";
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

    calibrate_best(*model, *val_loader, K, (fs::path(c.output_dir) / "checkpoints" / "best.safetensors").string(), out, ctx.replicas);

    std::error_code ec;
    if (!c.data.test.empty() && fs::is_directory(c.data.test, ec)) {
        const auto test_ds = data::FolderDataset::scan(c.data.test, c.data.classes, pre.volume_options());
        auto test_loader = make_loader(test_ds, pre.eval(), pre.read_settings(), c, false, rank, world);
        io::Checkpoint::load((fs::path(c.output_dir) / "checkpoints" / "best.safetensors").string()).load_into(*model);
        auto ev = evaluate(*model, *test_loader, K);
        if (ctx.replicas.gather) ctx.replicas.gather(ev);
        print_report(out, "test (best checkpoint)", ev, c.data.classes);
    }
    return rows;
}

}  // namespace medimg::train
