// SPDX-License-Identifier: MIT
// nn/module.hpp: Module, the base of every layer and network: named parameters (trainable Vars),
// named buffers (BN running statistics and counters), named children, train/eval mode, and
// state_dict()/load_state_dict() with PyTorch's dotted names ("layer1.0.bn1.running_mean").
// Order matches torch.nn.Module: own parameters, then own buffers, then children in registration
// order. Modules are held by shared_ptr; copying a Module is not supported (clone by state_dict).
// Calling a module (operator()) runs forward() and then its forward hooks, as torch's __call__;
// a parent calls its children the same way, so a hook on any named submodule ("layer4",
// "layer4.1.conv2") sees that submodule's output (named_modules, get_submodule). A hook on the
// gradient of that output goes on the Var (Var::register_hook, autograd/variable.hpp), or on the
// module (register_backward_hook: every output of the module, for as long as the handle lives).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "medimg/autograd/variable.hpp"
#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"

namespace medimg::nn {

template <class T, class B>
using NamedParams = std::vector<std::pair<std::string, autograd::Var<T, B>>>;

/// One state_dict entry. `integer` marks counters (num_batches_tracked) that PyTorch keeps as
/// int64; their value is held in T here and written as I64 by the checkpoint code.
template <class T, class B>
struct StateEntry {
    std::string name;
    Tensor<T, B> value;
    bool integer = false;
};
template <class T, class B>
using StateDict = std::vector<StateEntry<T, B>>;

/// Removes a hook when destroyed or on remove() (RAII; torch's RemovableHandle, whose hook stays
/// until remove() is called: here dropping the handle is the removal, hence [[nodiscard]] on the
/// registering calls). Outliving the module is safe: removal then does nothing.
class HookHandle {
public:
    HookHandle() = default;
    /// `remove` must itself do nothing once its owner is gone (it holds a weak reference).
    explicit HookHandle(std::function<void()> remove) : remove_(std::move(remove)) {}
    HookHandle(HookHandle&& o) noexcept : remove_(std::move(o.remove_)) { o.remove_ = nullptr; }
    HookHandle& operator=(HookHandle&& o) noexcept {
        if (this != &o) {
            remove();
            remove_ = std::move(o.remove_);
            o.remove_ = nullptr;
        }
        return *this;
    }
    HookHandle(const HookHandle&) = delete;
    HookHandle& operator=(const HookHandle&) = delete;
    ~HookHandle() { remove(); }
    void remove() {
        if (remove_) remove_();
        remove_ = nullptr;
    }

private:
    std::function<void()> remove_;
};

template <class T, class B = Cpu>
class Module {
public:
    using Var = autograd::Var<T, B>;
    /// Called after forward() with the module, its input and its output. Returning a defined Var
    /// replaces the output (what the parent and the next hooks see); an undefined Var keeps it
    /// (torch's register_forward_hook, whose non-None return replaces the output).
    using ForwardHook = std::function<Var(Module& module, const Var& input, const Var& output)>;
    /// Called during backward() with the module and the gradient of its output, once that gradient
    /// is complete (observe-only; torch's register_full_backward_hook, which hands grad_output).
    using BackwardHook = std::function<void(Module& module, const Tensor<T, B>& grad_output)>;

    virtual ~Module() = default;
    Module() = default;
    Module(const Module&) = delete;
    Module& operator=(const Module&) = delete;

    /// The module's computation on one input. Call the module (operator()) rather than forward()
    /// so that its hooks run, as in PyTorch.
    virtual Var forward(const Var& x) = 0;
    Var operator()(const Var& x) { return run_forward_hooks(x, forward(x)); }

