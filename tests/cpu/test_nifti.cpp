// SPDX-License-Identifier: MIT
// test_nifti.cpp: medimg::io::read_nifti against nibabel (tests/data/nifti/expected.json, written by
// tests/data/make_nifti_fixtures.py): every voxel equal to float32(nibabel's float64), the canonical
// affine, spacing, axis codes and winning transform of each fixture (sform, qform, neither, both
// disagreeing, oblique, permuted, NIfTI-2, big-endian, gzip, one-volume 4-D); nifti_slice; hostile
// files built at run time from a good fixture's bytes (truncated, bad magic, bad dims, huge dims,
// several volumes, gzip bombs, complex / RGB voxels, corrupt gzip), each one IoError line starting
// "nifti: <file>: " with nothing on stderr; the limits; several threads reading at once.
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <nlohmann/json.hpp>

#include "helpers.hpp"
#include "medimg/data/dataset.hpp"
#include "medimg/data/readers.hpp"
#include "medimg/io/nifti.hpp"

using namespace medimg;
using namespace medimg::io;
namespace fs = std::filesystem;

namespace {

using Bytes = std::vector<unsigned char>;

std::string fixture(const std::string& name) { return std::string(MEDIMG_TEST_DATA_DIR) + "/nifti/" + name; }

const nlohmann::json& expected() {
    static const nlohmann::json j = [] {
        std::ifstream in(fixture("expected.json"));
        BOOST_REQUIRE_MESSAGE(in, "cannot open " << fixture("expected.json"));
        return nlohmann::json::parse(in);
    }();
    return j;
}

/// nibabel's float64 value (JSON number, or "nan" / "inf" / "-inf") rounded to float32.
float expected_value(const nlohmann::json& v) {
    if (v.is_string()) {
        const std::string s = v.get<std::string>();
        if (s == "nan") return std::numeric_limits<float>::quiet_NaN();
        return s == "inf" ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
    }
    return static_cast<float>(v.get<double>());
}

bool same_float(float a, float b) { return (std::isnan(a) && std::isnan(b)) || a == b; }

Bytes read_bytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    BOOST_REQUIRE_MESSAGE(in, "cannot open " << path);
    return Bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_bytes(const std::string& path, const Bytes& b) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    BOOST_REQUIRE_MESSAGE(out, "cannot write " << path);
}

/// gzip (RFC 1952) of `in`, as gzip(1) would write it.
Bytes gzip_bytes(const Bytes& in) {
    z_stream zs{};
    BOOST_REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    Bytes out(deflateBound(&zs, static_cast<uLong>(in.size())) + 64);
    zs.next_in = const_cast<Bytef*>(in.data());
    zs.avail_in = static_cast<uInt>(in.size());
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out.size());
    BOOST_REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}

template <class T>
void put(Bytes& b, std::size_t offset, T value) {
    BOOST_REQUIRE(offset + sizeof(T) <= b.size());
    std::memcpy(b.data() + offset, &value, sizeof(T));
}

