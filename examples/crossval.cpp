// SPDX-License-Identifier: MIT
// medimg-crossval: k-fold cross-validation of the config's training recipe. The train and val
// splits are pooled; data::stratified_group_kfold makes folds that keep each group (a patient, a
// volume: --groups CSV "path,group") inside one fold and keep the class mix. For fold f, fold f is
// the test set, fold f+1 (mod k) the validation set (best checkpoint, early stopping, temperature)
// and the rest the training set; each fold trains from scratch with medimg-train's run, in
// <output.dir>/crossval/r<repeat>/fold<f>, over a view of the data made of symbolic links (the
// files themselves are not copied). Out-of-fold probabilities (calibrated with the fold's
// temperature) go to oof.csv, each fold's figures to folds.csv, and the pooled out-of-fold AUC
// with its DeLong interval and the mean +- sd over folds to the console and summary.json; the
// report (report.html: every figure with its interval, per-fold AUCs, the pooled curves, the
// reliability diagram, each fold's training curves, the worst out-of-fold errors with Grad-CAM).
// Resumes: a finished fold is skipped, an interrupted one continues from its last checkpoint.
#include <medimg/medimg.hpp>
#include <medimg/train/run.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iterator>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "device.hpp"
#include "explain_overlay.hpp"

static const char* kUsage = R"(usage: medimg-crossval --config FILE --folds K [--groups FILE.csv | --group-by-folder] [--repeats R]
                       [--set key=value ...]

  --config FILE     the training configuration (its train and val splits are pooled; test is not used)
  --folds K         number of folds, 3 or more (one tests, the next validates, the rest train), at
                    most the size of the smallest class
  --groups FILE     CSV "path,group" (a header line is allowed): images of one group (patient,
                    volume, slice block) stay in one fold; images not listed are groups of their own
  --group-by-folder the images under one subfolder of a class folder (train/lesao/p017/...) are one
                    group, named by that subfolder (p017 under another class folder is the same
                    group: the same patient); images straight in a class folder are groups of their own
  --repeats R       repeat with R different shuffles of the groups (default 1: folds as scikit-learn's
                    StratifiedGroupKFold without shuffling)
  --set key=value   override one config key (repeatable)
  --help            this text

Writes <output.dir>/crossval/: r<r>/fold<f>/ (each fold's run), oof.csv, folds.csv, summary.json and
report.html (one self-contained page: the figures with their intervals, per-fold results, curves,
calibration, training curves, the worst out-of-fold errors with Grad-CAM).
Run it again to resume. Research software: not for clinical diagnosis.
)";

namespace {
namespace fs = std::filesystem;
using namespace medimg;

/// One image of the pooled data set.
struct Item {
    std::string path;   // as the dataset lists it
    std::string key;    // canonical path, to match --groups and to detect duplicates
    std::int64_t label;
    std::string folder;  // the subfolder of the class folder it lies in ("" straight in it)
};

std::string canonical(const std::string& p) {
    std::error_code ec;
    const auto c = fs::weakly_canonical(p, ec);
    return ec ? p : c.string();
}

/// --groups: canonical path -> group. Every listed file must be in the pooled data.
std::map<std::string, std::string> read_groups(const std::string& csv, const std::set<std::string>& known) {
    io::check_input_file(csv, "--groups");  // a FIFO would block the open below
    std::ifstream in(csv);
    MEDIMG_CHECK(in.good(), IoError, "--groups: cannot open '", csv, "'");
    std::map<std::string, std::string> out;
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty() || (n == 1 && line == "path,group")) continue;
        const auto comma = line.rfind(',');
        MEDIMG_CHECK(comma != std::string::npos && comma > 0 && comma + 1 < line.size(), IoError, "--groups: ", csv, ":", n,
                     ": expected 'path,group', got '", line, "'");
        const std::string path = line.substr(0, comma), group = line.substr(comma + 1);
        const auto key = canonical(path);
        MEDIMG_CHECK(known.count(key), IoError, "--groups: ", csv, ":", n, ": '", path,
                     "' is not an image of the train or val split (paths are as on the command line's working folder)");
        MEDIMG_CHECK(out.emplace(key, group).second || out[key] == group, IoError, "--groups: ", csv, ":", n, ": '", path,
                     "' is listed in two groups ('", out[key], "' and '", group, "')");
    }
    return out;
}

