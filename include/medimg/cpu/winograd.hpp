// SPDX-License-Identifier: MIT
// cpu/winograd.hpp: 3x3 stride-1 pad-1 convolutions as Winograd F(2x2, 3x3) (Lavin & Gray 2016,
// "Fast Algorithms for Convolutional Neural Networks", section 4): each 2x2 output tile is
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A
// with d the 4x4 input patch, g the 3x3 filter, (.) the elementwise product over the 16 positions
// xi, and
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1].
// Summed over input channels, the 16 products become 16 GEMMs  M[xi] (C_out, T) = U[xi] (C_out, C)
// x V[xi] (C, T) over the T tiles of a group of images: 16 x C_out x C x T multiply-adds against
// im2col's 36 x C_out x C x T, 2.25x fewer. The transforms are additions (and halvings for the
// filter), memory-bound. ResNet's 3x3 body convolutions are ~83% of its multiply-adds.
// The input gradient of such a convolution is the same operation on dy with the filter rotated by
// 180 degrees and its channel axes swapped (a stride-1, pad-1 3x3 transposed convolution is a
// 3x3 pad-1 convolution), so backward_data uses it too; the weight gradient uses the same
// transforms by duality (weight_gradient below).
// Accuracy: the transforms add a few float roundings per term (the B^T d B sums of four inputs,
// the 1/2 factors are exact); measured against im2col in tests/cpu/test_kernels.cpp.
// F(4x4, 3x3) (same paper, section 4.2; points 0, +-1, +-2, infinity): 6x6 input patches give 4x4
// output tiles, 36 GEMMs, 36/16 = 2.25 multiplies per output against F(2x2)'s 4 and direct's 9, and
// the transformed activations are 36/16 = 2.25x the input instead of 16/4 = 4x (less memory traffic
// too). Its transforms have larger coefficients (4, 5, 8, 1/24), so float error grows about tenfold
// (to ~5e-6 of the largest output; bounds tested against float64 in tests/cpu/test_kernels.cpp,
// benchmarks/RESULTS.md, "Winograd F(4x4, 3x3)"). All three directions take it where its tiles fill an image group (tile()),
// else F(2x2) where those do, else im2col; MEDIMG_WINOGRAD_TILE=2 keeps F(2x2) throughout.
// Deliberately not here: strides other than 1.
// Included by cpu/conv2d.hpp after its image-group helpers (image_groups, for_each_group,
// conv_scratch), which it uses; include conv2d.hpp, not this file.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#include "medimg/core/parallel.hpp"
#include "medimg/cpu/gemm.hpp"
#include "medimg/ops/conv2d.hpp"