/// A fresh folder for the hostile files, removed afterwards.
struct TempDir {
    fs::path path;
    TempDir() {
        std::string tmpl = (fs::temp_directory_path() / "medimg_nifti_XXXXXX").string();
        BOOST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string file(const std::string& name, const Bytes& b) const {
        const std::string p = (path / name).string();
        write_bytes(p, b);
        return p;
    }
};

/// Redirects file descriptor 2 into a file while alive; text() gives what was written there.
class StderrCapture {
public:
    explicit StderrCapture(const fs::path& file) : file_(file.string()) {
        std::fflush(stderr);
        saved_ = ::dup(2);
        const int fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        ::dup2(fd, 2);
        ::close(fd);
    }
    ~StderrCapture() { restore(); }
    std::string text() {
        restore();
        std::ifstream in(file_);
        return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }

private:
    void restore() {
        if (saved_ < 0) return;
        std::fflush(stderr);
        ::dup2(saved_, 2);
        ::close(saved_);
        saved_ = -1;
    }
    std::string file_;
    int saved_ = -1;
};

/// read_nifti(path) must throw one IoError line "nifti: <path>: ..." containing `needle`, and
/// nothing may reach stderr; read_nifti_info must refuse it the same way unless `data_only`
/// (problems only seen when the voxels are read: gzip data length, corrupt gzip data).
void expect_refused(const TempDir& dir, const std::string& path, const std::string& needle, bool data_only = false,
                    const NiftiLimits& limits = {}) {
    for (const bool info : {false, true}) {
        if (info && data_only) continue;
        std::string message;
        {
            StderrCapture capture(dir.path / "stderr.txt");
            try {
                if (info)
                    (void)read_nifti_info(path, limits);
                else
                    (void)read_nifti(path, limits);
            } catch (const IoError& e) {
                message = e.what();
            }
            const std::string err = capture.text();
            BOOST_TEST(err.empty(), "stderr while reading " << path << ": " << err);
        }
        BOOST_TEST_INFO("read_nifti" << (info ? "_info" : "") << "(" << path << ")");
        BOOST_TEST(!message.empty(), "no IoError");
        BOOST_TEST_MESSAGE("refused: " << message);
        const std::string prefix = "nifti: " + path + ": ";
        BOOST_TEST(message.rfind(prefix, 0) == 0u, "message: " << message);
        BOOST_TEST(message.find(needle) != std::string::npos, "message: " << message << "\nexpected: " << needle);
        BOOST_TEST(message.find('\n') == std::string::npos, "message: " << message);
    }
}

// Offsets in a little-endian NIfTI-1 header (nifti1.h) and a NIfTI-2 one (nifti2.h).
constexpr std::size_t kN1Dim = 40, kN1Datatype = 70, kN1VoxOffset = 108, kN1SclSlope = 112, kN1QformCode = 252,
                      kN1SformCode = 254, kN1QuaternB = 256, kN1SrowX = 280, kN1Magic = 344;
constexpr std::size_t kN2Dim = 16;

}  // namespace

BOOST_AUTO_TEST_SUITE(nifti_reader)

BOOST_AUTO_TEST_CASE(every_fixture_matches_nibabel) {
    BOOST_REQUIRE_GE(expected()["fixtures"].size(), 12u);
    for (const auto& fx : expected()["fixtures"]) {
        const std::string file = fx["file"];
        BOOST_TEST_CONTEXT("fixture " << file) {
            const NiftiVolume v = read_nifti(fixture(file));
            const NiftiInfo info = read_nifti_info(fixture(file));
            BOOST_TEST(v.info.version == fx["version"].get<int>());
            BOOST_TEST(v.info.datatype == fx["datatype"].get<std::string>());
            BOOST_TEST(v.info.form == fx["form"].get<std::string>());
            BOOST_TEST(v.info.original_orientation == fx["axcodes"].get<std::string>());
            BOOST_TEST(info.version == v.info.version);
            BOOST_TEST(info.datatype == v.info.datatype);
            BOOST_TEST(info.form == v.info.form);
            BOOST_TEST(info.original_orientation == v.info.original_orientation);
            const auto shape = fx["shape"].get<std::vector<std::int64_t>>();
            BOOST_REQUIRE_EQUAL(shape.size(), 3u);
            BOOST_REQUIRE_EQUAL(v.values.rank(), 3);
            for (int d = 0; d < 3; ++d) {
                BOOST_TEST(v.info.shape[static_cast<std::size_t>(d)] == shape[static_cast<std::size_t>(d)]);
                BOOST_TEST(info.shape[static_cast<std::size_t>(d)] == shape[static_cast<std::size_t>(d)]);
                BOOST_TEST(v.values.size(d) == shape[static_cast<std::size_t>(d)]);
            }
            // every voxel: float32 of nibabel's float64, exactly (NaN where nibabel has NaN)
            const auto& values = fx["values"];
            BOOST_REQUIRE_EQUAL(static_cast<std::int64_t>(values.size()), v.values.numel());
            std::int64_t wrong = 0, first_wrong = -1;
            for (std::int64_t i = 0; i < v.values.numel(); ++i)
                if (!same_float(v.values[i], expected_value(values[static_cast<std::size_t>(i)]))) {
                    if (first_wrong < 0) first_wrong = i;
                    ++wrong;
                }
            BOOST_TEST(wrong == 0, wrong << " voxels differ, first at flat index " << first_wrong);
            // the canonical affine: nibabel computes it in double (the qform in long double) too
            for (std::size_t i = 0; i < 4; ++i)
                for (std::size_t j = 0; j < 4; ++j) {
                    const double e = fx["affine"][i][j].get<double>();
                    BOOST_TEST(std::abs(v.affine[i][j] - e) <= 1e-9 * std::max(1.0, std::abs(e)),
                               "affine[" << i << "][" << j << "] = " << v.affine[i][j] << ", nibabel " << e);
                }
            // spacing: nibabel's zooms of the canonical image (float32 in a NIfTI-1 header)
            for (std::size_t d = 0; d < 3; ++d) {
                const double e = fx["zooms"][d].get<double>();
                BOOST_TEST(std::abs(v.spacing[d] - e) <= 1e-6 * e,
                           "spacing[" << d << "] = " << v.spacing[d] << ", nibabel " << e);
            }
        }
    }
}

