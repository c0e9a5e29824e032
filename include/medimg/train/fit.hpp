// SPDX-License-Identifier: MIT
// train/fit.hpp: the fit loop of medimg-train, reading top to bottom:
//   for each epoch: train over shuffled batches (forward, loss, backward, clip, step) ->
//   evaluate on val (loss, accuracy, AUC) -> scheduler step -> metrics.csv row ->
//   checkpoints last (every epoch) and best (when checkpoint_metric improves) -> early stop.
// A non-finite loss stops the run with the epoch and batch named (or, for the validation
// loss, the epoch), keeping the last good checkpoints. With fp16 (ctx.scaler set) the step runs
// under dynamic loss scaling (optim/grad_scaler.hpp): a step whose gradients overflow is skipped
// and the scale halved; that is not an error. In a data-parallel run (FitContext::replicas, filled
// by dist/train.hpp) each process trains on its share of every batch, the gradients are averaged
// over the processes around backward(), the epoch's figures and the validation outputs are
// gathered from all of them, and rank 0 alone writes metrics.csv and the checkpoints: every rank
// takes the same decisions from the same gathered numbers. The data side (decoding, transforms)
// comes in as DataLoaders; the model as any Module. Deliberately not here: the command line (examples/train.cpp), the device choice.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "medimg/autograd/loss.hpp"
#include "medimg/data/loader.hpp"
#include "medimg/io/checkpoint.hpp"
#include "medimg/metrics/classification.hpp"
#include "medimg/nn/module.hpp"
#include "medimg/optim/optim.hpp"
#include "medimg/train/csv.hpp"
#include "medimg/train/upload.hpp"