namespace medimg::cpu::winograd {

/// Whether the convolution is one this file computes: 3x3 kernel, stride 1, pad 1, dilation 1.
inline bool applies(std::int64_t kh, std::int64_t kw, const ops::Conv2dParams& p) {
    return kh == 3 && kw == 3 && p.stride_h == 1 && p.stride_w == 1 && p.pad_h == 1 && p.pad_w == 1 && p.dilation_h == 1 &&
           p.dilation_w == 1;
}

/// Whether Winograd pays for N images of H x W: each of its 16 GEMMs packs the whole transformed
/// filter (C_out x C_in) for the T tiles of one image group, so with few tiles per group (ResNet18's
/// layer4, 7x7, at batch 8: T = 64) packing outweighs the saved multiply-adds. Measured
/// (bench_conv2d, 2 threads): T = 64 was 0.6-0.9x the im2col speed, T >= 196 1.15-1.4x.
inline constexpr std::int64_t kMinTilesPerGroup = 128;

/// When 3x3 stride-1 pad-1 convolutions use Winograd: `automatic` (the default) when
/// worthwhile(); `always` and `never` for tests and benchmarks that compare it with im2col.
/// Process-wide; not meant to change while convolutions run. The environment variable
/// MEDIMG_WINOGRAD=never|always|auto sets the starting value (A/B runs of whole programs).
enum class Mode { automatic, always, never };
inline Mode& mode() {
    static Mode m = [] {
        const char* e = std::getenv("MEDIMG_WINOGRAD");
        const std::string v = e ? e : "";
        return v == "never" ? Mode::never : v == "always" ? Mode::always : Mode::automatic;
    }();
    return m;
}

/// U[xi][k][c] = (G g_kc G^T)[xi] for w: (Co, C, 3, 3); `flip` reads w as the input gradient needs
/// it: g_kc = rot180(w[c][k]) with w of shape (C, Co, 3, 3), i.e. the output channels of the
/// transposed convolution are w's input channels.
template <class T>
void filter_transform(const T* w, std::int64_t Co, std::int64_t C, bool flip, T* U) {
    const std::int64_t KC = Co * C;
    parallel_blocks(KC, 256, [&](std::int64_t lo, std::int64_t hi) {
        for (std::int64_t kc = lo; kc < hi; ++kc) {
            const std::int64_t k = kc / C, c = kc % C;
            T g[3][3];
            const T* src = flip ? w + (c * Co + k) * 9 : w + (k * C + c) * 9;
            for (int i = 0; i < 3; ++i)
                for (int j = 0; j < 3; ++j) g[i][j] = flip ? src[(2 - i) * 3 + (2 - j)] : src[i * 3 + j];
            T gg[4][3];  // G g
            for (int j = 0; j < 3; ++j) {
                gg[0][j] = g[0][j];
                gg[1][j] = T(0.5) * (g[0][j] + g[1][j] + g[2][j]);
                gg[2][j] = T(0.5) * (g[0][j] - g[1][j] + g[2][j]);
                gg[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; ++i) {  // (G g) G^T
                T* u = U + (i * 4) * KC + kc;
                u[0 * KC] = gg[i][0];
                u[1 * KC] = T(0.5) * (gg[i][0] + gg[i][1] + gg[i][2]);
                u[2 * KC] = T(0.5) * (gg[i][0] - gg[i][1] + gg[i][2]);
                u[3 * KC] = gg[i][2];
            }
        }
    });
}

struct Tiles {
    std::int64_t H, W, th, tw;  // input = output size; tiles per column and row
    std::int64_t per_image() const { return th * tw; }
};
/// Output tiles of m x m (m = 2 or 4) over an H x W image.
inline Tiles tiles_for(std::int64_t H, std::int64_t W, int m = 2) { return {H, W, (H + m - 1) / m, (W + m - 1) / m}; }
/// Transform positions xi of F(m x m, 3x3): (m + 2)^2 GEMMs.
constexpr int positions(int m) { return (m + 2) * (m + 2); }

/// V[xi][c][t] = (B^T d B)[xi] for every channel c of images x[0..ng) (each (C, H, W)) and tile
/// t = (j * th + ty) * tw + tx; V has T = ng * th * tw columns. Channels [c0, c1) only.
/// Vectorisable form: a tile row's four input rows are split into even and odd columns of the
/// padded row (E[i] = x[2i - 1], O[i] = x[2i], zero outside), B^T runs down the rows on whole
/// E/O vectors, and B along a tile's columns becomes  (E[i] - E[i+1], O[i] + E[i+1],
/// E[i+1] - O[i], O[i] - O[i+1])  - every access contiguous in the tile index i.
template <class T>
void input_transform(const T* x, std::int64_t ng, std::int64_t C, const Tiles& tl, std::int64_t c0, std::int64_t c1, T* V) {
    const std::int64_t T_ = ng * tl.per_image(), CT = C * T_, HW = tl.H * tl.W, L = tl.tw + 1;
    std::vector<T> buf(static_cast<std::size_t>(16 * L));
    T* e[4];
    T* o[4];
    T* te[4];
    T* to[4];
    for (int r = 0; r < 4; ++r) {
        e[r] = buf.data() + r * L;
        o[r] = buf.data() + (4 + r) * L;
        te[r] = buf.data() + (8 + r) * L;
        to[r] = buf.data() + (12 + r) * L;
    }
    for (std::int64_t c = c0; c < c1; ++c)
        for (std::int64_t j = 0; j < ng; ++j) {
            const T* plane = x + (j * C + c) * HW;
            for (std::int64_t ty = 0; ty < tl.th; ++ty) {
                for (int r = 0; r < 4; ++r) {  // even / odd columns of the padded input rows
                    const std::int64_t row = 2 * ty - 1 + r;
                    if (row < 0 || row >= tl.H) {
                        std::fill(e[r], e[r] + L, T(0));
                        std::fill(o[r], o[r] + L, T(0));
                        continue;
                    }
                    const T* in = plane + row * tl.W;
                    e[r][0] = T(0);  // column -1
                    for (std::int64_t i = 1; i < L; ++i) e[r][i] = 2 * i - 1 < tl.W ? in[2 * i - 1] : T(0);
                    for (std::int64_t i = 0; i < L; ++i) o[r][i] = 2 * i < tl.W ? in[2 * i] : T(0);
                }
                for (std::int64_t i = 0; i < L; ++i) {  // B^T down the rows
                    te[0][i] = e[0][i] - e[2][i];
                    te[1][i] = e[1][i] + e[2][i];
                    te[2][i] = e[2][i] - e[1][i];
                    te[3][i] = e[1][i] - e[3][i];
                    to[0][i] = o[0][i] - o[2][i];
                    to[1][i] = o[1][i] + o[2][i];
                    to[2][i] = o[2][i] - o[1][i];
                    to[3][i] = o[1][i] - o[3][i];
                }
                T* out = V + c * T_ + (j * tl.th + ty) * tl.tw;
                for (int r = 0; r < 4; ++r) {  // B along the columns
                    T* v0 = out + (r * 4 + 0) * CT;
                    T* v1 = out + (r * 4 + 1) * CT;
                    T* v2 = out + (r * 4 + 2) * CT;
                    T* v3 = out + (r * 4 + 3) * CT;
                    const T* E = te[r];
                    const T* O = to[r];
                    for (std::int64_t i = 0; i < tl.tw; ++i) {
                        v0[i] = E[i] - E[i + 1];
                        v1[i] = O[i] + E[i + 1];
                        v2[i] = E[i + 1] - O[i];
                        v3[i] = O[i] - O[i + 1];
                    }
                }
            }
        }
}

/// y[j][k] (each (Co, H, W)) for images [0, ng) and output channels [k0, k1) from
/// M[xi][k][t]: Y = A^T m A per tile, cut at the image border, then the epilogue (bias[k],
/// + the residual at the same place of ep.residual, which starts at image 0 of this group, ReLU).
/// Vectorised over the tiles of a tile row: A^T down the rows on whole rows of M, then the even
/// and odd output columns, interleaved into y.
template <class T>
void output_transform(const T* M, std::int64_t ng, std::int64_t Co, const Tiles& tl, const Epilogue<T>& ep, std::int64_t k0,
                      std::int64_t k1, T* y) {
    const T* bias = ep.bias;
    const std::int64_t T_ = ng * tl.per_image(), KT = Co * T_, HW = tl.H * tl.W, tw = tl.tw;
    std::vector<T> buf(static_cast<std::size_t>(12 * tw));
    T* s[2][4];
    T* ye[2];
    T* yo[2];
    for (int r = 0; r < 2; ++r) {
        for (int q = 0; q < 4; ++q) s[r][q] = buf.data() + (r * 4 + q) * tw;
        ye[r] = buf.data() + (8 + r) * tw;
        yo[r] = buf.data() + (10 + r) * tw;
    }
    for (std::int64_t k = k0; k < k1; ++k) {
        const T b = bias ? bias[k] : T(0);
        for (std::int64_t j = 0; j < ng; ++j) {
            T* plane = y + (j * Co + k) * HW;
            for (std::int64_t ty = 0; ty < tl.th; ++ty) {
                const T* in = M + k * T_ + (j * tl.th + ty) * tw;
                for (int q = 0; q < 4; ++q) {  // A^T down the rows
                    const T* m0 = in + (0 * 4 + q) * KT;
                    const T* m1 = in + (1 * 4 + q) * KT;
                    const T* m2 = in + (2 * 4 + q) * KT;
                    const T* m3 = in + (3 * 4 + q) * KT;
                    T* s0 = s[0][q];
                    T* s1 = s[1][q];
                    for (std::int64_t i = 0; i < tw; ++i) {
                        s0[i] = m0[i] + m1[i] + m2[i];
                        s1[i] = m1[i] - m2[i] - m3[i];
                    }
                }
                for (int r = 0; r < 2; ++r)  // A along the columns
                    for (std::int64_t i = 0; i < tw; ++i) {
                        ye[r][i] = s[r][0][i] + s[r][1][i] + s[r][2][i] + b;
                        yo[r][i] = s[r][1][i] - s[r][2][i] - s[r][3][i] + b;
                    }
                for (int r = 0; r < 2; ++r) {
                    const std::int64_t row = 2 * ty + r;
                    if (row >= tl.H) break;
                    T* out = plane + row * tl.W;
                    const std::int64_t pairs = tl.W / 2;  // whole tiles in this row
                    for (std::int64_t i = 0; i < pairs; ++i) {
                        out[2 * i] = ye[r][i];
                        out[2 * i + 1] = yo[r][i];
                    }
                    if (tl.W % 2) out[tl.W - 1] = ye[r][pairs];
                    if (ep.residual || ep.relu)  // the row is in L1: one more pass costs little
                        epilogue_row(out, out, tl.W, T(0), ep.residual ? ep.residual + (j * Co + k) * HW + row * tl.W : nullptr,
                                     ep.relu);
                }
            }
        }
    }
}

// ---- F(4x4, 3x3) ----
// B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1],
// G = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
// A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]  (Lavin & Gray 2016, section 4.2).

namespace f4 {
/// out[r] = (B^T d)[r] for six vectors d[0..6) of length n (one of B^T's uses: down the rows or
/// along the columns).
template <class T>
[[gnu::always_inline]] inline void bt(const T* d0, const T* d1, const T* d2, const T* d3, const T* d4, const T* d5, T* const* out, std::int64_t n) {
    T* o0 = out[0];
    T* o1 = out[1];
    T* o2 = out[2];
    T* o3 = out[3];
    T* o4 = out[4];
    T* o5 = out[5];
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) {
        o0[i] = T(4) * d0[i] - T(5) * d2[i] + d4[i];
        o1[i] = d3[i] + d4[i] - T(4) * (d1[i] + d2[i]);
        o2[i] = T(4) * (d1[i] - d2[i]) + d4[i] - d3[i];
        o3[i] = T(2) * (d3[i] - d1[i]) + d4[i] - d2[i];
        o4[i] = T(2) * (d1[i] - d3[i]) + d4[i] - d2[i];
        o5[i] = T(4) * d1[i] - T(5) * d3[i] + d5[i];
    }
}
/// The column phases of one input row: p_k[i] = in[4i - 1 + k] for i < L, zero outside [0, W).
/// The interior (every column inside the row) is a plain stride-4 deinterleave.
template <class T>
[[gnu::always_inline]] inline void split_phases(const T* in, std::int64_t W, std::int64_t L, T* const* p) {
    auto edge = [&](std::int64_t i) {
        for (int k = 0; k < 4; ++k) {
            const std::int64_t col = 4 * i - 1 + k;
            p[k][i] = col >= 0 && col < W ? in[col] : T(0);
        }
    };
    const std::int64_t hi = std::max<std::int64_t>(1, std::min(L, W >= 3 ? (W - 3) / 4 + 1 : 0));  // [1, hi) inside
    T* p0 = p[0];
    T* p1 = p[1];
    T* p2 = p[2];
    T* p3 = p[3];
    edge(0);
#pragma omp simd
    for (std::int64_t i = 1; i < hi; ++i) {
        const T* src = in + 4 * i - 1;
        p0[i] = src[0];
        p1[i] = src[1];
        p2[i] = src[2];
        p3[i] = src[3];
    }
    for (std::int64_t i = hi; i < L; ++i) edge(i);
}
}  // namespace f4

/// F(4x4)'s filter transform: U[xi][k][c] = (G g_kc G^T)[xi], xi < 36; `flip` as in
/// filter_transform. G's rows written out (g0 / 4, -(g0 + g1 + g2) / 6, ...), in T, on blocks of
/// 16 filters side by side so that every step is a vector operation and every store to U is
/// contiguous: one double matrix product per filter was a fifth of a 256-channel 14x14
/// convolution's time.
template <class T>
void filter_transform4(const T* w, std::int64_t Co, std::int64_t C, bool flip, T* U) {
    const std::int64_t KC = Co * C;
    constexpr int B = 16;
    // o[r][l] = (G v)[r] for the columns v = (v0[l], v1[l], v2[l]) of B filters
    auto gv = [](const T* v0, const T* v1, const T* v2, T (*o)[B]) {
        const T quarter = T(0.25), sixth = T(1) / T(6), twelfth = T(1) / T(12), twentyfourth = T(1) / T(24);
#pragma omp simd
        for (int l = 0; l < B; ++l) {
            const T even = v0[l] + v2[l], odd = v1[l];
            o[0][l] = quarter * v0[l];
            o[1][l] = -sixth * (even + odd);
            o[2][l] = -sixth * (even - odd);
            const T a = twentyfourth * v0[l] + sixth * v2[l], b = twelfth * v1[l];
            o[3][l] = a + b;
            o[4][l] = a - b;
            o[5][l] = v2[l];
        }
    };
    parallel_blocks(KC, 256, [&](std::int64_t lo, std::int64_t hi) {
        T g[9][B];      // g[3i + j][l]: tap (i, j) of filter kc0 + l
        T gg[3][6][B];  // gg[j][r][l] = (G g)[r][j]
        T u[6][B];
        for (std::int64_t kc0 = lo; kc0 < hi; kc0 += B) {
            const int nb = static_cast<int>(std::min<std::int64_t>(B, hi - kc0));
            for (int l = 0; l < B; ++l) {
                const std::int64_t kc = kc0 + std::min(l, nb - 1), k = kc / C, c = kc % C;  // lanes past nb repeat the last
                const T* src = flip ? w + (c * Co + k) * 9 : w + (k * C + c) * 9;
                for (int t = 0; t < 9; ++t) g[t][l] = flip ? src[8 - t] : src[t];
            }
            for (int j = 0; j < 3; ++j) gv(g[j], g[3 + j], g[6 + j], gg[j]);
            for (int r = 0; r < 6; ++r) {  // row r of (G g) G^T = G applied to row r of G g
                gv(gg[0][r], gg[1][r], gg[2][r], u);
                for (int q = 0; q < 6; ++q) std::copy(u[q], u[q] + nb, U + (r * 6 + q) * KC + kc0);
            }
        }
    });
}

/// F(4x4)'s V[xi][c][t] = (B^T d B)[xi], the layout and channel range of input_transform. A tile
/// row's six input rows (4 ty - 1 + r) are split by column phase, P_k[i] = x[4i - 1 + k] (k < 4,
/// zero outside), so tile i's six columns are P_0..P_3[i], P_0[i + 1], P_1[i + 1]: B^T runs down
/// the rows on whole phase vectors, then along the columns, every access contiguous in i.
template <class T>
[[gnu::always_inline]] inline void input_transform4_body(const T* x, std::int64_t ng, std::int64_t C, const Tiles& tl,
                                                         std::int64_t c0, std::int64_t c1, T* V) {
    const std::int64_t T_ = ng * tl.per_image(), CT = C * T_, HW = tl.H * tl.W, L = tl.tw + 1, tw = tl.tw;
    std::vector<T> buf(static_cast<std::size_t>(48 * L));
    auto ph = [&](int r, int k) { return buf.data() + (r * 4 + k) * L; };       // phase k of input row r
    auto tr = [&](int r, int k) { return buf.data() + (24 + r * 4 + k) * L; };  // after B^T down the rows
    for (std::int64_t c = c0; c < c1; ++c)
        for (std::int64_t j = 0; j < ng; ++j) {
            const T* plane = x + (j * C + c) * HW;
            for (std::int64_t ty = 0; ty < tl.th; ++ty) {
                for (int r = 0; r < 6; ++r) {
                    const std::int64_t row = 4 * ty - 1 + r;
                    if (row < 0 || row >= tl.H) {
                        std::fill(ph(r, 0), ph(r, 0) + 4 * L, T(0));
                        continue;
                    }
                    T* const p[4] = {ph(r, 0), ph(r, 1), ph(r, 2), ph(r, 3)};
                    f4::split_phases(plane + row * tl.W, tl.W, L, p);
                }
                for (int k = 0; k < 4; ++k) {
                    T* const out[6] = {tr(0, k), tr(1, k), tr(2, k), tr(3, k), tr(4, k), tr(5, k)};
                    f4::bt(ph(0, k), ph(1, k), ph(2, k), ph(3, k), ph(4, k), ph(5, k), out, L);
                }
                T* base = V + c * T_ + (j * tl.th + ty) * tw;
                for (int r = 0; r < 6; ++r) {
                    T* const out[6] = {base + (r * 6 + 0) * CT, base + (r * 6 + 1) * CT, base + (r * 6 + 2) * CT,
                                       base + (r * 6 + 3) * CT, base + (r * 6 + 4) * CT, base + (r * 6 + 5) * CT};
                    f4::bt(tr(r, 0), tr(r, 1), tr(r, 2), tr(r, 3), tr(r, 0) + 1, tr(r, 1) + 1, out, tw);
                }
            }
        }
}

/// F(4x4)'s y from M[xi][k][t] (xi < 36), the layout, channel range and epilogue of
/// output_transform: A^T down the rows on whole rows of M, then along the columns into the four
/// output column phases, interleaved into y.
template <class T>
[[gnu::always_inline]] inline void output_transform4_body(const T* M, std::int64_t ng, std::int64_t Co, const Tiles& tl,
                                                          const Epilogue<T>& ep, std::int64_t k0, std::int64_t k1, T* y) {
    const T* bias = ep.bias;
    const std::int64_t T_ = ng * tl.per_image(), KT = Co * T_, HW = tl.H * tl.W, tw = tl.tw;
    std::vector<T> buf(static_cast<std::size_t>(28 * tw));
    auto s = [&](int r, int q) { return buf.data() + (r * 6 + q) * tw; };  // A^T down the rows: 4 x 6
    T* yp[4];                                                               // the output's column phases
    for (int k = 0; k < 4; ++k) yp[k] = buf.data() + (24 + k) * tw;
    for (std::int64_t k = k0; k < k1; ++k) {
        const T b = bias ? bias[k] : T(0);
        for (std::int64_t j = 0; j < ng; ++j) {
            T* plane = y + (j * Co + k) * HW;
            for (std::int64_t ty = 0; ty < tl.th; ++ty) {
                const T* in = M + k * T_ + (j * tl.th + ty) * tw;
                for (int q = 0; q < 6; ++q) {
                    const T* m0 = in + (0 * 6 + q) * KT;
                    const T* m1 = in + (1 * 6 + q) * KT;
                    const T* m2 = in + (2 * 6 + q) * KT;
                    const T* m3 = in + (3 * 6 + q) * KT;
                    const T* m4 = in + (4 * 6 + q) * KT;
                    const T* m5 = in + (5 * 6 + q) * KT;
                    T* s0 = s(0, q);
                    T* s1 = s(1, q);
                    T* s2 = s(2, q);
                    T* s3 = s(3, q);
#pragma omp simd
                    for (std::int64_t i = 0; i < tw; ++i) {
                        const T p13 = m1[i] + m2[i], m12 = m1[i] - m2[i], p34 = m3[i] + m4[i], m34 = m3[i] - m4[i];
                        s0[i] = m0[i] + p13 + p34;
                        s1[i] = m12 + T(2) * m34;
                        s2[i] = p13 + T(4) * p34;
                        s3[i] = m12 + T(8) * m34 + m5[i];
                    }
                }
                const std::int64_t rows = std::min<std::int64_t>(4, tl.H - 4 * ty);
                for (std::int64_t r = 0; r < rows; ++r) {
                    const T* a0 = s(static_cast<int>(r), 0);
                    const T* a1 = s(static_cast<int>(r), 1);
                    const T* a2 = s(static_cast<int>(r), 2);
                    const T* a3 = s(static_cast<int>(r), 3);
                    const T* a4 = s(static_cast<int>(r), 4);
                    const T* a5 = s(static_cast<int>(r), 5);
                    T* y0 = yp[0];
                    T* y1 = yp[1];
                    T* y2 = yp[2];
                    T* y3 = yp[3];
#pragma omp simd
                    for (std::int64_t i = 0; i < tw; ++i) {
                        const T p13 = a1[i] + a2[i], m12 = a1[i] - a2[i], p34 = a3[i] + a4[i], m34 = a3[i] - a4[i];
                        y0[i] = a0[i] + p13 + p34 + b;
                        y1[i] = m12 + T(2) * m34 + b;
                        y2[i] = p13 + T(4) * p34 + b;
                        y3[i] = m12 + T(8) * m34 + a5[i] + b;
                    }
                    const std::int64_t row = 4 * ty + r;
                    T* out = plane + row * tl.W;
                    const std::int64_t whole = tl.W / 4;  // whole tiles in this row
                    for (std::int64_t i = 0; i < whole; ++i) {
                        out[4 * i] = y0[i];
                        out[4 * i + 1] = y1[i];
                        out[4 * i + 2] = y2[i];
                        out[4 * i + 3] = y3[i];
                    }
                    for (std::int64_t col = 4 * whole; col < tl.W; ++col) out[col] = yp[col % 4][whole];
                    if (ep.residual || ep.relu)  // the row is in L1: one more pass costs little
                        epilogue_row(out, out, tl.W, T(0), ep.residual ? ep.residual + (j * Co + k) * HW + row * tl.W : nullptr,
                                     ep.relu);
                }
            }
        }
    }
}

#if MEDIMG_SGEMM_X86
// AVX-512 forms of the F(4x4) transforms (float). A tile row is handled in chunks of up to 15
// (input) or 16 (output) tiles, one tile per vector lane: the input row's 64 columns are split
// into their four column phases by two-source permutes, both stages of B^T (or A^T) run on whole
// registers, and the results are stored with lane masks. The generic body above compiles to
// loops of one tile row (14 tiles at 56x56) and a scalar phase split; this form took the input
// and output transforms of ResNet18's layer1 (batch 32, 2 threads, perf) from 0.33 and 0.22 s
// to 0.14 and 0.10 s per 30 convolutions.
namespace f4x {
__attribute__((target("avx512f"))) inline void bt6(const __m512* d, __m512* o) {
    const __m512 four = _mm512_set1_ps(4.0f), five = _mm512_set1_ps(5.0f), two = _mm512_set1_ps(2.0f);
    o[0] = _mm512_fmadd_ps(four, d[0], _mm512_fnmadd_ps(five, d[2], d[4]));
    o[1] = _mm512_fnmadd_ps(four, _mm512_add_ps(d[1], d[2]), _mm512_add_ps(d[3], d[4]));
    o[2] = _mm512_fmadd_ps(four, _mm512_sub_ps(d[1], d[2]), _mm512_sub_ps(d[4], d[3]));
    o[3] = _mm512_fmadd_ps(two, _mm512_sub_ps(d[3], d[1]), _mm512_sub_ps(d[4], d[2]));
    o[4] = _mm512_fmadd_ps(two, _mm512_sub_ps(d[1], d[3]), _mm512_sub_ps(d[4], d[2]));
    o[5] = _mm512_fmadd_ps(four, d[1], _mm512_fnmadd_ps(five, d[3], d[5]));
}
/// Lanes e of [col, col + 16) with lo <= col + e < hi.
inline __mmask16 span_mask(std::int64_t col, std::int64_t lo, std::int64_t hi) {
    const std::int64_t a = std::max<std::int64_t>(lo - col, 0), b = std::min<std::int64_t>(hi - col, 16);
    if (b <= a) return 0;
    const std::uint32_t upto_b = b >= 16 ? 0xFFFFu : (1u << b) - 1u, below_a = (1u << a) - 1u;
    return static_cast<__mmask16>(upto_b & ~below_a);
}

/// idx[k]: the permute that gathers phase k of 32 columns (lanes i < 8 take column 4i + k; the
/// upper eight repeat them).
__attribute__((target("avx512f"))) inline void phase_indices(__m512i* idx) {
    for (int k = 0; k < 4; ++k) {
        alignas(64) std::int32_t v[16];
        for (int i = 0; i < 16; ++i) v[i] = 4 * (i % 8) + k;
        idx[k] = _mm512_load_si512(v);
    }
}
/// ph[k] lane i = row[col0 + 4i + k] for i < 16 (zero outside [0, W)): 64 columns in four masked
/// loads, split by two-source permutes.
__attribute__((target("avx512f"))) inline void split_row(const float* row, std::int64_t col0, std::int64_t W, const __m512i* idx,
                                                         __m512* ph) {
    __m512 a[4];
    for (int q = 0; q < 4; ++q) {
        const std::int64_t col = col0 + 16 * q;
        a[q] = _mm512_maskz_loadu_ps(span_mask(col, 0, W), row + col);
    }
    const __m512i halves = _mm512_set_epi32(23, 22, 21, 20, 19, 18, 17, 16, 7, 6, 5, 4, 3, 2, 1, 0);  // lanes 0-7 of each
    for (int k = 0; k < 4; ++k)
        ph[k] = _mm512_permutex2var_ps(_mm512_permutex2var_ps(a[0], idx[k], a[1]), halves, _mm512_permutex2var_ps(a[2], idx[k], a[3]));
}

__attribute__((target("avx512f"))) inline void input_transform(const float* x, std::int64_t ng, std::int64_t C, const Tiles& tl,
                                                               std::int64_t c0, std::int64_t c1, float* V) {
    const std::int64_t T_ = ng * tl.per_image(), CT = C * T_, HW = tl.H * tl.W, tw = tl.tw, W = tl.W;
    __m512i idx[4];
    phase_indices(idx);
    alignas(64) float tr[6][4][16 + 16];  // B^T down the rows, per row and phase (+ room to read one lane on)
    for (std::int64_t c = c0; c < c1; ++c)
        for (std::int64_t j = 0; j < ng; ++j) {
            const float* plane = x + (j * C + c) * HW;
            for (std::int64_t ty = 0; ty < tl.th; ++ty)
                for (std::int64_t i0 = 0; i0 < tw; i0 += 15) {
                    const std::int64_t n = std::min<std::int64_t>(15, tw - i0), col0 = 4 * i0 - 1;
                    __m512 ph[6][4];
                    for (int r = 0; r < 6; ++r) {
                        const std::int64_t row = 4 * ty - 1 + r;
                        if (row < 0 || row >= tl.H) {
                            for (int k = 0; k < 4; ++k) ph[r][k] = _mm512_setzero_ps();
                            continue;
                        }
                        split_row(plane + row * W, col0, W, idx, ph[r]);
                    }
                    for (int k = 0; k < 4; ++k) {
                        const __m512 d[6] = {ph[0][k], ph[1][k], ph[2][k], ph[3][k], ph[4][k], ph[5][k]};
                        __m512 o[6];
                        bt6(d, o);
                        for (int r = 0; r < 6; ++r) _mm512_store_ps(tr[r][k], o[r]);
                    }
                    float* out = V + c * T_ + (j * tl.th + ty) * tw + i0;
                    const __mmask16 mk = span_mask(0, 0, n);
                    for (int r = 0; r < 6; ++r) {
                        // tile i's columns: phases 0..3 at i, phases 0 and 1 at i + 1
                        const __m512 d[6] = {_mm512_load_ps(tr[r][0]), _mm512_load_ps(tr[r][1]), _mm512_load_ps(tr[r][2]),
                                             _mm512_load_ps(tr[r][3]), _mm512_loadu_ps(tr[r][0] + 1), _mm512_loadu_ps(tr[r][1] + 1)};
                        __m512 o[6];
                        bt6(d, o);
                        for (int q = 0; q < 6; ++q) _mm512_mask_storeu_ps(out + (r * 6 + q) * CT, mk, o[q]);
                    }
                }
        }
}

__attribute__((target("avx512f"))) inline void output_transform(const float* M, std::int64_t ng, std::int64_t Co, const Tiles& tl,
                                                                const Epilogue<float>& ep, std::int64_t k0, std::int64_t k1,
                                                                float* y) {
    const std::int64_t T_ = ng * tl.per_image(), KT = Co * T_, HW = tl.H * tl.W, tw = tl.tw, W = tl.W;
    __m512i idx[4];  // quarter q of the interleaved row: tiles 4q..4q+3, lanes 4i+{0,2} from the first source, 4i+{1,3} the second
    for (int q = 0; q < 4; ++q) {
        alignas(64) std::int32_t v[16];
        for (int i = 0; i < 4; ++i) {
            v[4 * i + 0] = v[4 * i + 2] = 4 * q + i;
            v[4 * i + 1] = v[4 * i + 3] = 16 + 4 * q + i;
        }
        idx[q] = _mm512_load_si512(v);
    }
    const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f), eight = _mm512_set1_ps(8.0f), zero = _mm512_setzero_ps();
    for (std::int64_t k = k0; k < k1; ++k) {
        const __m512 b = _mm512_set1_ps(ep.bias ? ep.bias[k] : 0.0f);
        for (std::int64_t j = 0; j < ng; ++j) {
            float* plane = y + (j * Co + k) * HW;
            const float* res = ep.residual ? ep.residual + (j * Co + k) * HW : nullptr;
            for (std::int64_t ty = 0; ty < tl.th; ++ty)
                for (std::int64_t i0 = 0; i0 < tw; i0 += 16) {
                    const std::int64_t n = std::min<std::int64_t>(16, tw - i0);
                    const __mmask16 mk = span_mask(0, 0, n);
                    const float* in = M + k * T_ + (j * tl.th + ty) * tw + i0;
                    __m512 s[4][6];
                    for (int q = 0; q < 6; ++q) {
                        __m512 m[6];
                        for (int r = 0; r < 6; ++r) m[r] = _mm512_maskz_loadu_ps(mk, in + (r * 6 + q) * KT);
                        const __m512 p12 = _mm512_add_ps(m[1], m[2]), m12 = _mm512_sub_ps(m[1], m[2]);
                        const __m512 p34 = _mm512_add_ps(m[3], m[4]), m34 = _mm512_sub_ps(m[3], m[4]);
                        s[0][q] = _mm512_add_ps(_mm512_add_ps(m[0], p12), p34);
                        s[1][q] = _mm512_fmadd_ps(two, m34, m12);
                        s[2][q] = _mm512_fmadd_ps(four, p34, p12);
                        s[3][q] = _mm512_add_ps(_mm512_fmadd_ps(eight, m34, m12), m[5]);
                    }
                    const std::int64_t rows = std::min<std::int64_t>(4, tl.H - 4 * ty);
                    for (std::int64_t r = 0; r < rows; ++r) {
                        const __m512* a = s[r];
                        const __m512 p12 = _mm512_add_ps(a[1], a[2]), m12 = _mm512_sub_ps(a[1], a[2]);
                        const __m512 p34 = _mm512_add_ps(a[3], a[4]), m34 = _mm512_sub_ps(a[3], a[4]);
                        const __m512 y0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a[0], p12), p34), b);
                        const __m512 y1 = _mm512_add_ps(_mm512_fmadd_ps(two, m34, m12), b);
                        const __m512 y2 = _mm512_add_ps(_mm512_fmadd_ps(four, p34, p12), b);
                        const __m512 y3 = _mm512_add_ps(_mm512_add_ps(_mm512_fmadd_ps(eight, m34, m12), a[5]), b);
                        const std::int64_t row = 4 * ty + r;
                        float* out = plane + row * W;
                        for (int q = 0; 16 * q < 4 * n; ++q) {
                            const std::int64_t col = 4 * i0 + 16 * q;
                            const __mmask16 st = span_mask(col, 0, std::min(W, 4 * (i0 + n)));
                            __m512 v = _mm512_mask_blend_ps(0xCCCC, _mm512_permutex2var_ps(y0, idx[q], y1),
                                                            _mm512_permutex2var_ps(y2, idx[q], y3));
                            if (res) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(st, res + row * W + col));
                            if (ep.relu) v = _mm512_mask_max_ps(v, 0xFFFF, zero, v);  // max(0, v): NaN stays NaN
                            _mm512_mask_storeu_ps(out + col, st, v);
                        }
                    }
                }
        }
    }
}
}  // namespace f4x
#endif