BOOST_AUTO_TEST_CASE(transform_choice_and_orientation_cases) {
    // sform (PSR, code 2) wins over a disagreeing qform (RAS, code 1)
    const NiftiInfo both = read_nifti_info(fixture("sform_vs_qform.nii"));
    BOOST_TEST(both.form == "sform");
    BOOST_TEST(both.original_orientation == "PSR");
    // qform only, left-handed (qfac -1); neither form: nibabel's base affine is LAS
    BOOST_TEST(read_nifti_info(fixture("qform_only.nii")).form == "qform");
    const NiftiVolume none = read_nifti(fixture("no_form_uint8.nii"));
    BOOST_TEST(none.info.form == "none");
    BOOST_TEST(none.info.original_orientation == "LAS");
    BOOST_TEST(none.spacing[0] == 1.5);
    BOOST_TEST(none.spacing[1] == 2.0);
    BOOST_TEST(none.spacing[2] == 3.0);
    // oblique: the reoriented affine keeps its rotation (off-diagonal terms), only axis order and
    // sign change, and its diagonal is positive (RAS+)
    const NiftiVolume ob = read_nifti(fixture("oblique_sform.nii.gz"));
    BOOST_TEST(ob.info.original_orientation == "LPS");
    BOOST_TEST(std::abs(ob.affine[0][1]) > 0.1);
    for (std::size_t d = 0; d < 3; ++d) BOOST_TEST(ob.affine[d][d] > 0);
    // two file axes closest to world x: the second must fall back to y
    BOOST_TEST(read_nifti_info(fixture("oblique_greedy_int32.nii")).original_orientation == "SRA");
}

BOOST_AUTO_TEST_CASE(non_finite_voxels_are_kept) {
    // nifticlib's nifti_image_load would have set these to 0; nibabel keeps them (RAS: indices unchanged)
    const NiftiVolume v = read_nifti(fixture("float32_ras.nii.gz"));
    const auto at = [&](std::int64_t i, std::int64_t j, std::int64_t k) {
        return v.values[(i * v.values.size(1) + j) * v.values.size(2) + k];
    };
    BOOST_TEST(std::isnan(at(1, 2, 3)));
    BOOST_TEST(at(4, 0, 1) == std::numeric_limits<float>::infinity());
    BOOST_TEST(at(0, 4, 2) == -std::numeric_limits<float>::infinity());
}

