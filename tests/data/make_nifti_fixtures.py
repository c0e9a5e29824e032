#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes tests/data/nifti/: small NIfTI volumes made with nibabel, and expected.json with what
nibabel reads from each (nib.load, then as_closest_canonical): the canonical shape, every voxel of
get_fdata() (float64, C order; NaN / Inf as the strings "nan", "inf", "-inf"), the canonical affine,
the zooms, the original axis codes (aff2axcodes of the file's own affine), which transform won, the
NIfTI version and nibabel's dtype name. tests/cpu/test_nifti.cpp compares medimg::io::read_nifti
against it. Run by hand with /usr/bin/python3 (nibabel 5.0, numpy); the tests never run it. Hostile
files are not written here: the test makes them at run time from these files' bytes.
"""
import gzip
import json
import math
import os
import struct

import nibabel as nib
import numpy as np
from nibabel.orientations import aff2axcodes

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nifti")


def rot(axis, degrees):
    """3x3 rotation about x (0), y (1) or z (2)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    r = np.eye(3)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    r[i, i], r[i, j], r[j, i], r[j, j] = c, -s, s, c
    return r


def affine(m3, zooms, offset):
    a = np.eye(4)
    a[:3, :3] = np.asarray(m3) @ np.diag(zooms)
    a[:3, 3] = offset
    return a


def patch_scaling(path, slope, inter):
    """Writes scl_slope / scl_inter straight into the header (nibabel recomputes them on save)."""
    with open(path, "r+b") as f:
        raw = f.read(4)
        if struct.unpack("<i", raw)[0] in (348, 540):
            endian = "<"
        else:
            endian = ">"
        size = struct.unpack(endian + "i", raw)[0]
        if size == 348:
            f.seek(112)
            f.write(struct.pack(endian + "ff", slope, inter))
        else:
            f.seek(176)
            f.write(struct.pack(endian + "dd", slope, inter))


def gzip_file(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path + ".gz", "wb") as f:
        f.write(gzip.compress(data, compresslevel=9, mtime=0))
    os.remove(path)
    return path + ".gz"


def encode(v):
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def record(name):
    img = nib.load(os.path.join(OUT, name))
    hdr = img.header
    form = "sform" if hdr["sform_code"] != 0 else "qform" if hdr["qform_code"] != 0 else "none"
    can = nib.as_closest_canonical(img)
    data = can.get_fdata()
    while data.ndim > 3:  # a 4-D file with one volume
        assert data.shape[-1] == 1
        data = data[..., 0]
    zooms = [float(z) for z in can.header.get_zooms()[:3]]
    norms = np.sqrt((can.affine[:3, :3] ** 2).sum(axis=0))
    assert np.allclose(zooms, norms, rtol=1e-6), (name, zooms, norms)  # spacing = column norms here
    return {
        "file": name,
        "version": 2 if isinstance(img, nib.Nifti2Image) else 1,
        "datatype": img.get_data_dtype().name,
        "form": form,
        "axcodes": "".join(aff2axcodes(img.affine)),
        "shape": list(data.shape),
        "affine": can.affine.tolist(),
        "zooms": zooms,
        "values": [encode(float(v)) for v in data.ravel(order="C")],
    }


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    rng = np.random.default_rng(20240611)
    written = []

    def save(img, name, slope=None, inter=None, gz=False):
        path = os.path.join(OUT, name[:-3] if gz else name)
        nib.save(img, path)
        if slope is not None:
            patch_scaling(path, slope, inter)
        if gz:
            path = gzip_file(path)
        assert os.path.basename(path) == name
        written.append(name)

    # int16 with scl_slope / scl_inter, LAS (the usual radiological sform): axis 0 flipped.
    a = ((np.arange(7 * 6 * 5) * 37) % 1001 - 500).astype(np.int16).reshape(7, 6, 5)
    save(nib.Nifti1Image(a, affine(np.diag([-1, 1, 1]), [1.5, 2.0, 2.5], [40, -30, -20])),
         "int16_scaled_las.nii", slope=0.5, inter=-3.0)

    # float32 .nii.gz, already RAS+, with NaN and +-Inf kept (nifticlib's loader would zero them).
    f = (rng.standard_normal((6, 5, 4)) * 100).astype(np.float32)
    f[1, 2, 3], f[4, 0, 1], f[0, 4, 2] = np.nan, np.inf, -np.inf
    save(nib.Nifti1Image(f, affine(np.eye(3), [0.8, 0.9, 1.1], [-2.4, -1.8, 3.3])), "float32_ras.nii.gz", gz=True)

    # Oblique sform: LPS, rotated 20 degrees about x and 20 about z, anisotropic zooms.
    m = rot(2, 20) @ rot(0, 20) @ np.diag([-1, -1, 1])
    o = (np.arange(7 * 6 * 5, dtype=np.float32) * 0.25 - 20).reshape(7, 6, 5)
    save(nib.Nifti1Image(o, affine(m, [1.2, 1.0, 2.0], [10, 20, -30])), "oblique_sform.nii.gz", gz=True)

    # Oblique where two file axes are both closest to world x: file axis 1 takes x first, so
    # io_orientation must give axis 2 its next best (y) -- the order in which it hands out world
    # axes matters. Rotations of 35 (z), 25 (y), 25 (x) degrees, columns permuted to (2, 0, 1).
    m = (rot(2, 35) @ rot(1, 25) @ rot(0, 25))[:, [2, 0, 1]]
    o = rng.integers(-1000, 1000, size=(5, 4, 3)).astype(np.int32)
    save(nib.Nifti1Image(o, affine(m, [1.0, 1.5, 2.0], [3, -4, 5])), "oblique_greedy_int32.nii")

    # qform only (sform_code 0), left-handed (qfac -1), rotated 10 degrees about y.
    q = ((np.arange(6 * 5 * 4) * 13) % 97).astype(np.int16).reshape(6, 5, 4)
    img = nib.Nifti1Image(q, None)
    img.set_qform(affine(rot(1, 10) @ np.diag([1, 1, -1]), [2.0, 2.0, 3.0], [5, -6, 7]), code=1)
    img.set_sform(None, code=0)
    assert img.header["qform_code"] == 1 and img.header["sform_code"] == 0 and img.header["pixdim"][0] == -1
    save(img, "qform_only.nii")

    # Neither (both codes 0): nibabel's base affine diag(-dx, dy, dz) from the centre; uint8.
    u = ((np.arange(5 * 4 * 3) * 7) % 256).astype(np.uint8).reshape(5, 4, 3)
    img = nib.Nifti1Image(u, None)
    img.header.set_zooms((1.5, 2.0, 3.0))
    img.set_qform(None, code=0)
    img.set_sform(None, code=0)
    save(img, "no_form_uint8.nii")

    # sform and qform disagree: the sform (PSR, code 2) wins over the qform (RAS, code 1).
    d = ((np.arange(4 * 5 * 6) * 11) % 200 - 100).astype(np.int8).reshape(4, 5, 6)
    img = nib.Nifti1Image(d, None)
    img.set_qform(affine(np.eye(3), [1, 1, 1], [0, 0, 0]), code=1)
    img.set_sform(affine([[0, 0, 1], [-1, 0, 0], [0, 1, 0]], [2.0, 3.0, 4.0], [1, 2, 3]), code=2)
    save(img, "sform_vs_qform.nii")

    # Permuted LPS-style axes: the file's axes are (I, L, P) -> "ILP"; uint16 with slope only.
    p = ((np.arange(3 * 4 * 5) * 977) % 65536).astype(np.uint16).reshape(3, 4, 5)
    m = np.array([[0, -1, 0], [0, 0, -1], [-1, 0, 0]], dtype=float)
    save(nib.Nifti1Image(p, affine(m, [3.0, 1.0, 2.0], [50, 60, 70])), "permuted_ilp_uint16.nii",
         slope=1.0 / 255.0, inter=0.0)

    # NIfTI-2, float64, ASL orientation, with scaling.
    n2 = rng.standard_normal((4, 3, 5))
    m = np.array([[0, 0, -1], [1, 0, 0], [0, 1, 0]], dtype=float)
    save(nib.Nifti2Image(n2, affine(m, [1.0, 1.25, 0.75], [-5, 5, 15])), "nifti2_float64_asl.nii",
         slope=1.5, inter=0.25)

    # Big-endian int16 with scaling, RPI.
    b = ((np.arange(5 * 4 * 3) * 101) % 3001 - 1500).astype(">i2").reshape(5, 4, 3)
    img = nib.Nifti1Image(b, affine(np.diag([1, -1, -1]), [1.0, 1.0, 1.0], [0, 0, 0]),
                          nib.Nifti1Header(endianness=">"))
    img.set_data_dtype(">i2")
    save(img, "bigendian_int16_rpi.nii", slope=2.0, inter=1.25)

    # uint8 .nii.gz, scaled by 1/255 (non-trivial float64 products), RAS.
    g = rng.integers(0, 256, size=(6, 5, 4)).astype(np.uint8)
    save(nib.Nifti1Image(g, affine(np.eye(3), [1, 1, 1], [0, 0, 0])), "uint8_scaled.nii.gz",
         slope=1.0 / 255.0, inter=-0.5, gz=True)

    # 4-D with a single volume (dim[4] = 1): read as 3-D; SAR orientation.
    v = (np.arange(4 * 3 * 2, dtype=np.float32) - 7.5).reshape(4, 3, 2, 1)
    m = np.array([[0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=float)
    save(nib.Nifti1Image(v, affine(m, [1, 2, 3], [0, 0, 0])), "one_volume_4d.nii")

    expected = {"generator": "tests/data/make_nifti_fixtures.py", "nibabel": nib.__version__,
                "fixtures": [record(n) for n in written]}
    with open(os.path.join(OUT, "expected.json"), "w") as fh:
        json.dump(expected, fh, indent=None, separators=(",", ":"))
        fh.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    for fx in expected["fixtures"]:
        print(f'{fx["file"]:28s} v{fx["version"]} {fx["datatype"]:8s} {fx["form"]:5s} {fx["axcodes"]} -> {fx["shape"]}')
    print(f"{len(written)} fixtures, {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
