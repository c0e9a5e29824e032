// SPDX-License-Identifier: MIT
// device.hpp: the backend tags. A backend is a type, chosen at compile time: Tensor<float, Cpu>,
// Tensor<float, Cuda>. Implementations specialise per-op structs on these tags (ops/*.hpp);
// there is no run-time device switch inside an op.
#pragma once

#include <type_traits>

namespace medimg {

/// Host memory, kernels in medimg::cpu (Eigen GEMM, OpenMP loops). Always available.
struct Cpu {
    static constexpr const char* name = "cpu";
};
/// NVIDIA GPU memory, kernels in medimg::cuda. Usable only in a TU compiled by nvcc.
struct Cuda {
    static constexpr const char* name = "cuda";
};

namespace detail {
template <class>
inline constexpr bool dependent_false = false;
}  // namespace detail
}  // namespace medimg
