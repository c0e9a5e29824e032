// SPDX-License-Identifier: MIT
// medimg-evaluate built by nvcc: evaluate.cpp unchanged, compiled with MEDIMG_HAS_CUDA = 1, so the
// evaluation runs on the GPU when runtime.device is cuda (or auto with a GPU); the data loader
// decodes on the host and each batch is uploaded as in training (train/fit.hpp, evaluate).
#include "evaluate.cpp"
