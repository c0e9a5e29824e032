// SPDX-License-Identifier: MIT
// device.hpp: which backend a program runs on, from runtime.device (programs only).
// cpu | cuda | auto (= cuda when a GPU is present). Only a translation unit compiled by nvcc has
// the CUDA backend (backend_available<Cuda>); there the program instantiates its work for both
// Tensor<float, Cpu> and Tensor<float, Cuda> and picks one at run time. In a g++ build asking for
// cuda is one clear error.
#pragma once

#include <medimg/medimg.hpp>

/// True when `program` should run on Gpu (medimg::Cuda) for this config. Also applies
/// runtime.precision: on the GPU it becomes the backend's precision; bf16 / fp16 on the CPU
/// (auto without a GPU, or a build without CUDA) is one clear error.
template <class Gpu>
bool use_gpu(const medimg::io::Config& cfg, const char* program) {
    using namespace medimg;
    const Precision precision = parse_precision(cfg.runtime.precision);
    const auto cpu_only = [&](const char* why) {
        MEDIMG_CHECK(precision == Precision::fp32, ConfigError, "config: ", cfg.source, ": 'runtime.precision' is ",
                     cfg.runtime.precision, " but ", program, " runs on the CPU here (", why,
                     "), which computes in fp32 only; use fp32 or a CUDA device");
        return false;
    };
    if constexpr (backend_available<Gpu>) {
        const int gpus = Memory<Gpu>::device_count();
        if (cfg.runtime.device == "cuda" || (cfg.runtime.device == "auto" && gpus > 0)) {
            MEDIMG_CHECK(gpus > 0, ConfigError, "config: ", cfg.source,
                         ": 'runtime.device' is cuda but no CUDA backend is usable here: this build has one, but no CUDA "
                         "device was found (use cpu or auto)");
            PrecisionControl<Gpu>::set(precision);
            return true;
        }
        return cpu_only("runtime.device auto found no CUDA device");
    } else {
        MEDIMG_CHECK(cfg.runtime.device != "cuda", ConfigError, "config: ", cfg.source,
                     ": 'runtime.device' is cuda but this build of ", program, " has no CUDA backend (use cpu or auto)");
        return cpu_only("this build has no CUDA backend");
    }
}

/// `t` on backend B (the tensor itself when B is the host).
template <class B, class T>
medimg::Tensor<T, B> on_backend(const medimg::Tensor<T, medimg::Cpu>& t) {
    if constexpr (std::is_same_v<B, medimg::Cpu>)
        return t;
    else
        return t.template to<B>();
}
/// `t` on the host.
template <class T, class B>
medimg::Tensor<T, medimg::Cpu> on_host(const medimg::Tensor<T, B>& t) {
    if constexpr (std::is_same_v<B, medimg::Cpu>)
        return t;
    else
        return t.template to<medimg::Cpu>();
}
