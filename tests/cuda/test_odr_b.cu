// SPDX-License-Identifier: MIT
// The second translation unit of the ODR test (see test_odr_a.cu): the same includes, the same
// kernels, one pipeline; no test cases of its own.
#include <vector>

#include "medimg/medimg.hpp"

using namespace medimg;

std::vector<float> odr_pipeline_b() {
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
