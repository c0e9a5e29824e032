// SPDX-License-Identifier: MIT
// cpu/sgemm.hpp: single-precision GEMM with hand-written AVX-512 and AVX2+FMA micro-kernels,
// chosen at run time from what the processor supports, so the default (portable) build runs
// at full vector width without -march=native. Structure after Goto & van de Geijn, "Anatomy of
// High-Performance Matrix Multiplication" (2008) / BLIS: B is packed in KC x NR slivers that stay
// in L1, A in MR x KC slivers from L2, and an MR x NR register tile accumulates with FMAs.
//   C (m, n) [+]= op(A) (m, k) * op(B) (k, n), all row-major with leading dimensions.
// Threads split the tiles when called outside a parallel region. Deliberately not here: double
// (Eigen serves it), other ISAs (Eigen is the fallback), edge micro-kernels (edges go through a
// small buffer).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <new>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#  include <immintrin.h>
#  define MEDIMG_SGEMM_X86 1
#else
#  define MEDIMG_SGEMM_X86 0
#endif

#include "medimg/core/parallel.hpp"

namespace medimg::cpu::sgemm {

/// A row-major matrix operand: element (i, j) is p[i * ld + j], or p[j * ld + i] when transposed.
struct Operand {
    const float* p;
    std::int64_t ld;
    bool trans;
    float at(std::int64_t i, std::int64_t j) const { return trans ? p[j * ld + i] : p[i * ld + j]; }
};

enum class Isa { none, avx2, avx512 };

#if MEDIMG_SGEMM_X86
inline Isa detect_isa() {
    static const Isa isa = [] {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f")) return Isa::avx512;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
        return Isa::none;
    }();
    return isa;
}
#else
inline Isa detect_isa() { return Isa::none; }
#endif

namespace detail {

constexpr std::int64_t kKC = 256;  // depth of a packed block: the KC x NR sliver of B fits L1
constexpr std::int64_t kMC = 192;  // rows of A packed at once (an L2-sized block)
constexpr std::int64_t kNC = 3072; // columns of B packed at once

/// Per-thread scratch, grown on demand, 64-byte aligned.
inline float* scratch(int which, std::size_t floats) {
    struct Buf {
        float* p = nullptr;
        std::size_t n = 0;
        ~Buf() { ::operator delete(p, std::align_val_t(64)); }
    };
    thread_local Buf bufs[2];
    Buf& b = bufs[which];
    if (b.n < floats) {
        ::operator delete(b.p, std::align_val_t(64));
        b.p = static_cast<float*>(::operator new(floats * sizeof(float), std::align_val_t(64)));
        b.n = floats;
    }
    return b.p;
}

/// Packs rows [i0, i0+mc) x depth [p0, p0+kc) of A into MR-row slivers: dst[(s*kc + p)*MR + r].
template <int MR>
void pack_a(const Operand& A, std::int64_t i0, std::int64_t mc, std::int64_t p0, std::int64_t kc, float* dst) {
    for (std::int64_t s = 0; s * MR < mc; ++s) {
        const std::int64_t rows = std::min<std::int64_t>(MR, mc - s * MR);
        float* d = dst + s * kc * MR;
        if (A.trans) {  // A stored (k, m): the MR values of one depth are contiguous
            for (std::int64_t p = 0; p < kc; ++p) {
                const float* src = A.p + (p0 + p) * A.ld + i0 + s * MR;
                for (int r = 0; r < MR; ++r) d[p * MR + r] = r < rows ? src[r] : 0.0f;
            }
        } else {  // MR row streams read in step, the packed sliver written in order
            const float* src[MR];
            for (int r = 0; r < MR; ++r) src[r] = A.p + (i0 + s * MR + std::min<std::int64_t>(r, rows - 1)) * A.ld + p0;
            if (rows == MR) {  // a transpose, in 16-deep blocks that stay in L1
                std::int64_t p = 0;
                for (; p + 16 <= kc; p += 16)
                    for (int r = 0; r < MR; ++r) {
                        const float* sr = src[r] + p;
                        float* dr = d + p * MR + r;
                        for (int q = 0; q < 16; ++q) dr[q * MR] = sr[q];
                    }
                for (; p < kc; ++p)
                    for (int r = 0; r < MR; ++r) d[p * MR + r] = src[r][p];
            } else {
                for (std::int64_t p = 0; p < kc; ++p)
                    for (int r = 0; r < MR; ++r) d[p * MR + r] = r < rows ? src[r][p] : 0.0f;
            }
        }
    }
}

#if MEDIMG_SGEMM_X86
/// Transposes a 16 x 16 block: rows src[r][0..16) -> dst[q * ld + r] for q, r < 16 (two passes of
/// in-lane unpacks, then two of 128-bit lane shuffles; Intel's optimization manual, "Transpose").
/// The packing of a transposed B (the weight gradient's cols^T) was a scalar gather of 32 column
/// streams, ~2 cycles per element: a third of that GEMM's time at ResNet18's 3x3 layers.
// GCC 12's AVX-512 shuffle intrinsics start from _mm512_undefined_ps(), which -Wuninitialized
// reports once inlined (GCC bug 105593, fixed in GCC 13): silenced for this function only.
#  pragma GCC diagnostic push
#  pragma GCC diagnostic ignored "-Wuninitialized"
__attribute__((target("avx512f"))) inline void transpose16(const float* const* src, float* dst, std::int64_t ld) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src[i]);
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);      // per lane: r_i[4L], r_i+1[4L], r_i[4L+1], r_i+1[4L+1]
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);  // ... elements 4L+2, 4L+3
    }
    for (int i = 0; i < 16; i += 4) {  // u[i + k]: rows i..i+3 of element 4L + k, k = 0..3
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i]), _mm512_castps_pd(t[i + 2])));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[i + 1]), _mm512_castps_pd(t[i + 3])));
    }
    for (int k = 0; k < 4; ++k) {
        // lanes (L0, L2) and (L1, L3) of rows 0-3 | 4-7, and of rows 8-11 | 12-15
        const __m512 a02 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88), a13 = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xdd);
        const __m512 b02 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88), b13 = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xdd);
        _mm512_storeu_ps(dst + (0 + k) * ld, _mm512_shuffle_f32x4(a02, b02, 0x88));   // element k
        _mm512_storeu_ps(dst + (8 + k) * ld, _mm512_shuffle_f32x4(a02, b02, 0xdd));   // element 8 + k
        _mm512_storeu_ps(dst + (4 + k) * ld, _mm512_shuffle_f32x4(a13, b13, 0x88));   // element 4 + k
        _mm512_storeu_ps(dst + (12 + k) * ld, _mm512_shuffle_f32x4(a13, b13, 0xdd));  // element 12 + k
    }
}
#  pragma GCC diagnostic pop
#endif

