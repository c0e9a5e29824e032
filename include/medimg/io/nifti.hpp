// SPDX-License-Identifier: MIT
// io/nifti.hpp: reads one 3-D volume from a NIfTI-1 or NIfTI-2 single file (.nii, or gzip-compressed
// .nii.gz; compression is recognised from the first bytes, not the name) into a float32 (I, J, K)
// tensor that equals nibabel's as_closest_canonical(img).get_fdata() to float32 rounding: scl_slope /
// scl_inter applied in double as nibabel does, axes permuted and flipped to RAS+, with the matching
// voxel -> RAS+ mm affine. Needs nifticlib (Debian: libnifti2-dev; link medimg::nifti, which defines
// MEDIMG_WITH_NIFTI=1 and links -lnifti2 -lznz -lz -lm).
//
// Which transform (nibabel's Nifti1Header.get_best_affine, after the fixes nibabel's header check
// makes on load): the sform if sform_code is not 0, else the qform if qform_code is not 0, else
// nibabel's base affine diag(-dx, dy, dz) centred on the volume ("none"). Codes outside 0..5 count
// as 0; zero pixdim[1..3] count as 1 and negative ones as their absolute value; a qfac (pixdim[0])
// other than -1 or 1 counts as 1. The qform is computed in long double as nibabel does (x86-64).
// Orientation (nibabel's io_orientation, as_closest_canonical and inv_ornt_aff, re-implemented from
// their documented algorithm in detail::nifti_io_orientation below): the best affine's 3x3 part, columns
// normalised, is replaced by its polar factor (SVD); each file axis in turn takes the world axis
// where its column is largest in magnitude, with that sign, and that world axis is then out of the
// running. The data are transposed and flipped accordingly and the affine is composed with the
// inverse index change, so oblique affines keep their obliquity: only axis order and sign change.
// spacing is the column norms of the returned affine (what nibabel's zooms of the reoriented image
// are whenever it had to reorient; for an image already in RAS+ order nibabel keeps pixdim, which
// differs only where the sform disagrees with pixdim). A 4-D+ file with one volume (dim[4..] all 1)
// is read as 3-D; 1-D and 2-D files as (I, 1, 1) and (I, J, 1). Bombs: the voxel count is checked
// against max_voxels from the header before anything is allocated, a .nii.gz may not announce more
// than max_file_bytes decompressed, and its stream must end exactly where the voxels do.
//
// How nifticlib is used: znzlib (znzopen/znzread/znzseek) reads both plain and gzip streams, the
// header is byte-swapped by swap_nifti_header, nifti_header_version and nifti_convert_n{1,2}hdr2nim
// (held by NiftiImagePtr, freed on every path) confirm our reading of it, and nifti_swap_Nbytes
// swaps the voxels. Every header field is validated here first (dims, voxel count against the
// limits without overflow, datatype, vox_offset, file length), because nifticlib's own conversion
// multiplies dims unchecked, casts vox_offset to int and prints to stderr on bad input. Not used, on
// purpose: nifti_image_read, which also reads the extensions (a list grown by copy: quadratic in
// their number, which a small .nii.gz can make huge) and nifti_image_load, which replaces NaN and
// Inf float voxels with 0 (nibabel keeps them, and so does this reader). A failed read prints
// nothing: nifticlib's debug level is set to 0 once (std::call_once) and no nifticlib function that
// prints unconditionally is reached with a header that failed validation.
// Threads: after that one-time setting, every call works on its own handles and buffers (nifticlib
// only reads its global options then), so several loader threads may read at once.
//
// Errors: IoError of one line "nifti: <file>: ..." for every unreadable, hostile or unsupported file;
// ValueError for non-positive limits, ValueError / ShapeError for nifti_slice's arguments.
// Deliberately not here: writing, .hdr/.img pairs and ASCII .nia, 4-D+ files with more than one
// volume, complex, RGB, binary and float128 voxels, extensions (skipped), intent codes, units
// (NIfTI's mm is assumed), reading a sub-region.
#pragma once

#if !defined(MEDIMG_WITH_NIFTI) || !MEDIMG_WITH_NIFTI
#  error "medimg/io/nifti.hpp needs nifticlib: link medimg::nifti (it defines MEDIMG_WITH_NIFTI=1)"
#endif

#include <algorithm>
#include <array>
#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <limits>
#include <math.h>
#include <memory>
#include <mutex>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <string>
#include <type_traits>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <Eigen/Dense>

// nifticlib's headers have no extern "C" of their own. The system headers they include are included
// above, so their guards keep them out of this C-linkage block.
extern "C" {
#include <nifti2_io.h>
}

#include "medimg/core/tensor.hpp"
#include "medimg/error.hpp"
#include "medimg/io/input_file.hpp"

