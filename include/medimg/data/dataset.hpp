// SPDX-License-Identifier: MIT
// data/dataset.hpp: FolderDataset, the prototype's layout root/<class>/<image>. The class list
// and its order come from the configuration (the model's output order), not from the folder
// names sorted. A class folder's subfolders are walked too (root/<class>/<patient>/<image>), as
// torchvision's ImageFolder walks them (os.walk, links followed), and in its order: folders by
// their path, files by name within each, so indexing is the same everywhere and the same as
// ImageFolder's. Two differences, both on purpose: folders whose name starts with a dot
// (.ipynb_checkpoints, .git: copies and history, not data) are not walked, and a folder reached
// twice through links is walked once (os.walk would loop forever on a link to a parent).
// Files no reader takes (by name; data/readers.hpp) are skipped and counted; so are entries that
// are not regular files (a FIFO, a socket, a device, a dangling link: never opened, since reading
// one would block or never end; io/input_file.hpp). A configured class folder that is missing,
// not a folder, or holds no readable file (in any of its subfolders) is an error naming it.
// A volume (a NIfTI file, a multi-frame DICOM) becomes one sample per selected slice
// (data.volume_slices, along data.volume_axis), all in one group named by the file, so
// cross-validation never splits it; its header is read here to count the slices. Every other
// file is one sample and its own group. Decoding happens later, in the loader.
#pragma once

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "medimg/data/readers.hpp"
#include "medimg/error.hpp"

namespace medimg::data {

/// Files a data set takes: images, DICOM and NIfTI (by name; data/readers.hpp). Kept under its
/// old name: every format is an "image" to the programs.
inline bool is_image_file(const std::filesystem::path& p) { return is_readable_file(p); }

/// The files a reader takes (by name) in `dir` and its subfolders, in torchvision ImageFolder's
/// order: folders sorted by their path string (os.walk's, sorted), files by name within each.
/// Folders whose name starts with a dot are not walked; a folder reached twice through links is
/// walked once (of two links, the one with the smaller path, every time). Entries that are not
/// regular files, or that no reader takes, are counted in `skipped` and never opened. Throws
/// IoError "<what>: cannot list '<folder>': ..." for a folder that cannot be listed.
inline std::vector<std::filesystem::path> image_files_under(const std::filesystem::path& dir, std::int64_t& skipped, const char* what) {
    namespace fs = std::filesystem;
    std::vector<std::pair<std::string, std::string>> found;  // (folder as written, file name)
    std::set<std::string> pending{dir.string()}, walked;     // walked: canonical paths
    while (!pending.empty()) {
        const fs::path folder = *pending.begin();
        pending.erase(pending.begin());
        std::error_code ec;
        const fs::path real = fs::canonical(folder, ec);
        if (!walked.insert(ec ? folder.string() : real.string()).second) continue;
        ec.clear();
        for (fs::directory_iterator it(folder, ec), end; !ec && it != end; it.increment(ec)) {
            std::error_code type_ec;  // its own: a dangling link must not end the listing
            const fs::file_type type = it->status(type_ec).type();  // links followed
            if (type == fs::file_type::directory) {
                if (it->path().filename().string().rfind('.', 0) != 0) pending.insert(it->path().string());
            } else if (type == fs::file_type::regular && is_readable_file(it->path())) {
                found.emplace_back(folder.string(), it->path().filename().string());
            } else {
                ++skipped;
            }
        }
        MEDIMG_CHECK(!ec, IoError, what, ": cannot list '", folder.string(), "': ", ec.message());
    }
    std::sort(found.begin(), found.end());
    std::vector<fs::path> files;
    for (const auto& [folder, name] : found) files.push_back(fs::path(folder) / name);
    return files;
}

/// How volumes become samples (data.volume_slices, data.volume_axis).
struct VolumeOptions {
    SliceSelection slices;
    int axis = 2;  // RAS+: 0 sagittal, 1 coronal, 2 axial
};

class FolderDataset {
public:
    /// Indexes root/<classes[k]>/* for every k.
    static FolderDataset scan(const std::string& root, const std::vector<std::string>& classes, const VolumeOptions& volumes = {}) {
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
            const auto files = image_files_under(dir, d.skipped_non_images_, "dataset");
            MEDIMG_CHECK(!files.empty(), IoError, "dataset: class folder '", dir.string(),
                         "' holds no images (.png, .jpg, .bmp, .pgm, .dcm, .nii, .nii.gz, ...)");
            std::int64_t count = 0;
            for (auto& f : files) {
                const std::string path = f.string();
                // A file that may hold several slices is opened to count them; one that cannot be
                // read stays a single sample, and the loader reports it (data.skip_unreadable).
                std::int64_t depth = 1;
                const FileFormat fmt = file_format(f);
                if ((fmt == FileFormat::dicom || fmt == FileFormat::nifti) && format_available(fmt)) {
                    try {
                        depth = slice_count(path, volumes.axis);
                    } catch (const IoError&) {
                        depth = 1;
                    }
                }
                const bool volume = fmt == FileFormat::nifti || depth > 1;
                const auto slices = volume ? volumes.slices.indices(depth) : std::vector<std::int64_t>{-1};
                for (auto s : slices) {
                    d.samples_.push_back({path, s});
                    d.labels_.push_back(static_cast<std::int64_t>(k));
                    ++count;
                }
                if (volume) ++d.volumes_;
            }
            d.counts_[k] = count;
            MEDIMG_CHECK(count > 0, IoError, "dataset: class folder '", dir.string(), "' holds only volumes and data.volume_slices ('",
                         volumes.slices.text(), "') selects none of their slices");
        }
        return d;
    }

    std::int64_t size() const { return static_cast<std::int64_t>(samples_.size()); }
    /// The file sample i comes from.
    const std::string& path(std::int64_t i) const { return samples_.at(static_cast<std::size_t>(i)).path; }
    /// The file and slice of sample i.
    const SampleRef& sample(std::int64_t i) const { return samples_.at(static_cast<std::size_t>(i)); }
    /// "path" or "path[slice]": how programs name sample i.
    std::string name(std::int64_t i) const { return sample(i).display(); }
    /// The group of sample i (its file: the slices of a volume share one).
    const std::string& group(std::int64_t i) const { return path(i); }
    /// Files that became several samples (volumes).
    std::int64_t volumes() const { return volumes_; }
    std::int64_t label(std::int64_t i) const { return labels_.at(static_cast<std::size_t>(i)); }
    const std::vector<std::int64_t>& labels() const { return labels_; }
    const std::vector<std::string>& classes() const { return classes_; }
    /// Samples per class, in class order.
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
    std::vector<std::string> classes_;
    std::vector<SampleRef> samples_;
    std::vector<std::int64_t> labels_, counts_;
    std::int64_t skipped_non_images_ = 0, volumes_ = 0;
};

}  // namespace medimg::data
