// SPDX-License-Identifier: MIT
// variable.hpp: the autograd core. A Var<T, B> is a handle to a value and a Node: the value's
// shape, a gradient, the parent nodes it was computed from, and a backward closure that pushes
// this node's gradient into its parents (micrograd's design, on tensors). Graphs are built
// define-by-run and freed by backward() (engine.hpp). Also: the no-grad switch and its RAII guard.
// The graph does not own values: a value lives while a Var handle holds it or a backward
// closure saved it (as PyTorch's SavedVariable), so an intermediate result no backward needs -
// a batch norm's output before its ReLU, the sum before a residual block's ReLU - is freed as
// soon as the forward pass drops its Var, not kept until backward().
// A gradient is stored as its value is (float32, or bf16 / fp16 for mixed-precision activations on
// the GPU: Tensor::storage()), as a PyTorch gradient has its tensor's dtype.
// Gradient hooks (Var::register_hook, torch's Tensor.register_hook) observe a value's gradient
// once backward() has completed it; they cannot replace it.
// Deliberately not here: higher-order gradients, in-place ops on values that are saved for
// backward.
#pragma once

#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "medimg/core/tensor.hpp"

namespace medimg::autograd {

namespace detail {
inline bool& grad_mode() {
    thread_local bool enabled = true;
    return enabled;
}
}  // namespace detail

/// True unless a NoGrad guard (and no EnableGrad inside it) is alive on this thread.
inline bool is_grad_enabled() { return detail::grad_mode(); }

/// Sets this thread's grad mode while alive and restores the previous one (torch.set_grad_enabled).
class GradMode {
public:
    explicit GradMode(bool enabled) : prev_(detail::grad_mode()) { detail::grad_mode() = enabled; }
    ~GradMode() { detail::grad_mode() = prev_; }
    GradMode(const GradMode&) = delete;
    GradMode& operator=(const GradMode&) = delete;

private:
    bool prev_;
};

/// While alive, ops on this thread record no graph (inference, optimizer updates, evaluation).
struct NoGrad : GradMode {
    NoGrad() : GradMode(false) {}
};

/// While alive, ops on this thread record a graph even inside a NoGrad scope (torch.enable_grad):
/// explanation methods need one gradient in programs that otherwise run under NoGrad.
struct EnableGrad : GradMode {
    EnableGrad() : GradMode(true) {}
};

template <class T, class B>
struct Node {
    using BackwardFn = std::function<void(const Tensor<T, B>& grad)>;
    Shape shape;        // the value's (gradients must match it); the value itself is the Var's
    Precision storage = Precision::fp32;  // the value's storage; its gradient is stored the same way
    Tensor<T, B> grad;  // undefined until a gradient flows in
    bool requires_grad = false;
    std::vector<std::shared_ptr<Node>> parents;  // for the topological sort; cleared after backward
    BackwardFn backward;                         // empty for leaves; cleared after backward
    std::vector<std::function<void(const Tensor<T, B>& grad)>> hooks;  // Var::register_hook; engine.hpp
    const char* op = "leaf";

    /// Adds g into this node's gradient (the one accumulation rule, see engine.hpp).
    /// `owned` says g was made for this node alone and may be adopted without a copy.
    void accumulate(const Tensor<T, B>& g, bool owned);
};

template <class T, class B = Cpu>
class Var {
public:
    using NodeT = Node<T, B>;

    Var() = default;
    /// A leaf holding `value`; it collects a gradient when requires_grad is true.
    explicit Var(Tensor<T, B> value, bool requires_grad = false)
        : node_(std::make_shared<NodeT>()), value_(std::make_shared<Tensor<T, B>>(std::move(value))) {
        node_->shape = value_->shape();
        node_->storage = value_->storage();
        node_->requires_grad = requires_grad;
    }
    /// A trainable leaf (requires_grad = true).
    static Var parameter(Tensor<T, B> value) { return Var(std::move(value), true); }
    /// The result of an op: records parents and the backward closure only when a gradient is
    /// needed (grad mode on and some parent requires it); otherwise the closure is dropped so that
    /// saved tensors are freed at once.
    static Var from_op(const char* op, Tensor<T, B> value, std::vector<std::shared_ptr<NodeT>> parents,
                       typename NodeT::BackwardFn backward) {
        Var out(std::move(value), false);
        bool needs = false;
        if (is_grad_enabled())
            for (const auto& p : parents) needs = needs || (p && p->requires_grad);
        if (needs) {
            out.node_->requires_grad = true;
            out.node_->parents = std::move(parents);
            out.node_->backward = std::move(backward);
            out.node_->op = op;
        }
        return out;
    }

    bool defined() const { return node_ != nullptr; }
    const Tensor<T, B>& value() const { return *value_; }
    /// Mutable access to the value (optimizers update parameters in place under NoGrad; every
    /// copy of this Var sees the same tensor).
    Tensor<T, B>& value() { return *value_; }
    const Tensor<T, B>& grad() const { return node_->grad; }
    Tensor<T, B>& grad() { return node_->grad; }
    const Shape& shape() const { return value_->shape(); }
    std::int64_t size(int i) const { return value_->size(i); }
    bool requires_grad() const { return node_ && node_->requires_grad; }
    void set_requires_grad(bool r) { node_->requires_grad = r; }
    bool is_leaf() const { return !node_->backward; }
    /// Forgets the gradient (PyTorch's zero_grad(set_to_none=True)).
    void zero_grad() { node_->grad = Tensor<T, B>(); }
    /// A new leaf sharing this value, cut from the graph.
    Var detach() const { return Var(*value_, false); }
    /// Calls `hook(grad)` during backward() once this value's gradient is complete (all of its
    /// uses have added into it), before it flows on to the parents (torch's Tensor.register_hook,
    /// observe-only: the hook sees the gradient and cannot change it). Hooks run in registration
    /// order; a non-leaf's hooks are dropped with its graph after backward(), a leaf's stay.
    /// Requires: this value requires grad (otherwise no gradient would ever reach it).
    void register_hook(std::function<void(const Tensor<T, B>& grad)> hook) {
        MEDIMG_CHECK(requires_grad(), ValueError,
                     "Var::register_hook: this value does not require grad, so no gradient will reach it (computed under "
                     "NoGrad, or from inputs and parameters that all have requires_grad false)");
        node_->hooks.push_back(std::move(hook));
    }
    /// Backpropagates from this scalar (seed 1), or with an explicit seed of the value's shape.
    void backward(const Tensor<T, B>& seed = Tensor<T, B>()) const;

    const std::shared_ptr<NodeT>& node() const { return node_; }

private:
    std::shared_ptr<NodeT> node_;
    std::shared_ptr<Tensor<T, B>> value_;  // shared by the copies of this Var, not by the graph
};

}  // namespace medimg::autograd

#include "medimg/autograd/engine.hpp"
