// SPDX-License-Identifier: MIT
// train/csv.hpp: the per-epoch metrics log. The whole file is rewritten atomically after every
// epoch (temporary file + fsync + rename), so a crash or power cut leaves the previous complete
// log, never a torn line. Numbers are printed with fixed precision so two identical runs give
// identical files.
#pragma once

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "medimg/error.hpp"

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

/// Writes `text` to `path` via a temporary file in the same folder, fsync and a rename (then a
/// best-effort fsync of the folder), so that after a crash or a power cut the file is either the
/// old one or the new one, and a checkpoint written afterwards never lands on disk before it.
inline void write_text_atomic(const std::string& path, const std::string& text) {
    const std::string tmp = path + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    MEDIMG_CHECK(fd >= 0, IoError, "cannot write '", path, "': the folder is missing or not writable");
    const char* p = text.data();
    std::size_t left = text.size();
    bool ok = true;
    while (ok && left > 0) {
        const ::ssize_t w = ::write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        ok = w > 0;
        if (ok) p += w, left -= static_cast<std::size_t>(w);
    }
    ok = ok && ::fsync(fd) == 0;
    ok = (::close(fd) == 0) && ok;
    if (!ok) {
        std::remove(tmp.c_str());
        throw IoError("cannot write '" + path + "': write failed (disk full?)");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::remove(tmp.c_str());
        throw IoError("cannot write '" + path + "': " + ec.message());
    }
    std::string dir = std::filesystem::path(path).parent_path().string();
    const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)::fsync(dfd);
        ::close(dfd);
    }
}

class MetricsCsv {
public:
    explicit MetricsCsv(std::string path, std::vector<EpochRow> rows = {}) : path_(std::move(path)), rows_(std::move(rows)) {}
    void append(const EpochRow& r) {
        rows_.push_back(r);
        std::string text = csv_header() + "\n";
        for (const auto& row : rows_) text += csv_line(row) + "\n";
        write_text_atomic(path_, text);
    }
    const std::vector<EpochRow>& rows() const { return rows_; }
    const std::string& path() const { return path_; }

private:
    std::string path_;
    std::vector<EpochRow> rows_;
};

}  // namespace medimg::train