/// Packs depth [p0, p0+kc) x columns [j0, j0+nc) of B into NR-column slivers: dst[(t*kc + p)*NR + c].
template <int NR>
void pack_b(const Operand& B, std::int64_t p0, std::int64_t kc, std::int64_t j0, std::int64_t nc, float* dst) {
    for (std::int64_t t = 0; t * NR < nc; ++t) {
        const std::int64_t cols = std::min<std::int64_t>(NR, nc - t * NR);
        float* d = dst + t * kc * NR;
        if (!B.trans) {  // B stored (k, n): a row of NR values is contiguous
            for (std::int64_t p = 0; p < kc; ++p) {
                const float* src = B.p + (p0 + p) * B.ld + j0 + t * NR;
                if (cols == NR) {
                    std::memcpy(d + p * NR, src, NR * sizeof(float));
                } else {
                    for (int c = 0; c < NR; ++c) d[p * NR + c] = c < cols ? src[c] : 0.0f;
                }
            }
        } else {  // NR column streams read in step, the packed sliver written in order
            const float* src[NR];
            for (int c = 0; c < NR; ++c) src[c] = B.p + (j0 + t * NR + std::min<std::int64_t>(c, cols - 1)) * B.ld + p0;
            if (cols == NR) {  // a transpose, in 16-deep blocks that stay in L1
                std::int64_t p = 0;
#if MEDIMG_SGEMM_X86
                if (NR % 16 == 0 && detect_isa() == Isa::avx512) {
                    for (; p + 16 <= kc; p += 16)
                        for (int h = 0; h < NR; h += 16) {
                            const float* rows[16];
                            for (int c = 0; c < 16; ++c) rows[c] = src[h + c] + p;
                            transpose16(rows, d + p * NR + h, NR);
                        }
                }
#endif
                for (; p + 16 <= kc; p += 16)
                    for (int c = 0; c < NR; ++c) {
                        const float* sc = src[c] + p;
                        float* dc = d + p * NR + c;
                        for (int q = 0; q < 16; ++q) dc[q * NR] = sc[q];
                    }
                for (; p < kc; ++p)
                    for (int c = 0; c < NR; ++c) d[p * NR + c] = src[c][p];
            } else {
                for (std::int64_t p = 0; p < kc; ++p)
                    for (int c = 0; c < NR; ++c) d[p * NR + c] = c < cols ? src[c][p] : 0.0f;
            }
        }
    }
}