// The F(4x4) transforms are compute-bound in cache (about 40 additions per tile and channel each
// way): in float they run with the widest vector unit the processor has, chosen at run time as
// sgemm.hpp chooses its kernels (the default build targets plain x86-64, 4 lanes).
#if MEDIMG_SGEMM_X86
__attribute__((target("avx2,fma"))) inline void input_transform4_avx2(const float* x, std::int64_t ng, std::int64_t C,
                                                                      const Tiles& tl, std::int64_t c0, std::int64_t c1,
                                                                      float* V) {
    input_transform4_body(x, ng, C, tl, c0, c1, V);
}
__attribute__((target("avx2,fma"))) inline void output_transform4_avx2(const float* M, std::int64_t ng, std::int64_t Co,
                                                                       const Tiles& tl, const Epilogue<float>& ep,
                                                                       std::int64_t k0, std::int64_t k1, float* y) {
    output_transform4_body(M, ng, Co, tl, ep, k0, k1, y);
}
#endif
template <class T>
void input_transform4(const T* x, std::int64_t ng, std::int64_t C, const Tiles& tl, std::int64_t c0, std::int64_t c1, T* V) {
#if MEDIMG_SGEMM_X86
    if constexpr (std::is_same_v<T, float>) {
        const auto isa = sgemm::detect_isa();
        if (isa == sgemm::Isa::avx512) return f4x::input_transform(x, ng, C, tl, c0, c1, V);
        if (isa == sgemm::Isa::avx2) return input_transform4_avx2(x, ng, C, tl, c0, c1, V);
    }
#endif
    input_transform4_body(x, ng, C, tl, c0, c1, V);
}
template <class T>
void output_transform4(const T* M, std::int64_t ng, std::int64_t Co, const Tiles& tl, const Epilogue<T>& ep, std::int64_t k0,
                       std::int64_t k1, T* y) {
#if MEDIMG_SGEMM_X86
    if constexpr (std::is_same_v<T, float>) {
        const auto isa = sgemm::detect_isa();
        if (isa == sgemm::Isa::avx512) return f4x::output_transform(M, ng, Co, tl, ep, k0, k1, y);
        if (isa == sgemm::Isa::avx2) return output_transform4_avx2(M, ng, Co, tl, ep, k0, k1, y);
    }
#endif
    output_transform4_body(M, ng, Co, tl, ep, k0, k1, y);
}

