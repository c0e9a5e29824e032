#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""make_transform_fixtures.py: writes the fixtures of tests/cpu/test_transforms.cpp and
tests/cpu/test_image.cpp:
    tests/data/transforms/cases.txt   torchvision reference outputs for medimg::data transforms
    tests/data/images/*               small image files with known pixels, good and bad
    tests/data/images/expected.txt    what read_image must return for each good file

Run by hand, never by the tests, with Debian's interpreter (python3-torch 1.13, python3-torchvision
0.14, python3-pil, numpy, and jpegtran from libjpeg-turbo-progs), not the python3 first on PATH:
    /usr/bin/python3 tests/data/make_transform_fixtures.py
Inputs are deterministic (formulas and numpy default_rng with fixed seeds); rerunning rewrites
identical files (PIL's JPEG encoder is deterministic for a given libjpeg).

transforms/cases.txt: whitespace-separated tokens; '#' starts a comment line.
    tensor <name> <C> <H> <W> <values...>        an input, row-major (C, H, W) float32
    case <name>                                  a reference output follows
    input <tensor name>
    op <op> <args...>                            the medimg call, see test_transforms.cpp
    expected <C> <H> <W> <values...>
Values are printed with %.9g, which round-trips float32 exactly.

images/expected.txt: one block per (file, requested channels):
    expect <file> <channels requested> <C> <H> <W> <divisor> <abs tolerance>
    <C*H*W integers, (C, H, W) order>             the expected float is integer / divisor
"""
import io
import os
import struct
import subprocess
import zlib

import numpy as np
import torch
import torchvision
import torchvision.transforms as T
import torchvision.transforms.functional as F
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
TDIR = os.path.join(HERE, "transforms")
IDIR = os.path.join(HERE, "images")
BILINEAR = T.InterpolationMode.BILINEAR


def fmt_values(a, per_line=10):
    flat = np.asarray(a, dtype=np.float32).reshape(-1)
    lines = []
    for i in range(0, flat.size, per_line):
        lines.append(" ".join("%.9g" % float(v) for v in flat[i:i + per_line]))
    return "\n".join(lines)


# ---- transforms ----------------------------------------------------------------------------------

def make_inputs():
    # A smooth field plus a checkerboard with sharp edges, so antialiasing changes the result.
    y, x = np.mgrid[0:17, 0:23].astype(np.float64)
    g = 0.5 + 0.3 * np.sin(0.7 * x + 0.3 * y) * np.cos(0.45 * y - 0.2 * x)
    g += 0.15 * (((x // 3) + (y // 2)) % 2) - 0.075
    gray = np.clip(g, 0.0, 1.0).astype(np.float32)[None]                 # (1, 17, 23)
    rng = np.random.default_rng(20240611)
    rgb = rng.random((3, 24, 30)).astype(np.float32)                     # (3, 24, 30)
    small = rng.random((3, 10, 13)).astype(np.float32)                   # (3, 10, 13)
    return {"gray17x23": gray, "rgb24x30": rgb, "rgb10x13": small}


def write_transform_cases():
    inputs = make_inputs()
    t = {k: torch.from_numpy(v.copy()) for k, v in inputs.items()}
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    cases = []  # (name, input, op tokens, output tensor)

    def resize(name, src, h, w):
        out = F.resize(t[src], [h, w], interpolation=BILINEAR, antialias=True)
        cases.append((name, src, "resize %d %d" % (h, w), out))

    resize("resize_gray_down_8x11", "gray17x23", 8, 11)
    resize("resize_gray_down_3x4", "gray17x23", 3, 4)
    resize("resize_gray_up_31x29", "gray17x23", 31, 29)
    resize("resize_gray_5x50", "gray17x23", 5, 50)
    resize("resize_gray_1x1", "gray17x23", 1, 1)
    resize("resize_rgb_down_13x7", "rgb24x30", 13, 7)
    resize("resize_rgb_width_only_24x15", "rgb24x30", 24, 15)
    resize("resize_rgb_up_h_down_w_37x11", "rgb24x30", 37, 11)
    cases.append(("resize_shorter_gray_10", "gray17x23", "resize_shorter 10",
                  F.resize(t["gray17x23"], 10, interpolation=BILINEAR, antialias=True)))
    cases.append(("resize_shorter_rgb_16", "rgb24x30", "resize_shorter 16",
                  F.resize(t["rgb24x30"], 16, interpolation=BILINEAR, antialias=True)))
    cases.append(("crop_then_resize_rgb", "rgb24x30", "crop_resize 3 5 17 20 9 11",
                  F.resized_crop(t["rgb24x30"], 3, 5, 17, 20, [9, 11], interpolation=BILINEAR, antialias=True)))
    for name, src, h, w in [("center_crop_gray_8x10", "gray17x23", 8, 10),
                            ("center_crop_rgb_15x21", "rgb24x30", 15, 21),
                            ("center_crop_rgb_16x16", "rgb24x30", 16, 16)]:
        cases.append((name, src, "center_crop %d %d" % (h, w), F.center_crop(t[src], [h, w])))
    cases.append(("hflip_rgb", "rgb10x13", "hflip", F.hflip(t["rgb10x13"])))
    for f in (1.7, 0.3):
        cases.append(("brightness_rgb_%g" % f, "rgb10x13", "brightness %r" % f, F.adjust_brightness(t["rgb10x13"], f)))
    for f in (0.4, 2.5):
        cases.append(("contrast_rgb_%g" % f, "rgb10x13", "contrast %r" % f, F.adjust_contrast(t["rgb10x13"], f)))
    cases.append(("contrast_gray_1.8", "gray17x23", "contrast 1.8", F.adjust_contrast(t["gray17x23"], 1.8)))
    cases.append(("normalize_rgb", "rgb10x13", "normalize " + " ".join(repr(v) for v in mean + std),
                  F.normalize(t["rgb10x13"], mean, std)))
    cases.append(("grayscale_rgb", "rgb10x13", "grayscale", F.rgb_to_grayscale(t["rgb10x13"])))
    # RandomRotation(fill=0) passes fill=[0.0] * C to F.rotate: the masked grid_sample path.
    for name, src, angle in [("rotate_gray_30", "gray17x23", 30.0), ("rotate_gray_-135", "gray17x23", -135.0),
                             ("rotate_rgb_-17.5", "rgb10x13", -17.5), ("rotate_rgb_90", "rgb10x13", 90.0)]:
        c = t[src].shape[0]
        out = F.rotate(t[src], angle, interpolation=BILINEAR, expand=False, center=None, fill=[0.0] * c)
        cases.append((name, src, "rotate %r" % angle, out))
    ev = T.Compose([T.Resize(16, interpolation=BILINEAR, antialias=True), T.CenterCrop(12), T.Normalize(mean, std)])
    cases.append(("eval_pipeline_rgb", "rgb24x30", "eval_pipeline 16 12 " + " ".join(repr(v) for v in mean + std),
                  ev(t["rgb24x30"])))

    os.makedirs(TDIR, exist_ok=True)
    with open(os.path.join(TDIR, "cases.txt"), "w") as f:
        f.write("# generated by tests/data/make_transform_fixtures.py with torch %s, torchvision %s\n"
                % (torch.__version__, torchvision.__version__))
        f.write("# format: see the script's docstring\n")
        for name, a in inputs.items():
            f.write("tensor %s %d %d %d\n%s\n" % ((name,) + a.shape + (fmt_values(a),)))
        for name, src, op, out in cases:
            o = out.numpy().astype(np.float32)
            f.write("case %s\ninput %s\nop %s\nexpected %d %d %d\n%s\n" % ((name, src, op) + o.shape + (fmt_values(o),)))


# ---- images --------------------------------------------------------------------------------------

def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_bytes(samples, color_type, depth, palette=None):
    """samples: (H, W, comp) unsigned ints (already packed to one sample per index for palette)."""
    h, w = samples.shape[:2]
    rows = []
    for y in range(h):
        row = samples[y].reshape(-1)
        if depth == 16:
            rows.append(b"\0" + row.astype(">u2").tobytes())
        elif depth == 8:
            rows.append(b"\0" + row.astype(np.uint8).tobytes())
        else:  # sub-byte grey/palette: pack MSB first
            bits = "".join(format(int(v), "0%db" % depth) for v in row)
            bits += "0" * (-len(bits) % 8)
            rows.append(b"\0" + bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)))
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0))
    if palette is not None:
        out += png_chunk(b"PLTE", bytes(np.asarray(palette, dtype=np.uint8).reshape(-1)))
    out += png_chunk(b"IDAT", zlib.compress(b"".join(rows), 9)) + png_chunk(b"IEND", b"")
    return out


def chw(a):
    """(H, W, C) or (H, W) -> (C, H, W) list of ints."""
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[:, :, None]
    return np.transpose(a, (2, 0, 1))


def write_images():
    os.makedirs(IDIR, exist_ok=True)
    H, W = 5, 7
    y, x = np.mgrid[0:H, 0:W]
    gray8 = ((x * 37 + y * 53) % 256).astype(np.int64)
    gray8[H - 1, W - 1] = 255
    gray16 = ((x * 4099 + y * 13001 + 1000) % 65536).astype(np.int64)
    gray16[0, 1], gray16[0, 2], gray16[1, 0] = 65535, 0, 256    # 256/65535 has no 8-bit equivalent
    alpha = ((x * 29 + y * 71 + 5) % 256).astype(np.int64)
    rgb8 = np.stack([(x * 41 + y * 7) % 256, (x * 13 + y * 59 + 100) % 256, (255 - x * 31 - y * 17) % 256], -1)
    rgb16 = np.stack([(x * 9001 + y * 3) % 65536, (x * 77 + y * 12007 + 5) % 65536, (65535 - x * 3001 - y * 5) % 65536], -1)
    pal = np.array([[0, 0, 0], [255, 0, 0], [10, 200, 30], [40, 80, 250]])
    pal_idx = ((x + 2 * y) % 4).astype(np.int64)
    gray4 = ((x * 3 + y * 5) % 16).astype(np.int64)

    files = {
        "gray8.png": png_bytes(gray8[:, :, None], 0, 8),
        "gray16.png": png_bytes(gray16[:, :, None], 0, 16),
        "gray4.png": png_bytes(gray4[:, :, None], 0, 4),
        "graya8.png": png_bytes(np.stack([gray8, alpha], -1), 4, 8),
        "rgb8.png": png_bytes(rgb8, 2, 8),
        "rgba8.png": png_bytes(np.concatenate([rgb8, alpha[:, :, None]], -1), 6, 8),
        "rgb16.png": png_bytes(rgb16, 2, 16),
        "palette.png": png_bytes(pal_idx[:, :, None], 3, 8, palette=pal),
        "gray.pgm": b"P5\n# medimg fixture\n7 5\n255\n" + gray8.astype(np.uint8).tobytes(),
        "gray16.pgm": b"P5 7 5 65535\n" + gray16.astype(">u2").tobytes(),
        "gray1023.pgm": b"P5\n7 5\n1023\n" + (gray16 % 1024).astype(">u2").tobytes(),
        "rgb.ppm": b"P6\n7 5\n255\n" + rgb8.astype(np.uint8).tobytes(),
    }
    buf = io.BytesIO()
    Image.fromarray(rgb8.astype(np.uint8), "RGB").save(buf, format="BMP")
    files["rgb.bmp"] = buf.getvalue()
    # JPEG: smooth 16x16 content, 4:4:4, quality 95. medimg decodes with libjpeg-turbo and PIL's
    # settings, so every JPEG below must match PIL exactly (tolerance 0).
    jy, jx = np.mgrid[0:16, 0:16]
    jrgb = np.stack([jx * 12 + 20, jy * 10 + 40, 200 - jx * 5 - jy * 4], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(jrgb, "RGB").save(buf, format="JPEG", quality=95, subsampling=0)
    files["rgb.jpg"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray((jx * 7 + jy * 6 + 30).astype(np.uint8), "L").save(buf, format="JPEG", quality=95)
    files["gray.jpg"] = buf.getvalue()
    # 4:2:0 chroma (PIL's default) on an odd 13 x 11 image with sharp edges: libjpeg's fancy
    # upsampling and the partial last MCU decide these pixels; one baseline, one progressive.
    ky, kx = np.mgrid[0:11, 0:13]
    krgb = np.stack([(kx * 40 + ky * 3) % 256, np.where((kx + ky) % 4 < 2, 230, 20), (ky * 23 + 60) % 256], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(krgb, "RGB").save(buf, format="JPEG", quality=90)
    files["rgb420.jpg"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(krgb, "RGB").save(buf, format="JPEG", quality=90, progressive=True)
    files["rgb420_progressive.jpg"] = buf.getvalue()
    # Arithmetic coding (SOF9; PIL cannot write it): a lossless transcode of rgb420.jpg by jpegtran.
    files["rgb420_arithmetic.jpg"] = subprocess.run(["jpegtran", "-arithmetic"], input=files["rgb420.jpg"],
                                                    check=True, capture_output=True).stdout
    # CMYK (4 components, Adobe APP14 marker, transform 0, inverted samples as PIL writes them).
    kcmyk = np.stack([kx * 19, ky * 23, (kx * ky * 7) % 256, np.where(kx > 6, 40, 160)], -1).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(kcmyk, "CMYK").save(buf, format="JPEG", quality=90)
    files["cmyk.jpg"] = buf.getvalue()

    # Bad files.
    good = files["rgb8.png"]
    idat = good.index(b"IDAT")
    files["empty.png"] = b""
    files["truncated.png"] = good[:idat + 20]
    corrupt = bytearray(good)
    corrupt[idat + 10] ^= 0xFF
    files["corrupt_crc.png"] = bytes(corrupt)
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0))
    files["bad_zlib.png"] = (b"\x89PNG\r\n\x1a\n" + ihdr + png_chunk(b"IDAT", b"this is not a zlib stream")
                             + png_chunk(b"IEND", b""))
    # Decompression bomb: a valid header claiming 100000 x 100000 grey pixels, a tiny IDAT.
    files["bomb.png"] = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 100000, 100000, 8, 0, 0, 0, 0))
                         + png_chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + png_chunk(b"IEND", b""))
    jpg = bytearray(files["rgb.jpg"])
    sof = jpg.index(b"\xFF\xC0")
    jpg[sof + 5:sof + 9] = struct.pack(">HH", 50000, 50000)   # height, width in the frame header
    files["bomb.jpg"] = bytes(jpg)
    files["truncated.jpg"] = files["rgb.jpg"][:len(files["rgb.jpg"]) // 2]
    # A Huffman table (DHT) declaring 16 * 200 codes, more than the 256 a table can hold: stb_image 2.27
    # would write past its code-length array; medimg must refuse it before stb sees it.
    jpg = bytearray(files["rgb.jpg"])
    dht = jpg.index(b"\xFF\xC4")
    jpg[dht + 5:dht + 21] = bytes([200] * 16)
    files["bad_huffman.jpg"] = bytes(jpg)
    files["truncated.pgm"] = files["gray.pgm"][:-10]
    files["truncated.bmp"] = files["rgb.bmp"][:-20]
    files["ascii.pgm"] = b"P2\n2 1\n255\n0 255\n"
    buf = io.BytesIO()
    Image.fromarray(gray8.astype(np.uint8), "L").save(buf, format="GIF")
    files["image.gif"] = buf.getvalue()
    files["notes.txt"] = b"not an image\n"
    for name, data in files.items():
        with open(os.path.join(IDIR, name), "wb") as f:
            f.write(data)

    def pil(name, mode):
        im = Image.open(os.path.join(IDIR, name))
        im.load()
        return np.asarray(im.convert(mode)).astype(np.int64)

    # (file, channels requested, expected (C, H, W) ints, divisor, tolerance)
    exp = [
        ("gray8.png", 0, chw(gray8), 255, 0), ("gray8.png", 3, chw(np.stack([gray8] * 3, -1)), 255, 0),
        ("gray16.png", 0, chw(gray16), 65535, 0), ("gray16.png", 3, chw(np.stack([gray16] * 3, -1)), 65535, 0),
        ("gray4.png", 0, chw(gray4 * 17), 255, 0), ("gray4.png", 1, chw(pil("gray4.png", "L")), 255, 0),
        ("graya8.png", 0, chw(gray8), 255, 0), ("graya8.png", 1, chw(pil("graya8.png", "L")), 255, 0),
        ("graya8.png", 3, chw(pil("graya8.png", "RGB")), 255, 0),
        ("rgb8.png", 0, chw(rgb8), 255, 0), ("rgb8.png", 3, chw(rgb8), 255, 0),
        ("rgb8.png", 1, chw(pil("rgb8.png", "L")), 255, 0),
        ("rgba8.png", 0, chw(pil("rgba8.png", "RGB")), 255, 0), ("rgba8.png", 1, chw(pil("rgba8.png", "L")), 255, 0),
        ("rgb16.png", 3, chw(rgb16), 65535, 0),
        # 16-bit RGB -> grey: (R*299 + G*587 + B*114) / 1000 / 65535, kept unrounded.
        ("rgb16.png", 1, chw(rgb16[..., 0] * 299 + rgb16[..., 1] * 587 + rgb16[..., 2] * 114), 65535000, 1e-7),
        ("palette.png", 0, chw(pil("palette.png", "RGB")), 255, 0), ("palette.png", 1, chw(pil("palette.png", "L")), 255, 0),
        ("rgb.bmp", 0, chw(rgb8), 255, 0), ("rgb.bmp", 1, chw(pil("rgb.bmp", "L")), 255, 0),
        ("gray.pgm", 0, chw(gray8), 255, 0), ("gray16.pgm", 0, chw(gray16), 65535, 0),
        ("gray1023.pgm", 0, chw(gray16 % 1024), 1023, 0),
        ("rgb.ppm", 3, chw(rgb8), 255, 0), ("rgb.ppm", 1, chw(pil("rgb.ppm", "L")), 255, 0),
        # JPEG: the same libjpeg-turbo with the same settings as PIL, so exact.
        ("rgb.jpg", 3, chw(pil("rgb.jpg", "RGB")), 255, 0), ("rgb.jpg", 1, chw(pil("rgb.jpg", "L")), 255, 0),
        ("gray.jpg", 0, chw(pil("gray.jpg", "L")), 255, 0), ("gray.jpg", 3, chw(pil("gray.jpg", "RGB")), 255, 0),
        ("rgb420.jpg", 0, chw(pil("rgb420.jpg", "RGB")), 255, 0), ("rgb420.jpg", 1, chw(pil("rgb420.jpg", "L")), 255, 0),
        ("rgb420_progressive.jpg", 3, chw(pil("rgb420_progressive.jpg", "RGB")), 255, 0),
        ("rgb420_arithmetic.jpg", 3, chw(pil("rgb420_arithmetic.jpg", "RGB")), 255, 0),
        ("cmyk.jpg", 0, chw(pil("cmyk.jpg", "RGB")), 255, 0), ("cmyk.jpg", 1, chw(pil("cmyk.jpg", "L")), 255, 0),
    ]
    with open(os.path.join(IDIR, "expected.txt"), "w") as f:
        f.write("# generated by tests/data/make_transform_fixtures.py with PIL %s\n" % Image.__version__)
        f.write("# expect <file> <channels requested> <C> <H> <W> <divisor> <abs tolerance>, then (C, H, W) integers\n")
        for name, req, a, div, tol in exp:
            a = np.asarray(a)
            f.write("expect %s %d %d %d %d %d %r\n" % ((name, req) + a.shape + (div, tol)))
            flat = a.reshape(-1)
            for i in range(0, flat.size, 20):
                f.write(" ".join(str(int(v)) for v in flat[i:i + 20]) + "\n")


if __name__ == "__main__":
    torch.set_num_threads(1)
    write_transform_cases()
    write_images()
