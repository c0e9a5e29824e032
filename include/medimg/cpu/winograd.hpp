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
// Deliberately not here: F(4x4, 3x3) (more savings, worse float error), strides other than 1.
// Included by cpu/conv2d.hpp after its image-group helpers (image_groups, for_each_group,
// conv_scratch), which it uses; include conv2d.hpp, not this file.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
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
inline Tiles tiles_for(std::int64_t H, std::int64_t W) { return {H, W, (H + 1) / 2, (W + 1) / 2}; }

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

/// Whether the tiles of one image group reach kMinTilesPerGroup (see convolve's grouping).
inline bool worthwhile(std::int64_t N, std::int64_t H, std::int64_t W) {
    const Tiles tl = tiles_for(H, W);
    return image_groups(N, tl.per_image()).size * tl.per_image() >= kMinTilesPerGroup;
}
/// The decision for a convolution of N images of H x W with a kh x kw kernel and params p.
inline bool use(std::int64_t kh, std::int64_t kw, const ops::Conv2dParams& p, std::int64_t N, std::int64_t H, std::int64_t W) {
    if (mode() == Mode::never || !applies(kh, kw, p)) return false;
    return mode() == Mode::always || worthwhile(N, H, W);
}

/// The 16 products M[xi] (Co, n) = U[xi] (Co, C) x V[xi] (C, n) with U the transformed filters
/// (16, Co, C) as filter_transform writes them: a plain GEMM each (the inference path keeps them
/// packed instead, nn/inference.hpp).
template <class T>
auto plain_filters(const T* U, std::int64_t Co, std::int64_t C) {
    return [=](int xi, std::int64_t n, const T* V, std::int64_t ldv, T* M, std::int64_t ldm) {
        gemm_ld(false, false, Co, n, C, U + xi * Co * C, C, V, ldv, M, ldm, false);
    };
}

/// y (N, Co, H, W) = ep(the 3x3 stride-1 pad-1 convolution of x (N, C, H, W)): the filters enter
/// as mul(xi, n, V, ldv, M, ldm), which computes M[xi] = U[xi] V[xi] (plain_filters or packed
/// ones). Images go in groups of at least ~512 tiles (one GEMM column block); groups run on
/// separate threads when there are enough of them, otherwise the transforms split over channels
/// and each GEMM threads itself.
template <class T, class Mul>
void convolve(const T* x, std::int64_t N, std::int64_t C, std::int64_t H, std::int64_t W, std::int64_t Co, Mul&& mul,
              const Epilogue<T>& ep, T* y) {
    const Tiles tl = tiles_for(H, W);
    const auto gr = image_groups(N, tl.per_image());
    for_each_group<T>(N, gr, [&](std::int64_t n0, std::int64_t ng) {
        const std::int64_t T_ = ng * tl.per_image();
        T* V = conv_scratch<T>(0, 16 * C * T_);
        T* M = conv_scratch<T>(1, 16 * Co * T_);
        const T* xg = x + n0 * C * H * W;
        T* yg = y + n0 * Co * H * W;
        Epilogue<T> eg = ep;
        if (ep.residual) eg.residual = ep.residual + n0 * Co * H * W;
        const bool split = !in_parallel() && num_threads() > 1;
        if (split)
            parallel_chunks(0, C, [&](std::int64_t lo, std::int64_t hi, int) { input_transform(xg, ng, C, tl, lo, hi, V); });
        else
            input_transform(xg, ng, C, tl, 0, C, V);
        for (int xi = 0; xi < 16; ++xi) mul(xi, T_, V + xi * C * T_, T_, M + xi * Co * T_, T_);
        if (split)
            parallel_chunks(0, Co, [&](std::int64_t lo, std::int64_t hi, int) { output_transform(M, ng, Co, tl, eg, lo, hi, yg); });
        else
            output_transform(M, ng, Co, tl, eg, 0, Co, yg);
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

/// The weight gradient of the 3x3 stride-1 pad-1 convolution: dw (Co, C, 3, 3) = sum over images
/// and tiles of the tile's 3x3 correlation of x with dy. By the duality of bilinear algorithms
/// (the trilinear form dy . conv(x, w) differentiated by w; Lavin & Gray 2016 use it for the
/// backward pass) F(2x2, 3x3) gives it with the same B and G:  dw = G^T [ sum_t (B^T x_t B) (.)
/// (A dy_t A^T) ] G,  i.e. 16 GEMMs  M[xi] (Co, C) += DY[xi] (Co, T) V[xi]^T (T, C)  over the tiles,
/// whose inner dimension is the tile count: long, well-shaped GEMMs. Per-thread partial sums
/// are added in thread order (bit-identical for a fixed thread count).
template <class T>
void weight_gradient(const T* x, const T* dy, std::int64_t N, std::int64_t C, std::int64_t H, std::int64_t W, std::int64_t Co,
                     T* dw) {
    const Tiles tl = tiles_for(H, W);
    const auto gr = image_groups(N, tl.per_image());
    const std::int64_t MC = 16 * Co * C;
    auto group_into = [&](std::int64_t n0, std::int64_t ng, T* M, bool split) {
        const std::int64_t T_ = ng * tl.per_image();
        T* V = conv_scratch<T>(0, 16 * C * T_);
        T* DY = conv_scratch<T>(1, 16 * Co * T_);
        const T* xg = x + n0 * C * H * W;
        const T* dyg = dy + n0 * Co * H * W;
        if (split) {
            parallel_chunks(0, C, [&](std::int64_t lo, std::int64_t hi, int) { input_transform(xg, ng, C, tl, lo, hi, V); });
            parallel_chunks(0, Co, [&](std::int64_t lo, std::int64_t hi, int) { gradient_transform(dyg, ng, Co, tl, lo, hi, DY); });
        } else {
            input_transform(xg, ng, C, tl, 0, C, V);
            gradient_transform(dyg, ng, Co, tl, 0, Co, DY);
        }
        for (int xi = 0; xi < 16; ++xi)
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
    // dw[k][c] = G^T m G with G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1]
    const std::int64_t KC = Co * C;
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
