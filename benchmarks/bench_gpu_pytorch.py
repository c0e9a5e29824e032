#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The PyTorch side of benchmarks/bench_gpu.cu: the same ResNet18 workloads on the same GPU.

Training step = forward, cross-entropy, backward, SGD(lr 0.01, momentum 0.9, weight_decay 1e-4),
zero_grad(set_to_none=True); inference = eval() + torch.no_grad() forward. torchvision resnet18
(num_classes=2), inputs 3x224x224 already on the GPU, cudnn.benchmark = True, 3 warm-up
iterations, then CUDA events around each timed iteration (20 for training, 30 for inference).
Variants: fp32 (TF32 off), tf32 (PyTorch's default for cuDNN convolutions), bf16 (autocast bf16,
default NCHW layout: medimg's runtime.precision bf16 counterpart), fp16 (autocast float16 with
torch.amp.GradScaler, training at batch 256 only: medimg's fp16 row) and PyTorch's fast path,
channels_last + autocast bf16. Prints one JSON object per line:
  {"workload": "train_step", "N": 64, "variant": "fp32", "ms": ..., "img_per_s": ...}
Usage: bench_gpu_pytorch.py [--quick]   (--quick: batch 64 only)
"""
import json
import sys

import torch
import torchvision


def timed(fn, iters):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    total = 0.0
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(iters):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        total += start.elapsed_time(stop)
    return total / iters


def run(workload, n, variant):
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = variant != "fp32"
    torch.backends.cuda.matmul.allow_tf32 = variant != "fp32"
    fast = variant == "bf16_channels_last"
    amp = fast or variant in ("bf16", "fp16")
    half = torch.float16 if variant == "fp16" else torch.bfloat16
    fmt = torch.channels_last if fast else torch.contiguous_format
    model = torchvision.models.resnet18(num_classes=2).cuda().to(memory_format=fmt)
    x = torch.randn(n, 3, 224, 224, device="cuda").to(memory_format=fmt)
    y = (torch.arange(n, device="cuda") % 2).long()
    if workload == "train_step":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        scaler = torch.amp.GradScaler("cuda", enabled=variant == "fp16")

        def step():
            with torch.autocast("cuda", dtype=half, enabled=amp):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            opt.zero_grad(set_to_none=True)

        ms = timed(step, 20)
    else:
        model.eval()

        def infer():
            with torch.no_grad(), torch.autocast("cuda", dtype=half, enabled=amp):
                model(x)

        ms = timed(infer, 30)
    print(json.dumps({"workload": workload, "N": n, "variant": variant, "ms": ms, "img_per_s": n * 1000.0 / ms,
                      "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
                      "cudnn": torch.backends.cudnn.version()}), flush=True)
    del model, x
    torch.cuda.empty_cache()


def main():
    quick = "--quick" in sys.argv
    for n in ([64] if quick else [64, 256]):
        for variant in ("fp32", "tf32", "bf16", "bf16_channels_last"):
            run("train_step", n, variant)
    if not quick:
        run("train_step", 256, "fp16")
    for n in ([1, 64] if quick else [1, 256]):
        for variant in ("fp32", "tf32", "bf16", "bf16_channels_last"):
            run("inference", n, variant)


if __name__ == "__main__":
    main()
