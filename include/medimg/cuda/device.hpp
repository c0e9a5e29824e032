// SPDX-License-Identifier: MIT
// cuda/device.hpp: what GPUs this process can see. device_count() never throws: with no GPU, no
// driver or a driver too old for this runtime it returns 0, so tests skip and programs fall back
// (runtime.device: auto). Everything else here throws CudaError on failure.
// Deliberately not here: multi-GPU placement (medimg uses the current device, see context.hpp).
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/device.hpp: include only from a TU compiled by nvcc"
#endif

#include <string>

#include <cuda_runtime.h>

#include "medimg/cuda/check.hpp"

namespace medimg::cuda {

/// The number of usable CUDA devices; 0 (not an exception) when there is none or no driver.
inline int device_count() noexcept {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError();  // clear the error so later calls start clean
        return 0;
    }
    return n;
}

/// True when at least one CUDA device is usable.
inline bool has_device() noexcept { return device_count() > 0; }

/// Why no device is usable, e.g. "no CUDA-capable device is detected (cudaErrorNoDevice)";
/// empty when device_count() > 0.
inline std::string no_device_reason() {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    (void)cudaGetLastError();
    if (e != cudaSuccess) return ::medimg::detail::concat(cudaGetErrorString(e), " (", cudaGetErrorName(e), ")");
    return n > 0 ? std::string() : std::string("cudaGetDeviceCount found 0 devices");
}

/// The device this thread runs on (cudaGetDevice).
inline int current_device() {
    int d = 0;
    MEDIMG_CUDA_CHECK(cudaGetDevice(&d));
    return d;
}

/// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB)".
inline std::string device_description(int device) {
    cudaDeviceProp p{};
    MEDIMG_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
    return ::medimg::detail::concat(p.name, " (sm_", p.major, p.minor, ", ", p.multiProcessorCount, " SMs, ",
                                    static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0), " GiB)");
}

}  // namespace medimg::cuda
