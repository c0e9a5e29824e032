#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# make_dicom_fixtures.py: writes the small DICOM files of tests/data/dicom/ and what they must read
# as (expected.json), with pydicom (Debian: python3-pydicom) for the files and the oracle, and GDCM's
# gdcmconv (Debian: libgdcm-tools) for the compressed transfer syntaxes pydicom cannot encode.
# Every image is synthetic (a disc phantom with a bone ring and a lesion, seeded noise), so nothing
# here comes from a patient; the patient tags are filled with obvious fakes ("Fixture^Jane", ...)
# so the tests can check that none of them reaches medimg's output.
# Expected values: "stored" = pydicom's pixel_array (for a compressed file: the array it was made
# from, the compression being lossless), "rescaled" = pydicom's apply_modality_lut, "windowed" =
# the VOI function of PS3.3 C.11.2.1.2 with output [0, 1], checked here against pydicom's
# apply_voi_lut (rescaled by its output range) before it is recorded, then MONOCHROME1 inverted.
# Run by hand from the repository root with Debian's python:  /usr/bin/python3 tests/data/make_dicom_fixtures.py
import hashlib
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dicom")
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"
SC_MF_STORAGE = "1.2.840.10008.5.1.4.1.1.7.3"  # Multi-frame Grayscale Word Secondary Capture
SC_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
FAKE_PATIENT = {
    "PatientName": "Fixture^Jane",
    "PatientID": "MEDIMG-FIXTURE-0001",
    "PatientBirthDate": "19700101",
    "PatientSex": "F",
    "PatientAddress": "1 Fixture Street",
    "InstitutionName": "Fixture General Hospital",
    "ReferringPhysicianName": "Referrer^Fixture",
    "AccessionNumber": "ACC-FIXTURE-42",
    "StudyID": "STUDY-FIXTURE",
    "StudyDate": "20200102",
    "StudyTime": "101010",
}


def phantom_hu(rows, cols, seed):
    """A CT-like slice in HU: air -1000, body ~40, a bone ring ~700, a lesion ~70, seeded noise."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:rows, 0:cols]
    r = np.hypot(y - rows / 2 + 0.5, x - cols / 2 + 0.5)
    hu = np.full((rows, cols), -1000.0)
    hu[r < rows * 0.42] = 700.0
    hu[r < rows * 0.36] = 40.0
    hu[np.hypot(y - rows * 0.4, x - cols * 0.6) < rows * 0.1] = 70.0
    hu += rng.normal(0, 12, size=hu.shape)
    return np.round(hu)


def uid(name):
    return generate_uid(entropy_srcs=["medimg-fixture", name])


def dataset(name, sop_class, ts, rows, cols, bits_stored=16, signed=False, photometric="MONOCHROME2", samples=1):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = uid(name + ".sop")
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    ds = FileDataset(name, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian = ts != ExplicitVRBigEndian
    ds.is_implicit_VR = ts == ImplicitVRLittleEndian
    for k, v in FAKE_PATIENT.items():
        setattr(ds, k, v)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = uid(name + ".study")
    ds.SeriesInstanceUID = uid(name + ".series")
    ds.FrameOfReferenceUID = uid(name + ".for")
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = samples
    ds.PhotometricInterpretation = photometric
    if samples > 1:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 16 if bits_stored > 8 else 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelSpacing = [0.7, 0.75]
    return ds


def set_pixels(ds, arr):
    dtype = {(8, 0): "u1", (16, 0): "u2", (16, 1): "i2"}[(ds.BitsAllocated, ds.PixelRepresentation)]
    order = "<" if ds.is_little_endian else ">"
    ds.PixelData = np.ascontiguousarray(arr).astype(order + dtype).tobytes()
    ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"


def linear_window(x, c, w, function="LINEAR"):
    """PS3.3 C.11.2.1.2.1 (LINEAR), C.11.2.1.3.2 (LINEAR_EXACT), C.11.2.1.3.1 (SIGMOID), output [0, 1]."""
    x = np.asarray(x, dtype=np.float64)
    if function == "LINEAR_EXACT":
        return np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, 1.0, (x - c) / w + 0.5))
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (x - c) / w))
    return np.where(x <= c - 0.5 - (w - 1) / 2, 0.0, np.where(x > c - 0.5 + (w - 1) / 2, 1.0, (x - (c - 0.5)) / (w - 1) + 0.5))


def first(v):
    return float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else float(v)


def floats(a):
    """A float list at float32's round-trip precision (9 significant digits): the tests compare in float."""
    return [float("%.9g" % v) for v in np.asarray(a, dtype=np.float64).ravel()]


