// SPDX-License-Identifier: MIT
// cuda/batch_norm.cuh: BatchNormImpl<Cuda>, the GPU twin of cpu/batch_norm.hpp.
// Training forward / backward and inference forward are cuDNN's spatial batch normalisation
// (cudnnBatchNormalizationForwardTraining / Backward / ForwardInference, CUDNN_BATCHNORM_SPATIAL:
// statistics per channel over N, H, W; https://docs.nvidia.com/deeplearning/cudnn/api/cudnn-ops-library.html):
//   exponentialAverageFactor = momentum: running = (1 - momentum) * running + momentum * batch_stat,
//   cuDNN updating the running variance with the unbiased batch variance, as PyTorch does;
//   resultSaveMean / resultSaveInvVariance = save_mean / save_invstd = 1 / sqrt(var + eps).
// The backward hands cuDNN the saved mean and invstd (its cache arguments), so eps is not re-used.
// The inference-mode backward (statistics are constants) is an own kernel: dx = gamma * invstd * dy,
// dgamma = sum(dy * xhat), dbeta = sum(dy). Undefined gamma / beta (affine = false) become ones /
// zeros; undefined outputs get scratch buffers from the allocator.
// Activations stored in bf16 / fp16 (mixed precision; x, y, dy, dx share one storage, checked by
// ops/batch_norm.hpp) go to own kernels in every mode (kernels/batch_norm.cuh).
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/batch_norm.cuh: include only from a TU compiled by nvcc"
#endif

#include <cstdint>
#include <type_traits>

#include <cudnn.h>

#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/descriptors.hpp"
#include "medimg/cuda/kernels/batch_norm.cuh"
#include "medimg/cuda/kernels/channel.cuh"
#include "medimg/cuda/kernels/elementwise.cuh"
#include "medimg/cuda/kernels/storage.cuh"
#include "medimg/cuda/memory.cuh"
#include "medimg/ops/batch_norm.hpp"

namespace medimg::ops {

template <>
struct BatchNormImpl<Cuda> {
    /// t itself when defined, else a new (C) tensor filled with `value`.
    template <class T>
    static Tensor<T, Cuda> or_filled(const Tensor<T, Cuda>& t, std::int64_t C, T value) {
        return t.defined() ? t : Tensor<T, Cuda>::full(Shape{C}, value);
    }
    template <class T>
    static Tensor<T, Cuda> or_scratch(const Tensor<T, Cuda>& t, const Shape& s) {
        return t.defined() ? t : Tensor<T, Cuda>::empty(s);
    }
    /// The data of a float32 per-channel tensor, or null when undefined.
    template <class T>
    static T* ptr(Tensor<T, Cuda>& t) {
        return t.defined() ? t.data() : nullptr;
    }
    template <class T>
    static const T* ptr(const Tensor<T, Cuda>& t) {
        return t.defined() ? t.data() : nullptr;
    }
    /// The element count each channel averages over (N * H * W).
    template <class T>
    static std::int64_t spatial(const Tensor<T, Cuda>& x) {
        return x.rank() == 4 ? x.size(2) * x.size(3) : 1;
    }

