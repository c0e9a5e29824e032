// SPDX-License-Identifier: MIT
// safetensors.hpp: .safetensors read/write (https://github.com/huggingface/safetensors): u64 LE header
// length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets"}, "__metadata__": {str: str}}, then
// the little-endian data buffer. SafetensorsFile::load reads the file once and validates it up front as the
// reference does (entries sorted by offset tile the buffer exactly); keys() are in data-offset order;
// tensor<T>() converts any stored dtype to T (F16/BF16 exactly). SafetensorsWriter sorts keys, lays data out
// in that order, space-pads the header to 8 bytes and writes atomically (io/atomic_file.hpp).
// Errors: IoError "safetensors: <file>: ..." (load, write), ValueError "SafetensorsWriter::..." (arguments).
// Deliberately not here: mmap/lazy loading, F8/U16/U32/U64 dtypes, big-endian hosts, non-POSIX systems.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/io/atomic_file.hpp"
#include "medimg/io/input_file.hpp"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "medimg/io/safetensors.hpp: safetensors data is little-endian; big-endian hosts are not supported"
#endif

namespace medimg::io {

// ---------------------------------------------------------------------------------------------
// Element types
// ---------------------------------------------------------------------------------------------

/// The safetensors element types medimg reads and writes (names as in the format: "F32", "BF16", ...).
enum class DType { F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL };

/// The format's name for a dtype ("F32", "BF16", "BOOL", ...).
inline const char* dtype_name(DType d) {
    switch (d) {
        case DType::F64: return "F64";
        case DType::F32: return "F32";
        case DType::F16: return "F16";
        case DType::BF16: return "BF16";
        case DType::I64: return "I64";
        case DType::I32: return "I32";
        case DType::I16: return "I16";
        case DType::I8: return "I8";
        case DType::U8: return "U8";
        case DType::BOOL: return "BOOL";
    }
    return "?";
}

/// Bytes per element (BOOL is one byte, 0 or 1).
inline std::size_t dtype_size(DType d) {
    switch (d) {
        case DType::F64:
        case DType::I64: return 8;
        case DType::F32:
        case DType::I32: return 4;
        case DType::F16:
        case DType::BF16:
        case DType::I16: return 2;
        case DType::I8:
        case DType::U8:
        case DType::BOOL: return 1;
    }
    return 0;
}

/// The dtype named `name` ("F32", ...), or nullopt for names medimg does not support.
inline std::optional<DType> dtype_from_name(std::string_view name) {
    for (DType d : {DType::F64, DType::F32, DType::F16, DType::BF16, DType::I64, DType::I32, DType::I16, DType::I8,
                    DType::U8, DType::BOOL})
        if (name == dtype_name(d)) return d;
    return std::nullopt;
}

inline bool dtype_is_floating(DType d) {
    return d == DType::F64 || d == DType::F32 || d == DType::F16 || d == DType::BF16;
}

/// True for the C++ element types that have a native safetensors dtype.
template <class T>
inline constexpr bool has_dtype_v = std::is_same_v<T, bool> ||
                                    (std::is_floating_point_v<T> && (sizeof(T) == 4 || sizeof(T) == 8)) ||
                                    (std::is_integral_v<T> && std::is_signed_v<T> && sizeof(T) <= 8) ||
                                    (std::is_integral_v<T> && sizeof(T) == 1);

/// The native dtype of T: float -> F32, double -> F64, int64_t -> I64, ..., uint8_t -> U8, bool -> BOOL.
template <class T>
constexpr DType dtype_of() {
    static_assert(has_dtype_v<T>,
                  "medimg::io: no safetensors dtype for this element type (use float, double, int64_t, int32_t, "
                  "int16_t, int8_t, uint8_t or bool)");
    if constexpr (std::is_same_v<T, bool>)
        return DType::BOOL;
    else if constexpr (std::is_floating_point_v<T>)
        return sizeof(T) == 8 ? DType::F64 : DType::F32;
    else if constexpr (std::is_signed_v<T>)
        return sizeof(T) == 8 ? DType::I64 : sizeof(T) == 4 ? DType::I32 : sizeof(T) == 2 ? DType::I16 : DType::I8;
    else
        return DType::U8;
}

// ---------------------------------------------------------------------------------------------
// IEEE half (F16) and bfloat16 (BF16) bit conversions, exact in both directions
// ---------------------------------------------------------------------------------------------

namespace detail {

static_assert(std::numeric_limits<float>::is_iec559 && std::numeric_limits<double>::is_iec559,
              "medimg/io/safetensors.hpp: needs IEEE-754 float and double");

/// Rounds |value| = m * 2^e (sign separate) to nearest-even in a binary format with `exp_bits` exponent
/// bits and `man_bits` stored mantissa bits (F16: 5, 10; BF16: 8, 7). Handles subnormal results,
/// underflow to signed zero and overflow to infinity. Returns the bit pattern in the low bits.
inline std::uint32_t round_to_narrow_float(bool negative, std::uint64_t m, int e, int exp_bits, int man_bits) {
    const std::uint32_t sign = negative ? (1u << (exp_bits + man_bits)) : 0u;
    if (m == 0) return sign;
    while (!(m >> 63)) {  // normalise: top bit of m at bit 63, so |value| is in [2^E, 2^(E+1))
        m <<= 1;
        --e;
    }
    const int E = e + 63;
    const int bias = (1 << (exp_bits - 1)) - 1;  // 15 for F16, 127 for BF16
    const int emin = 1 - bias;                   // exponent of the smallest normal
    const std::uint32_t inf = sign | (((1u << exp_bits) - 1u) << man_bits);
    if (E > bias) return inf;   // >= 2^(emax+1) overflows whatever the rounding
    int shift = 63 - man_bits;  // m bits dropped for a normal result (keeps man_bits + implicit 1)
    std::uint32_t base = 0;
    if (E >= emin)
        base = static_cast<std::uint32_t>(E + bias - 1) << man_bits;  // q's implicit bit adds the last 1
    else
        shift += emin - E;        // subnormal: the unit in the last place stays 2^(emin - man_bits)
    if (shift > 64) return sign;  // below half the smallest subnormal
    std::uint64_t q, rem, half;
    if (shift == 64) {
        q = 0, rem = m, half = std::uint64_t{1} << 63;
    } else {
        q = m >> shift, rem = m & ((std::uint64_t{1} << shift) - 1), half = std::uint64_t{1} << (shift - 1);
    }
    std::uint32_t bits = base + static_cast<std::uint32_t>(q);
    if (rem > half || (rem == half && (q & 1u))) ++bits;  // a carry may reach the exponent, up to inf
    return sign | bits;
}

/// A double (exact for every float argument too) to a narrow format; NaN stays NaN (quiet).
inline std::uint32_t narrow_from_double(double x, int exp_bits, int man_bits) {
    std::uint64_t b;
    std::memcpy(&b, &x, sizeof b);
    const bool negative = (b >> 63) != 0;
    const int ex = static_cast<int>((b >> 52) & 0x7ffu);
    const std::uint64_t frac = b & ((std::uint64_t{1} << 52) - 1);
    if (ex == 0x7ff) {
        const std::uint32_t sign = negative ? (1u << (exp_bits + man_bits)) : 0u;
        const std::uint32_t inf = sign | (((1u << exp_bits) - 1u) << man_bits);
        if (frac == 0) return inf;
        const auto payload = static_cast<std::uint32_t>(frac >> (52 - man_bits));  // top payload bits
        return inf | (1u << (man_bits - 1)) | payload;                             // quiet bit set
    }
    if (ex == 0) return round_to_narrow_float(negative, frac, -1074, exp_bits, man_bits);
    return round_to_narrow_float(negative, frac | (std::uint64_t{1} << 52), ex - 1075, exp_bits, man_bits);
}

/// An integer to a narrow format with one rounding (no detour through double).
inline std::uint32_t narrow_from_int64(std::int64_t v, int exp_bits, int man_bits) {
    const bool negative = v < 0;
    const std::uint64_t mag =
        negative ? std::uint64_t{0} - static_cast<std::uint64_t>(v) : static_cast<std::uint64_t>(v);
    return round_to_narrow_float(negative, mag, 0, exp_bits, man_bits);
}

}  // namespace detail

/// IEEE binary16 bits -> float, exact (subnormals, +-0, +-inf and NaN payloads preserved).
inline float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t ex = (h >> 10) & 0x1fu;
    std::uint32_t man = h & 0x3ffu;
    std::uint32_t bits;
    if (ex == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else if (ex != 0) {
        bits = sign | ((ex + 112u) << 23) | (man << 13);  // rebias: 127 - 15 = 112
    } else if (man == 0) {
        bits = sign;
    } else {  // subnormal man * 2^-24: normalise so bit 10 is set, k shifts -> exponent -14 - k
        std::uint32_t k = 0;
        while (!(man & 0x400u)) {
            man <<= 1;
            ++k;
        }
        bits = sign | ((113u - k) << 23) | ((man & 0x3ffu) << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

/// bfloat16 bits -> float, exact (bfloat16 is the top half of a float).
inline float bfloat16_to_float(std::uint16_t h) {
    const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

/// double (or float, promoted exactly) -> IEEE binary16 bits, round to nearest even; overflow -> inf.
inline std::uint16_t float_to_half(double x) {
    return static_cast<std::uint16_t>(detail::narrow_from_double(x, 5, 10));
}

/// double (or float, promoted exactly) -> bfloat16 bits, round to nearest even (one rounding from double).
inline std::uint16_t float_to_bfloat16(double x) {
    return static_cast<std::uint16_t>(detail::narrow_from_double(x, 8, 7));
}

// ---------------------------------------------------------------------------------------------
// Element conversion between stored bytes and C++ values
// ---------------------------------------------------------------------------------------------

namespace detail {

template <class S>
S load_le(const std::uint8_t* p) {
    S v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

/// A floating value to T: floats by IEEE conversion (inf/NaN/out-of-range pass through as IEEE does),
/// integers by truncation toward zero, false when the truncated value does not fit T (or is NaN).
template <class T>
bool convert_from_double(double v, T& out) {
    if constexpr (std::is_same_v<T, bool>) {
        out = v != 0.0;
    } else if constexpr (std::is_floating_point_v<T>) {
        out = static_cast<T>(v);
    } else {
        const double t = std::trunc(v);
        const double hi = std::ldexp(1.0, std::numeric_limits<T>::digits);  // 2^63 for int64, 2^8 for uint8
        const double lo = std::is_signed_v<T> ? -hi : 0.0;
        if (!(t >= lo && t < hi)) return false;
        out = static_cast<T>(t);
    }
    return true;
}

/// An integer value to T; false when it does not fit an integral T.
template <class T>
bool convert_from_int(std::int64_t v, T& out) {
    if constexpr (std::is_same_v<T, bool>) {
        out = v != 0;
    } else if constexpr (std::is_floating_point_v<T>) {
        out = static_cast<T>(v);
    } else if constexpr (std::is_signed_v<T>) {
        if (v < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
            v > static_cast<std::int64_t>(std::numeric_limits<T>::max()))
            return false;
        out = static_cast<T>(v);
    } else {
        if (v < 0 || static_cast<std::uint64_t>(v) > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))
            return false;
        out = static_cast<T>(v);
    }
    return true;
}

template <class T, class Get, class Convert, class Fail>
void decode_loop(const std::uint8_t* src, std::size_t stride, std::int64_t n, T* dst, Get get, Convert convert,
                 Fail fail) {
    for (std::int64_t i = 0; i < n; ++i) {
        const auto v = get(src + static_cast<std::size_t>(i) * stride);
        if (!convert(v, dst[i])) fail(i, v);
    }
}

/// Decodes n elements stored as `dt` at src (unaligned, little-endian) into dst.
/// fail(index, value) is called (and must throw) for a value that does not fit T.
template <class T, class Fail>
void decode_elements(const std::uint8_t* src, DType dt, std::int64_t n, T* dst, Fail fail) {
    if (n == 0) return;
    if constexpr (!std::is_same_v<T, bool>) {
        if (dt == dtype_of<T>()) {  // same representation: one copy (BOOL goes the long way to normalise to 0/1)
            std::memcpy(dst, src, static_cast<std::size_t>(n) * sizeof(T));
            return;
        }
    }
    const auto from_double = [](double v, T& out) { return convert_from_double<T>(v, out); };
    const auto from_int = [](std::int64_t v, T& out) { return convert_from_int<T>(v, out); };
    const std::size_t w = dtype_size(dt);
    switch (dt) {
        case DType::F64:
            return decode_loop(
                src, w, n, dst, [](const std::uint8_t* p) { return load_le<double>(p); }, from_double, fail);
        case DType::F32:
            return decode_loop(
                src, w, n, dst, [](const std::uint8_t* p) { return double(load_le<float>(p)); }, from_double, fail);
        case DType::F16:
            return decode_loop(
                src, w, n, dst, [](const std::uint8_t* p) { return double(half_to_float(load_le<std::uint16_t>(p))); },
                from_double, fail);
        case DType::BF16:
            return decode_loop(
                src, w, n, dst,
                [](const std::uint8_t* p) { return double(bfloat16_to_float(load_le<std::uint16_t>(p))); }, from_double,
                fail);
        case DType::I64:
            return decode_loop(
                src, w, n, dst, [](const std::uint8_t* p) { return load_le<std::int64_t>(p); }, from_int, fail);
        case DType::I32:
            return decode_loop(
                src, w, n, dst, [](const std::uint8_t* p) { return std::int64_t(load_le<std::int32_t>(p)); }, from_int,
                fail);
        case DType::I16:
            return decode_loop(
                src, w, n, dst, [](const std::uint8_t* p) { return std::int64_t(load_le<std::int16_t>(p)); }, from_int,
                fail);
        case DType::I8:
            return decode_loop(
                src, w, n, dst, [](const std::uint8_t* p) { return std::int64_t(load_le<std::int8_t>(p)); }, from_int,
                fail);
        case DType::U8:
        case DType::BOOL:
            return decode_loop(
                src, w, n, dst, [](const std::uint8_t* p) { return std::int64_t(*p); }, from_int, fail);
    }
}

template <class D, class T, class Fail>
void encode_int_loop(const T* src, std::int64_t n, std::uint8_t* dst, Fail fail) {
    for (std::int64_t i = 0; i < n; ++i) {
        D d{};
        if (!convert_from_int<D>(static_cast<std::int64_t>(src[i]), d)) fail(i, static_cast<std::int64_t>(src[i]));
        std::memcpy(dst + static_cast<std::size_t>(i) * sizeof(D), &d, sizeof(D));
    }
}

/// Encodes n values of T as dtype `dt` into dst (little-endian). Floats round to nearest even;
/// integer targets need an integral T and call fail(index, value) (which must throw) when out of range.
template <class T, class Fail>
void encode_elements(const T* src, std::int64_t n, DType dt, std::uint8_t* dst, Fail fail) {
    if (n == 0) return;
    const auto to_narrow = [](T v, int eb, int mb) -> std::uint16_t {
        if constexpr (std::is_floating_point_v<T>)
            return static_cast<std::uint16_t>(narrow_from_double(v, eb, mb));
        else
            return static_cast<std::uint16_t>(narrow_from_int64(static_cast<std::int64_t>(v), eb, mb));
    };
    switch (dt) {
        case DType::F64:
            for (std::int64_t i = 0; i < n; ++i) {
                const double v = static_cast<double>(src[i]);
                std::memcpy(dst + 8 * i, &v, 8);
            }
            return;
        case DType::F32:
            for (std::int64_t i = 0; i < n; ++i) {
                const float v = static_cast<float>(src[i]);
                std::memcpy(dst + 4 * i, &v, 4);
            }
            return;
        case DType::F16:
        case DType::BF16: {
            const int eb = dt == DType::F16 ? 5 : 8, mb = dt == DType::F16 ? 10 : 7;
            for (std::int64_t i = 0; i < n; ++i) {
                const std::uint16_t v = to_narrow(src[i], eb, mb);
                std::memcpy(dst + 2 * i, &v, 2);
            }
            return;
        }
        case DType::BOOL:
            for (std::int64_t i = 0; i < n; ++i) dst[i] = src[i] != T(0) ? 1 : 0;
            return;
        default: break;
    }
    if constexpr (std::is_integral_v<T>) {
        switch (dt) {
            case DType::I64: return encode_int_loop<std::int64_t>(src, n, dst, fail);
            case DType::I32: return encode_int_loop<std::int32_t>(src, n, dst, fail);
            case DType::I16: return encode_int_loop<std::int16_t>(src, n, dst, fail);
            case DType::I8: return encode_int_loop<std::int8_t>(src, n, dst, fail);
            case DType::U8: return encode_int_loop<std::uint8_t>(src, n, dst, fail);
            default: break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Message helpers and small POSIX file utilities
// ---------------------------------------------------------------------------------------------

/// A JSON-quoted, control-character-escaped, length-capped rendering of a user string for messages.
inline std::string quoted(const std::string& s, std::size_t cap = 120) {
    std::string q = nlohmann::json(s).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (q.size() > cap) q = q.substr(0, cap - 4) + "...\"";
    return q;
}

/// A compact rendering of a JSON value for messages (capped; never multi-line).
inline std::string shown(const nlohmann::json& j, std::size_t cap = 60) {
    std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (s.size() > cap) s = s.substr(0, cap - 3) + "...";
    return s;
}

/// "[2,3]" for raw (not yet validated) dimensions.
inline std::string dims_string(const std::vector<std::uint64_t>& dims) {
    std::string s = "[";
    for (std::size_t i = 0; i < dims.size(); ++i) s += (i ? "," : "") + std::to_string(dims[i]);
    return s + "]";
}

/// "<prefix>no tensor "k" (N tensors; closest: ...)", suggesting the names that share the longest
/// prefix with the one asked for (typos, a missing "module."); shared by the weights-file readers.
inline std::string missing_key_message(const std::string& prefix, const std::string& key,
                                       const std::vector<std::string>& names) {
    std::vector<std::pair<std::size_t, const std::string*>> ranked;
    for (const std::string& n : names) {
        const auto mm = std::mismatch(key.begin(), key.end(), n.begin(), n.end());
        ranked.emplace_back(static_cast<std::size_t>(mm.first - key.begin()), &n);
    }
    std::sort(ranked.begin(), ranked.end(), [](const auto& a, const auto& b) {
        return a.first != b.first ? a.first > b.first : *a.second < *b.second;
    });
    std::string list;
    for (std::size_t i = 0; i < ranked.size() && i < 5; ++i) list += (i ? ", " : "") + quoted(*ranked[i].second, 60);
    if (ranked.size() > 5) list += ", ...";
    return ::medimg::detail::concat(prefix, "no tensor ", quoted(key), " (", names.size(),
                                    names.size() == 1 ? " tensor" : " tensors", names.empty() ? "" : "; closest: ",
                                    list, ")");
}

/// An open regular file: the descriptor, its size, and exact reads with messages "<who>: <path>: ...".
/// Anything but a regular file is refused by what it is, before it is opened (io/input_file.hpp).
class InputFile {
public:
    InputFile(const std::string& path, const char* who) : path_(path), who_(who) {
        check_input_file(path, who);
        fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // O_NONBLOCK: a FIFO swapped in cannot block open()
        if (fd_ < 0) {
            const int err = errno;
            throw IoError(::medimg::detail::concat(who, ": cannot open ", path, ": ", errno_message(err)));
        }
        struct ::stat st {};
        if (::fstat(fd_, &st) != 0) {
            const int err = errno;
            ::close(fd_);
            throw IoError(::medimg::detail::concat(who, ": cannot stat ", path, ": ", errno_message(err)));
        }
        try {
            check_opened_file(st.st_mode, path, who);
        } catch (...) {
            ::close(fd_);
            throw;
        }
        size_ = static_cast<std::uint64_t>(st.st_size);
    }
    InputFile(const InputFile&) = delete;
    InputFile& operator=(const InputFile&) = delete;
    ~InputFile() { ::close(fd_); }

    std::uint64_t size() const { return size_; }
    /// Appends the next `count` bytes to `out`; a file that ends early (it shrank) is an IoError.
    void read_into(std::vector<std::uint8_t>& out, std::uint64_t count) { read_(out, count, -1); }
    /// Appends bytes [offset, offset + count) to `out` (pread: read_into's position is not moved).
    void read_at(std::vector<std::uint8_t>& out, std::uint64_t offset, std::uint64_t count) {
        read_(out, count, static_cast<std::int64_t>(offset));
    }
    /// "<who>: <path>: file of N bytes exceeds the limit of M (<limit_name>; refused before reading)".
    void check_size(std::uint64_t max_bytes, const char* limit_name) const {
        MEDIMG_CHECK(size_ <= max_bytes, IoError, who_, ": ", path_, ": file of ", size_, " bytes exceeds the limit of ",
                     max_bytes, " (", limit_name, "; refused before reading)");
    }

private:
    // offset < 0: from the current position (read), else from `offset` (pread).
    void read_(std::vector<std::uint8_t>& out, std::uint64_t count, std::int64_t offset) {
        const std::size_t start = out.size();
        out.resize(start + static_cast<std::size_t>(count));
        std::size_t got = 0;
        while (got < count) {
            std::uint8_t* to = out.data() + start + got;
            const std::size_t want = std::min<std::size_t>(static_cast<std::size_t>(count) - got, std::size_t{1} << 30);
            const ::ssize_t r = offset < 0 ? ::read(fd_, to, want)
                                           : ::pread(fd_, to, want, static_cast<::off_t>(offset) + static_cast<::off_t>(got));
            if (r < 0) {
                if (errno == EINTR) continue;
                const int err = errno;
                throw IoError(::medimg::detail::concat(who_, ": cannot read ", path_, ": ", errno_message(err)));
            }
            MEDIMG_CHECK(r > 0, IoError, who_, ": ", path_, ": file shrank while being read (",
                         (offset < 0 ? start : static_cast<std::uint64_t>(offset)) + got, " of ", size_, " bytes)");
            got += static_cast<std::size_t>(r);
        }
    }

    std::string path_;
    const char* who_;
    int fd_ = -1;
    std::uint64_t size_ = 0;
};

/// Reads a whole regular file of at most `max_bytes`; `who` starts each message ("safetensors",
/// "pth", ...). The size is checked from fstat before anything is allocated or read.
inline std::vector<std::uint8_t> read_file(const std::string& path, const char* who = "safetensors",
                                           std::uint64_t max_bytes = std::numeric_limits<std::uint64_t>::max(),
                                           const char* limit_name = "") {
    InputFile f(path, who);
    f.check_size(max_bytes, limit_name);
    std::vector<std::uint8_t> bytes;
    f.read_into(bytes, f.size());
    return bytes;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------------------

/// A validated safetensors file held in memory. Every structural problem is reported by load*(),
/// never later; tensor<T>() can only fail for a missing key or a value that does not fit an integral T.
class SafetensorsFile {
public:
    /// The reference implementation's header limit (MAX_HEADER_SIZE in safetensors/src/tensor.rs).
    static constexpr std::uint64_t max_header_bytes = 100'000'000;
    /// Deeper JSON nesting than this is rejected before it can exhaust the stack (a valid header needs 3).
    static constexpr int max_json_depth = 64;

    /// Largest file load() accepts (16 GiB: a ViT-L/16 with its Adam state is about 3.6 GB).
    static constexpr std::uint64_t max_file_bytes = std::uint64_t{16} << 30;

    /// Validates the file and reads it once. Header first: the 8-byte length and the JSON are read
    /// and checked (the tensors must tile exactly the bytes the file has after the header, and the
    /// file must be at most max_file_bytes) before the data is read, so a file of gigabytes whose
    /// header does not account for them is refused after reading its header only.
    /// Throws IoError ("safetensors: <path>: ...").
    static SafetensorsFile load(const std::string& path) {
        SafetensorsFile f;
        f.name_ = path;
        detail::InputFile in(path, "safetensors");
        const std::uint64_t size = in.size();
        in.read_into(f.bytes_, std::min<std::uint64_t>(size, 8));
        if (size >= 8) {
            const auto n = detail::load_le<std::uint64_t>(f.bytes_.data());
            if (n != 0 && n <= max_header_bytes && n <= size - 8) in.read_into(f.bytes_, n);  // else parse_ says why
        }
        f.parse_(size);  // validates the header against the file's size; reads nothing
        MEDIMG_CHECK(size <= max_file_bytes, IoError, f.prefix_(), "file of ", size, " bytes exceeds the limit of ",
                     max_file_bytes, " (SafetensorsFile::max_file_bytes; refused before reading its data)");
        in.read_into(f.bytes_, size - f.bytes_.size());
        return f;
    }
    /// Validates a file image already in memory; `name` stands for the file in messages.
    static SafetensorsFile load_from_memory(std::vector<std::uint8_t> bytes, std::string name = "<memory>") {
        SafetensorsFile f;
        f.name_ = std::move(name);
        f.bytes_ = std::move(bytes);
        f.parse_(f.bytes_.size());
        return f;
    }
    static SafetensorsFile load_from_memory(const void* data, std::size_t size, std::string name = "<memory>") {
        const auto* p = static_cast<const std::uint8_t*>(data);
        return load_from_memory(std::vector<std::uint8_t>(p, p + size), std::move(name));
    }

    /// The path (or the name given to load_from_memory) used in messages.
    const std::string& name() const { return name_; }
    /// Tensor names in data-offset order (the order of their bytes in the file); __metadata__ excluded.
    std::vector<std::string> keys() const {
        std::vector<std::string> k;
        k.reserve(entries_.size());
        for (const Entry& e : entries_) k.push_back(e.key);
        return k;
    }
    std::size_t size() const { return entries_.size(); }
    bool contains(const std::string& key) const { return index_.count(key) != 0; }
    DType dtype(const std::string& key) const { return entry_(key).dtype; }
    Shape shape(const std::string& key) const { return entry_(key).shape; }
    /// The tensor's stored bytes, (begin, end) relative to the data buffer.
    std::pair<std::uint64_t, std::uint64_t> data_offsets(const std::string& key) const {
        const Entry& e = entry_(key);
        return {e.begin, e.end};
    }
    /// The "__metadata__" map (empty when the file has none).
    const std::map<std::string, std::string>& metadata() const { return metadata_; }

    /// A new tensor holding `key` converted to T: floats exactly or by IEEE rounding (inf/NaN and
    /// out-of-range values pass through as IEEE conversion does), integers checked (IoError when a
    /// value does not fit T; floats to integers truncate toward zero), bool as value != 0.
    template <class T>
    Tensor<T, Cpu> tensor(const std::string& key) const {
        static_assert(has_dtype_v<T>,
                      "medimg::io: SafetensorsFile::tensor<T> needs float, double, int64_t, int32_t, "
                      "int16_t, int8_t, uint8_t or bool");
        const Entry& e = entry_(key);
        auto t = Tensor<T, Cpu>::empty(e.shape);  // e.g. (C_out, C_in, kH, kW) for a conv weight
        const std::uint8_t* src = bytes_.data() + data_start_ + e.begin;
        detail::decode_elements(src, e.dtype, t.numel(), t.data(), [&](std::int64_t i, auto value) {
            throw IoError(::medimg::detail::concat(prefix_(), "tensor ", detail::quoted(e.key), ": element ", i,
                                                   " (value ", value, ") of ", dtype_name(e.dtype),
                                                   " does not fit the requested ", dtype_name(dtype_of<T>())));
        });
        return t;
    }

private:
    struct Entry {
        std::string key;
        DType dtype;
        Shape shape;
        std::uint64_t begin, end;
    };

    SafetensorsFile() = default;

    std::string prefix_() const { return "safetensors: " + name_ + ": "; }

    const Entry& entry_(const std::string& key) const {
        const auto it = index_.find(key);
        if (it != index_.end()) return entries_[it->second];
        throw IoError(detail::missing_key_message(prefix_(), key, keys()));
    }

    // Parses and validates the header held in bytes_ (see the file header) against a file of
    // `size` bytes; fills entries_, index_, metadata_. bytes_ needs to hold only the 8-byte length
    // and the header (load() reads the data after this has passed).
    void parse_(std::uint64_t size) {
        const std::string p = prefix_();
        MEDIMG_CHECK(size >= 8, IoError, p, "file is ", size, " bytes, shorter than the 8-byte header length");
        const auto n = detail::load_le<std::uint64_t>(bytes_.data());
        MEDIMG_CHECK(n != 0, IoError, p, "header length is 0; expected a JSON object");
        MEDIMG_CHECK(n <= max_header_bytes, IoError, p, "header length ", n, " exceeds the limit of ", max_header_bytes,
                     " bytes");
        MEDIMG_CHECK(n <= size - 8, IoError, p, "header length ", n, " points past the end of the ", size,
                     "-byte file");
        data_start_ = 8 + static_cast<std::size_t>(n);
        const std::uint64_t buffer_size = size - data_start_;

        const nlohmann::json header =
            parse_json_(reinterpret_cast<const char*>(bytes_.data() + 8), static_cast<std::size_t>(n));
        MEDIMG_CHECK(header.is_object(), IoError, p, "header is not a JSON object (got ", header.type_name(), ")");

        for (const auto& item : header.items()) {
            if (item.key() == "__metadata__")
                parse_metadata_(item.value());
            else
                entries_.push_back(parse_entry_(item.key(), item.value(), buffer_size));
        }

        // The reference's rule: sorted by offsets, the entries tile [0, buffer_size) with no gap or overlap.
        std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) {
            return a.begin != b.begin ? a.begin < b.begin : a.end != b.end ? a.end < b.end : a.key < b.key;
        });
        std::uint64_t pos = 0;
        const Entry* prev = nullptr;
        for (const Entry& e : entries_) {
            MEDIMG_CHECK(e.begin >= pos, IoError, p, "tensor ", detail::quoted(e.key), " (data_offsets [", e.begin,
                         ", ", e.end, "]) overlaps tensor ", prev ? detail::quoted(prev->key) : "", " (data_offsets [",
                         prev ? prev->begin : 0, ", ", pos, "])");
            MEDIMG_CHECK(e.begin == pos, IoError, p, "gap of ", e.begin - pos, " bytes before tensor ",
                         detail::quoted(e.key), " (data_offsets [", e.begin, ", ", e.end,
                         "] but the previous tensor ends at ", pos, "); entries must tile the data buffer");
            pos = e.end;
            prev = &e;
        }
        MEDIMG_CHECK(pos == buffer_size, IoError, p, "data buffer has ", buffer_size,
                     " bytes but the tensors cover only ", pos, " (", buffer_size - pos, " trailing bytes)");
        for (std::size_t i = 0; i < entries_.size(); ++i) index_.emplace(entries_[i].key, i);
    }

    // Parses the header text, rejecting duplicate keys (which JSON parsers silently merge) and deep nesting.
    nlohmann::json parse_json_(const char* text, std::size_t n) const {
        const std::string p = prefix_();
        using json = nlohmann::json;
        std::vector<std::set<std::string>> open_objects;
        const auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
            switch (event) {
                case json::parse_event_t::object_start:
                case json::parse_event_t::array_start:
                    MEDIMG_CHECK(depth < max_json_depth, IoError, p, "header nests JSON deeper than ", max_json_depth,
                                 " levels");
                    if (event == json::parse_event_t::object_start) open_objects.emplace_back();
                    break;
                case json::parse_event_t::object_end:
                    if (!open_objects.empty()) open_objects.pop_back();
                    break;
                case json::parse_event_t::key:
                    if (!open_objects.empty() && parsed.is_string()) {
                        const auto& k = parsed.get_ref<const std::string&>();
                        MEDIMG_CHECK(open_objects.back().insert(k).second, IoError, p, "header repeats key ",
                                     detail::quoted(k), (depth == 1 ? "" : " inside an entry"));
                    }
                    break;
                default: break;
            }
            return true;
        };
        try {
            return json::parse(text, text + n, callback);
        } catch (const json::exception& e) {
            std::string what = e.what();
            const auto close = what.find("] ");
            if (what.rfind("[json.exception.", 0) == 0 && close != std::string::npos) what = what.substr(close + 2);
            if (what.size() > 200) what = what.substr(0, 197) + "...";
            for (char& c : what)  // the parser quotes the bytes it last read: keep the message one printable line
                if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) c = '?';
            throw IoError(::medimg::detail::concat(p, "header is not valid JSON: ", what));
        }
    }

    void parse_metadata_(const nlohmann::json& m) {
        const std::string p = prefix_();
        if (m.is_null()) return;  // the reference reads null as "no metadata"
        MEDIMG_CHECK(m.is_object(), IoError, p, "__metadata__ must be an object of strings, got ", m.type_name(), " ",
                     detail::shown(m));
        for (const auto& kv : m.items()) {
            MEDIMG_CHECK(kv.value().is_string(), IoError, p, "__metadata__ value for ", detail::quoted(kv.key()),
                         " must be a string, got ", kv.value().type_name(), " ", detail::shown(kv.value()));
            metadata_.emplace(kv.key(), kv.value().get<std::string>());
        }
    }

    Entry parse_entry_(const std::string& key, const nlohmann::json& j, std::uint64_t buffer_size) const {
        const std::string p = prefix_() + "tensor " + detail::quoted(key) + ": ";
        MEDIMG_CHECK(j.is_object(), IoError, p, "entry must be a JSON object, got ", j.type_name(), " ",
                     detail::shown(j));
        for (const char* field : {"dtype", "shape", "data_offsets"})
            MEDIMG_CHECK(j.contains(field), IoError, p, "missing \"", field, "\"");
        Entry e;
        e.key = key;

        const auto& jd = j.at("dtype");
        MEDIMG_CHECK(jd.is_string(), IoError, p, "\"dtype\" must be a string, got ", jd.type_name(), " ",
                     detail::shown(jd));
        const auto dt = dtype_from_name(jd.get_ref<const std::string&>());
        MEDIMG_CHECK(dt.has_value(), IoError, p, "unsupported dtype ", detail::quoted(jd.get<std::string>(), 40),
                     " (medimg reads F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)");
        e.dtype = *dt;

        const auto& js = j.at("shape");
        MEDIMG_CHECK(js.is_array(), IoError, p, "\"shape\" must be an array of non-negative integers, got ",
                     js.type_name(), " ", detail::shown(js));
        std::vector<std::uint64_t> dims;
        for (std::size_t i = 0; i < js.size(); ++i) {
            const auto& d = js[i];
            MEDIMG_CHECK(!(d.is_number_integer() && !d.is_number_unsigned()), IoError, p, "shape dimension ", i, " is ",
                         detail::shown(d), ", negative (shape ", detail::shown(js), ")");
            MEDIMG_CHECK(d.is_number_unsigned(), IoError, p, "shape dimension ", i, " is ", detail::shown(d),
                         ", not an integer (shape ", detail::shown(js), ")");
            dims.push_back(d.get<std::uint64_t>());
        }
        MEDIMG_CHECK(dims.size() <= static_cast<std::size_t>(Shape::max_rank), IoError, p, "shape ",
                     detail::dims_string(dims), " has rank ", dims.size(), ", more than medimg's maximum of ",
                     Shape::max_rank);
        // The element count and byte size must fit int64 (as in the reference, any overflow is an error,
        // even when another dimension is 0).
        constexpr std::uint64_t limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
        std::uint64_t numel = 1;
        for (std::uint64_t d : dims) {
            MEDIMG_CHECK(d <= limit && (numel == 0 || d == 0 || numel <= limit / d), IoError, p, "shape ",
                         detail::dims_string(dims), " overflows a 64-bit element count");
            numel *= d;
        }
        const std::uint64_t width = dtype_size(e.dtype);
        MEDIMG_CHECK(numel <= limit / width, IoError, p, "shape ", detail::dims_string(dims), " of ",
                     dtype_name(e.dtype), " overflows a 64-bit byte count");
        std::vector<std::int64_t> sdims(dims.begin(), dims.end());
        e.shape = Shape(sdims);

        const auto& jo = j.at("data_offsets");
        const bool two_unsigned =
            jo.is_array() && jo.size() == 2 && jo[0].is_number_unsigned() && jo[1].is_number_unsigned();
        MEDIMG_CHECK(two_unsigned, IoError, p, "\"data_offsets\" must be two non-negative integers [begin, end], got ",
                     detail::shown(jo));
        e.begin = jo[0].get<std::uint64_t>();
        e.end = jo[1].get<std::uint64_t>();
        MEDIMG_CHECK(e.begin <= e.end, IoError, p, "data_offsets [", e.begin, ", ", e.end, "] are not increasing");
        MEDIMG_CHECK(e.end <= buffer_size, IoError, p, "data_offsets [", e.begin, ", ", e.end,
                     "] end beyond the data buffer of ", buffer_size, " bytes (file truncated?)");
        MEDIMG_CHECK(e.end - e.begin == numel * width, IoError, p, "data_offsets [", e.begin, ", ", e.end, "] hold ",
                     e.end - e.begin, " bytes but shape ", e.shape, " of ", dtype_name(e.dtype), " needs ",
                     numel * width);
        return e;
    }

    std::vector<std::uint8_t> bytes_;  // the whole file
    std::size_t data_start_ = 0;       // 8 + header length
    std::vector<Entry> entries_;       // sorted by data offsets
    std::map<std::string, std::size_t> index_;
    std::map<std::string, std::string> metadata_;
    std::string name_;
};

// ---------------------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------------------

/// Collects tensors (copied at add time) and metadata, then writes one safetensors file.
/// Header keys are sorted bytewise and the data is laid out in the same order.
class SafetensorsWriter {
public:
    /// Adds t under its native dtype (float -> F32, double -> F64, int64_t -> I64, int32_t -> I32,
    /// uint8_t -> U8, int16_t -> I16, int8_t -> I8, bool -> BOOL). Throws ValueError for a key added
    /// twice, the reserved key "__metadata__", a key that is not valid UTF-8, or an undefined tensor.
    template <class T>
    void add(const std::string& key, const Tensor<T, Cpu>& t) {
        add_as(key, t, dtype_of<T>());
    }

    /// Adds t stored as `dtype`: float targets round to nearest even (F16/BF16 from the exact value,
    /// overflow -> inf); integer and BOOL targets need an integral (or bool) T, and an integer value that
    /// does not fit the target throws ValueError.
    template <class T>
    void add_as(const std::string& key, const Tensor<T, Cpu>& t, DType dtype) {
        static_assert(has_dtype_v<T>,
                      "medimg::io: SafetensorsWriter::add needs float, double, int64_t, int32_t, "
                      "int16_t, int8_t, uint8_t or bool");
        const std::string p = "SafetensorsWriter::add: tensor " + detail::quoted(key) + ": ";
        check_name_(key, "SafetensorsWriter::add: tensor name");
        MEDIMG_CHECK(key != "__metadata__", ValueError, p, "the name is reserved for the metadata map");
        MEDIMG_CHECK(!tensors_.count(key), ValueError, p, "added twice");
        MEDIMG_CHECK(t.defined(), ValueError, p, "the tensor is undefined");
        MEDIMG_CHECK(std::is_integral_v<T> || dtype_is_floating(dtype), ValueError, p, "refusing to store a ",
                     dtype_name(dtype_of<T>()), " tensor as ", dtype_name(dtype), " (lossy); convert it first");
        Pending pend;
        pend.dtype = dtype;
        pend.shape = t.shape();
        pend.bytes.resize(static_cast<std::size_t>(t.numel()) * dtype_size(dtype));
        detail::encode_elements(t.data(), t.numel(), dtype, pend.bytes.data(), [&](std::int64_t i, std::int64_t v) {
            throw ValueError(
                ::medimg::detail::concat(p, "element ", i, " (value ", v, ") does not fit ", dtype_name(dtype)));
        });
        tensors_.emplace(key, std::move(pend));
    }

    /// Sets (or replaces) one "__metadata__" entry.
    void set_metadata(const std::string& key, const std::string& value) {
        check_name_(key, "SafetensorsWriter::set_metadata: key");
        check_name_(value, "SafetensorsWriter::set_metadata: value");
        metadata_[key] = value;
    }

    bool contains(const std::string& key) const { return tensors_.count(key) != 0; }
    std::size_t size() const { return tensors_.size(); }

    /// The complete file image (what write() puts on disk).
    std::vector<std::uint8_t> to_bytes() const {
        std::vector<std::uint8_t> out = header_();
        for (const auto& kv : tensors_) out.insert(out.end(), kv.second.bytes.begin(), kv.second.bytes.end());
        return out;
    }

    /// Writes the file atomically (io/atomic_file.hpp): either path holds the complete new file
    /// or it is untouched and IoError ("safetensors: cannot write <path>: ...") says why.
    void write(const std::string& path) const {
        const std::vector<std::uint8_t> head = header_();
        std::vector<ByteSpan> pieces{{head.data(), head.size()}};
        for (const auto& kv : tensors_) pieces.push_back({kv.second.bytes.data(), kv.second.bytes.size()});
        write_file_atomically(path, pieces, "safetensors");
    }

private:
    struct Pending {
        DType dtype;
        Shape shape;
        std::vector<std::uint8_t> bytes;  // little-endian, already converted to dtype
    };

    static void check_name_(const std::string& s, const char* what) {
        try {
            (void)nlohmann::json(s).dump();  // throws type_error 316 for invalid UTF-8
        } catch (const nlohmann::json::exception&) {
            throw ValueError(::medimg::detail::concat(what, " ", detail::quoted(s), " is not valid UTF-8"));
        }
    }

    // The 8-byte length followed by the JSON header, space-padded so the data starts 8-byte aligned.
    // Field order as the reference serializer writes it: __metadata__ first, then each entry as
    // {"dtype", "shape", "data_offsets"}; so a single-dtype file matches it byte for byte.
    std::vector<std::uint8_t> header_() const {
        nlohmann::ordered_json h = nlohmann::ordered_json::object();
        if (!metadata_.empty()) h["__metadata__"] = metadata_;
        std::uint64_t offset = 0;
        for (const auto& kv : tensors_) {
            const std::uint64_t end = offset + kv.second.bytes.size();
            nlohmann::ordered_json entry = nlohmann::ordered_json::object();
            entry["dtype"] = dtype_name(kv.second.dtype);
            entry["shape"] = kv.second.shape.to_vector();
            entry["data_offsets"] = {offset, end};
            h[kv.first] = std::move(entry);
            offset = end;
        }
        std::string text = h.dump();
        text.append((8 - text.size() % 8) % 8, ' ');
        std::vector<std::uint8_t> out(8 + text.size());
        const std::uint64_t n = text.size();
        std::memcpy(out.data(), &n, 8);
        std::memcpy(out.data() + 8, text.data(), text.size());
        return out;
    }

    std::map<std::string, Pending> tensors_;
    std::map<std::string, std::string> metadata_;
};

}  // namespace medimg::io
