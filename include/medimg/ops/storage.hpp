// SPDX-License-Identifier: MIT
// ops/storage.hpp: the storage checks of the ops that read half-precision tensors (Tensor::storage();
// mixed-precision activations on the GPU, docs/gpu.md). A front door names its tensors; the check
// returns the one half format among them (fp32 when none is half) and refuses, in one line naming
// the op and the tensors: two different half formats in one call; a half tensor where the op's
// tensors must share one storage (elementwise ops, batch norm and pooling do not convert); any
// half tensor on a backend whose kernels read float32 only (the CPU).
#pragma once

#include <initializer_list>
#include <type_traits>
#include <utility>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"

namespace medimg::ops {

/// Whether backend B's kernels read and write half storage (the CUDA backend's do).
template <class B>
inline constexpr bool reads_half_storage = std::is_same_v<B, Cuda>;

namespace detail {

template <class T, class B>
using NamedTensor = std::pair<const char*, const Tensor<T, B>*>;

/// The half storage of an op's defined tensors, or fp32 when none has one; `same`: every defined
/// tensor must have the same storage.
template <class T, class B>
Precision op_storage(const char* fn, bool same, std::initializer_list<NamedTensor<T, B>> tensors) {
    const NamedTensor<T, B>* half = nullptr;
    const NamedTensor<T, B>* first = nullptr;
    for (const auto& t : tensors) {
        if (!t.second->defined()) continue;
        if (!first) first = &t;
        MEDIMG_CHECK(!same || t.second->storage() == first->second->storage(), ValueError, fn, ": ", first->first, " ",
                     first->second->shape(), " holds ", precision_name(first->second->storage()), " storage but ", t.first,
                     " ", t.second->shape(), " holds ", precision_name(t.second->storage()),
                     "; this op does not convert (Tensor::to_storage)");
        if (!t.second->half_storage()) continue;
        MEDIMG_CHECK(!half || half->second->storage() == t.second->storage(), ValueError, fn, ": ", half->first, " holds ",
                     precision_name(half->second->storage()), " storage but ", t.first, " holds ",
                     precision_name(t.second->storage()), "; one call takes one half format");
        if (!half) half = &t;
    }
    if (!half) return Precision::fp32;
    MEDIMG_CHECK(reads_half_storage<B>, ValueError, fn, ": ", half->first, " ", half->second->shape(), " holds ",
                 precision_name(half->second->storage()), " storage, which only the CUDA backend reads; the ", B::name,
                 " backend computes in float32 (Tensor::to_storage(Precision::fp32))");
    return half->second->storage();
}

/// Refuses, in one line naming the op and the tensor, any half-storage tensor among an op's
/// defined ones: the ops whose kernels read float32 only on every backend (the transformer ops;
/// autograd widens half activations before calling them).
template <class T, class B>
void float32_only(const char* fn, std::initializer_list<NamedTensor<T, B>> tensors) {
    for (const auto& t : tensors)
        MEDIMG_CHECK(!t.second->defined() || !t.second->half_storage(), ValueError, fn, ": ", t.first, " ", t.second->shape(),
                     " holds ", precision_name(t.second->storage()),
                     " storage; this op reads float32 only (Tensor::to_storage(Precision::fp32))");
}

}  // namespace detail
}  // namespace medimg::ops