    /// Runs this module's forward hooks on (input, output) and returns the output they leave;
    /// for modules whose parent calls them with something other than one Var (a dense layer
    /// takes the list of earlier feature maps: `input` is then undefined).
    Var run_forward_hooks(const Var& x, Var y) {
        if (hooks_ && !hooks_->empty()) {
            const auto hooks = *hooks_;  // a hook may remove itself (or others) while it runs
            for (const auto& [id, hook] : hooks) {
                Var r = hook(*this, x, y);
                if (r.defined()) y = std::move(r);
            }
        }
        if (backward_hooks_ && !backward_hooks_->empty() && y.requires_grad()) {
            // the hooks go on this output's gradient; they see the registrations alive at backward time
            std::weak_ptr<std::map<std::int64_t, BackwardHook>> weak = backward_hooks_;
            y.register_hook([this, weak](const Tensor<T, B>& g) {
                if (auto h = weak.lock()) {
                    const auto hooks = *h;
                    for (const auto& [id, hook] : hooks) hook(*this, g);
                }
            });
        }
        return y;
    }

    /// Adds a backward hook: on every call of this module that records a graph, hook(module,
    /// grad_output) runs during backward() once the gradient of the module's output is complete,
    /// in registration order, until the handle is removed or destroyed. What Grad-CAM-style methods
    /// and gradient inspection need without touching the output Var.
    [[nodiscard]] HookHandle register_backward_hook(BackwardHook hook) {
        MEDIMG_CHECK(static_cast<bool>(hook), ValueError, "Module::register_backward_hook: the hook is empty");
        return add_hook(backward_hooks_, std::move(hook));
    }

    /// Adds a forward hook, run in registration order after forward() on every call of this
    /// module until the handle is removed or destroyed.
    [[nodiscard]] HookHandle register_forward_hook(ForwardHook hook) {
        MEDIMG_CHECK(static_cast<bool>(hook), ValueError, "Module::register_forward_hook: the hook is empty");
        return add_hook(hooks_, std::move(hook));
    }
    /// The number of forward hooks on this module (not its children).
    std::size_t forward_hook_count() const { return hooks_ ? hooks_->size() : 0; }
    /// The number of backward hooks on this module (not its children).
    std::size_t backward_hook_count() const { return backward_hooks_ ? backward_hooks_->size() : 0; }

    /// This module (name "") and every descendant, depth first in registration order, with
    /// dotted names: "", "conv1", ..., "layer4", "layer4.0", "layer4.0.conv1", ... (torch's
    /// named_modules). The pointers live as long as this module.
    std::vector<std::pair<std::string, Module*>> named_modules() {
        std::vector<std::pair<std::string, Module*>> out{{"", this}};
        for (const auto& [n, c] : children_)
            for (auto& [sub, m] : c->named_modules()) out.emplace_back(sub.empty() ? n : n + "." + sub, m);
        return out;
    }
    /// The descendant with this dotted name (torch's get_submodule); "" is this module.
    /// Throws ValueError naming every valid name when there is none.
    Module& get_submodule(const std::string& name) {
        auto all = named_modules();
        for (auto& [n, m] : all)
            if (n == name) return *m;
        std::string valid;
        for (std::size_t i = 1; i < all.size(); ++i) valid += (i > 1 ? ", " : "") + all[i].first;
        throw ValueError("Module::get_submodule: no module named '" + name + "'; valid names: " +
                         (valid.empty() ? std::string("(none: this module has no children)") : valid));
    }

    /// The same, as the short name a researcher types: model.module("layer4").
    Module& module(const std::string& name) { return get_submodule(name); }

    /// The parameter with this dotted name (torch's get_parameter): "layer4.1.conv2.weight".
    /// Throws ValueError naming the module it looked in and that module's parameters.
    Var& get_parameter(const std::string& name) {
        const auto dot = name.rfind('.');
        Module& owner = get_submodule(dot == std::string::npos ? "" : name.substr(0, dot));
        const std::string local = dot == std::string::npos ? name : name.substr(dot + 1);
        for (auto& [n, p] : owner.params_)
            if (n == local) return p;
        throw ValueError("Module::get_parameter: no parameter named '" + name + "'; " +
                         owner.local_names(dot == std::string::npos ? "" : name.substr(0, dot)));
    }
    Var& parameter(const std::string& name) { return get_parameter(name); }

