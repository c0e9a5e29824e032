// SPDX-License-Identifier: MIT
// rng.hpp: Rng, a seeded generator that gives the same numbers on every machine and compiler.
// The engine is xoshiro256** (Blackman & Vigna 2018) seeded through splitmix64; uniforms and
// normals are computed here rather than with <random>'s distributions, whose output the C++
// standard leaves to each library. Not cryptographic.
#pragma once

#include <cmath>
#include <cstdint>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"

namespace medimg {

class Rng {
public:
    explicit Rng(std::uint64_t seed = 0) { reseed(seed); }

    void reseed(std::uint64_t seed) {
        std::uint64_t x = seed;
        for (auto& s : s_) s = splitmix64(x);
        has_spare_ = false;
    }
    /// The next 64 random bits.
    std::uint64_t next_u64() {
        const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = rotl(s_[3], 45);
        return result;
    }
    /// Uniform in [0, 1) with 53 random bits.
    double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
    double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
    /// Uniform integer in [0, n), unbiased (rejection on the top of the range).
    std::uint64_t randint(std::uint64_t n) {
        MEDIMG_CHECK(n > 0, ValueError, "Rng::randint: empty range");
        const std::uint64_t limit = UINT64_MAX - UINT64_MAX % n;
        std::uint64_t x;
        do x = next_u64(); while (x >= limit);
        return x % n;
    }
    /// Normal(mean, std) by the Box-Muller transform, in double.
    double normal(double mean = 0.0, double std = 1.0) {
        if (has_spare_) {
            has_spare_ = false;
            return mean + std * spare_;
        }
        double u1;
        do u1 = uniform(); while (u1 <= 0.0);
        const double u2 = uniform();
        const double r = std::sqrt(-2.0 * std::log(u1));
        const double kTwoPi = 6.283185307179586476925;
        spare_ = r * std::sin(kTwoPi * u2);
        has_spare_ = true;
        return mean + std * r * std::cos(kTwoPi * u2);
    }
    /// A generator derived from this one (for per-worker or per-epoch streams).
    Rng fork() { return Rng(next_u64()); }

    /// Fills a host tensor with Uniform[lo, hi).
    template <class T>
    void fill_uniform(Tensor<T, Cpu>& t, double lo, double hi) {
        for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<T>(uniform(lo, hi));
    }
    /// Fills a host tensor with Normal(mean, std).
    template <class T>
    void fill_normal(Tensor<T, Cpu>& t, double mean, double std) {
        for (std::int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<T>(normal(mean, std));
    }

private:
    static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
    static std::uint64_t splitmix64(std::uint64_t& x) {
        std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }
    std::uint64_t s_[4]{};
    double spare_ = 0.0;
    bool has_spare_ = false;
};

}  // namespace medimg
