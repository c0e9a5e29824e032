#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# make_vit_fixtures.py: the PyTorch reference numbers for the Vision Transformer parity tests (timm
# and torchvision are the oracles). Run by hand (never by the tests) from the repository root, with a
# Python that has pip's torch, torchvision, timm and safetensors, e.g.:
#   /path/to/venv/bin/python tests/data/make_vit_fixtures.py
# Every file records the torch / torchvision / timm versions in its metadata. Written to tests/data/vit/:
# - vit_tiny_patch16_224, vit_b_16 (torchvision names), vit_small_patch16_224: as for the ResNet
#   fixtures, weights are not stored: both sides set every state_dict entry from the closed form
#   det_value (make_resnet_fixtures.py; ref::det_init in tests/reference.hpp). For ViT its rules give
#   LayerNorm weight 1 + 0.2 s, biases, cls token and position embedding 0.1 s, linear weights
#   s / sqrt(in), patch conv He-scaled. Inputs are 32x32 (48x32 for vit_small): the timm models are
#   built with dynamic_img_size=True, so their 14x14 position grid is resampled on the fly to the 2x2
#   (3x2) patch grid by timm.layers.resample_abs_pos_embed (bicubic, antialias=True,
#   align_corners=False: timm's defaults, which VisionTransformer._pos_embed does not override);
#   torchvision's vit_b_16 is built with image_size=32, a native 2x2 grid. Stored at batch 2,
#   2 classes, in float32: input, target, eval and train logits, loss; for vit_tiny and vit_b_16 also,
#   in float64 (model and input in double, det_init after the conversion, train mode): train logits,
#   loss, gradients of a few parameters and, for vit_tiny, parameters after one AdamW step (lr 1e-3,
#   weight decay 0.05) with timm's fine-tuning groups from timm.optim.param_groups_weight_decay: no
#   decay for parameters with ndim <= 1, names ending in ".bias", and model.no_weight_decay()
#   ({pos_embed, cls_token, reg_token, dist_token}), i.e. for vit_tiny exactly cls_token, pos_embed
#   and every .bias and LayerNorm .weight (patch_embed.proj.bias, blocks.*.norm{1,2}.{weight,bias},
#   blocks.*.attn.{qkv,proj}.bias, blocks.*.mlp.fc{1,2}.bias, norm.{weight,bias}, head.bias); the
#   2-d and 4-d weights (patch_embed.proj.weight, qkv/proj/fc1/fc2/head .weight) are decayed.
#   Caveat: timm's resample casts the position embedding to float32 around F.interpolate even in a
#   double model, so vit_tiny's float64 numbers are ~1e-9 (relative) from a pure-double computation,
#   and the 14x14 grid rows of its pos_embed gradient ~3e-7. Analytically zero, so compare them with
#   an absolute bound: the key-bias third of the qkv / in_proj bias gradients (softmax is invariant to
#   it), and the .sum of gradients feeding the residual stream (every reader of it is a LayerNorm).
#   Dropout is 0 everywhere (timm and torchvision defaults; asserted below).
#   Tensors of more than FULL_LIMIT elements (large float64 gradients and AdamW results) are stored as
#   a sample to keep the files small: KEY holds SAMPLE values (1-d), KEY.index their row-major flat
#   indices (I64), KEY.shape the full shape (I64), and KEY.sum, KEY.sumsq the sum and the sum of
#   squares of the whole tensor (F64 scalars). Smaller tensors are stored whole under KEY.
# - pos_resample: a 1x(1+14*14)x8 embedding and resample_abs_pos_embed of it (1 prefix token, timm
#   defaults) to 2x2, 3x5, 20x20, 14x14 and 7x9 (down- and upsampling, non-square). torch computes
#   these in float32: they are up to 3.5e-6 (20x20) from the same resampling done in double. Grids of
#   width 1 are avoided: torch's CPU antialiased interpolate copies row 0 to every row for an Hx1 output.
# - vit_timm_small.{safetensors,pth}: a real timm checkpoint (VisionTransformer with img_size 32,
#   patch 8, width 48, depth 2, 3 heads, 3 classes, timm's own random initialisation) saved by
#   safetensors.torch.save_file and by torch.save, and vit_timm_small_logits.safetensors with its eval
#   logits on a 2x3x32x32 input and, as logits_eval_gray, those of the in_chans=1 copy whose patch
#   weight is summed over the input channels (timm's adapt_input_conv) on the input's first channel.
import os
import sys

