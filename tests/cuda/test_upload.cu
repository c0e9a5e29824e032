// SPDX-License-Identifier: MIT
// Tests for train/upload.hpp on the GPU (cuda/staging.cuh): batches uploaded through the pinned
// staging blocks arrive bit for bit, also when more batches are in flight than there are blocks
// and when a batch is larger than any before; once every block has seen the largest batch no
// cudaHostAlloc happens; the on-device count of right predictions equals the CPU's count
// (std::max_element's first-maximum rule, ties and NaN included); the device gradient clipper
// equals train::clip_grad_norm. Batches a DataLoader collates into the uploader's pinned pool go
// by DMA straight from their blocks, which are reused and not handed out again while a copy holds them. The fit loop that uses both is
// tests/cpu/test_train.cpp's (CPU) and medimg-train's (tests/gpu/run-on-device.sh).
#include <boost/test/unit_test.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "cuda_helpers.hpp"
#include "medimg/core/rng.hpp"
#include "medimg/train/fit.hpp"
#include "reference.hpp"

using namespace medimg;
using medimg::test::has_cuda_device;
namespace ref = medimg::test::ref;
namespace utf = boost::unit_test;

BOOST_AUTO_TEST_SUITE(cuda_upload)

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(uploaded_batches_arrive_bit_for_bit_through_reused_pinned_blocks) {
    train::BatchUploader<Cuda> upload;
    // Ten batches queued back to back (more than the four blocks, so blocks are reused while
    // earlier copies may still be in flight), the sixth larger than all before it.
    std::vector<Tensor<float, Cpu>> host;
    std::vector<Tensor<std::int64_t, Cpu>> host_labels;
    std::vector<Tensor<float, Cuda>> dev;
    std::vector<Tensor<std::int64_t, Cuda>> dev_labels;
    for (int k = 0; k < 10; ++k) {
        const std::int64_t n = k == 5 ? 16 : 8;
        host.push_back(ref::random<float>({n, 3, 32, 32}, 700 + static_cast<std::uint64_t>(k)));
        auto lab = Tensor<std::int64_t, Cpu>::empty({n});
        for (std::int64_t i = 0; i < n; ++i) lab[i] = (i * 7 + k) % 5;
        host_labels.push_back(lab);
        dev.push_back(upload(host.back()));
        dev_labels.push_back(upload(host_labels.back()));
    }
    for (std::size_t k = 0; k < host.size(); ++k) {
        BOOST_TEST_CONTEXT("batch " << k) {
            MEDIMG_CHECK_GPU_CPU_EXACT("images", dev[k], host[k]);
            MEDIMG_CHECK_GPU_CPU_EXACT("labels", dev_labels[k], host_labels[k]);
        }
    }
    // Two more rounds of the largest batch put it into every block (images and labels alternate
    // over the four blocks); from then on the same sizes allocate no pinned memory.
    for (int k = 0; k < 2; ++k) {
        (void)upload(host[5]);
        (void)upload(host_labels[5]);
    }
    const auto before = upload.staging().host_allocations();
    for (int k = 0; k < 8; ++k) {
        const auto d = upload(host[5]);
        (void)upload(host_labels[5]);
        if (k == 7) MEDIMG_CHECK_GPU_CPU_EXACT("images after reuse", d, host[5]);
    }
    BOOST_TEST(upload.staging().host_allocations() == before);
    BOOST_TEST_MESSAGE("pinned bytes held: " << upload.staging().pinned_bytes());
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(the_host_batch_may_be_overwritten_as_soon_as_upload_returns) {
    train::BatchUploader<Cuda> upload;
    auto h = ref::random<float>({4, 1, 64, 64}, 710);
    const auto expected = h.clone();
    const auto d = upload(h);
    h.fill_(-1.0f);  // the staging memcpy already happened: the device copy must not see this
    MEDIMG_CHECK_GPU_CPU_EXACT("device copy", d, expected);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(batches_the_loader_collates_into_the_pinned_pool_go_by_dma_and_reuse_their_blocks) {
    train::BatchUploader<Cuda> upload;
    // 11 samples in batches of 4 (the last one short), two workers collating into the pool.
    std::vector<std::int64_t> labels(11, 0);
    auto load = [](std::int64_t i, Rng& rng) {
        auto t = ref::random<float>({3, 16, 16}, 720 + static_cast<std::uint64_t>(i));
        t[0] = static_cast<float>(rng.uniform());
        return t;
    };
    data::DataLoader loader(labels, load, {4, true, false, 3, 2, 2, false});
    loader.set_image_allocator(upload.host_allocator());
    std::size_t after_first = 0;
    for (std::int64_t epoch = 0; epoch < 4; ++epoch) {
        loader.start_epoch(epoch);
        int k = 0;
        while (auto b = loader.next()) {
            BOOST_TEST_CONTEXT("epoch " << epoch << ", batch " << k++) {
                BOOST_TEST(upload.pool().owns(b->images.data(), b->images.bytes()));
                const auto expected = b->images.clone();  // ordinary memory: staged, not by DMA
                const auto d = upload(b->images);
                BOOST_TEST(upload.direct().pending() >= 1u);
                MEDIMG_CHECK_GPU_CPU_EXACT("images", d, expected);
            }
        }
        if (epoch == 0) after_first = upload.pool().host_allocations();
    }
    // A fixed set of blocks from the first epoch on: prefetched batches, the one in hand and the
    // ones whose copies were still held.
    BOOST_TEST(upload.pool().host_allocations() == after_first);
    BOOST_TEST_MESSAGE("pinned pool: " << after_first << " blocks, " << upload.pool().pinned_bytes() << " bytes");
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(a_pool_block_is_not_handed_out_again_while_its_copy_is_held) {
    train::BatchUploader<Cuda> upload;
    auto alloc = upload.host_allocator();
    auto h = alloc({2, 1, 128, 128});
    h.fill_(3.0f);
    const float* block = h.data();
    const auto d = upload(h);
    h = Tensor<float, Cpu>();  // the caller lets go; the uploader still holds the block
    BOOST_TEST(upload.pool().in_use() == 1u);
    auto h2 = alloc({2, 1, 128, 128});
    BOOST_TEST(h2.data() != block);  // a second block, not the one the DMA may still be reading
    h2.fill_(-1.0f);
    const auto threes = Tensor<float, Cpu>::full({2, 1, 128, 128}, 3.0f);
    MEDIMG_CHECK_GPU_CPU_EXACT("device copy", d, threes);
    // Once its copy has run and a later upload has noticed, the first block is free again.
    (void)upload(h2);
    cuda::synchronize();
    (void)upload(h2);
    BOOST_TEST(upload.pool().in_use() == 1u);  // h2 only: the first block went back
    auto h3 = alloc({2, 1, 128, 128});
    BOOST_TEST(h3.data() == block);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(correct_counter_on_the_gpu_counts_like_the_cpu) {
    train::CorrectCounter<Cpu> cpu;
    train::CorrectCounter<Cuda> gpu;
    BOOST_TEST(gpu.count() == 0);
    Rng rng(720);
    for (const auto& [N, C] : std::vector<std::pair<std::int64_t, std::int64_t>>{{64, 2}, {33, 5}, {300, 10}, {7, 1}}) {
        BOOST_TEST_CONTEXT("N " << N << ", C " << C) {
            auto logits = ref::random<float>({N, C}, 721 + static_cast<std::uint64_t>(N));
            // Ties (quantised values) and a NaN exercise the first-maximum rule.
            for (std::int64_t i = 0; i < logits.numel(); ++i) logits[i] = std::round(logits[i] * 2.0f) / 2.0f;
            logits[3] = std::numeric_limits<float>::quiet_NaN();
            auto labels = Tensor<std::int64_t, Cpu>::empty({N});
            for (std::int64_t i = 0; i < N; ++i) labels[i] = static_cast<std::int64_t>(rng.randint(static_cast<std::uint64_t>(C)));
            cpu.add(logits, labels);
            gpu.add(logits.to<Cuda>(), labels.to<Cuda>());
            BOOST_TEST(gpu.count() == cpu.count());
        }
    }
    BOOST_TEST(cpu.count() > 0);
    gpu.reset();
    cpu.reset();
    BOOST_TEST(gpu.count() == 0);
    BOOST_TEST(cpu.count() == 0);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(grad_clipper_on_the_gpu_clips_like_clip_grad_norm) {
    // Three gradients and one parameter without a gradient (skipped on both sides).
    const std::vector<Shape> shapes{{64, 3, 3, 3}, {64}, {10, 512}, {7}};
    for (const double max_norm : {0.5, 1e6}) {  // clipping, and a norm already below the bound
        BOOST_TEST_CONTEXT("max_norm " << max_norm) {
            nn::NamedParams<float, Cpu> pc;
            nn::NamedParams<float, Cuda> pg;
            for (std::size_t i = 0; i < shapes.size(); ++i) {
                const auto v = ref::random<float>(shapes[i], 730 + i);
                pc.emplace_back(std::to_string(i), autograd::Var<float, Cpu>::parameter(v.clone()));
                pg.emplace_back(std::to_string(i), autograd::Var<float, Cuda>::parameter(v.to<Cuda>()));
                if (i == 3) continue;
                const auto g = ref::random<float>(shapes[i], 740 + i);
                pc.back().second.grad() = g.clone();
                pg.back().second.grad() = g.to<Cuda>();
            }
            const double norm = train::clip_grad_norm(pc, max_norm);
            train::GradClipper<Cuda> clip;
            clip(pg, max_norm);
            BOOST_TEST_MESSAGE("gradient norm " << norm);
            for (std::size_t i = 0; i < 3; ++i) {
                // The scale is the same double up to summation order (~1e-15 relative); rounded to
                // float it may differ by one ulp, so the products by up to 2 ulps (2.4e-7 relative).
                if (max_norm < norm)
                    MEDIMG_CHECK_GPU_CPU("clipped grad " + std::to_string(i), pg[i].second.grad(), pc[i].second.grad(), 1e-6,
                                         0.0);
                else
                    MEDIMG_CHECK_GPU_CPU_EXACT("unclipped grad " + std::to_string(i), pg[i].second.grad(), pc[i].second.grad());
            }
            BOOST_TEST(!pg[3].second.grad().defined());
        }
    }
}

BOOST_AUTO_TEST_SUITE_END()
