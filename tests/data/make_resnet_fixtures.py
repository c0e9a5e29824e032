#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# make_resnet_fixtures.py: the PyTorch reference numbers for tests/cpu/test_resnet.cpp.
# Run by hand with Debian's PyTorch (never by the tests), from the repository root:
#   /usr/bin/python3 tests/data/make_resnet_fixtures.py
# Weights are not stored (a ResNet18 is 45 MB): both sides set every state_dict entry k, element i,
# from the same closed form of s = hash(k, i), uniform in [-1, 1) from integer arithmetic
# (splitmix64), so both languages get bit-identical values (see det_value and its C++ twin in
# test_resnet.cpp). Stored: the input batch, logits, loss, gradients, BN
# running statistics and parameters after one SGD / Adam / AdamW step, for a few named tensors.
import math
import os
import sys

import numpy as np
import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_safetensors_fixtures import write_safetensors  # noqa: E402

torch.set_num_threads(2)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "resnet")


def det_uniform(k, n):
    """splitmix64((k << 32) + i) -> uniform [-1, 1) with 53 bits, for i in [0, n)."""
    with np.errstate(over="ignore"):
        z = (np.uint64(k) << np.uint64(32)) + np.arange(n, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return torch.from_numpy((z >> np.uint64(11)).astype(np.float64) * 2.0**-53 * 2.0 - 1.0)


def det_value(name, k, t):
    s = det_uniform(k, t.numel())  # variance 1/3
    if name.endswith("running_var"):
        v = 1.0 + 0.5 * s * s
    elif name.endswith("running_mean"):
        v = 0.1 * s
    elif t.dim() == 4:  # conv weight, He-scaled: std sqrt(2 / fan_in)
        fan_in = t.shape[1] * t.shape[2] * t.shape[3]
        v = math.sqrt(6.0 / fan_in) * s
    elif t.dim() == 2:  # fc weight
        v = s / math.sqrt(t.shape[1])
    elif name.endswith("weight"):  # BN gamma
        v = 1.0 + 0.2 * s
    else:  # BN beta, fc bias
        v = 0.1 * s
    return v.reshape(t.shape)


def det_init(model):
    with torch.no_grad():
        for k, (name, t) in enumerate(model.state_dict().items()):
            if name.endswith("num_batches_tracked"):
                t.zero_()
            else:
                t.copy_(det_value(name, k, t).to(t.dtype))


def flat(t):
    return [float(v) for v in t.detach().reshape(-1).tolist()]


def entry(t):
    return ("F32", list(t.shape), flat(t))


def resnet18_case():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=2)
    det_init(model)
    x = torch.randn(2, 3, 64, 64)
    y = torch.tensor([0, 1])
    out = {"input": entry(x), "target": ("I64", [2], y.tolist())}
    model.eval()
    with torch.no_grad():
        out["logits_eval"] = entry(model(x))
    model.train()
    logits = model(x)
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    out["logits_train"] = entry(logits)
    out["loss"] = ("F32", [], [float(loss)])
    sd = model.state_dict()
    for name in ["bn1.running_mean", "bn1.running_var", "layer4.1.bn2.running_mean", "layer4.1.bn2.running_var"]:
        out["after_train_forward." + name] = entry(sd[name])
    params = dict(model.named_parameters())
    for name in ["conv1.weight", "layer3.0.downsample.0.weight", "layer4.1.bn2.weight", "fc.weight", "fc.bias"]:
        out["grad." + name] = entry(params[name].grad)
    watched = ["conv1.weight", "layer4.1.bn2.weight", "fc.weight", "fc.bias"]
    # One optimizer step each, from the same weights and gradients.
    optimizers = {
        "sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=1e-4),
        "adam": lambda ps: torch.optim.Adam(ps, lr=1e-3),
        "adamw": lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=1e-2),
    }
    for opt_name, make in optimizers.items():
        copies = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
        for n, c in copies.items():
            c.grad = params[n].grad.clone()
        make(list(copies.values())).step()
        for name in watched:
            out[opt_name + "." + name] = entry(copies[name])
    return out


def eval_case(ctor, num_classes, shape):
    torch.manual_seed(1)
    model = ctor(num_classes=num_classes)
    det_init(model)
    model.eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        return {"input": entry(x), "logits_eval": entry(model(x))}


def main():
    os.makedirs(OUT, exist_ok=True)
    meta = {"generator": "tests/data/make_resnet_fixtures.py", "torch": torch.__version__,
            "torchvision": torchvision.__version__}
    write_safetensors(os.path.join(OUT, "resnet18.safetensors"), resnet18_case(), meta)
    write_safetensors(os.path.join(OUT, "resnet34_eval.safetensors"),
                      eval_case(torchvision.models.resnet34, 3, (1, 3, 32, 32)), meta)
    write_safetensors(os.path.join(OUT, "resnet50_eval.safetensors"),
                      eval_case(torchvision.models.resnet50, 3, (1, 3, 32, 32)), meta)


if __name__ == "__main__":
    main()
