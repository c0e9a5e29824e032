// SPDX-License-Identifier: MIT
// tensor.hpp: Tensor<T, B>, a contiguous row-major n-d array on backend B (NCHW for images).
// A Tensor is a handle: copies share storage (as torch.Tensor does); clone() copies the data.
// Views (reshape, slice along dim 0) share storage too.
// Half-precision storage (mixed precision on the GPU, docs/gpu.md): a Tensor<float, B> may hold its
// values as bfloat16 or IEEE half (storage() = Precision::bf16 / fp16, 2 bytes per element), as
// autocast keeps activations in PyTorch. Such a tensor is still a float tensor to the type system;
// data() refuses it (one line naming the shape and storage), so no op can read 2-byte elements as
// floats by mistake: the ops that take half storage read raw(), the rest need .to_storage(fp32).
// Version counter (torch's Tensor._version): a tensor whose version is tracked (parameters and
// buffers: Module registers them) counts its in-place writes through this class (fill_, zero_,
// copy_) and those others announce with bump_version() (the optimizers' updates, BatchNorm's running
// statistics); views and copies of the handle share the count. Caches of values computed from a
// tensor (the inference path's folded convolutions) compare versions to know they are stale.
// Writes through data() are not seen, as in PyTorch: code that writes a parameter that way calls
// bump_version().
// Deliberately not here: strides, broadcasting views, implicit device transfers, dtype promotion,
// half storage for element types other than float.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "medimg/core/memory.hpp"
#include "medimg/core/precision.hpp"
#include "medimg/core/shape.hpp"
#include "medimg/error.hpp"

namespace medimg {

template <class T, class B = Cpu>
class Tensor {
    static_assert(std::is_arithmetic_v<T>, "medimg: Tensor<T, B> needs an arithmetic element type T");
    static_assert(backend_available<B>,
                  "medimg: Tensor<T, Cuda> requires a translation unit compiled by nvcc (MEDIMG_HAS_CUDA=1)");

    static constexpr bool kFloat = std::is_same_v<T, float>;  // the one element type with half storage

public:
    using value_type = T;
    using backend = B;

    /// An undefined tensor (defined() is false, numel() is 0).
    Tensor() = default;