namespace medimg::io {

/// Limits checked before anything large is read or allocated.
struct NiftiLimits {
    std::int64_t max_voxels = std::int64_t{1} << 28;      // checked from the header, before any voxel is read
    std::int64_t max_file_bytes = std::int64_t{1} << 31;  // the file on disk; for a gzip file also the
                                                          // decompressed bytes read (header to data end)
};

/// What the header says, after the RAS+ reduction; no voxel is read.
struct NiftiInfo {
    std::array<std::int64_t, 3> shape{};  // (I, J, K) after reorientation
    int version = 0;                      // 1 or 2
    std::string datatype;                 // "int16", "float32", ... (nibabel's names)
    std::string form;                     // "sform", "qform" or "none": which transform the orientation came from
    std::string original_orientation;     // axis codes of the file's own axes, e.g. "LPS" (nibabel's aff2axcodes)
};

/// One volume, reoriented to RAS+.
struct NiftiVolume {
    NiftiInfo info;
    Tensor<float, Cpu> values;        // (I, J, K) float32: scaled, RAS+ (as_closest_canonical(img).get_fdata())
    std::array<double, 3> spacing{};  // mm along I, J, K after reorientation (the affine's column norms)
    std::array<std::array<double, 4>, 4> affine{};  // voxel -> RAS+ mm after reorientation
                                                    // (as_closest_canonical(img).affine)
};

namespace detail {

static_assert(std::numeric_limits<float>::is_iec559 && std::numeric_limits<double>::is_iec559,
              "medimg/io/nifti.hpp: needs IEEE-754 float and double (voxels out of float range become +-inf)");

using NiftiAffine = std::array<std::array<double, 4>, 4>;

/// nifticlib's only global state is its options; reading is quiet from the first call on. The
/// once_flag makes the one write happen before any read by any thread.
inline void nifti_library_init() {
    static std::once_flag once;
    std::call_once(once, [] { nifti_set_debug_level(0); });
}

struct NiftiImageFree {
    void operator()(nifti_image* p) const { nifti_image_free(p); }
};
using NiftiImagePtr = std::unique_ptr<nifti_image, NiftiImageFree>;

/// Owns a znzFile (plain FILE* or gzFile inside); closes it on every path.
class ZnzHandle {
public:
    ZnzHandle(const std::string& path, bool gz) : f_(znzopen(path.c_str(), "rb", gz ? 1 : 0)) {}
    ~ZnzHandle() {
        if (!znz_isnull(f_)) znzclose(f_);
    }
    ZnzHandle(const ZnzHandle&) = delete;
    ZnzHandle& operator=(const ZnzHandle&) = delete;
    bool ok() const { return !znz_isnull(f_); }
    /// Reads up to n bytes; returns the count, or -1 when zlib reports corrupt data.
    std::int64_t read(void* buf, std::size_t n) {
        const std::size_t got = znzread(buf, 1, n, f_);
        if (got > n) return -1;  // znzread returns gzread's -1 as a size_t
        return static_cast<std::int64_t>(got);
    }
    bool seek(std::int64_t offset) { return znzseek(f_, static_cast<znz_off_t>(offset), SEEK_SET) >= 0; }

private:
    znzFile f_;
};

/// The voxel types read here, with nibabel's names; other NIfTI codes are refused by name.
struct NiftiDtype {
    int code;
    const char* name;
    int bytes;
    bool supported;
};
inline const NiftiDtype* nifti_dtype(int code) {
    static const NiftiDtype table[] = {
        {NIFTI_TYPE_UINT8, "uint8", 1, true},       {NIFTI_TYPE_INT16, "int16", 2, true},
        {NIFTI_TYPE_INT32, "int32", 4, true},       {NIFTI_TYPE_FLOAT32, "float32", 4, true},
        {NIFTI_TYPE_FLOAT64, "float64", 8, true},   {NIFTI_TYPE_INT8, "int8", 1, true},
        {NIFTI_TYPE_UINT16, "uint16", 2, true},     {NIFTI_TYPE_UINT32, "uint32", 4, true},
        {NIFTI_TYPE_INT64, "int64", 8, true},       {NIFTI_TYPE_UINT64, "uint64", 8, true},
        {DT_BINARY, "binary", 0, false},            {NIFTI_TYPE_COMPLEX64, "complex64", 8, false},
        {NIFTI_TYPE_RGB24, "RGB24", 3, false},      {NIFTI_TYPE_FLOAT128, "float128", 16, false},
        {NIFTI_TYPE_COMPLEX128, "complex128", 16, false}, {NIFTI_TYPE_COMPLEX256, "complex256", 32, false},
        {NIFTI_TYPE_RGBA32, "RGBA32", 4, false},
    };
    for (const auto& d : table)
        if (d.code == code) return &d;
    return nullptr;
}

/// The header fields this reader uses, in host byte order and double precision, with nibabel's
/// load-time fixes already applied (see the top of this file).
struct NiftiHeader {
    int version = 0;    // 1 or 2
    bool swapped = false;
    std::array<std::int64_t, 8> dim{};
    std::array<double, 8> pixdim{};  // [1..3] fixed as nibabel does; [0] = qfac, -1 or 1
    int datatype = 0;
    std::int64_t vox_offset = 0;
    double scl_slope = 0, scl_inter = 0;
    int qform_code = 0, sform_code = 0;
    double quatern_b = 0, quatern_c = 0, quatern_d = 0;
    std::array<double, 3> qoffset{};
    std::array<std::array<double, 4>, 3> srow{};
};

/// nibabel's quaternion -> rotation for the qform (Nifti1Header.get_qform_quaternion, quaternions.
/// fillpositive and quat2mat): w = sqrt(1 - (b^2 + c^2 + d^2)) in long double, w = 0 when that is
/// negative but above -3 eps of the stored precision, an error below; then the unit-quaternion matrix.
/// Returns false for a quaternion nibabel refuses.
inline bool nifti_quaternion_matrix(const NiftiHeader& h, long double R[3][3]) {
    const long double x = h.quatern_b, y = h.quatern_c, z = h.quatern_d;
    const long double w2 = 1.0L - ((x * x + y * y) + z * z);
    const long double thresh = -3.0L * (h.version == 1 ? std::numeric_limits<float>::epsilon()
                                                         : std::numeric_limits<double>::epsilon());
    long double w = 0;
    if (w2 < 0) {
        if (w2 < thresh) return false;
    } else {
        w = std::sqrt(w2);
    }
    const long double nq = ((w * w + x * x) + y * y) + z * z;
    if (nq < std::numeric_limits<double>::epsilon()) {
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j) R[i][j] = i == j ? 1.0L : 0.0L;
        return true;
    }
    const long double s = 2.0L / nq;
    const long double X = x * s, Y = y * s, Z = z * s;
    const long double wX = w * X, wY = w * Y, wZ = w * Z;
    const long double xX = x * X, xY = x * Y, xZ = x * Z;
    const long double yY = y * Y, yZ = y * Z, zZ = z * Z;
    const long double m[3][3] = {{1.0L - (yY + zZ), xY - wZ, xZ + wY},
                                 {xY + wZ, 1.0L - (xX + zZ), yZ - wX},
                                 {xZ - wY, yZ + wX, 1.0L - (xX + yY)}};
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 3; ++j) R[i][j] = m[i][j];
    return true;
}

