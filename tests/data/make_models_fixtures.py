#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# make_models_fixtures.py: the PyTorch reference numbers for tests/cpu/test_models.cpp
# (DenseNet-121 and EfficientNet-B0 against torchvision). Run by hand with Debian's PyTorch (never
# by the tests), from the repository root:
#   /usr/bin/python3 tests/data/make_models_fixtures.py
# As for the ResNet fixtures, weights are not stored: both sides set every state_dict entry from
# the closed form det_value (make_resnet_fixtures.py; ref::det_init in tests/reference.hpp).
# Stored per model at input 2x3x64x64, 2 classes, in float32: the eval and train logits and the
# loss; in float64 (the whole model and input in double, det_init after the conversion): the train
# logits, the loss, the gradients of stem, middle and head parameters, BN running statistics after
# the training forward, and parameters after one Adam step. The float64 pass is what the gradient
# checks compare with: at batch 2 the 2x2 maps of the last stage make BN's batch statistics
# ill-conditioned, and PyTorch's own float32 gradients of densenet121's stem are 2.4e-3 from its
# float64 ones (max |g| 0.92), too far for a 1e-4 float32 parity bound to mean anything; in double
# both sides agree to ~1e-10. Dropout and stochastic depth are set to 0 on
# the torchvision side for the training pass (their masks come from different generators); the
# medimg test does the same.
# Also written: two small torchvision models (a DenseNet and an EfficientNet with reduced
# configurations, so the files stay a few hundred KB) saved with torch.save as .pth, with their
# eval logits, for the direct .pth loading test.
import os
import sys

import torch
import torchvision
from torchvision.models.efficientnet import MBConvConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_resnet_fixtures import det_init, entry  # noqa: E402
from make_safetensors_fixtures import write_safetensors  # noqa: E402

torch.set_num_threads(2)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")

CASES = {
    "densenet121": {
        "ctor": lambda: torchvision.models.densenet121(num_classes=2),
        "grads": ["features.conv0.weight", "features.denseblock3.denselayer7.norm2.weight",
                  "features.transition1.norm.bias", "features.norm5.weight", "classifier.weight", "classifier.bias"],
        "stats": ["features.norm0", "features.denseblock2.denselayer4.norm1", "features.norm5"],
        "adam": ["features.denseblock3.denselayer7.norm2.weight", "features.norm5.weight", "classifier.weight"],
    },
    "efficientnet_b0": {
        "ctor": lambda: torchvision.models.efficientnet_b0(num_classes=2),
        "grads": ["features.0.0.weight", "features.4.1.block.1.0.weight", "features.4.1.block.2.fc1.bias",
                  "features.6.3.block.3.1.weight", "classifier.1.weight", "classifier.1.bias"],
        "stats": ["features.0.1", "features.4.1.block.1.1", "features.8.1"],
        "adam": ["features.4.1.block.1.0.weight", "features.6.3.block.3.1.weight", "classifier.1.weight"],
    },
}


def no_randomness(model):
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if isinstance(m, torchvision.ops.StochasticDepth):
            m.p = 0.0


def entry64(t):
    return ("F64", list(t.shape), [float(v) for v in t.detach().reshape(-1).tolist()])


def model_case(spec):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    y = torch.tensor([0, 1])
    out = {"input": entry(x), "target": ("I64", [2], y.tolist())}
    model = spec["ctor"]()
    det_init(model)
    no_randomness(model)
    model.eval()
    with torch.no_grad():
        out["logits_eval"] = entry(model(x))
    model.train()
    logits = model(x)
    out["logits_train"] = entry(logits)
    out["loss"] = ("F32", [], [float(torch.nn.functional.cross_entropy(logits, y))])

    model = spec["ctor"]().double()
    det_init(model)
    no_randomness(model)
    model.train()
    logits = model(x.double())
    loss = torch.nn.functional.cross_entropy(logits, y)
    loss.backward()
    out["f64.logits_train"] = entry64(logits)
    out["f64.loss"] = ("F64", [], [float(loss)])
    sd = model.state_dict()
    for bn in spec["stats"]:
        for s in ["running_mean", "running_var"]:
            out["f64.after_train_forward." + bn + "." + s] = entry64(sd[bn + "." + s])
    params = dict(model.named_parameters())
    for name in spec["grads"]:
        out["f64.grad." + name] = entry64(params[name].grad)
    opt = torch.optim.Adam(list(params.values()), lr=1e-3)
    opt.step()
    for name in spec["adam"]:
        out["f64.adam." + name] = entry64(params[name])
    return out


def small_densenet():
    return torchvision.models.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16, bn_size=2,
                                       num_classes=3)


def small_efficientnet():
    setting = [MBConvConfig(1, 3, 1, 16, 8, 1), MBConvConfig(4, 3, 2, 8, 16, 2), MBConvConfig(4, 5, 2, 16, 24, 1)]
    return torchvision.models.efficientnet.EfficientNet(setting, dropout=0.2, num_classes=3, last_channel=64)


def pth_case(name, ctor, meta):
    torch.manual_seed(2)
    model = ctor()
    with torch.no_grad():  # trained-looking statistics instead of the fresh 0 / 1
        for n, t in model.state_dict().items():
            if n.endswith("running_mean"):
                t.copy_(0.1 * torch.randn(t.shape))
            elif n.endswith("running_var"):
                t.copy_(1.0 + 0.2 * torch.rand(t.shape))
    model.eval()
    torch.save(model.state_dict(), os.path.join(OUT, name + ".pth"))
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        write_safetensors(os.path.join(OUT, name + "_logits.safetensors"),
                          {"input": entry(x), "logits_eval": entry(model(x))}, meta)


def main():
    os.makedirs(OUT, exist_ok=True)
    meta = {"generator": "tests/data/make_models_fixtures.py", "torch": torch.__version__,
            "torchvision": torchvision.__version__}
    for name, spec in CASES.items():
        write_safetensors(os.path.join(OUT, name + ".safetensors"), model_case(spec), meta)
    pth_case("densenet_small", small_densenet, meta)
    pth_case("efficientnet_small", small_efficientnet, meta)


if __name__ == "__main__":
    main()
