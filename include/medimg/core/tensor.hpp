// SPDX-License-Identifier: MIT
// tensor.hpp: Tensor<T, B>, a contiguous row-major n-d array on backend B (NCHW for images).
// A Tensor is a handle: copies share storage (as torch.Tensor does); clone() copies the data.
// Views (reshape, slice along dim 0) share storage too. Deliberately not here: strides,
// broadcasting views, implicit device transfers, dtype promotion.
#pragma once

#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "medimg/core/memory.hpp"
#include "medimg/core/shape.hpp"
#include "medimg/error.hpp"

namespace medimg {

template <class T, class B = Cpu>
class Tensor {
    static_assert(std::is_arithmetic_v<T>, "medimg: Tensor<T, B> needs an arithmetic element type T");
    static_assert(backend_available<B>,
                  "medimg: Tensor<T, Cuda> requires a translation unit compiled by nvcc (MEDIMG_HAS_CUDA=1)");

public:
    using value_type = T;
    using backend = B;

    /// An undefined tensor (defined() is false, numel() is 0).
    Tensor() = default;

    /// Uninitialised storage of the given shape.
    static Tensor empty(const Shape& shape) {
        Tensor t;
        t.shape_ = shape;
        const auto bytes = static_cast<std::size_t>(shape.numel()) * sizeof(T);
        t.data_ = std::shared_ptr<T>(static_cast<T*>(Memory<B>::allocate(bytes)), [](T* p) { Memory<B>::deallocate(p); });
        t.defined_ = true;
        return t;
    }
    /// A tensor over storage the caller allocated on B (pinned host memory from a pool, say):
    /// `storage` must hold shape.numel() elements; its deleter runs when the last handle (views
    /// included) lets go, as torch.from_blob's deleter does.
    static Tensor from_storage(const Shape& shape, std::shared_ptr<T> storage) {
        MEDIMG_CHECK(storage != nullptr || shape.numel() == 0, ValueError, "Tensor::from_storage: no storage for shape ", shape);
        Tensor t;
        t.shape_ = shape;
        t.data_ = std::move(storage);
        t.defined_ = true;
        return t;
    }
    static Tensor full(const Shape& shape, T value) {
        Tensor t = empty(shape);
        t.fill_(value);
        return t;
    }
    static Tensor zeros(const Shape& shape) { return full(shape, T(0)); }
    static Tensor ones(const Shape& shape) { return full(shape, T(1)); }
    /// A scalar (rank-0) tensor.
    static Tensor scalar(T value) { return full(Shape{}, value); }
    /// Copies host values into a new tensor; values.size() must equal shape.numel().
    static Tensor from_vector(const Shape& shape, const std::vector<T>& values) {
        MEDIMG_CHECK(static_cast<std::int64_t>(values.size()) == shape.numel(), ShapeError,
                     "Tensor::from_vector: ", values.size(), " values for shape ", shape, " (", shape.numel(), " elements)");
        Tensor t = empty(shape);
        Transfer<Cpu, B>::copy(t.data(), values.data(), values.size() * sizeof(T));
        return t;
    }

    bool defined() const { return defined_; }
    const Shape& shape() const { return shape_; }
    int rank() const { return shape_.rank(); }
    /// Dimension i; negative i counts from the end.
    std::int64_t size(int i) const { return shape_.dim(i); }
    std::int64_t numel() const { return shape_.numel(); }
    std::size_t bytes() const { return static_cast<std::size_t>(numel()) * sizeof(T); }

    T* data() { return data_.get(); }
    const T* data() const { return data_.get(); }

    /// Element i of the flattened tensor (host backends only).
    T& operator[](std::int64_t i) {
        static_assert(std::is_same_v<B, Cpu>, "medimg: element access needs Tensor<T, Cpu>; call .to<Cpu>() first");
        return data_.get()[i];
    }
    const T& operator[](std::int64_t i) const {
        static_assert(std::is_same_v<B, Cpu>, "medimg: element access needs Tensor<T, Cpu>; call .to<Cpu>() first");
        return data_.get()[i];
    }
    /// The value of a one-element tensor, copied to the host.
    T item() const {
        MEDIMG_CHECK(numel() == 1, ShapeError, "Tensor::item: needs exactly one element, got shape ", shape_);
        T v{};
        Transfer<B, Cpu>::copy(&v, data(), sizeof(T));
        return v;
    }
    std::vector<T> to_vector() const {
        std::vector<T> v(static_cast<std::size_t>(numel()));
        Transfer<B, Cpu>::copy(v.data(), data(), bytes());
        return v;
    }

    Tensor& fill_(T value) {
        Memory<B>::fill(data(), static_cast<std::size_t>(numel()), value);
        return *this;
    }
    Tensor& zero_() { return fill_(T(0)); }
    /// Copies src's values into this tensor; shapes must hold the same number of elements.
    Tensor& copy_(const Tensor& src) {
        MEDIMG_CHECK(src.numel() == numel(), ShapeError, "Tensor::copy_: source ", src.shape(), " does not fit destination ",
                     shape_);
        Memory<B>::copy(data(), src.data(), bytes());
        return *this;
    }

    /// A view with another shape over the same storage (same number of elements).
    Tensor reshape(const Shape& shape) const {
        MEDIMG_CHECK(shape.numel() == numel(), ShapeError, "Tensor::reshape: cannot view ", shape_, " (", numel(),
                     " elements) as ", shape, " (", shape.numel(), " elements)");
        Tensor t = *this;
        t.shape_ = shape;
        return t;
    }
    /// A view of rows [start, start + length) along dimension 0, sharing storage.
    Tensor slice0(std::int64_t start, std::int64_t length) const {
        MEDIMG_CHECK(rank() >= 1 && start >= 0 && length >= 0 && start + length <= size(0), ShapeError,
                     "Tensor::slice0: rows [", start, ", ", start + length, ") out of range for ", shape_);
        Tensor t = *this;
        t.shape_[0] = length;
        const std::int64_t row = size(0) ? numel() / size(0) : 0;
        t.data_ = std::shared_ptr<T>(data_, data_.get() + start * row);
        return t;
    }
    /// A deep copy.
    Tensor clone() const {
        Tensor t = empty(shape_);
        Memory<B>::copy(t.data(), data(), bytes());
        return t;
    }
    /// An explicit copy to another backend (the only way data changes device).
    template <class B2>
    Tensor<T, B2> to() const {
        Tensor<T, B2> t = Tensor<T, B2>::empty(shape_);
        Transfer<B, B2>::copy(t.data(), data(), bytes());
        return t;
    }
    /// A host-side element-type conversion (e.g. double fixtures -> float model).
    template <class U>
    Tensor<U, B> cast() const {
        static_assert(std::is_same_v<B, Cpu>, "medimg: Tensor::cast is host-only; call .to<Cpu>() first");
        auto t = Tensor<U, B>::empty(shape_);
        for (std::int64_t i = 0; i < numel(); ++i) t.data()[i] = static_cast<U>(data()[i]);
        return t;
    }
    /// True when both handles point at the same first element.
    bool shares_storage_with(const Tensor& other) const { return data_ == other.data_; }

private:
    std::shared_ptr<T> data_;
    Shape shape_;
    bool defined_ = false;
};

}  // namespace medimg