def record(name, ds, stored, note, extra_settings=False):
    """Checks pydicom reads `stored` back, then the expected values of one fixture."""
    path = os.path.join(OUT, name)
    back = pydicom.dcmread(path)
    if back.file_meta.TransferSyntaxUID.is_compressed:
        got = stored  # lossless: the source array (pydicom here has no decoder for these syntaxes)
    else:
        got = back.pixel_array
        assert np.array_equal(got, stored), name
    frames = int(getattr(back, "NumberOfFrames", 1))
    samples = int(back.SamplesPerPixel)
    shape = [frames, samples, int(back.Rows), int(back.Columns)]
    st = np.asarray(stored).reshape(shape) if samples == 1 else np.asarray(stored).reshape(frames, back.Rows, back.Columns, samples).transpose(0, 3, 1, 2)
    e = {"file": name, "note": note, "shape": shape, "photometric": str(back.PhotometricInterpretation),
         "transfer_syntax": str(back.file_meta.TransferSyntaxUID), "stored": st.astype(np.int64).ravel().tolist()}
    e["stored_sha256"] = hashlib.sha256(st.astype("<f4").tobytes()).hexdigest()
    if samples == 1:
        resc = apply_modality_lut(np.asarray(stored, dtype=np.float64) if back.file_meta.TransferSyntaxUID.is_compressed else got, back)
        resc = np.asarray(resc, dtype=np.float64).reshape(shape)
        if e["stored"] != resc.ravel().tolist():
            e["rescaled"] = floats(resc)
        e["slope"] = float(getattr(back, "RescaleSlope", 1.0))
        e["intercept"] = float(getattr(back, "RescaleIntercept", 0.0))
        if "WindowCenter" in back:
            c, w = first(back.WindowCenter), first(back.WindowWidth)
            fn = str(getattr(back, "VOILUTFunction", "LINEAR"))
            mine = linear_window(resc, c, w, fn)
            # pydicom's apply_voi_lut on the rescaled values, rescaled from its output range to [0, 1]
            ref = apply_voi_lut(resc.reshape(-1, back.Rows, back.Columns) if frames > 1 else resc.reshape(back.Rows, back.Columns), back)
            bits = int(back.BitsStored)
            lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if back.PixelRepresentation == 1 else (0, 2 ** bits - 1)
            if "RescaleSlope" in back or "RescaleIntercept" in back:  # pydicom: range of the rescaled stored range
                s, i = float(getattr(back, "RescaleSlope", 1.0)), float(getattr(back, "RescaleIntercept", 0.0))
                lo, hi = sorted((lo * s + i, hi * s + i))
            ref = (np.asarray(ref, dtype=np.float64).reshape(shape) - lo) / (hi - lo)
            assert np.allclose(mine, ref, atol=1e-9), (name, np.abs(mine - ref).max())
            e["window"] = {"center": c, "width": w, "function": fn}
            win = 1.0 - mine if back.PhotometricInterpretation == "MONOCHROME1" else mine
            e["windowed"] = floats(win)
        else:
            e["window"] = None
        if extra_settings or "WindowCenter" not in back:  # the brain preset and min-max, on a few fixtures
            brain = linear_window(resc, 40.0, 80.0)
            e["brain"] = floats(1.0 - brain if back.PhotometricInterpretation == "MONOCHROME1" else brain)
            mn, mx = resc.min(), resc.max()
            mm = (resc - mn) / (mx - mn)
            e["minmax"] = floats(1.0 - mm if back.PhotometricInterpretation == "MONOCHROME1" else mm)
    if "PixelSpacing" in back:
        e["pixel_spacing"] = [float(v) for v in back.PixelSpacing]
    return e


def write(name, ds):
    ds.save_as(os.path.join(OUT, name), write_like_original=False)


def gdcmconv(src, dst, *flags):
    subprocess.run(["gdcmconv", *flags, os.path.join(OUT, src), os.path.join(OUT, dst)], check=True)


