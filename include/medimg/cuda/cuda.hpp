// SPDX-License-Identifier: MIT
// cuda/cuda.hpp: the CUDA backend in one include (medimg.hpp includes it when MEDIMG_HAS_CUDA).
// The op implementations (XImpl<Cuda>) also arrive through the ops/ headers' own bottom includes;
// listing them here keeps this header complete on its own.
//   check.hpp       MEDIMG_CUDA_CHECK / MEDIMG_CUDNN_CHECK / MEDIMG_CUBLAS_CHECK -> CudaError
//   device.hpp      device_count() (0, never an exception, without a GPU), device_description()
//   context.hpp     the stream, per-thread cuDNN/cuBLAS handles, Settings (TF32, cuDNN search)
//   allocator.hpp   the caching device allocator, empty_cache(), allocator_stats()
//   memory.cuh      Memory<Cuda>, Transfer<Cpu, Cuda>, Transfer<Cuda, Cpu>, Transfer<Cuda, Cuda>
//   *.cuh           ElementwiseImpl, Conv2dImpl, BatchNormImpl, PoolImpl, LinearImpl, SoftmaxImpl,
//                   OptimImpl, ActivationImpl, LayerNormImpl, AttentionImpl, TokensImpl for Cuda;
//                   own kernels in kernels/
// Not listed, because they belong to higher layers and arrive with them: ssim.cuh
// (metrics::SsimImpl<Cuda>, through metrics/ssim.hpp) and staging.cuh (train::BatchUploader<Cuda>,
// CorrectCounter<Cuda>, GradClipper<Cuda>, through train/upload.hpp).
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/cuda.hpp: include only from a TU compiled by nvcc"
#endif

#include "medimg/cuda/allocator.hpp"
#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/descriptors.hpp"
#include "medimg/cuda/device.hpp"
#include "medimg/cuda/memory.cuh"

#include "medimg/cuda/activation.cuh"
#include "medimg/cuda/attention.cuh"
#include "medimg/cuda/batch_norm.cuh"
#include "medimg/cuda/conv2d.cuh"
#include "medimg/cuda/elementwise.cuh"
#include "medimg/cuda/layer_norm.cuh"
#include "medimg/cuda/linear.cuh"
#include "medimg/cuda/optim.cuh"
#include "medimg/cuda/pooling.cuh"
#include "medimg/cuda/softmax.cuh"
#include "medimg/cuda/tokens.cuh"
