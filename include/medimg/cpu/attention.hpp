// SPDX-License-Identifier: MIT
// cpu/attention.hpp: host AttentionImpl (ops/attention.hpp). Attention runs one (image, head) pair
// per task, spread over the threads; each task's products are serial GEMMs (cpu/gemm.hpp) reading
// q, k, v where the packed qkv holds them (row stride 3 H d) and writing the heads' columns of the
// output in place, so no permuted copies are made. A task's scores live in thread-local scratch,
// L x L floats (152 KiB at L = 197), reused by every task the thread runs: the forward keeps only
// logsumexp per row, the backward recomputes P from it (one more L x L x d GEMM per pair).
// The row softmax subtracts the row maximum; exp in float is detail::exp_poly (cpu/activation.hpp),
// and the float row loops run in the widest vector unit this CPU has (chosen at run time, as
// cpu/activation.hpp does; compiled for the base ISA they took 13% of a ViT-Tiny training step).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include "medimg/core/parallel.hpp"
#include "medimg/cpu/activation.hpp"
#include "medimg/cpu/gemm.hpp"
#include "medimg/ops/attention.hpp"

namespace medimg::ops {

namespace detail {

/// The float row loops of attention: softmax of a scaled row (returns its logsumexp), the softmax
/// again from a logsumexp, and dS = P (dP - rowsum(P dP)) scale.
struct AttentionRows {
    static float softmax(float* row, std::int64_t n, float scale) {
        float mx = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : mx)
        for (std::int64_t j = 0; j < n; ++j) mx = row[j] * scale > mx ? row[j] * scale : mx;
        float sum = 0;
#pragma omp simd reduction(+ : sum)
        for (std::int64_t j = 0; j < n; ++j) {
            const float e = exp_poly(row[j] * scale - mx);
            row[j] = e;
            sum += e;
        }
        const float inv = 1.0f / sum;
#pragma omp simd
        for (std::int64_t j = 0; j < n; ++j) row[j] *= inv;
        return mx + static_cast<float>(std::log(static_cast<double>(sum)));
    }
    static void exp(float* row, std::int64_t n, float scale, float lse) {
#pragma omp simd
        for (std::int64_t j = 0; j < n; ++j) row[j] = exp_poly(row[j] * scale - lse);
    }
    static void ds(const float* p, float* g, std::int64_t n, float scale) {
        float dot = 0;
#pragma omp simd reduction(+ : dot)
        for (std::int64_t j = 0; j < n; ++j) dot += p[j] * g[j];
#pragma omp simd
        for (std::int64_t j = 0; j < n; ++j) g[j] = p[j] * (g[j] - dot) * scale;
    }
};
#if MEDIMG_SGEMM_X86
struct AttentionRowsAvx512 {
    __attribute__((target("avx512f"))) static float softmax(float* r, std::int64_t n, float s) { return AttentionRows::softmax(r, n, s); }
    __attribute__((target("avx512f"))) static void exp(float* r, std::int64_t n, float s, float l) { AttentionRows::exp(r, n, s, l); }
    __attribute__((target("avx512f"))) static void ds(const float* p, float* g, std::int64_t n, float s) { AttentionRows::ds(p, g, n, s); }
};
struct AttentionRowsAvx2 {
    __attribute__((target("avx2,fma"))) static float softmax(float* r, std::int64_t n, float s) { return AttentionRows::softmax(r, n, s); }
    __attribute__((target("avx2,fma"))) static void exp(float* r, std::int64_t n, float s, float l) { AttentionRows::exp(r, n, s, l); }
    __attribute__((target("avx2,fma"))) static void ds(const float* p, float* g, std::int64_t n, float s) { AttentionRows::ds(p, g, n, s); }
};
#endif

/// The row functions for this CPU, chosen once.
struct AttentionRowFns {
    float (*softmax)(float*, std::int64_t, float) = &AttentionRows::softmax;
    void (*exp)(float*, std::int64_t, float, float) = &AttentionRows::exp;
    void (*ds)(const float*, float*, std::int64_t, float) = &AttentionRows::ds;
};
inline const AttentionRowFns& attention_rows() {
    static const AttentionRowFns fns = [] {
        AttentionRowFns f;
#if MEDIMG_SGEMM_X86
        const auto isa = cpu::sgemm::detect_isa();
        if (isa == cpu::sgemm::Isa::avx512) f = {&AttentionRowsAvx512::softmax, &AttentionRowsAvx512::exp, &AttentionRowsAvx512::ds};
        if (isa == cpu::sgemm::Isa::avx2) f = {&AttentionRowsAvx2::softmax, &AttentionRowsAvx2::exp, &AttentionRowsAvx2::ds};
#endif
        return f;
    }();
    return fns;
}

}  // namespace detail


