// SPDX-License-Identifier: MIT
// cuda/conv2d.cuh: Conv2dImpl<Cuda>, the GPU twin of cpu/conv2d.hpp, on cuDNN's convolution API
// (cudnnConvolutionForward / BackwardData / BackwardFilter; https://docs.nvidia.com/deeplearning/cudnn/
// api/cudnn-cnn-library.html). Per shape (x, w, y, params, element type, settings) a ConvPlan holds
// the descriptors and, per direction, the algorithm chosen once - by cuDNN's heuristics
// (cudnnGet*Algorithm_v7) or, with settings().cudnn_benchmark, by timing (cudnnFind*AlgorithmEx) -
// preferring deterministic algorithms and, unless settings().allow_tf32, FP32 FMA math. Workspaces
// come from the caching allocator. Bias: own kernels (kernels/channel.cuh), summed in double.
// Mixed precision (settings().precision = bf16 | fp16, or an operand holding half storage; float
// tensors only): the plan describes bf16/fp16 x, w, y with float32 accumulation (cuDNN's
// PSEUDO_BFLOAT16 / PSEUDO_HALF configurations) and tensor-core math; each call uses operands that
// hold half storage as they are, casts float32 ones into half blocks (cuda/precision.cuh), and
// writes a half-storage output in place or casts the half result back into a float32 one.
// Groups (grouped and depthwise convolutions) go to cuDNN as a group count on the convolution
// descriptor (cudnnSetConvolutionGroupCount), the filter described as (C_out, C_in/groups, kH, kW).
// Deliberately not here: NHWC, the cuDNN v9 graph API, fused conv+bias+activation.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/conv2d.cuh: include only from a TU compiled by nvcc"
#endif

#include <algorithm>
#include <array>
#include <initializer_list>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <type_traits>
#include <vector>

#include <cudnn.h>

#include "medimg/cuda/allocator.hpp"
#include "medimg/cuda/check.hpp"
#include "medimg/cuda/context.hpp"
#include "medimg/cuda/descriptors.hpp"
#include "medimg/cuda/kernels/channel.cuh"
#include "medimg/cuda/kernels/storage.cuh"
#include "medimg/cuda/memory.cuh"
#include "medimg/cuda/precision.cuh"
#include "medimg/ops/conv2d.hpp"

