// SPDX-License-Identifier: MIT
// Tests for autograd/: the engine's rules (accumulation, shared inputs, NoGrad, graph freeing)
// and a central finite-difference check in double for every differentiable op.
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <limits>
#include <type_traits>

#include "helpers.hpp"
#include "medimg/medimg.hpp"
#include "reference.hpp"

using namespace medimg;
using namespace medimg::autograd;
using medimg::test::message_contains;
namespace ref = medimg::test::ref;
using V = Var<double, Cpu>;
using Vs = std::vector<V>;

namespace {
V param(const Shape& s, std::uint64_t seed, double lo = -1.0, double hi = 1.0) {
    return V::parameter(ref::random<double>(s, seed, lo, hi));
}
/// Reduces any output to a scalar with fixed random weights, so every output element's gradient
/// path is exercised (a plain sum would hide errors that cancel).
V weighted_sum(const V& y, std::uint64_t seed = 999) {
    return sum(mul(y, V(ref::random<double>(y.shape(), seed))));
}
void expect_gradients_match(const std::function<V(const Vs&)>& f, const Vs& inputs) {
    const auto r = grad_check(f, inputs, 1e-6, test::kGradRtol, test::kGradAtol);
    BOOST_CHECK_MESSAGE(r.ok, "gradient mismatch: " << r.worst << " (max abs error " << r.max_abs_error << ")");
}
}  // namespace

BOOST_AUTO_TEST_SUITE(autograd_engine)

BOOST_AUTO_TEST_CASE(gradients_accumulate_until_zero_grad) {
    auto w = V::parameter(Tensor<double>::from_vector({2}, {1.0, -2.0}));
    sum(mul(w, w)).backward();
    BOOST_TEST(w.grad()[0] == 2.0);
    sum(mul(w, w)).backward();
    BOOST_TEST(w.grad()[1] == -8.0);  // 2 * (2 * -2)
    w.zero_grad();
    BOOST_TEST(!w.grad().defined());
}

BOOST_AUTO_TEST_CASE(an_input_used_twice_gets_both_contributions) {
    auto x = V::parameter(Tensor<double>::from_vector({3}, {1, 2, 3}));
    auto y = add(x, scale(x, 3.0));  // y = 4x
    sum(add(y, y)).backward();       // d/dx sum(2y) = 8
    for (int i = 0; i < 3; ++i) BOOST_TEST(x.grad()[i] == 8.0);
}

BOOST_AUTO_TEST_CASE(no_grad_records_nothing_and_detach_cuts_the_graph) {
    auto x = V::parameter(Tensor<double>::from_vector({2}, {1, 2}));
    {
        NoGrad guard;
        BOOST_TEST(!is_grad_enabled());
        auto y = mul(x, x);
        BOOST_TEST(!y.requires_grad());
        BOOST_CHECK_EXCEPTION(sum(y).backward(), ValueError, message_contains("does not require grad"));
    }
    BOOST_TEST(is_grad_enabled());
    auto z = sum(mul(x.detach(), x));
    z.backward();
    BOOST_TEST(x.grad()[1] == 2.0);  // only the non-detached factor contributes
}

BOOST_AUTO_TEST_CASE(a_value_no_backward_needs_is_freed_with_its_last_var_before_backward) {
    // Blocks >= 1 MiB go through the host cache, so a freed one shows up in host_cache_bytes().
    release_host_cache();
    constexpr std::int64_t n = std::int64_t{1} << 18;  // 2 MiB of doubles
    auto x = V::parameter(Tensor<double>::full({n}, -1.0));
    V y;
    {
        auto a = affine(x, 2.0, 3.0);  // affine's backward needs no value; relu's needs its output
        y = relu(a);
        BOOST_TEST(host_cache_bytes() == 0u);
    }
    BOOST_TEST(host_cache_bytes() == static_cast<std::size_t>(n) * sizeof(double));  // a's storage, back before backward()
    // A value a backward saved stays alive without any Var: mul keeps both factors.
    V z;
    {
        auto b = affine(x, 1.0, 2.0);  // 1
        z = mul(b, y);                 // 1 * 1
    }
    sum(z).backward();
    BOOST_TEST(x.grad()[0] == 1.0 * 1.0 + 1.0 * 2.0);  // d/dx [(x+2) * relu(2x+3)] at x = -1
    release_host_cache();
}

