// SPDX-License-Identifier: MIT
// cuda/check.hpp: the error checks around every CUDA runtime, cuDNN and cuBLAS call. A failure
// throws medimg::CudaError naming the call text, file:line and the library's error string (dlib's
// CHECK_CUDNN), e.g.
//   "cudnnConvolutionForward(...) failed at conv2d.cuh:142: CUDNN_STATUS_BAD_PARAM"
// Launches are followed by MEDIMG_CUDA_CHECK(cudaGetLastError()) (llm.c). Defining
// MEDIMG_CUDA_SYNC_CHECK (CMake option of the same name) makes every MEDIMG_CUDA_CHECK also
// synchronise the device, so an asynchronous fault surfaces at the launch that caused it.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/check.hpp: include only from a TU compiled by nvcc"
#endif

#include <cstring>
#include <string>

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "medimg/error.hpp"

namespace medimg::cuda::detail {

/// "a/b/conv2d.cuh" -> "conv2d.cuh": messages stay short and stable across build trees.
inline const char* base_name(const char* file) {
    const char* slash = std::strrchr(file, '/');
    return slash ? slash + 1 : file;
}

[[noreturn]] inline void throw_cuda_error(const char* call, const char* file, int line, const std::string& what) {
    throw CudaError(::medimg::detail::concat(call, " failed at ", base_name(file), ":", line, ": ", what));
}

inline void sync_check(const char* call, const char* file, int line) {
#ifdef MEDIMG_CUDA_SYNC_CHECK
    const cudaError_t e = cudaDeviceSynchronize();
    if (e != cudaSuccess)
        throw_cuda_error(call, file, line,
                         ::medimg::detail::concat(cudaGetErrorString(e), " (", cudaGetErrorName(e),
                                                  ", at the synchronisation after this call)"));
#else
    (void)call, (void)file, (void)line;
#endif
}

inline void check(cudaError_t e, const char* call, const char* file, int line) {
    if (e != cudaSuccess) {
        (void)cudaGetLastError();  // clear a sticky-free error so the next check does not repeat it
        throw_cuda_error(call, file, line, ::medimg::detail::concat(cudaGetErrorString(e), " (", cudaGetErrorName(e), ")"));
    }
    sync_check(call, file, line);
}
inline void check(cudnnStatus_t s, const char* call, const char* file, int line) {
    if (s != CUDNN_STATUS_SUCCESS) throw_cuda_error(call, file, line, cudnnGetErrorString(s));
    sync_check(call, file, line);
}
inline void check(cublasStatus_t s, const char* call, const char* file, int line) {
    if (s != CUBLAS_STATUS_SUCCESS)
        throw_cuda_error(call, file, line,
                         ::medimg::detail::concat(cublasGetStatusName(s), " (", cublasGetStatusString(s), ")"));
    sync_check(call, file, line);
}

}  // namespace medimg::cuda::detail

/// Throws medimg::CudaError when a CUDA runtime call does not return cudaSuccess.
#define MEDIMG_CUDA_CHECK(call) ::medimg::cuda::detail::check(static_cast<cudaError_t>(call), #call, __FILE__, __LINE__)
/// Throws medimg::CudaError when a cuDNN call does not return CUDNN_STATUS_SUCCESS.
#define MEDIMG_CUDNN_CHECK(call) ::medimg::cuda::detail::check(static_cast<cudnnStatus_t>(call), #call, __FILE__, __LINE__)
/// Throws medimg::CudaError when a cuBLAS call does not return CUBLAS_STATUS_SUCCESS.
#define MEDIMG_CUBLAS_CHECK(call) ::medimg::cuda::detail::check(static_cast<cublasStatus_t>(call), #call, __FILE__, __LINE__)
