// SPDX-License-Identifier: MIT
// medimg.hpp: the umbrella header. `#include <medimg/medimg.hpp>` gives every host-safe part of
// the library; the CUDA backend (cuda/) joins only in translation units compiled by nvcc.
#pragma once

#include "medimg/config.hpp"
#include "medimg/error.hpp"

#include "medimg/core/device.hpp"
#include "medimg/core/parallel.hpp"
#include "medimg/core/precision.hpp"
#include "medimg/core/rng.hpp"
#include "medimg/core/shape.hpp"
#include "medimg/core/tensor.hpp"

#include "medimg/ops/activation.hpp"
#include "medimg/ops/attention.hpp"
#include "medimg/ops/batch_norm.hpp"
#include "medimg/ops/conv2d.hpp"
#include "medimg/ops/elementwise.hpp"
#include "medimg/ops/layer_norm.hpp"
#include "medimg/ops/linear.hpp"
#include "medimg/ops/pooling.hpp"
#include "medimg/ops/softmax.hpp"
#include "medimg/ops/tokens.hpp"

#include "medimg/autograd/engine.hpp"
#include "medimg/autograd/functions.hpp"
#include "medimg/autograd/grad_check.hpp"
#include "medimg/autograd/loss.hpp"
#include "medimg/autograd/ssim_loss.hpp"
#include "medimg/autograd/variable.hpp"

#include "medimg/nn/nn.hpp"
#include "medimg/optim/optim.hpp"

#include "medimg/data/dataset.hpp"
#include "medimg/data/folds.hpp"
#include "medimg/data/image.hpp"
#include "medimg/data/intensity.hpp"
#include "medimg/data/loader.hpp"
#include "medimg/data/phantom.hpp"
#include "medimg/data/readers.hpp"
#include "medimg/data/slices.hpp"
#include "medimg/data/transforms.hpp"

#include "medimg/explain/explain.hpp"

#include "medimg/metrics/calibration.hpp"
#include "medimg/metrics/classification.hpp"
#include "medimg/metrics/colormap.hpp"
#include "medimg/metrics/compare.hpp"
#include "medimg/metrics/curves.hpp"
#include "medimg/metrics/intervals.hpp"
#include "medimg/metrics/regions.hpp"
#include "medimg/metrics/ssim.hpp"

#include "medimg/report/canvas.hpp"
#include "medimg/report/colormap.hpp"
#include "medimg/report/evaluation.hpp"
#include "medimg/report/figures.hpp"
#include "medimg/report/html.hpp"
#include "medimg/report/overlay.hpp"
#include "medimg/report/panel.hpp"
#include "medimg/report/plot.hpp"

#include "medimg/register/register.hpp"
#include "medimg/register/transform.hpp"

#include "medimg/io/checkpoint.hpp"
#include "medimg/io/config.hpp"
#include "medimg/io/input_file.hpp"
#include "medimg/io/utf8.hpp"
#include "medimg/io/safetensors.hpp"
#include "medimg/io/text.hpp"
#include "medimg/io/torch_pth.hpp"
#include "medimg/io/weights_file.hpp"
#include "medimg/io/zip.hpp"

#include "medimg/train/csv.hpp"
#include "medimg/train/fit.hpp"
#include "medimg/train/run.hpp"
#include "medimg/train/setup.hpp"

#if MEDIMG_HAS_CUDA
#  include "medimg/cuda/cuda.hpp"
#endif