import numpy as np
import safetensors.torch
import timm
import timm.layers
import timm.optim
import torch
import torchvision
from timm.models.vision_transformer import VisionTransformer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_resnet_fixtures import det_init, entry  # noqa: E402
from make_safetensors_fixtures import write_safetensors  # noqa: E402

torch.set_num_threads(2)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "vit")
FULL_LIMIT = 4096  # larger float64 tensors are stored as a sample of SAMPLE elements
SAMPLE = 512


def timm_vit(name):
    return lambda: timm.create_model(name, pretrained=False, num_classes=2, dynamic_img_size=True)


CASES = {
    "vit_tiny_patch16_224": {
        "ctor": timm_vit("vit_tiny_patch16_224"), "seed": 0, "shape": (2, 3, 32, 32),
        "grads": ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                  "blocks.0.norm1.weight", "blocks.0.norm1.bias", "blocks.0.attn.qkv.weight",
                  "blocks.0.attn.qkv.bias", "blocks.0.attn.proj.weight", "blocks.0.mlp.fc1.weight",
                  "blocks.5.mlp.fc2.bias", "blocks.11.norm2.weight", "norm.weight", "norm.bias", "head.weight",
                  "head.bias"],
        "adamw": ["cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight",
                  "blocks.0.norm1.weight", "norm.bias", "head.weight", "head.bias"],
    },
    "vit_b_16": {
        "ctor": lambda: torchvision.models.vit_b_16(weights=None, image_size=32, num_classes=2), "seed": 1,
        "shape": (2, 3, 32, 32),
        "grads": ["class_token", "encoder.pos_embedding", "conv_proj.weight", "conv_proj.bias",
                  "encoder.layers.encoder_layer_0.ln_1.weight",
                  "encoder.layers.encoder_layer_0.self_attention.in_proj_weight",
                  "encoder.layers.encoder_layer_0.self_attention.in_proj_bias",
                  "encoder.layers.encoder_layer_0.self_attention.out_proj.weight",
                  "encoder.layers.encoder_layer_0.mlp.0.weight", "encoder.layers.encoder_layer_11.mlp.3.bias",
                  "encoder.ln.weight", "heads.head.weight", "heads.head.bias"],
        "adamw": [],
    },
    "vit_small_patch16_224": {
        "ctor": timm_vit("vit_small_patch16_224"), "seed": 2, "shape": (2, 3, 48, 32), "f64": False,
    },
}


def entry64(t):
    return ("F64", list(t.shape), [float(v) for v in t.detach().reshape(-1).tolist()])


def put64(out, key, t):
    """Stores t whole under key, or (numel > FULL_LIMIT) a sample with its indices, shape and sums."""
    t = t.detach().double()
    n = t.numel()
    if n <= FULL_LIMIT:
        out[key] = entry64(t)
        return
    rng = np.random.default_rng(n)
    index = np.sort(np.concatenate([[0, n - 1], rng.choice(np.arange(1, n - 1), SAMPLE - 2, replace=False)]))
    out[key] = entry64(t.reshape(-1)[torch.from_numpy(index)])
    out[key + ".index"] = ("I64", [SAMPLE], [int(i) for i in index])
    out[key + ".shape"] = ("I64", [t.dim()], list(t.shape))
    out[key + ".sum"] = ("F64", [], [float(t.sum())])
    out[key + ".sumsq"] = ("F64", [], [float((t * t).sum())])