/// An orientation in nibabel's sense: file axis j goes to world axis out_axis[j], flipped when
/// flip[j] is -1 (io_orientation's rows [out_axis, flip]).
struct NiftiOrientation {
    std::array<int, 3> out_axis{};
    std::array<int, 3> flip{};
};

/// nibabel.orientations.io_orientation for a 4x4 affine (written from its algorithm, not its code):
///   1. RS = affine[:3, :3] with each column divided by its norm (an all-zero column is left as is);
///   2. its polar factor R = P[:, keep] * Qs[keep, :] from the SVD RS = P diag(S) Qs, keeping the
///      singular values above S.max() * 3 * DBL_EPSILON (numpy's rank threshold);
///   3. for file axes j = 0, 1, 2 in order: unless column j of R is all within 1e-8 of 0 (numpy's
///      allclose), the world axis is the first argmax of |R[:, j]| and the sign is that entry's;
///      that row of R is then zeroed, so a later file axis cannot take the same world axis.
/// Returns the first file axis left without a direction (nibabel's NaN row), or -1 when all have one.
inline int nifti_io_orientation(const NiftiAffine& a, NiftiOrientation& o) {
    Eigen::Matrix3d rs;
    for (int j = 0; j < 3; ++j) {
        double n2 = 0;
        for (int i = 0; i < 3; ++i) n2 += a[i][j] * a[i][j];
        double zoom = std::sqrt(n2);
        if (zoom == 0) zoom = 1;
        for (int i = 0; i < 3; ++i) rs(i, j) = a[i][j] / zoom;
    }
    const Eigen::JacobiSVD<Eigen::Matrix3d> svd(rs, Eigen::ComputeFullU | Eigen::ComputeFullV);
    const Eigen::Vector3d s = svd.singularValues();
    const double tol = s.maxCoeff() * 3 * std::numeric_limits<double>::epsilon();
    Eigen::Matrix3d r = Eigen::Matrix3d::Zero();
    for (int k = 0; k < 3; ++k)
        if (s(k) > tol) r += svd.matrixU().col(k) * svd.matrixV().col(k).transpose();
    for (int j = 0; j < 3; ++j) {
        bool zero = true;
        for (int i = 0; i < 3; ++i) zero = zero && std::abs(r(i, j)) <= 1e-8;
        if (zero) return j;
        int out = 0;
        for (int i = 1; i < 3; ++i)
            if (std::abs(r(i, j)) > std::abs(r(out, j))) out = i;
        o.out_axis[static_cast<std::size_t>(j)] = out;
        o.flip[static_cast<std::size_t>(j)] = r(out, j) < 0 ? -1 : 1;
        r.row(out).setZero();
    }
    return -1;
}

/// Everything known before the voxels are read.
struct NiftiPlan {
    NiftiHeader h;
    NiftiInfo info;
    bool gz = false;
    int nbyper = 0;
    std::int64_t nvox = 0;
    std::array<std::int64_t, 3> in_shape{};  // the file's (I, J, K)
    NiftiOrientation ornt;
    NiftiAffine affine{};            // the best affine, before reorientation
    NiftiAffine canonical_affine{};  // after it
    std::array<double, 3> spacing{};
    std::array<std::int64_t, 3> step{};  // file-order offset step along each output axis
    std::int64_t base = 0;               // file-order offset of output voxel (0, 0, 0)
};

inline std::string nifti_errno_text(int e) { return std::strerror(e); }

template <class T>
T nifti_load_field(const unsigned char* p) {
    T v;
    std::memcpy(&v, p, sizeof(T));
    return v;
}

