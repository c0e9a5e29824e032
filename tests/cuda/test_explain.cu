// SPDX-License-Identifier: MIT
// Tests for explain/ on the GPU: Grad-CAM and Grad-CAM++ of ResNet18<float, Cuda> against the same
// pytorch-grad-cam fixtures as tests/cpu/test_explain.cpp (both methods, layer4 and layer3, both
// class assignments), the same maps as the CPU under bf16 mixed precision within a looser bound,
// and occlusion on the GPU against the CPU. Skipped without a GPU.
#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <map>
#include <string>

#include "cuda_helpers.hpp"
#include "medimg/explain/explain.hpp"
#include "medimg/io/safetensors.hpp"
#include "medimg/nn/nn.hpp"
#include "reference.hpp"

using namespace medimg;
using medimg::test::has_cuda_device;
namespace ref = medimg::test::ref;
namespace utf = boost::unit_test;

namespace {
std::string fixture() {
    const char* env = std::getenv("MEDIMG_TEST_DATA_DIR");
    return (env && *env ? std::string(env) : std::string(MEDIMG_TEST_DATA_DIR)) + "/explain/resnet18_cam.safetensors";
}

/// The fixture's ResNet18 (1 channel, 2 classes, ref::det_init) on the GPU, and its host twin.
struct Models {
    nn::ResNet18<float, Cpu> host{nn::ResNetOptions{2, 1}};
    nn::ResNet18<float, Cuda> gpu{nn::ResNetOptions{2, 1}};
    Models() {
        ref::det_init(host);
        std::map<std::string, Tensor<float, Cuda>> state;
        for (auto& e : host.state_dict()) state[e.name] = e.value.to<Cuda>();
        gpu.load_state_dict(state);
        host.eval();
        gpu.eval();
    }
};

// The float32 GPU network differs from the CPU's by cuDNN's summation orders (~1e-6 relative), as
// the CPU differs from PyTorch's: the CPU test's 1e-4 on maps in [0, 1] holds here too.
constexpr double kCamAtol = 1e-4;
}  // namespace

BOOST_AUTO_TEST_SUITE(cuda_explain)

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(grad_cam_and_grad_cam_pp_on_the_gpu_match_pytorch_grad_cam) {
    const auto f = io::SafetensorsFile::load(fixture());
    Models m;
    const auto x = f.tensor<float>("input").to<Cuda>();
    for (const auto method : {explain::CamMethod::grad_cam, explain::CamMethod::grad_cam_pp})
        for (const std::string layer : {"layer4", "layer3"})
            for (const std::string targets : {"t01", "t10"}) {
                const std::string key = std::string(method == explain::CamMethod::grad_cam ? "gradcam" : "gradcampp") + "." +
                                        layer + "." + targets;
                BOOST_TEST_CONTEXT(key) {
                    explain::CamOptions o;
                    o.method = method;
                    o.layer = layer;
                    o.classes = targets == "t01" ? std::vector<std::int64_t>{0, 1} : std::vector<std::int64_t>{1, 0};
                    const auto e = explain::grad_cam(m.gpu, x, o);
                    MEDIMG_CHECK_CLOSE_TENSORS(e.heatmap, f.tensor<float>(key), 0.0, kCamAtol);
                    for (auto& [name, p] : m.gpu.named_parameters()) BOOST_TEST(!p.grad().defined(), name);
                }
            }
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(grad_cam_under_bf16_activations_stays_near_the_float32_map) {
    // bf16 keeps 8 bits of mantissa: activations and gradients move by ~0.4%, and the map's
    // min-max scaling can magnify that where the raw map is flat; 0.05 on [0, 1] still catches a
    // wrong layer or class (those differ from this map by 0.5 or more on this fixture).
    const auto f = io::SafetensorsFile::load(fixture());
    Models m;
    const auto x = f.tensor<float>("input").to<Cuda>();
    explain::CamOptions o;
    o.layer = "layer3";
    o.classes = {0, 1};
    struct Bf16 {  // back to fp32 however the case ends
        Bf16() { PrecisionControl<Cuda>::set(Precision::bf16); }
        ~Bf16() { PrecisionControl<Cuda>::set(Precision::fp32); }
    };
    explain::Explanation e;
    {
        Bf16 scope;
        e = explain::grad_cam(m.gpu, x, o);
    }
    MEDIMG_CHECK_CLOSE_TENSORS(e.heatmap, f.tensor<float>("gradcam.layer3.t01"), 0.0, 0.05);
}

BOOST_TEST_DECORATOR(*utf::precondition(has_cuda_device))
BOOST_AUTO_TEST_CASE(occlusion_on_the_gpu_matches_the_cpu) {
    Models m;
    const auto x = ref::random<float>({1, 1, 40, 40}, 4);
    explain::OcclusionOptions o;
    o.patch = 10;
    o.stride = 6;
    o.batch_size = 8;
    const auto cpu = explain::occlusion(m.host, x, o);
    const auto gpu = explain::occlusion(m.gpu, x.to<Cuda>(), o);
    BOOST_TEST(gpu.classes == cpu.classes);
    MEDIMG_CHECK_CLOSE_TENSORS(gpu.raw, cpu.raw, 0.0, 1e-4);
    MEDIMG_CHECK_CLOSE_TENSORS(gpu.heatmap, cpu.heatmap, 0.0, 1e-3);
}

BOOST_AUTO_TEST_SUITE_END()
