// SPDX-License-Identifier: MIT
// cuda_helpers.hpp: what the CUDA test files share: the has_cuda_device precondition (a case on a
// machine without a GPU is SKIPPED, not passed or failed - cudnn-frontend's SKIP), tolerances for
// GPU-vs-CPU comparisons (each with its reason), and comparisons that bring a device tensor to the
// host and report the largest difference and its flat index (llm.c's check_tensor), and gpu(t),
// a host tensor's device copy.
// Included only by .cu files (it includes medimg/cuda/). It includes the core, ops and cuda headers
// rather than medimg.hpp: every header nvcc parses costs compile time on CI's two cores (only the
// ODR test must include the umbrella).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>

#include <boost/test/unit_test.hpp>

#include "helpers.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/cuda/cuda.hpp"
#include "medimg/ops/batch_norm.hpp"
#include "medimg/ops/conv2d.hpp"
#include "medimg/ops/elementwise.hpp"
#include "medimg/ops/linear.hpp"
#include "medimg/ops/pooling.hpp"
#include "medimg/ops/softmax.hpp"

namespace medimg::test {

/// t on the device (an undefined tensor stays undefined: optional operands).
template <class T>
Tensor<T, Cuda> gpu(const Tensor<T, Cpu>& t) {
    return t.defined() ? t.template to<Cuda>() : Tensor<T, Cuda>();
}

/// Precondition for every case that needs a GPU: `* boost::unit_test::precondition(has_cuda_device)`.
struct HasCudaDevice {
    boost::test_tools::assertion_result operator()(boost::unit_test::test_unit_id) const {
        boost::test_tools::assertion_result r(cuda::device_count() > 0);
        if (!r) r.message() << "no CUDA device (" << cuda::no_device_reason() << ")";
        return r;
    }
};
inline const HasCudaDevice has_cuda_device{};

// GPU float kernels vs the CPU float reference: cuDNN's algorithms (implicit GEMM, FFT, Winograd
// with FP32 math - TF32 is off by default) sum in other orders and Winograd transforms add a few
// ulps per term; 1e-4 relative / 1e-5 absolute covers ~5000-term sums, while a wrong index or
// formula moves values by 1e-2 or more.
inline constexpr double kGpuFloatRtol = 1e-4;
inline constexpr double kGpuFloatAtol = 1e-5;
// Double on both sides: only the summation order differs.
inline constexpr double kGpuDoubleTol = 1e-10;

template <class T>
constexpr double gpu_rtol() {
    return std::is_same_v<T, float> ? kGpuFloatRtol : kGpuDoubleTol;
}
template <class T>
constexpr double gpu_atol() {
    return std::is_same_v<T, float> ? kGpuFloatAtol : kGpuDoubleTol;
}

/// A device tensor's host copy (a no-op for host tensors), half storage widened to float32.
template <class T, class B>
Tensor<T, Cpu> host(const Tensor<T, B>& t) {
    Tensor<T, Cpu> h;
    if constexpr (std::is_same_v<B, Cpu>)
        h = t;
    else
        h = t.template to<Cpu>();
    return h.half_storage() ? h.to_storage(Precision::fp32) : h;
}

/// GPU result vs CPU reference, elementwise |a - b| <= atol + rtol |b|; the message names what
/// is compared, the largest difference and its flat index.
#define MEDIMG_CHECK_GPU_CPU(what, gpu, cpu, rtol, atol)                                                          \
    do {                                                                                                         \
        const auto g_ = ::medimg::test::host(gpu);                                                              \
        const auto mm_ = ::medimg::test::compare(g_, (cpu), (rtol), (atol));                                     \
        BOOST_CHECK_MESSAGE(mm_.ok, (what) << ": CUDA vs CPU differ: largest |diff| " << mm_.max_diff           \
                                           << " at flat index " << mm_.where);                                  \
        BOOST_TEST_MESSAGE((what) << ": largest |diff| " << mm_.max_diff << " at flat index " << mm_.where);   \
    } while (0)

/// Bitwise equality (optimizer updates, pooling): reports the first mismatch.
template <class T>
std::int64_t first_mismatch(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b) {
    if (a.shape() != b.shape()) return 0;
    for (std::int64_t i = 0; i < a.numel(); ++i) {
        const bool both_nan = std::isnan(static_cast<double>(a[i])) && std::isnan(static_cast<double>(b[i]));
        if (!(a[i] == b[i] || both_nan)) return i;
    }
    return -1;
}
#define MEDIMG_CHECK_GPU_CPU_EXACT(what, gpu, cpu)                                                            \
    do {                                                                                                     \
        const auto g_ = ::medimg::test::host(gpu);                                                          \
        const auto c_ = (cpu);                                                                               \
        const auto at_ = ::medimg::test::first_mismatch(g_, c_);                                            \
        BOOST_CHECK_MESSAGE(at_ < 0, (what) << ": CUDA vs CPU not bitwise equal; first difference at flat index " \
                                            << at_ << (at_ >= 0 && at_ < g_.numel() ? "" : " (shapes differ)")); \
    } while (0)

/// ||a - b|| / ||b|| over the whole tensor: for deep-network gradients, where a few elements near
/// zero have large relative errors that mean nothing.
template <class T>
double relative_l2(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b) {
    double num = 0.0, den = 0.0;
    for (std::int64_t i = 0; i < a.numel(); ++i) {
        const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
        num += d * d;
        den += static_cast<double>(b[i]) * static_cast<double>(b[i]);
    }
    return den > 0.0 ? std::sqrt(num / den) : std::sqrt(num);
}

}  // namespace medimg::test