/// The filter transform of F(m x m, 3x3): (m + 2)^2 matrices (C_out, C_in) into U.
template <class T>
void filter_transform(int m, const T* w, std::int64_t Co, std::int64_t C, bool flip, T* U) {
    if (m == 4)
        filter_transform4(w, Co, C, flip, U);
    else
        filter_transform(w, Co, C, flip, U);
}

/// Whether the m x m tiles of one image group reach kMinTilesPerGroup (see convolve's grouping).
inline bool worthwhile(std::int64_t N, std::int64_t H, std::int64_t W, int m = 2) {
    const Tiles tl = tiles_for(H, W, m);
    return image_groups(N, tl.per_image()).size * tl.per_image() >= kMinTilesPerGroup;
}
/// The largest output tile the convolutions may use: 4 (F(4x4, 3x3),
/// the default) or 2 (F(2x2, 3x3) only, F(2x2)'s smaller float error). Process-wide, like mode();
/// MEDIMG_WINOGRAD_TILE=2|4 sets the starting value.
inline int& max_tile() {
    static int m = [] {
        const char* e = std::getenv("MEDIMG_WINOGRAD_TILE");
        return e && std::string(e) == "2" ? 2 : 4;
    }();
    return m;
}
/// The decision for a convolution of N images of H x W, kernel kh x kw, params p (forward,
/// input gradient and weight gradient alike): 0 (im2col), 2 or 4 (the output tile). F(4x4) where its
/// tiles fill an image group, else F(2x2) where its tiles do; `always` takes the largest allowed.
inline int tile(std::int64_t kh, std::int64_t kw, const ops::Conv2dParams& p, std::int64_t N, std::int64_t H,
                        std::int64_t W) {
    if (mode() == Mode::never || !applies(kh, kw, p)) return 0;
    if (mode() == Mode::always) return max_tile();
    if (max_tile() == 4 && worthwhile(N, H, W, 4)) return 4;
    return worthwhile(N, H, W, 2) ? 2 : 0;
}
/// The weight gradient's decision: tile(), except that F(4x4) needs rows of at least 7 tiles
/// (images 25 pixels wide and more). Below that its per-thread sums (36 x C_out x C_in, 9.4 MB at
/// 256 channels) and short transform rows cost more than its GEMMs save: at batch 32, 2 threads,
/// 256 channels of 14x14 took 37-38 ms against F(2x2)'s 31-32 ms, while 64 channels of 56x56 took
/// 25-27 ms against 39-43 ms.
inline int weight_tile(std::int64_t kh, std::int64_t kw, const ops::Conv2dParams& p, std::int64_t N, std::int64_t H,
                       std::int64_t W) {
    const int m = tile(kh, kw, p, N, H, W);
    if (m != 4 || mode() == Mode::always || tiles_for(H, W, 4).tw >= 7) return m;
    return worthwhile(N, H, W, 2) ? 2 : 0;
}