/// The link's name: the file's, with "__<n>" before its format's extension, ".nii.gz" kept whole
/// (vol.nii.gz -> vol__7.nii.gz; vol.nii__7.gz would not be read as NIfTI).
std::string link_name(const fs::path& src, std::size_t n) {
    const std::string name = src.filename().string();
    const std::string lower = data::lower_name(src);
    const std::size_t ext = lower.size() > 7 && lower.compare(lower.size() - 7, 7, ".nii.gz") == 0 ? 7 : src.extension().string().size();
    return name.substr(0, name.size() - ext) + "__" + std::to_string(n) + name.substr(name.size() - ext);
}

/// Links root/<split>/<class>/<stem>__<n>.<ext> -> the item's file, for one fold's split.
void link_split(const fs::path& root, const std::vector<Item>& items, const std::vector<std::size_t>& which,
                const std::vector<std::string>& classes) {
    for (const auto& c : classes) fs::create_directories(root / c);
    for (std::size_t n = 0; n < which.size(); ++n) {
        const auto& it = items[which[n]];
        const fs::path src(it.key);
        const fs::path dst = root / classes[static_cast<std::size_t>(it.label)] / link_name(src, which[n]);
        std::error_code ec;
        if (!fs::is_symlink(dst, ec)) {  // else made by an earlier, interrupted run
            fs::create_symlink(src, dst, ec);
            MEDIMG_CHECK(!ec, IoError, "crossval: cannot link '", dst.string(), "' to '", src.string(), "': ", ec.message());
        }
        // the fold's data set must read the link as the pooled one read the file, or it would
        // drop the image without a word
        MEDIMG_CHECK(data::file_format(dst) == data::file_format(src), IoError, "crossval: the link '", dst.string(), "' to '",
                     src.string(), "' is not read as that file's format (an unusual file name); rename the file");
    }
}

double mean(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x;
    return s / static_cast<double>(v.size());
}
double sd(const std::vector<double>& v) {  // sample standard deviation
    if (v.size() < 2) return 0;
    const double m = mean(v);
    double s = 0;
    for (double x : v) s += (x - m) * (x - m);
    return std::sqrt(s / static_cast<double>(v.size() - 1));
}
/// <root>/report.html: the pooled out-of-fold evaluation (report/evaluation.hpp), each fold's
/// training curves and the worst out-of-fold errors, each explained by its own fold's best model.
void write_report(const fs::path& root, const io::Config& cfg, int K, int repeats, std::size_t images, const std::vector<double>& probs,
                  const std::vector<double>& raw, const std::vector<std::int64_t>& labels, const std::vector<std::string>& paths,
                  const std::vector<std::size_t>& fold_of, const std::vector<fs::path>& fold_dirs,
                  const std::vector<report::FoldResult>& folds, const metrics::Interval& pooled_auc) {
    const auto& classes = cfg.data.classes;
    const auto C = static_cast<std::int64_t>(classes.size());
    report::EvaluationInput in;
    in.title = "medimg-crossval: " + std::to_string(K) + "-fold cross-validation, out-of-fold predictions";
    in.about = {{"configuration", cfg.source},
                {"data", std::to_string(images) + " images (train + val pooled): " + cfg.data.train + ", " + cfg.data.val},
                {"folds", std::to_string(K) + (repeats > 1 ? " x " + std::to_string(repeats) + " repeats" : "") +
                              " (stratified, groups kept whole; for fold f: test f, validation f+1)"},
                {"architecture", cfg.model.name}};
    in.classes = classes;
    in.probs = probs;
    in.uncalibrated = raw;
    in.calibration_name = "each fold's temperature";
    in.labels = labels;
    in.pooled_auc = pooled_auc;
    in.folds = folds;
    for (std::size_t d = 0; d < fold_dirs.size(); ++d) {
        const auto log = fold_dirs[d] / "run" / "metrics.csv";
        try {
            in.training.push_back({folds[d].name, train::read_metrics_csv(log.string(), INT64_MAX)});
        } catch (const std::exception&) {
            in.training.push_back({folds[d].name, {}});  // a fold finished by an older version: no log
        }
    }
    const auto [fn, fp] = report::worst_errors(probs, labels, C, in.options.threshold, 6);
    const std::int64_t target = C == 2 ? 1 : -1;
    // each fold's model loaded once, for the cases it tested; the thumbnails keep the cases' order
    const auto thumbs = [&](const std::vector<std::size_t>& which) {
        std::vector<report::Thumbnail> out(which.size(), report::Thumbnail{report::Canvas(1, 1), ""});
        for (std::size_t d = 0; d < fold_dirs.size(); ++d) {
            std::vector<std::size_t> slots;
            for (std::size_t n = 0; n < which.size(); ++n)
                if (fold_of[which[n]] == d) slots.push_back(n);
            if (slots.empty()) continue;
            const auto ck = io::Checkpoint::load((fold_dirs[d] / "run" / "checkpoints" / "best.safetensors").string());
            const auto pre = train::Preprocessing::from_meta(ck.meta());
            auto model = nn::make_model<float, Cpu>(ck.meta().architecture, train::model_options(ck.meta(), C));
            ck.load_into(*model, ck.meta().architecture);
            std::vector<GalleryCase> cases;
            for (auto n : slots) {
                const auto i = which[n];
                cases.push_back({paths[i], labels[i],
                                 std::vector<double>(probs.begin() + static_cast<std::ptrdiff_t>(i * static_cast<std::size_t>(C)),
                                                     probs.begin() + static_cast<std::ptrdiff_t>((i + 1) * static_cast<std::size_t>(C)))});
            }
            auto t = gallery_thumbnails<Cpu>(*model, pre, classes, cases, target);
            for (std::size_t m = 0; m < slots.size(); ++m) {
                // oof paths are canonical: shown from the working folder, as the user named the data
                const auto& path = cases[m].path;
                const auto shown = fs::path(path).lexically_proximate(fs::current_path()).string();
                t[m].caption = folds[d].name + ": " + io::escape_invalid_utf8(shown.empty() ? path : shown);
                out[slots[m]] = std::move(t[m]);
            }
        }
        return out;
    };
    in.false_negatives = thumbs(fn);
    in.false_positives = thumbs(fp);
    in.gallery_note = std::string("Each image explained by the model of the fold that tested it: Grad-CAM for ") +
                      (C == 2 ? "'" + classes[1] + "'" : std::string("the predicted class")) + ", min-max scaled per image; at most 6 of each.";
    report::evaluation_report(in).save((root / "report.html").string());
}
}  // namespace

