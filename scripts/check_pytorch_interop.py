#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# Loads a medimg checkpoint into torchvision's resnet18 with safetensors.torch.load_file +
# load_state_dict(strict=True) and compares PyTorch's eval logits with medimg's.
# Usage: medimg-interop-sample OUT && python3 scripts/check_pytorch_interop.py OUT
# Needs torch, torchvision and the safetensors package. Run by hand (docs/interop.md).
import json
import sys

import torch
import torchvision
from safetensors import safe_open
from safetensors.torch import load_file

out = sys.argv[1]
state = load_file(f"{out}/model.safetensors")
state = {k: v for k, v in state.items() if not k.startswith("optimizer.")}
with safe_open(f"{out}/model.safetensors", "pt") as f:
    meta = f.metadata()
classes = json.loads(meta["classes"])
model = torchvision.models.resnet18(num_classes=len(classes))
model.load_state_dict(state, strict=True)
model.eval()
sample = load_file(f"{out}/sample.safetensors")
with torch.no_grad():
    logits = model(sample["input"])
diff = (logits - sample["logits"]).abs().max().item()
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}; classes {classes}, "
      f"architecture {meta['architecture']}")
print("pytorch logits:", logits.flatten().tolist())
print("medimg  logits:", sample["logits"].flatten().tolist())
print(f"max |difference| = {diff:.3g}")
sys.exit(0 if diff < 1e-4 else 1)