/// The products M[xi] (Co, n) = U[xi] (Co, C) x V[xi] (C, n) with U the transformed filters
/// (positions(m), Co, C) as filter_transform writes them: a plain GEMM each (the inference path keeps them
/// packed instead, nn/inference.hpp).
template <class T>
auto plain_filters(const T* U, std::int64_t Co, std::int64_t C) {
    return [=](int xi, std::int64_t n, const T* V, std::int64_t ldv, T* M, std::int64_t ldm) {
        gemm_ld(false, false, Co, n, C, U + xi * Co * C, C, V, ldv, M, ldm, false);
    };
}

/// y (N, Co, H, W) = ep(the 3x3 stride-1 pad-1 convolution of x (N, C, H, W)) by F(m x m, 3x3),
/// m = 2 or 4: the filters enter as mul(xi, n, V, ldv, M, ldm), which computes M[xi] = U[xi] V[xi]
/// for xi < positions(m) (plain_filters or packed ones). Images go in groups of at least ~512
/// tiles (one GEMM column block); groups run on separate threads when there are enough of them,
/// otherwise the transforms split over channels and each GEMM threads itself.
template <class T, class Mul>
void convolve(int m, const T* x, std::int64_t N, std::int64_t C, std::int64_t H, std::int64_t W, std::int64_t Co, Mul&& mul,
              const Epilogue<T>& ep, T* y) {
    const Tiles tl = tiles_for(H, W, m);
    const int P = positions(m);
    const auto gr = image_groups(N, tl.per_image());
    for_each_group<T>(N, gr, [&](std::int64_t n0, std::int64_t ng) {
        const std::int64_t T_ = ng * tl.per_image();
        T* V = conv_scratch<T>(0, P * C * T_);
        T* M = conv_scratch<T>(1, P * Co * T_);
        const T* xg = x + n0 * C * H * W;
        T* yg = y + n0 * Co * H * W;
        Epilogue<T> eg = ep;
        if (ep.residual) eg.residual = ep.residual + n0 * Co * H * W;
        auto in = [&](std::int64_t lo, std::int64_t hi) {
            if (m == 4)
                input_transform4(xg, ng, C, tl, lo, hi, V);
            else
                input_transform(xg, ng, C, tl, lo, hi, V);
        };
        auto out = [&](std::int64_t lo, std::int64_t hi) {
            if (m == 4)
                output_transform4(M, ng, Co, tl, eg, lo, hi, yg);
            else
                output_transform(M, ng, Co, tl, eg, lo, hi, yg);
        };
        const bool split = !in_parallel() && num_threads() > 1;
        if (split)
            parallel_chunks(0, C, [&](std::int64_t lo, std::int64_t hi, int) { in(lo, hi); });
        else
            in(0, C);
        for (int xi = 0; xi < P; ++xi) mul(xi, T_, V + xi * C * T_, T_, M + xi * Co * T_, T_);
        if (split)
            parallel_chunks(0, Co, [&](std::int64_t lo, std::int64_t hi, int) { out(lo, hi); });
        else
            out(0, Co);
    });
}

