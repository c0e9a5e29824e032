// SPDX-License-Identifier: MIT
// medimg-interop-sample OUTDIR: writes a medimg checkpoint of a ResNet18 (2 classes, one
// training-mode forward so BN statistics are not trivial) plus sample.safetensors holding an
// input batch and medimg's eval-mode logits for it. scripts/check_pytorch_interop.py then loads
// the checkpoint into torchvision's resnet18 and compares (docs/interop.md).
#include <medimg/io/checkpoint.hpp>
#include <medimg/medimg.hpp>
#include <medimg/nn/nn.hpp>

#include <filesystem>
#include <iostream>

int main(int argc, char** argv) try {
    using namespace medimg;
    if (argc != 2 || std::string(argv[1]) == "--help") {
        std::cout << "usage: medimg-interop-sample OUTDIR\n";
        return argc == 2 ? 0 : 1;
    }
    const std::filesystem::path dir = argv[1];
    std::filesystem::create_directories(dir);
    nn::ResNet18<float> model(nn::ResNetOptions{2, 3, 42});
    Rng rng(7);
    auto x = Tensor<float>::empty({2, 3, 64, 64});
    rng.fill_normal(x, 0.0, 1.0);
    autograd::NoGrad guard;
    model.train();
    model(autograd::Var<float>(x));  // moves the running statistics
    model.eval();
    const auto logits = model(autograd::Var<float>(x)).value();

    io::CheckpointMeta meta;
    meta.architecture = "resnet18";
    meta.classes = {"normal", "lesao"};
    meta.in_channels = 3;
    meta.image_size = 64;
    meta.mean = {0.485, 0.456, 0.406};
    meta.std = {0.229, 0.224, 0.225};
    io::save_checkpoint((dir / "model.safetensors").string(), model, meta);
    io::SafetensorsWriter w;
    w.add("input", x);
    w.add("logits", logits);
    w.write((dir / "sample.safetensors").string());
    std::cout << "wrote " << (dir / "model.safetensors").string() << " and sample.safetensors; logits";
    for (std::int64_t i = 0; i < logits.numel(); ++i) std::cout << " " << logits[i];
    std::cout << "\n";
    return 0;
} catch (const std::exception& e) {
    std::cerr << "medimg-interop-sample: " << e.what() << "\n";
    return 1;
}