template <>
struct AttentionImpl<Cpu> {
    template <class T>
    static void forward(const Tensor<T, Cpu>& qkv, Tensor<T, Cpu>& out, Tensor<T, Cpu>& lse, Tensor<T, Cpu>& probs,
                        const AttentionShape& s) {
        const std::int64_t L = s.L, d = s.d, D = s.width(), ld = 3 * D;
        if (s.B == 0 || L == 0) return;
        const T* base = qkv.data();
        pairs(s, [&](std::int64_t b, std::int64_t h, std::vector<T>& work) {
            const T* q = base + b * L * ld + h * d;
            const T* k = q + D;
            const T* v = q + 2 * D;
            T* P = probs.defined() ? probs.data() + (b * s.H + h) * L * L : scratch(work, L * L, 0);
            cpu::gemm_ld(false, true, L, L, d, q, ld, k, ld, P, L, false);  // S = q k^T
            T* lrow = lse.data() + (b * s.H + h) * L;
            for (std::int64_t i = 0; i < L; ++i) lrow[i] = softmax_row(P + i * L, L, static_cast<T>(s.scale));
            cpu::gemm_ld(false, false, L, d, L, P, L, v, ld, out.data() + b * L * D + h * d, D, false);  // o = P v
        });
    }

    template <class T>
    static void backward(const Tensor<T, Cpu>& qkv, const Tensor<T, Cpu>& lse, const Tensor<T, Cpu>& dout,
                         Tensor<T, Cpu>& dqkv, const AttentionShape& s) {
        const std::int64_t L = s.L, d = s.d, D = s.width(), ld = 3 * D;
        if (s.B == 0 || L == 0) return;
        const T* base = qkv.data();
        const T sc = static_cast<T>(s.scale);
        pairs(s, [&](std::int64_t b, std::int64_t h, std::vector<T>& work) {
            const T* q = base + b * L * ld + h * d;
            const T* k = q + D;
            const T* v = q + 2 * D;
            const T* dO = dout.data() + b * L * D + h * d;
            T* dq = dqkv.data() + b * L * ld + h * d;
            T* dk = dq + D;
            T* dv = dq + 2 * D;
            T* P = scratch(work, 2 * L * L, 0);
            T* dP = P + L * L;
            cpu::gemm_ld(false, true, L, L, d, q, ld, k, ld, P, L, false);  // S again
            const T* lrow = lse.data() + (b * s.H + h) * L;
            for (std::int64_t i = 0; i < L; ++i) exp_row(P + i * L, L, sc, lrow[i]);
            cpu::gemm_ld(true, false, L, d, L, P, L, dO, D, dv, ld, false);   // dv = P^T dO
            cpu::gemm_ld(false, true, L, L, d, dO, D, v, ld, dP, L, false);   // dP = dO v^T
            for (std::int64_t i = 0; i < L; ++i) ds_row(P + i * L, dP + i * L, L, sc);  // dS = P (dP - rowsum(P dP)) scale
            cpu::gemm_ld(false, false, L, d, L, dP, L, k, ld, dq, ld, false);  // dq = dS k
            cpu::gemm_ld(true, false, L, d, L, dP, L, q, ld, dk, ld, false);   // dk = dS^T q
        });
    }

