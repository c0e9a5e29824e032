// SPDX-License-Identifier: MIT
// config.hpp: the one place that decides what is compiled for the GPU, and the version.
// MEDIMG_HAS_CUDA is 1 only in a translation unit compiled by nvcc (modelled on cute/config.hpp);
// every other CUDA switch in the library derives from it. Define MEDIMG_DISABLE_CUDA to build a
// .cu file as host-only code.
#pragma once

#if defined(__CUDACC__) && !defined(MEDIMG_DISABLE_CUDA)
#  define MEDIMG_HAS_CUDA 1
#  define MEDIMG_HOST_DEVICE __host__ __device__ __forceinline__
#else
#  define MEDIMG_HAS_CUDA 0
#  define MEDIMG_HOST_DEVICE inline
#endif

#define MEDIMG_VERSION_MAJOR 0
#define MEDIMG_VERSION_MINOR 1
#define MEDIMG_VERSION_PATCH 0

namespace medimg {
inline constexpr const char* version = "0.1.0";
}  // namespace medimg
