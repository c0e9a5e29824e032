#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""compare_formats.py: times medimg's DICOM and NIfTI reading (benchmarks/bench_formats.cpp) against
pydicom and nibabel (+ numpy windowing) on the same files, and with --write puts the table in the
"## Medical formats" section of benchmarks/RESULTS.md.

    /usr/bin/python3 benchmarks/compare_formats.py build/benchmarks/medimg-bench [--repeats 7] [--write]

The files, written once into a temporary folder:
  * ct512.dcm: a 512 x 512 CT slice, 16-bit signed, explicit VR little endian, Rescale Intercept
    -1024, with a brain window (pydicom);
  * ct512_jpegll.dcm: the same slice JPEG-lossless compressed (gdcmconv --jpeg), when gdcmconv is
    installed and pydicom can decode it (pylibjpeg or GDCM's Python module); otherwise skipped;
  * vol256.nii.gz: a 256^3 int16 volume with scl_slope/scl_inter and an LPS affine (nibabel).
What is timed, one sample per implementation in turn, `--repeats` times (interleaved):
  * DICOM: pydicom.dcmread(f) -> pixel_array -> apply_modality_lut -> the brain window (PS3.3
    C.11.2.1.2, vectorised numpy) to float32 [0, 1];  medimg: io::read_dicom(f).to_unit(brain).
  * NIfTI: nibabel.load(f) -> as_closest_canonical -> get_fdata(dtype=float32) -> the middle
    axial slice (a copy);  medimg: io::read_nifti(f) + nifti_slice (the volume read whole, as
    nibabel does: a .nii.gz stream cannot be read from the middle).
Python: Debian's /usr/bin/python3 (pydicom 2.3, nibabel 5.0, numpy 1.24), one process, imports
not timed, each sample the median of 5 calls after a warm-up. medimg: one medimg-bench process per
sample (Google Benchmark's own iteration count), OMP_NUM_THREADS=2. Ratio = Python / medimg.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np


def write_files(d):
    import nibabel as nib
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    rng = np.random.RandomState(0)
    y, x = np.mgrid[0:512, 0:512]
    hu = np.where(np.hypot(y - 256, x - 256) < 200, 40.0, -1000.0) + rng.normal(0, 15, (512, 512))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("ct512.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns, ds.SamplesPerPixel = "CT", 512, 512, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.WindowCenter, ds.WindowWidth = -1024, 1, 40, 80
    ds.PixelData = np.clip(hu + 1024, -32768, 32767).astype("<i2").tobytes()
    ds["PixelData"].VR = "OW"
    ds.save_as(os.path.join(d, "ct512.dcm"), write_like_original=False)
    files = {"dicom": os.path.join(d, "ct512.dcm")}
    if shutil.which("gdcmconv"):
        out = os.path.join(d, "ct512_jpegll.dcm")
        subprocess.run(["gdcmconv", "--jpeg", files["dicom"], out], check=True)
        try:
            pydicom.dcmread(out).pixel_array
            files["dicom_jpegll"] = out
        except Exception as e:  # no decoder for pydicom here: the row is left out
            print(f"compare_formats: pydicom cannot decode JPEG lossless here ({type(e).__name__}); that row is skipped")
    vol = (rng.normal(300, 80, (256, 256, 256))).astype(np.int16)
    img = nib.Nifti1Image(vol, np.diag([-1.0, -1.0, 1.2, 1.0]))
    img.header.set_slope_inter(0.5, -100.0)
    nib.save(img, os.path.join(d, "vol256.nii.gz"))
    files["nifti"] = os.path.join(d, "vol256.nii.gz")
    return files


def python_dicom(f):
    import pydicom
    from pydicom.pixel_data_handlers.util import apply_modality_lut
    ds = pydicom.dcmread(f)
    v = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    c, w = 40.0, 80.0
    y = np.clip((v - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0)
    return y.astype(np.float32)


def python_nifti(f):
    import nibabel as nib
    img = nib.as_closest_canonical(nib.load(f))
    v = img.get_fdata(dtype=np.float32)
    return np.array(v[:, :, v.shape[2] // 2])


def time_python(fn, f):
    fn(f)  # warm-up
    ts = []
    for _ in range(5):
        t = time.perf_counter()
        fn(f)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000.0


def time_medimg(bench, name, env):
    out = subprocess.run([bench, f"--benchmark_filter=^{name}(/|$)", "--benchmark_format=json", "--benchmark_min_time=0.5"],
                         capture_output=True, text=True, env=env, check=True).stdout
    runs = [b for b in json.loads(out)["benchmarks"] if b.get("run_type", "iteration") == "iteration"]
    if not runs or runs[0].get("error_occurred"):
        raise SystemExit(f"compare_formats: {name} did not run: {runs[0].get('error_message') if runs else out}")
    b = runs[0]
    scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]
    return b["real_time"] * scale


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    d = tempfile.mkdtemp(prefix="medimg-formats-")
    try:
        files = write_files(d)
        cases = [("DICOM 512x512 CT slice, read + window", "BM_dicom_read_window", python_dicom, "dicom")]
        if "dicom_jpegll" in files:
            cases.append(("DICOM 512x512 JPEG lossless, read + window", "BM_dicom_read_window", python_dicom, "dicom_jpegll"))
        cases.append(("NIfTI 256^3 .nii.gz, read + RAS+ + one slice", "BM_nifti_read_slice", python_nifti, "nifti"))
        samples = {c[0]: ([], []) for c in cases}
        for r in range(args.repeats):
            for label, bench_name, fn, key in cases:
                env = dict(os.environ, OMP_NUM_THREADS="2", MEDIMG_BENCH_DICOM=files.get(key, ""), MEDIMG_BENCH_NIFTI=files["nifti"])
                samples[label][0].append(time_python(fn, files[key]))
                samples[label][1].append(time_medimg(args.bench, bench_name, env))
        load = os.getloadavg()
        lines = [f"Measured {datetime.date.today()} on this machine ({os.cpu_count()} cores), load average "
                 f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}; medians of {args.repeats} interleaved samples "
                 "(benchmarks/compare_formats.py). Python: pydicom " + __import__("pydicom").__version__ + ", nibabel " +
                 __import__("nibabel").__version__ + ", numpy " + np.__version__ + ".", "",
                 "| case | pydicom / nibabel (ms) | medimg (ms) | ratio | goal |", "| --- | --- | --- | --- | --- |"]
        for label, *_ in cases:
            py, me = statistics.median(samples[label][0]), statistics.median(samples[label][1])
            lines.append(f"| {label} | {py:.2f} | {me:.2f} | {py / me:.1f}x | >= 3x |")
        table = "\n".join(lines)
        print(table)
        if args.write:
            path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")
            text = open(path).read()
            section = "## Medical formats (medimg vs pydicom and nibabel)\n\n" + table + "\n"
            if "## Medical formats" in text:
                text = re.sub(r"## Medical formats.*?(?=\n## |\Z)", section.rstrip("\n") + "\n", text, flags=re.S)
            else:
                text = text.rstrip("\n") + "\n\n" + section
            open(path, "w").write(text)
            print("wrote", path)
    finally:
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