/// Opens `path` into `z`, reads and validates the header and works out shape, affine and
/// orientation; `z` is left just after the header (the data start at plan.h.vox_offset). Every
/// failure is an IoError "nifti: <path>: ...".
inline NiftiPlan nifti_plan(const std::string& path, const NiftiLimits& limits, std::unique_ptr<ZnzHandle>& z) {
    MEDIMG_CHECK(limits.max_voxels > 0, ValueError, "read_nifti: NiftiLimits::max_voxels must be positive, got ",
                 limits.max_voxels);
    MEDIMG_CHECK(limits.max_file_bytes > 0, ValueError,
                 "read_nifti: NiftiLimits::max_file_bytes must be positive, got ", limits.max_file_bytes);
    nifti_library_init();
    const std::string where = "nifti: " + path + ": ";
    auto fail = [&](auto&&... what) -> IoError { return IoError(::medimg::detail::concat(where, what...)); };

    // ---- the file: a regular file within max_file_bytes; gzip or not from its first two bytes ----
    NiftiPlan p;
    std::int64_t file_bytes = 0;
    {
        check_input_file(path, "nifti");  // a FIFO, socket, device or folder: refused before opening
        const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // O_NONBLOCK: a FIFO swapped in cannot block
        if (fd < 0) throw fail("cannot open (", nifti_errno_text(errno), ")");
        struct stat st {};
        unsigned char magic[2] = {0, 0};
        const int fstat_rc = ::fstat(fd, &st);
        const int fstat_errno = errno;
        ssize_t got = 0;
        if (fstat_rc == 0 && S_ISREG(st.st_mode)) {
            do {
                got = ::read(fd, magic, 2);
            } while (got < 0 && errno == EINTR);
        }
        const int read_errno = errno;
        ::close(fd);
        if (fstat_rc != 0) throw fail("cannot stat (", nifti_errno_text(fstat_errno), ")");
        check_opened_file(st.st_mode, path, "nifti");
        if (got < 0) throw fail("cannot read (", nifti_errno_text(read_errno), ")");
        file_bytes = static_cast<std::int64_t>(st.st_size);
        if (file_bytes > limits.max_file_bytes)
            throw fail("file is ", file_bytes, " bytes, over max_file_bytes = ", limits.max_file_bytes);
        p.gz = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    }
    z = std::make_unique<ZnzHandle>(path, p.gz);
    if (!z->ok()) throw fail("cannot open (", nifti_errno_text(errno), ")");
    const char* stream = p.gz ? " (after gzip decompression)" : "";

    // ---- the header: 348 bytes (NIfTI-1) or 540 (NIfTI-2), either byte order ----
    union {
        nifti_1_header n1;
        nifti_2_header n2;
        unsigned char bytes[sizeof(nifti_2_header)];
    } raw;
    static_assert(sizeof(nifti_1_header) == 348 && sizeof(nifti_2_header) == 540, "nifticlib header layout");
    std::memset(&raw, 0, sizeof raw);
    std::int64_t got = z->read(raw.bytes, 348);
    if (got < 0) throw fail("corrupt gzip stream (bad deflate data or checksum)");
    if (got < 348)
        throw fail("truncated header: ", got, " bytes", stream, ", a NIfTI-1 header has 348");
    const std::int32_t sizeof_hdr = nifti_load_field<std::int32_t>(raw.bytes);
    std::int32_t sizeof_swapped = sizeof_hdr;
    nifti_swap_4bytes(1, &sizeof_swapped);
    if (sizeof_hdr == 348 || sizeof_swapped == 348) {
        p.h.version = 1;
        p.h.swapped = sizeof_hdr != 348;
    } else if (sizeof_hdr == 540 || sizeof_swapped == 540) {
        p.h.version = 2;
        p.h.swapped = sizeof_hdr != 540;
        got = z->read(raw.bytes + 348, 540 - 348);
        if (got < 0) throw fail("corrupt gzip stream (bad deflate data or checksum)");
        if (got < 540 - 348)
            throw fail("truncated header: ", 348 + got, " bytes", stream, ", a NIfTI-2 header has 540");
    } else {
        throw fail("not a NIfTI file: sizeof_hdr is ", sizeof_hdr, " (NIfTI-1 has 348, NIfTI-2 540)");
    }
    const int version = p.h.version;
    // magic: "n+1\0" / "n+2\0" then "\r\n\032\n" (nibabel also accepts that EOL check all zero)
    const unsigned char* magic = version == 1 ? raw.bytes + 344 : raw.bytes + 4;
    auto printable_magic = [&] {
        std::string m;
        for (int i = 0; i < 4 && magic[i]; ++i)
            m += (magic[i] >= 0x20 && magic[i] < 0x7f) ? static_cast<char>(magic[i]) : '?';
        return m;
    };
    const char expect_magic[4] = {'n', '+', static_cast<char>('0' + version), '\0'};
    if (std::memcmp(magic, expect_magic, 4) != 0) {
        if (magic[0] == 'n' && magic[1] == 'i' && magic[2] == expect_magic[2] && magic[3] == 0)
            throw fail("magic \"", printable_magic(), "\" marks a .hdr/.img pair; only single-file .nii is read");
        throw fail("bad magic \"", printable_magic(), "\" (a NIfTI-", version, " file has \"n+", version, "\")");
    }
    if (version == 2) {
        static const unsigned char eol[4] = {'\r', '\n', 0x1a, '\n'}, zero[4] = {0, 0, 0, 0};
        if (std::memcmp(magic + 4, eol, 4) != 0 && std::memcmp(magic + 4, zero, 4) != 0)
            throw fail("bad NIfTI-2 magic: the bytes after \"n+2\" are not \\r\\n\\032\\n (text-mode transfer?)");
    }
    if (nifti_header_version(reinterpret_cast<const char*>(raw.bytes), sizeof raw) != version)
        throw fail("nifticlib does not read this as a NIfTI-", version, " header");

    // ---- fields in host order (nifticlib swaps a copy), as doubles / int64 ----
    NiftiHeader& h = p.h;
    double qfac = 0;
    if (version == 1) {
        nifti_1_header x = raw.n1;
        if (h.swapped) swap_nifti_header(&x, 1);
        for (int i = 0; i < 8; ++i) h.dim[static_cast<std::size_t>(i)] = x.dim[i];
        for (int i = 0; i < 8; ++i) h.pixdim[static_cast<std::size_t>(i)] = x.pixdim[i];
        h.datatype = x.datatype;
        if (!(x.vox_offset >= 0 && x.vox_offset < 2147483648.0f))  // also NaN; nifticlib casts it to int
            throw fail("vox_offset ", x.vox_offset, " is not a byte offset in 0..2^31");
        h.vox_offset = static_cast<std::int64_t>(x.vox_offset);  // int() truncation, as nibabel and nifticlib
        h.scl_slope = x.scl_slope;
        h.scl_inter = x.scl_inter;
        h.qform_code = x.qform_code;
        h.sform_code = x.sform_code;
        h.quatern_b = x.quatern_b;
        h.quatern_c = x.quatern_c;
        h.quatern_d = x.quatern_d;
        h.qoffset = {x.qoffset_x, x.qoffset_y, x.qoffset_z};
        for (int j = 0; j < 4; ++j) {
            h.srow[0][static_cast<std::size_t>(j)] = x.srow_x[j];
            h.srow[1][static_cast<std::size_t>(j)] = x.srow_y[j];
            h.srow[2][static_cast<std::size_t>(j)] = x.srow_z[j];
        }
    } else {
        nifti_2_header x = raw.n2;
        if (h.swapped) swap_nifti_header(&x, 2);
        for (int i = 0; i < 8; ++i) h.dim[static_cast<std::size_t>(i)] = x.dim[i];
        for (int i = 0; i < 8; ++i) h.pixdim[static_cast<std::size_t>(i)] = x.pixdim[i];
        h.datatype = x.datatype;
        h.vox_offset = x.vox_offset;
        h.scl_slope = x.scl_slope;
        h.scl_inter = x.scl_inter;
        h.qform_code = x.qform_code;
        h.sform_code = x.sform_code;
        h.quatern_b = x.quatern_b;
        h.quatern_c = x.quatern_c;
        h.quatern_d = x.quatern_d;
        h.qoffset = {x.qoffset_x, x.qoffset_y, x.qoffset_z};
        for (int j = 0; j < 4; ++j) {
            h.srow[0][static_cast<std::size_t>(j)] = x.srow_x[j];
            h.srow[1][static_cast<std::size_t>(j)] = x.srow_y[j];
            h.srow[2][static_cast<std::size_t>(j)] = x.srow_z[j];
        }
    }

    // ---- dims: dim[0] in 1..7, each used dim >= 1, one volume, voxel count within the limit ----
    const std::int64_t ndim = h.dim[0];
    if (ndim < 1 || ndim > 7) throw fail("dim[0] is ", ndim, " (the number of dimensions must be 1..7)");
    for (std::int64_t i = 1; i <= ndim; ++i)
        if (h.dim[static_cast<std::size_t>(i)] < 1)
            throw fail("dim[", i, "] is ", h.dim[static_cast<std::size_t>(i)], " (dimensions must be >= 1)");
    std::int64_t volumes = 1;  // product of dim[4..ndim], saturating
    for (std::int64_t i = 4; i <= ndim; ++i) {
        const std::int64_t d = h.dim[static_cast<std::size_t>(i)];
        volumes = volumes > std::numeric_limits<std::int64_t>::max() / d ? std::numeric_limits<std::int64_t>::max()
                                                                          : volumes * d;
    }
    if (volumes > 1) {
        std::string dims;
        for (std::int64_t i = 4; i <= ndim; ++i)
            dims += (i > 4 ? " " : "") + std::to_string(h.dim[static_cast<std::size_t>(i)]);
        const bool saturated = volumes == std::numeric_limits<std::int64_t>::max();
        throw fail(ndim, "-D with ", saturated ? std::string("too many") : std::to_string(volumes), " volumes (dim[4..",
                   ndim, "] = ", dims, "); only single 3-D volumes are read");
    }
    for (std::size_t i = 0; i < 3; ++i) p.in_shape[i] = static_cast<std::int64_t>(i) + 1 <= ndim ? h.dim[i + 1] : 1;
    {
        std::int64_t n = 1;
        bool over = false;
        for (std::int64_t d : p.in_shape) {
            if (n > limits.max_voxels / d) over = true;
            n = over ? n : n * d;
        }
        if (over) {
            const auto& s = p.in_shape;
            const long double exact = static_cast<long double>(s[0]) * static_cast<long double>(s[1]) *
                                      static_cast<long double>(s[2]);
            char count[64];
            std::snprintf(count, sizeof count, "%.4Lg", exact);
            throw fail("dims ", s[0], " x ", s[1], " x ", s[2], " (", count, " voxels) exceed max_voxels = ",
                       limits.max_voxels);
        }
        p.nvox = n;
    }

    // ---- datatype and scaling ----
    const NiftiDtype* dt = nifti_dtype(h.datatype);
    if (!dt) throw fail("unknown datatype code ", h.datatype);
    if (!dt->supported) {
        const std::string name = dt->name;
        const char* why = name.rfind("complex", 0) == 0 ? "complex voxels"
                          : name.rfind("RGB", 0) == 0   ? "RGB voxels"
                                                        : "this voxel type";
        throw fail("datatype ", dt->name, " (code ", dt->code, ") is not supported: ", why, " are not read");
    }
    p.nbyper = dt->bytes;
    const bool slope_ok = h.scl_slope != 0 && std::isfinite(h.scl_slope);
    if (slope_ok && !std::isfinite(h.scl_inter))
        throw fail("scl_slope is ", h.scl_slope, " but scl_inter is ", h.scl_inter, " (nibabel refuses this too)");

    // ---- where the data lie, and whether the file holds them ----
    const std::int64_t min_offset = version == 1 ? 352 : 544;  // header + the 4-byte extension flag
    if (h.vox_offset < min_offset)
        throw fail("vox_offset is ", h.vox_offset, ", inside the header (a single-file NIfTI-", version,
                   " puts data at ", min_offset, " or later)");
    if (p.nvox > std::numeric_limits<std::int64_t>::max() / 16 ||
        h.vox_offset > std::numeric_limits<std::int64_t>::max() - p.nvox * p.nbyper)
        throw fail("vox_offset ", h.vox_offset, " + ", p.nvox, " voxels do not fit a file");
    const std::int64_t data_bytes = p.nvox * p.nbyper;
    const std::int64_t data_end = h.vox_offset + data_bytes;
    if (!p.gz && data_end > file_bytes)
        throw fail("truncated: the header announces ", data_bytes, " data bytes at offset ", h.vox_offset,
                   " but the file has ", file_bytes, " bytes");
    if (p.gz && data_end > limits.max_file_bytes)
        throw fail("the header announces ", data_end, " decompressed bytes, over max_file_bytes = ",
                   limits.max_file_bytes);

    // ---- nibabel's load-time header fixes (Nifti1Header check_fix) ----
    for (int i = 1; i <= 3; ++i) {
        double& d = h.pixdim[static_cast<std::size_t>(i)];
        if (d == 0) d = 1;
        if (d < 0) d = -d;
    }
    qfac = h.pixdim[0] == 1 || h.pixdim[0] == -1 ? h.pixdim[0] : 1;
    h.pixdim[0] = qfac;
    if (h.qform_code < 0 || h.qform_code > 5) h.qform_code = 0;
    if (h.sform_code < 0 || h.sform_code > 5) h.sform_code = 0;

    // ---- nifticlib's reading of the same header must agree with ours ----
    NiftiImagePtr nim(version == 1 ? nifti_convert_n1hdr2nim(raw.n1, nullptr)
                                   : nifti_convert_n2hdr2nim(raw.n2, nullptr));
    if (!nim) throw fail("nifticlib refuses the header");
    const int host_order = nifti_short_order();
    const int file_order = h.swapped ? 3 - host_order : host_order;  // LSB_FIRST 1, MSB_FIRST 2
    if (nim->nvox != p.nvox || nim->nbyper != p.nbyper || nim->datatype != h.datatype ||
        nim->iname_offset != h.vox_offset || nim->byteorder != file_order)
        throw fail("nifticlib reads the header differently (nvox ", nim->nvox, " vs ", p.nvox, ", datatype ",
                   nim->datatype, " vs ", h.datatype, ", offset ", nim->iname_offset, " vs ", h.vox_offset, ")");

    // ---- the best affine (Nifti1Header.get_best_affine) ----
    NiftiAffine& a = p.affine;
    a = {{{0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 1}}};
    if (h.sform_code != 0) {
        p.info.form = "sform";
        for (std::size_t i = 0; i < 3; ++i)
            for (std::size_t j = 0; j < 4; ++j) a[i][j] = h.srow[i][j];
    } else if (h.qform_code != 0) {
        p.info.form = "qform";
        long double r[3][3];
        if (!nifti_quaternion_matrix(h, r))
            throw fail("qform quaternion (", h.quatern_b, ", ", h.quatern_c, ", ", h.quatern_d,
                       ") has b^2 + c^2 + d^2 > 1");
        const long double vox[3] = {h.pixdim[1], h.pixdim[2], h.pixdim[3] * qfac};
        for (std::size_t i = 0; i < 3; ++i) {
            for (std::size_t j = 0; j < 3; ++j) a[i][j] = static_cast<double>(r[i][j] * vox[j]);  // rounded once
            a[i][3] = h.qoffset[i];
        }
    } else {
        // AnalyzeHeader.get_base_affine -> shape_zoom_affine(shape, zooms, x_flip=True): dims beyond
        // dim[0] count as 1 with zoom 1; origin at the volume's centre.
        p.info.form = "none";
        for (int i = 0; i < 3; ++i) {
            const bool used = i + 1 <= ndim;
            const double n = used ? static_cast<double>(h.dim[static_cast<std::size_t>(i + 1)]) : 1.0;
            double zoom = used ? h.pixdim[static_cast<std::size_t>(i + 1)] : 1.0;
            if (i == 0) zoom = -zoom;
            const double origin = (n - 1) / 2.0;
            a[static_cast<std::size_t>(i)][static_cast<std::size_t>(i)] = zoom;
            a[static_cast<std::size_t>(i)][3] = -origin * zoom;
        }
    }
    for (int i = 0; i < 3; ++i)
        for (int j = 0; j < 4; ++j)
            if (!std::isfinite(a[static_cast<std::size_t>(i)][static_cast<std::size_t>(j)]))
                throw fail("the ", p.info.form == "none" ? std::string("pixdim") : p.info.form,
                           " affine has a non-finite entry");
    const int lost = nifti_io_orientation(a, p.ornt);
    if (lost >= 0)
        throw fail("the ", p.info.form == "none" ? std::string("pixdim") : p.info.form,
                   " affine gives file axis ", lost, " no direction (singular); nibabel cannot reorient it either");

    // ---- reorientation (apply_orientation: flip file axes, then transpose) and the new affine ----
    // Output axis d shows file axis j with out_axis[j] == d; a flipped axis is read from its far end.
    const std::array<std::int64_t, 3> file_stride = {1, p.in_shape[0], p.in_shape[0] * p.in_shape[1]};
    NiftiAffine& c = p.canonical_affine;
    c = {{{0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 1}}};
    for (std::size_t j = 0; j < 3; ++j) {
        const auto d = static_cast<std::size_t>(p.ornt.out_axis[j]);
        const int flip = p.ornt.flip[j];
        p.step[d] = flip * file_stride[j];
        if (flip < 0) p.base += (p.in_shape[j] - 1) * file_stride[j];
        // inv_ornt_aff: column d is flip * column j; a flipped axis moves the origin to its far end
        for (std::size_t i = 0; i < 3; ++i) c[i][d] = flip * a[i][j] + 0.0;  // + 0.0: no -0 entries
    }
    for (std::size_t i = 0; i < 3; ++i) {
        double t = 0;
        for (std::size_t j = 0; j < 3; ++j)
            if (p.ornt.flip[j] < 0) t += a[i][j] * static_cast<double>(p.in_shape[j] - 1);
        c[i][3] = t + a[i][3];
    }
    for (std::size_t d = 0; d < 3; ++d) {
        p.spacing[d] = std::hypot(c[0][d], c[1][d], c[2][d]);  // > 0: a zero column has no direction
        if (!std::isfinite(p.spacing[d]) || !std::isfinite(c[d][3]))
            throw fail("the ", p.info.form == "none" ? std::string("pixdim") : p.info.form,
                       " affine overflows double once reoriented");
    }

    // ---- the info ----
    static const char labels[3][2] = {{'L', 'R'}, {'P', 'A'}, {'I', 'S'}};  // aff2axcodes' default labels
    p.info.version = version;
    p.info.datatype = dt->name;
    p.info.original_orientation.clear();
    for (std::size_t j = 0; j < 3; ++j) {
        const int out = p.ornt.out_axis[j];
        p.info.original_orientation += labels[out][p.ornt.flip[j] > 0 ? 1 : 0];
        p.info.shape[static_cast<std::size_t>(out)] = p.in_shape[j];
    }
    return p;
}

