#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/), small valid inputs
# that libFuzzer mutates: image fixtures copied from tests/data/images, safetensors files and
# checkpoints written here (Python stdlib only, the layout medimg's writer produces), configs and
# --set overrides, torch.save files copied from tests/data/pth and repacked with zipfile.
# Run from the repository root: python3 tests/fuzz/make_corpus.py
import json
import os
import shutil
import struct
import subprocess
import zipfile

root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
images = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "images")


def put(target, name, data):
    d = os.path.join(root, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    """tensors: {name: (dtype, shape, bytes)} -> file bytes (keys sorted, header space-padded to 8)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        dtype, shape, data = tensors[name]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


# Images: one valid file per format and depth, plus the fixtures' broken ones.
for name in ["gray8.png", "gray16.png", "gray4.png", "palette.png", "rgba8.png", "rgb16.png", "graya8.png",
             "gray.jpg", "rgb.jpg", "rgb420.jpg", "rgb420_progressive.jpg", "cmyk.jpg", "rgb.bmp", "gray.pgm",
             "gray16.pgm", "rgb.ppm", "truncated.png", "bomb.png"]:
    with open(os.path.join(images, name), "rb") as f:
        put("fuzz_image", name, f.read())

# PNGs of the kinds the fixtures lack (medimg decodes PNG itself: every filter, Adam7, 1/2-bit grey,
# palettes with tRNS, 16-bit grey+alpha), written here: every scanline takes the next filter type.
def png(w, h, ct, depth, interlaced, plte=None, trns=None):
    import zlib
    spp = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ct]
    bpp = max(1, spp * depth // 8)
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw, f = bytearray(), 0
    for x0, y0, dx, dy in (passes if interlaced else [(0, 0, 1, 1)]):
        xs = range(x0, w, dx)
        prev = None
        for y in range(y0, h, dy):
            if not xs:
                break
            bits = []
            for x in xs:
                for c in range(spp):
                    bits.append(((x * 7 + y * 13 + c * 5) * 37) % (1 << depth))
            line = bytearray()
            if depth == 16:
                for v in bits:
                    line += struct.pack(">H", v)
            else:
                acc, n = 0, 0
                for v in bits:
                    acc, n = (acc << depth) | v, n + depth
                    if n == 8:
                        line.append(acc)
                        acc, n = 0, 0
                if n:
                    line.append(acc << (8 - n))
            prev = prev or bytearray(len(line))
            out = bytearray()
            for i, v in enumerate(line):
                a = line[i - bpp] if i >= bpp else 0
                b_, c = prev[i], prev[i - bpp] if i >= bpp else 0
                p_ = a + b_ - c
                pa, pb, pc = abs(p_ - a), abs(p_ - b_), abs(p_ - c)
                paeth = a if pa <= pb and pa <= pc else b_ if pb <= pc else c
                out.append((v - [0, a, b_, (a + b_) // 2, paeth][f]) & 255)
            raw += bytes([f]) + out
            f = (f + 1) % 5
            prev = line

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ct, 0, 0, interlaced))
    if plte:
        data += chunk(b"PLTE", plte)
    if trns:
        data += chunk(b"tRNS", trns)
    return data + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b"")


put("fuzz_image", "gray8_adam7.png", png(13, 11, 0, 8, 1))
put("fuzz_image", "rgb16_adam7.png", png(9, 7, 2, 16, 1))
put("fuzz_image", "gray1.png", png(17, 5, 0, 1, 0))
put("fuzz_image", "gray2_adam7.png", png(6, 9, 0, 2, 1, trns=b"\x00\x01"))
put("fuzz_image", "palette2_trns.png", png(11, 4, 3, 2, 0, plte=bytes(range(9)), trns=b"\x00\x80"))
put("fuzz_image", "graya16.png", png(5, 6, 4, 16, 0))
put("fuzz_image", "rgba8_adam7.png", png(10, 10, 6, 8, 1))

# Progressive JPEGs (libjpeg's other decoding path): lossless transcodes of the baseline fixtures,
# made with libjpeg-turbo's jpegtran when it is installed (apt-get install libjpeg-turbo-progs).
if shutil.which("jpegtran"):
    for name in ["gray", "rgb"]:
        out = subprocess.run(["jpegtran", "-progressive", "-optimize", os.path.join(images, name + ".jpg")],
                             check=True, capture_output=True).stdout
        put("fuzz_image", name + "_progressive.jpg", out)
# Files named regression-* are inputs of fixed fuzzing findings, added by hand (docs/reliability.md).

# Safetensors: every dtype, a scalar, an empty tensor, metadata.
put("fuzz_safetensors", "f32.safetensors", safetensors({"w": ("F32", [2, 2], f32(1, 2, 3, 4)), "b": ("F32", [2], f32(0.5, -1))}))
put("fuzz_safetensors", "dtypes.safetensors", safetensors({
    "f64": ("F64", [1], struct.pack("<d", 2.5)), "f16": ("F16", [2], struct.pack("<2H", 0x3c00, 0x7c00)),
    "bf16": ("BF16", [1], struct.pack("<H", 0x3f80)), "i64": ("I64", [], struct.pack("<q", -7)),
    "i32": ("I32", [1], struct.pack("<i", 5)), "i16": ("I16", [1], struct.pack("<h", -3)),
    "i8": ("I8", [2], struct.pack("<2b", -1, 1)), "u8": ("U8", [1], b"\xff"), "bool": ("BOOL", [2], b"\x00\x01"),
    "empty": ("F32", [0, 3], b"")}, {"note": "seed"}))
with open(os.path.join(images, "..", "safetensors", "small.safetensors"), "rb") as f:
    put("fuzz_safetensors", "small.safetensors", f.read())

# Checkpoints: the metadata medimg writes (io/checkpoint.hpp), a few tiny tensors, optimizer state.
meta = {"format": "medimg-checkpoint", "format_version": "1", "architecture": "resnet18",
        "classes": json.dumps(["normal", "lesao"]), "in_channels": "1", "image_size": "32",
        "normalize_mean": "[0.3]", "normalize_std": "[0.25]", "epoch": "2",
        "metrics": json.dumps({"val_acc": 0.75, "val_loss": 0.5}), "best_score": "0.75",
        "epochs_without_improvement": "0", "scheduler_state": json.dumps({"last_epoch": 2, "lr": 0.001}),
        "config": "train:\n  lr: 0.001\n"}
put("fuzz_checkpoint", "last.safetensors", safetensors({
    "fc.weight": ("F32", [2, 2], f32(0.1, 0.2, 0.3, 0.4)), "fc.bias": ("F32", [2], f32(0, 0)),
    "bn1.num_batches_tracked": ("I64", [], struct.pack("<q", 4)),
    "optimizer.fc.weight.exp_avg": ("F32", [2, 2], f32(0, 0, 0, 0)), "optimizer.step": ("F32", [], f32(4))}, meta))
m2 = dict(meta)
del m2["config"]
m2["classes"] = json.dumps(["a", "b", "c"])
put("fuzz_checkpoint", "best.safetensors", safetensors({"fc.bias": ("F32", [3], f32(1, 2, 3))}, m2))

# Checkpoint metadata (fuzz_metadata): key=value lines laid over the metadata medimg-train writes.
for name, lines in [("as_written.txt", ["architecture=resnet18"]),
                    ("three_classes.txt", ["classes=[\"a\",\"b\",\"c\"]", "@head=3"]),
                    ("rgb.txt", ["in_channels=3", "read_channels=3", "normalize_mean=[0.485,0.456,0.406]",
                                 "normalize_std=[0.229,0.224,0.225]", "image_size=224", "resize=256"]),
                    ("vit_no_resize.txt", ["architecture=vit_tiny_patch16_224", "resize=none", "image_size=224"]),
                    ("volumes.txt", ["window=[40, 400]", "volume_axis=coronal", "volume_slices=range [3, 9]", "temperature=1.7"]),
                    ("presets.txt", ["window=brain", "volume_slices=every 2", "epoch=100000", "metrics={\"val_auc\":1}"])]:
    put("fuzz_metadata", name, ("\n".join(lines) + "\n").encode())

# Configs: the shipped ones, a flow-style one, and --set overrides.
cfg_dir = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs")
for name in sorted(os.listdir(cfg_dir)):
    if name.endswith(".yaml"):
        with open(os.path.join(cfg_dir, name), "rb") as f:
            put("fuzz_config", name, f.read())
put("fuzz_config", "flow.yaml", b"data: {train: d/train, val: d/val, test: '', image_size: 32, resize: 32, channels: 1,\n"
    b"       mean: [0.3], std: [0.25], augment: {random_resized_crop: false}}\n"
    b"train: {epochs: 1, batch_size: 4, class_weights: [1, 2], scheduler: step}\nruntime: {workers: 0}\noutput: {dir: out}\n")
for i, o in enumerate(["train.lr=0.01", "data.classes=[normal,lesao,other]", "data.mean=[0.5, 0.5, 0.5]",
                       "train.class_weights=auto", "data.augment.hflip=false", "output.dir=/tmp/x y"]):
    put("fuzz_config", "set%d.txt" % i, o.encode())

# torch.save files (.pth): the fixtures of tests/data/pth (written by make_pth_fixtures.py with
# PyTorch), one repacked with every entry deflated and one with ZIP64 local headers (zipfile's
# force_zip64), and the legacy format that must be refused.
pth = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "pth")
for name in ["tiny_model.pth", "checkpoint.pth", "protocol4.pth", "legacy.pth"]:
    with open(os.path.join(pth, name), "rb") as f:
        put("fuzz_torch_pth", name, f.read())
with zipfile.ZipFile(os.path.join(pth, "tiny_model.pth")) as src:
    for out_name, method, force64 in [("deflated.pth", zipfile.ZIP_DEFLATED, False),
                                      ("zip64.pth", zipfile.ZIP_STORED, True)]:
        path = os.path.join(root, "fuzz_torch_pth", out_name)
        with zipfile.ZipFile(path, "w", compression=method) as dst:
            for info in src.infolist():
                entry = zipfile.ZipInfo(info.filename, date_time=(2026, 1, 1, 0, 0, 0))
                entry.compress_type = method
                with dst.open(entry, "w", force_zip64=force64) as w:
                    w.write(src.read(info.filename))
