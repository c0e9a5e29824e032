// SPDX-License-Identifier: MIT
// cpu/batch_norm.hpp: host batch normalisation, one channel per task. Statistics are two-pass
// (mean, then squared deviations) in double, so float inputs with a large mean lose nothing;
// the row sums are vectorised (`omp simd` reductions reorder the double additions only).
// Undefined gamma/beta mean 1/0 (affine = false).
// The fused batch norm + ReLU (forward_relu / backward_relu) writes max(0, bn(x) + residual) and
// keeps the bits [y > 0], one per value, for its backward: one pass over the activation fewer
// each way than batch norm, add and ReLU as three ops, and 1/32 of the memory where the ReLU's
// output would otherwise be kept only for its mask (the stem's, before max pooling). Its rows
// run as AVX-512 when the processor has it (the comparison gives the mask bits directly), as
// plain loops otherwise (the same values; sums in double may round in another order).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "medimg/core/parallel.hpp"
#include "medimg/cpu/sgemm.hpp"
#include "medimg/ops/batch_norm.hpp"

namespace medimg::cpu::bn_relu {

/// 16-bit words per mask row of S values (rows padded, so that channels written by different
/// threads never share a word; padding bits are 0).
inline std::int64_t words(std::int64_t S) { return (S + 15) / 16; }

/// o = max(0, r * scale + shift [+ res]) and its bits; the product and the sum rounded apart (no
/// FMA), as batch norm's own forward, so fused and unfused outputs are equal.
template <class T>
void forward_row_plain(const T* r, const T* res, T* o, std::uint16_t* m, std::int64_t S, T scale, T shift) {
    for (std::int64_t i0 = 0; i0 < S; i0 += 16) {
        const std::int64_t n = std::min<std::int64_t>(16, S - i0);
        unsigned bits = 0;
        for (std::int64_t j = 0; j < n; ++j) {
            T v = r[i0 + j] * scale;
            v = v + shift;
            if (res) v = v + res[i0 + j];
            const bool on = v > T(0);
            o[i0 + j] = on ? v : T(0);
            bits |= static_cast<unsigned>(on) << j;
        }
        m[i0 / 16] = static_cast<std::uint16_t>(bits);
    }
}

/// Per row of the backward, the gate g = dy [y > 0]: a += sum g, b += sum g (r - mean) (double),
/// and dres = g when dres is not null.
template <class T>
void sums_row_plain(const T* r, const T* dy, const std::uint16_t* m, T* dres, std::int64_t S, double mean, double& a,
                    double& b) {
    for (std::int64_t i = 0; i < S; ++i) {
        const T g = (m[i >> 4] >> (i & 15)) & 1u ? dy[i] : T(0);
        if (dres) dres[i] = g;
        a += static_cast<double>(g);
        b += static_cast<double>(g) * (static_cast<double>(r[i]) - mean);
    }
}

/// dx = ka g + kb (r - mean) + kc, the batch norm backward per value with coefficients per channel.
template <class T>
void dx_row_plain(const T* r, const T* dy, const std::uint16_t* m, T* dx, std::int64_t S, T ka, T kb, T kc, T mean) {
    for (std::int64_t i = 0; i < S; ++i) {
        const T g = (m[i >> 4] >> (i & 15)) & 1u ? dy[i] : T(0);
        const T t = ka * g;
        const T u = kb * (r[i] - mean);
        dx[i] = (t + u) + kc;
    }
}

#if MEDIMG_SGEMM_X86
// Products and sums with an explicit rounding mode: the compiler does not contract those into
// FMAs (it does contract _mm512_mul_ps + _mm512_add_ps), so these rows round as the plain ones.
// The zero-masked forms (mask `all`) are used where GCC 12's unmasked ones warn of an
// uninitialised source inside its own header.
constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
constexpr __mmask16 all = 0xFFFF;
inline __mmask16 tail(std::int64_t n) { return static_cast<__mmask16>(n >= 16 ? 0xFFFF : (1u << n) - 1u); }

__attribute__((target("avx512f"))) inline void forward_row(const float* r, const float* res, float* o, std::uint16_t* m,
                                                          std::int64_t S, float scale, float shift) {
    const __m512 vs = _mm512_set1_ps(scale), vh = _mm512_set1_ps(shift), zero = _mm512_setzero_ps();
    for (std::int64_t i0 = 0; i0 < S; i0 += 16) {
        const __mmask16 k = tail(S - i0);
        __m512 v = _mm512_maskz_add_round_ps(all, _mm512_maskz_mul_round_ps(all, _mm512_maskz_loadu_ps(k, r + i0), vs, kNearest), vh, kNearest);
        if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, res + i0));
        const __mmask16 on = _mm512_mask_cmp_ps_mask(k, v, zero, _CMP_GT_OQ);
        _mm512_mask_storeu_ps(o + i0, k, _mm512_maskz_mov_ps(on, v));
        m[i0 / 16] = static_cast<std::uint16_t>(on);
    }
}