    template <class T>
    static void forward_training(const Tensor<T, Cuda>& x, const Tensor<T, Cuda>& gamma, const Tensor<T, Cuda>& beta,
                                 Tensor<T, Cuda>& running_mean, Tensor<T, Cuda>& running_var, double momentum, double eps,
                                 Tensor<T, Cuda>& y, Tensor<T, Cuda>& save_mean, Tensor<T, Cuda>& save_invstd) {
        const std::int64_t C = x.size(1);
        if (x.half_storage()) {
            namespace cd = cuda::detail;
            cd::with_storage<T>(x.storage(), [&](auto* tag) {
                using S = std::remove_pointer_t<decltype(tag)>;
                cd::bn_forward_training_stored<S, T>(cd::stored<S>(x), ptr(gamma), ptr(beta), ptr(running_mean),
                                                     ptr(running_var), momentum, eps, x.size(0), C, spatial(x),
                                                     cd::stored<S>(y), ptr(save_mean), ptr(save_invstd));
            });
            return;
        }
        const auto xd = cuda::TensorDescriptor::nchw<T>(x.shape());
        cuda::TensorDescriptor pd;
        MEDIMG_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(pd.get(), xd.get(), CUDNN_BATCHNORM_SPATIAL));
        const auto g = or_filled(gamma, C, T(1)), b = or_filled(beta, C, T(0));
        // cuDNN takes both running statistics or neither, and both saved statistics or neither.
        const bool running = running_mean.defined() || running_var.defined();
        const bool saved = save_mean.defined() || save_invstd.defined();
        auto rm = running ? or_scratch(running_mean, Shape{C}) : Tensor<T, Cuda>();
        auto rv = running ? or_scratch(running_var, Shape{C}) : Tensor<T, Cuda>();
        auto sm = saved ? or_scratch(save_mean, Shape{C}) : Tensor<T, Cuda>();
        auto si = saved ? or_scratch(save_invstd, Shape{C}) : Tensor<T, Cuda>();
        const cuda::CudnnScalar<T> one = 1, zero = 0;
        MEDIMG_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
            cuda::cudnn_handle(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, xd.get(), x.data(), xd.get(), y.data(), pd.get(),
            g.data(), b.data(), momentum, running ? rm.data() : nullptr, running ? rv.data() : nullptr, eps,
            saved ? sm.data() : nullptr, saved ? si.data() : nullptr));
    }

    template <class T>
    static void forward_inference(const Tensor<T, Cuda>& x, const Tensor<T, Cuda>& gamma, const Tensor<T, Cuda>& beta,
                                  const Tensor<T, Cuda>& running_mean, const Tensor<T, Cuda>& running_var, double eps,
                                  Tensor<T, Cuda>& y) {
        const std::int64_t C = x.size(1);
        if (x.half_storage()) {
            namespace cd = cuda::detail;
            auto invstd = Tensor<T, Cuda>::empty(Shape{C});
            cd::rsqrt(running_var.data(), eps, invstd.data(), C);
            cd::with_storage<T>(x.storage(), [&](auto* tag) {
                using S = std::remove_pointer_t<decltype(tag)>;
                cd::bn_normalize_stored<S, T>(cd::stored<S>(x), running_mean.data(), invstd.data(), ptr(gamma), ptr(beta),
                                              x.size(0), C, spatial(x), cd::stored<S>(y));
            });
            return;
        }
        const auto xd = cuda::TensorDescriptor::nchw<T>(x.shape());
        cuda::TensorDescriptor pd;
        MEDIMG_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(pd.get(), xd.get(), CUDNN_BATCHNORM_SPATIAL));
        const auto g = or_filled(gamma, C, T(1)), b = or_filled(beta, C, T(0));
        const cuda::CudnnScalar<T> one = 1, zero = 0;
        MEDIMG_CUDNN_CHECK(cudnnBatchNormalizationForwardInference(cuda::cudnn_handle(), CUDNN_BATCHNORM_SPATIAL, &one, &zero,
                                                                   xd.get(), x.data(), xd.get(), y.data(), pd.get(), g.data(),
                                                                   b.data(), running_mean.data(), running_var.data(), eps));
    }

    template <class T>
    static void backward(const Tensor<T, Cuda>& x, const Tensor<T, Cuda>& dy, const Tensor<T, Cuda>& gamma,
                         const Tensor<T, Cuda>& mean, const Tensor<T, Cuda>& invstd, bool training, Tensor<T, Cuda>& dx,
                         Tensor<T, Cuda>& dgamma, Tensor<T, Cuda>& dbeta) {
        const std::int64_t N = x.size(0), C = x.size(1), P = spatial(x);
        if (x.half_storage()) {
            namespace cd = cuda::detail;
            cd::with_storage<T>(x.storage(), [&](auto* tag) {
                using S = std::remove_pointer_t<decltype(tag)>;
                cd::bn_backward_stored<S, T>(cd::stored<S>(x), cd::stored<S>(dy), ptr(gamma), mean.data(), invstd.data(),
                                             training, N, C, P, dx.defined() ? cd::stored<S>(dx) : nullptr, ptr(dgamma),
                                             ptr(dbeta));
            });
            return;
        }
        if (!training) {  // statistics are constants: own kernels
            cuda::detail::bn_param_grads(x.data(), dy.data(), mean.data(), invstd.data(), N, C, P,
                                         dgamma.defined() ? dgamma.data() : nullptr, dbeta.defined() ? dbeta.data() : nullptr);
            if (dx.defined())
                cuda::detail::bn_inference_backward_data(dy.data(), gamma.defined() ? gamma.data() : nullptr, invstd.data(), N,
                                                         C, P, dx.data());
            return;
        }
        if (!dx.defined() && !dgamma.defined() && !dbeta.defined()) return;
        const auto xd = cuda::TensorDescriptor::nchw<T>(x.shape());
        cuda::TensorDescriptor pd;
        MEDIMG_CUDNN_CHECK(cudnnDeriveBNTensorDescriptor(pd.get(), xd.get(), CUDNN_BATCHNORM_SPATIAL));
        const auto g = or_filled(gamma, C, T(1));
        auto dxx = or_scratch(dx, x.shape());
        auto dg = or_scratch(dgamma, Shape{C}), db = or_scratch(dbeta, Shape{C});
        const cuda::CudnnScalar<T> one = 1, zero = 0;
        // epsilon is only used when no saved statistics are given; ours always are.
        MEDIMG_CUDNN_CHECK(cudnnBatchNormalizationBackward(cuda::cudnn_handle(), CUDNN_BATCHNORM_SPATIAL, &one, &zero, &one,
                                                           &zero, xd.get(), x.data(), xd.get(), dy.data(), xd.get(), dxx.data(),
                                                           pd.get(), g.data(), dg.data(), db.data(), 1e-5, mean.data(),
                                                           invstd.data()));
    }
};

}  // namespace medimg::ops
