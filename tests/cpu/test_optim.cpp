// SPDX-License-Identifier: MIT
// Tests for optim/: SGD, Adam, AdamW and the LR schedulers against PyTorch 1.13 runs
// (tests/data/optim/, written by tests/data/make_optim_fixtures.py), hand-computed first steps,
// bit-identical resumption through state_dict()/state(), and every validation path.
#include <boost/mpl/list.hpp>
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "helpers.hpp"
#include "medimg/autograd/functions.hpp"
#include "medimg/core/rng.hpp"
#include "medimg/optim/optim.hpp"

using namespace medimg;
using medimg::test::message_contains;
using Floats = boost::mpl::list<float, double>;

namespace {

// float32 vs PyTorch's float32 run: the loops repeat PyTorch's op order and rounding (fma where
// PyTorch's AVX2 kernels fuse), so results agree bit for bit on this machine; the tolerance
// leaves room for a libm whose pow() differs by an ulp (it feeds the bias corrections).
constexpr double kOptimFloatRtol = 1e-6;
constexpr double kOptimFloatAtol = 1e-7;
// float64 vs PyTorch's float64 run: same op order; 1e-12 still catches any formula change.
constexpr double kOptimDoubleRtol = 1e-12;
constexpr double kOptimDoubleAtol = 1e-14;
// Scheduler lrs vs PyTorch: the same double expressions in the same order.
constexpr double kLrRtol = 1e-12;

template <class T>
constexpr double rtol_for() { return std::is_same_v<T, float> ? kOptimFloatRtol : kOptimDoubleRtol; }
template <class T>
constexpr double atol_for() { return std::is_same_v<T, float> ? kOptimFloatAtol : kOptimDoubleAtol; }
template <class T>
const char* dtype_name() { return std::is_same_v<T, float> ? "float32" : "float64"; }

// ---- fixture parsing --------------------------------------------------------------------------
using Tokens = std::vector<std::string>;

std::vector<Tokens> read_records(const std::string& file) {
    const std::string path = std::string(MEDIMG_TEST_DATA_DIR) + "/optim/" + file;
    std::ifstream in(path);
    BOOST_REQUIRE_MESSAGE(in, "cannot open fixture " << path);
    std::vector<Tokens> records;
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        std::istringstream ls(line);
        Tokens t;
        for (std::string w; ls >> w;) t.push_back(w);
        if (!t.empty()) records.push_back(std::move(t));
    }
    return records;
}

std::vector<double> numbers(const Tokens& t, std::size_t from) {
    std::vector<double> v;
    for (std::size_t i = from; i < t.size(); ++i) v.push_back(std::stod(t[i]));
    return v;
}

struct OptimCase {
    std::string optimizer;
    std::map<std::string, double> hp;
    int steps = 0;
    std::vector<std::pair<std::string, Shape>> params;
    std::map<std::string, std::vector<double>> init;
    std::map<std::pair<int, std::string>, std::optional<std::vector<double>>> grads;        // (step, name)
    std::map<std::tuple<std::string, int, std::string>, std::vector<double>> after;         // (dtype, step, name)
    std::map<std::pair<std::string, std::string>, std::vector<double>> state;               // (dtype, key)

    double get(const std::string& k, double fallback) const { return hp.count(k) ? hp.at(k) : fallback; }
    Shape shape_of(const std::string& name) const {
        for (const auto& [n, s] : params)
            if (n == name) return s;
        BOOST_FAIL("no parameter " << name);
        return {};
    }
};

OptimCase load_case(const std::string& name) {
    OptimCase c;
    for (const auto& r : read_records(name + ".txt")) {
        const std::string& kind = r[0];
        if (kind == "optimizer") {
            c.optimizer = r[1];
        } else if (kind == "hparams") {
            for (std::size_t i = 1; i + 1 < r.size(); i += 2) c.hp[r[i]] = std::stod(r[i + 1]);
        } else if (kind == "steps") {
            c.steps = std::stoi(r[1]);
        } else if (kind == "param") {
            std::vector<std::int64_t> dims;
            for (int i = 0; i < std::stoi(r[2]); ++i) dims.push_back(std::stoll(r[3 + static_cast<std::size_t>(i)]));
            c.params.emplace_back(r[1], Shape(dims));
        } else if (kind == "init") {
            c.init[r[1]] = numbers(r, 2);
        } else if (kind == "grad") {
            auto& g = c.grads[{std::stoi(r[1]), r[2]}];
            if (r[3] != "none") g = numbers(r, 3);
        } else if (kind == "after") {
            c.after[{r[1], std::stoi(r[2]), r[3]}] = numbers(r, 4);
        } else if (kind == "state") {
            c.state[{r[1], r[2]}] = numbers(r, 3);
        } else {
            BOOST_FAIL("unknown record '" << kind << "' in " << name);
        }
    }
    BOOST_REQUIRE(!c.optimizer.empty() && c.steps > 0 && !c.params.empty());
    return c;
}

template <class T>
Tensor<T> tensor_of(const Shape& s, const std::vector<double>& v) {
    BOOST_REQUIRE_EQUAL(static_cast<std::int64_t>(v.size()), s.numel());
    auto t = Tensor<T>::empty(s);
    for (std::int64_t i = 0; i < s.numel(); ++i) t[i] = static_cast<T>(v[static_cast<std::size_t>(i)]);
    return t;
}

template <class T>
std::unique_ptr<optim::Optimizer<T>> make_optimizer(const OptimCase& c, const optim::NamedParams<T>& params) {
    if (c.optimizer == "SGD") {
        optim::SGDOptions o(c.get("lr", 0.0));
        o.momentum = c.get("momentum", 0.0);
        o.dampening = c.get("dampening", 0.0);
        o.weight_decay = c.get("weight_decay", 0.0);
        o.nesterov = c.get("nesterov", 0.0) != 0.0;
        return std::make_unique<optim::SGD<T>>(params, o);
    }
    auto fill = [&](auto o) {
        o.lr = c.get("lr", o.lr);
        o.beta1 = c.get("beta1", o.beta1);
        o.beta2 = c.get("beta2", o.beta2);
        o.eps = c.get("eps", o.eps);
        o.weight_decay = c.get("weight_decay", o.weight_decay);
        o.amsgrad = c.get("amsgrad", 0.0) != 0.0;
        return o;
    };
    if (c.optimizer == "Adam") return std::make_unique<optim::Adam<T>>(params, fill(optim::AdamOptions{}));
    if (c.optimizer == "AdamW") return std::make_unique<optim::AdamW<T>>(params, fill(optim::AdamWOptions{}));
    BOOST_FAIL("unknown optimizer " << c.optimizer);
    return nullptr;
}

/// Counts values and exact (bitwise-equal) matches, for the log.
struct Agreement {
    std::int64_t values = 0, exact = 0;
    template <class T>
    void add(const Tensor<T>& a, const Tensor<double>& b) {
        for (std::int64_t i = 0; i < a.numel(); ++i, ++values) exact += a[i] == static_cast<T>(b[i]) ? 1 : 0;
    }
};