    /// Uninitialised storage of the given shape; `storage` bf16 / fp16 (float tensors only) keeps
    /// 2-byte values (see the top of this file).
    static Tensor empty(const Shape& shape, Precision storage = Precision::fp32) {
        MEDIMG_CHECK(storage == Precision::fp32 || kFloat, ValueError, "Tensor::empty: ",
                     precision_name(storage), " storage is for float tensors only (shape ", shape, ")");
        Tensor t;
        t.shape_ = shape;
        t.storage_ = storage;
        const auto bytes = static_cast<std::size_t>(shape.numel()) * t.element_bytes();
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
    /// How the values are stored: fp32 = as T itself; bf16 / fp16 = 2-byte halves of a float tensor.
    Precision storage() const { return storage_; }
    bool half_storage() const { return storage_ != Precision::fp32; }
    std::size_t element_bytes() const { return storage_ == Precision::fp32 ? sizeof(T) : 2; }
    std::size_t bytes() const { return static_cast<std::size_t>(numel()) * element_bytes(); }

    /// The elements as T; refuses a tensor with half storage (read raw() or call to_storage(fp32)).
    T* data() {
        if (storage_ != Precision::fp32) [[unlikely]] refuse_half("data");
        return data_.get();
    }
    const T* data() const {
        if (storage_ != Precision::fp32) [[unlikely]] refuse_half("data");
        return data_.get();
    }
    /// Starts counting this tensor's in-place writes (see the top of this file); a no-op when it
    /// already does. Handles copied before this call do not share the count.
    void track_version() {
        if (!version_) version_ = std::make_shared<std::atomic<std::uint64_t>>(0);
    }
    bool version_tracked() const { return version_ != nullptr; }
    /// The number of in-place writes seen so far (0 when not tracked).
    std::uint64_t version() const { return version_ ? version_->load(std::memory_order_relaxed) : 0; }
    /// Records an in-place write made outside this class (through data() or an op's kernel).
    void bump_version() {
        if (version_) version_->fetch_add(1, std::memory_order_relaxed);
    }
    /// The storage whatever its element format (the kernels that read half storage use this).
    void* raw() { return data_.get(); }
    const void* raw() const { return data_.get(); }

    /// Element i of the flattened tensor (host backends only).
    T& operator[](std::int64_t i) {
        static_assert(std::is_same_v<B, Cpu>, "medimg: element access needs Tensor<T, Cpu>; call .to<Cpu>() first");
        return data()[i];
    }
    const T& operator[](std::int64_t i) const {
        static_assert(std::is_same_v<B, Cpu>, "medimg: element access needs Tensor<T, Cpu>; call .to<Cpu>() first");
        return data()[i];
    }
    /// The value of a one-element tensor, copied to the host (half storage widened exactly).
    T item() const {
        MEDIMG_CHECK(numel() == 1, ShapeError, "Tensor::item: needs exactly one element, got shape ", shape_);
        return to_vector()[0];
    }
    /// The values, copied to the host (half storage widened exactly to float).
    std::vector<T> to_vector() const {
        std::vector<T> v(static_cast<std::size_t>(numel()));
        if (storage_ == Precision::fp32) {
            Transfer<B, Cpu>::copy(v.data(), data_.get(), bytes());
        } else {
            std::vector<std::uint16_t> h(v.size());
            Transfer<B, Cpu>::copy(h.data(), data_.get(), bytes());
            for (std::size_t i = 0; i < h.size(); ++i)
                v[i] = static_cast<T>(storage_ == Precision::bf16 ? bf16_bits_to_float(h[i]) : half_bits_to_float(h[i]));
        }
        return v;
    }

    /// Every element = value (rounded to nearest even into half storage).
    Tensor& fill_(T value) {
        if (storage_ != Precision::fp32) {
            const float f = static_cast<float>(value);
            const std::uint16_t h = storage_ == Precision::bf16 ? float_to_bf16_bits(f) : float_to_half_bits(f);
            Memory<B>::fill(static_cast<std::uint16_t*>(raw()), static_cast<std::size_t>(numel()), h);
            bump_version();
            return *this;
        }
        Memory<B>::fill(data(), static_cast<std::size_t>(numel()), value);
        bump_version();
        return *this;
    }
    Tensor& zero_() { return fill_(T(0)); }
    /// Copies src's values into this tensor; shapes must hold the same number of elements.
    Tensor& copy_(const Tensor& src) {
        MEDIMG_CHECK(src.numel() == numel(), ShapeError, "Tensor::copy_: source ", src.shape(), " does not fit destination ",
                     shape_);
        MEDIMG_CHECK(src.storage() == storage_, ValueError, "Tensor::copy_: source ", src.shape(), " holds ",
                     precision_name(src.storage()), " storage, destination ", precision_name(storage_),
                     "; convert with to_storage() first");
        Memory<B>::copy(raw(), src.raw(), bytes());
        bump_version();
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
        const auto offset = static_cast<std::size_t>(start * row) * element_bytes();
        t.data_ = std::shared_ptr<T>(data_, reinterpret_cast<T*>(reinterpret_cast<unsigned char*>(data_.get()) + offset));
        return t;
    }
    /// A deep copy (same storage).
    Tensor clone() const {
        Tensor t = empty(shape_, storage_);
        Memory<B>::copy(t.raw(), raw(), bytes());
        return t;
    }
    /// An explicit copy to another backend (the only way data changes device); keeps the storage.
    template <class B2>
    Tensor<T, B2> to() const {
        Tensor<T, B2> t = Tensor<T, B2>::empty(shape_, storage_);
        Transfer<B, B2>::copy(t.raw(), raw(), bytes());
        return t;
    }
    /// A copy stored as `storage` (float tensors): fp32 -> bf16 / fp16 rounds to nearest even
    /// (core/precision.hpp's roundings, the GPU's __float2bfloat16_rn / __float2half_rn), half ->
    /// fp32 is exact, bf16 <-> fp16 goes through float. The same storage gives a clone.
    Tensor to_storage(Precision storage) const {
        MEDIMG_CHECK(storage == Precision::fp32 || kFloat, ValueError, "Tensor::to_storage: ",
                     precision_name(storage), " storage is for float tensors only (shape ", shape_, ")");
        if (storage == storage_) return clone();
        Tensor t = empty(shape_, storage);
        Memory<B>::convert_storage(raw(), storage_, t.raw(), storage, static_cast<std::size_t>(numel()));
        return t;
    }
    /// A host-side element-type conversion (e.g. double fixtures -> float model).
    template <class U>
    Tensor<U, B> cast() const {
        static_assert(std::is_same_v<B, Cpu>, "medimg: Tensor::cast is host-only; call .to<Cpu>() first");
        auto t = Tensor<U, B>::empty(shape_);
        const T* in = data();
        U* out = t.data();
        for (std::int64_t i = 0; i < numel(); ++i) out[i] = static_cast<U>(in[i]);
        return t;
    }
    /// True when both handles point at the same first element.
    bool shares_storage_with(const Tensor& other) const { return data_ == other.data_; }

private:
    [[noreturn]] void refuse_half(const char* fn) const {
        throw ValueError(detail::concat("Tensor::", fn, ": this ", shape_, " tensor holds ", precision_name(storage_),
                                        " storage (mixed-precision activations); the op reading it takes float32 values: "
                                        "convert with .to_storage(Precision::fp32)"));
    }

    std::shared_ptr<T> data_;
    std::shared_ptr<std::atomic<std::uint64_t>> version_;  // null until track_version()
    Shape shape_;
    Precision storage_ = Precision::fp32;
    bool defined_ = false;
};

}  // namespace medimg
