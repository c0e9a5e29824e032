// SPDX-License-Identifier: MIT
// engine.hpp: backward(). An iterative depth-first topological sort from the root, then each
// node's closure in reverse order, then the graph is freed.
//
// The accumulation rule (written once, here): every backward closure ADDS its contribution into
// each parent's gradient through Node::accumulate (+=), never overwrites it. A gradient that
// arrives first is adopted (no copy) when the producer made it for that parent alone, else
// copied; later arrivals are added. Leaf gradients therefore accumulate across backward() calls
// until zero_grad(), as in PyTorch. Non-leaf gradients are released once used.
#pragma once

#include <string_view>
#include <unordered_set>
#include <vector>

#include "medimg/autograd/variable.hpp"
#include "medimg/ops/elementwise.hpp"

namespace medimg::autograd {

template <class T, class B>
void Node<T, B>::accumulate(const Tensor<T, B>& g, bool owned) {
    if (!requires_grad) return;
    MEDIMG_CHECK(g.shape() == shape, ShapeError, "autograd::accumulate: gradient ", g.shape(), " does not match value ",
                 shape, " of op '", op, "'");
    if (g.storage() != storage) {  // a gradient is stored as its value is
        accumulate(g.to_storage(storage), true);
        return;
    }
    if (!grad.defined()) {
        grad = owned ? g : g.clone();
    } else if (storage != Precision::fp32 && !ops::reads_half_storage<B>) {
        // a half gradient on a backend that adds in float32 only: widen, add, round once
        auto wide = grad.to_storage(Precision::fp32);
        ops::add_(wide, g.to_storage(Precision::fp32));
        grad = wide.to_storage(storage);
    } else {
        ops::add_(grad, g);
    }
}

template <class T, class B>
void Var<T, B>::backward(const Tensor<T, B>& seed) const {
    MEDIMG_CHECK(node_ && node_->requires_grad, ValueError,
                 "Var::backward: this value does not require grad (no parameter reaches it, or it was computed under NoGrad)");
    MEDIMG_CHECK(node_->backward || node_->op == std::string_view("leaf"), ValueError, "Var::backward: the graph of op '",
                 node_->op, "' was already freed by an earlier backward(); run the forward pass again");
    Tensor<T, B> g = seed;
    if (!g.defined()) {
        MEDIMG_CHECK(node_->shape.numel() == 1, ShapeError, "Var::backward: implicit seed needs a one-element value, got ",
                     node_->shape, "; pass a seed of that shape");
        g = Tensor<T, B>::ones(node_->shape);
        if (node_->storage != Precision::fp32) g = g.to_storage(node_->storage);
    }
    // Topological order by iterative DFS (no recursion: ResNet50 graphs are deep).
    // `order` owns its nodes: freeing a node's parent list below must not destroy nodes still to run.
    std::vector<std::shared_ptr<NodeT>> order;
    std::unordered_set<NodeT*> seen;
    std::vector<std::pair<std::shared_ptr<NodeT>, std::size_t>> stack{{node_, 0}};
    seen.insert(node_.get());
    while (!stack.empty()) {
        auto& [n, next] = stack.back();
        if (next < n->parents.size()) {
            std::shared_ptr<NodeT> p = n->parents[next++];
            if (p && p->requires_grad && !seen.count(p.get())) {
                seen.insert(p.get());
                stack.push_back({std::move(p), 0});
            }
        } else {
            order.push_back(n);
            stack.pop_back();
        }
    }
    node_->accumulate(g, false);
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
        NodeT* n = it->get();
        // Every node that feeds n comes after it in this order, so n's gradient is complete here.
        if (n->grad.defined())
            for (const auto& hook : n->hooks) hook(n->grad);
        if (!n->backward) continue;  // a leaf
        if (n->grad.defined()) n->backward(n->grad);
        // Free this part of the graph: saved tensors live in the closure.
        n->backward = nullptr;
        n->hooks.clear();
        n->parents.clear();
        n->grad = Tensor<T, B>();
    }
}

}  // namespace medimg::autograd
