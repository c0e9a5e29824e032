// SPDX-License-Identifier: MIT
// ODR safety of the header-only CUDA backend (STYLE.md "ODR rules"): test_odr_a.cu and
// test_odr_b.cu both include medimg.hpp and launch the same kernels, and are linked into one
// binary (test_cuda). A kernel with external linkage in a header would fail that link with
// "multiple definition"; a launcher calling another TU's unregistered kernel would fail here at
// run time. Each TU runs the same small pipeline; the results must agree bit for bit.
#include <boost/test/unit_test.hpp>

#include <vector>

#include "cuda_helpers.hpp"
#include "medimg/medimg.hpp"

using namespace medimg;
namespace utf = boost::unit_test;

std::vector<float> odr_pipeline_b();  // test_odr_b.cu

/// fill, axpy, relu, max pool, log_softmax, an SGD step: kernels from several cuda/ headers.
std::vector<float> odr_pipeline_a() {
    auto x = Tensor<float, Cuda>::full({2, 2, 4, 4}, 0.5f);
    std::vector<float> v(64);
    for (int i = 0; i < 64; ++i) v[static_cast<std::size_t>(i)] = 0.25f * static_cast<float>(i % 7 - 3);
    auto d = Tensor<float, Cuda>::from_vector({2, 2, 4, 4}, v);
    ops::axpy_(x, 3.0f, d);
    auto r = Tensor<float, Cuda>::empty(x.shape());
    ops::relu_forward(x, r);
    auto y = Tensor<float, Cuda>::empty({2, 2, 2, 2});
    auto am = Tensor<std::int32_t, Cuda>::empty({2, 2, 2, 2});
    ops::max_pool2d_forward(r, y, am, ops::MaxPool2dParams{});
    auto l = Tensor<float, Cuda>::empty({2, 8});
    ops::log_softmax_forward(y.reshape({2, 8}), l);
    optim::SgdScalars<float> s{-0.1f, 0.0f, 0.0f, 1.0f, false, false, false, false};
    optim::OptimImpl<Cuda>::sgd(l.data(), l.data(), static_cast<float*>(nullptr), l.numel(), s);
    auto out = l.to_vector();
    // SSIM (kernels/ssim.cuh) and the training loop's on-device accuracy count (cuda/staging.cuh).
    const auto img = Tensor<float, Cuda>::from_vector({8, 8}, v);
    out.push_back(static_cast<float>(metrics::ssim(img, Tensor<float, Cuda>::full({8, 8}, 0.5f)).mean));
    train::CorrectCounter<Cuda> correct;
    correct.add(l, Tensor<std::int64_t, Cuda>::from_vector({2}, {3, 5}));
    out.push_back(static_cast<float>(correct.count()));
    return out;
}

BOOST_AUTO_TEST_SUITE(cuda_odr)

BOOST_TEST_DECORATOR(*utf::precondition(medimg::test::has_cuda_device))
BOOST_AUTO_TEST_CASE(two_translation_units_launch_the_same_kernels) {
    const auto a = odr_pipeline_a();
    const auto b = odr_pipeline_b();
    BOOST_TEST(a == b, boost::test_tools::per_element());
    BOOST_TEST(a.size() == 18u);
}

BOOST_AUTO_TEST_SUITE_END()