/// DY[xi][k][t] = (A e A^T)[xi] for the 2x2 tiles e of dy (images [0, ng), each (Co, H, W);
/// zeros past an odd border), channels [k0, k1); the tile order of input_transform. With
/// A = [1 0; 1 1; 1 -1; 0 -1] (the transpose of A^T above): rows (e0, e0 + e1, e0 - e1, -e1),
/// then the same along the columns.
template <class T>
void gradient_transform(const T* dy, std::int64_t ng, std::int64_t Co, const Tiles& tl, std::int64_t k0, std::int64_t k1, T* DY) {
    const std::int64_t T_ = ng * tl.per_image(), KT = Co * T_, HW = tl.H * tl.W, tw = tl.tw;
    std::vector<T> buf(static_cast<std::size_t>(12 * tw));
    T* e[2];
    T* o[2];
    T* re[4];
    T* ro[4];
    for (int r = 0; r < 2; ++r) {
        e[r] = buf.data() + r * tw;
        o[r] = buf.data() + (2 + r) * tw;
    }
    for (int r = 0; r < 4; ++r) {
        re[r] = buf.data() + (4 + r) * tw;
        ro[r] = buf.data() + (8 + r) * tw;
    }
    for (std::int64_t k = k0; k < k1; ++k)
        for (std::int64_t j = 0; j < ng; ++j) {
            const T* plane = dy + (j * Co + k) * HW;
            for (std::int64_t ty = 0; ty < tl.th; ++ty) {
                for (int r = 0; r < 2; ++r) {  // even / odd columns of the tile row's two dy rows
                    const std::int64_t row = 2 * ty + r;
                    if (row >= tl.H) {
                        std::fill(e[r], e[r] + tw, T(0));
                        std::fill(o[r], o[r] + tw, T(0));
                        continue;
                    }
                    const T* in = plane + row * tl.W;
                    for (std::int64_t i = 0; i < tw; ++i) e[r][i] = in[2 * i];  // 2i < W always
                    for (std::int64_t i = 0; i < tw; ++i) o[r][i] = 2 * i + 1 < tl.W ? in[2 * i + 1] : T(0);
                }
                for (std::int64_t i = 0; i < tw; ++i) {  // A down the rows
                    re[0][i] = e[0][i];
                    re[1][i] = e[0][i] + e[1][i];
                    re[2][i] = e[0][i] - e[1][i];
                    re[3][i] = -e[1][i];
                    ro[0][i] = o[0][i];
                    ro[1][i] = o[0][i] + o[1][i];
                    ro[2][i] = o[0][i] - o[1][i];
                    ro[3][i] = -o[1][i];
                }
                T* out = DY + k * T_ + (j * tl.th + ty) * tw;
                for (int r = 0; r < 4; ++r) {  // A along the columns
                    T* v0 = out + (r * 4 + 0) * KT;
                    T* v1 = out + (r * 4 + 1) * KT;
                    T* v2 = out + (r * 4 + 2) * KT;
                    T* v3 = out + (r * 4 + 3) * KT;
                    for (std::int64_t i = 0; i < tw; ++i) {
                        v0[i] = re[r][i];
                        v1[i] = re[r][i] + ro[r][i];
                        v2[i] = re[r][i] - ro[r][i];
                        v3[i] = -ro[r][i];
                    }
                }
            }
        }
}

