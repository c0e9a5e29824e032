// SPDX-License-Identifier: MIT
// Tests for the CUDA implementations of the Vision Transformer ops (cuda/layer_norm.cuh, GELU in
// cuda/activation.cuh, cuda/attention.cuh, cuda/tokens.cuh) against the CPU reference (cpu/*.hpp)
// on the same seeded inputs, in float and double: odd row lengths, both GELU forms out to large
// |x|, attention at ViT-like odd token counts with one and several heads, with and without the
// probabilities, and its backward; bmm with every transpose, a shared batch-1 operand and
// accumulation; the token bookkeeping with and without class token and position embedding.
// Every comparison reports the largest difference and its flat index. Mirrors the CPU tests of
// the same ops.
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "cuda_helpers.hpp"
#include "medimg/ops/activation.hpp"
#include "medimg/ops/attention.hpp"
#include "medimg/ops/layer_norm.hpp"
#include "medimg/ops/tokens.hpp"
#include "reference.hpp"

using namespace medimg;
using medimg::test::gpu;
using medimg::test::gpu_atol;
using medimg::test::gpu_rtol;
using medimg::test::has_cuda_device;
namespace ref = medimg::test::ref;
namespace utf = boost::unit_test;

using float_types = boost::mpl::list<float, double>;

BOOST_AUTO_TEST_SUITE(cuda_transformer)

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(layer_norm_forward_and_backward_match_the_cpu, T, float_types) {
    // odd row lengths, one row per warp lane count and beyond; (3, 700, 7): many row chunks in the column sums
    for (const Shape s : {Shape{4, 7}, Shape{2, 3, 33}, Shape{5, 192}, Shape{2, 197, 192}, Shape{3, 700, 7}, Shape{1, 1}}) {
        for (const bool affine : {true, false}) {
            BOOST_TEST_CONTEXT("x " << s << (affine ? ", affine" : ", no affine")) {
                const std::int64_t D = s[s.rank() - 1], R = s.numel() / D;
                const auto x = ref::random<T>(s, 21, -2.0, 3.0), dy = ref::random<T>(s, 22);
                const auto gamma = affine ? ref::random<T>({D}, 23, 0.5, 1.5) : Tensor<T, Cpu>();
                const auto beta = affine ? ref::random<T>({D}, 24) : Tensor<T, Cpu>();
                auto y = Tensor<T, Cpu>::empty(s), mean = Tensor<T, Cpu>::empty({R}), rstd = Tensor<T, Cpu>::empty({R});
                auto gy = Tensor<T, Cuda>::empty(s), gmean = Tensor<T, Cuda>::empty({R}), grstd = Tensor<T, Cuda>::empty({R});
                ops::layer_norm_forward(x, gamma, beta, 1e-5, y, mean, rstd);
                ops::layer_norm_forward(gpu(x), gpu(gamma), gpu(beta), 1e-5, gy, gmean, grstd);
                MEDIMG_CHECK_GPU_CPU("layer_norm y", gy, y, gpu_rtol<T>(), gpu_atol<T>());
                MEDIMG_CHECK_GPU_CPU("layer_norm mean", gmean, mean, gpu_rtol<T>(), gpu_atol<T>());
                MEDIMG_CHECK_GPU_CPU("layer_norm rstd", grstd, rstd, gpu_rtol<T>(), gpu_atol<T>());

                auto dx = Tensor<T, Cpu>::empty(s), dg = Tensor<T, Cpu>::empty({D}), db = Tensor<T, Cpu>::empty({D});
                auto gdx = Tensor<T, Cuda>::full(s, T(123)), gdg = Tensor<T, Cuda>::full({D}, T(123)),
                     gdb = Tensor<T, Cuda>::full({D}, T(123));  // overwritten, not accumulated
                ops::layer_norm_backward(x, dy, gamma, mean, rstd, dx, dg, db);
                ops::layer_norm_backward(gpu(x), gpu(dy), gpu(gamma), gmean, grstd, gdx, gdg, gdb);
                MEDIMG_CHECK_GPU_CPU("layer_norm dx", gdx, dx, gpu_rtol<T>(), gpu_atol<T>());
                MEDIMG_CHECK_GPU_CPU("layer_norm dgamma", gdg, dg, gpu_rtol<T>(), gpu_atol<T>());
                MEDIMG_CHECK_GPU_CPU("layer_norm dbeta", gdb, db, gpu_rtol<T>(), gpu_atol<T>());

                // Undefined outputs are skipped; the defined ones are still right.
                Tensor<T, Cuda> none;
                auto gdx2 = Tensor<T, Cuda>::empty(s);
                ops::layer_norm_backward(gpu(x), gpu(dy), gpu(gamma), gmean, grstd, gdx2, none, none);
                MEDIMG_CHECK_GPU_CPU("layer_norm dx alone", gdx2, dx, gpu_rtol<T>(), gpu_atol<T>());
                auto gdb2 = Tensor<T, Cuda>::empty({D});
                ops::layer_norm_backward(gpu(x), gpu(dy), gpu(gamma), gmean, grstd, none, none, gdb2);
                MEDIMG_CHECK_GPU_CPU("layer_norm dbeta alone", gdb2, db, gpu_rtol<T>(), gpu_atol<T>());
            }
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(layer_norm_column_sums_are_deterministic) {
    const Shape s{4, 197, 192};
    const auto x = gpu(ref::random<float>(s, 31, -2.0, 3.0)), dy = gpu(ref::random<float>(s, 32));
    const Tensor<float, Cuda> none;
    auto y = Tensor<float, Cuda>::empty(s), mean = Tensor<float, Cuda>::empty({4 * 197}), rstd = Tensor<float, Cuda>::empty({4 * 197});
    ops::layer_norm_forward(x, none, none, 1e-6, y, mean, rstd);
    auto dg1 = Tensor<float, Cuda>::empty({192}), dg2 = Tensor<float, Cuda>::empty({192});
    Tensor<float, Cuda> no_dx, no_db;
    ops::layer_norm_backward(x, dy, none, mean, rstd, no_dx, dg1, no_db);
    ops::layer_norm_backward(x, dy, none, mean, rstd, no_dx, dg2, no_db);
    MEDIMG_CHECK_GPU_CPU_EXACT("layer_norm dgamma twice", dg2, dg1.to<Cpu>());
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(gelu_matches_the_cpu_in_both_forms, T, float_types) {
    auto x = ref::random<T>({1000}, 41, -6.0, 6.0);
    const std::vector<double> large = {-1e4, -50.0, -20.0, -10.0, -5.0, -3.0, 0.0, 3.0, 5.0, 10.0, 20.0, 50.0, 1e4};
    for (std::size_t i = 0; i < large.size(); ++i) x[static_cast<std::int64_t>(i)] = static_cast<T>(large[i]);
    const auto dy = ref::random<T>({1000}, 42);
    const auto gx = gpu(x), gdy = gpu(dy);
    for (const ops::Gelu form : {ops::Gelu::erf, ops::Gelu::tanh}) {
        BOOST_TEST_CONTEXT((form == ops::Gelu::erf ? "erf form" : "tanh form")) {
            auto y = Tensor<T, Cpu>::empty({1000}), dx = Tensor<T, Cpu>::empty({1000});
            auto gy = Tensor<T, Cuda>::empty({1000}), gdx = Tensor<T, Cuda>::empty({1000});
            ops::gelu_forward(x, y, form);
            ops::gelu_forward(gx, gy, form);
            MEDIMG_CHECK_GPU_CPU("gelu_forward", gy, y, gpu_rtol<T>(), gpu_atol<T>());
            ops::gelu_backward(x, dy, dx, form);
            ops::gelu_backward(gx, gdy, gdx, form);
            MEDIMG_CHECK_GPU_CPU("gelu_backward", gdx, dx, gpu_rtol<T>(), gpu_atol<T>());
            auto in_place = gx.clone();  // y may be x
            ops::gelu_forward(in_place, in_place, form);
            MEDIMG_CHECK_GPU_CPU("gelu_forward in place", in_place, y, gpu_rtol<T>(), gpu_atol<T>());
            const auto h = medimg::test::host(gdx);
            for (std::int64_t i = 0; i < h.numel(); ++i) BOOST_TEST_REQUIRE(std::isfinite(static_cast<double>(h[i])));
        }
    }
}

struct AttentionCase {
    std::int64_t B, L, H, d;
    double scale;  // 0: 1 / sqrt(d)
};

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(attention_forward_and_backward_match_the_cpu, T, float_types) {
    const std::vector<AttentionCase> cases = {
        {2, 5, 1, 4, 0.0},     // tiny, one head
        {2, 5, 3, 8, 0.0},     // several heads
        {1, 33, 2, 7, 0.3},    // odd head size, a given scale, rows longer than a warp
        {2, 197, 3, 16, 0.0},  // ViT's 196 patches + class token
    };
    std::uint64_t seed = 50;
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT("B " << c.B << ", L " << c.L << ", H " << c.H << ", d " << c.d) {
            ops::AttentionParams p;
            p.heads = c.H;
            p.scale = c.scale;
            const Shape qs{c.B, c.L, 3 * c.H * c.d}, os{c.B, c.L, c.H * c.d}, ls{c.B, c.H, c.L}, ps{c.B, c.H, c.L, c.L};
            const auto qkv = ref::random<T>(qs, seed++, -1.5, 1.5), dout = ref::random<T>(os, seed++);
            const auto gqkv = gpu(qkv);
            auto out = Tensor<T, Cpu>::empty(os), lse = Tensor<T, Cpu>::empty(ls), probs = Tensor<T, Cpu>::empty(ps);
            ops::attention_forward(qkv, out, lse, probs, p);
            for (const bool with_probs : {true, false}) {
                BOOST_TEST_CONTEXT((with_probs ? "with probs" : "without probs")) {
                    auto gout = Tensor<T, Cuda>::empty(os), glse = Tensor<T, Cuda>::empty(ls);
                    auto gprobs = with_probs ? Tensor<T, Cuda>::empty(ps) : Tensor<T, Cuda>();
                    ops::attention_forward(gqkv, gout, glse, gprobs, p);
                    MEDIMG_CHECK_GPU_CPU("attention out", gout, out, gpu_rtol<T>(), gpu_atol<T>());
                    MEDIMG_CHECK_GPU_CPU("attention lse", glse, lse, gpu_rtol<T>(), gpu_atol<T>());
                    if (with_probs) MEDIMG_CHECK_GPU_CPU("attention probs", gprobs, probs, gpu_rtol<T>(), gpu_atol<T>());
                }
            }
            auto dqkv = Tensor<T, Cpu>::empty(qs);
            auto gdqkv = Tensor<T, Cuda>::full(qs, T(123));  // overwritten, not accumulated
            ops::attention_backward(qkv, lse, dout, dqkv, p);
            ops::attention_backward(gqkv, gpu(lse), gpu(dout), gdqkv, p);
            MEDIMG_CHECK_GPU_CPU("attention dqkv", gdqkv, dqkv, gpu_rtol<T>(), gpu_atol<T>());
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(attention_and_bmm_of_empty_sizes_do_nothing) {
    ops::AttentionParams p;
    p.heads = 2;
    const Shape qs{0, 5, 12};
    auto qkv = Tensor<float, Cuda>::empty(qs), out = Tensor<float, Cuda>::empty({0, 5, 4}),
         lse = Tensor<float, Cuda>::empty({0, 2, 5}), probs = Tensor<float, Cuda>::empty({0, 2, 5, 5});
    ops::attention_forward(qkv, out, lse, probs, p);
    auto dqkv = Tensor<float, Cuda>::empty(qs);
    ops::attention_backward(qkv, lse, out, dqkv, p);
    // k = 0: an empty sum is 0, or leaves c as it was when accumulating
    const auto a = Tensor<float, Cuda>::empty({3, 4, 0}), b = Tensor<float, Cuda>::empty({3, 0, 5});
    auto c = Tensor<float, Cuda>::full({3, 4, 5}, 7.0f);
    ops::bmm(a, b, c, false, false, true);
    const auto sevens = Tensor<float, Cpu>::full({3, 4, 5}, 7.0f), zeros = Tensor<float, Cpu>::zeros({3, 4, 5});
    MEDIMG_CHECK_GPU_CPU_EXACT("bmm k = 0, accumulate", c, sevens);
    ops::bmm(a, b, c);
    MEDIMG_CHECK_GPU_CPU_EXACT("bmm k = 0", c, zeros);
    cuda::synchronize();  // nothing queued failed
}

struct BmmCase {
    std::int64_t ba, bb, m, n, k;
};

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(bmm_matches_the_cpu, T, float_types) {
    const std::vector<BmmCase> cases = {
        {3, 3, 5, 4, 7},       // plain batch
        {1, 4, 6, 5, 3},       // a shared by the batch
        {4, 1, 2, 9, 5},       // b shared by the batch
        {4, 4, 197, 197, 64},  // attention-sized scores
        {1, 1, 33, 17, 65},    // batch 1
    };
    std::uint64_t seed = 70;
    for (const auto& c : cases)
        for (const bool ta : {false, true})
            for (const bool tb : {false, true})
                for (const bool acc : {false, true}) {
                    BOOST_TEST_CONTEXT("batches " << c.ba << "/" << c.bb << ", m " << c.m << ", n " << c.n << ", k " << c.k
                                                  << (ta ? ", a^T" : "") << (tb ? ", b^T" : "") << (acc ? ", +=" : "")) {
                        const Shape as = ta ? Shape{c.ba, c.k, c.m} : Shape{c.ba, c.m, c.k};
                        const Shape bs = tb ? Shape{c.bb, c.n, c.k} : Shape{c.bb, c.k, c.n};
                        const Shape cs{std::max(c.ba, c.bb), c.m, c.n};
                        const auto a = ref::random<T>(as, seed++), b = ref::random<T>(bs, seed++);
                        auto out = ref::random<T>(cs, seed++);
                        auto gout = gpu(out);
                        ops::bmm(a, b, out, ta, tb, acc);
                        ops::bmm(gpu(a), gpu(b), gout, ta, tb, acc);
                        MEDIMG_CHECK_GPU_CPU("bmm", gout, out, gpu_rtol<T>(), gpu_atol<T>());
                    }
                }
}

struct TokensCase {
    Shape patches;
    bool cls, pos;
};

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(tokens_forward_and_backward_match_the_cpu, T, float_types) {
    std::vector<TokensCase> cases;
    for (const Shape s : {Shape{2, 5, 3, 4}, Shape{3, 40, 7, 9}})  // the second spans several 32 x 32 tiles
        for (const bool cls : {true, false})
            for (const bool pos : {true, false}) cases.push_back({s, cls, pos});
    std::uint64_t seed = 90;
    for (const auto& c : cases) {
        BOOST_TEST_CONTEXT("patches " << c.patches << (c.cls ? ", class token" : "") << (c.pos ? ", position embedding" : "")) {
            const std::int64_t N = c.patches[0], D = c.patches[1], Tn = (c.cls ? 1 : 0) + c.patches[2] * c.patches[3];
            const auto patches = ref::random<T>(c.patches, seed++);
            const auto cls = c.cls ? ref::random<T>({1, 1, D}, seed++) : Tensor<T, Cpu>();
            const auto pos = c.pos ? ref::random<T>({1, Tn, D}, seed++) : Tensor<T, Cpu>();
            auto y = Tensor<T, Cpu>::empty({N, Tn, D});
            auto gy = Tensor<T, Cuda>::empty({N, Tn, D});
            ops::tokens_forward(patches, cls, pos, y);
            ops::tokens_forward(gpu(patches), gpu(cls), gpu(pos), gy);
            MEDIMG_CHECK_GPU_CPU("tokens_forward", gy, y, gpu_rtol<T>(), gpu_atol<T>());

            const auto dy = ref::random<T>({N, Tn, D}, seed++);
            auto dp = Tensor<T, Cpu>::empty(c.patches), dc = c.cls ? Tensor<T, Cpu>::empty({1, 1, D}) : Tensor<T, Cpu>(),
                 dq = Tensor<T, Cpu>::empty({1, Tn, D});
            auto gdp = Tensor<T, Cuda>::full(c.patches, T(123)),
                 gdc = c.cls ? Tensor<T, Cuda>::full({1, 1, D}, T(123)) : Tensor<T, Cuda>(),
                 gdq = Tensor<T, Cuda>::full({1, Tn, D}, T(123));
            ops::tokens_backward(dy, c.patches, c.cls, dp, dc, dq);
            ops::tokens_backward(gpu(dy), c.patches, c.cls, gdp, gdc, gdq);
            MEDIMG_CHECK_GPU_CPU_EXACT("tokens_backward dpatches", gdp, dp);
            if (c.cls) MEDIMG_CHECK_GPU_CPU("tokens_backward dcls", gdc, dc, gpu_rtol<T>(), gpu_atol<T>());
            MEDIMG_CHECK_GPU_CPU("tokens_backward dpos", gdq, dq, gpu_rtol<T>(), gpu_atol<T>());

            // The class-token gradient alone (no dpatches, no dpos).
            if (c.cls) {
                Tensor<T, Cuda> none_p, none_q;
                auto gdc2 = Tensor<T, Cuda>::empty({1, 1, D});
                ops::tokens_backward(gpu(dy), c.patches, true, none_p, gdc2, none_q);
                MEDIMG_CHECK_GPU_CPU("tokens_backward dcls alone", gdc2, dc, gpu_rtol<T>(), gpu_atol<T>());
            }
        }
    }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE_TEMPLATE(take_token_matches_the_cpu, T, float_types) {
    const Shape xs{3, 7, 5};
    const auto x = ref::random<T>(xs, 110), dy = ref::random<T>({3, 5}, 111);
    for (const std::int64_t index : {std::int64_t{0}, std::int64_t{4}, std::int64_t{6}}) {
        BOOST_TEST_CONTEXT("index " << index) {
            auto y = Tensor<T, Cpu>::empty({3, 5});
            auto gy = Tensor<T, Cuda>::empty({3, 5});
            ops::take_token_forward(x, index, y);
            ops::take_token_forward(gpu(x), index, gy);
            MEDIMG_CHECK_GPU_CPU_EXACT("take_token_forward", gy, y);
            auto dx = Tensor<T, Cpu>::empty(xs);
            auto gdx = Tensor<T, Cuda>::full(xs, T(123));  // overwritten whole, 0 off the token
            ops::take_token_backward(dy, index, dx);
            ops::take_token_backward(gpu(dy), index, gdx);
            MEDIMG_CHECK_GPU_CPU_EXACT("take_token_backward", gdx, dx);
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
