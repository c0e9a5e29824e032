#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the markdown summary of tests/gpu/run-on-device.sh from its output folder:
environment, the test_cuda result (and every failed check), and medimg vs PyTorch img/s per
workload with the ratio (medimg / PyTorch at the same math; > 1 = medimg faster).
Usage: summarize.py OUT_DIR TESTS_RC BENCH_RC TORCH_RC
"""
import json
import os
import re
import sys


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def main():
    out, tests_rc, bench_rc, torch_rc = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
    lines = ["# GPU run summary", "", "```", read(os.path.join(out, "env.txt")).strip(), "```", ""]

    log = read(os.path.join(out, "test_cuda.log"))
    verdict = {"0": "all passed", "77": "SKIPPED (no device)", "124": "TIMED OUT"}.get(tests_rc, "FAILED")
    lines += [f"## test_cuda: {verdict} (exit code {tests_rc})", ""]
    loglines = log.splitlines()
    start = next((i for i, l in enumerate(loglines) if l.startswith("Test module")), None)
    report = loglines[start:start + 6] if start is not None else loglines[-5:]
    lines += ["```"] + report + ["```", ""]
    failures = [l for l in log.splitlines() if "error:" in l or "fatal error" in l]
    if failures:
        lines += ["Failed checks (first 30):", "", "```"] + failures[:30] + ["```", ""]
    largest = [l for l in log.splitlines() if "largest |diff|" in l]
    if largest:
        lines += [f"({len(largest)} CUDA-vs-CPU comparisons logged their largest difference in test_cuda.log)", ""]

    medimg = {}
    try:
        for b in json.load(open(os.path.join(out, "bench_gpu.json")))["benchmarks"]:
            m = re.match(r"BM_resnet18_(train_step|inference)/N:(\d+)/side:224/math:(\d)", b["name"])
            if m and "img/s" in b:
                math = ("fp32", "tf32", "bf16", "fp16", "bf16_f32_activations")[int(m.group(3))]
                medimg[(m.group(1), int(m.group(2)), math)] = b["img/s"]
    except (OSError, ValueError, KeyError):
        pass
    torch = {}
    for line in read(os.path.join(out, "bench_pytorch.jsonl")).splitlines():
        try:
            r = json.loads(line)
            torch[(r["workload"], r["N"], r["variant"])] = r["img_per_s"]
        except ValueError:
            pass
    lines += [f"## ResNet18 img/s, 3x224x224 (medimg-bench-gpu exit {bench_rc}, PyTorch script exit {torch_rc})", "",
              "| workload | N | math | medimg | PyTorch | medimg / PyTorch | PyTorch bf16 + channels_last |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    keys = sorted(set(medimg) | {k for k in torch if k[2] != "bf16_channels_last"})
    for k in keys:
        mi, ti = medimg.get(k), torch.get(k)
        fast = torch.get((k[0], k[1], "bf16_channels_last"))
        ratio = f"{mi / ti:.2f}" if mi and ti else "-"
        fmt = lambda v: f"{v:.0f}" if v else "-"
        lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {fmt(mi)} | {fmt(ti)} | {ratio} | {fmt(fast)} |")
    lines.append("")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