    /// The buffer with this dotted name (torch's get_buffer): "layer4.1.bn2.running_mean".
    Tensor<T, B>& get_buffer(const std::string& name) {
        const auto dot = name.rfind('.');
        Module& owner = get_submodule(dot == std::string::npos ? "" : name.substr(0, dot));
        const std::string local = dot == std::string::npos ? name : name.substr(dot + 1);
        for (auto& e : owner.buffers_)
            if (e.name == local) return e.value;
        throw ValueError("Module::get_buffer: no buffer named '" + name + "'; " +
                         owner.local_names(dot == std::string::npos ? "" : name.substr(0, dot)));
    }

    /// Switches this module and all children to training (true) or evaluation (false) mode.
    void train(bool on = true) {
        training_ = on;
        for (auto& [n, c] : children_) c->train(on);
    }
    void eval() { train(false); }
    bool is_training() const { return training_; }

    /// Every parameter, recursively, with dotted names.
    NamedParams<T, B> named_parameters(const std::string& prefix = "") const {
        NamedParams<T, B> out;
        for (const auto& [n, p] : params_) out.emplace_back(prefix + n, p);
        for (const auto& [n, c] : children_) {
            auto sub = c->named_parameters(prefix + n + ".");
            out.insert(out.end(), sub.begin(), sub.end());
        }
        return out;
    }
    std::vector<Var> parameters() const {
        std::vector<Var> out;
        for (auto& [n, p] : named_parameters()) out.push_back(p);
        return out;
    }
    /// Parameters and buffers, in PyTorch's state_dict order. Values share storage with the module.
    StateDict<T, B> state_dict(const std::string& prefix = "") const {
        StateDict<T, B> out;
        collect(prefix, out);
        return out;
    }
    /// Number of trainable scalars.
    std::int64_t parameter_count() const {
        std::int64_t n = 0;
        for (auto& [name, p] : named_parameters()) n += p.value().numel();
        return n;
    }

    /// Copies values into the module's parameters and buffers by name.
    /// strict: every module key must be present and every given key must exist in the module.
    /// A shape mismatch is always an error naming the key and both shapes.
    void load_state_dict(const std::map<std::string, Tensor<T, B>>& state, bool strict = true) {
        auto mine = state_dict();
        std::vector<std::string> missing, unexpected;
        for (auto& e : mine) {
            auto it = state.find(e.name);
            if (it == state.end()) {
                missing.push_back(e.name);
                continue;
            }
            MEDIMG_CHECK(it->second.shape() == e.value.shape(), ShapeError, "load_state_dict: '", e.name, "' has shape ",
                         it->second.shape(), " in the given state but ", e.value.shape(), " in the model");
        }
        for (const auto& kv : state)  // (a lambda may not capture a structured binding in C++17; clang refuses it)
            if (std::none_of(mine.begin(), mine.end(), [&](const StateEntry<T, B>& e) { return e.name == kv.first; }))
                unexpected.push_back(kv.first);
        if (strict && (!missing.empty() || !unexpected.empty()))
            throw ValueError("load_state_dict: " + describe("missing key", missing) +
                             (missing.empty() || unexpected.empty() ? "" : "; ") + describe("unexpected key", unexpected));
        for (auto& e : mine) {
            auto it = state.find(e.name);
            if (it != state.end()) e.value.copy_(it->second);
        }
    }