/// Converts the raw voxels (host byte order, file layout: i fastest) to float, reoriented: output
/// (a, b, c) row-major reads input offset base + a*step[0] + b*step[1] + c*step[2]. Scaling as
/// nibabel's apply_read_scaling: double(raw) * slope, then + inter, both in double, then float.
template <class T>
void nifti_convert_voxels(const unsigned char* raw, float* out, const std::array<std::int64_t, 3>& shape,
                          std::int64_t base, const std::array<std::int64_t, 3>& step, bool scale, double slope,
                          double inter) {
    for (std::int64_t a = 0; a < shape[0]; ++a)
        for (std::int64_t b = 0; b < shape[1]; ++b) {
            std::int64_t src = base + a * step[0] + b * step[1];
            for (std::int64_t c = 0; c < shape[2]; ++c, src += step[2]) {
                T v;
                std::memcpy(&v, raw + src * static_cast<std::int64_t>(sizeof(T)), sizeof(T));
                double d = static_cast<double>(v);
                if (scale) {
                    d = d * slope;
                    d = d + inter;
                }
                *out++ = static_cast<float>(d);  // IEEE: rounds to nearest, overflows to +-inf
            }
        }
}

}  // namespace detail

/// The header of a .nii / .nii.gz file after the RAS+ reduction; no voxel is read (a gzip file's
/// data length is therefore only checked by read_nifti).
inline NiftiInfo read_nifti_info(const std::string& path, const NiftiLimits& limits = {}) {
    std::unique_ptr<detail::ZnzHandle> z;
    return detail::nifti_plan(path, limits, z).info;
}