namespace medimg::cuda::detail {

enum ConvDirection : int { kConvForward = 0, kConvBackwardData = 1, kConvBackwardFilter = 2 };

struct ConvAlgo {
    bool chosen = false;
    int algo = 0;               // cudnnConvolution{Fwd,BwdData,BwdFilter}Algo_t
    std::size_t workspace = 0;  // bytes
};

/// Everything cuDNN needs for one convolution shape; one convolution descriptor per direction,
/// since each direction's algorithm may want its own math type.
struct ConvPlan {
    TensorDescriptor x, y;
    FilterDescriptor w;
    ConvolutionDescriptor conv[3];
    ConvAlgo algo[3];
    Precision precision = Precision::fp32;  // bf16 / fp16: x, w, y are half blocks, accumulation float
};

using ConvKey = std::array<std::int64_t, 21>;

inline std::mutex& conv_mutex() {
    static std::mutex m;
    return m;
}
inline std::map<ConvKey, std::unique_ptr<ConvPlan>>& conv_plans() {
    static auto* plans = new std::map<ConvKey, std::unique_ptr<ConvPlan>>();  // lives as long as the process
    return *plans;
}

template <class T>
cudnnMathType_t conv_math(bool allow_tf32) {
    if constexpr (std::is_same_v<T, float>)
        return allow_tf32 ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;
    else
        return CUDNN_DEFAULT_MATH;
}

/// The plan for this shape; created (descriptors set, no algorithm yet) on first use.
/// Call with conv_mutex() held.
template <class T>
ConvPlan& conv_plan(const Shape& x, const Shape& w, const Shape& y, const ops::Conv2dParams& p, Precision pr) {
    const Settings& s = settings();
    const ConvKey key{current_device(), std::is_same_v<T, float> ? 0 : 1, x[0], x[1], x[2], x[3], w[0], w[2], w[3],
                      p.stride_h, p.stride_w, p.pad_h, p.pad_w, p.dilation_h, p.dilation_w,
                      s.allow_tf32, s.cudnn_benchmark, s.deterministic, static_cast<std::int64_t>(s.conv_workspace_limit),
                      static_cast<std::int64_t>(pr), p.groups};
    auto& slot = conv_plans()[key];
    if (!slot) {
        auto plan = std::make_unique<ConvPlan>();
        plan->precision = pr;
        if (pr == Precision::fp32) {
            plan->x.set<T>(x);
            plan->y.set<T>(y);
            plan->w.set<T>(w);
        } else {
            plan->x.set(x, cudnn_half_type(pr));
            plan->y.set(y, cudnn_half_type(pr));
            plan->w.set(w, cudnn_half_type(pr));
        }
        for (auto& c : plan->conv) {
            if (pr == Precision::fp32) {
                c.set<T>(p.pad_h, p.pad_w, p.stride_h, p.stride_w, p.dilation_h, p.dilation_w);
                c.set_math(conv_math<T>(s.allow_tf32));
            } else {
                c.set(p.pad_h, p.pad_w, p.stride_h, p.stride_w, p.dilation_h, p.dilation_w, CUDNN_DATA_FLOAT);
                c.set_math(CUDNN_TENSOR_OP_MATH);
            }
            if (p.groups > 1) c.set_group_count(p.groups);
        }
        slot = std::move(plan);
    }
    return *slot;
}

/// Whether the plan's algorithms must keep FP32 FMA math (float data, no TF32 allowed).
template <class T>
bool fp32_math_only(const ConvPlan& plan) {
    return std::is_same_v<T, float> && !settings().allow_tf32 && plan.precision == Precision::fp32;
}
/// Whether the chosen algorithm's own math type goes into the descriptor.
inline bool adopt_math_type(const ConvPlan& plan) { return settings().allow_tf32 || plan.precision != Precision::fp32; }

/// The index of the first acceptable entry of cuDNN's ranked list, or -1: it ran (status),
/// fits the workspace limit, keeps FP32 math unless TF32 is allowed, and - in a first pass when
/// asked - is deterministic.
template <class Perf>
int pick_algorithm(const Perf* perf, int n, const Settings& s, bool fp32_math) {
    for (int pass = s.deterministic ? 0 : 1; pass < 2; ++pass)
        for (int i = 0; i < n; ++i) {
            const Perf& q = perf[i];
            if (q.status != CUDNN_STATUS_SUCCESS || q.memory > s.conv_workspace_limit) continue;
            if (fp32_math &&
                (q.mathType == CUDNN_TENSOR_OP_MATH || q.mathType == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION))
                continue;
            if (pass == 0 && q.determinism != CUDNN_DETERMINISTIC) continue;
            return i;
        }
    return -1;
}

[[noreturn]] inline void no_conv_algorithm(const char* fn, const Shape& x, const Shape& w) {
    throw BackendError(::medimg::detail::concat(fn, ": cuDNN offers no usable algorithm for input ", x, " and weight ", w,
                                                " within the workspace limit of ", settings().conv_workspace_limit,
                                                " bytes (cuda::settings().conv_workspace_limit)"));
}

/// Workspace for cudnnFind*AlgorithmEx: the limit, but at most a quarter of the free memory.
inline std::size_t find_workspace_bytes() {
    std::size_t free_b = 0, total_b = 0;
    MEDIMG_CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return std::min(settings().conv_workspace_limit, free_b / 4);
}

template <class T>
const ConvAlgo& choose_forward(ConvPlan& plan, const Shape& xs, const Shape& ws, const void* x, const void* w, void* y) {
    ConvAlgo& a = plan.algo[kConvForward];
    if (a.chosen) return a;
    const Settings& s = settings();
    cudnnHandle_t h = cudnn_handle();
    auto& conv = plan.conv[kConvForward];
    int max_n = 0, n = 0;
    MEDIMG_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max_n));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf(static_cast<std::size_t>(std::max(max_n, 1)));
    if (s.cudnn_benchmark) {
        DeviceBuffer ws_buf(find_workspace_bytes());
        MEDIMG_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(h, plan.x.get(), x, plan.w.get(), w, conv.get(), plan.y.get(), y,
                                                                  max_n, &n, perf.data(), ws_buf.get(), ws_buf.bytes()));
    } else {
        MEDIMG_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, plan.x.get(), plan.w.get(), conv.get(), plan.y.get(), max_n, &n,
                                                                  perf.data()));
    }
    const int i = pick_algorithm(perf.data(), n, s, fp32_math_only<T>(plan));
    if (i < 0) no_conv_algorithm("conv2d_forward", xs, ws);
    if (adopt_math_type(plan)) conv.set_math(perf[i].mathType);
    a.algo = perf[i].algo;
    MEDIMG_CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, plan.x.get(), plan.w.get(), conv.get(), plan.y.get(),
                                                               perf[i].algo, &a.workspace));
    a.chosen = true;
    return a;
}