/// F(4x4)'s DY[xi][k][t] = (A e A^T)[xi], xi < 36, for the 4x4 tiles e of dy (images [0, ng),
/// each (Co, H, W); zeros past the border), channels [k0, k1); the tile order of input_transform.
/// A = (A^T)^T maps a 4-vector e to (e0, e0 + e1 + e2 + e3, e0 - e1 + e2 - e3, e0 + 2 e1 + 4 e2 +
/// 8 e3, e0 - 2 e1 + 4 e2 - 8 e3, e3); it runs down the rows, then along the columns on the four
/// column phases of each row (p_k[i] = dy[4i + k]).
namespace f4 {
template <class T>
[[gnu::always_inline]] inline void at(const T* e0, const T* e1, const T* e2, const T* e3, T* const* o, std::int64_t n) {
    T* o0 = o[0];
    T* o1 = o[1];
    T* o2 = o[2];
    T* o3 = o[3];
    T* o4 = o[4];
    T* o5 = o[5];
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) {
        const T p02 = e0[i] + e2[i], p13 = e1[i] + e3[i], q02 = e0[i] + T(4) * e2[i], q13 = T(2) * e1[i] + T(8) * e3[i];
        o0[i] = e0[i];
        o1[i] = p02 + p13;
        o2[i] = p02 - p13;
        o3[i] = q02 + q13;
        o4[i] = q02 - q13;
        o5[i] = e3[i];
    }
}
}  // namespace f4

template <class T>
[[gnu::always_inline]] inline void gradient_transform4_body(const T* dy, std::int64_t ng, std::int64_t Co, const Tiles& tl,
                                                            std::int64_t k0, std::int64_t k1, T* DY) {
    const std::int64_t T_ = ng * tl.per_image(), KT = Co * T_, HW = tl.H * tl.W, tw = tl.tw;
    std::vector<T> buf(static_cast<std::size_t>(40 * tw));
    auto ph = [&](int r, int k) { return buf.data() + (r * 4 + k) * tw; };       // phase k of dy row r (4 x 4)
    auto tr = [&](int r, int k) { return buf.data() + (16 + r * 4 + k) * tw; };  // A down the rows (6 x 4)
    for (std::int64_t k = k0; k < k1; ++k)
        for (std::int64_t j = 0; j < ng; ++j) {
            const T* plane = dy + (j * Co + k) * HW;
            for (std::int64_t ty = 0; ty < tl.th; ++ty) {
                for (int r = 0; r < 4; ++r) {
                    const std::int64_t row = 4 * ty + r;
                    for (int q = 0; q < 4; ++q) {
                        T* p = ph(r, q);
                        if (row >= tl.H) {
                            std::fill(p, p + tw, T(0));
                            continue;
                        }
                        const T* in = plane + row * tl.W;
                        for (std::int64_t i = 0; i < tw; ++i) p[i] = 4 * i + q < tl.W ? in[4 * i + q] : T(0);
                    }
                }
                for (int q = 0; q < 4; ++q) {
                    T* const out[6] = {tr(0, q), tr(1, q), tr(2, q), tr(3, q), tr(4, q), tr(5, q)};
                    f4::at(ph(0, q), ph(1, q), ph(2, q), ph(3, q), out, tw);
                }
                T* base = DY + k * T_ + (j * tl.th + ty) * tw;
                for (int r = 0; r < 6; ++r) {
                    T* const out[6] = {base + (r * 6 + 0) * KT, base + (r * 6 + 1) * KT, base + (r * 6 + 2) * KT,
                                       base + (r * 6 + 3) * KT, base + (r * 6 + 4) * KT, base + (r * 6 + 5) * KT};
                    f4::at(tr(r, 0), tr(r, 1), tr(r, 2), tr(r, 3), out, tw);
                }
            }
        }
}

#if MEDIMG_SGEMM_X86
namespace f4x {
__attribute__((target("avx512f"))) inline void at6(const __m512* e, __m512* o) {
    const __m512 two = _mm512_set1_ps(2.0f), four = _mm512_set1_ps(4.0f), eight = _mm512_set1_ps(8.0f);
    const __m512 p02 = _mm512_add_ps(e[0], e[2]), p13 = _mm512_add_ps(e[1], e[3]);
    const __m512 q02 = _mm512_fmadd_ps(four, e[2], e[0]), q13 = _mm512_fmadd_ps(eight, e[3], _mm512_mul_ps(two, e[1]));
    o[0] = e[0];
    o[1] = _mm512_add_ps(p02, p13);
    o[2] = _mm512_sub_ps(p02, p13);
    o[3] = _mm512_add_ps(q02, q13);
    o[4] = _mm512_sub_ps(q02, q13);
    o[5] = e[3];
}
/// gradient_transform4 in chunks of 16 tiles of a tile row, one tile per lane (see input_transform).
__attribute__((target("avx512f"))) inline void gradient_transform(const float* dy, std::int64_t ng, std::int64_t Co, const Tiles& tl,
                                                                  std::int64_t k0, std::int64_t k1, float* DY) {
    const std::int64_t T_ = ng * tl.per_image(), KT = Co * T_, HW = tl.H * tl.W, tw = tl.tw, W = tl.W;
    __m512i idx[4];
    phase_indices(idx);
    for (std::int64_t k = k0; k < k1; ++k)
        for (std::int64_t j = 0; j < ng; ++j) {
            const float* plane = dy + (j * Co + k) * HW;
            for (std::int64_t ty = 0; ty < tl.th; ++ty)
                for (std::int64_t i0 = 0; i0 < tw; i0 += 16) {
                    const std::int64_t n = std::min<std::int64_t>(16, tw - i0), col0 = 4 * i0;
                    __m512 ph[4][4];  // [row][phase]
                    for (int r = 0; r < 4; ++r) {
                        const std::int64_t row = 4 * ty + r;
                        if (row >= tl.H) {
                            for (int q = 0; q < 4; ++q) ph[r][q] = _mm512_setzero_ps();
                            continue;
                        }
                        split_row(plane + row * W, col0, W, idx, ph[r]);
                    }
                    __m512 tr[6][4];  // A down the rows: [row][phase]
                    for (int q = 0; q < 4; ++q) {
                        const __m512 e[4] = {ph[0][q], ph[1][q], ph[2][q], ph[3][q]};
                        __m512 o[6];
                        at6(e, o);
                        for (int r = 0; r < 6; ++r) tr[r][q] = o[r];
                    }
                    float* out = DY + k * T_ + (j * tl.th + ty) * tw + i0;
                    const __mmask16 mk = span_mask(0, 0, n);
                    for (int r = 0; r < 6; ++r) {
                        __m512 o[6];
                        at6(tr[r], o);
                        for (int q = 0; q < 6; ++q) _mm512_mask_storeu_ps(out + (r * 6 + q) * KT, mk, o[q]);
                    }
                }
        }
}
}  // namespace f4x
__attribute__((target("avx2,fma"))) inline void gradient_transform4_avx2(const float* dy, std::int64_t ng, std::int64_t Co,
                                                                         const Tiles& tl, std::int64_t k0, std::int64_t k1,
                                                                         float* DY) {
    gradient_transform4_body(dy, ng, Co, tl, k0, k1, DY);
}
#endif
template <class T>
void gradient_transform4(const T* dy, std::int64_t ng, std::int64_t Co, const Tiles& tl, std::int64_t k0, std::int64_t k1, T* DY) {
#if MEDIMG_SGEMM_X86
    if constexpr (std::is_same_v<T, float>) {
        const auto isa = sgemm::detect_isa();
        if (isa == sgemm::Isa::avx512) return f4x::gradient_transform(dy, ng, Co, tl, k0, k1, DY);
        if (isa == sgemm::Isa::avx2) return gradient_transform4_avx2(dy, ng, Co, tl, k0, k1, DY);
    }
#endif
    gradient_transform4_body(dy, ng, Co, tl, k0, k1, DY);
}

