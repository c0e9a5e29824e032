#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""make_optim_fixtures.py: writes tests/data/optim/*.txt, the PyTorch reference runs that
tests/cpu/test_optim.cpp checks medimg::optim (SGD, Adam, AdamW, LR schedulers) against.

Run by hand, never by the tests, with Debian's interpreter (python3-torch 1.13):
    /usr/bin/python3 tests/data/make_optim_fixtures.py
Inputs are deterministic (numpy default_rng, fixed seeds); rerunning rewrites identical files.
Optimizers run with foreach=False (the single-tensor code path medimg follows op for op).

Optimizer files (<case>.txt), one record per line, whitespace-separated tokens:
    # comment lines
    optimizer SGD | Adam | AdamW
    hparams <key> <value> ...          lr, momentum, dampening, weight_decay, nesterov (0/1),
                                       beta1, beta2, eps, amsgrad (0/1)
    steps <n>
    param <name> <rank> <dims...>      parameter order = construction order
    init <name> <values>               initial value (float64; the float32 run rounds it)
    grad <step> <name> <values>|none   gradient given before step <step> (1-based);
                                       none = grad left undefined (PyTorch skips the parameter)
    after <dtype> <step> <name> <values>      parameter after step <step>, dtype float32|float64
    state <dtype> <name>.<key> <values>       optimizer state after the last step
                                              (momentum_buffer, exp_avg, exp_avg_sq,
                                              max_exp_avg_sq, step)
Values are Python repr of float64 (shortest round-trip; float32 results are exact in float64).

schedulers.txt: per case
    scheduler <name> base_lr <lr> <key> <value> ...
    lrs <v0> <v1> ... <vN>             v0: the lr after construction, v_k: after k step() calls