/// Runs a fixture case in T: every parameter after every step, then the final optimizer state.
template <class T>
void check_against_pytorch(const std::string& name) {
    BOOST_TEST_CONTEXT(name << " " << dtype_name<T>()) {
        const OptimCase c = load_case(name);
        optim::NamedParams<T> params;
        for (const auto& [pname, shape] : c.params)
            params.emplace_back(pname, autograd::Var<T>::parameter(tensor_of<T>(shape, c.init.at(pname))));
        auto opt = make_optimizer<T>(c, params);
        Agreement agree;
        for (int k = 1; k <= c.steps; ++k) {
            for (auto& [pname, p] : params) {
                const auto& g = c.grads.at({k, pname});
                p.grad() = g ? tensor_of<T>(p.shape(), *g) : Tensor<T>();
            }
            opt->step();
            for (const auto& [pname, p] : params) {
                const auto expected = tensor_of<double>(p.shape(), c.after.at({dtype_name<T>(), k, pname}));
                BOOST_TEST_CONTEXT("parameter " << pname << " after step " << k) {
                    MEDIMG_CHECK_CLOSE_TENSORS(p.value(), expected, rtol_for<T>(), atol_for<T>());
                }
                agree.add(p.value(), expected);
            }
        }
        const auto sd = opt->state_dict();
        std::size_t per_param_keys = 0;
        for (const auto& [key, t] : sd) per_param_keys += key.find('.') != std::string::npos ? 1 : 0;
        std::size_t expected_keys = 0;
        for (const auto& [dk, values] : c.state) {
            if (dk.first != dtype_name<T>()) continue;
            ++expected_keys;
            const std::string& key = dk.second;
            BOOST_TEST_CONTEXT("state " << key) {
                BOOST_REQUIRE_MESSAGE(sd.count(key), "state_dict lacks " << key);
                const Tensor<T>& got = sd.at(key);
                const auto expected = tensor_of<double>(got.shape(), values);
                if (key.size() > 5 && key.substr(key.size() - 5) == ".step") {
                    BOOST_TEST(got.rank() == 0);
                } else {
                    BOOST_TEST(got.shape() == c.shape_of(key.substr(0, key.rfind('.'))));
                }
                MEDIMG_CHECK_CLOSE_TENSORS(got, expected, rtol_for<T>(), atol_for<T>());
                agree.add(got, expected);
            }
        }
        BOOST_TEST(per_param_keys == expected_keys);  // no state PyTorch does not have
        BOOST_TEST(sd.at("step")[0] == static_cast<T>(c.steps));
        BOOST_TEST_MESSAGE(name << " " << dtype_name<T>() << ": " << agree.exact << " of " << agree.values
                                << " values bitwise equal to PyTorch");
        BOOST_WARN_MESSAGE(agree.exact == agree.values, "not bit-identical to PyTorch (within tolerance)");
    }
}

// ---- small helpers ------------------------------------------------------------------------------
template <class T>
using V = autograd::Var<T>;

template <class T>
V<T> param_of(const std::vector<double>& v) {
    return V<T>::parameter(tensor_of<T>(Shape{static_cast<std::int64_t>(v.size())}, v));
}

template <class T>
Tensor<T> random_tensor(const Shape& s, std::uint64_t seed) {
    Rng r(seed);
    auto t = Tensor<T>::empty(s);
    r.fill_normal(t, 0.0, 1.0);
    return t;
}

/// Two parameters, "w" (3, 4) and "b" (5), seeded.
template <class T>
optim::NamedParams<T> two_params(std::uint64_t seed) {
    return {{"w", V<T>::parameter(random_tensor<T>({3, 4}, seed))}, {"b", V<T>::parameter(random_tensor<T>({5}, seed + 1))}};
}

template <class T>
optim::NamedParams<T> clone_params(const optim::NamedParams<T>& ps) {
    optim::NamedParams<T> out;
    for (const auto& [n, p] : ps) out.emplace_back(n, V<T>::parameter(p.value().clone()));
    return out;
}

/// Deterministic gradients for step k; "b" gets none on step 2 (skipped, as PyTorch skips it).
template <class T>
void set_grads(optim::NamedParams<T>& ps, int k) {
    for (std::size_t i = 0; i < ps.size(); ++i) {
        auto& [n, p] = ps[i];
        p.grad() = (n == "b" && k == 2) ? Tensor<T>() : random_tensor<T>(p.shape(), 1000 + 10 * static_cast<std::uint64_t>(k) + i);
    }
}