/// The one 3-D volume of a .nii / .nii.gz file as nibabel's as_closest_canonical(img).get_fdata(),
/// in float32, with its affine and spacing (see the top of this file).
inline NiftiVolume read_nifti(const std::string& path, const NiftiLimits& limits = {}) {
    std::unique_ptr<detail::ZnzHandle> z;
    const detail::NiftiPlan p = detail::nifti_plan(path, limits, z);
    const std::string where = "nifti: " + path + ": ";
    const std::int64_t data_bytes = p.nvox * p.nbyper;

    // ---- the voxels: exactly data_bytes from vox_offset; a gzip stream must end right there ----
    if (!z->seek(p.h.vox_offset))
        throw IoError(where + "cannot seek to vox_offset " + std::to_string(p.h.vox_offset));
    std::vector<unsigned char> raw(static_cast<std::size_t>(data_bytes));
    const std::int64_t got = z->read(raw.data(), raw.size());
    if (got < 0) throw IoError(where + "corrupt gzip stream (bad deflate data or checksum)");
    if (got < data_bytes)
        throw IoError(::medimg::detail::concat(where, "truncated: ", got, " of the ", data_bytes,
                                               " data bytes the header announces",
                                               p.gz ? " (after gzip decompression)" : ""));
    if (p.gz) {
        unsigned char extra[1];
        const std::int64_t more = z->read(extra, 1);
        if (more < 0) throw IoError(where + "corrupt gzip stream (bad deflate data or checksum)");
        if (more > 0)
            throw IoError(::medimg::detail::concat(where, "the gzip stream decompresses past the ",
                                                   p.h.vox_offset + data_bytes, " bytes the header announces"));
    }
    int nbyper = 0, swapsize = 0;
    nifti_datatype_sizes(p.h.datatype, &nbyper, &swapsize);
    if (p.h.swapped && swapsize > 1) nifti_swap_Nbytes(p.nvox, swapsize, raw.data());

    NiftiVolume v;
    v.info = p.info;
    v.affine = p.canonical_affine;
    v.spacing = p.spacing;
    // nibabel scales only for a finite, non-zero slope (and skips slope 1, inter 0, which changes nothing)
    const double slope = p.h.scl_slope, inter = p.h.scl_inter;
    const bool scale = slope != 0 && std::isfinite(slope) && !(slope == 1 && inter == 0);
    const auto& s = p.info.shape;
    v.values = Tensor<float, Cpu>::empty(Shape{s[0], s[1], s[2]});
    auto convert = [&](auto type_tag) {
        detail::nifti_convert_voxels<decltype(type_tag)>(raw.data(), v.values.data(), s, p.base, p.step, scale, slope,
                                                         inter);
    };
    switch (p.h.datatype) {
        case NIFTI_TYPE_UINT8: convert(std::uint8_t{}); break;
        case NIFTI_TYPE_INT8: convert(std::int8_t{}); break;
        case NIFTI_TYPE_INT16: convert(std::int16_t{}); break;
        case NIFTI_TYPE_UINT16: convert(std::uint16_t{}); break;
        case NIFTI_TYPE_INT32: convert(std::int32_t{}); break;
        case NIFTI_TYPE_UINT32: convert(std::uint32_t{}); break;
        case NIFTI_TYPE_INT64: convert(std::int64_t{}); break;
        case NIFTI_TYPE_UINT64: convert(std::uint64_t{}); break;
        case NIFTI_TYPE_FLOAT32: convert(float{}); break;
        case NIFTI_TYPE_FLOAT64: convert(double{}); break;
        default: throw IoError(where + "datatype " + std::to_string(p.h.datatype) + " slipped past the header check");
    }
    return v;
}

