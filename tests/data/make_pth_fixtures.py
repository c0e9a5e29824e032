#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
# make_pth_fixtures.py: torch.save files for tests/cpu/test_torch_pth.cpp (io/torch_pth.hpp), each
# a few KB, with the values they hold as JSON (flattened row-major, float64 where exact).
# Run by hand with Debian's PyTorch (never by the tests), from the repository root:
#   /usr/bin/python3 tests/data/make_pth_fixtures.py
# Writes tests/data/pth/:
#   dtypes.pth, dtypes.json     every supported dtype, a 0-d tensor, num_batches_tracked (int64),
#                               views sharing one storage (offset, transposed, sliced columns), an
#                               empty tensor; saved as torch.save(state_dict) does
#   protocol4.pth               the same state_dict with pickle_protocol=4 (FRAME, MEMOIZE, ...)
#   tiny_model.pth, .json       Sequential(Conv2d(1, 2, 3), BatchNorm2d(2)) after two training
#                               forwards, an input and its eval-mode output
#   checkpoint.pth              {"model": state_dict, "optimizer": SGD state, "epoch": 3, ...}
#   legacy.pth                  the pre-1.6 format (_use_new_zipfile_serialization=False): refused
#   script.pt                   a TorchScript archive (torch.jit.save): refused
#   whole_model.pth             torch.save(model), the module pickled with its classes: refused
import collections
import json
import os

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pth")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(7)


def expected(sd):
    """{key: {dtype, shape, stride, offset, values}} in state_dict order."""
    out = collections.OrderedDict()
    for k, t in sd.items():
        v = t.detach()
        if v.dtype in (torch.float16, torch.bfloat16):
            v = v.float()  # exact
        values = [x if x == x and abs(x) != float("inf") else repr(x) for x in v.reshape(-1).tolist()]  # "inf"
        out[k] = {"dtype": str(t.dtype).replace("torch.", ""), "shape": list(t.shape), "stride": list(t.stride()),
                  "offset": t.storage_offset(), "values": values}
    return out


def dump(name, obj):
    """JSON with one top-level item per line."""
    with open(os.path.join(OUT, name), "w") as f:
        f.write("{\n" + ",\n".join(json.dumps(k) + ": " + json.dumps(v, allow_nan=False) for k, v in obj.items())
                + "\n}\n")


# Every dtype, with values that show a wrong conversion: negatives, halves, fp16 subnormal and inf.
base = torch.arange(12, dtype=torch.float32).reshape(3, 4) - 5.5  # one storage, three views of it
sd = collections.OrderedDict()
sd["f32"] = torch.randn(2, 3)
sd["f64"] = torch.randn(4, dtype=torch.float64)
sd["f16"] = torch.tensor([1.0, -2.5, 65504.0, 6e-8, float("inf")], dtype=torch.float16)
sd["bf16"] = torch.tensor([[1.0, -0.0078125], [3.0e38, -7.5]], dtype=torch.bfloat16)
sd["i64"] = torch.tensor([-(2**40), 0, 2**40 + 3], dtype=torch.int64)
sd["i32"] = torch.tensor([[-7, 8], [2**31 - 1, -(2**31)]], dtype=torch.int32)
sd["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
sd["i8"] = torch.tensor([-128, 127], dtype=torch.int8)
sd["u8"] = torch.tensor([0, 255, 7], dtype=torch.uint8)
sd["bool"] = torch.tensor([True, False, True])
sd["scalar"] = torch.tensor(2.25)
sd["bn.num_batches_tracked"] = torch.tensor(17, dtype=torch.int64)
sd["empty"] = torch.zeros(0, 3)
sd["base"] = base
sd["rows"] = base[1:]          # contiguous, storage offset 4
sd["cols"] = base[:, 1:3]      # strides (4, 1), offset 1: not contiguous
sd["transposed"] = base.t()    # strides (1, 4)
sd["every_other"] = base.reshape(-1)[1::2]  # stride (2,), offset 1
torch.save(sd, os.path.join(OUT, "dtypes.pth"))
torch.save(sd, os.path.join(OUT, "protocol4.pth"), pickle_protocol=4)
dump("dtypes.json", expected(sd))

# A tiny model: conv + BN, its running statistics moved by two training forwards.
model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
model.train()
for _ in range(2):
    model(torch.randn(4, 1, 5, 5))
model.eval()
x = torch.randn(1, 1, 5, 5)
with torch.no_grad():
    y = model(x)
torch.save(model.state_dict(), os.path.join(OUT, "tiny_model.pth"))
dump("tiny_model.json", {"state": expected(model.state_dict()), "input_shape": list(x.shape),
                         "input": x.reshape(-1).tolist(), "output_shape": list(y.shape),
                         "output": y.reshape(-1).tolist()})

# A training checkpoint: the state_dict nested under "model" beside optimizer state and numbers.
lin = torch.nn.Linear(2, 1)
opt = torch.optim.SGD(lin.parameters(), lr=0.1, momentum=0.9)
lin(torch.ones(1, 2)).sum().backward()
opt.step()
torch.save({"model": lin.state_dict(), "optimizer": opt.state_dict(), "epoch": 3, "best_acc": 0.75,
            "classes": ["normal", "lesao"]}, os.path.join(OUT, "checkpoint.pth"))
dump("checkpoint.json", expected(lin.state_dict()))

# Refused formats.
torch.save(collections.OrderedDict(w=torch.ones(2)), os.path.join(OUT, "legacy.pth"),
           _use_new_zipfile_serialization=False)
torch.jit.save(torch.jit.script(torch.nn.Linear(1, 1)), os.path.join(OUT, "script.pt"))
torch.save(model, os.path.join(OUT, "whole_model.pth"))  # the module object, not its state_dict

for name in sorted(os.listdir(OUT)):
    print("%-18s %6d bytes" % (name, os.path.getsize(os.path.join(OUT, name))))
