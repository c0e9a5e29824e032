// SPDX-License-Identifier: MIT
// train/upload.hpp: the two places where the fit loop's host batches meet the backend, so that a
// training step copies nothing back to the host except the loss value it logs:
//   BatchUploader<B>   a host batch (images, labels) -> backend tensors. Cpu: the batch itself, no
//                      copy. Cuda (cuda/staging.cuh): host_allocator() hands the loader pinned
//                      blocks to collate into, which go to the device by cudaMemcpyAsync with no
//                      host copy; any other host tensor through pinned staging buffers.
//   CorrectCounter<B>  the running count of right predictions (first maximum == label, as
//                      std::max_element), kept on the backend and read once per epoch.
//   GradClipper<B>     clip_grad_norm for the fit loop. Cpu: train::clip_grad_norm itself
//                      (train/fit.hpp). Cuda: the norm and the scale never leave the device.
// data/loader.hpp stays backend-free: it only calls the allocator it is handed.
#pragma once

#include <algorithm>
#include <cstdint>

#include "medimg/config.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/data/loader.hpp"
#include "medimg/error.hpp"

namespace medimg::train {

/// Moves host batches to backend B: `Tensor<T, B> operator()(const Tensor<T, Cpu>&)`.
template <class B>
class BatchUploader;

template <>
class BatchUploader<Cpu> {
public:
    /// The host tensor itself (shared storage): the CPU path copies nothing.
    template <class T>
    Tensor<T, Cpu> operator()(const Tensor<T, Cpu>& t) {
        return t;
    }
    /// Where a loader should collate its batches for this uploader: empty = its default.
    data::ImageAllocator host_allocator() const { return {}; }
};

/// Counts right predictions over an epoch on backend B:
///   add(logits (N, C), labels (N))  += number of rows whose first maximum is at the label
///   count()                          the total (a host read on a device backend)
///   reset()                          back to 0 (start of an epoch)
template <class B>
class CorrectCounter;

template <>
class CorrectCounter<Cpu> {
public:
    template <class T>
    void add(const Tensor<T, Cpu>& logits, const Tensor<std::int64_t, Cpu>& labels) {
        MEDIMG_CHECK(logits.rank() == 2 && labels.rank() == 1 && logits.size(0) == labels.numel(), ShapeError,
                     "CorrectCounter::add: expected logits (N, C) and labels (N), got ", logits.shape(), " and ",
                     labels.shape());
        const std::int64_t n = labels.numel(), C = logits.size(1);
        for (std::int64_t i = 0; i < n; ++i) {
            const T* row = logits.data() + i * C;
            count_ += (std::max_element(row, row + C) - row) == labels[i];
        }
    }
    std::int64_t count() const { return count_; }
    void reset() { count_ = 0; }

private:
    std::int64_t count_ = 0;
};

/// Scales every gradient so that their joint L2 norm is at most max_norm, as
/// torch.nn.utils.clip_grad_norm_: `void operator()(const nn::NamedParams<T, B>&, double max_norm)`.
/// The Cpu specialisation is in train/fit.hpp (it calls clip_grad_norm).
template <class B>
class GradClipper;

}  // namespace medimg::train

#if MEDIMG_HAS_CUDA
#include "medimg/cuda/staging.cuh"
#endif