/// One 2-D slice (H, W) of values along axis 0 (sagittal: values[k,:,:]), 1 (coronal: values[:,k,:])
/// or 2 (axial: values[:,:,k]), as numpy indexing gives; a copy.
inline Tensor<float, Cpu> nifti_slice(const NiftiVolume& v, int axis, std::int64_t k) {
    MEDIMG_CHECK(axis >= 0 && axis <= 2, ValueError, "nifti_slice: axis must be 0, 1 or 2, got ", axis);
    MEDIMG_CHECK(v.values.rank() == 3, ShapeError, "nifti_slice: values must be (I, J, K), got ", v.values.shape());
    const std::int64_t n0 = v.values.size(0), n1 = v.values.size(1), n2 = v.values.size(2);
    const std::int64_t n[3] = {n0, n1, n2};
    MEDIMG_CHECK(k >= 0 && k < n[axis], ShapeError, "nifti_slice: index ", k, " out of range for axis ", axis,
                 " of shape ", v.values.shape());
    const float* src = v.values.data();
    const std::int64_t h = axis == 0 ? n1 : n0, w = axis == 2 ? n1 : n2;
    auto out = Tensor<float, Cpu>::empty(Shape{h, w});
    float* dst = out.data();
    for (std::int64_t a = 0; a < h; ++a)
        for (std::int64_t b = 0; b < w; ++b) {
            const std::int64_t i = axis == 0 ? k : a, j = axis == 0 ? a : axis == 1 ? k : b, l = axis == 2 ? k : b;
            *dst++ = src[(i * n1 + j) * n2 + l];
        }
    return out;
}

}  // namespace medimg::io
