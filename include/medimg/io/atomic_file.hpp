// SPDX-License-Identifier: MIT
// io/atomic_file.hpp: write_file_atomically, the one way medimg replaces a file (checkpoints,
// PNG outputs, metrics.csv): the bytes go to <path>.tmp-<16 hex digits> in the same folder
// (O_EXCL, so two writers never share a temporary), fsync, rename over <path>, then a best-effort
// fsync of the folder. Readers see the old file or the complete new one, after a crash or a power
// cut as well; on failure the temporary is removed, an existing file is left untouched, and the
// IoError is one line: "<who>: cannot write <path>: <step>: <the system's reason>".
// POSIX only (open/fsync/rename), like the rest of the library's file handling.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "medimg/error.hpp"

namespace medimg::io {

/// One contiguous piece of a file's contents.
struct ByteSpan {
    const void* data;
    std::size_t size;
};

namespace detail {

inline std::string errno_message(int err) { return std::error_code(err, std::generic_category()).message(); }

/// 16 hex digits that differ between processes, threads and calls (for temporary file names).
inline std::string random_hex() {
    static std::atomic<std::uint64_t> counter{0};
    std::uint64_t x = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
    x ^= static_cast<std::uint64_t>(::getpid()) << 40;
    x ^= (counter.fetch_add(1) + 1) * 0x9E3779B97F4A7C15ull;
    try {
        std::random_device rd;
        x ^= (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    } catch (...) {  // no entropy source: time, pid and counter still make the name unique enough
    }
    x ^= x >> 30, x *= 0xBF58476D1CE4E5B9ull, x ^= x >> 27, x *= 0x94D049BB133111EBull, x ^= x >> 31;  // splitmix64
    static const char* hex = "0123456789abcdef";
    std::string s(16, '0');
    for (int i = 0; i < 16; ++i) s[static_cast<std::size_t>(i)] = hex[(x >> (4 * i)) & 0xfu];
    return s;
}

/// Writes n bytes, retrying short writes and EINTR; returns 0 or an errno value.
inline int write_all(int fd, const void* data, std::size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    while (n > 0) {
        const ::ssize_t w = ::write(fd, p, std::min<std::size_t>(n, std::size_t{1} << 30));
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return EIO;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return 0;
}

}  // namespace detail

/// Replaces `path` by the concatenation of `pieces`, atomically (see the file header). `who`
/// starts the error message ("safetensors", "write_png", "train").
inline void write_file_atomically(const std::string& path, const std::vector<ByteSpan>& pieces, std::string_view who) {
    const auto fail = [&](const std::string& step, int err) {
        return IoError(::medimg::detail::concat(who, ": cannot write ", path, ": ", step, ": ", detail::errno_message(err)));
    };
    MEDIMG_CHECK(!path.empty(), IoError, who, ": cannot write a file with an empty path");
    std::string tmp;
    int fd = -1;
    for (int attempt = 0; attempt < 16 && fd < 0; ++attempt) {
        tmp = path + ".tmp-" + detail::random_hex();
        fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0 && errno != EEXIST) throw fail("creating temporary file " + tmp + " failed", errno);
    }
    if (fd < 0) throw fail("creating a unique temporary file failed", EEXIST);
    int err = 0;
    std::string step;
    for (const ByteSpan& piece : pieces)
        if ((err = detail::write_all(fd, piece.data, piece.size)) != 0) {
            step = "writing " + tmp + " failed";
            break;
        }
    if (!err && ::fsync(fd) != 0) err = errno, step = "fsync of " + tmp + " failed";
    if (::close(fd) != 0 && !err) err = errno, step = "closing " + tmp + " failed";
    if (!err && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno, step = "renaming " + tmp + " over it failed";
    if (err) {
        ::unlink(tmp.c_str());
        throw fail(step, err);
    }
    // Make the rename itself durable. Best effort: the data is already in place under its final name.
    std::string dir = std::filesystem::path(path).parent_path().string();
    if (dir.empty()) dir = ".";
    const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)::fsync(dfd);
        ::close(dfd);
    }
}

}  // namespace medimg::io