#if MEDIMG_SGEMM_X86
// Register tile MR x NR: C_tile (+)= Ap (MR x kc) * Bp (kc x NR). `load` adds to C's current
// values; partial tiles (rows < MR or cols < NR) go through a stack buffer.
__attribute__((target("avx512f"))) inline void kernel_avx512(std::int64_t kc, const float* a, const float* b, float* c,
                                                              std::int64_t ldc, bool load, int rows, int cols) {
    constexpr int MR = 12;
    __m512 acc[MR][2];
#  pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (std::int64_t p = 0; p < kc; ++p) {
        const __m512 b0 = _mm512_load_ps(b + p * 32), b1 = _mm512_load_ps(b + p * 32 + 16);
#  pragma GCC unroll 12
        for (int r = 0; r < MR; ++r) {
            const __m512 av = _mm512_set1_ps(a[p * MR + r]);
            acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    if (rows == MR && cols == 32) {
#  pragma GCC unroll 12
        for (int r = 0; r < MR; ++r) {
            float* cr = c + r * ldc;
            if (load) {
                acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_loadu_ps(cr));
                acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_loadu_ps(cr + 16));
            }
            _mm512_storeu_ps(cr, acc[r][0]);
            _mm512_storeu_ps(cr + 16, acc[r][1]);
        }
        return;
    }
    alignas(64) float tmp[MR * 32];
#  pragma GCC unroll 12
    for (int r = 0; r < MR; ++r) {
        _mm512_store_ps(tmp + r * 32, acc[r][0]);
        _mm512_store_ps(tmp + r * 32 + 16, acc[r][1]);
    }
    for (int r = 0; r < rows; ++r)
        for (int j = 0; j < cols; ++j) c[r * ldc + j] = (load ? c[r * ldc + j] : 0.0f) + tmp[r * 32 + j];
}

__attribute__((target("avx2,fma"))) inline void kernel_avx2(std::int64_t kc, const float* a, const float* b, float* c,
                                                             std::int64_t ldc, bool load, int rows, int cols) {
    constexpr int MR = 6;
    __m256 acc[MR][2];
#  pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (std::int64_t p = 0; p < kc; ++p) {
        const __m256 b0 = _mm256_load_ps(b + p * 16), b1 = _mm256_load_ps(b + p * 16 + 8);
#  pragma GCC unroll 6
        for (int r = 0; r < MR; ++r) {
            const __m256 av = _mm256_broadcast_ss(a + p * MR + r);
            acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
        }
    }
    if (rows == MR && cols == 16) {
#  pragma GCC unroll 6
        for (int r = 0; r < MR; ++r) {
            float* cr = c + r * ldc;
            if (load) {
                acc[r][0] = _mm256_add_ps(acc[r][0], _mm256_loadu_ps(cr));
                acc[r][1] = _mm256_add_ps(acc[r][1], _mm256_loadu_ps(cr + 8));
            }
            _mm256_storeu_ps(cr, acc[r][0]);
            _mm256_storeu_ps(cr + 8, acc[r][1]);
        }
        return;
    }
    alignas(32) float tmp[MR * 16];
#  pragma GCC unroll 6
    for (int r = 0; r < MR; ++r) {
        _mm256_store_ps(tmp + r * 16, acc[r][0]);
        _mm256_store_ps(tmp + r * 16 + 8, acc[r][1]);
    }
    for (int r = 0; r < rows; ++r)
        for (int j = 0; j < cols; ++j) c[r * ldc + j] = (load ? c[r * ldc + j] : 0.0f) + tmp[r * 16 + j];
}
#endif

