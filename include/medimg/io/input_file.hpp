// SPDX-License-Identifier: MIT
// io/input_file.hpp: the one rule for every path medimg reads because a user named it (an image, a
// DICOM or NIfTI file, a config, a checkpoint, pretrained weights, a reference image, a CSV): only
// a regular file is opened. A FIFO, a socket or a device given by mistake (or on purpose) would
// block the program forever in open() or read() (a FIFO waits for a writer) or stream without end
// (/dev/zero, /dev/stdin on a terminal), so such a path is refused, saying what it is, before
// anything opens it; a folder is refused too where a file is expected. Symbolic links are followed:
// their target is what counts. A path that does not exist passes: each reader reports a missing
// file in its own words. Readers that open with their own open() add O_NONBLOCK and check fstat
// again (check_opened_file), so a file swapped for a FIFO between the two checks cannot block them.
// Folder scans (data/dataset.hpp, medimg-predict and medimg-anonymize on a folder) skip entries
// that are not regular files instead of refusing them (docs/errors.md).
// Messages quote the path as every medimg::Error does: control characters escaped (error.hpp).
#pragma once

#include <filesystem>
#include <string>

#include <sys/stat.h>

#include "medimg/error.hpp"

namespace medimg::io {

/// What a file-system object is, as a message says it: "a FIFO (named pipe)", "a folder", ...
inline const char* file_type_text(std::filesystem::file_type t) {
    using std::filesystem::file_type;
    switch (t) {
        case file_type::regular: return "a regular file";
        case file_type::directory: return "a folder";
        case file_type::fifo: return "a FIFO (named pipe)";
        case file_type::socket: return "a socket";
        case file_type::character: return "a character device";
        case file_type::block: return "a block device";
        case file_type::symlink: return "a symbolic link";
        default: return "neither a regular file nor a folder";
    }
}

/// The file type an fstat()/stat() mode names.
inline std::filesystem::file_type file_type_of_mode(mode_t mode) {
    using std::filesystem::file_type;
    if (S_ISREG(mode)) return file_type::regular;
    if (S_ISDIR(mode)) return file_type::directory;
    if (S_ISFIFO(mode)) return file_type::fifo;
    if (S_ISSOCK(mode)) return file_type::socket;
    if (S_ISCHR(mode)) return file_type::character;
    if (S_ISBLK(mode)) return file_type::block;
    return file_type::unknown;
}

/// "<who>: <path>: is a FIFO (named pipe), not a regular file" as an ErrorType: the shape of every
/// reader's messages ("image: <path>: file not found").
template <class ErrorType = IoError>
ErrorType not_a_regular_file(const std::string& path, const char* who, std::filesystem::file_type t) {
    return ErrorType(::medimg::detail::concat(who, ": ", path, ": is ", file_type_text(t), ", not a regular file"));
}

/// Refuses `path` unless it is a regular file (after following links) or does not exist, without
/// opening it. `who` starts the message ("image", "config", "safetensors", ...); ErrorType is the
/// reader's own (IoError; ConfigError for the config file).
template <class ErrorType = IoError>
void check_input_file(const std::string& path, const char* who) {
    std::error_code ec;
    const auto type = std::filesystem::status(path, ec).type();
    // Missing, or not even stat-able (a permission problem): the reader's open() says which.
    if (ec || type == std::filesystem::file_type::regular || type == std::filesystem::file_type::not_found) return;
    throw not_a_regular_file<ErrorType>(path, who, type);
}

/// The same rule for a file a reader has just opened (with O_NONBLOCK, so that opening a FIFO did
/// not wait), from its fstat() mode.
inline void check_opened_file(mode_t mode, const std::string& path, const char* who) {
    if (!S_ISREG(mode)) throw not_a_regular_file(path, who, file_type_of_mode(mode));
}

}  // namespace medimg::io