__attribute__((target("avx512f"))) inline void sums_row(const float* r, const float* dy, const std::uint16_t* m, float* dres,
                                                       std::int64_t S, double mean, double& a, double& b) {
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, b0 = a0, b1 = a0;
    const __m512d vm = _mm512_set1_pd(mean);
    for (std::int64_t i0 = 0; i0 < S; i0 += 16) {
        const __mmask16 k = tail(S - i0);
        const __m512 g = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m[i0 / 16] & k), dy + i0);
        if (dres) _mm512_mask_storeu_ps(dres + i0, k, g);
        const __m512 x = _mm512_maskz_loadu_ps(k, r + i0);
        alignas(64) float gx[32];  // the halves to widen (GCC 12 warns on the register extracts)
        _mm512_store_ps(gx, g);
        _mm512_store_ps(gx + 16, x);
        const __m512d g0 = _mm512_maskz_cvtps_pd(0xFF, _mm256_load_ps(gx));
        const __m512d g1 = _mm512_maskz_cvtps_pd(0xFF, _mm256_load_ps(gx + 8));
        const __m512d x0 = _mm512_maskz_cvtps_pd(0xFF, _mm256_load_ps(gx + 16));
        const __m512d x1 = _mm512_maskz_cvtps_pd(0xFF, _mm256_load_ps(gx + 24));
        a0 = _mm512_add_pd(a0, g0);
        a1 = _mm512_add_pd(a1, g1);
        b0 = _mm512_fmadd_pd(g0, _mm512_sub_pd(x0, vm), b0);
        b1 = _mm512_fmadd_pd(g1, _mm512_sub_pd(x1, vm), b1);
    }
    alignas(64) double lanes[16];  // summed in memory: GCC 12 warns on _mm512_reduce_add_pd
    _mm512_store_pd(lanes, _mm512_add_pd(a0, a1));
    _mm512_store_pd(lanes + 8, _mm512_add_pd(b0, b1));
    for (int j = 0; j < 8; ++j) {
        a += lanes[j];
        b += lanes[8 + j];
    }
}

__attribute__((target("avx512f"))) inline void dx_row(const float* r, const float* dy, const std::uint16_t* m, float* dx,
                                                     std::int64_t S, float ka, float kb, float kc, float mean) {
    const __m512 va = _mm512_set1_ps(ka), vb = _mm512_set1_ps(kb), vc = _mm512_set1_ps(kc), vm = _mm512_set1_ps(mean);
    for (std::int64_t i0 = 0; i0 < S; i0 += 16) {
        const __mmask16 k = tail(S - i0);
        const __m512 g = _mm512_maskz_loadu_ps(static_cast<__mmask16>(m[i0 / 16] & k), dy + i0);
        const __m512 t = _mm512_maskz_mul_round_ps(all, va, g, kNearest);
        const __m512 u = _mm512_maskz_mul_round_ps(all, vb, _mm512_sub_ps(_mm512_maskz_loadu_ps(k, r + i0), vm), kNearest);
        _mm512_mask_storeu_ps(dx + i0, k, _mm512_add_ps(_mm512_maskz_add_round_ps(all, t, u, kNearest), vc));
    }
}
#endif

