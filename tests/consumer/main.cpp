// SPDX-License-Identifier: MIT
// Builds against an installed medimg: one include, one target. Exits 0 when a tiny
// gradient step through the public API gives the expected numbers.
#include <medimg/medimg.hpp>

#include <cmath>
#include <iostream>

int main() try {
    using namespace medimg;
    auto w = autograd::Var<float>::parameter(Tensor<float>::from_vector({2}, {1.0f, -2.0f}));
    auto loss = autograd::sum(autograd::mul(w, w));  // sum(w^2) = 5, d/dw = 2w
    loss.backward();
    const auto g = w.grad();
    const bool ok = std::abs(loss.value().item() - 5.0f) < 1e-6f && std::abs(g[0] - 2.0f) < 1e-6f &&
                    std::abs(g[1] + 4.0f) < 1e-6f;
    std::cout << "medimg " << medimg::version << (ok ? " consumer ok" : " consumer WRONG") << "\n";
    return ok ? 0 : 1;
} catch (const std::exception& e) {
    std::cerr << "consumer: " << e.what() << "\n";
    return 1;
}
