// SPDX-License-Identifier: MIT
// The small Vision Transformer the data-parallel tests train (test_mpi.cpp, test_nccl.cu): 32 px
// input, 8 px patches (16 tokens + the class token), width 24, 2 blocks of 2 heads, 3 classes.
// LayerNorm has no batch statistics, so half batches on two ranks reproduce the whole batch.
#pragma once

#include "medimg/nn/vit.hpp"

namespace medimg::test {
inline nn::VitOptions small_vit_options() {
    nn::VitOptions o;
    o.image_size = 32;
    o.patch_size = 8;
    o.embed_dim = 24;
    o.depth = 2;
    o.heads = 2;
    o.mlp_dim = 48;
    o.num_classes = 3;
    return o;
}
}  // namespace medimg::test
