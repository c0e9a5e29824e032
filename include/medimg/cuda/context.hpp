// SPDX-License-Identifier: MIT
// cuda/context.hpp: where CUDA work runs. Per device, one stream for everything medimg does (so
// kernels, cuDNN, cuBLAS and copies are ordered without events) and a small pinned "error slot"
// kernels report bad input into; per thread and device, RAII cuDNN and cuBLAS handles bound to that
// stream (dlib's thread-local handles: the libraries' handles are not thread-safe). Also the
// process-wide backend settings (TF32, mixed precision, cuDNN algorithm search).
// The host reads the error slot whenever it waits for the stream (synchronize(), copies to the
// host), so a bad class index found on the device surfaces as an exception at the next host sync,
// as PyTorch's device-side asserts do, but without poisoning the context.
// Deliberately not here: multiple streams, CUDA graphs, multi-GPU (work goes to the current device).
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/context.hpp: include only from a TU compiled by nvcc"
#endif

#include <cstddef>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "medimg/core/precision.hpp"
#include "medimg/cuda/check.hpp"
#include "medimg/cuda/device.hpp"
#include "medimg/error.hpp"

namespace medimg::cuda {

/// Process-wide backend settings. Change them before the first convolution: the cuDNN algorithm
/// cache is keyed by them, so a later change takes effect for new shapes and settings alike.
struct Settings {
    /// Let cuDNN and cuBLAS run float32 convolutions / GEMMs on TF32 tensor cores (10-bit
    /// mantissa; PyTorch's default for cuDNN convolutions). Off: plain FP32 FMA math, which
    /// matches the CPU reference to ~1e-5 relative.
    bool allow_tf32 = false;
    /// Choose convolution algorithms by timing every candidate once per shape
    /// (cudnnFind*AlgorithmEx; torch.backends.cudnn.benchmark = True) instead of cuDNN's
    /// heuristics (cudnnGet*Algorithm_v7).
    bool cudnn_benchmark = false;
    /// Prefer algorithms cuDNN reports as deterministic (bitwise reproducible runs).
    bool deterministic = true;
    /// The largest convolution workspace an algorithm may ask for.
    std::size_t conv_workspace_limit = std::size_t(1) << 30;
    /// The arithmetic of float32 convolutions and linear layers (core/precision.hpp): fp32, or
    /// bf16 / fp16 operands on tensor cores with float32 accumulation (mixed precision; the
    /// config's runtime.precision). Double tensors ignore it.
    Precision precision = Precision::fp32;
    /// Under bf16 / fp16 precision, autograd stores convolution outputs - and so the batch norms,
    /// ReLUs, poolings and residual sums after them, and their gradients - in that half format
    /// (autocast's activations; half the activation memory and traffic). Off: the activations
    /// stay float32 and each convolution casts its operands (docs/gpu.md, "Mixed precision").
    bool half_activations = true;
};
inline Settings& settings() {
    static Settings s;
    return s;
}

/// What a kernel found wrong with its input (see report_device_error in kernels/common.cuh).
struct DeviceErrorRecord {
    int code;  // 0: nothing; -1: being written; > 0: one of DeviceErrorCode
    int pad;
    long long a, b, c;
};
enum DeviceErrorCode : int {
    kCrossEntropyTarget = 1,  // a = sample, b = target value, c = number of classes
};

namespace detail {

/// Per device, process-wide: the stream and the mapped error slot. Created once, never destroyed
/// (they live as long as the CUDA context; destroying them during exit races the runtime's own
/// teardown).
struct DeviceState {
    int device = 0;
    cudaStream_t stream = nullptr;
    DeviceErrorRecord* error_host = nullptr;    // pinned, mapped
    DeviceErrorRecord* error_device = nullptr;  // the same memory, as the device sees it
};

inline DeviceState& device_state(int device) {
    static std::mutex mu;
    static auto* states = new std::map<int, std::unique_ptr<DeviceState>>();  // leaked on purpose, see above
    std::lock_guard<std::mutex> lock(mu);
    auto& s = (*states)[device];
    if (!s) {
        auto st = std::make_unique<DeviceState>();
        st->device = device;
        MEDIMG_CUDA_CHECK(cudaStreamCreateWithFlags(&st->stream, cudaStreamNonBlocking));
        void* host = nullptr;
        MEDIMG_CUDA_CHECK(cudaHostAlloc(&host, sizeof(DeviceErrorRecord), cudaHostAllocMapped | cudaHostAllocPortable));
        st->error_host = static_cast<DeviceErrorRecord*>(host);
        *st->error_host = DeviceErrorRecord{0, 0, 0, 0, 0};
        void* dev = nullptr;
        MEDIMG_CUDA_CHECK(cudaHostGetDevicePointer(&dev, host, 0));
        st->error_device = static_cast<DeviceErrorRecord*>(dev);
        s = std::move(st);
    }
    return *s;
}

/// Per thread and device: the library handles, bound to the device's stream.
class Handles {
public:
    explicit Handles(const DeviceState& st) {
        MEDIMG_CUDNN_CHECK(cudnnCreate(&cudnn_));
        MEDIMG_CUDNN_CHECK(cudnnSetStream(cudnn_, st.stream));
        MEDIMG_CUBLAS_CHECK(cublasCreate(&cublas_));
        MEDIMG_CUBLAS_CHECK(cublasSetStream(cublas_, st.stream));
    }
    ~Handles() {  // errors ignored: nothing useful can be done in a destructor
        if (cublas_) (void)cublasDestroy(cublas_);
        if (cudnn_) (void)cudnnDestroy(cudnn_);
    }
    Handles(const Handles&) = delete;
    Handles& operator=(const Handles&) = delete;
    cudnnHandle_t cudnn() const { return cudnn_; }
    cublasHandle_t cublas() const { return cublas_; }

private:
    cudnnHandle_t cudnn_ = nullptr;
    cublasHandle_t cublas_ = nullptr;
};

inline Handles& handles() {
    thread_local std::map<int, std::unique_ptr<Handles>> per_device;
    const int d = current_device();
    auto& h = per_device[d];
    if (!h) h = std::make_unique<Handles>(device_state(d));
    return *h;
}

[[noreturn]] inline void throw_device_error(const DeviceErrorRecord& r) {
    switch (r.code) {
    case kCrossEntropyTarget:
        throw ValueError(::medimg::detail::concat("cross_entropy: target[", r.a, "] = ", r.b,
                                                  " is not a class index in [0, ", r.c, ") (found on the device)"));
    default:
        throw CudaError(::medimg::detail::concat("a medimg kernel reported error code ", r.code));
    }
}

}  // namespace detail

/// The stream every medimg operation on the current device runs on.
inline cudaStream_t stream() { return detail::device_state(current_device()).stream; }
/// This thread's cuDNN handle for the current device (bound to stream()).
inline cudnnHandle_t cudnn_handle() { return detail::handles().cudnn(); }
/// This thread's cuBLAS handle for the current device (bound to stream()).
inline cublasHandle_t cublas_handle() { return detail::handles().cublas(); }
/// Where kernels on the current device report bad input.
inline DeviceErrorRecord* device_error_slot() { return detail::device_state(current_device()).error_device; }

/// Throws (and clears) what a kernel reported since the last check. Call only after the stream
/// has been synchronised.
inline void check_device_errors() {
    auto& st = detail::device_state(current_device());
    volatile DeviceErrorRecord* r = st.error_host;
    if (r->code == 0) return;
    const DeviceErrorRecord copy{r->code, 0, r->a, r->b, r->c};
    r->code = 0;
    detail::throw_device_error(copy);
}

/// Waits for everything queued on stream(), then reports kernel-detected input errors.
inline void synchronize() {
    MEDIMG_CUDA_CHECK(cudaStreamSynchronize(stream()));
    check_device_errors();
}

}  // namespace medimg::cuda

namespace medimg {
/// runtime.precision on the GPU: writes cuda::settings().precision (any of fp32, bf16, fp16).
template <>
struct PrecisionControl<Cuda> {
    static void set(Precision p) { cuda::settings().precision = p; }
    static Precision get() { return cuda::settings().precision; }
};
}  // namespace medimg
