// SPDX-License-Identifier: MIT
// libFuzzer target: io::read_nifti_info and io::read_nifti on arbitrary bytes under small limits.
// The reader takes a path, so each input is written to a per-process temp file (.nii) and read;
// then its gzip (level 1) is written to a second one (.nii.gz) and read, so every input also goes
// through the zlib path (inputs that are gzip already exercise corrupt streams in the first read).
// Allowed outcomes: a volume consistent with its info (shape, voxel count within max_voxels, finite
// positive spacing and a finite affine), or medimg::IoError. Anything else (another exception, a
// crash, a sanitizer report, a leak, a timeout) is a finding.
// Build and run (nifticlib: Debian libnifti2-dev):
//   clang++-14 -std=c++17 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
//     -fno-sanitize-recover=all -Iinclude -I/usr/include/eigen3 -I/usr/include/nifti -DMEDIMG_WITH_NIFTI=1
//     tests/fuzz/fuzz_nifti.cpp -o build-fuzz/fuzz_nifti -lnifti2 -lznz -lz
//   build-fuzz/fuzz_nifti -max_total_time=300 -timeout=10 -rss_limit_mb=2048 build-fuzz/corpus/fuzz_nifti
//     tests/fuzz/corpus/fuzz_nifti
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <unistd.h>
#include <zlib.h>

#include "medimg/io/nifti.hpp"

namespace {

/// The two per-process file names each input is written to (libFuzzer leaves with _Exit, so no
/// destructor would remove them: each run removes its files itself).
struct TempFiles {
    std::string plain, packed;
    TempFiles() {
        const char* dir = std::getenv("TMPDIR");
        const std::string base = std::string(dir && *dir ? dir : "/tmp") + "/fuzz_nifti_" + std::to_string(::getpid());
        plain = base + ".nii";
        packed = base + ".nii.gz";
    }
};
const TempFiles& temp_files() {
    static const TempFiles files;
    return files;
}

void write_file(const std::string& path, const std::uint8_t* data, std::size_t size) {
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (size && std::fwrite(data, 1, size, f) != size) std::abort();
    if (std::fclose(f) != 0) std::abort();
}

std::vector<std::uint8_t> gzip(const std::uint8_t* data, std::size_t size) {
    z_stream zs{};
    if (deflateInit2(&zs, 1, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) std::abort();
    std::vector<std::uint8_t> out(deflateBound(&zs, static_cast<uLong>(size)) + 64);
    zs.next_in = const_cast<Bytef*>(data);
    zs.avail_in = static_cast<uInt>(size);
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out.size());
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) std::abort();
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}

void check(const std::string& path) {
    medimg::io::NiftiLimits limits;
    limits.max_voxels = std::int64_t{1} << 20;     // keeps each input fast; the limit logic is what is exercised
    limits.max_file_bytes = std::int64_t{1} << 23;  // also bounds the decompressed bytes of a .nii.gz
    medimg::io::NiftiInfo info;
    bool info_ok = false;
    try {
        info = medimg::io::read_nifti_info(path, limits);
        info_ok = true;
    } catch (const medimg::IoError&) {
    }
    try {
        const medimg::io::NiftiVolume v = medimg::io::read_nifti(path, limits);
        if (!info_ok) std::abort();  // the volume read accepts only what the header read accepts
        if (v.info.shape != info.shape || v.info.form != info.form || v.info.datatype != info.datatype ||
            v.info.original_orientation != info.original_orientation || v.info.version != info.version)
            std::abort();
        if (v.values.rank() != 3 || v.values.numel() > limits.max_voxels) std::abort();
        for (int d = 0; d < 3; ++d) {
            const auto du = static_cast<std::size_t>(d);
            if (v.values.size(d) != v.info.shape[du] || v.values.size(d) < 1) std::abort();
            if (!(std::isfinite(v.spacing[du]) && v.spacing[du] > 0)) std::abort();
        }
        for (const auto& row : v.affine)
            for (double x : row)
                if (!std::isfinite(x)) std::abort();
        if (v.affine[3][0] != 0 || v.affine[3][1] != 0 || v.affine[3][2] != 0 || v.affine[3][3] != 1) std::abort();
        const auto slice = medimg::io::nifti_slice(v, 2, v.values.size(2) - 1);
        if (slice.numel() != v.values.size(0) * v.values.size(1)) std::abort();
    } catch (const medimg::IoError&) {
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const TempFiles& files = temp_files();
    write_file(files.plain, data, size);
    check(files.plain);
    const std::vector<std::uint8_t> packed = gzip(data, size);
    write_file(files.packed, packed.data(), packed.size());
    check(files.packed);
    ::unlink(files.plain.c_str());
    ::unlink(files.packed.c_str());
    return 0;
}