/// A (m, k) packed for every block at once: the (pc, ic) block's slivers, as pack_a writes them,
/// start at pc * round_up(m, MR) + ic * kc (kMC is a multiple of MR, so the ic blocks of one
/// depth block are contiguous). Weights that multiply many inputs are packed this way once.
template <int MR>
std::int64_t packed_a_size(std::int64_t m, std::int64_t k) {
    return (m + MR - 1) / MR * MR * k;
}
template <int MR>
void pack_a_all(const Operand& A, std::int64_t m, std::int64_t k, float* dst) {
    const std::int64_t mpad = (m + MR - 1) / MR * MR;
    for (std::int64_t pc = 0; pc < k; pc += kKC) {
        const std::int64_t kc = std::min(kKC, k - pc);
        for (std::int64_t ic = 0; ic < m; ic += kMC) pack_a<MR>(A, ic, std::min(kMC, m - ic), pc, kc, dst + pc * mpad + ic * kc);
    }
}

/// The blocked loops around one micro-kernel shape. `apacked`, when not null, is A already in
/// pack_a_all's layout (A itself is then not read).
template <int MR, int NR, class Kernel>
void blocked(std::int64_t m, std::int64_t n, std::int64_t k, const Operand& A, const float* apacked, const Operand& B, float* c,
             std::int64_t ldc, bool accumulate, Kernel kernel) {
    const std::int64_t mpad = (m + MR - 1) / MR * MR;
    // The packed sliver block of A for rows [ic, ic+mc) x depth [pc, pc+kc): packed now into this
    // thread's scratch, or found in apacked.
    auto a_block = [&](std::int64_t ic, std::int64_t mc, std::int64_t pc, std::int64_t kc) -> const float* {
        if (apacked) return apacked + pc * mpad + ic * kc;
        float* ap = scratch(1, static_cast<std::size_t>(((mc + MR - 1) / MR) * MR * kc));
        pack_a<MR>(A, ic, mc, pc, kc, ap);
        return ap;
    };
    const bool threaded = !in_parallel() && num_threads() > 1 && m * n * k >= (std::int64_t{1} << 21);
    for (std::int64_t jc = 0; jc < n; jc += kNC) {
        const std::int64_t nc = std::min(kNC, n - jc);
        const std::int64_t nslivers = (nc + NR - 1) / NR;
        for (std::int64_t pc = 0; pc < k; pc += kKC) {
            const std::int64_t kc = std::min(kKC, k - pc);
            const bool load = accumulate || pc > 0;
            if (!threaded) {
                float* bp = scratch(0, static_cast<std::size_t>(nslivers * NR * kc));
                pack_b<NR>(B, pc, kc, jc, nc, bp);
                for (std::int64_t ic = 0; ic < m; ic += kMC) {
                    const std::int64_t mc = std::min(kMC, m - ic);
                    const float* ap = a_block(ic, mc, pc, kc);
                    for (std::int64_t jr = 0; jr < nc; jr += NR)
                        for (std::int64_t ir = 0; ir < mc; ir += MR)
                            kernel(kc, ap + ir * kc, bp + jr * kc, c + (ic + ir) * ldc + jc + jr, ldc, load,
                                   static_cast<int>(std::min<std::int64_t>(MR, mc - ir)),
                                   static_cast<int>(std::min<std::int64_t>(NR, nc - jr)));
                }
                continue;
            }
            // Threads: B's slivers are packed into the shared block in nt parts (packing by one
            // thread while the others waited was ~8% of a batch-1 ResNet18 forward); then the
            // tiles (a row block of A x a column sliver of B) run in chunks of consecutive tiles,
            // each chunk on whichever thread takes it next (core/parallel.hpp): a thread that
            // starts late takes fewer, and no thread waits for it. A chunk packs the A row block
            // of each run of its tiles that shares one.
            const std::int64_t mblocks = (m + kMC - 1) / kMC;
            const std::int64_t tiles = mblocks * nslivers;
            const int nt = static_cast<int>(std::min<std::int64_t>(num_threads(), tiles));
            float* bp = scratch(0, static_cast<std::size_t>(nslivers * NR * kc));  // the calling thread's block, shared
            ::medimg::detail::run_items(nt, nt, [&](std::int64_t id) {
                const std::int64_t s0 = nslivers * id / nt, s1 = nslivers * (id + 1) / nt;
                if (s1 > s0) pack_b<NR>(B, pc, kc, jc + s0 * NR, std::min(nc - s0 * NR, (s1 - s0) * NR), bp + s0 * kc * NR);
            });
            const std::int64_t chunks = std::min<std::int64_t>(tiles, 4 * static_cast<std::int64_t>(nt));
            ::medimg::detail::run_items(chunks, nt, [&](std::int64_t q) {
                const std::int64_t lo = tiles * q / chunks, hi = tiles * (q + 1) / chunks;
                std::int64_t packed = -1;
                const float* ap = nullptr;
                for (std::int64_t t = lo; t < hi; ++t) {
                    const std::int64_t mb = t / nslivers, js = t % nslivers;
                    const std::int64_t ic = mb * kMC, mc = std::min(kMC, m - ic), jr = js * NR;
                    if (packed != mb) {
                        ap = a_block(ic, mc, pc, kc);
                        packed = mb;
                    }
                    for (std::int64_t ir = 0; ir < mc; ir += MR)
                        kernel(kc, ap + ir * kc, bp + jr * kc, c + (ic + ir) * ldc + jc + jr, ldc, load,
                               static_cast<int>(std::min<std::int64_t>(MR, mc - ir)),
                               static_cast<int>(std::min<std::int64_t>(NR, nc - jr)));
                }
            });
        }
    }
}

}  // namespace detail

