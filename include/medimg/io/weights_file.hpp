// SPDX-License-Identifier: MIT
// io/weights_file.hpp: WeightsFile, one read-only interface over the two files pretrained weights
// come in: safetensors (io/safetensors.hpp) and torch.save's .pth/.pt (io/torch_pth.hpp). The
// format is decided by the file's first bytes, not its name: "PK\3\4" (a ZIP archive) or the legacy
// torch pickle goes to TorchStateDict, anything else to SafetensorsFile, whose messages then say
// what is wrong. Keys, shapes and tensor<T>() behave as in the two readers.
// Deliberately not here: writing, medimg checkpoints' metadata (io/checkpoint.hpp, safetensors only).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "medimg/core/tensor.hpp"
#include "medimg/io/safetensors.hpp"
#include "medimg/io/torch_pth.hpp"

namespace medimg::io {

/// A validated weights file of either format; errors are those of the reader chosen.
class WeightsFile {
public:
    enum class Format { safetensors, torch };

    /// Reads the first bytes, then hands the path to the reader they call for, which checks sizes
    /// before it reads the rest (a safetensors header is validated against the file's size first;
    /// a .pth file is bounded by TorchStateDict::max_file_bytes). A file that cannot be opened is
    /// reported as "pth: cannot open ..." for a .pth/.pt name, "safetensors: ..." otherwise.
    static WeightsFile load(const std::string& path) {
        const bool torch_name = ends_with_(path, ".pth") || ends_with_(path, ".pt");
        std::vector<std::uint8_t> head;
        {
            detail::InputFile in(path, torch_name ? "pth" : "safetensors");
            in.read_into(head, std::min<std::uint64_t>(in.size(), 16));  // the longest signature: 14 bytes
        }
        if (looks_like_torch_file(head.data(), head.size())) return WeightsFile(TorchStateDict::load(path));
        return WeightsFile(SafetensorsFile::load(path));
    }
    /// A file image already in memory; `name` stands for the file in messages.
    static WeightsFile load_from_memory(std::vector<std::uint8_t> bytes, std::string name = "<memory>") {
        if (looks_like_torch_file(bytes.data(), bytes.size()))
            return WeightsFile(TorchStateDict::load_from_memory(std::move(bytes), std::move(name)));
        return WeightsFile(SafetensorsFile::load_from_memory(std::move(bytes), std::move(name)));
    }

    Format format() const { return std::holds_alternative<TorchStateDict>(file_) ? Format::torch : Format::safetensors; }
    const std::string& name() const {
        return std::visit([](const auto& f) -> const std::string& { return f.name(); }, file_);
    }
    /// Tensor names: the state_dict's order for .pth, data-offset order for safetensors.
    std::vector<std::string> keys() const {
        return std::visit([](const auto& f) { return f.keys(); }, file_);
    }
    std::size_t size() const {
        return std::visit([](const auto& f) { return f.size(); }, file_);
    }
    bool contains(const std::string& key) const {
        return std::visit([&](const auto& f) { return f.contains(key); }, file_);
    }
    DType dtype(const std::string& key) const {
        return std::visit([&](const auto& f) { return f.dtype(key); }, file_);
    }
    Shape shape(const std::string& key) const {
        return std::visit([&](const auto& f) { return f.shape(key); }, file_);
    }
    /// A new tensor holding `key` converted to T (see SafetensorsFile::tensor, TorchStateDict::tensor).
    template <class T>
    Tensor<T, Cpu> tensor(const std::string& key) const {
        return std::visit([&](const auto& f) { return f.template tensor<T>(key); }, file_);
    }

private:
    explicit WeightsFile(SafetensorsFile f) : file_(std::move(f)) {}
    explicit WeightsFile(TorchStateDict f) : file_(std::move(f)) {}
    static bool ends_with_(const std::string& s, const char* suffix) {
        const std::string x(suffix);
        return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
    }
    std::variant<SafetensorsFile, TorchStateDict> file_;
};

}  // namespace medimg::io