/// The weight gradient of the 3x3 stride-1 pad-1 convolution: dw (Co, C, 3, 3) = sum over images
/// and tiles of the tile's 3x3 correlation of x with dy. By the duality of bilinear algorithms
/// (the trilinear form dy . conv(x, w) differentiated by w; Lavin & Gray 2016 use it for the
/// backward pass) F(m x m, 3x3) gives it with the same B and G:  dw = G^T [ sum_t (B^T x_t B) (.)
/// (A dy_t A^T) ] G,  i.e. (m + 2)^2 GEMMs  M[xi] (Co, C) += DY[xi] (Co, T) V[xi]^T (T, C)  over the
/// tiles, whose inner dimension is the tile count: long, well-shaped GEMMs. Per-thread partial
/// sums are added in thread order (bit-identical for a fixed thread count).
template <class T>
void weight_gradient(int m, const T* x, const T* dy, std::int64_t N, std::int64_t C, std::int64_t H, std::int64_t W,
                     std::int64_t Co, T* dw) {
    const Tiles tl = tiles_for(H, W, m);
    const int P = positions(m);
    const auto gr = image_groups(N, tl.per_image());
    const std::int64_t MC = P * Co * C;
    auto group_into = [&](std::int64_t n0, std::int64_t ng, T* M, bool split) {
        const std::int64_t T_ = ng * tl.per_image();
        T* V = conv_scratch<T>(0, P * C * T_);
        T* DY = conv_scratch<T>(1, P * Co * T_);
        const T* xg = x + n0 * C * H * W;
        const T* dyg = dy + n0 * Co * H * W;
        auto in = [&](std::int64_t lo, std::int64_t hi) {
            if (m == 4)
                input_transform4(xg, ng, C, tl, lo, hi, V);
            else
                input_transform(xg, ng, C, tl, lo, hi, V);
        };
        auto grad = [&](std::int64_t lo, std::int64_t hi) {
            if (m == 4)
                gradient_transform4(dyg, ng, Co, tl, lo, hi, DY);
            else
                gradient_transform(dyg, ng, Co, tl, lo, hi, DY);
        };
        if (split) {
            parallel_chunks(0, C, [&](std::int64_t lo, std::int64_t hi, int) { in(lo, hi); });
            parallel_chunks(0, Co, [&](std::int64_t lo, std::int64_t hi, int) { grad(lo, hi); });
        } else {
            in(0, C);
            grad(0, Co);
        }
        for (int xi = 0; xi < P; ++xi)
            gemm_ld(false, true, Co, C, T_, DY + xi * Co * T_, T_, V + xi * C * T_, T_, M + xi * Co * C, C, true);
    };
    std::vector<T> M(static_cast<std::size_t>(MC), T(0));
    const int t = static_cast<int>(std::min<std::int64_t>(num_threads(), gr.count));
    if (t <= 1 || in_parallel()) {
        const bool split = !in_parallel() && num_threads() > 1;
        for (std::int64_t b = 0; b < gr.count; ++b) group_into(b * gr.size, std::min(gr.size, N - b * gr.size), M.data(), split);
    } else {
        std::vector<std::vector<T>> part(static_cast<std::size_t>(t));
        parallel_chunks(0, gr.count, [&](std::int64_t lo, std::int64_t hi, int id) {
            auto& acc = part[static_cast<std::size_t>(id)];
            acc.assign(static_cast<std::size_t>(MC), T(0));
            for (std::int64_t b = lo; b < hi; ++b) group_into(b * gr.size, std::min(gr.size, N - b * gr.size), acc.data(), false);
        });
        for (const auto& acc : part)
            for (std::int64_t i = 0; i < MC; ++i) M[static_cast<std::size_t>(i)] += acc[static_cast<std::size_t>(i)];
    }
    const std::int64_t KC = Co * C;
    if (m == 4) {
        // dw[k][c] = G^T m G, in double: G^T v = (v0/4 - (v1 + v2)/6 + (v3 + v4)/24,
        // (v2 - v1)/6 + (v3 - v4)/12, (v3 + v4 - v1 - v2)/6 + v5)
        auto gt = [](const double* v, std::int64_t stride, double* o) {
            const double v0 = v[0], v1 = v[stride], v2 = v[2 * stride], v3 = v[3 * stride], v4 = v[4 * stride], v5 = v[5 * stride];
            o[0] = v0 / 4 - (v1 + v2) / 6 + (v3 + v4) / 24;
            o[1] = (v2 - v1) / 6 + (v3 - v4) / 12;
            o[2] = (v3 + v4 - v1 - v2) / 6 + v5;
        };
        parallel_blocks(KC, 256, [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t kc = lo; kc < hi; ++kc) {
                double mm[36];
                for (int xi = 0; xi < 36; ++xi) mm[xi] = static_cast<double>(M[static_cast<std::size_t>(xi * KC + kc)]);
                double a[3][6];  // G^T down the rows: a[i][q]
                for (int q = 0; q < 6; ++q) {
                    double o[3];
                    gt(mm + q, 6, o);
                    for (int i = 0; i < 3; ++i) a[i][q] = o[i];
                }
                T* out = dw + kc * 9;
                for (int i = 0; i < 3; ++i) {
                    double o[3];
                    gt(a[i], 1, o);
                    for (int j = 0; j < 3; ++j) out[i * 3 + j] = static_cast<T>(o[j]);
                }
            }
        });
        return;
    }
    // dw[k][c] = G^T m G with G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1]
    parallel_blocks(KC, 256, [&](std::int64_t lo, std::int64_t hi) {
        for (std::int64_t kc = lo; kc < hi; ++kc) {
            T m[4][4];
            for (int r = 0; r < 4; ++r)
                for (int q = 0; q < 4; ++q) m[r][q] = M[static_cast<std::size_t>((r * 4 + q) * KC + kc)];
            T a[3][4];
            for (int q = 0; q < 4; ++q) {
                a[0][q] = m[0][q] + T(0.5) * (m[1][q] + m[2][q]);
                a[1][q] = T(0.5) * (m[1][q] - m[2][q]);
                a[2][q] = T(0.5) * (m[1][q] + m[2][q]) + m[3][q];
            }
            T* out = dw + kc * 9;
            for (int r = 0; r < 3; ++r) {
                out[r * 3 + 0] = a[r][0] + T(0.5) * (a[r][1] + a[r][2]);
                out[r * 3 + 1] = T(0.5) * (a[r][1] - a[r][2]);
                out[r * 3 + 2] = T(0.5) * (a[r][1] + a[r][2]) + a[r][3];
            }
        }
    });
}

}  // namespace medimg::cpu::winograd