    template <class T>
    static void bmm(const Tensor<T, Cpu>& a, const Tensor<T, Cpu>& b, Tensor<T, Cpu>& c, const BmmShape& s, bool accumulate) {
        if (s.batch == 0 || s.m == 0 || s.n == 0) return;
        const std::int64_t sa = s.a_shared ? 0 : s.m * s.k, sb = s.b_shared ? 0 : s.k * s.n, scs = s.m * s.n;
        auto one = [&](std::int64_t i) {
            T* ci = c.data() + i * scs;
            if (s.k == 0) {
                if (!accumulate) std::fill(ci, ci + scs, T(0));
                return;
            }
            cpu::gemm(s.ta, s.tb, s.m, s.n, s.k, a.data() + i * sa, b.data() + i * sb, ci, accumulate);
        };
        if (s.batch >= num_threads())
            parallel_for(0, s.batch, one);  // serial GEMMs, one matrix per task
        else
            for (std::int64_t i = 0; i < s.batch; ++i) one(i);  // each GEMM threads itself
    }

private:
    /// f(b, h, scratch) for every (image, head) pair, over the threads; `scratch` is the running
    /// thread's own buffer.
    template <class F>
    static void pairs(const AttentionShape& s, F&& f) {
        parallel_for(0, s.B * s.H, [&](std::int64_t bh) {
            thread_local std::vector<float> wf;
            thread_local std::vector<double> wd;
            if constexpr (std::is_invocable_v<F, std::int64_t, std::int64_t, std::vector<float>&>)
                f(bh / s.H, bh % s.H, wf);
            else
                f(bh / s.H, bh % s.H, wd);
        });
    }
    template <class T>
    static T* scratch(std::vector<T>& w, std::int64_t n, std::int64_t) {
        if (static_cast<std::int64_t>(w.size()) < n) w.resize(static_cast<std::size_t>(n));
        return w.data();
    }
    /// row <- softmax(scale * row), stable; returns logsumexp(scale * row). A row of -inf gives NaN
    /// (as torch's softmax); NaN propagates.
    static float softmax_row(float* row, std::int64_t n, float scale) { return detail::attention_rows().softmax(row, n, scale); }
    static double softmax_row(double* row, std::int64_t n, double scale) {
        double mx = -std::numeric_limits<double>::infinity();
        for (std::int64_t j = 0; j < n; ++j) mx = std::max(mx, row[j] * scale);
        double sum = 0;
        for (std::int64_t j = 0; j < n; ++j) sum += (row[j] = std::exp(row[j] * scale - mx));
        for (std::int64_t j = 0; j < n; ++j) row[j] /= sum;
        return mx + std::log(sum);
    }
    /// row <- exp(scale * row - lse): the forward's softmax again from its logsumexp.
    static void exp_row(float* row, std::int64_t n, float scale, float lse) { detail::attention_rows().exp(row, n, scale, lse); }
    static void exp_row(double* row, std::int64_t n, double scale, double lse) {
        for (std::int64_t j = 0; j < n; ++j) row[j] = std::exp(row[j] * scale - lse);
    }
    /// g <- p (g - rowsum(p g)) scale.
    static void ds_row(const float* p, float* g, std::int64_t n, float scale) { detail::attention_rows().ds(p, g, n, scale); }
    static void ds_row(const double* p, double* g, std::int64_t n, double scale) {
        double dot = 0;
        for (std::int64_t j = 0; j < n; ++j) dot += p[j] * g[j];
        for (std::int64_t j = 0; j < n; ++j) g[j] = p[j] * (g[j] - dot) * scale;
    }
};

}  // namespace medimg::ops