BOOST_AUTO_TEST_CASE(backward_frees_the_graph_and_refuses_a_second_pass) {
    auto x = V::parameter(Tensor<double>::from_vector({2}, {1, 2}));
    auto y = sum(relu(x));
    y.backward();
    BOOST_TEST(!y.node()->backward);
    BOOST_TEST(y.node()->parents.empty());
    BOOST_CHECK_EXCEPTION(y.backward(), ValueError, message_contains("already freed"));
    auto v = relu(x);
    BOOST_CHECK_EXCEPTION(v.backward(), ShapeError, message_contains("implicit seed needs a one-element value"));
}

BOOST_AUTO_TEST_CASE(frozen_parameters_receive_no_gradient) {
    auto x = V(ref::random<double>({2, 3}, 1));
    auto w = param({4, 3}, 2);
    auto b = param({4}, 3);
    b.set_requires_grad(false);
    sum(linear(x, w, b)).backward();
    BOOST_TEST(w.grad().defined());
    BOOST_TEST(!b.grad().defined());
    BOOST_TEST(!x.grad().defined());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(autograd_gradients)

BOOST_AUTO_TEST_CASE(conv2d_backward_matches_finite_differences) {
    struct Case {
        Shape x, w;
        ops::Conv2dParams p;
    };
    for (const auto& c : {Case{{2, 2, 5, 5}, {3, 2, 3, 3}, {1, 1, 1, 1, 1, 1}}, Case{{1, 2, 7, 6}, {2, 2, 3, 3}, {2, 2, 1, 0, 1, 1}},
                          Case{{3, 3, 4, 4}, {2, 3, 1, 1}, {1, 1, 0, 0, 1, 1}}, Case{{2, 1, 7, 7}, {2, 1, 3, 2}, {1, 2, 2, 1, 2, 1}},
                          Case{{2, 3, 6, 5}, {3, 1, 3, 3}, {1, 1, 1, 1, 1, 1, 3}},   // depthwise
                          Case{{2, 2, 7, 7}, {4, 1, 5, 5}, {2, 2, 2, 2, 1, 1, 2}},   // depthwise, multiplier 2, stride 2
                          Case{{1, 4, 5, 5}, {6, 2, 3, 3}, {1, 1, 1, 1, 1, 1, 2}}}) {  // 2 groups
        Vs in{param(c.x, 10), param(c.w, 11), param({c.w[0]}, 12)};
        expect_gradients_match([&](const Vs& v) { return weighted_sum(conv2d(v[0], v[1], v[2], c.p)); }, in);
    }
}

BOOST_AUTO_TEST_CASE(batch_norm_backward_matches_finite_differences_in_both_modes) {
    auto rm = Tensor<double>::from_vector({3}, {0.1, -0.2, 0.3});
    auto rv = Tensor<double>::from_vector({3}, {1.5, 0.5, 2.0});
    for (bool training : {true, false}) {
        Vs in{param({2, 3, 3, 4}, 20, -2, 2), param({3}, 21, 0.5, 1.5), param({3}, 22)};
        expect_gradients_match(
            [&](const Vs& v) { return weighted_sum(batch_norm(v[0], v[1], v[2], rm.clone(), rv.clone(), training)); }, in);
    }
    Vs flat{param({5, 4}, 23)};  // (N, C) input, no affine parameters, no running stats
    expect_gradients_match([&](const Vs& v) { return weighted_sum(batch_norm(v[0], V(), V(), Tensor<double>(), Tensor<double>(), true)); },
                           flat);
}

BOOST_AUTO_TEST_CASE(batch_norm_relu_backward_matches_finite_differences_with_and_without_residual) {
    // The fused op (one bit per value kept for the ReLU): 5x7 rows span a partial 16-bit word.
    auto rm = Tensor<double>::from_vector({3}, {0.1, -0.2, 0.3});
    auto rv = Tensor<double>::from_vector({3}, {1.5, 0.5, 2.0});
    for (bool training : {true, false}) {
        Vs in{param({2, 3, 5, 7}, 25, -2, 2), param({3}, 26, 0.5, 1.5), param({3}, 27), param({2, 3, 5, 7}, 28)};
        expect_gradients_match(
            [&](const Vs& v) {
                return weighted_sum(batch_norm_relu(v[0], v[1], v[2], rm.clone(), rv.clone(), training, 0.1, 1e-5, v[3]));
            },
            in);
        expect_gradients_match(
            [&](const Vs& v) {
                return weighted_sum(batch_norm_relu(v[0], v[1], v[2], rm.clone(), rv.clone(), training, 0.1, 1e-5, V()));
            },
            {in[0], in[1], in[2]});
    }
}

BOOST_AUTO_TEST_CASE(batch_norm_relu_is_batch_norm_add_relu) {
    // Same values, running statistics and gradients as the three ops, in float (where the CPU's
    // vector rows run) and double; the forward and the statistics to the bit.
    auto check = [](auto zero, const Shape& s, bool training, bool with_residual) {
        using T = decltype(zero);
        using W = Var<T, Cpu>;
        auto x = ref::random<T>(s, 40, -2, 3), r = ref::random<T>(s, 41), dy = ref::random<T>(s, 42);
        auto g = ref::random<T>({s[1]}, 43, 0.5, 1.5), b = ref::random<T>({s[1]}, 44);
        auto rm1 = ref::random<T>({s[1]}, 45), rv1 = ref::random<T>({s[1]}, 46, 0.5, 2.0);
        auto rm2 = rm1.clone(), rv2 = rv1.clone();
        W x1 = W::parameter(x.clone()), g1 = W::parameter(g.clone()), b1 = W::parameter(b.clone()), r1 = W::parameter(r.clone());
        W x2 = W::parameter(x.clone()), g2 = W::parameter(g.clone()), b2 = W::parameter(b.clone()), r2 = W::parameter(r.clone());
        auto fused = batch_norm_relu(x1, g1, b1, rm1, rv1, training, 0.1, 1e-5, with_residual ? r1 : W());
        auto bn = batch_norm(x2, g2, b2, rm2, rv2, training, 0.1, 1e-5);
        auto plain = relu(with_residual ? add(bn, r2) : bn);
        BOOST_TEST(fused.value().to_vector() == plain.value().to_vector());
        BOOST_TEST(rm1.to_vector() == rm2.to_vector());
        BOOST_TEST(rv1.to_vector() == rv2.to_vector());
        sum(mul(fused, W(dy))).backward();
        sum(mul(plain, W(dy))).backward();
        const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-13;
        MEDIMG_CHECK_CLOSE_TENSORS(x1.grad(), x2.grad(), tol, tol);
        MEDIMG_CHECK_CLOSE_TENSORS(g1.grad(), g2.grad(), tol, tol);
        MEDIMG_CHECK_CLOSE_TENSORS(b1.grad(), b2.grad(), tol, tol);
        if (with_residual) BOOST_TEST(r1.grad().to_vector() == r2.grad().to_vector());
    };
    for (const Shape& s : {Shape{4, 8, 7, 7}, Shape{3, 5, 13, 11}, Shape{2, 16, 32, 32}, Shape{16, 4, 1, 1}})
        for (bool training : {true, false})
            for (bool with_residual : {true, false}) {
                check(0.0f, s, training, with_residual);
                check(0.0, s, training, with_residual);
            }
}

BOOST_AUTO_TEST_CASE(batch_norm_relu_vector_rows_equal_the_plain_rows) {
    // The AVX-512 rows (taken where the processor has them) against the plain loops: the output
    // and its bits, the gate and dx to the bit; the double sums to rounding.
    Rng rng(9);
    for (std::int64_t S : {1, 15, 16, 17, 49, 196, 3136}) {
        std::vector<float> r(S), res(S), dy(S), o1(S), o2(S), d1(S), d2(S), g1(S), g2(S);
        for (std::int64_t i = 0; i < S; ++i) {
            r[i] = static_cast<float>(rng.normal(0.2, 1.5));
            res[i] = static_cast<float>(rng.normal(0.0, 1.0));
            dy[i] = static_cast<float>(rng.normal(0.0, 1.0));
        }
        std::vector<std::uint16_t> m1(cpu::bn_relu::words(S)), m2(m1.size());
        cpu::bn_relu::forward_row_plain(r.data(), res.data(), o1.data(), m1.data(), S, 0.8123f, -0.0917f);
        cpu::bn_relu::forward(r.data(), res.data(), o2.data(), m2.data(), S, 0.8123f, -0.0917f);
        BOOST_TEST(o1 == o2, "S " << S);
        BOOST_TEST(m1 == m2, "S " << S);
        double a1 = 0, b1 = 0, a2 = 0, b2 = 0;
        cpu::bn_relu::sums_row_plain(r.data(), dy.data(), m1.data(), g1.data(), S, 0.2, a1, b1);
        cpu::bn_relu::sums(r.data(), dy.data(), m1.data(), g2.data(), S, 0.2, a2, b2);
        BOOST_TEST(g1 == g2, "S " << S);
        BOOST_TEST(std::abs(a1 - a2) <= 1e-12 * (1.0 + std::abs(a1)));
        BOOST_TEST(std::abs(b1 - b2) <= 1e-12 * (1.0 + std::abs(b1)));
        cpu::bn_relu::dx_row_plain(r.data(), dy.data(), m1.data(), d1.data(), S, 1.3f, -0.01f, 0.002f, 0.2f);
        cpu::bn_relu::dx(r.data(), dy.data(), m1.data(), d2.data(), S, 1.3f, -0.01f, 0.002f, 0.2f);
        BOOST_TEST(d1 == d2, "S " << S);
    }
}

BOOST_AUTO_TEST_CASE(batch_norm_relu_refuses_mismatched_shapes) {
    auto x = V(ref::random<double>({2, 3, 4, 4}, 50));
    auto r = V(ref::random<double>({2, 3, 4, 5}, 51));
    BOOST_CHECK_EXCEPTION(batch_norm_relu(x, V(), V(), Tensor<double>(), Tensor<double>(), true, 0.1, 1e-5, r), ShapeError,
                          message_contains("residual [2,3,4,5]"));
}

BOOST_AUTO_TEST_CASE(max_pool_places_route_as_the_plane_indices) {
    // Training keeps each window's place (uint8) instead of its index in the plane (int32): the
    // same outputs and gradients, ties (first maximum) and NaN (wins) included, clipped windows too.
    for (const ops::MaxPool2dParams& p : {ops::MaxPool2dParams{3, 3, 2, 2, 1, 1}, ops::MaxPool2dParams{2, 2, 2, 2, 0, 0},
                                          ops::MaxPool2dParams{3, 2, 1, 2, 1, 0}, ops::MaxPool2dParams{5, 5, 3, 3, 2, 2}})
        for (const Shape& s : {Shape{2, 3, 11, 13}, Shape{1, 2, 56, 56}, Shape{1, 1, 5, 5}}) {
            auto x = ref::random<float>(s, 70, -3, 3);
            for (std::int64_t i = 0; i < x.numel(); ++i) x.data()[i] = std::round(x.data()[i]);  // many ties
            x.data()[7] = std::numeric_limits<float>::quiet_NaN();
            const Shape ys = ops::max_pool2d_output_shape("test", s, p);
            auto y1 = Tensor<float>::empty(ys), y2 = Tensor<float>::empty(ys);
            auto at = Tensor<std::int32_t>::empty(ys);
            auto place = Tensor<std::uint8_t>::empty(ys);
            ops::max_pool2d_forward(x, y1, at, p);
            ops::max_pool2d_forward_places(x, y2, place, p);
            for (std::int64_t i = 0; i < y1.numel(); ++i)
                BOOST_TEST((y1.data()[i] == y2.data()[i] || (std::isnan(y1.data()[i]) && std::isnan(y2.data()[i]))));
            auto dy = ref::random<float>(ys, 71);
            auto d1 = Tensor<float>::empty(s), d2 = Tensor<float>::empty(s);
            ops::max_pool2d_backward(dy, at, d1);
            ops::max_pool2d_backward_places(dy, place, d2, p);
            BOOST_TEST(d1.to_vector() == d2.to_vector());
        }
    auto x = Tensor<float>::zeros({1, 1, 20, 20});
    auto y = Tensor<float>::empty({1, 1, 1, 1});
    auto place = Tensor<std::uint8_t>::empty({1, 1, 1, 1});
    BOOST_CHECK_EXCEPTION(ops::max_pool2d_forward_places(x, y, place, {16, 16, 16, 16, 0, 0}), ValueError,
                          message_contains("more than 255 places"));
}

BOOST_AUTO_TEST_CASE(batch_norm_running_stats_update_in_training_only) {
    auto rm = Tensor<double>::zeros({2});
    auto rv = Tensor<double>::ones({2});
    auto x = V(ref::random<double>({4, 2, 2, 2}, 24, 1.0, 3.0));
    batch_norm(x, V(), V(), rm, rv, false);
    BOOST_TEST(rm[0] == 0.0);
    batch_norm(x, V(), V(), rm, rv, true);
    BOOST_TEST(rm[0] > 0.1);  // moved 10% of the way toward a batch mean near 2
}

BOOST_AUTO_TEST_CASE(relu_and_pooling_backward_match_finite_differences) {
    Vs in{param({2, 2, 6, 7}, 30)};
    expect_gradients_match([](const Vs& v) { return weighted_sum(relu(v[0])); }, in);
    expect_gradients_match([](const Vs& v) { return weighted_sum(max_pool2d(v[0], {3, 3, 2, 2, 1, 1})); }, in);
    expect_gradients_match([](const Vs& v) { return weighted_sum(max_pool2d(v[0], {2, 2, 2, 2, 0, 0})); }, in);
    expect_gradients_match([](const Vs& v) { return weighted_sum(adaptive_avg_pool2d(v[0], 1, 1)); }, in);
    expect_gradients_match([](const Vs& v) { return weighted_sum(adaptive_avg_pool2d(v[0], 4, 3)); }, in);
}

BOOST_AUTO_TEST_CASE(avg_pool_activations_and_channel_ops_backward_match_finite_differences) {
    Vs in{param({2, 3, 6, 7}, 31, -4, 4)};
    expect_gradients_match([](const Vs& v) { return weighted_sum(avg_pool2d(v[0])); }, in);
    expect_gradients_match([](const Vs& v) { return weighted_sum(avg_pool2d(v[0], {3, 2, 2, 1})); }, in);  // overlapping
    expect_gradients_match([](const Vs& v) { return weighted_sum(sigmoid(v[0])); }, in);
    expect_gradients_match([](const Vs& v) { return weighted_sum(silu(v[0])); }, in);
    Vs xs{param({2, 3, 4, 5}, 32), param({2, 3}, 33)};
    expect_gradients_match([](const Vs& v) { return weighted_sum(scale_channels(v[0], v[1])); }, xs);
    Vs parts{param({2, 1, 3, 3}, 34), param({2, 4, 3, 3}, 35), param({2, 2, 3, 3}, 36)};
    expect_gradients_match([](const Vs& v) { return weighted_sum(cat_channels(v)); }, parts);
}

BOOST_AUTO_TEST_CASE(dropout_and_stochastic_depth_are_seeded_scaled_and_identity_in_eval) {
    auto x = V::parameter(Tensor<double>::ones({400, 5}));
    Rng r1(7), r2(7);
    auto y1 = dropout(x, 0.25, true, r1), y2 = dropout(x, 0.25, true, r2);
    BOOST_TEST(y1.value().to_vector() == y2.value().to_vector());  // same seed, same mask
    std::int64_t zeros = 0;
    for (double v : y1.value().to_vector()) {
        BOOST_TEST((v == 0.0 || std::abs(v - 1.0 / 0.75) < 1e-12));
        zeros += v == 0.0;
    }
    BOOST_TEST((zeros > 400 && zeros < 600));  // 25% of 2000, well inside 5 sigma
    sum(y1).backward();
    BOOST_TEST(x.grad().to_vector() == y1.value().to_vector());  // dx = mask
    Rng r3(7);
    BOOST_TEST(dropout(x, 0.25, false, r3).value().shares_storage_with(x.value()));
    auto s = stochastic_depth(V(Tensor<double>::ones({300, 2, 2})), 0.5, true, r3).value();
    std::int64_t dropped = 0;
    for (std::int64_t n = 0; n < 300; ++n) {
        BOOST_TEST(s[4 * n] == s[4 * n + 3]);  // the whole row together
        BOOST_TEST((s[4 * n] == 0.0 || s[4 * n] == 2.0));
        dropped += s[4 * n] == 0.0;
    }
    BOOST_TEST((dropped > 100 && dropped < 200));
    Vs in{param({3, 2, 2}, 37)};
    Rng fixed(3);
    expect_gradients_match([&](const Vs& v) { Rng r = fixed; return weighted_sum(stochastic_depth(v[0], 0.4, true, r)); }, in);
    expect_gradients_match([&](const Vs& v) { Rng r = fixed; return weighted_sum(dropout(v[0], 0.4, true, r)); }, in);
    BOOST_CHECK_THROW(dropout(x, 1.5, true, r3), ValueError);
}

BOOST_AUTO_TEST_CASE(linear_and_elementwise_backward_match_finite_differences) {
    Vs in{param({3, 4}, 40), param({5, 4}, 41), param({5}, 42)};
    expect_gradients_match([](const Vs& v) { return weighted_sum(linear(v[0], v[1], v[2])); }, in);
    Vs ab{param({2, 3}, 43), param({2, 3}, 44)};
    expect_gradients_match([](const Vs& v) { return weighted_sum(add(v[0], v[1])); }, ab);
    expect_gradients_match([](const Vs& v) { return weighted_sum(mul(v[0], v[1])); }, ab);
    expect_gradients_match([](const Vs& v) { return weighted_sum(affine(v[0], -1.5, 0.25)); }, ab);
    expect_gradients_match([](const Vs& v) { return mean(mul(v[0], v[0])); }, ab);
    expect_gradients_match([](const Vs& v) { return weighted_sum(flatten(reshape(v[0], {3, 2}))); }, ab);
}

BOOST_AUTO_TEST_CASE(log_softmax_and_cross_entropy_backward_match_finite_differences) {
    Vs in{param({4, 3}, 50, -3, 3)};
    expect_gradients_match([](const Vs& v) { return weighted_sum(log_softmax(v[0])); }, in);
    auto t = Tensor<std::int64_t>::from_vector({4}, {0, 2, 1, 2});
    expect_gradients_match([&](const Vs& v) { return loss::cross_entropy(v[0], t); }, in);
    loss::CrossEntropyOptions<double> opt{Tensor<double>::from_vector({3}, {0.2, 1.0, 3.0}), 0.15};
    expect_gradients_match([&](const Vs& v) { return loss::cross_entropy(v[0], t, opt); }, in);
}

BOOST_AUTO_TEST_CASE(a_small_network_backward_matches_finite_differences) {
    // conv -> bn -> relu -> maxpool -> conv + skip -> avgpool -> linear -> cross-entropy: the
    // shape of a ResNet step, end to end, in double.
    auto rm = Tensor<double>::zeros({3});
    auto rv = Tensor<double>::ones({3});
    auto t = Tensor<std::int64_t>::from_vector({2}, {1, 0});
    Vs in{param({2, 1, 8, 8}, 60), param({3, 1, 3, 3}, 61), param({3}, 62, 0.5, 1.5), param({3}, 63),
          param({3, 3, 3, 3}, 64), param({2, 3}, 65), param({2}, 66)};
    expect_gradients_match(
        [&](const Vs& v) {
            auto h = relu(batch_norm(conv2d(v[0], v[1], V(), {1, 1, 1, 1, 1, 1}), v[2], v[3], rm, rv, true));
            h = max_pool2d(h, {2, 2, 2, 2, 0, 0});
            h = relu(add(h, conv2d(h, v[4], V(), {1, 1, 1, 1, 1, 1})));
            return loss::cross_entropy(linear(flatten(adaptive_avg_pool2d(h)), v[5], v[6]), t);
        },
        in);
}

BOOST_AUTO_TEST_SUITE_END()