namespace medimg::train {

/// Host tensors to backend B (a no-op for Cpu).
template <class B, class T>
Tensor<T, B> to_backend(const Tensor<T, Cpu>& t) {
    if constexpr (std::is_same_v<B, Cpu>)
        return t;
    else
        return t.template to<B>();
}

/// Loss, accuracy and the full report of one pass over a loader in eval mode.
struct Evaluation {
    double loss = 0.0;
    metrics::ClassificationReport report;
    std::vector<double> probs;          // (N, C) softmax probabilities, dataset order of the pass
    std::vector<std::int64_t> labels;   // (N)
    std::vector<std::int64_t> indices;  // dataset indices
};

/// Runs `model` in eval mode under NoGrad over every batch of `loader` (epoch 0 order). Batches
/// reach the backend through `uploader` (fit passes its own, so a GPU run reuses its pinned
/// staging blocks), or a local one when it is null.
template <class T, class B>
Evaluation evaluate(nn::Module<T, B>& model, data::DataLoader& loader, std::int64_t num_classes,
                    const loss::CrossEntropyOptions<T, B>& loss_opt = {}, BatchUploader<B>* uploader = nullptr) {
    autograd::NoGrad guard;
    model.eval();
    Evaluation ev;
    double loss_sum = 0.0;
    BatchUploader<B> local;
    auto& upload = uploader ? *uploader : local;
    if (auto a = upload.host_allocator()) loader.set_image_allocator(std::move(a));  // Cuda: pinned batches
    loader.start_epoch(0);
    while (auto batch = loader.next()) {
        const auto n = batch->labels.numel();
        if (n == 0) continue;
        auto logits = model(autograd::Var<T, B>(upload(batch->images)));
        auto labels = upload(batch->labels);
        loss_sum += static_cast<double>(loss::cross_entropy(logits, labels, loss_opt).value().item()) * static_cast<double>(n);
        auto logp = Tensor<T, B>::empty(logits.shape());
        ops::log_softmax_forward(logits.value(), logp);
        const auto host = logp.template to<Cpu>();
        for (std::int64_t i = 0; i < host.numel(); ++i) ev.probs.push_back(std::exp(static_cast<double>(host[i])));
        for (std::int64_t i = 0; i < n; ++i) ev.labels.push_back(batch->labels[i]);
        ev.indices.insert(ev.indices.end(), batch->indices.begin(), batch->indices.end());
    }
    MEDIMG_CHECK(!ev.labels.empty(), ValueError, "evaluate: no readable sample in the split");
    ev.loss = loss_sum / static_cast<double>(ev.labels.size());
    MEDIMG_CHECK(std::isfinite(ev.loss), ValueError, "evaluate: loss is ", ev.loss, " (the model's outputs are not finite)");
    ev.report = metrics::classification_report(ev.probs, ev.labels, num_classes);
    return ev;
}

struct FitOptions {
    std::int64_t epochs = 10;
    std::int64_t early_stopping_patience = 0;
    std::string checkpoint_metric = "val_acc";
    double grad_clip_norm = 0.0;
    std::string output_dir = "artifacts";
    bool progress = false;  // a live progress line (when stdout is a terminal)
    std::int64_t start_epoch = 1;  // > 1 when resuming
    std::int64_t stop_after = 0;   // > 0: return after this epoch (a planned interruption; resume later)
};

/// Scales every gradient so their joint L2 norm is at most max_norm (torch.nn.utils.clip_grad_norm_);
/// returns the norm before clipping.
template <class T, class B>
double clip_grad_norm(const nn::NamedParams<T, B>& params, double max_norm) {
    double sq = 0.0;
    for (const auto& [n, p] : params)
        if (p.grad().defined()) sq += ops::dot(p.grad(), p.grad());
    const double norm = std::sqrt(sq);
    const double scale = max_norm / (norm + 1e-6);
    if (scale < 1.0)
        for (auto [n, p] : params)
            if (p.grad().defined()) ops::affine(p.grad(), static_cast<T>(scale), T(0), p.grad());
    return norm;
}

template <>
class GradClipper<Cpu> {
public:
    template <class T>
    void operator()(const nn::NamedParams<T, Cpu>& params, double max_norm) {
        clip_grad_norm(params, max_norm);
    }
};

/// How fit() and run_training() work with the other processes of a data-parallel run; the
/// default (world 1, every function empty) is one process. dist/train.hpp fills it over MPI.
template <class T, class B>
struct Replicas {
    int rank = 0, world = 1;
    int local_world = 1;  // processes on this machine (threads default to cores / local_world)
    std::function<void(nn::Module<T, B>&)> attach;  // once the model exists: SyncBN, rank 0's weights to all, gradient hooks
    std::function<void()> before_backward, after_backward;  // gradient averaging (DDP)
    std::function<void(std::vector<double>&)> sum;          // elementwise sum over the ranks
    std::function<void(Evaluation&)> gather;               // this rank's share of a split -> the whole split's outputs
    std::function<void()> before_validation;                // e.g. rank 0's BN running statistics to every rank
    std::function<void()> barrier;                          // e.g. before reading what rank 0 wrote
    std::function<void(const std::string& what, std::uint64_t hash)> agree;  // the same value on every rank, or a ConfigError
    std::function<double()> comm_wait_seconds;  // so far, waiting for gradient all-reduces the backward did not hide
    bool writer() const { return rank == 0; }
};

/// What fit() needs besides the model: the optimizer (and optional scheduler), the loss options,
/// the two loaders, and how to describe checkpoints.
template <class T, class B>
struct FitContext {
    nn::Module<T, B>* model = nullptr;
    optim::Optimizer<T, B>* optimizer = nullptr;
    optim::LRScheduler* scheduler = nullptr;
    loss::CrossEntropyOptions<T, B> loss;
    data::DataLoader* train = nullptr;
    data::DataLoader* val = nullptr;
    io::CheckpointMeta meta;
    std::int64_t num_classes = 2;
    std::vector<EpochRow> previous_rows;  // when resuming
    double best_score = -INFINITY;
    std::int64_t epochs_without_improvement = 0;
    std::function<std::map<std::string, std::string>()> extra_meta;  // e.g. scheduler state, for resume
    std::function<void(std::int64_t epoch)> on_epoch_start;  // e.g. reseed the model's dropout streams
    optim::GradScaler<T, B>* scaler = nullptr;  // fp16: dynamic loss scaling (state saved in last)
    Replicas<T, B> replicas;  // data-parallel runs; the default is one process
};

/// The checkpoint-metadata form of a GradScaler's state ("grad_scaler_state").
inline std::string grad_scaler_state_json(const optim::GradScalerState& s) {
    return nlohmann::json{{"scale", s.scale}, {"growth_tracker", s.growth_tracker}}.dump();
}
inline optim::GradScalerState grad_scaler_state_from_json(const std::string& text) {
    try {
        const auto j = nlohmann::json::parse(text);
        return optim::GradScalerState{j.at("scale").get<double>(), j.at("growth_tracker").get<std::int64_t>()};
    } catch (const nlohmann::json::exception&) {
        throw IoError("resume: metadata 'grad_scaler_state' is '" + escape_controls(text.substr(0, 200)) +
                      "', not {\"scale\": number, \"growth_tracker\": integer}");
    }
}

/// The score that decides "best": higher is better (val_loss is negated).
inline double score_of(const std::string& metric, double acc, double auc, double loss) {
    if (metric == "val_auc") return std::isnan(auc) ? -INFINITY : auc;
    if (metric == "val_loss") return -loss;
    return acc;
}

template <class T, class B>
std::vector<EpochRow> fit(FitContext<T, B>& ctx, const FitOptions& o, std::ostream& out = std::cout) {
    namespace fs = std::filesystem;
    const auto& rep = ctx.replicas;
    const bool writer = rep.writer();
    const fs::path ckdir = fs::path(o.output_dir) / "checkpoints";
    std::error_code ec;
    if (writer) fs::create_directories(ckdir, ec);
    MEDIMG_CHECK(!ec, IoError, "train: cannot create output folder '", ckdir.string(), "': ", ec.message());
    // A run killed while writing a checkpoint (or metrics.csv) leaves its temporary file behind
    // (the file itself is intact: the rename never happened). Remove such leftovers (best
    // effort), so that repeated interruptions cannot fill the disk with 100 MB fragments.
    std::vector<fs::path> stale;
    for (auto it = writer ? fs::directory_iterator(ckdir, ec) : fs::directory_iterator(); !ec && it != fs::directory_iterator();
         it.increment(ec)) {
        const auto name = it->path().filename().string();
        if (name.rfind("best.safetensors.tmp-", 0) == 0 || name.rfind("last.safetensors.tmp-", 0) == 0) stale.push_back(it->path());
    }
    for (auto it = writer ? fs::directory_iterator(o.output_dir, ec) : fs::directory_iterator(); !ec && it != fs::directory_iterator();
         it.increment(ec))
        if (it->path().filename().string().rfind("metrics.csv.tmp-", 0) == 0) stale.push_back(it->path());
    for (const auto& p : stale) fs::remove(p, ec);
    MetricsCsv csv((fs::path(o.output_dir) / "metrics.csv").string(), ctx.previous_rows, writer);
    auto& model = *ctx.model;
    const auto params = model.named_parameters();
    const auto t0 = std::chrono::steady_clock::now();
    // Host batches -> backend (Cuda: pinned staging + asynchronous copies), and the running count
    // of right predictions kept on the backend: inside a step only the logged loss value comes
    // back to the host (train/upload.hpp).
    BatchUploader<B> upload;
    CorrectCounter<B> correct;
    GradClipper<B> clip;
    if (auto a = upload.host_allocator()) ctx.train->set_image_allocator(std::move(a));  // Cuda: collate into pinned blocks

    for (std::int64_t epoch = o.start_epoch; epoch <= o.epochs; ++epoch) {
        model.train();
        const double lr = ctx.optimizer->lr();
        double loss_sum = 0.0;
        std::int64_t seen = 0, batch_no = 0;
        correct.reset();
        const double wait0 = rep.comm_wait_seconds ? rep.comm_wait_seconds() : 0.0;
        const auto te = std::chrono::steady_clock::now();
        ctx.train->start_epoch(epoch);
        if (ctx.on_epoch_start) ctx.on_epoch_start(epoch);
        while (auto batch = ctx.train->next()) {
            ++batch_no;
            const auto n = batch->labels.numel();
            if (n == 0) continue;
            const auto images = upload(batch->images);  // (N, C, H, W)
            const auto labels = upload(batch->labels);  // (N)
            auto logits = model(autograd::Var<T, B>(images));
            auto loss = loss::cross_entropy(logits, labels, ctx.loss);
            const double lv = static_cast<double>(loss.value().item());
            MEDIMG_CHECK(std::isfinite(lv), ValueError, "train: loss is ", lv, " at epoch ", epoch, ", batch ", batch_no,
                         "; stopped (last good checkpoints kept). Lower train.lr or set train.grad_clip_norm");
            if (ctx.scaler) {  // torch.amp order: scale -> backward -> unscale -> clip -> step -> update
                if (rep.before_backward) rep.before_backward();
                ctx.scaler->scale(loss).backward();
                if (rep.after_backward) rep.after_backward();
                const bool finite = ctx.scaler->unscale(*ctx.optimizer);
                if (finite && o.grad_clip_norm > 0) clip(params, o.grad_clip_norm);
                ctx.scaler->step(*ctx.optimizer);
                ctx.scaler->update();
            } else {
                if (rep.before_backward) rep.before_backward();
                loss.backward();
                if (rep.after_backward) rep.after_backward();  // every rank now holds the averaged gradients
                if (o.grad_clip_norm > 0) clip(params, o.grad_clip_norm);
                ctx.optimizer->step();
            }
            ctx.optimizer->zero_grad();
            loss_sum += lv * static_cast<double>(n);
            seen += n;
            correct.add(logits.value(), labels);
            if (o.progress) {
                const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count();
                const double rate = static_cast<double>(seen) / std::max(s, 1e-9);
                const double eta = static_cast<double>(ctx.train->epoch_size() - seen) / std::max(rate, 1e-9);
                std::fprintf(stdout, "\repoch %lld  batch %lld/%lld  loss %.4f  %.1f img/s  ETA %.0fs   ", static_cast<long long>(epoch),
                             static_cast<long long>(batch_no), static_cast<long long>(ctx.train->num_batches()), loss_sum / seen, rate, eta);
                std::fflush(stdout);
            }
        }
        std::int64_t right = correct.count();  // one read per epoch
        if (rep.sum) {  // the epoch's figures over every rank's share
            std::vector<double> v{loss_sum, static_cast<double>(seen), static_cast<double>(right)};
            rep.sum(v);
            loss_sum = v[0];
            seen = static_cast<std::int64_t>(v[1]);
            right = static_cast<std::int64_t>(v[2]);
        }
        MEDIMG_CHECK(seen > 0, ValueError, "train: epoch ", epoch, " had no readable training sample");
        const double train_secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count();
        // A failed validation (e.g. non-finite outputs: the last steps of the epoch made the weights
        // non-finite although every training loss was finite) stops before any checkpoint is written.
        Evaluation ev;
        try {
            if (rep.before_validation) rep.before_validation();
            ev = evaluate(model, *ctx.val, ctx.num_classes, ctx.loss, &upload);
            if (rep.gather) rep.gather(ev);
        } catch (const ValueError& e) {
            throw ValueError(::medimg::detail::concat("train: validation after epoch ", epoch, ": ", e.what(),
                                                      "; stopped (last good checkpoints kept)"));
        }
        if (ctx.scheduler) ctx.scheduler->step();

        EpochRow row{epoch, loss_sum / seen, static_cast<double>(right) / seen, ev.loss, ev.report.accuracy, ev.report.macro_auc,
                     lr, std::chrono::duration<double>(std::chrono::steady_clock::now() - te).count()};
        csv.append(row);
        if (o.progress) out << "\r" << std::string(90, ' ') << "\r";
        char line[256];
        std::snprintf(line, sizeof line,
                      "epoch %lld/%lld  train loss %.4f acc %.3f | val loss %.4f acc %.3f auc %.3f | lr %.3g | %.1fs, %.1f img/s",
                      static_cast<long long>(epoch), static_cast<long long>(o.epochs), row.train_loss, row.train_acc, row.val_loss,
                      row.val_acc, row.val_auc, lr, row.seconds, static_cast<double>(seen) / train_secs);
        out << line;
        if (rep.comm_wait_seconds) {  // the communication the backward did not hide, this rank
            std::snprintf(line, sizeof line, " | %d processes, all-reduce wait %.2fs", rep.world, rep.comm_wait_seconds() - wait0);
            out << line;
        }
        if (ctx.scaler && ctx.scaler->skipped() > 0) {
            out << " | loss scaling: " << ctx.scaler->skipped() << " steps skipped (gradient overflow), scale now " << ctx.scaler->get_scale();
            ctx.scaler->reset_skipped();
        }
        out << std::flush;

        auto meta = ctx.meta;
        meta.epoch = epoch;
        meta.metrics = {{"train_loss", row.train_loss}, {"train_acc", row.train_acc}, {"val_loss", row.val_loss},
                        {"val_acc", row.val_acc}, {"val_auc", row.val_auc}};
        const double score = score_of(o.checkpoint_metric, row.val_acc, row.val_auc, row.val_loss);
        const bool improved = score > ctx.best_score;
        if (improved) {
            ctx.best_score = score;
            ctx.epochs_without_improvement = 0;
            if (writer) io::save_checkpoint((ckdir / "best.safetensors").string(), model, meta);
            out << "  (best)";
        } else {
            ++ctx.epochs_without_improvement;
        }
        meta.extra["best_score"] = std::to_string(ctx.best_score);
        meta.extra["epochs_without_improvement"] = std::to_string(ctx.epochs_without_improvement);
        if (ctx.extra_meta)
            for (auto& [k, v] : ctx.extra_meta()) meta.extra[k] = v;
        if (ctx.scaler) meta.extra["grad_scaler_state"] = grad_scaler_state_json(ctx.scaler->state());
        if (writer) io::save_checkpoint((ckdir / "last.safetensors").string(), model, meta, ctx.optimizer->state_dict());
        out << "\n";
        if (o.stop_after > 0 && epoch >= o.stop_after) break;
        if (o.early_stopping_patience > 0 && ctx.epochs_without_improvement >= o.early_stopping_patience) {
            out << "early stopping: " << o.checkpoint_metric << " did not improve for " << o.early_stopping_patience << " epochs\n";
            break;
        }
    }
    (void)t0;
    return csv.rows();
}

}  // namespace medimg::train