template <class T>
const ConvAlgo& choose_backward_data(ConvPlan& plan, const Shape& xs, const Shape& ws, const void* dy, const void* w, void* dx) {
    ConvAlgo& a = plan.algo[kConvBackwardData];
    if (a.chosen) return a;
    const Settings& s = settings();
    cudnnHandle_t h = cudnn_handle();
    auto& conv = plan.conv[kConvBackwardData];
    int max_n = 0, n = 0;
    MEDIMG_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max_n));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf(static_cast<std::size_t>(std::max(max_n, 1)));
    if (s.cudnn_benchmark) {
        DeviceBuffer ws_buf(find_workspace_bytes());
        MEDIMG_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(h, plan.w.get(), w, plan.y.get(), dy, conv.get(), plan.x.get(),
                                                                       dx, max_n, &n, perf.data(), ws_buf.get(), ws_buf.bytes()));
    } else {
        MEDIMG_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, plan.w.get(), plan.y.get(), conv.get(), plan.x.get(), max_n,
                                                                       &n, perf.data()));
    }
    const int i = pick_algorithm(perf.data(), n, s, fp32_math_only<T>(plan));
    if (i < 0) no_conv_algorithm("conv2d_backward_data", xs, ws);
    if (adopt_math_type(plan)) conv.set_math(perf[i].mathType);
    a.algo = perf[i].algo;
    MEDIMG_CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(h, plan.w.get(), plan.y.get(), conv.get(), plan.x.get(),
                                                                    perf[i].algo, &a.workspace));
    a.chosen = true;
    return a;
}

template <class T>
const ConvAlgo& choose_backward_filter(ConvPlan& plan, const Shape& xs, const Shape& ws, const void* x, const void* dy, void* dw) {
    ConvAlgo& a = plan.algo[kConvBackwardFilter];
    if (a.chosen) return a;
    const Settings& s = settings();
    cudnnHandle_t h = cudnn_handle();
    auto& conv = plan.conv[kConvBackwardFilter];
    int max_n = 0, n = 0;
    MEDIMG_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max_n));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf(static_cast<std::size_t>(std::max(max_n, 1)));
    if (s.cudnn_benchmark) {
        DeviceBuffer ws_buf(find_workspace_bytes());
        MEDIMG_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(h, plan.x.get(), x, plan.y.get(), dy, conv.get(),
                                                                         plan.w.get(), dw, max_n, &n, perf.data(), ws_buf.get(),
                                                                         ws_buf.bytes()));
    } else {
        MEDIMG_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, plan.x.get(), plan.y.get(), conv.get(), plan.w.get(),
                                                                         max_n, &n, perf.data()));
    }
    const int i = pick_algorithm(perf.data(), n, s, fp32_math_only<T>(plan));
    if (i < 0) no_conv_algorithm("conv2d_backward_filter", xs, ws);
    if (adopt_math_type(plan)) conv.set_math(perf[i].mathType);
    a.algo = perf[i].algo;
    MEDIMG_CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(h, plan.x.get(), plan.y.get(), conv.get(), plan.w.get(),
                                                                      perf[i].algo, &a.workspace));
    a.chosen = true;
    return a;
}

}  // namespace medimg::cuda::detail

