// SPDX-License-Identifier: MIT
// train/csv.hpp: the per-epoch metrics log. The whole file is rewritten atomically after every
// epoch (io/atomic_file.hpp: temporary file + fsync + rename), so a crash or power cut leaves the previous complete
// log, never a torn line. Numbers are printed with fixed precision so two identical runs give
// identical files.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "medimg/error.hpp"
#include "medimg/io/atomic_file.hpp"

namespace medimg::train {

struct EpochRow {
    std::int64_t epoch = 0;
    double train_loss = 0, train_acc = 0, val_loss = 0, val_acc = 0, val_auc = 0, lr = 0, seconds = 0;
};

inline std::string csv_header() { return "epoch,train_loss,train_acc,val_loss,val_acc,val_auc,lr,seconds"; }
inline std::string csv_line(const EpochRow& r) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "%lld,%.6f,%.6f,%.6f,%.6f,%.6f,%.8g,%.2f", static_cast<long long>(r.epoch), r.train_loss,
                  r.train_acc, r.val_loss, r.val_acc, r.val_auc, r.lr, r.seconds);
    return buf;
}

class MetricsCsv {
public:
    /// write = false keeps the rows without writing (the ranks of a data-parallel run but rank 0).
    explicit MetricsCsv(std::string path, std::vector<EpochRow> rows = {}, bool write = true)
        : path_(std::move(path)), rows_(std::move(rows)), write_(write) {}
    void append(const EpochRow& r) {
        rows_.push_back(r);
        if (!write_) return;
        std::string text = csv_header() + "\n";
        for (const auto& row : rows_) text += csv_line(row) + "\n";
        // Atomically (io/atomic_file.hpp): after a crash or a power cut the log is the old one or
        // the new one, and a checkpoint written afterwards never lands on disk before it.
        io::write_file_atomically(path_, {{text.data(), text.size()}}, "train");
    }
    const std::vector<EpochRow>& rows() const { return rows_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    std::vector<EpochRow> rows_;
    bool write_ = true;
};

}  // namespace medimg::train
