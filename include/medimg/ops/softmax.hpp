// SPDX-License-Identifier: MIT
// ops/softmax.hpp: the front door for row-wise log-softmax and the fused softmax cross-entropy
// loss, as torch.nn.functional.log_softmax(dim=1) and torch.nn.functional.cross_entropy with
// reduction='mean', optional class weights w and label smoothing e
// (https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html):
//   logp = log_softmax(z)                                               // (N, C)
//   loss = sum_i [ (1-e) w[y_i] (-logp[i,y_i]) + (e/C) sum_c w[c] (-logp[i,c]) ] / sum_i w[y_i]
// (w = 1 without weights, so the divisor is N). This is PyTorch's rule, including that the
// smoothing term is also normalised by sum_i w[y_i].
#pragma once

#include <cstdint>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"

namespace medimg::ops {

template <class B>
struct SoftmaxImpl;

/// x: (N, C) -> y: (N, C) = x - logsumexp(x) per row.  Ensures: y overwritten.
template <class T, class B>
void log_softmax_forward(const Tensor<T, B>& x, Tensor<T, B>& y) {
    MEDIMG_CHECK(x.rank() == 2 && y.shape() == x.shape(), ShapeError, "log_softmax_forward: input must be (N, C), got ",
                 x.shape(), " with output ", y.shape());
    SoftmaxImpl<B>::log_softmax_forward(x, y);
}
/// dx = dy - exp(y) * sum_c dy  (y is the forward output).  Ensures: dx overwritten.
template <class T, class B>
void log_softmax_backward(const Tensor<T, B>& y, const Tensor<T, B>& dy, Tensor<T, B>& dx) {
    MEDIMG_CHECK(y.rank() == 2 && dy.shape() == y.shape() && dx.shape() == y.shape(), ShapeError,
                 "log_softmax_backward: y ", y.shape(), ", dy ", dy.shape(), ", dx ", dx.shape(), " must match");
    SoftmaxImpl<B>::log_softmax_backward(y, dy, dx);
}

struct CrossEntropyParams {
    double label_smoothing = 0.0;  // in [0, 1]
};

inline void check_cross_entropy(const char* fn, const Shape& logits, const Shape& target, const Shape& weight,
                                bool has_weight, const CrossEntropyParams& p) {
    MEDIMG_CHECK(logits.rank() == 2, ShapeError, fn, ": logits must be (N, C), got ", logits);
    MEDIMG_CHECK(target.rank() == 1 && target[0] == logits[0], ShapeError, fn, ": target must be (", logits[0],
                 ") for logits ", logits, ", got ", target);
    MEDIMG_CHECK(!has_weight || weight == Shape{logits[1]}, ShapeError, fn, ": class weights must be (", logits[1],
                 "), got ", weight);
    MEDIMG_CHECK(p.label_smoothing >= 0.0 && p.label_smoothing <= 1.0, ValueError, fn,
                 ": label_smoothing must be in [0, 1], got ", p.label_smoothing);
}

/// Writes the mean loss into `loss` (a one-element tensor, kept on the device) and fills logp
/// (N, C).  Requires: 0 <= target[i] < C (checked; the error names the sample).  weight may be
/// undefined.
template <class T, class B>
void cross_entropy_forward(const Tensor<T, B>& logits, const Tensor<std::int64_t, B>& target,
                           const Tensor<T, B>& weight, const CrossEntropyParams& p, Tensor<T, B>& logp,
                           Tensor<T, B>& loss) {
    check_cross_entropy("cross_entropy", logits.shape(), target.shape(), weight.shape(), weight.defined(), p);
    MEDIMG_CHECK(logp.shape() == logits.shape() && loss.numel() == 1, ShapeError, "cross_entropy: logp ", logp.shape(),
                 " vs logits ", logits.shape(), ", loss ", loss.shape());
    SoftmaxImpl<B>::cross_entropy_forward(logits, target, weight, p, logp, loss);
}
/// dlogits = dloss * d(loss)/d(logits), from the saved logp.  Ensures: dlogits overwritten.
///   g[i,c] = -((1-e) w[y_i] [c == y_i] + (e/C) w[c]) / sum_i w[y_i]   (d loss / d logp)
///   dlogits[i,c] = g[i,c] - softmax[i,c] * sum_c' g[i,c']
template <class T, class B>
void cross_entropy_backward(const Tensor<T, B>& logp, const Tensor<std::int64_t, B>& target, const Tensor<T, B>& weight,
                            const CrossEntropyParams& p, const Tensor<T, B>& dloss, Tensor<T, B>& dlogits) {
    check_cross_entropy("cross_entropy_backward", logp.shape(), target.shape(), weight.shape(), weight.defined(), p);
    MEDIMG_CHECK(dlogits.shape() == logp.shape() && dloss.numel() == 1, ShapeError, "cross_entropy_backward: dlogits ",
                 dlogits.shape(), " vs logp ", logp.shape(), ", dloss ", dloss.shape());
    SoftmaxImpl<B>::cross_entropy_backward(logp, target, weight, p, dloss, dlogits);
}

}  // namespace medimg::ops

#include "medimg/cpu/softmax.hpp"
#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/softmax.cuh"
#endif