template <class T>
bool bitwise_equal(const Tensor<T>& a, const Tensor<T>& b) {
    if (a.shape() != b.shape()) return false;
    for (std::int64_t i = 0; i < a.numel(); ++i)
        if (!(a[i] == b[i])) return false;
    return true;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(optim_optimizers)

// ---- PyTorch fixtures ---------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(sgd_matches_pytorch_plain_momentum_and_nesterov, T, Floats) {
    for (const char* name : {"sgd_plain", "sgd_momentum", "sgd_nesterov"}) check_against_pytorch<T>(name);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(adam_matches_pytorch_default_weight_decay_and_amsgrad, T, Floats) {
    for (const char* name : {"adam_default", "adam_weight_decay", "adam_amsgrad"}) check_against_pytorch<T>(name);
}

BOOST_AUTO_TEST_CASE_TEMPLATE(adamw_matches_pytorch_default_and_amsgrad, T, Floats) {
    for (const char* name : {"adamw_default", "adamw_amsgrad"}) check_against_pytorch<T>(name);
}

BOOST_AUTO_TEST_CASE(adam_without_bias_correction_would_not_match_pytorch) {
    // A plain double re-derivation of Adam over the adam_default fixture, with and without the
    // bias corrections: with them it reproduces PyTorch (so it is a fair model), without them the
    // parameters land far outside the tolerance that optim::Adam meets.
    const OptimCase c = load_case("adam_default");
    const double lr = 1e-3, b1 = 0.9, b2 = 0.999, eps = 1e-8;
    for (bool corrected : {true, false}) {
        double worst = 0.0;
        for (const auto& [pname, shape] : c.params) {
            std::vector<double> p = c.init.at(pname), m(p.size(), 0.0), v(p.size(), 0.0);
            for (int k = 1; k <= c.steps; ++k) {
                const auto& g = *c.grads.at({k, pname});
                const double bc1 = corrected ? 1.0 - std::pow(b1, k) : 1.0;
                const double bc2 = corrected ? 1.0 - std::pow(b2, k) : 1.0;
                for (std::size_t i = 0; i < p.size(); ++i) {
                    m[i] = b1 * m[i] + (1 - b1) * g[i];
                    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
                    p[i] -= lr / bc1 * m[i] / (std::sqrt(v[i]) / std::sqrt(bc2) + eps);
                }
                const auto& want = c.after.at({"float64", k, pname});
                for (std::size_t i = 0; i < p.size(); ++i) worst = std::max(worst, std::abs(p[i] - want[i]));
            }
        }
        BOOST_TEST_MESSAGE("naive Adam, bias correction " << corrected << ": max |diff| to PyTorch " << worst);
        if (corrected)
            BOOST_TEST(worst < 1e-12);
        else
            BOOST_TEST(worst > 1e-3);  // ~lr * (sqrt(1/(1-beta2)) * (1-beta1) - 1) per step
    }
}

// ---- hand-computed steps ------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(sgd_momentum_buffer_starts_as_the_gradient_without_dampening) {
    auto p = param_of<double>({1.0});
    optim::SGDOptions o(0.1);
    o.momentum = 0.9;
    o.dampening = 0.5;
    optim::SGD<double> sgd({p}, o);
    p.grad() = Tensor<double>::full({1}, 2.0);
    sgd.step();  // buf = g = 2 (not (1 - 0.5) * 2); p = 1 - 0.1 * 2
    BOOST_TEST(p.value()[0] == 0.8, boost::test_tools::tolerance(1e-15));
    BOOST_TEST(sgd.state_dict().at("0.momentum_buffer")[0] == 2.0);
    sgd.step();  // buf = 0.9 * 2 + 0.5 * 2 = 2.8; p = 0.8 - 0.28
    BOOST_TEST(sgd.state_dict().at("0.momentum_buffer")[0] == 2.8, boost::test_tools::tolerance(1e-15));
    BOOST_TEST(p.value()[0] == 0.52, boost::test_tools::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE(sgd_nesterov_looks_ahead_along_the_buffer) {
    auto p = param_of<double>({1.0});
    optim::SGDOptions o(0.1);
    o.momentum = 0.9;
    o.nesterov = true;
    optim::SGD<double> sgd({p}, o);
    p.grad() = Tensor<double>::full({1}, 1.0);
    sgd.step();  // buf = 1; d = 1 + 0.9 * 1 = 1.9; p = 1 - 0.19
    BOOST_TEST(p.value()[0] == 0.81, boost::test_tools::tolerance(1e-15));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(first_adam_step_moves_each_weight_by_lr, T, Floats) {
    // t = 1: m_hat = g, v_hat = g^2, so the step is lr * g / (|g| + eps) ~ lr * sign(g)
    // (without bias correction it would be lr * 0.1 g / (sqrt(0.001) |g|) ~ 3.16 lr).
    auto p = param_of<T>({0.5, -0.25, 2.0});
    optim::Adam<T> adam({p}, {});
    p.grad() = tensor_of<T>({3}, {3.0, -0.01, 1e-3});
    adam.step();
    const std::vector<double> expected{0.5 - 1e-3 * 3.0 / (3.0 + 1e-8), -0.25 + 1e-3 * 0.01 / (0.01 + 1e-8),
                                       2.0 - 1e-3 * 1e-3 / (1e-3 + 1e-8)};
    for (int i = 0; i < 3; ++i) BOOST_TEST(static_cast<double>(p.value()[i]) == expected[static_cast<std::size_t>(i)],
                                           boost::test_tools::tolerance(std::is_same_v<T, float> ? 1e-6 : 1e-12));
}

BOOST_AUTO_TEST_CASE(adamw_decays_weights_apart_from_the_moments_and_adam_through_them) {
    optim::AdamWOptions wo;
    wo.lr = 0.1;
    wo.weight_decay = 0.5;
    auto pw = param_of<double>({2.0});
    optim::AdamW<double> adamw({pw}, wo);
    pw.grad() = Tensor<double>::zeros({1});
    adamw.step();  // p *= 1 - 0.1 * 0.5; m = v = 0, so the Adam part adds 0 / eps = 0
    BOOST_TEST(pw.value()[0] == 1.9, boost::test_tools::tolerance(1e-15));
    BOOST_TEST(adamw.state_dict().at("0.exp_avg")[0] == 0.0);

    optim::AdamOptions ao;
    ao.lr = 0.1;
    ao.weight_decay = 0.5;
    auto pa = param_of<double>({2.0});
    optim::Adam<double> adam({pa}, ao);
    pa.grad() = Tensor<double>::zeros({1});
    adam.step();  // g = 0.5 * 2 = 1 enters the moments; first step moves by ~lr
    BOOST_TEST(pa.value()[0] == 1.9, boost::test_tools::tolerance(1e-9));
    BOOST_TEST(adam.state_dict().at("0.exp_avg")[0] == 0.1, boost::test_tools::tolerance(1e-15));
}

// ---- the step/zero_grad contract ----------------------------------------------------------------

BOOST_AUTO_TEST_CASE(step_skips_parameters_without_gradient_and_zero_grad_forgets_them) {
    auto ps = two_params<float>(5);
    const auto b0 = ps[1].second.value().clone();
    optim::AdamW<float> opt(ps, {});
    ps[0].second.grad() = Tensor<float>::ones({3, 4});
    opt.step();
    BOOST_TEST(bitwise_equal(ps[1].second.value(), b0));
    const auto sd = opt.state_dict();
    BOOST_TEST(sd.count("w.exp_avg") == 1);
    BOOST_TEST(sd.count("b.exp_avg") == 0);
    BOOST_TEST(sd.count("b.step") == 0);
    BOOST_TEST(sd.at("w.step")[0] == 1.0f);
    opt.zero_grad();
    BOOST_TEST(!ps[0].second.grad().defined());
    BOOST_TEST(!ps[1].second.grad().defined());
    opt.step();  // nothing has a gradient: nothing moves, the step counter still advances
    BOOST_TEST(opt.step_count() == 2);
    BOOST_TEST(opt.state_dict().at("w.step")[0] == 1.0f);
}

BOOST_AUTO_TEST_CASE(unnamed_parameters_are_numbered_and_shared_with_the_model) {
    auto a = param_of<float>({1.0, 2.0});
    auto b = param_of<float>({3.0});
    optim::SGD<float> sgd(std::vector<V<float>>{a, b}, optim::SGDOptions(1.0));
    BOOST_TEST(sgd.params()[0].first == "0");
    BOOST_TEST(sgd.params()[1].first == "1");
    b.grad() = Tensor<float>::ones({1});
    sgd.step();
    BOOST_TEST(b.value()[0] == 2.0f);  // the caller's handle sees the update
}

BOOST_AUTO_TEST_CASE(step_rejects_a_gradient_of_the_wrong_shape) {
    auto p = param_of<float>({1.0, 2.0});
    optim::SGD<float> sgd({{"w", p}}, optim::SGDOptions(0.1));
    p.grad() = Tensor<float>::ones({3});
    BOOST_CHECK_EXCEPTION(sgd.step(), ShapeError, message_contains("SGD.step: gradient of 'w' has shape [3] but the parameter has shape [2]"));
    BOOST_TEST(sgd.step_count() == 0);
}

BOOST_AUTO_TEST_CASE(updates_split_over_threads_match_a_single_thread_bitwise) {
    const int before = num_threads();
    std::vector<Tensor<float>> results;
    for (int threads : {1, 4}) {
        set_num_threads(threads);
        auto p = V<float>::parameter(random_tensor<float>({300001}, 7));
        optim::AdamOptions o;
        o.amsgrad = true;
        o.weight_decay = 1e-2;
        optim::Adam<float> adam({p}, o);
        for (int k = 0; k < 3; ++k) {
            p.grad() = random_tensor<float>({300001}, 8 + static_cast<std::uint64_t>(k));
            adam.step();
        }
        results.push_back(p.value());
    }
    set_num_threads(before);
    BOOST_TEST(bitwise_equal(results[0], results[1]));
}

BOOST_AUTO_TEST_CASE_TEMPLATE(optimizers_minimise_a_quadratic, T, Floats) {
    // loss = sum((w - target)^2); every optimizer must get it below 1e-4 in 300 steps.
    const auto target = random_tensor<T>({8}, 42);
    auto neg_target = target.clone();
    for (std::int64_t i = 0; i < 8; ++i) neg_target[i] = -neg_target[i];
    auto run = [&](auto make) {
        auto w = V<T>::parameter(Tensor<T>::zeros({8}));
        auto opt = make(w);
        double loss = 0.0;
        for (int k = 0; k < 300; ++k) {
            opt->zero_grad();
            auto d = autograd::add(w, V<T>(neg_target));
            auto l = autograd::sum(autograd::mul(d, d));
            l.backward();
            opt->step();
            loss = static_cast<double>(l.value().item());
        }
        return loss;
    };
    optim::SGDOptions so(0.05);
    so.momentum = 0.9;
    so.nesterov = true;
    BOOST_TEST(run([&](V<T> w) { return std::make_unique<optim::SGD<T>>(std::vector<V<T>>{w}, so); }) < 1e-4);
    optim::AdamOptions ao;
    ao.lr = 0.05;
    BOOST_TEST(run([&](V<T> w) { return std::make_unique<optim::Adam<T>>(std::vector<V<T>>{w}, ao); }) < 1e-4);
    optim::AdamWOptions wo;
    wo.lr = 0.05;
    wo.weight_decay = 0.0;
    BOOST_TEST(run([&](V<T> w) { return std::make_unique<optim::AdamW<T>>(std::vector<V<T>>{w}, wo); }) < 1e-4);
}

// ---- state dict: exact resumption ---------------------------------------------------------------

BOOST_AUTO_TEST_CASE_TEMPLATE(resuming_from_state_dict_is_bit_identical, T, Floats) {
    using Make = std::function<std::unique_ptr<optim::Optimizer<T>>(const optim::NamedParams<T>&)>;
    optim::SGDOptions so(0.1);
    so.momentum = 0.9;
    so.nesterov = true;
    so.weight_decay = 1e-3;
    optim::AdamOptions ao;
    ao.lr = 0.01;
    ao.amsgrad = true;
    ao.weight_decay = 1e-2;
    optim::AdamWOptions wo;
    wo.lr = 0.01;
    const std::vector<std::pair<std::string, Make>> makers{
        {"SGD", [&](const optim::NamedParams<T>& p) { return std::make_unique<optim::SGD<T>>(p, so); }},
        {"Adam", [&](const optim::NamedParams<T>& p) { return std::make_unique<optim::Adam<T>>(p, ao); }},
        {"AdamW", [&](const optim::NamedParams<T>& p) { return std::make_unique<optim::AdamW<T>>(p, wo); }}};
    const int total = 10, split = 4;
    for (const auto& [name, make] : makers) {
        BOOST_TEST_CONTEXT(name << " " << dtype_name<T>()) {
            // uninterrupted: warmup then cosine, one scheduler step per optimizer step, so the lr
            // takes values a float cannot hold
            auto ps = two_params<T>(11);
            auto opt = make(ps);
            auto sched = optim::warmup_cosine(*opt, 3, 0.1, 7, 1e-4);
            for (int k = 1; k <= total; ++k) {
                set_grads(ps, k);
                opt->step();
                sched.step();
            }
            // interrupted after `split` steps: save params (the checkpoint), optimizer and scheduler
            auto qs = two_params<T>(11);
            auto opt1 = make(qs);
            auto sched1 = optim::warmup_cosine(*opt1, 3, 0.1, 7, 1e-4);
            for (int k = 1; k <= split; ++k) {
                set_grads(qs, k);
                opt1->step();
                sched1.step();
            }
            const auto saved_params = clone_params(qs);
            const auto sd = opt1->state_dict();
            const auto ss = sched1.state();
            // a fresh process: new parameters, optimizer and scheduler, then load
            auto rs = clone_params(saved_params);
            auto opt2 = make(rs);
            auto sched2 = optim::warmup_cosine(*opt2, 3, 0.1, 7, 1e-4);
            opt2->load_state_dict(sd);
            sched2.load_state(ss);
            BOOST_TEST(opt2->lr() == opt1->lr());  // exact, also for float (lr_residual)
            BOOST_TEST(opt2->step_count() == split);
            for (int k = split + 1; k <= total; ++k) {
                set_grads(rs, k);
                opt2->step();
                sched2.step();
            }
            BOOST_TEST(opt2->lr() == opt->lr());
            for (std::size_t i = 0; i < ps.size(); ++i)
                BOOST_TEST(bitwise_equal(rs[i].second.value(), ps[i].second.value()), "parameter " << ps[i].first);
            const auto a = opt->state_dict(), b = opt2->state_dict();
            BOOST_TEST(a.size() == b.size());
            for (const auto& [key, t] : a) BOOST_TEST((b.count(key) && bitwise_equal(b.at(key), t)), "state " << key);
        }
    }
}

BOOST_AUTO_TEST_CASE(state_dict_is_a_copy_and_holds_the_documented_keys) {
    auto ps = two_params<float>(3);
    optim::SGDOptions o(0.1);
    o.momentum = 0.9;
    optim::SGD<float> sgd(ps, o);
    set_grads(ps, 1);
    sgd.step();
    auto sd = sgd.state_dict();
    std::vector<std::string> keys;
    for (const auto& [k, t] : sd) keys.push_back(k);
    const std::vector<std::string> want{"b.momentum_buffer", "lr", "lr_residual", "step", "w.momentum_buffer"};
    BOOST_TEST(keys == want, boost::test_tools::per_element());
    BOOST_TEST(sd.at("lr").rank() == 0);
    BOOST_TEST(sd.at("lr")[0] == 0.1f);
    BOOST_TEST(static_cast<double>(sd.at("lr")[0]) + (static_cast<double>(sd.at("lr_residual")[0]) +
                                                      static_cast<double>(sd.at("lr_residual")[1])) == 0.1);
    sd.at("w.momentum_buffer").fill_(99.0f);  // editing the copy leaves the optimizer alone
    BOOST_TEST(sgd.state_dict().at("w.momentum_buffer")[0] != 99.0f);
}

BOOST_AUTO_TEST_CASE(load_state_dict_rejects_bad_input_and_changes_nothing) {
    auto ps = two_params<float>(3);
    optim::AdamOptions o;
    o.lr = 0.01;
    optim::Adam<float> adam(ps, o);
    set_grads(ps, 1);
    adam.step();
    const auto good = adam.state_dict();
    auto with = [&](const std::function<void(optim::StateDict<float>&)>& edit) {
        auto sd = good;
        edit(sd);
        return sd;
    };
    using SD = optim::StateDict<float>&;
    BOOST_CHECK_EXCEPTION(adam.load_state_dict(with([](SD s) { s["nope.exp_avg"] = Tensor<float>::zeros({3, 4}); })), ValueError,
                          message_contains("Adam.load_state_dict: unknown parameter 'nope' in key 'nope.exp_avg'"));
    BOOST_CHECK_EXCEPTION(adam.load_state_dict(with([](SD s) { s["w.exp_avg"] = Tensor<float>::zeros({4, 3}); })), ShapeError,
                          message_contains("'w.exp_avg' has shape [4,3] but parameter 'w' has shape [3,4]"));
    BOOST_CHECK_EXCEPTION(adam.load_state_dict(with([](SD s) { s["w.momentum_buffer"] = Tensor<float>::zeros({3, 4}); })),
                          ValueError, message_contains("unexpected state 'momentum_buffer' in key 'w.momentum_buffer'"));
    BOOST_CHECK_EXCEPTION(adam.load_state_dict(with([](SD s) { s["w.max_exp_avg_sq"] = Tensor<float>::zeros({3, 4}); })),
                          ValueError, message_contains("keeps: exp_avg, exp_avg_sq, step"));
    BOOST_CHECK_EXCEPTION(adam.load_state_dict(with([](SD s) { s["momentum"] = Tensor<float>::scalar(0.9f); })), ValueError,
                          message_contains("unknown key 'momentum'"));
    BOOST_CHECK_EXCEPTION(adam.load_state_dict(with([](SD s) { s.erase("lr"); })), ValueError, message_contains("missing key 'lr'"));
    BOOST_CHECK_EXCEPTION(adam.load_state_dict(with([](SD s) { s.erase("step"); })), ValueError,
                          message_contains("missing key 'step'"));
    BOOST_CHECK_EXCEPTION(adam.load_state_dict(with([](SD s) { s.erase("w.exp_avg_sq"); })), ValueError,
                          message_contains("incomplete state for parameter 'w': has 2 of 3 entries"));
    BOOST_CHECK_EXCEPTION(adam.load_state_dict(with([](SD s) { s["step"] = Tensor<float>::scalar(1.5f); })), ValueError,
                          message_contains("'step' must be a non-negative integer, got 1.5"));
    BOOST_CHECK_EXCEPTION(adam.load_state_dict(with([](SD s) { s["w.step"] = Tensor<float>::scalar(0.0f); })), ValueError,
                          message_contains("'w.step' must be >= 1"));
    BOOST_CHECK_EXCEPTION(adam.load_state_dict(with([](SD s) { s["lr"] = Tensor<float>::zeros({2}); })), ShapeError,
                          message_contains("'lr' must hold one element, got shape [2]"));
    BOOST_CHECK_EXCEPTION(adam.load_state_dict(with([](SD s) { s["lr"] = Tensor<float>::scalar(-1.0f); })), ValueError,
                          message_contains("Adam: invalid learning rate -1"));
    // nothing was half-loaded
    const auto now = adam.state_dict();
    BOOST_TEST(now.size() == good.size());
    for (const auto& [key, t] : good) BOOST_TEST(bitwise_equal(now.at(key), t), key);
    // a dict without lr_residual (written by another tool) is accepted, lr taken as T(lr)
    adam.load_state_dict(with([](SD s) { s.erase("lr_residual"); }));
    BOOST_TEST(adam.lr() == static_cast<double>(0.01f));
}

// ---- option validation --------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(optimizers_reject_invalid_options_naming_the_value) {
    auto ps = [] { return two_params<float>(1); };
    auto sgd = [&](double lr, double momentum, double dampening, double wd, bool nesterov) {
        optim::SGDOptions o(lr);
        o.momentum = momentum;
        o.dampening = dampening;
        o.weight_decay = wd;
        o.nesterov = nesterov;
        optim::SGD<float> s(ps(), o);
    };
    BOOST_CHECK_EXCEPTION(sgd(-0.1, 0, 0, 0, false), ValueError, message_contains("SGD: invalid learning rate -0.1 (must be >= 0)"));
    BOOST_CHECK_EXCEPTION(sgd(NAN, 0, 0, 0, false), ValueError, message_contains("SGD: invalid learning rate nan"));
    BOOST_CHECK_EXCEPTION(sgd(0.1, -0.5, 0, 0, false), ValueError, message_contains("SGD: invalid momentum -0.5 (must be >= 0)"));
    BOOST_CHECK_EXCEPTION(sgd(0.1, 0, INFINITY, 0, false), ValueError, message_contains("SGD: invalid dampening inf"));
    BOOST_CHECK_EXCEPTION(sgd(0.1, 0, 0, -1e-4, false), ValueError, message_contains("SGD: invalid weight_decay -0.0001 (must be >= 0)"));
    BOOST_CHECK_EXCEPTION(sgd(0.1, 0, 0, 0, true), ValueError,
                          message_contains("SGD: nesterov momentum requires momentum > 0 and dampening == 0, got momentum 0 and dampening 0"));
    BOOST_CHECK_EXCEPTION(sgd(0.1, 0.9, 0.1, 0, true), ValueError, message_contains("got momentum 0.9 and dampening 0.1"));
    BOOST_CHECK_NO_THROW(sgd(0.0, 0.9, 0.0, 0.0, true));  // lr 0 is allowed, as in PyTorch

    auto adam = [&](bool decoupled, double lr, double b1, double b2, double eps, double wd) {
        if (decoupled) {
            optim::AdamWOptions o;
            o.lr = lr, o.beta1 = b1, o.beta2 = b2, o.eps = eps, o.weight_decay = wd;
            optim::AdamW<float> a(ps(), o);
        } else {
            optim::AdamOptions o;
            o.lr = lr, o.beta1 = b1, o.beta2 = b2, o.eps = eps, o.weight_decay = wd;
            optim::Adam<float> a(ps(), o);
        }
    };
    for (bool w : {false, true}) {
        const std::string n = w ? "AdamW: " : "Adam: ";
        BOOST_CHECK_EXCEPTION(adam(w, -1e-3, 0.9, 0.999, 1e-8, 0), ValueError, message_contains(n + "invalid learning rate -0.001"));
        BOOST_CHECK_EXCEPTION(adam(w, 1e-3, 1.0, 0.999, 1e-8, 0), ValueError, message_contains(n + "invalid beta1 1 (must be in [0, 1))"));
        BOOST_CHECK_EXCEPTION(adam(w, 1e-3, -0.1, 0.999, 1e-8, 0), ValueError, message_contains(n + "invalid beta1 -0.1"));
        BOOST_CHECK_EXCEPTION(adam(w, 1e-3, 0.9, 1.5, 1e-8, 0), ValueError, message_contains(n + "invalid beta2 1.5 (must be in [0, 1))"));
        BOOST_CHECK_EXCEPTION(adam(w, 1e-3, 0.9, NAN, 1e-8, 0), ValueError, message_contains(n + "invalid beta2 nan"));
        BOOST_CHECK_EXCEPTION(adam(w, 1e-3, 0.9, 0.999, -1e-8, 0), ValueError, message_contains(n + "invalid eps -1e-08 (must be >= 0)"));
        BOOST_CHECK_EXCEPTION(adam(w, 1e-3, 0.9, 0.999, 1e-8, -0.01), ValueError,
                              message_contains(n + "invalid weight_decay -0.01 (must be >= 0)"));
        BOOST_CHECK_NO_THROW(adam(w, 1e-3, 0.0, 0.0, 0.0, 0.0));
    }
    BOOST_TEST(optim::AdamOptions{}.weight_decay == 0.0);  // PyTorch defaults
    BOOST_TEST(optim::AdamWOptions{}.weight_decay == 1e-2);
    BOOST_TEST(optim::AdamOptions{}.beta2 == 0.999);
}

BOOST_AUTO_TEST_CASE(optimizers_reject_malformed_parameter_lists) {
    using NP = optim::NamedParams<float>;
    auto p = param_of<float>({1.0});
    const optim::SGDOptions o(0.1);
    BOOST_CHECK_EXCEPTION(optim::SGD<float>(NP{}, o), ValueError, message_contains("SGD: got an empty parameter list"));
    BOOST_CHECK_EXCEPTION(optim::SGD<float>(NP{{"a", p}, {"a", param_of<float>({2.0})}}, o), ValueError,
                          message_contains("SGD: duplicate parameter name 'a'"));
    BOOST_CHECK_EXCEPTION(optim::SGD<float>(NP{{"a", p}, {"b", p}}, o), ValueError,
                          message_contains("SGD: parameter 'b' appears twice in the list"));
    BOOST_CHECK_EXCEPTION(optim::SGD<float>(NP{{"a", V<float>()}}, o), ValueError,
                          message_contains("SGD: parameter 'a' is an undefined Var"));
    auto y = autograd::mul(p, p);
    BOOST_CHECK_EXCEPTION(optim::Adam<float>(NP{{"y", y}}), ValueError, message_contains("Adam: can't optimize a non-leaf Var ('y', made by mul)"));
    optim::SGD<float> sgd(NP{{"a", p}}, o);
    BOOST_CHECK_EXCEPTION(sgd.set_lr(-1.0), ValueError, message_contains("SGD: invalid learning rate -1 (must be >= 0)"));
    sgd.set_lr(0.25);
    BOOST_TEST(sgd.lr() == 0.25);
}

BOOST_AUTO_TEST_SUITE_END()

// ---- schedulers ---------------------------------------------------------------------------------

namespace {
struct SchedCase {
    std::string name;
    std::map<std::string, double> args;
    std::vector<double> lrs;
};

std::vector<SchedCase> load_schedulers() {
    std::vector<SchedCase> cases;
    for (const auto& r : read_records("schedulers.txt")) {
        if (r[0] == "scheduler") {
            SchedCase c;
            c.name = r[1];
            for (std::size_t i = 2; i + 1 < r.size(); i += 2) c.args[r[i]] = std::stod(r[i + 1]);
            cases.push_back(c);
        } else if (r[0] == "lrs") {
            BOOST_REQUIRE(!cases.empty());
            cases.back().lrs = numbers(r, 1);
        }
    }
    BOOST_REQUIRE(cases.size() >= 8);
    return cases;
}

std::unique_ptr<optim::LRScheduler> make_scheduler(const SchedCase& c, optim::OptimizerBase& opt) {
    const auto& a = c.args;
    auto i = [&](const char* k) { return static_cast<std::int64_t>(a.at(k)); };
    if (c.name.rfind("steplr", 0) == 0) return std::make_unique<optim::StepLR>(opt, i("step_size"), a.at("gamma"));
    if (c.name.rfind("cosine", 0) == 0) return std::make_unique<optim::CosineAnnealingLR>(opt, i("t_max"), a.at("eta_min"));
    if (c.name.rfind("linear", 0) == 0)
        return std::make_unique<optim::LinearLR>(opt, a.at("start_factor"), a.at("end_factor"), i("total_iters"));
    if (c.name == "warmup_cosine")
        return std::make_unique<optim::SequentialLR>(optim::warmup_cosine(opt, i("warmup_iters"), a.at("start_factor"), i("t_max"), a.at("eta_min")));
    if (c.name == "warmup_step") {
        auto warm = std::make_shared<optim::LinearWarmup>(opt, a.at("start_factor"), i("warmup_iters"));
        auto step = std::make_shared<optim::StepLR>(opt, i("step_size"), a.at("gamma"));
        return std::make_unique<optim::SequentialLR>(opt, std::vector<std::shared_ptr<optim::ChainableScheduler>>{warm, step},
                                                     std::vector<std::int64_t>{i("warmup_iters")});
    }
    BOOST_FAIL("unknown scheduler case " << c.name);
    return nullptr;
}

optim::SGD<float> dummy_sgd(double lr) { return optim::SGD<float>({param_of<float>({0.0})}, optim::SGDOptions(lr)); }
}  // namespace

BOOST_AUTO_TEST_SUITE(optim_schedulers)

BOOST_AUTO_TEST_CASE(schedulers_match_pytorch_lr_sequences) {
    for (const auto& c : load_schedulers()) {
        BOOST_TEST_CONTEXT(c.name) {
            auto opt = dummy_sgd(c.args.at("base_lr"));
            auto sched = make_scheduler(c, opt);
            int exact = 0;
            for (std::size_t k = 0; k < c.lrs.size(); ++k) {
                if (k > 0) sched->step();
                BOOST_TEST_CONTEXT("epoch " << k) {
                    BOOST_TEST(opt.lr() == c.lrs[k], boost::test_tools::tolerance(kLrRtol));
                    BOOST_TEST(sched->last_lr() == opt.lr());
                    BOOST_TEST(sched->last_epoch() == static_cast<std::int64_t>(k));
                }
                exact += opt.lr() == c.lrs[k] ? 1 : 0;
            }
            BOOST_TEST_MESSAGE(c.name << ": " << exact << " of " << c.lrs.size() << " lrs bitwise equal to PyTorch");
            BOOST_WARN_MESSAGE(exact == static_cast<int>(c.lrs.size()), "not bit-identical to PyTorch (within tolerance)");
        }
    }
}

BOOST_AUTO_TEST_CASE(closed_forms_agree_with_the_chainable_forms) {
    for (const auto& c : load_schedulers()) {
        BOOST_TEST_CONTEXT(c.name) {
            auto opt = dummy_sgd(c.args.at("base_lr"));
            auto sched = make_scheduler(c, opt);
            for (std::size_t k = 0; k < c.lrs.size(); ++k)
                BOOST_TEST(sched->closed_form_lr(static_cast<std::int64_t>(k)) == c.lrs[k], boost::test_tools::tolerance(kLrRtol));
        }
    }
    auto opt = dummy_sgd(0.3);
    optim::StepLR s(opt, 3, 0.1);
    BOOST_TEST(s.closed_form_lr(9) == 0.3 * std::pow(0.1, 3));  // lr = base * gamma^(epoch // step)
}

BOOST_AUTO_TEST_CASE(a_second_scheduler_starts_from_the_initial_lr_as_in_pytorch) {
    auto opt = dummy_sgd(0.1);
    optim::StepLR first(opt, 1, 0.5);
    first.step();  // lr 0.05
    optim::CosineAnnealingLR second(opt, 10);
    BOOST_TEST(*opt.initial_lr() == 0.1);
    BOOST_TEST(second.base_lr() == 0.1);
    BOOST_TEST(opt.lr() == 0.05);  // its initial step keeps the current lr
}

BOOST_AUTO_TEST_CASE(scheduler_state_resumes_exactly) {
    auto run = [](int epochs, std::optional<int> split) {
        auto opt = dummy_sgd(0.1);
        auto sched = optim::warmup_cosine(opt, 5, 0.1, 25, 1e-5);
        std::vector<double> lrs;
        for (int e = 1; e <= epochs; ++e) {
            if (split && e == *split + 1) {  // "restart": new optimizer and scheduler, then load
                const double lr = opt.lr();
                const auto st = sched.state();
                auto opt2 = dummy_sgd(0.1);
                auto sched2 = optim::warmup_cosine(opt2, 5, 0.1, 25, 1e-5);
                opt2.set_lr(lr);  // in training this comes from the optimizer's state_dict
                sched2.load_state(st);
                for (; e <= epochs; ++e) {
                    sched2.step();
                    lrs.push_back(opt2.lr());
                }
                return lrs;
            }
            sched.step();
            lrs.push_back(opt.lr());
        }
        return lrs;
    };
    for (int split : {3, 5, 6, 17}) {
        const auto a = run(30, std::nullopt), b = run(30, split);
        BOOST_TEST(a == b, boost::test_tools::per_element());
    }
    auto opt = dummy_sgd(0.1);
    auto seq = optim::warmup_cosine(opt, 5, 0.1, 25);
    const auto st = seq.state();
    BOOST_TEST(st.count("0.last_epoch") == 1);
    BOOST_TEST(st.count("1.base_lr") == 1);
    BOOST_TEST(st.at("last_epoch") == 0.0);
}

BOOST_AUTO_TEST_CASE(schedulers_reject_invalid_arguments_and_state) {
    auto opt = dummy_sgd(0.1);
    BOOST_CHECK_EXCEPTION(optim::StepLR(opt, 0), ValueError, message_contains("StepLR: invalid step_size 0 (must be >= 1)"));
    BOOST_CHECK_EXCEPTION(optim::StepLR(opt, 3, -0.5), ValueError, message_contains("StepLR: invalid gamma -0.5 (must be > 0)"));
    BOOST_CHECK_EXCEPTION(optim::CosineAnnealingLR(opt, 0), ValueError, message_contains("CosineAnnealingLR: invalid t_max 0 (must be >= 1)"));
    BOOST_CHECK_EXCEPTION(optim::CosineAnnealingLR(opt, 10, -1e-3), ValueError,
                          message_contains("CosineAnnealingLR: invalid eta_min -0.001 (must be >= 0)"));
    BOOST_CHECK_EXCEPTION(optim::LinearLR(opt, 0.0), ValueError, message_contains("LinearLR: invalid start_factor 0 (must be in (0, 1])"));
    BOOST_CHECK_EXCEPTION(optim::LinearLR(opt, 0.5, 1.5), ValueError, message_contains("LinearLR: invalid end_factor 1.5 (must be in [0, 1])"));
    BOOST_CHECK_EXCEPTION(optim::LinearLR(opt, 0.5, 1.0, 0), ValueError, message_contains("LinearLR: invalid total_iters 0 (must be >= 1)"));
    BOOST_CHECK_EXCEPTION(optim::LinearWarmup(opt, 2.0, 5), ValueError, message_contains("LinearWarmup: invalid start_factor 2"));

    using Children = std::vector<std::shared_ptr<optim::ChainableScheduler>>;
    using Milestones = std::vector<std::int64_t>;
    auto a = std::make_shared<optim::LinearWarmup>(opt, 0.1, 5);
    auto b = std::make_shared<optim::CosineAnnealingLR>(opt, 10);
    BOOST_CHECK_EXCEPTION(optim::SequentialLR(opt, Children{}, Milestones{}), ValueError,
                          message_contains("SequentialLR: needs at least one scheduler"));
    BOOST_CHECK_EXCEPTION(optim::SequentialLR(opt, Children{a, b}, Milestones{}), ValueError,
                          message_contains("got 2 schedulers and 0 milestones"));
    BOOST_CHECK_EXCEPTION(optim::SequentialLR(opt, Children{a, nullptr}, Milestones{5}), ValueError,
                          message_contains("SequentialLR: scheduler 1 is null"));
    auto other = dummy_sgd(0.1);
    auto c = std::make_shared<optim::StepLR>(other, 3);
    BOOST_CHECK_EXCEPTION(optim::SequentialLR(opt, Children{a, c}, Milestones{5}), ValueError,
                          message_contains("SequentialLR: scheduler 1 (StepLR) belongs to a different optimizer"));
    BOOST_CHECK_EXCEPTION(optim::SequentialLR(opt, Children{a, b, b}, Milestones{5, 5}), ValueError,
                          message_contains("milestones must be >= 1 and strictly increasing, got 5 at index 1"));

    optim::StepLR s(opt, 3);
    auto st = s.state();
    auto bad = st;
    bad.erase("last_epoch");
    BOOST_CHECK_EXCEPTION(s.load_state(bad), ValueError, message_contains("StepLR.load_state: missing key 'last_epoch'"));
    bad = st;
    bad["gamma"] = 0.5;
    BOOST_CHECK_EXCEPTION(s.load_state(bad), ValueError, message_contains("StepLR.load_state: unknown key 'gamma'"));
    bad = st;
    bad["last_epoch"] = 2.5;
    BOOST_CHECK_EXCEPTION(s.load_state(bad), ValueError, message_contains("invalid 'last_epoch' = 2.5 (must be an integer >= -1)"));
    bad = st;
    bad["base_lr"] = -0.1;
    BOOST_CHECK_EXCEPTION(s.load_state(bad), ValueError, message_contains("invalid 'base_lr' = -0.1 (must be >= 0)"));
}

BOOST_AUTO_TEST_SUITE_END()

// optim/grad_scaler.hpp: torch.amp.GradScaler's rules on the CPU backend (the same class drives
// fp16 training on the GPU; tests/cuda/test_precision.cu compares the two).
BOOST_AUTO_TEST_SUITE(optim_grad_scaler)

BOOST_AUTO_TEST_CASE(scaled_backward_then_unscale_gives_the_plain_gradients_and_the_same_step) {
    const std::vector<double> w0{0.5, -1.25, 2.0};
    auto p = param_of<float>(w0), q = param_of<float>(w0);
    const auto x = autograd::Var<float>(tensor_of<float>(Shape{3}, {1.5, -0.75, 0.125}));
    optim::SGD<float> plain({p}, optim::SGDOptions(0.1)), scaled({q}, optim::SGDOptions(0.1));
    optim::GradScaler<float, Cpu> scaler;
    BOOST_TEST(scaler.get_scale() == 65536.0);  // PyTorch's default init_scale

    autograd::sum(autograd::mul(p, x)).backward();
    const auto loss = autograd::sum(autograd::mul(q, x));
    const auto big = scaler.scale(loss);
    BOOST_TEST(big.value()[0] == loss.value()[0] * 65536.0f);
    big.backward();
    BOOST_TEST(q.grad()[0] == 1.5f * 65536.0f);
    BOOST_TEST(scaler.unscale(scaled));
    for (std::int64_t i = 0; i < 3; ++i) BOOST_TEST(q.grad()[i] == p.grad()[i]);  // powers of two: exact
    BOOST_TEST(scaler.step(scaled));
    scaler.update();
    plain.step();
    for (std::int64_t i = 0; i < 3; ++i) BOOST_TEST(q.value()[i] == p.value()[i]);
    BOOST_TEST(scaler.get_scale() == 65536.0);
    BOOST_TEST(scaler.skipped() == 0);
}

BOOST_AUTO_TEST_CASE(an_inf_or_nan_gradient_skips_the_step_and_halves_the_scale) {
    for (const float bad : {std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::numeric_limits<float>::quiet_NaN()}) {
        auto p = param_of<float>({1.0, 2.0}), r = param_of<float>(std::vector<double>(100000, 1.0));  // r: several blocks
        optim::SGD<float> sgd({p, r}, optim::SGDOptions(0.1));
        optim::GradScaler<float, Cpu> scaler(optim::GradScalerOptions{1024.0, 2.0, 0.5, 3});
        p.grad() = Tensor<float>::full({2}, 1024.0f);
        r.grad() = Tensor<float>::full({100000}, 2048.0f);
        r.grad()[77777] = bad;
        BOOST_TEST(!scaler.unscale(sgd));
        BOOST_TEST(!scaler.step(sgd));  // skipped: the weights keep their values
        scaler.update();
        BOOST_TEST(p.value()[0] == 1.0f);
        BOOST_TEST(r.value()[0] == 1.0f);
        BOOST_TEST(sgd.step_count() == 0);
        BOOST_TEST(scaler.get_scale() == 512.0);
        BOOST_TEST(scaler.skipped() == 1);
        BOOST_TEST(scaler.state().growth_tracker == 0);
    }
}

BOOST_AUTO_TEST_CASE(the_scale_grows_after_growth_interval_finite_steps_and_an_overflow_resets_the_count) {
    auto p = param_of<float>({1.0});
    optim::SGD<float> sgd({p}, optim::SGDOptions(0.0));
    optim::GradScaler<float, Cpu> scaler(optim::GradScalerOptions{8.0, 2.0, 0.25, 3});
    const auto step_with = [&](float g) {
        p.grad() = Tensor<float>::full({1}, g);
        scaler.step(sgd);
        scaler.update();
    };
    step_with(1.0f);
    step_with(1.0f);
    BOOST_TEST(scaler.get_scale() == 8.0);
    BOOST_TEST(scaler.state().growth_tracker == 2);
    step_with(std::numeric_limits<float>::infinity());  // backoff 0.25, count back to 0
    BOOST_TEST(scaler.get_scale() == 2.0);
    step_with(1.0f);
    step_with(1.0f);
    BOOST_TEST(scaler.get_scale() == 2.0);
    step_with(1.0f);  // third finite step in a row: growth
    BOOST_TEST(scaler.get_scale() == 4.0);
    BOOST_TEST(scaler.state().growth_tracker == 0);
    BOOST_TEST(sgd.step_count() == 5);
}

BOOST_AUTO_TEST_CASE(growth_stops_below_float_overflow) {
    auto p = param_of<float>({1.0});
    optim::SGD<float> sgd({p}, optim::SGDOptions(0.0));
    optim::GradScaler<float, Cpu> scaler(optim::GradScalerOptions{std::ldexp(1.0, 127), 2.0, 0.5, 1});
    p.grad() = Tensor<float>::full({1}, 0.0f);
    scaler.step(sgd);
    scaler.update();  // 2^128 is not a float: torch keeps the scale
    BOOST_TEST(scaler.get_scale() == std::ldexp(1.0, 127));
}

BOOST_AUTO_TEST_CASE(state_round_trips_and_misuse_is_refused_with_one_line) {
    optim::GradScaler<float, Cpu> a(optim::GradScalerOptions{16.0, 2.0, 0.5, 10}), b;
    auto p = param_of<float>({1.0});
    optim::SGD<float> sgd({p}, optim::SGDOptions(0.1));
    p.grad() = Tensor<float>::full({1}, 1.0f);
    a.step(sgd);
    a.update();
    b.load_state(a.state());
    BOOST_TEST(b.get_scale() == 16.0);
    BOOST_TEST(b.state().growth_tracker == 1);

    BOOST_CHECK_EXCEPTION(a.update(), ValueError, message_contains("GradScaler::update: no unscale() or step() since the last update()"));
    a.unscale(sgd);
    BOOST_CHECK_EXCEPTION(a.unscale(sgd), ValueError, message_contains("GradScaler::unscale: already called since the last update()"));
    BOOST_CHECK_EXCEPTION(b.load_state(optim::GradScalerState{0.0, 0}), ValueError, message_contains("invalid state (scale 0"));
    BOOST_CHECK_EXCEPTION(optim::GradScaler<float>(optim::GradScalerOptions{-1.0, 2.0, 0.5, 1}), ValueError,
                          message_contains("init_scale must be finite and > 0"));
    BOOST_CHECK_EXCEPTION(optim::GradScaler<float>(optim::GradScalerOptions{1.0, 1.0, 0.5, 1}), ValueError,
                          message_contains("growth_factor must be > 1"));
    BOOST_CHECK_EXCEPTION(optim::GradScaler<float>(optim::GradScalerOptions{1.0, 2.0, 1.0, 1}), ValueError,
                          message_contains("backoff_factor must be in (0, 1)"));
    BOOST_CHECK_EXCEPTION(optim::GradScaler<float>(optim::GradScalerOptions{1.0, 2.0, 0.5, 0}), ValueError,
                          message_contains("growth_interval must be >= 1"));
}

BOOST_AUTO_TEST_SUITE_END()