BOOST_AUTO_TEST_CASE(slices_index_like_numpy) {
    const NiftiVolume v = read_nifti(fixture("int16_scaled_las.nii"));
    const std::int64_t I = v.values.size(0), J = v.values.size(1), K = v.values.size(2);
    const auto at = [&](std::int64_t i, std::int64_t j, std::int64_t k) { return v.values[(i * J + j) * K + k]; };
    const auto s0 = nifti_slice(v, 0, 3), s1 = nifti_slice(v, 1, 2), s2 = nifti_slice(v, 2, 4);
    BOOST_TEST(s0.shape() == (Shape{J, K}));
    BOOST_TEST(s1.shape() == (Shape{I, K}));
    BOOST_TEST(s2.shape() == (Shape{I, J}));
    int wrong = 0;
    for (std::int64_t a = 0; a < J; ++a)
        for (std::int64_t b = 0; b < K; ++b) wrong += s0[a * K + b] != at(3, a, b);
    for (std::int64_t a = 0; a < I; ++a)
        for (std::int64_t b = 0; b < K; ++b) wrong += s1[a * K + b] != at(a, 2, b);
    for (std::int64_t a = 0; a < I; ++a)
        for (std::int64_t b = 0; b < J; ++b) wrong += s2[a * J + b] != at(a, b, 4);
    BOOST_TEST(wrong == 0);
    BOOST_CHECK_EXCEPTION(nifti_slice(v, 3, 0), ValueError, test::message_contains("nifti_slice: axis must be 0, 1 or 2"));
    BOOST_CHECK_EXCEPTION(nifti_slice(v, 2, K), ShapeError, test::message_contains("nifti_slice: index 5 out of range"));
    BOOST_CHECK_EXCEPTION(nifti_slice(v, 0, -1), ShapeError, test::message_contains("out of range for axis 0"));
}