def main():
    os.makedirs(OUT, exist_ok=True)
    expected = []

    # CT, explicit VR little endian, unsigned stored values, HU through intercept -1024, a brain window
    # plus a second one (the first is used), RescaleType HU.
    hu = phantom_hu(32, 32, 1)
    ds = dataset("ct_hu.dcm", CT_STORAGE, ExplicitVRLittleEndian, 32, 32, bits_stored=12)
    ds.Modality = "CT"
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = -1024, 1, "HU"
    ds.WindowCenter, ds.WindowWidth = [40, 400], [80, 2000]
    stored = np.clip(hu + 1024, 0, 4095).astype(np.uint16)  # within the 12 bits stored
    set_pixels(ds, stored)
    write("ct_hu.dcm", ds)
    expected.append(record("ct_hu.dcm", ds, stored, "CT, explicit VR LE, 12-bit unsigned, intercept -1024, two windows (first used)", True))

    # The same slice in the other encodings: implicit VR, big endian, and GDCM's lossless compressors.
    for name, ts in (("ct_implicit.dcm", ImplicitVRLittleEndian), ("ct_bigendian.dcm", ExplicitVRBigEndian)):
        d = dataset(name, CT_STORAGE, ts, 32, 32, bits_stored=12)
        d.Modality = "CT"
        d.RescaleIntercept, d.RescaleSlope, d.RescaleType = -1024, 1, "HU"
        d.WindowCenter, d.WindowWidth = 40, 80
        set_pixels(d, stored)
        write(name, d)
        expected.append(record(name, d, stored, "the CT slice, " + ("implicit VR LE" if ts == ImplicitVRLittleEndian else "explicit VR big endian")))
    for name, flags, note in (("ct_jpegll.dcm", ["--jpeg"], "JPEG lossless (process 14, first-order prediction)"),
                              ("ct_jpegls.dcm", ["--jpegls"], "JPEG-LS lossless"),
                              ("ct_j2k.dcm", ["--j2k"], "JPEG 2000 lossless"),
                              ("ct_rle.dcm", ["--rle"], "RLE lossless")):
        gdcmconv("ct_implicit.dcm", name, *flags)
        d = pydicom.dcmread(os.path.join(OUT, name))
        assert d.file_meta.TransferSyntaxUID.is_compressed, name
        expected.append(record(name, d, stored, "the CT slice, " + note + " (gdcmconv " + " ".join(flags) + ")"))

    # CT with signed stored values, a fractional slope and a LINEAR_EXACT window.
    ds = dataset("ct_signed.dcm", CT_STORAGE, ExplicitVRLittleEndian, 32, 32, bits_stored=16, signed=True)
    ds.Modality = "CT"
    ds.RescaleIntercept, ds.RescaleSlope = -10, 0.5
    ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = 50, 350, "LINEAR_EXACT"
    st = ((phantom_hu(32, 32, 2) + 10) * 2).astype(np.int16)
    set_pixels(ds, st)
    write("ct_signed.dcm", ds)
    expected.append(record("ct_signed.dcm", ds, st, "CT, signed 16-bit, slope 0.5 intercept -10, LINEAR_EXACT window"))

    # MR: no rescale, unsigned 12-bit, a window of its own; and one with a SIGMOID window.
    rng = np.random.RandomState(3)
    y, x = np.mgrid[0:24, 0:20]
    mr = np.clip(600 + 400 * np.sin(x / 3.0) * np.cos(y / 4.0) + rng.normal(0, 30, (24, 20)), 0, 4095).astype(np.uint16)
    for name, fn in (("mr_window.dcm", None), ("mr_sigmoid.dcm", "SIGMOID")):
        d = dataset(name, MR_STORAGE, ExplicitVRLittleEndian, 24, 20, bits_stored=12)
        d.Modality = "MR"
        d.WindowCenter, d.WindowWidth = 600, 800
        if fn:
            d.VOILUTFunction = fn
        set_pixels(d, mr)
        write(name, d)
        expected.append(record(name, d, mr, "MR, 24 x 20 (rows != columns), no rescale, " + (fn or "LINEAR") + " window"))

    # MR without any window: min-max decides.
    d = dataset("mr_nowindow.dcm", MR_STORAGE, ExplicitVRLittleEndian, 24, 20, bits_stored=12)
    d.Modality = "MR"
    set_pixels(d, mr)
    write("mr_nowindow.dcm", d)
    expected.append(record("mr_nowindow.dcm", d, mr, "MR without a window (min-max)"))

    # A radiograph in MONOCHROME1 (low values white): inverted after windowing.
    cr = np.clip(2000 + 1500 * np.exp(-((x - 10) ** 2 + (y - 12) ** 2) / 40.0) + rng.normal(0, 20, (24, 20)), 0, 4095).astype(np.uint16)
    d = dataset("cr_mono1.dcm", CR_STORAGE, ExplicitVRLittleEndian, 24, 20, bits_stored=12, photometric="MONOCHROME1")
    d.Modality = "CR"
    d.WindowCenter, d.WindowWidth = 2600, 1800
    set_pixels(d, cr)
    write("cr_mono1.dcm", d)
    expected.append(record("cr_mono1.dcm", d, cr, "CR, MONOCHROME1 (inverted after windowing)", True))

    # Multi-frame: three 16 x 16 frames in one file.
    frames = np.clip(np.stack([phantom_hu(16, 16, 10 + k) + 1024 for k in range(3)]), 0, 4095).astype(np.uint16)
    d = dataset("mf_frames.dcm", SC_MF_STORAGE, ExplicitVRLittleEndian, 16, 16, bits_stored=12)
    d.Modality = "OT"
    d.NumberOfFrames = 3
    d.RescaleIntercept, d.RescaleSlope = -1024, 1
    d.WindowCenter, d.WindowWidth = 40, 80
    set_pixels(d, frames)
    write("mf_frames.dcm", d)
    expected.append(record("mf_frames.dcm", d, frames, "multi-frame, 3 frames of 16 x 16"))

    # RGB, 8 bits (a secondary capture).
    rgb = np.zeros((12, 10, 3), dtype=np.uint8)
    rgb[..., 0] = np.arange(10)[None, :] * 25
    rgb[..., 1] = np.arange(12)[:, None] * 20
    rgb[..., 2] = 128
    d = dataset("sc_rgb.dcm", SC_STORAGE, ExplicitVRLittleEndian, 12, 10, bits_stored=8, photometric="RGB", samples=3)
    d.Modality = "OT"
    set_pixels(d, rgb)
    write("sc_rgb.dcm", d)
    expected.append(record("sc_rgb.dcm", d, rgb, "RGB, 8-bit, planar configuration 0"))

    # A transfer syntax GDCM 3.0 has no decoder for (High-Throughput JPEG 2000, 2023): refused with
    # its UID and name. The "compressed" frame is a few bytes of nothing.
    # pydicom 2.3 predates the UID too: it is taught the name (PS3.6 Table A-1) so it writes the file.
    from pydicom._uid_dict import UID_dictionary
    UID_dictionary.setdefault("1.2.840.10008.1.2.4.201", ("High-Throughput JPEG 2000 Image Compression (Lossless Only)",
                                                          "Transfer Syntax", "", "", "HTJ2KLossless"))
    d = dataset("htj2k.dcm", CT_STORAGE, "1.2.840.10008.1.2.4.201", 32, 32, bits_stored=12)
    d.Modality = "CT"
    d.is_little_endian, d.is_implicit_VR = True, False
    d.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 60])
    d["PixelData"].VR = "OB"
    d["PixelData"].is_undefined_length = True
    write("htj2k.dcm", d)

    # A DICOM object without pixel data (a structured report's header, in short).
    d = dataset("no_pixels.dcm", CT_STORAGE, ExplicitVRLittleEndian, 32, 32)
    d.Modality = "CT"
    write("no_pixels.dcm", d)

    # The same slice in other encodings reads the same: recorded once, named by the others.
    keys = ("file", "note", "transfer_syntax", "extra")
    for i, e in enumerate(expected):
        for prev in expected[:i]:
            if "same_values_as" not in prev and {k: v for k, v in e.items() if k not in keys} == {k: v for k, v in prev.items() if k not in keys}:
                expected[i] = {"file": e["file"], "note": e["note"], "transfer_syntax": e["transfer_syntax"], "shape": e["shape"],
                               "same_values_as": prev["file"]}
                break
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"generator": "tests/data/make_dicom_fixtures.py", "pydicom": pydicom.__version__,
                   "patient_strings": sorted(v for v in FAKE_PATIENT.values() if len(v) > 6), "fixtures": expected}, f, separators=(",", ":"))
        f.write("\n")
    print("wrote", len(expected), "fixtures to", OUT)


if __name__ == "__main__":
    main()
