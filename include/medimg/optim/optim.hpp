// SPDX-License-Identifier: MIT
// optim/optim.hpp: everything in medimg::optim with one include: the Optimizer base and its
// state dict, SGD, Adam, AdamW, the learning-rate schedulers, and the fp16 loss scaler. Host-safe (the update loops
// are OptimImpl<Cpu>); CUDA update kernels are not part of this layer yet.
#pragma once

#include "medimg/optim/adam.hpp"
#include "medimg/optim/grad_scaler.hpp"
#include "medimg/optim/optimizer.hpp"
#include "medimg/optim/scheduler.hpp"
#include "medimg/optim/sgd.hpp"
