// SPDX-License-Identifier: MIT
// cuda/descriptors.hpp: RAII owners of cuDNN descriptors (dlib's tensor_descriptor) and the
// element-type mapping. NCHW only; sizes must fit cuDNN's int.
// Deliberately not here: NHWC and strided layouts, the cuDNN graph (v9 frontend) API.
#pragma once

#include "medimg/config.hpp"
#if !MEDIMG_HAS_CUDA
#error "medimg/cuda/descriptors.hpp: include only from a TU compiled by nvcc"
#endif

#include <climits>
#include <cstdint>
#include <type_traits>
#include <utility>

#include <cudnn.h>

#include "medimg/core/shape.hpp"
#include "medimg/cuda/check.hpp"
#include "medimg/error.hpp"

namespace medimg::cuda {

template <class T>
constexpr cudnnDataType_t cudnn_data_type() {
    static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>,
                  "medimg: the cuDNN kernels take float or double tensors");
    return std::is_same_v<T, float> ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
}

/// The alpha/beta scalars cuDNN reads: double for double tensors, float otherwise.
template <class T>
using CudnnScalar = std::conditional_t<std::is_same_v<T, double>, double, float>;

namespace detail {
inline int to_int(const char* fn, std::int64_t v) {
    MEDIMG_CHECK(v >= 0 && v <= INT_MAX, ShapeError, fn, ": dimension ", v, " does not fit cuDNN's int");
    return static_cast<int>(v);
}
}  // namespace detail

/// A 4-d NCHW tensor descriptor; (N, C) shapes are described as (N, C, 1, 1).
class TensorDescriptor {
public:
    TensorDescriptor() { MEDIMG_CUDNN_CHECK(cudnnCreateTensorDescriptor(&d_)); }
    template <class T>
    static TensorDescriptor nchw(const Shape& s) {
        TensorDescriptor t;
        t.set<T>(s);
        return t;
    }
    template <class T>
    void set(const Shape& s) {
        set(s, cudnn_data_type<T>());
    }
    /// With an explicit element type (CUDNN_DATA_BFLOAT16 / CUDNN_DATA_HALF for mixed precision).
    void set(const Shape& s, cudnnDataType_t type) {
        const char* fn = "cudnnSetTensor4dDescriptor";
        const int n = detail::to_int(fn, s[0]), c = detail::to_int(fn, s[1]);
        const int h = s.rank() == 4 ? detail::to_int(fn, s[2]) : 1, w = s.rank() == 4 ? detail::to_int(fn, s[3]) : 1;
        MEDIMG_CUDNN_CHECK(cudnnSetTensor4dDescriptor(d_, CUDNN_TENSOR_NCHW, type, n, c, h, w));
    }
    ~TensorDescriptor() {
        if (d_) (void)cudnnDestroyTensorDescriptor(d_);
    }
    TensorDescriptor(TensorDescriptor&& o) noexcept : d_(o.d_) { o.d_ = nullptr; }
    TensorDescriptor& operator=(TensorDescriptor&& o) noexcept {
        std::swap(d_, o.d_);
        return *this;
    }
    TensorDescriptor(const TensorDescriptor&) = delete;
    TensorDescriptor& operator=(const TensorDescriptor&) = delete;
    cudnnTensorDescriptor_t get() const { return d_; }

private:
    cudnnTensorDescriptor_t d_ = nullptr;
};

/// A (C_out, C_in, kH, kW) filter descriptor.
class FilterDescriptor {
public:
    FilterDescriptor() { MEDIMG_CUDNN_CHECK(cudnnCreateFilterDescriptor(&d_)); }
    template <class T>
    void set(const Shape& w) {
        set(w, cudnn_data_type<T>());
    }
    void set(const Shape& w, cudnnDataType_t type) {
        const char* fn = "cudnnSetFilter4dDescriptor";
        MEDIMG_CUDNN_CHECK(cudnnSetFilter4dDescriptor(d_, type, CUDNN_TENSOR_NCHW, detail::to_int(fn, w[0]),
                                                      detail::to_int(fn, w[1]), detail::to_int(fn, w[2]),
                                                      detail::to_int(fn, w[3])));
    }
    ~FilterDescriptor() {
        if (d_) (void)cudnnDestroyFilterDescriptor(d_);
    }
    FilterDescriptor(const FilterDescriptor&) = delete;
    FilterDescriptor& operator=(const FilterDescriptor&) = delete;
    cudnnFilterDescriptor_t get() const { return d_; }

private:
    cudnnFilterDescriptor_t d_ = nullptr;
};

/// A 2-d cross-correlation (torch.nn.Conv2d's operation); one group unless set_group_count says more.
class ConvolutionDescriptor {
public:
    ConvolutionDescriptor() { MEDIMG_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&d_)); }
    template <class T>
    void set(std::int64_t pad_h, std::int64_t pad_w, std::int64_t stride_h, std::int64_t stride_w, std::int64_t dil_h,
             std::int64_t dil_w) {
        set(pad_h, pad_w, stride_h, stride_w, dil_h, dil_w, cudnn_data_type<T>());
    }
    /// `compute`: the accumulation type (CUDNN_DATA_FLOAT for bf16/fp16 data: cuDNN's
    /// PSEUDO_BFLOAT16 / PSEUDO_HALF configurations).
    void set(std::int64_t pad_h, std::int64_t pad_w, std::int64_t stride_h, std::int64_t stride_w, std::int64_t dil_h,
             std::int64_t dil_w, cudnnDataType_t compute) {
        const char* fn = "cudnnSetConvolution2dDescriptor";
        MEDIMG_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(
            d_, detail::to_int(fn, pad_h), detail::to_int(fn, pad_w), detail::to_int(fn, stride_h), detail::to_int(fn, stride_w),
            detail::to_int(fn, dil_h), detail::to_int(fn, dil_w), CUDNN_CROSS_CORRELATION, compute));
    }
    void set_math(cudnnMathType_t m) { MEDIMG_CUDNN_CHECK(cudnnSetConvolutionMathType(d_, m)); }
    /// Grouped convolution: the filter is then (C_out, C_in / groups, kH, kW).
    void set_group_count(std::int64_t groups) {
        MEDIMG_CUDNN_CHECK(cudnnSetConvolutionGroupCount(d_, detail::to_int("cudnnSetConvolutionGroupCount", groups)));
    }
    ~ConvolutionDescriptor() {
        if (d_) (void)cudnnDestroyConvolutionDescriptor(d_);
    }
    ConvolutionDescriptor(const ConvolutionDescriptor&) = delete;
    ConvolutionDescriptor& operator=(const ConvolutionDescriptor&) = delete;
    cudnnConvolutionDescriptor_t get() const { return d_; }

private:
    cudnnConvolutionDescriptor_t d_ = nullptr;
};

}  // namespace medimg::cuda