int main(int argc, char** argv) try {
    const auto args = cli::parse(argc, argv, {"--config", "--set", "--folds", "--groups", "--repeats"}, {"--help", "--group-by-folder"}, kUsage);
    if (args.has("--help")) {
        std::cout << kUsage;
        return 0;
    }
    auto cfg = io::load_config(args.require("--config"), args.all("--set"));
    if (cfg.runtime.threads > 0) set_num_threads(static_cast<int>(cfg.runtime.threads));
    use_gpu<Cuda>(cfg, "medimg-crossval");  // a g++ build: the CPU, or one clear error for cuda
    MEDIMG_CHECK(args.has("--folds"), ConfigError, "missing required option --folds (see --help)");
    const int K = static_cast<int>(args.number("--folds", 1, 100, true, 5));
    MEDIMG_CHECK(K >= 3, ConfigError, "--folds ", K, " leaves no images to train on: fold f is the test set and fold f+1 the "
                 "validation set, so at least 3 folds are needed");
    const int repeats = static_cast<int>(args.number("--repeats", 1, 100, true, 1));
    const auto& classes = cfg.data.classes;

    // The pooled data set (train + val), each file once: folds are made of files, so the slices of
    // a volume (data.volume_slices) always stay in one fold.
    std::vector<Item> items;
    std::set<std::string> keys;
    const auto volumes = train::Preprocessing::from_config(cfg).volume_options();
    for (const auto& split : {cfg.data.train, cfg.data.val}) {
        const auto ds = data::FolderDataset::scan(split, classes, volumes);
        for (std::int64_t i = 0; i < ds.size(); ++i) {
            if (i > 0 && ds.path(i) == ds.path(i - 1)) continue;  // another slice of the same volume
            const fs::path rel = fs::path(ds.path(i)).lexically_relative(fs::path(split) / classes[static_cast<std::size_t>(ds.label(i))]);
            const std::string folder = std::distance(rel.begin(), rel.end()) > 1 ? rel.begin()->string() : std::string();
            Item it{ds.path(i), canonical(ds.path(i)), ds.label(i), folder};
            MEDIMG_CHECK(keys.insert(it.key).second, IoError, "crossval: '", it.path,
                         "' appears twice in the train and val splits (the same image would be trained on and tested)");
            items.push_back(it);
        }
    }
    MEDIMG_CHECK(!(args.has("--groups") && args.has("--group-by-folder")), ConfigError,
                 "--groups and --group-by-folder both name the groups; give one of them");
    const bool by_folder = args.has("--group-by-folder");
    const auto groups_of = args.has("--groups") ? read_groups(args.get("--groups"), keys) : std::map<std::string, std::string>{};
    const auto in_subfolders = std::count_if(items.begin(), items.end(), [](const Item& it) { return !it.folder.empty(); });
    if (by_folder)
        MEDIMG_CHECK(in_subfolders > 0, ConfigError, "--group-by-folder: no image of the train or val split lies in a subfolder of its "
                     "class folder (", cfg.data.train, "/<class>/<subfolder>/...), so there are no folders to group by");
    std::vector<std::int64_t> labels;
    std::vector<std::string> groups, paths;
    for (const auto& it : items) {
        labels.push_back(it.label);
        const auto g = groups_of.find(it.key);
        if (by_folder && !it.folder.empty())
            groups.push_back("d:" + it.folder);
        else
            groups.push_back(g != groups_of.end() ? "g:" + g->second : "f:" + it.key);  // unlisted: a group of its own
        paths.push_back(it.key);
    }
    // Every repeat's folds first: impossible fold counts and leaks stop the run before it writes anything.
    std::vector<std::vector<int>> folds_of;
    for (int r = 0; r < repeats; ++r) {
        folds_of.push_back(data::stratified_group_kfold(labels, groups, K, r > 0, cfg.train.seed + static_cast<std::uint64_t>(r)));
        data::check_folds(paths, groups, folds_of.back());
    }
    const fs::path root = fs::path(cfg.output_dir) / "crossval";
    fs::create_directories(root);
    std::cout << "crossval: " << items.size() << " images (train + val pooled), " << K << " folds"
              << (repeats > 1 ? ", " + std::to_string(repeats) + " repeats" : "")
              << (by_folder ? ", groups by subfolder" : groups_of.empty() ? ", one group per image" : ", groups from " + args.get("--groups"))
              << "\n";
    if (!by_folder && groups_of.empty() && in_subfolders > 0)
        std::cout << "note: " << in_subfolders << " of the images lie in subfolders of their class folders; if a subfolder holds one "
                  << "patient, --group-by-folder keeps each patient in one fold (otherwise the AUC also measures recognising the patient)\n";

    std::ostringstream oof, folds_csv;
    oof << "repeat,fold,path,label";
    for (const auto& c : classes) oof << ",p_" << c;
    oof << "\n";
    folds_csv << "repeat,fold,images,accuracy,roc_auc,roc_auc_lo,roc_auc_hi,log_loss,ece,temperature\n";
    std::vector<double> fold_auc, fold_acc;
    std::vector<double> pooled_probs, pooled_raw;  // calibrated; as the softmax gave them
    std::vector<std::int64_t> pooled_labels;
    std::vector<std::string> pooled_paths;           // the original files
    std::vector<std::size_t> pooled_fold;            // index into fold_dirs
    std::vector<fs::path> fold_dirs;
    std::vector<report::FoldResult> fold_results;
    const auto K64 = static_cast<std::int64_t>(classes.size());
    for (int r = 0; r < repeats; ++r) {
        const auto& fold = folds_of[static_cast<std::size_t>(r)];
        for (int f = 0; f < K; ++f) {
            const fs::path dir = root / ("r" + std::to_string(r)) / ("fold" + std::to_string(f));
            std::vector<std::size_t> tr, va, te;
            for (std::size_t i = 0; i < items.size(); ++i)
                (fold[i] == f ? te : fold[i] == (f + 1) % K ? va : tr).push_back(i);
            link_split(dir / "data" / "train", items, tr, classes);
            link_split(dir / "data" / "val", items, va, classes);
            link_split(dir / "data" / "test", items, te, classes);
            io::Config fc = cfg;
            fc.data.train = (dir / "data" / "train").string();
            fc.data.val = (dir / "data" / "val").string();
            fc.data.test = "";  // this fold's test set is evaluated below, with the calibration
            fc.output_dir = (dir / "run").string();
            const fs::path result = dir / "test_probabilities.json";
            if (!fs::exists(result)) {
                const bool resume = fs::exists(fs::path(fc.output_dir) / "checkpoints" / "last.safetensors");
                std::cout << "== repeat " << r << ", fold " << f << ": train " << tr.size() << ", val " << va.size() << ", test "
                          << te.size() << (resume ? " (resuming)" : "") << "\n";
                train::run_training<float, Cpu>(fc, resume, std::cout);
                const auto ck = io::Checkpoint::load((fs::path(fc.output_dir) / "checkpoints" / "best.safetensors").string());
                const auto pre = train::Preprocessing::from_meta(ck.meta());
                auto model = nn::make_model<float, Cpu>(ck.meta().architecture, train::model_options(ck.meta(), K64));
                ck.load_into(*model, ck.meta().architecture);
                const auto test_ds = data::FolderDataset::scan((dir / "data" / "test").string(), classes, pre.volume_options());
                auto loader = train::make_loader(test_ds, pre.eval(), pre.read_settings(), fc, false);
                const auto ev = train::evaluate(*model, *loader, K64);
                const double t = train::calibration_temperature(ck.meta(), "", "best");
                nlohmann::json j;
                j["temperature"] = t;
                j["probabilities"] = metrics::with_temperature(ev.probs, K64, t);
                j["labels"] = ev.labels;
                std::vector<std::string> tpaths;
                std::vector<std::int64_t> tslices;  // -1: the file is one image; else the slice of a volume
                for (auto idx : ev.indices) {
                    tpaths.push_back(test_ds.path(idx));
                    tslices.push_back(test_ds.sample(idx).slice);
                }
                j["paths"] = tpaths;
                j["slices"] = tslices;
                const std::string text = j.dump();
                io::write_file_atomically(result.string(), {{text.data(), text.size()}}, "crossval");
            } else {
                std::cout << "== repeat " << r << ", fold " << f << ": done earlier (" << result.string() << ")\n";
            }
            // The fold's result, written above or by an earlier run: a damaged one (a file edited by
            // hand, a disk error) is one line naming it, not nlohmann's "[json.exception...]" text.
            std::vector<double> probs;
            std::vector<std::int64_t> y, ts;
            std::vector<std::string> tp;
            double temperature = 1.0;
            try {
                io::check_input_file(result.string(), "crossval");
                std::ifstream in(result);
                const auto j = nlohmann::json::parse(in);
                probs = j.at("probabilities").get<std::vector<double>>();
                y = j.at("labels").get<std::vector<std::int64_t>>();
                tp = j.at("paths").get<std::vector<std::string>>();
                ts = j.contains("slices") ? j.at("slices").get<std::vector<std::int64_t>>() : std::vector<std::int64_t>(tp.size(), -1);
                temperature = j.at("temperature").get<double>();
            } catch (const nlohmann::json::exception&) {
                throw IoError("crossval: " + result.string() +
                              ": not a fold result of medimg-crossval (damaged?); delete it and run again to recompute the fold");
            }
            MEDIMG_CHECK(probs.size() == y.size() * static_cast<std::size_t>(K64) && tp.size() == y.size() && ts.size() == y.size() &&
                             temperature > 0,
                         IoError, "crossval: ", result.string(),
                         ": its probabilities, labels, paths and slices disagree in length; delete it and run again to recompute the fold");
            const auto s = metrics::summarize(probs, y, K64);
            const auto& auc = K64 == 2 ? s.per_class[1].auc.auc : metrics::Interval{s.macro_auc, NAN, NAN};
            char row[256];
            std::snprintf(row, sizeof row, "%d,%d,%zu,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f,%.6f\n", r, f, y.size(), s.accuracy.value, auc.value,
                          auc.lo, auc.hi, s.log_loss, s.calibration.ece, temperature);
            folds_csv << row;
            std::printf("   fold %d: accuracy %.4f, ROC AUC %.4f (95%% CI %.4f-%.4f), ECE %.4f, %zu test images\n", f, s.accuracy.value,
                        auc.value, auc.lo, auc.hi, s.calibration.ece, y.size());
            fold_auc.push_back(auc.value);
            fold_acc.push_back(s.accuracy.value);
            fold_results.push_back({(repeats > 1 ? "r" + std::to_string(r) + "/" : std::string()) + "fold" + std::to_string(f),
                                    static_cast<std::int64_t>(y.size()), s.accuracy, auc, s.calibration.ece, temperature});
            fold_dirs.push_back(dir);
            // the softmax's own probabilities: undoing the temperature (softmax(T log p_T) = softmax(z))
            const auto raw = metrics::with_temperature(probs, K64, 1.0 / temperature);
            pooled_raw.insert(pooled_raw.end(), raw.begin(), raw.end());
            for (std::size_t i = 0; i < y.size(); ++i) {
                // the original file's path (the link's target), not the fold's link
                std::error_code ec;
                const auto target = fs::read_symlink(tp[i], ec);
                const std::string shown = data::SampleRef{ec ? tp[i] : target.string(), i < ts.size() ? ts[i] : -1}.display();
                oof << r << "," << f << "," << io::escape_invalid_utf8(shown) << "," << classes[static_cast<std::size_t>(y[i])];
                for (std::int64_t c = 0; c < K64; ++c) oof << "," << probs[i * static_cast<std::size_t>(K64) + static_cast<std::size_t>(c)];
                oof << "\n";
                pooled_labels.push_back(y[i]);
                pooled_paths.push_back(shown);
                pooled_fold.push_back(fold_dirs.size() - 1);
            }
            pooled_probs.insert(pooled_probs.end(), probs.begin(), probs.end());
        }
    }
    const std::string oof_text = oof.str(), folds_text = folds_csv.str();
    io::write_file_atomically((root / "oof.csv").string(), {{oof_text.data(), oof_text.size()}}, "crossval");
    io::write_file_atomically((root / "folds.csv").string(), {{folds_text.data(), folds_text.size()}}, "crossval");
    const auto pooled = metrics::summarize(pooled_probs, pooled_labels, K64);
    const auto& pauc = K64 == 2 ? pooled.per_class[1].auc.auc : metrics::Interval{pooled.macro_auc, NAN, NAN};
    std::printf("folds: accuracy %.4f +- %.4f, ROC AUC %.4f +- %.4f (mean +- sd over %zu folds)\n", mean(fold_acc), sd(fold_acc),
                mean(fold_auc), sd(fold_auc), fold_auc.size());
    std::printf("out-of-fold (pooled, %zu predictions): ROC AUC %.4f (95%% CI %.4f-%.4f, DeLong), accuracy %.4f (95%% CI %.4f-%.4f), "
                "ECE %.4f\n",
                pooled_labels.size(), pauc.value, pauc.lo, pauc.hi, pooled.accuracy.value, pooled.accuracy.lo, pooled.accuracy.hi,
                pooled.calibration.ece);
    nlohmann::ordered_json js;
    js["folds"] = K;
    js["repeats"] = repeats;
    js["images"] = items.size();
    js["fold_accuracy_mean"] = mean(fold_acc);
    js["fold_accuracy_sd"] = sd(fold_acc);
    js["fold_roc_auc_mean"] = mean(fold_auc);
    js["fold_roc_auc_sd"] = sd(fold_auc);
    js["oof_roc_auc"] = pauc.value;
    js["oof_roc_auc_ci"] = {pauc.lo, pauc.hi};
    js["oof_accuracy"] = pooled.accuracy.value;
    js["oof_accuracy_ci"] = {pooled.accuracy.lo, pooled.accuracy.hi};
    js["oof_ece"] = pooled.calibration.ece;
    const std::string summary = js.dump(2) + "\n";
    io::write_file_atomically((root / "summary.json").string(), {{summary.data(), summary.size()}}, "crossval");
    write_report(root, cfg, K, repeats, items.size(), pooled_probs, pooled_raw, pooled_labels, pooled_paths, pooled_fold, fold_dirs,
                 fold_results, pauc);
    std::cout << "wrote " << (root / "oof.csv").string() << ", folds.csv, summary.json, report.html\n";
    std::cout << "Research software: not for clinical diagnosis.\n";
    return 0;
} catch (...) {
    return medimg::cli::fail("medimg-crossval");  // one line for any exception (medimg::current_exception_message)
}
