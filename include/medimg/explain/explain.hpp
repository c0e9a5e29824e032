// SPDX-License-Identifier: MIT
// explain/explain.hpp: where a classifier looked. Grad-CAM and Grad-CAM++ (cam.hpp) from a forward
// hook on a named module and the gradient of the class score; occlusion sensitivity (occlusion.hpp)
// from forward passes alone; attention rollout (rollout.hpp) for Vision Transformers. Each returns
// an Explanation (common.hpp): a heat map at the input's resolution in [0, 1], the method's raw
// map, the logits and the class explained. Drawing the heat
// map over the exam is report/overlay.hpp's job; localization.hpp scores a map against a lesion
// mask (pointing game, energy inside).
#pragma once

#include "medimg/explain/cam.hpp"
#include "medimg/explain/common.hpp"
#include "medimg/explain/localization.hpp"
#include "medimg/explain/occlusion.hpp"
#include "medimg/explain/rollout.hpp"
