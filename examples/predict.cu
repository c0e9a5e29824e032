// SPDX-License-Identifier: MIT
// medimg-predict built by nvcc: predict.cpp unchanged, compiled with MEDIMG_HAS_CUDA = 1, so the
// network can run on the GPU when --config sets runtime.device to cuda (or auto with a GPU);
// images are decoded and transformed on the host and copied once each (device.hpp).
#include "predict.cpp"