namespace medimg::cuda::detail {

/// The arithmetic of one convolution call: the half format of an operand that holds half storage
/// (mixed-precision activations; ops/storage.hpp has checked there is one at most), else
/// settings().precision for float tensors, else fp32.
template <class T>
Precision conv_precision(std::initializer_list<const Tensor<T, Cuda>*> tensors) {
    if constexpr (std::is_same_v<T, float>) {
        for (const auto* t : tensors)
            if (t->defined() && t->half_storage()) return t->storage();
        return settings().precision;
    } else {
        return Precision::fp32;
    }
}

/// The operands of one cuDNN call: the tensors' own memory, or - under mixed precision - each
/// input as it is when it already holds the plan's half storage, else a half copy, and the output
/// written in place when it holds half storage, else into a half block cast back by finish().
struct ConvOperands {
    const void* a = nullptr;
    const void* b = nullptr;
    void* out = nullptr;
    DeviceBuffer ha, hb, hout;
    float* out_float = nullptr;  // where finish() casts the half output (mixed precision only)
    std::int64_t out_n = 0;
    Precision precision = Precision::fp32;

    template <class T>
    ConvOperands(const ConvPlan& plan, const Tensor<T, Cuda>& in_a, const Tensor<T, Cuda>& in_b, Tensor<T, Cuda>& result)
        : precision(plan.precision) {
        if constexpr (std::is_same_v<T, float>) {
            if (precision != Precision::fp32) {
                a = half_operand(in_a, ha);
                b = half_operand(in_b, hb);
                if (result.storage() == precision) {
                    out = result.raw();
                } else {
                    hout = half_buffer(result.numel());
                    out = hout.get();
                    out_float = result.data(), out_n = result.numel();
                }
                return;
            }
        }
        a = in_a.data(), b = in_b.data(), out = result.data();
    }
    /// t's storage when it is already in the plan's half format, else a half copy kept in `copy`.
    const void* half_operand(const Tensor<float, Cuda>& t, DeviceBuffer& copy) const {
        if (t.storage() == precision) return t.raw();
        copy = to_half(t.data(), t.numel(), precision);
        return copy.get();
    }
    void finish() {
        if (out_float) cast_to_float(hout.get(), out_float, out_n, precision);
    }
};

}  // namespace medimg::cuda::detail

namespace medimg::ops {

template <>
struct Conv2dImpl<Cuda> {
    // x: (N, C_in, H, W), w: (C_out, C_in, kH, kW), b: (C_out)? -> y: (N, C_out, Ho, Wo)
    template <class T>
    static void forward(const Tensor<T, Cuda>& x, const Tensor<T, Cuda>& w, const Tensor<T, Cuda>& b, Tensor<T, Cuda>& y,
                        const Conv2dParams& p) {
        if (y.numel() == 0) return;
        namespace cd = cuda::detail;
        std::lock_guard<std::mutex> lock(cd::conv_mutex());  // plans are shared; cuDNN calls are cheap to queue
        auto& plan = cd::conv_plan<T>(x.shape(), w.shape(), y.shape(), p, cd::conv_precision<T>({&x, &w, &y}));
        cd::ConvOperands o(plan, x, w, y);  // (x, w) -> y
        const auto& a = cd::choose_forward<T>(plan, x.shape(), w.shape(), o.a, o.b, o.out);
        cuda::DeviceBuffer ws(a.workspace);
        const cuda::CudnnScalar<T> one = 1, zero = 0;
        MEDIMG_CUDNN_CHECK(cudnnConvolutionForward(cuda::cudnn_handle(), &one, plan.x.get(), o.a, plan.w.get(), o.b,
                                                   plan.conv[cd::kConvForward].get(),
                                                   static_cast<cudnnConvolutionFwdAlgo_t>(a.algo), ws.get(), a.workspace, &zero,
                                                   plan.y.get(), o.out));
        o.finish();
        if (b.defined())
            cd::with_storage<T>(y.storage(), [&](auto* tag) {
                using S = std::remove_pointer_t<decltype(tag)>;
                cd::add_channel_bias(cd::stored<S>(y), b.data(), y.size(0), y.size(1), y.size(2) * y.size(3));
            });
    }

