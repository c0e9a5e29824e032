// SPDX-License-Identifier: MIT
// shape.hpp: Shape, a small fixed-capacity list of dimensions (rank <= 6, no heap allocation).
// Layout everywhere is row-major and contiguous; images are NCHW as in PyTorch.
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <ostream>
#include <string>
#include <vector>

#include "medimg/error.hpp"

namespace medimg {

class Shape {
public:
    static constexpr int max_rank = 6;

    Shape() = default;
    Shape(std::initializer_list<std::int64_t> dims) { assign(dims.begin(), dims.end()); }
    explicit Shape(const std::vector<std::int64_t>& dims) { assign(dims.begin(), dims.end()); }

    int rank() const { return rank_; }
    std::int64_t operator[](int i) const { return dims_[static_cast<std::size_t>(i)]; }
    std::int64_t& operator[](int i) { return dims_[static_cast<std::size_t>(i)]; }
    /// Dimension i, where a negative i counts from the end (as in PyTorch).
    std::int64_t dim(int i) const {
        const int j = i < 0 ? i + rank_ : i;
        MEDIMG_CHECK(j >= 0 && j < rank_, ShapeError, "Shape::dim: index ", i, " out of range for ", to_string());
        return dims_[static_cast<std::size_t>(j)];
    }
    std::int64_t numel() const {
        std::int64_t n = 1;
        for (int i = 0; i < rank_; ++i) n *= dims_[static_cast<std::size_t>(i)];
        return n;
    }
    std::vector<std::int64_t> to_vector() const { return {dims_.begin(), dims_.begin() + rank_}; }
    const std::int64_t* begin() const { return dims_.data(); }
    const std::int64_t* end() const { return dims_.data() + rank_; }

    friend bool operator==(const Shape& a, const Shape& b) {
        if (a.rank_ != b.rank_) return false;
        for (int i = 0; i < a.rank_; ++i)
            if (a[i] != b[i]) return false;
        return true;
    }
    friend bool operator!=(const Shape& a, const Shape& b) { return !(a == b); }

    /// "[8,3,224,224]" (a scalar prints as "[]").
    std::string to_string() const {
        std::string s = "[";
        for (int i = 0; i < rank_; ++i) s += (i ? "," : "") + std::to_string(dims_[static_cast<std::size_t>(i)]);
        return s + "]";
    }
    friend std::ostream& operator<<(std::ostream& os, const Shape& s) { return os << s.to_string(); }

private:
    template <class It>
    void assign(It first, It last) {
        const auto n = last - first;
        MEDIMG_CHECK(n <= max_rank, ShapeError, "Shape: rank ", n, " exceeds the maximum of ", max_rank);
        rank_ = static_cast<int>(n);
        int i = 0;
        for (It it = first; it != last; ++it, ++i) {
            MEDIMG_CHECK(*it >= 0, ShapeError, "Shape: negative dimension ", *it, " at index ", i);
            dims_[static_cast<std::size_t>(i)] = *it;
        }
    }

    std::array<std::int64_t, max_rank> dims_{};
    int rank_ = 0;
};

}  // namespace medimg