/// The row kernels, AVX-512 for float where the processor has it.
template <class T>
void forward(const T* r, const T* res, T* o, std::uint16_t* m, std::int64_t S, T scale, T shift) {
#if MEDIMG_SGEMM_X86
    if constexpr (std::is_same_v<T, float>)
        if (sgemm::detect_isa() == sgemm::Isa::avx512) return forward_row(r, res, o, m, S, scale, shift);
#endif
    forward_row_plain(r, res, o, m, S, scale, shift);
}
template <class T>
void sums(const T* r, const T* dy, const std::uint16_t* m, T* dres, std::int64_t S, double mean, double& a, double& b) {
#if MEDIMG_SGEMM_X86
    if constexpr (std::is_same_v<T, float>)
        if (sgemm::detect_isa() == sgemm::Isa::avx512) return sums_row(r, dy, m, dres, S, mean, a, b);
#endif
    sums_row_plain(r, dy, m, dres, S, mean, a, b);
}
template <class T>
void dx(const T* r, const T* dy, const std::uint16_t* m, T* out, std::int64_t S, T ka, T kb, T kc, T mean) {
#if MEDIMG_SGEMM_X86
    if constexpr (std::is_same_v<T, float>)
        if (sgemm::detect_isa() == sgemm::Isa::avx512) return dx_row(r, dy, m, out, S, ka, kb, kc, mean);
#endif
    dx_row_plain(r, dy, m, out, S, ka, kb, kc, mean);
}

}  // namespace medimg::cpu::bn_relu

namespace medimg::ops {

template <>
struct BatchNormImpl<Cpu> {
    struct Geom {
        std::int64_t N, C, S;  // S = H*W (1 for (N, C) input)
        std::int64_t M() const { return N * S; }
    };
    template <class T>
    static Geom geom(const Tensor<T, Cpu>& x) {
        return {x.size(0), x.size(1), x.rank() == 4 ? x.size(2) * x.size(3) : 1};
    }
    /// f(const T* row) over the N rows of channel c, each S long.
    template <class T, class F>
    static void rows(const Geom& g, const T* base, std::int64_t c, F&& f) {
        for (std::int64_t n = 0; n < g.N; ++n) f(base + (n * g.C + c) * g.S, (n * g.C + c) * g.S);
    }
    template <class T>
    static double at_or(const Tensor<T, Cpu>& t, std::int64_t c, double dflt) {
        return t.defined() ? static_cast<double>(t.data()[c]) : dflt;
    }

    /// Per channel c: the statistics to normalise with (the batch's, two-pass in double, updating
    /// the running ones; or the running ones when !batch_stats), saved when save_* are defined,
    /// then write(c, scale, shift) with y = x * scale + shift the affine normalisation.
    template <class T, class Write>
    static void per_channel(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& gamma, const Tensor<T, Cpu>& beta,
                            Tensor<T, Cpu>& running_mean, Tensor<T, Cpu>& running_var, bool batch_stats, double momentum,
                            double eps, Tensor<T, Cpu>& save_mean, Tensor<T, Cpu>& save_invstd, Write&& write) {
        const Geom g = geom(x);
        parallel_for(0, g.C, [&](std::int64_t c) {
            double mean = 0.0, var = 0.0, ss = 0.0;
            if (batch_stats) {
                double s = 0.0;
                rows(g, x.data(), c, [&](const T* r, std::int64_t) {
                    double rs = 0.0;
#pragma omp simd reduction(+ : rs)
                    for (std::int64_t i = 0; i < g.S; ++i) rs += r[i];
                    s += rs;
                });
                mean = s / static_cast<double>(g.M());
                rows(g, x.data(), c, [&](const T* r, std::int64_t) {
                    double rs = 0.0;
#pragma omp simd reduction(+ : rs)
                    for (std::int64_t i = 0; i < g.S; ++i) rs += (r[i] - mean) * (r[i] - mean);
                    ss += rs;
                });
                var = ss / static_cast<double>(g.M());  // biased: used to normalise
            } else {
                mean = static_cast<double>(running_mean.data()[c]);
                var = static_cast<double>(running_var.data()[c]);
            }
            const double invstd = 1.0 / std::sqrt(var + eps);
            const double ga = at_or(gamma, c, 1.0), be = at_or(beta, c, 0.0);
            write(c, static_cast<T>(ga * invstd), static_cast<T>(be - ga * invstd * mean));
            if (save_mean.defined()) save_mean.data()[c] = static_cast<T>(mean);
            if (save_invstd.defined()) save_invstd.data()[c] = static_cast<T>(invstd);
            if (!batch_stats) return;
            if (running_mean.defined())
                running_mean.data()[c] = static_cast<T>((1.0 - momentum) * running_mean.data()[c] + momentum * mean);
            if (running_var.defined()) {
                const double unbiased = ss / static_cast<double>(g.M() - 1);
                running_var.data()[c] = static_cast<T>((1.0 - momentum) * running_var.data()[c] + momentum * unbiased);
            }
        });
    }

