// SPDX-License-Identifier: MIT
// cuda/optim.cuh: OptimImpl<Cuda>, the GPU twin of cpu/optim.hpp: one fused kernel per optimizer,
// one thread per element, repeating the CPU loop op for op. Every rounding step is spelled out
// with exactly rounded intrinsics (kernels/common.cuh: fma_rn where cpu/optim.hpp calls std::fma,
// mul_rn / add_rn / div_rn / sqrt_rn elsewhere), so nvcc cannot contract or reorder them and the
// GPU update equals the CPU's - and therefore PyTorch's single-tensor path - bit for bit.
// Formulas (SGD: torch.optim.SGD "Algorithm"; Adam: Kingma & Ba 2015, AdamW: Loshchilov & Hutter
// 2019, as torch.optim.Adam / AdamW) are in cpu/optim.hpp.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/optim.cuh: include only from a TU compiled by nvcc"
#endif

#include <cstdint>

#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/kernels/common.cuh"
#include "medimg/cuda/memory.cuh"
#include "medimg/optim/optimizer.hpp"

namespace medimg::cuda::detail {
namespace {
// p, buf: (n) in place; g: (n)
template <class T>
__global__ void sgd_kernel(T* p, const T* g, T* buf, std::int64_t n, optim::SgdScalars<T> s) {
    MEDIMG_GRID_STRIDE(i, n) {
        T d = g[i];
        if (s.has_weight_decay) d = fma_rn(p[i], s.weight_decay, d);  // d = g + wd * p
        if (s.has_momentum) {
            // b = d (first step) | momentum * b + (1 - dampening) * d
            const T b = s.first_step ? d : fma_rn(d, s.one_minus_dampening, mul_rn(buf[i], s.momentum));
            buf[i] = b;
            d = s.nesterov ? fma_rn(b, s.momentum, d) : b;
        }
        p[i] = fma_rn(d, s.neg_lr, p[i]);  // p = p - lr * d
    }
}

// p, m, v, vmax (nullable): (n) in place; g: (n)
template <class T>
__global__ void adam_kernel(T* p, const T* g, T* m, T* v, T* vmax, std::int64_t n, optim::AdamScalars<T> s) {
    MEDIMG_GRID_STRIDE(i, n) {
        T pi = p[i];
        if (s.decoupled_weight_decay) pi = mul_rn(pi, s.decay_factor);  // AdamW: p *= 1 - lr * wd
        T gi = g[i];
        if (s.l2_weight_decay) gi = fma_rn(pi, s.weight_decay, gi);     // Adam: g += wd * p
        const T mi = fma_rn(gi, s.one_minus_beta1, mul_rn(m[i], s.beta1));                     // m = b1 m + (1-b1) g
        const T vi = fma_rn(mul_rn(s.one_minus_beta2, gi), gi, mul_rn(v[i], s.beta2));          // v = b2 v + (1-b2) g g
        m[i] = mi;
        v[i] = vi;
        T second = vi;
        if (vmax) {  // torch.maximum: the larger, NaN if either is NaN
            const T mx = vmax[i];
            second = (isnan(vi) || vi > mx) ? vi : mx;
            vmax[i] = second;
        }
        const T denom = add_rn(div_rn(sqrt_rn(second), s.bias_correction2_sqrt), s.eps);  // sqrt(v) / sqrt(bc2) + eps
        p[i] = add_rn(pi, div_rn(mul_rn(s.neg_step_size, mi), denom));                   // p += -step_size * m / denom
    }
}

// g *= inv_scale; *found = 1 if some g is not finite (every writer stores the same value)
template <class T>
__global__ void unscale_kernel(T* g, std::int64_t n, T inv_scale, std::int64_t* found) {
    MEDIMG_GRID_STRIDE(i, n) {
        const T v = g[i];
        if (!isfinite(v)) *found = 1;
        g[i] = mul_rn(v, inv_scale);
    }
}
}  // namespace
}  // namespace medimg::cuda::detail

namespace medimg::optim {

template <>
struct OptimImpl<Cuda> {
    template <class T>
    static void sgd(T* p, const T* g, T* buf, std::int64_t n, const SgdScalars<T>& s) {
        namespace cd = cuda::detail;
        if (n <= 0) return;
        cd::sgd_kernel<T><<<cd::blocks_for(n), cd::kThreads, 0, cuda::stream()>>>(p, g, buf, n, s);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
    template <class T>
    static void adam(T* p, const T* g, T* m, T* v, T* vmax, std::int64_t n, const AdamScalars<T>& s) {
        namespace cd = cuda::detail;
        if (n <= 0) return;
        cd::adam_kernel<T><<<cd::blocks_for(n), cd::kThreads, 0, cuda::stream()>>>(p, g, m, v, vmax, n, s);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
    /// As OptimImpl<Cpu>::unscale; found is one int64 on the device (nothing is read back here).
    template <class T>
    static void unscale(T* g, std::int64_t n, T inv_scale, std::int64_t* found) {
        namespace cd = cuda::detail;
        if (n <= 0) return;
        cd::unscale_kernel<T><<<cd::blocks_for(n), cd::kThreads, 0, cuda::stream()>>>(g, n, inv_scale, found);
        MEDIMG_CUDA_CHECK(cudaGetLastError());
    }
};

}  // namespace medimg::optim
