// SPDX-License-Identifier: MIT
// medimg-train built by nvcc: train.cpp unchanged, compiled with MEDIMG_HAS_CUDA = 1, so the
// program instantiates the training loop for both Tensor<float, Cpu> and Tensor<float, Cuda> and
// picks one at the top from runtime.device (cpu | cuda | auto = cuda when a GPU is present).
// The data loader still decodes and augments on the host; each batch goes to the GPU with one
// explicit to<Cuda>() (train/fit.hpp, to_backend), and the whole step then stays on the device.
#include "train.cpp"