/// Whether a vector micro-kernel serves this processor (else callers use Eigen).
inline bool available() { return detect_isa() != Isa::none; }

/// C (m, n) = op(A) (m, k) * op(B) (k, n), or += when accumulate. Requires available().
inline void gemm(std::int64_t m, std::int64_t n, std::int64_t k, const Operand& A, const Operand& B, float* c, std::int64_t ldc,
                 bool accumulate) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        if (!accumulate)
            for (std::int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
        return;
    }
#if MEDIMG_SGEMM_X86
    if (detect_isa() == Isa::avx512)
        detail::blocked<12, 32>(m, n, k, A, nullptr, B, c, ldc, accumulate, detail::kernel_avx512);
    else
        detail::blocked<6, 16>(m, n, k, A, nullptr, B, c, ldc, accumulate, detail::kernel_avx2);
#endif
}

/// Floats that pack_a() needs for an (m, k) A on this processor. Requires available().
inline std::int64_t packed_a_size(std::int64_t m, std::int64_t k) {
    return detect_isa() == Isa::avx512 ? detail::packed_a_size<12>(m, k) : detail::packed_a_size<6>(m, k);
}
/// A (m, k) in the micro-kernel's panel layout, for gemm_packed_a() with the same m, k: what every
/// product packs again otherwise (a weight matrix: 10% of a batch-1 ResNet18 forward). Requires
/// available(); dst holds packed_a_size(m, k) floats.
inline void pack_a(std::int64_t m, std::int64_t k, const Operand& A, float* dst) {
    if (detect_isa() == Isa::avx512)
        detail::pack_a_all<12>(A, m, k, dst);
    else
        detail::pack_a_all<6>(A, m, k, dst);
}
/// As gemm(), with A given packed by pack_a(m, k, ...). Requires available() and k > 0.
inline void gemm_packed_a(std::int64_t m, std::int64_t n, std::int64_t k, const float* apacked, const Operand& B, float* c,
                          std::int64_t ldc, bool accumulate) {
    if (m <= 0 || n <= 0) return;
    const Operand none{nullptr, 0, false};
#if MEDIMG_SGEMM_X86
    if (detect_isa() == Isa::avx512)
        detail::blocked<12, 32>(m, n, k, none, apacked, B, c, ldc, accumulate, detail::kernel_avx512);
    else
        detail::blocked<6, 16>(m, n, k, none, apacked, B, c, ldc, accumulate, detail::kernel_avx2);
#endif
}

}  // namespace medimg::cpu::sgemm
