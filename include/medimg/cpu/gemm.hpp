// SPDX-License-Identifier: MIT
// cpu/gemm.hpp: row-major matrix views over raw pointers and the GEMM calls every CPU layer uses
// (Eigen's blocked, vectorised kernels). Eigen threads itself across the OpenMP team when called
// outside a parallel region and runs serially inside one, so callers choose the level of
// parallelism: over images when the batch is large, inside the GEMM when it is not.
#pragma once

#include <cstdint>

#include <Eigen/Core>

namespace medimg::cpu {

template <class T>
using MatR = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MapR = Eigen::Map<MatR<T>, Eigen::Unaligned>;
template <class T>
using CMapR = Eigen::Map<const MatR<T>, Eigen::Unaligned>;

/// c (m, n) = a (m, k) * b (k, n), or += when accumulate.  a/b optionally transposed views:
/// ta: a is stored (k, m); tb: b is stored (n, k).
template <class T>
void gemm(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, const T* a, const T* b, T* c,
          bool accumulate) {
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

}  // namespace medimg::cpu
