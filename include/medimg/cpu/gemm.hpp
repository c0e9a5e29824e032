// SPDX-License-Identifier: MIT
// cpu/gemm.hpp: row-major matrix views over raw pointers and the GEMM calls every CPU layer uses.
// float goes to cpu/sgemm.hpp's AVX-512 / AVX2 micro-kernels when the processor has them (chosen
// at run time, so a portable build is still fast); double, and float elsewhere, to Eigen. Both
// thread themselves when called outside a parallel region and run serially inside one, so
// callers choose the level of parallelism: over images when the batch is large, inside the GEMM
// when it is not.
#pragma once

#include <cstdint>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "medimg/cpu/sgemm.hpp"

namespace medimg::cpu {

template <class T>
using MatR = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MapR = Eigen::Map<MatR<T>, Eigen::Unaligned>;
template <class T>
using CMapR = Eigen::Map<const MatR<T>, Eigen::Unaligned>;
template <class T>
using MapS = Eigen::Map<MatR<T>, Eigen::Unaligned, Eigen::OuterStride<>>;
template <class T>
using CMapS = Eigen::Map<const MatR<T>, Eigen::Unaligned, Eigen::OuterStride<>>;

/// As gemm() below, with explicit leading dimensions (row strides) for a, b and c.
template <class T>
void gemm_ld(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, std::int64_t lda, const T* b,
             std::int64_t ldb, T* c, std::int64_t ldc, bool accumulate) {
    if constexpr (std::is_same_v<T, float>) {
        if (sgemm::available()) {
            sgemm::gemm(m, n, k, {a, lda, ta}, {b, ldb, tb}, c, ldc, accumulate);
            return;
        }
    }
    MapS<T> C(c, m, n, Eigen::OuterStride<>(ldc));
    auto run = [&](const auto& A, const auto& B) {
        if (accumulate)
            C.noalias() += A * B;
        else
            C.noalias() = A * B;
    };
    using S = Eigen::OuterStride<>;
    if (!ta && !tb) run(CMapS<T>(a, m, k, S(lda)), CMapS<T>(b, k, n, S(ldb)));
    else if (ta && !tb) run(CMapS<T>(a, k, m, S(lda)).transpose(), CMapS<T>(b, k, n, S(ldb)));
    else if (!ta && tb) run(CMapS<T>(a, m, k, S(lda)), CMapS<T>(b, n, k, S(ldb)).transpose());
    else run(CMapS<T>(a, k, m, S(lda)).transpose(), CMapS<T>(b, n, k, S(ldb)).transpose());
}

/// c (m, n) = a (m, k) * b (k, n), or += when accumulate.  a/b optionally transposed views:
/// ta: a is stored (k, m); tb: b is stored (n, k).
template <class T>
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, const T* b, T* c,
          bool accumulate) {
    if constexpr (std::is_same_v<T, float>) {
        if (sgemm::available()) {
            sgemm::gemm(m, n, k, {a, ta ? m : k, ta}, {b, tb ? k : n, tb}, c, n, accumulate);
            return;
        }
    }
    MapR<T> C(c, m, n);
    auto run = [&](const auto& A, const auto& B) {
        if (accumulate)
            C.noalias() += A * B;
        else
            C.noalias() = A * B;
    };
    if (!ta && !tb) run(CMapR<T>(a, m, k), CMapR<T>(b, k, n));
    else if (ta && !tb) run(CMapR<T>(a, k, m).transpose(), CMapR<T>(b, k, n));
    else if (!ta && tb) run(CMapR<T>(a, m, k), CMapR<T>(b, n, k).transpose());
    else run(CMapR<T>(a, k, m).transpose(), CMapR<T>(b, n, k).transpose());
}

/// A weight matrix W (m, k), row-major, kept for many products W * B (the inference path's folded
/// convolution filters): float on a processor with the micro-kernels keeps it packed in their
/// panel layout, so no product packs it again; otherwise the plain rows, through gemm_ld.
template <class T>
class PackedWeights {
public:
    /// Copies (and packs) w (m, k).
    void assign(const T* w, std::int64_t m, std::int64_t k) {
        m_ = m;
        k_ = k;
        packed_ = false;
        if constexpr (std::is_same_v<T, float>) {
            if (sgemm::available() && k > 0) {
                data_.resize(static_cast<std::size_t>(sgemm::packed_a_size(m, k)));
                sgemm::pack_a(m, k, {w, k, false}, data_.data());
                packed_ = true;
                return;
            }
        }
        data_.assign(w, w + m * k);
    }
    /// c (m, n) = W * b (k, n), or += when accumulate; b and c rows ldb and ldc apart.
    void multiply(std::int64_t n, const T* b, std::int64_t ldb, T* c, std::int64_t ldc, bool accumulate) const {
        if constexpr (std::is_same_v<T, float>) {
            if (packed_) {
                sgemm::gemm_packed_a(m_, n, k_, data_.data(), {b, ldb, false}, c, ldc, accumulate);
                return;
            }
        }
        gemm_ld(false, false, m_, n, k_, data_.data(), k_, b, ldb, c, ldc, accumulate);
    }
    std::int64_t rows() const { return m_; }
    std::int64_t depth() const { return k_; }

private:
    std::vector<T> data_;
    std::int64_t m_ = 0, k_ = 0;
    bool packed_ = false;
};

}  // namespace medimg::cpu