    /// The direct sub-modules and their local names, in registration order (torch's named_children()).
    const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const { return children_; }
    std::shared_ptr<Module> child(const std::string& name) const {
        for (const auto& [n, c] : children_)
            if (n == name) return c;
        throw ValueError("Module::child: no child named '" + name + "'");
    }

protected:
    /// Parameters and buffers count their in-place writes (Tensor::version), so caches derived
    /// from them (nn/inference.hpp) notice when training or load_state_dict changes them.
    Var& register_parameter(const std::string& name, Tensor<T, B> value) {
        value.track_version();
        params_.emplace_back(name, Var::parameter(std::move(value)));
        return params_.back().second;
    }
    Tensor<T, B>& register_buffer(const std::string& name, Tensor<T, B> value, bool integer = false) {
        value.track_version();
        buffers_.push_back({name, std::move(value), integer});
        return buffers_.back().value;
    }
    template <class M>
    std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
        m->train(training_);
        children_.emplace_back(name, m);
        return m;
    }
    /// Parameter / buffer access by local name (stable: the vectors only grow at construction).
    Var& param(const std::string& name) { return find(params_, name, "parameter"); }
    Tensor<T, B>& buffer(const std::string& name) {
        for (auto& e : buffers_)
            if (e.name == name) return e.value;
        throw ValueError("Module: no buffer named '" + name + "'");
    }

private:
    template <class V>
    static auto& find(V& v, const std::string& name, const char* what) {
        for (auto& [n, x] : v)
            if (n == name) return x;
        throw ValueError(std::string("Module: no ") + what + " named '" + name + "'");
    }
    void collect(const std::string& prefix, StateDict<T, B>& out) const {
        for (const auto& [n, p] : params_) out.push_back({prefix + n, p.value(), false});
        for (const auto& e : buffers_) out.push_back({prefix + e.name, e.value, e.integer});
        for (const auto& [n, c] : children_) c->collect(prefix + n + ".", out);
    }
    /// "module 'layer4.1.bn2' has parameters weight, bias and buffers running_mean, ...".
    std::string local_names(const std::string& where) const {
        std::string ps, bs;
        for (const auto& [n, p] : params_) ps += (ps.empty() ? "" : ", ") + n;
        for (const auto& e : buffers_) bs += (bs.empty() ? "" : ", ") + e.name;
        return "module '" + where + "' has parameters " + (ps.empty() ? "(none)" : ps) + " and buffers " + (bs.empty() ? "(none)" : bs);
    }
    static std::string describe(const char* what, const std::vector<std::string>& keys) {
        if (keys.empty()) return "";
        std::string s = std::to_string(keys.size()) + " " + what + (keys.size() > 1 ? "s" : "") + " (";
        for (std::size_t i = 0; i < keys.size() && i < 5; ++i) s += (i ? ", " : "") + ("'" + keys[i] + "'");
        return s + (keys.size() > 5 ? ", ...)" : ")");
    }

    bool training_ = true;
    /// Stores `hook` under a fresh id in `hooks` (created on first use); the handle erases it again
    /// unless the module is gone first.
    template <class Hook>
    HookHandle add_hook(std::shared_ptr<std::map<std::int64_t, Hook>>& hooks, Hook hook) {
        if (!hooks) hooks = std::make_shared<std::map<std::int64_t, Hook>>();
        const std::int64_t id = next_hook_id_++;
        hooks->emplace(id, std::move(hook));
        std::weak_ptr<std::map<std::int64_t, Hook>> weak = hooks;
        return HookHandle([weak, id] {
            if (auto h = weak.lock()) h->erase(id);
        });
    }

    std::shared_ptr<std::map<std::int64_t, ForwardHook>> hooks_;  // by id, so in registration order
    std::shared_ptr<std::map<std::int64_t, BackwardHook>> backward_hooks_;
    std::int64_t next_hook_id_ = 0;
    std::vector<std::pair<std::string, Var>> params_;
    std::vector<StateEntry<T, B>> buffers_;
    std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

/// Runs its children in order (torch.nn.Sequential); children are named "0", "1", ... or, with
/// push_back(name, m), as given (torch.nn.Sequential(OrderedDict(...)), DenseNet's "features").
template <class T, class B = Cpu>
class Sequential : public Module<T, B> {
public:
    using Var = autograd::Var<T, B>;
    template <class M>
    std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
        return push_back(std::to_string(order_.size()), std::move(m));
    }
    template <class M>
    std::shared_ptr<M> push_back(const std::string& name, std::shared_ptr<M> m) {
        for (const auto& [n, c] : this->named_children())
            MEDIMG_CHECK(n != name, ValueError, "Sequential::push_back: a child named '", name, "' exists already");
        order_.push_back(m);
        return this->register_module(name, std::move(m));
    }
    Var forward(const Var& x) override {
        Var h = x;
        for (auto& m : order_) h = (*m)(h);
        return h;
    }
    std::size_t size() const { return order_.size(); }
    bool empty() const { return order_.empty(); }

private:
    std::vector<std::shared_ptr<Module<T, B>>> order_;
};

}  // namespace medimg::nn
