// SPDX-License-Identifier: MIT
// data/dataset.hpp: FolderDataset, the prototype's layout root/<class>/<image>. The class list
// and its order come from the configuration (the model's output order), not from the folder
// names sorted. Within a class, files are sorted by name so indexing is the same everywhere.
// Non-image files (by extension) are skipped and counted; a configured class folder that is
// missing, not a folder, or holds no image is an error naming it. Decoding happens later, in
// the loader; this only indexes.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "medimg/error.hpp"

namespace medimg::data {

/// File extensions read as images (compared case-insensitively).
inline bool is_image_file(const std::filesystem::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    for (const char* e : {".png", ".jpg", ".jpeg", ".bmp", ".pgm", ".ppm", ".pnm", ".tga"})
        if (ext == e) return true;
    return false;
}

class FolderDataset {
public:
    /// Indexes root/<classes[k]>/* for every k.
    static FolderDataset scan(const std::string& root, const std::vector<std::string>& classes) {
        namespace fs = std::filesystem;
        FolderDataset d;
        d.root_ = root;
        d.classes_ = classes;
        std::error_code ec;
        MEDIMG_CHECK(fs::is_directory(root, ec), IoError, "dataset: folder '", root, "' does not exist or is not a folder");
        d.counts_.assign(classes.size(), 0);
        for (std::size_t k = 0; k < classes.size(); ++k) {
            const fs::path dir = fs::path(root) / classes[k];
            MEDIMG_CHECK(fs::is_directory(dir, ec), IoError, "dataset: class folder '", dir.string(),
                         "' is missing (classes come from the config: data.classes)");
            std::vector<fs::path> files;
            for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
                if (!it->is_regular_file(ec)) continue;
                if (is_image_file(it->path()))
                    files.push_back(it->path());
                else
                    ++d.skipped_non_images_;
            }
            MEDIMG_CHECK(!ec, IoError, "dataset: cannot list '", dir.string(), "': ", ec.message());
            MEDIMG_CHECK(!files.empty(), IoError, "dataset: class folder '", dir.string(), "' holds no images (.png, .jpg, .bmp, .pgm, ...)");
            std::sort(files.begin(), files.end());
            for (auto& f : files) {
                d.paths_.push_back(f.string());
                d.labels_.push_back(static_cast<std::int64_t>(k));
            }
            d.counts_[k] = static_cast<std::int64_t>(files.size());
        }
        return d;
    }

    std::int64_t size() const { return static_cast<std::int64_t>(paths_.size()); }
    const std::string& path(std::int64_t i) const { return paths_.at(static_cast<std::size_t>(i)); }
    std::int64_t label(std::int64_t i) const { return labels_.at(static_cast<std::size_t>(i)); }
    const std::vector<std::int64_t>& labels() const { return labels_; }
    const std::vector<std::string>& classes() const { return classes_; }
    /// Images per class, in class order.
    const std::vector<std::int64_t>& class_counts() const { return counts_; }
    std::int64_t skipped_non_images() const { return skipped_non_images_; }
    const std::string& root() const { return root_; }

    /// Inverse-frequency class weights normalised to mean 1: w_k = N / (K * n_k)
    /// (sklearn's class_weight="balanced").
    std::vector<double> balanced_class_weights() const {
        std::vector<double> w;
        const double n = static_cast<double>(size()), k = static_cast<double>(classes_.size());
        for (auto c : counts_) w.push_back(n / (k * static_cast<double>(c)));
        return w;
    }

private:
    std::string root_;
    std::vector<std::string> classes_, paths_;
    std::vector<std::int64_t> labels_, counts_;
    std::int64_t skipped_non_images_ = 0;
};

}  // namespace medimg::data
