// SPDX-License-Identifier: MIT
// error.hpp: the exception family and the always-on argument check.
// Every message starts with the API name (a greppable prefix) and prints the values at fault:
//   "conv2d_forward: input has 3 channels but weight expects 1 (input [8,3,224,224], weight [64,1,7,7])".
// The library throws and never calls exit(); programs catch at main and print one line.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace medimg {

/// Base of every exception medimg throws.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& what) : std::runtime_error(what) {}
};
/// Thrown when tensor ranks or dimensions do not fit an operation.
class ShapeError : public Error { using Error::Error; };
/// Thrown for a device mismatch or an unsupported backend/dtype combination.
class BackendError : public Error { using Error::Error; };
/// Thrown when the CUDA runtime, cuDNN or cuBLAS reports a failure.
class CudaError : public Error { using Error::Error; };
/// Thrown when a file cannot be read, written or parsed (images, checkpoints, safetensors, CSV).
class IoError : public Error { using Error::Error; };
/// Thrown for a bad configuration key, type or value (YAML config, command-line overrides, options).
class ConfigError : public Error { using Error::Error; };
/// Thrown for an invalid argument value (negative learning rate, zero stride, ...).
class ValueError : public Error { using Error::Error; };

namespace detail {
/// Streams every argument into one string; used to build messages without a format library.
template <class... Args>
std::string concat(Args&&... args) {
    std::ostringstream os;
    (os << ... << std::forward<Args>(args));
    return os.str();
}
}  // namespace detail
}  // namespace medimg

/// Always-on check for the front door: MEDIMG_CHECK(cond, ShapeError, "fn: ", what, ...).
#define MEDIMG_CHECK(cond, ErrorType, ...)                                   \
    do {                                                                     \
        if (!(cond)) throw ::medimg::ErrorType(::medimg::detail::concat(__VA_ARGS__)); \
    } while (0)

/// Debug-only invariant for hot loops; compiled out under NDEBUG.
#ifdef NDEBUG
#  define MEDIMG_ASSERT(cond) ((void)0)
#else
#  include <cassert>
#  define MEDIMG_ASSERT(cond) assert(cond)
#endif