    /// per_channel's write for batch norm alone: y = x * scale + shift over channel c's rows.
    template <class T>
    static auto affine_rows(const Geom& g, const Tensor<T, Cpu>& x, Tensor<T, Cpu>& y) {
        return [&g, &x, &y](std::int64_t c, T scale, T shift) {
            rows(g, x.data(), c, [&](const T* r, std::int64_t off) {
                T* o = y.data() + off;
                for (std::int64_t i = 0; i < g.S; ++i) o[i] = r[i] * scale + shift;
            });
        };
    }

    template <class T>
    static void forward_training(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& gamma, const Tensor<T, Cpu>& beta,
                                 Tensor<T, Cpu>& running_mean, Tensor<T, Cpu>& running_var, double momentum, double eps,
                                 Tensor<T, Cpu>& y, Tensor<T, Cpu>& save_mean, Tensor<T, Cpu>& save_invstd) {
        const Geom g = geom(x);
        per_channel(x, gamma, beta, running_mean, running_var, true, momentum, eps, save_mean, save_invstd, affine_rows(g, x, y));
    }

    /// y = max(0, bn(x) + residual) (residual may be null) and mask = the bits [y > 0], (N * C,
    /// bn_relu::words(S)); batch statistics (updating the running ones) or the running ones.
    template <class T>
    static void forward_relu(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& gamma, const Tensor<T, Cpu>& beta,
                             Tensor<T, Cpu>& running_mean, Tensor<T, Cpu>& running_var, bool batch_stats, double momentum,
                             double eps, const T* residual, Tensor<T, Cpu>& y, Tensor<std::uint16_t, Cpu>& mask,
                             Tensor<T, Cpu>& save_mean, Tensor<T, Cpu>& save_invstd) {
        const Geom g = geom(x);
        const std::int64_t words = cpu::bn_relu::words(g.S);
        per_channel(x, gamma, beta, running_mean, running_var, batch_stats, momentum, eps, save_mean, save_invstd,
                    [&](std::int64_t c, T scale, T shift) {
                        rows(g, x.data(), c, [&](const T* r, std::int64_t off) {
                            cpu::bn_relu::forward(r, residual ? residual + off : nullptr, y.data() + off,
                                                  mask.data() + off / g.S * words, g.S, scale, shift);
                        });
                    });
    }