    // dy: (N, C_out, Ho, Wo), w: (C_out, C_in, kH, kW) -> dx: (N, C_in, H, W), overwritten
    template <class T>
    static void backward_data(const Tensor<T, Cuda>& dy, const Tensor<T, Cuda>& w, Tensor<T, Cuda>& dx,
                              const Conv2dParams& p) {
        if (dx.numel() == 0) return;
        namespace cd = cuda::detail;
        std::lock_guard<std::mutex> lock(cd::conv_mutex());
        auto& plan = cd::conv_plan<T>(dx.shape(), w.shape(), dy.shape(), p, cd::conv_precision<T>({&dy, &w, &dx}));
        cd::ConvOperands o(plan, dy, w, dx);  // (dy, w) -> dx
        const auto& a = cd::choose_backward_data<T>(plan, dx.shape(), w.shape(), o.a, o.b, o.out);
        cuda::DeviceBuffer ws(a.workspace);
        const cuda::CudnnScalar<T> one = 1, zero = 0;
        MEDIMG_CUDNN_CHECK(cudnnConvolutionBackwardData(cuda::cudnn_handle(), &one, plan.w.get(), o.b, plan.y.get(), o.a,
                                                        plan.conv[cd::kConvBackwardData].get(),
                                                        static_cast<cudnnConvolutionBwdDataAlgo_t>(a.algo), ws.get(), a.workspace,
                                                        &zero, plan.x.get(), o.out));
        o.finish();
    }

    // x: (N, C_in, H, W), dy: (N, C_out, Ho, Wo) -> dw: (C_out, C_in, kH, kW), overwritten
    template <class T>
    static void backward_filter(const Tensor<T, Cuda>& x, const Tensor<T, Cuda>& dy, Tensor<T, Cuda>& dw,
                                const Conv2dParams& p) {
        if (x.numel() == 0 || dy.numel() == 0) {
            dw.zero_();
            return;
        }
        namespace cd = cuda::detail;
        std::lock_guard<std::mutex> lock(cd::conv_mutex());
        auto& plan = cd::conv_plan<T>(x.shape(), dw.shape(), dy.shape(), p, cd::conv_precision<T>({&x, &dy, &dw}));
        cd::ConvOperands o(plan, x, dy, dw);  // (x, dy) -> dw
        const auto& a = cd::choose_backward_filter<T>(plan, x.shape(), dw.shape(), o.a, o.b, o.out);
        cuda::DeviceBuffer ws(a.workspace);
        const cuda::CudnnScalar<T> one = 1, zero = 0;
        MEDIMG_CUDNN_CHECK(cudnnConvolutionBackwardFilter(cuda::cudnn_handle(), &one, plan.x.get(), o.a, plan.y.get(), o.b,
                                                          plan.conv[cd::kConvBackwardFilter].get(),
                                                          static_cast<cudnnConvolutionBwdFilterAlgo_t>(a.algo), ws.get(),
                                                          a.workspace, &zero, plan.w.get(), o.out));
        o.finish();
    }

    // dy: (N, C_out, Ho, Wo) -> db: (C_out), overwritten (sums in double, like the CPU)
    template <class T>
    static void backward_bias(const Tensor<T, Cuda>& dy, Tensor<T, Cuda>& db) {
        namespace cd = cuda::detail;
        cd::with_storage<T>(dy.storage(), [&](auto* tag) {
            using S = std::remove_pointer_t<decltype(tag)>;
            cd::channel_sum(cd::stored<S>(dy), dy.size(0), dy.size(1), dy.size(2) * dy.size(3), db.data());
        });
    }

    /// The storage of a float convolution's output under autocast (ops::conv2d_output_storage):
    /// bf16 / fp16 while mixed precision and half_activations are on, else fp32.
    static Precision autocast_storage() {
        const cuda::Settings& s = cuda::settings();
        return s.half_activations ? s.precision : Precision::fp32;
    }
};

}  // namespace medimg::ops