BOOST_AUTO_TEST_CASE(hostile_files_are_refused_in_one_line) {
    TempDir dir;
    const Bytes good = read_bytes(fixture("int16_scaled_las.nii"));  // NIfTI-1 LE, int16 7x6x5 at 352
    BOOST_REQUIRE_EQUAL(good.size(), 352u + 7 * 6 * 5 * 2);
    auto patched = [&](auto&& edit) {
        Bytes b = good;
        edit(b);
        return b;
    };

    expect_refused(dir, (dir.path / "missing.nii").string(), "cannot open (No such file or directory)");
    expect_refused(dir, dir.path.string(), "not a regular file");
    expect_refused(dir, dir.file("empty.nii", {}), "truncated header: 0 bytes, a NIfTI-1 header has 348");
    expect_refused(dir, dir.file("text.nii", Bytes(400, 'x')), "not a NIfTI file: sizeof_hdr is 2021161080");
    expect_refused(dir, dir.file("truncated.nii", Bytes(good.begin(), good.end() - 100)),
                   "truncated: the header announces 420 data bytes at offset 352 but the file has 672 bytes");
    expect_refused(dir, dir.file("bad_magic.nii", patched([](Bytes& b) { std::memcpy(&b[kN1Magic], "xyz", 4); })),
                   "bad magic \"xyz\" (a NIfTI-1 file has \"n+1\")");
    expect_refused(dir, dir.file("pair_magic.nii", patched([](Bytes& b) { std::memcpy(&b[kN1Magic], "ni1", 4); })),
                   "magic \"ni1\" marks a .hdr/.img pair; only single-file .nii is read");
    expect_refused(dir, dir.file("dim0_zero.nii", patched([](Bytes& b) { put<std::int16_t>(b, kN1Dim, 0); })),
                   "dim[0] is 0 (the number of dimensions must be 1..7)");
    // the next three make nifticlib's own reader print "** ERROR: nifti_convert_n1hdr2nim: bad dim[0]"
    // (bad datatype, bad dim[1]) whatever its debug level; here they are refused before it sees them
    expect_refused(dir, dir.file("dim0_eight.nii", patched([](Bytes& b) { put<std::int16_t>(b, kN1Dim, 8); })),
                   "dim[0] is 8 (the number of dimensions must be 1..7)");
    expect_refused(dir, dir.file("datatype0.nii", patched([](Bytes& b) { put<std::int16_t>(b, kN1Datatype, 0); })),
                   "unknown datatype code 0");
    expect_refused(dir, dir.file("dim1_zero.nii", patched([](Bytes& b) { put<std::int16_t>(b, kN1Dim + 2, 0); })),
                   "dim[1] is 0 (dimensions must be >= 1)");
    expect_refused(dir, dir.file("dim_negative.nii", patched([](Bytes& b) { put<std::int16_t>(b, kN1Dim + 2 * 2, -6); })),
                   "dim[2] is -6 (dimensions must be >= 1)");
    expect_refused(dir, dir.file("three_volumes.nii", patched([](Bytes& b) {
                                     put<std::int16_t>(b, kN1Dim, 4);
                                     put<std::int16_t>(b, kN1Dim + 4 * 2, 3);
                                 })),
                   "4-D with 3 volumes (dim[4..4] = 3); only single 3-D volumes are read");
    expect_refused(dir, dir.file("complex.nii", patched([](Bytes& b) { put<std::int16_t>(b, kN1Datatype, 32); })),
                   "datatype complex64 (code 32) is not supported: complex voxels are not read");
    expect_refused(dir, dir.file("rgb.nii", patched([](Bytes& b) { put<std::int16_t>(b, kN1Datatype, 128); })),
                   "datatype RGB24 (code 128) is not supported: RGB voxels are not read");
    expect_refused(dir, dir.file("unknown_type.nii", patched([](Bytes& b) { put<std::int16_t>(b, kN1Datatype, 77); })),
                   "unknown datatype code 77");
    expect_refused(dir, dir.file("vox_offset0.nii", patched([](Bytes& b) { put<float>(b, kN1VoxOffset, 0.0f); })),
                   "vox_offset is 0, inside the header");
    expect_refused(dir, dir.file("vox_offset_negative.nii", patched([](Bytes& b) { put<float>(b, kN1VoxOffset, -3.7e28f); })),
                   "vox_offset -3.7e+28 is not a byte offset in 0..2^31");  // a fuzz finding (float -> int64 cast)
    expect_refused(dir, dir.file("inter_nan.nii", patched([](Bytes& b) {
                                     put<float>(b, kN1SclSlope, 0.5f);
                                     put<float>(b, kN1SclSlope + 4, std::numeric_limits<float>::quiet_NaN());
                                 })),
                   "scl_slope is 0.5 but scl_inter is nan (nibabel refuses this too)");
    const Bytes n2 = read_bytes(fixture("nifti2_float64_asl.nii"));
    expect_refused(dir, dir.file("n2_short.nii", Bytes(n2.begin(), n2.begin() + 400)),
                   "truncated header: 400 bytes, a NIfTI-2 header has 540");
    Bytes n2_eol = n2;
    n2_eol[8] = '\n';  // "\r\n" turned into "\n\n", as a text-mode copy would
    expect_refused(dir, dir.file("n2_eol.nii", n2_eol), "bad NIfTI-2 magic: the bytes after \"n+2\" are not");
    expect_refused(dir, dir.file("bad_quaternion.nii", patched([](Bytes& b) {
                                     put<std::int16_t>(b, kN1SformCode, 0);
                                     put<std::int16_t>(b, kN1QformCode, 1);
                                     for (int i = 0; i < 3; ++i) put<float>(b, kN1QuaternB + 4 * i, 0.9f);
                                 })),
                   "qform quaternion (");
    expect_refused(dir, dir.file("singular_sform.nii", patched([](Bytes& b) {
                                     for (int i = 0; i < 12; ++i) put<float>(b, kN1SrowX + 4 * i, 0.0f);
                                 })),
                   "the sform affine gives file axis 0 no direction (singular)");

    // gzip: truncated stream, corrupt checksum, data past what the header announces
    const Bytes gz = gzip_bytes(good);
    expect_refused(dir, dir.file("truncated.nii.gz", Bytes(gz.begin(), gz.begin() + static_cast<long>(gz.size() / 2))),
                   "truncated: ", true);
    Bytes bad_crc = gz;
    bad_crc[bad_crc.size() - 6] ^= 0x55;  // inside the CRC-32 of the gzip trailer
    expect_refused(dir, dir.file("bad_crc.nii.gz", bad_crc), "corrupt gzip stream (bad deflate data or checksum)", true);
    Bytes trailing = good;
    trailing.resize(good.size() + (std::size_t{16} << 20), 0);  // 16 MiB of zeros after the voxels
    const Bytes bomb = gzip_bytes(trailing);
    BOOST_TEST(bomb.size() < 40000u);
    expect_refused(dir, dir.file("trailing_bomb.nii.gz", bomb),
                   "the gzip stream decompresses past the 772 bytes the header announces", true);
    // the good file's gzip reads like the file itself
    const NiftiVolume plain = read_nifti(fixture("int16_scaled_las.nii"));
    const NiftiVolume zipped = read_nifti(dir.file("good.nii.gz", gz));
    BOOST_TEST(plain.values.to_vector() == zipped.values.to_vector(), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(huge_dims_are_refused_from_the_header_without_allocating) {
    TempDir dir;
    // NIfTI-2 claiming 100000^3 float64 voxels in a 1 KB file, and a 2^30-voxel NIfTI-1 as a tiny .nii.gz
    Bytes n2 = read_bytes(fixture("nifti2_float64_asl.nii"));
    for (int i = 1; i <= 3; ++i) put<std::int64_t>(n2, kN2Dim + 8 * static_cast<std::size_t>(i), 100000);
    Bytes n1 = read_bytes(fixture("int16_scaled_las.nii"));
    for (int i = 1; i <= 3; ++i) put<std::int16_t>(n1, kN1Dim + 2 * static_cast<std::size_t>(i), 1024);
    const Bytes bomb = gzip_bytes(n1);
    BOOST_TEST(bomb.size() < 1000u);
    const auto t0 = std::chrono::steady_clock::now();
    expect_refused(dir, dir.file("huge.nii", n2), "dims 100000 x 100000 x 100000 (1e+15 voxels) exceed max_voxels = 268435456");
    expect_refused(dir, dir.file("bomb.nii.gz", bomb), "dims 1024 x 1024 x 1024 (1.074e+09 voxels) exceed max_voxels = 268435456");
    // int16 dims at their maximum: 32767^3 (and every NIfTI-2 dim at INT64_MAX) cannot overflow the count
    for (int i = 1; i <= 3; ++i) put<std::int16_t>(n1, kN1Dim + 2 * static_cast<std::size_t>(i), 32767);
    expect_refused(dir, dir.file("max_int16.nii", n1), "dims 32767 x 32767 x 32767");
    for (int i = 1; i <= 7; ++i) put<std::int64_t>(n2, kN2Dim + 8 * static_cast<std::size_t>(i), INT64_MAX);
    put<std::int64_t>(n2, kN2Dim, 3);
    expect_refused(dir, dir.file("max_int64.nii", n2), "exceed max_voxels");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    BOOST_TEST(seconds < 0.5, "refusing 4 huge headers (8 reads) took " << seconds << " s");
}

BOOST_AUTO_TEST_CASE(limits_are_checked) {
    TempDir dir;
    NiftiLimits small;
    small.max_voxels = 100;  // 7 x 6 x 5 = 210
    expect_refused(dir, fixture("int16_scaled_las.nii"), "dims 7 x 6 x 5 (210 voxels) exceed max_voxels = 100", false, small);
    NiftiLimits tiny_file;
    tiny_file.max_file_bytes = 500;
    expect_refused(dir, fixture("int16_scaled_las.nii"), "file is 772 bytes, over max_file_bytes = 500", false, tiny_file);
    NiftiLimits tiny_stream;
    tiny_stream.max_file_bytes = 700;  // the .gz is 612 bytes on disk but 352 + 480 decompressed
    expect_refused(dir, fixture("float32_ras.nii.gz"), "the header announces 832 decompressed bytes, over max_file_bytes = 700",
                   false, tiny_stream);
    NiftiLimits bad;
    bad.max_voxels = 0;
    BOOST_CHECK_EXCEPTION(read_nifti(fixture("int16_scaled_las.nii"), bad), ValueError,
                          test::message_contains("max_voxels must be positive"));
}

BOOST_AUTO_TEST_CASE(several_threads_read_at_once) {
    std::vector<std::string> files;
    std::vector<std::vector<float>> reference;
    for (const auto& fx : expected()["fixtures"]) {
        files.push_back(fixture(fx["file"].get<std::string>()));
        reference.push_back(read_nifti(files.back()).values.to_vector());
    }
    std::atomic<int> mismatches{0}, errors{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int round = 0; round < 10; ++round)
                for (std::size_t f = 0; f < files.size(); ++f) {
                    const std::size_t i = (f + static_cast<std::size_t>(t)) % files.size();
                    try {
                        const auto got = read_nifti(files[i]).values.to_vector();
                        for (std::size_t k = 0; k < got.size(); ++k)
                            if (!same_float(got[k], reference[i][k])) {
                                ++mismatches;
                                break;
                            }
                    } catch (const std::exception&) {
                        ++errors;
                    }
                }
        });
    for (auto& th : threads) th.join();
    BOOST_TEST(mismatches.load() == 0);
    BOOST_TEST(errors.load() == 0);
}

