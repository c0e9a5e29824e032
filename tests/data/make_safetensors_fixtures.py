#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# make_safetensors_fixtures.py: writes tests/data/safetensors/small.safetensors with the Python standard
# library only (struct + json), following the format spec of https://github.com/huggingface/safetensors:
# u64 little-endian header length, compact UTF-8 JSON header ("__metadata__" first) space-padded to a
# multiple of 8, then the little-endian data. Data is laid out as the reference serializer does it
# (descending dtype order, then name), which is NOT key order, so the C++ loader's offset sort is exercised.
# Run by hand from the repository root; the tests only read its output:  python3 tests/data/make_safetensors_fixtures.py
import json
import math
import os
import struct

# The reference's Dtype enum order (safetensors/src/tensor.rs); prepare() sorts descending by it.
DTYPE_ORDER = ["BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "F64", "I64", "U64"]


def bf16_bits(x):
    """float -> bfloat16 bits, round to nearest even from the float32 value (x is exact in float32 here)."""
    (b,) = struct.unpack("<I", struct.pack("<f", x))
    if math.isnan(x):
        return (b >> 16) | 0x0040
    return (b + 0x7FFF + ((b >> 16) & 1)) >> 16


def pack(dtype, values):
    if dtype == "F64":
        return struct.pack("<%dd" % len(values), *values)
    if dtype == "F32":
        return struct.pack("<%df" % len(values), *values)
    if dtype == "F16":  # struct's 'e' is IEEE binary16, round to nearest even
        return struct.pack("<%de" % len(values), *values)
    if dtype == "BF16":
        return struct.pack("<%dH" % len(values), *[bf16_bits(v) for v in values])
    if dtype == "I64":
        return struct.pack("<%dq" % len(values), *values)
    if dtype == "I32":
        return struct.pack("<%di" % len(values), *values)
    if dtype == "U8":
        return struct.pack("<%dB" % len(values), *values)
    raise ValueError(dtype)


def write_safetensors(path, tensors, metadata):
    """tensors: {name: (dtype, shape, flat values)}; metadata: {str: str}."""
    order = sorted(tensors, key=lambda k: (-DTYPE_ORDER.index(tensors[k][0]), k))
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name in order:
        dtype, shape, values = tensors[name]
        assert math.prod(shape) == len(values), name
        blob = pack(dtype, values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "safetensors", "small.safetensors")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    tensors = {
        # (dtype, shape, values); the C++ test checks every value below.
        "conv1.weight": ("F32", [2, 1, 2, 2], [0.5, -1.25, 3.0, 0.1, -0.0, 1e-3, 65536.0, -7.75]),
        "fc.bias": ("F64", [3], [0.1, -2.5, 1e300]),
        "bn1.num_batches_tracked": ("I64", [], [12345678901234]),
        "half": ("F16", [6], [1.0, -2.5, 65504.0, 2.0**-24, float("inf"), -0.0]),
        "bf": ("BF16", [2, 2], [1.0, -2.5, 3.14159265, 1e38]),
        "labels": ("I32", [2, 2], [0, 1, -1, 2147483647]),
        "pixels": ("U8", [5], [0, 1, 127, 128, 255]),
        "empty": ("F32", [0, 3], []),
    }
    metadata = {"format": "pt", "classes": "normal,pneumonia", "unit": "\u00b5m \u00c5ngstr\u00f6m",
                "writer": "make_safetensors_fixtures.py (Python standard library)"}
    write_safetensors(out, tensors, metadata)
    print("wrote", out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
