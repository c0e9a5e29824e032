// SPDX-License-Identifier: MIT
// cuda/elementwise.cuh: ElementwiseImpl<Cuda>, the GPU twin of cpu/elementwise.hpp with the same
// static signatures (pointers are device memory). Own kernels in kernels/elementwise.cuh; sum and
// dot accumulate in double with a deterministic two-pass reduction and return on the host (a
// stream synchronisation).
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/elementwise.cuh: include only from a TU compiled by nvcc"
#endif

#include <cstdint>
#include <type_traits>

#include "medimg/cuda/kernels/elementwise.cuh"
#include "medimg/cuda/memory.cuh"
#include "medimg/ops/elementwise.hpp"

namespace medimg::ops {

template <>
struct ElementwiseImpl<Cuda> {
    template <class T>
    static void axpy(T* y, T alpha, const T* x, std::int64_t n) { cuda::detail::axpy(y, alpha, x, n); }
    template <class T>
    static void affine(const T* x, T alpha, T beta, T* y, std::int64_t n) { cuda::detail::affine(x, alpha, beta, y, n); }
    template <class T>
    static void add(const T* a, const T* b, T* y, std::int64_t n) { cuda::detail::add(a, b, y, n); }
    template <class T>
    static void mul(const T* a, const T* b, T* y, std::int64_t n) { cuda::detail::mul(a, b, y, n); }
    template <class T>
    static void relu_forward(const T* x, T* y, std::int64_t n) { cuda::detail::relu_forward(x, y, n); }
    template <class T>
    static void relu_backward(const T* y, const T* dy, T* dx, std::int64_t n) { cuda::detail::relu_backward(y, dy, dx, n); }
    template <class T>
    static void rsqrt(const T* x, double eps, T* y, std::int64_t n) { cuda::detail::rsqrt(x, eps, y, n); }

    // Half storage (mixed-precision activations; ops/elementwise.hpp): raw storage, format s.
    /// y = a + b (y may be a: add_).
    static void add_stored(void* y, const void* a, const void* b, std::int64_t n, Precision s) {
        cuda::detail::with_storage<float>(s, [&](auto* tag) {
            using S = std::remove_pointer_t<decltype(tag)>;
            cuda::detail::add(static_cast<const S*>(a), static_cast<const S*>(b), static_cast<S*>(y), n);
        });
    }
    static void relu_forward_stored(const void* x, void* y, std::int64_t n, Precision s) {
        cuda::detail::with_storage<float>(s, [&](auto* tag) {
            using S = std::remove_pointer_t<decltype(tag)>;
            cuda::detail::relu_forward(static_cast<const S*>(x), static_cast<S*>(y), n);
        });
    }
    static void relu_backward_stored(const void* y, const void* dy, void* dx, std::int64_t n, Precision s) {
        cuda::detail::with_storage<float>(s, [&](auto* tag) {
            using S = std::remove_pointer_t<decltype(tag)>;
            cuda::detail::relu_backward(static_cast<const S*>(y), static_cast<const S*>(dy), static_cast<S*>(dx), n);
        });
    }
    template <class T>
    static double sum(const T* x, std::int64_t n) { return cuda::detail::reduce(cuda::detail::SumTerm<T>{x}, n); }
    template <class T>
    static double dot(const T* a, const T* b, std::int64_t n) { return cuda::detail::reduce(cuda::detail::DotTerm<T>{a, b}, n); }
};

}  // namespace medimg::ops
