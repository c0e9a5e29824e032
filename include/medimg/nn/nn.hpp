// SPDX-License-Identifier: MIT
// nn/nn.hpp: every module.
#pragma once

#include "medimg/nn/classifier.hpp"
#include "medimg/nn/densenet.hpp"
#include "medimg/nn/efficientnet.hpp"
#include "medimg/nn/functional.hpp"
#include "medimg/nn/inference.hpp"
#include "medimg/nn/init.hpp"
#include "medimg/nn/layers.hpp"
#include "medimg/nn/models.hpp"
#include "medimg/nn/module.hpp"
#include "medimg/nn/resnet.hpp"