"""
import os
import warnings

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optim")
SHAPES = {"w": (3, 4), "b": (5,)}
STEPS = 5
EPOCHS = 30


def fmt(values):
    return " ".join(repr(float(v)) for v in np.asarray(values, dtype=np.float64).ravel())


def make_inputs(seed, skip):
    """Initial values and STEPS gradients per parameter (float64); skip = {(step, name)}."""
    rng = np.random.default_rng(seed)
    init = {n: rng.standard_normal(s) for n, s in SHAPES.items()}
    grads = []
    for k in range(1, STEPS + 1):
        g = {n: rng.standard_normal(s) * (0.5 + k * 0.25) for n, s in SHAPES.items()}
        for n in SHAPES:
            if (k, n) in skip:
                g[n] = None
        grads.append(g)
    return init, grads


def run(make_opt, init, grads, dtype):
    params = {n: torch.tensor(v, dtype=torch.float64).to(dtype).requires_grad_(True) for n, v in init.items()}
    opt = make_opt(list(params.values()))
    after = []
    for g in grads:
        for n, p in params.items():
            p.grad = None if g[n] is None else torch.tensor(g[n], dtype=torch.float64).to(dtype)
        opt.step()
        after.append({n: p.detach().clone() for n, p in params.items()})
    state = {}
    for n, p in params.items():
        for key, v in opt.state.get(p, {}).items():
            if v is not None:
                state[n + "." + key] = v.detach().clone()
    return after, state


def write_case(name, optimizer, hparams, make_opt, seed, skip=()):
    init, grads = make_inputs(seed, set(skip))
    lines = ["# " + name + ": torch " + torch.__version__ + ", foreach=False, seed " + str(seed),
             "optimizer " + optimizer,
             "hparams " + " ".join(f"{k} {repr(float(v))}" for k, v in hparams.items()),
             f"steps {STEPS}"]
    for n, s in SHAPES.items():
        lines.append(f"param {n} {len(s)} " + " ".join(str(d) for d in s))
    for n, v in init.items():
        lines.append(f"init {n} " + fmt(v))
    for k, g in enumerate(grads, start=1):
        for n in SHAPES:
            lines.append(f"grad {k} {n} " + ("none" if g[n] is None else fmt(g[n])))
    for dtype, dname in ((torch.float32, "float32"), (torch.float64, "float64")):
        after, state = run(make_opt, init, grads, dtype)
        for k, a in enumerate(after, start=1):
            for n in SHAPES:
                lines.append(f"after {dname} {k} {n} " + fmt(a[n].numpy()))
        for key in sorted(state):
            lines.append(f"state {dname} {key} " + fmt(state[key].numpy()))
    with open(os.path.join(OUT, name + ".txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def optimizer_cases():
    def sgd(**kw):
        return lambda ps: torch.optim.SGD(ps, foreach=False, **kw)

    def adam(cls, **kw):
        return lambda ps: cls(ps, foreach=False, **kw)

    write_case("sgd_plain", "SGD", dict(lr=0.1), sgd(lr=0.1), seed=101)
    write_case("sgd_momentum", "SGD", dict(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2),
               sgd(lr=0.05, momentum=0.9, dampening=0.1, weight_decay=1e-2), seed=102, skip=[(3, "b")])
    write_case("sgd_nesterov", "SGD", dict(lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=1),
               sgd(lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True), seed=103)
    write_case("adam_default", "Adam", dict(lr=1e-3), adam(torch.optim.Adam), seed=201)
    write_case("adam_weight_decay", "Adam", dict(lr=0.05, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=0.1),
               adam(torch.optim.Adam, lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1), seed=202,
               skip=[(3, "b")])
    write_case("adam_amsgrad", "Adam", dict(lr=0.01, amsgrad=1), adam(torch.optim.Adam, lr=0.01, amsgrad=True),
               seed=203)
    write_case("adamw_default", "AdamW", dict(lr=1e-3), adam(torch.optim.AdamW), seed=301)
    write_case("adamw_amsgrad", "AdamW", dict(lr=0.02, weight_decay=0.05, amsgrad=1),
               adam(torch.optim.AdamW, lr=0.02, weight_decay=0.05, amsgrad=True), seed=302, skip=[(2, "b")])


def scheduler_cases():
    S = torch.optim.lr_scheduler
    cases = [
        ("steplr", 0.1, dict(step_size=7, gamma=0.5), lambda o: S.StepLR(o, step_size=7, gamma=0.5)),
        ("steplr_tenth", 0.3, dict(step_size=3, gamma=0.1), lambda o: S.StepLR(o, step_size=3, gamma=0.1)),
        ("cosine_restart", 0.1, dict(t_max=10, eta_min=1e-3),
         lambda o: S.CosineAnnealingLR(o, T_max=10, eta_min=1e-3)),
        ("cosine_long", 0.05, dict(t_max=30, eta_min=0.0), lambda o: S.CosineAnnealingLR(o, T_max=30)),
        ("linear_warmup", 0.1, dict(start_factor=0.25, end_factor=1.0, total_iters=4),
         lambda o: S.LinearLR(o, start_factor=0.25, end_factor=1.0, total_iters=4)),
        ("linear_decay", 0.2, dict(start_factor=1.0, end_factor=0.1, total_iters=10),
         lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=10)),
        ("warmup_cosine", 0.1, dict(start_factor=0.1, warmup_iters=5, t_max=25, eta_min=1e-5),
         lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=5),
                                      S.CosineAnnealingLR(o, T_max=25, eta_min=1e-5)], milestones=[5])),
        ("warmup_step", 0.05, dict(start_factor=0.5, warmup_iters=3, step_size=4, gamma=0.5),
         lambda o: S.SequentialLR(o, [S.LinearLR(o, start_factor=0.5, end_factor=1.0, total_iters=3),
                                      S.StepLR(o, step_size=4, gamma=0.5)], milestones=[3])),
    ]
    lines = ["# LR schedules: torch " + torch.__version__ + f", {EPOCHS} scheduler.step() calls each"]
    for name, base, kw, make in cases:
        p = torch.zeros(1, requires_grad=True)
        opt = torch.optim.SGD([p], lr=base)
        sched = make(opt)
        lrs = [opt.param_groups[0]["lr"]]
        for _ in range(EPOCHS):
            opt.step()
            sched.step()
            lrs.append(opt.param_groups[0]["lr"])
        lines.append(f"scheduler {name} base_lr {repr(base)} " + " ".join(f"{k} {repr(v)}" for k, v in kw.items()))
        lines.append("lrs " + " ".join(repr(float(v)) for v in lrs))
    with open(os.path.join(OUT, "schedulers.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    optimizer_cases()
    scheduler_cases()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files to {OUT} ({total} bytes)")