def check_no_dropout(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            assert m.p == 0.0, m
        if isinstance(m, torch.nn.MultiheadAttention):
            assert m.dropout == 0.0, m
        assert not isinstance(m, (timm.layers.DropPath, torchvision.ops.StochasticDepth)), m


def model_case(name, spec):
    torch.manual_seed(spec["seed"])
    x = torch.randn(*spec["shape"])
    y = torch.tensor([0, 1])
    out = {"input": entry(x), "target": ("I64", [2], y.tolist())}
    model = spec["ctor"]()
    det_init(model)
    check_no_dropout(model)
    model.eval()
    with torch.no_grad():
        out["logits_eval"] = entry(model(x))
    model.train()
    logits = model(x)
    out["logits_train"] = entry(logits)
    out["loss"] = ("F32", [], [float(torch.nn.functional.cross_entropy(logits, y).detach())])
    if not spec.get("f64", True):
        return out

    model = spec["ctor"]().double()
    det_init(model)
    model.train()
    logits = model(x.double())
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    out["f64.logits_train"] = entry64(logits)
    out["f64.loss"] = ("F64", [], [float(loss.detach())])
    params = dict(model.named_parameters())
    for p in spec["grads"]:
        g = params[p].grad
        print("%s max|grad| %-62s %.3e" % (name, p, float(g.abs().max())))
        put64(out, "f64.grad." + p, g)
    if spec["adamw"]:
        # timm's fine-tuning groups, as create_optimizer_v2(model, "adamw", weight_decay=0.05) builds them
        groups = timm.optim.param_groups_weight_decay(model, weight_decay=0.05,
                                                      no_weight_decay_list=model.no_weight_decay())
        no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
        print(name, "no weight decay:", [n for n, p in model.named_parameters() if id(p) in no_decay])
        torch.optim.AdamW(groups, lr=1e-3, weight_decay=0.05).step()
        for p in spec["adamw"]:
            put64(out, "f64.adamw." + p, params[p])
    return out


def pos_resample_case():
    torch.manual_seed(3)
    posemb = torch.randn(1, 1 + 14 * 14, 8)
    out = {"posemb": entry(posemb)}
    for h, w in [(2, 2), (3, 5), (20, 20), (14, 14), (7, 9)]:
        r = timm.layers.resample_abs_pos_embed(posemb, new_size=(h, w), num_prefix_tokens=1)
        out["resampled.%dx%d" % (h, w)] = entry(r)
    return out


def small_vit(in_chans=3):
    return VisionTransformer(img_size=32, patch_size=8, in_chans=in_chans, embed_dim=48, depth=2, num_heads=3,
                             num_classes=3)


def checkpoint_case(meta):
    torch.manual_seed(4)
    model = small_vit()
    model.eval()
    sd = model.state_dict()
    print("vit_timm_small state_dict:")
    for k, t in sd.items():
        print("  %-28s %s" % (k, list(t.shape)))
    safetensors.torch.save_file(sd, os.path.join(OUT, "vit_timm_small.safetensors"), metadata=meta)
    torch.save(sd, os.path.join(OUT, "vit_timm_small.pth"))
    x = torch.randn(2, 3, 32, 32)
    gray = small_vit(in_chans=1)
    sd1 = dict(sd)
    w = sd["patch_embed.proj.weight"]
    sd1["patch_embed.proj.weight"] = timm.models.adapt_input_conv(1, w)
    assert torch.equal(sd1["patch_embed.proj.weight"], w.sum(dim=1, keepdim=True))
    gray.load_state_dict(sd1)
    gray.eval()
    with torch.no_grad():
        out = {"input": entry(x), "logits_eval": entry(model(x)), "logits_eval_gray": entry(gray(x[:, :1]))}
    write_safetensors(os.path.join(OUT, "vit_timm_small_logits.safetensors"), out, meta)


def main():
    os.makedirs(OUT, exist_ok=True)
    meta = {"generator": "tests/data/make_vit_fixtures.py", "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__}
    for name, spec in CASES.items():
        write_safetensors(os.path.join(OUT, name + ".safetensors"), model_case(name, spec), meta)
    write_safetensors(os.path.join(OUT, "pos_resample.safetensors"), pos_resample_case(), meta)
    checkpoint_case(meta)
    for f in sorted(os.listdir(OUT)):
        print("wrote", os.path.join(OUT, f), os.path.getsize(os.path.join(OUT, f)), "bytes")


if __name__ == "__main__":
    main()
