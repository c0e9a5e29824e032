#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# make_explain_fixtures.py: the reference Grad-CAM and Grad-CAM++ maps for tests/cpu/test_explain.cpp,
# from pytorch-grad-cam (pip package grad-cam, https://github.com/jacobgil/pytorch-grad-cam) on a
# torchvision ResNet18 (1 input channel, 2 classes) whose weights are set by det_init of
# make_resnet_fixtures.py (a closed form both languages compute bit for bit, so no weights are stored).
# Run by hand (never by the tests), from the repository root, with Debian's PyTorch and the pip
# package on top, e.g.:
#   /usr/bin/python3 -m venv --system-site-packages /tmp/gcam
#   /tmp/gcam/bin/pip install --no-deps grad-cam ttach      # python3-opencv, -matplotlib, -tqdm from Debian
#   /tmp/gcam/bin/python tests/data/make_explain_fixtures.py
# Stored (explain/resnet18_cam.safetensors): a (2, 1, 64, 64) input batch, the eval-mode logits, and
# for each method (gradcam, gradcampp), target layer (layer4, layer3) and target assignment
# (t01: image 0 -> class 0, image 1 -> class 1; t10: the other way round) the (2, 64, 64) map
# GradCAM(...)(input, targets) returns. The predicted-class default is checked in the test against
# the row of the assignment that matches the argmax of the stored logits.
import os
import sys

import numpy as np
import torch
import torchvision
import pytorch_grad_cam
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_resnet_fixtures import det_init, entry  # noqa: E402
from make_safetensors_fixtures import write_safetensors  # noqa: E402

torch.set_num_threads(2)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "explain")


def model_and_input():
    torch.manual_seed(3)
    model = torchvision.models.resnet18(num_classes=2)
    model.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    det_init(model)
    model.eval()
    # smooth structure (two Gaussian blobs of opposite sign) plus noise, so the maps are not flat
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    x = 0.3 * torch.randn(2, 1, 64, 64)
    x[0, 0] += 2.0 * torch.exp(-((xx - 20) ** 2 + (yy - 40) ** 2) / 60.0)
    x[1, 0] -= 2.0 * torch.exp(-((xx - 45) ** 2 + (yy - 18) ** 2) / 90.0)
    return model, x


def main():
    model, x = model_and_input()
    out = {"input": entry(x)}
    with torch.no_grad():
        out["logits"] = entry(model(x))
    methods = {"gradcam": GradCAM, "gradcampp": GradCAMPlusPlus}
    layers = {"layer4": model.layer4, "layer3": model.layer3}
    assignments = {"t01": [0, 1], "t10": [1, 0]}
    for mname, cls in methods.items():
        for lname, layer in layers.items():
            with cls(model=model, target_layers=[layer]) as cam:
                for aname, classes in assignments.items():
                    targets = [ClassifierOutputTarget(c) for c in classes]
                    maps = cam(input_tensor=x, targets=targets)  # (2, 64, 64) float32 numpy
                    out[f"{mname}.{lname}.{aname}"] = entry(torch.from_numpy(np.ascontiguousarray(maps)))
    os.makedirs(OUT, exist_ok=True)
    meta = {"generator": "tests/data/make_explain_fixtures.py", "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "grad-cam": getattr(pytorch_grad_cam, "__version__", "1.5.7")}
    write_safetensors(os.path.join(OUT, "resnet18_cam.safetensors"), out, meta)


if __name__ == "__main__":
    main()