// The data pipeline's side (data/readers.hpp, data/dataset.hpp): a folder of volumes is a data set
// of slices, one group per file, each slice the min-max-scaled volume's numpy slice.
BOOST_AUTO_TEST_CASE(a_folder_of_volumes_is_a_data_set_of_slices) {
    const std::string dir = std::string(MEDIMG_TEST_DATA_DIR) + "/nifti/";
    const fs::path root = fs::temp_directory_path() / ("medimg-nifti-ds-" + std::to_string(::getpid()));
    fs::remove_all(root);
    for (const char* c : {"normal", "lesao"}) fs::create_directories(root / c);
    fs::copy_file(dir + "uint8_scaled.nii.gz", root / "normal/a.nii.gz");       // (6, 5, 4)
    fs::copy_file(dir + "oblique_sform.nii.gz", root / "lesao/b.NII.GZ");       // (7, 6, 5)
    fs::copy_file(dir + "int16_scaled_las.nii", root / "lesao/c.nii");          // (7, 6, 5)
    const auto ds = data::FolderDataset::scan(root.string(), {"normal", "lesao"});
    BOOST_TEST(ds.class_counts()[0] == 4);   // axial: the third axis
    BOOST_TEST(ds.class_counts()[1] == 10);
    BOOST_TEST(ds.volumes() == 3);
    BOOST_TEST(ds.group(4) == ds.group(8));  // slices of one file share its group
    BOOST_TEST(ds.group(3) != ds.group(4));
    data::VolumeOptions sagittal{data::SliceSelection::parse("every 3"), data::volume_axis("sagittal")};
    const auto ds2 = data::FolderDataset::scan(root.string(), {"normal", "lesao"}, sagittal);
    BOOST_TEST(ds2.class_counts()[0] == 2);  // slices 0 and 3 of 6
    BOOST_TEST(ds2.class_counts()[1] == 6);  // 0, 3, 6 of 7, twice
    BOOST_TEST(ds2.name(1) == (root / "normal/a.nii.gz").string() + "[3]");

    // read_sample: numpy's v[:, :, k] of the volume scaled by its own min and max
    auto vol = read_nifti((root / "normal/a.nii.gz").string());
    data::to_unit_range(vol.values.data(), static_cast<std::size_t>(vol.values.numel()), data::IntensitySetting::parse("minmax"),
                        std::nullopt, false, "test");
    data::ReadSettings rs;
    rs.channels = 1;
    rs.intensity = data::IntensitySetting::parse("minmax");
    const auto x = data::read_sample(ds.sample(2), rs);  // a.nii.gz[2]
    const auto want = nifti_slice(vol, 2, 2);
    BOOST_TEST(x.shape() == Shape({1, want.size(0), want.size(1)}));
    for (std::int64_t i = 0; i < want.numel(); ++i) BOOST_REQUIRE(x.data()[i] == want.data()[i]);
    rs.axis = 0;
    const auto y = data::read_sample(data::SampleRef{(root / "normal/a.nii.gz").string(), 3}, rs);
    const auto want0 = nifti_slice(vol, 0, 3);
    BOOST_TEST(y.shape() == Shape({1, want0.size(0), want0.size(1)}));
    for (std::int64_t i = 0; i < want0.numel(); ++i) BOOST_REQUIRE(y.data()[i] == want0.data()[i]);
    BOOST_CHECK_EXCEPTION(data::read_sample(data::SampleRef{(root / "normal/a.nii.gz").string(), 9}, rs), IoError,
                          medimg::test::message_contains("slice 9 asked for but the volume has 6 along that axis"));
    fs::remove_all(root);
}

BOOST_AUTO_TEST_SUITE_END()