    /// The backward of forward_relu: with the gate dg = dy [y > 0], dresidual = dg (when defined)
    /// and batch_norm's backward of dg (see ops::batch_norm_backward), its dx written as
    ///   dx = k dg - (k invstd dgamma / M) (x - mean) - k dbeta / M,  k = gamma invstd
    /// (training; k dg alone with running statistics), the coefficients per channel in double.
    template <class T>
    static void backward_relu(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& dy, const Tensor<std::uint16_t, Cpu>& mask,
                              const Tensor<T, Cpu>& gamma, const Tensor<T, Cpu>& mean_t, const Tensor<T, Cpu>& invstd_t,
                              bool training, Tensor<T, Cpu>& dx, Tensor<T, Cpu>& dgamma, Tensor<T, Cpu>& dbeta,
                              Tensor<T, Cpu>& dresidual) {
        const Geom g = geom(x);
        const std::int64_t words = cpu::bn_relu::words(g.S);
        parallel_for(0, g.C, [&](std::int64_t c) {
            const double mean = mean_t.data()[c], invstd = invstd_t.data()[c];
            double sdy = 0.0, sdyx = 0.0;  // dbeta, dgamma * (1 / invstd)
            rows(g, x.data(), c, [&](const T* r, std::int64_t off) {
                cpu::bn_relu::sums(r, dy.data() + off, mask.data() + off / g.S * words,
                                   dresidual.defined() ? dresidual.data() + off : nullptr, g.S, mean, sdy, sdyx);
            });
            sdyx *= invstd;
            if (dbeta.defined()) dbeta.data()[c] = static_cast<T>(sdy);
            if (dgamma.defined()) dgamma.data()[c] = static_cast<T>(sdyx);
            if (!dx.defined()) return;
            const double k = at_or(gamma, c, 1.0) * invstd, M = static_cast<double>(g.M());
            const T ka = static_cast<T>(k), kb = static_cast<T>(training ? -k * invstd * sdyx / M : 0.0),
                    kc = static_cast<T>(training ? -k * sdy / M : 0.0);
            rows(g, x.data(), c, [&](const T* r, std::int64_t off) {
                cpu::bn_relu::dx(r, dy.data() + off, mask.data() + off / g.S * words, dx.data() + off, g.S, ka, kb, kc,
                                 static_cast<T>(mean));
            });
        });
    }

    template <class T>
    static void forward_inference(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& gamma, const Tensor<T, Cpu>& beta,
                                  const Tensor<T, Cpu>& running_mean, const Tensor<T, Cpu>& running_var, double eps,
                                  Tensor<T, Cpu>& y) {
        const Geom g = geom(x);
        // Without batch statistics per_channel only reads the running ones.
        auto& rm = const_cast<Tensor<T, Cpu>&>(running_mean);
        auto& rv = const_cast<Tensor<T, Cpu>&>(running_var);
        Tensor<T, Cpu> none;
        per_channel(x, gamma, beta, rm, rv, false, 0.0, eps, none, none, affine_rows(g, x, y));
    }

    template <class T>
    static void backward(const Tensor<T, Cpu>& x, const Tensor<T, Cpu>& dy, const Tensor<T, Cpu>& gamma,
                         const Tensor<T, Cpu>& mean_t, const Tensor<T, Cpu>& invstd_t, bool training, Tensor<T, Cpu>& dx,
                         Tensor<T, Cpu>& dgamma, Tensor<T, Cpu>& dbeta) {
        const Geom g = geom(x);
        parallel_for(0, g.C, [&](std::int64_t c) {
            const double mean = mean_t.data()[c], invstd = invstd_t.data()[c];
            double sdy = 0.0, sdyx = 0.0;  // dbeta, dgamma
            rows(g, x.data(), c, [&](const T* r, std::int64_t off) {
                const T* d = dy.data() + off;
                double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
                for (std::int64_t i = 0; i < g.S; ++i) {
                    a += d[i];
                    b += d[i] * (r[i] - mean);
                }
                sdy += a;
                sdyx += b * invstd;
            });
            if (dbeta.defined()) dbeta.data()[c] = static_cast<T>(sdy);
            if (dgamma.defined()) dgamma.data()[c] = static_cast<T>(sdyx);
            if (!dx.defined()) return;
            const double k = at_or(gamma, c, 1.0) * invstd;
            const double M = static_cast<double>(g.M());
            rows(g, x.data(), c, [&](const T* r, std::int64_t off) {
                const T* d = dy.data() + off;
                T* o = dx.data() + off;
                if (training)
                    for (std::int64_t i = 0; i < g.S; ++i)
                        o[i] = static_cast<T>(k * (d[i] - sdy / M - (r[i] - mean) * invstd * sdyx / M));
                else
                    for (std::int64_t i = 0; i < g.S; ++i) o[i] = static_cast<T>(k * d[i]);
            });
        });
    }
};

}  // namespace medimg::ops
