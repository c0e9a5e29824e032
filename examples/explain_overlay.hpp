// SPDX-License-Identifier: MIT
// explain_overlay.hpp: one explained exam as a figure, shared by medimg-predict --explain (an
// overlay PNG per image) and the report galleries of medimg-evaluate and medimg-crossval (the
// worst errors with their Grad-CAM): the explanation (explain/), mapped onto the exam as stored
// (explain::heatmap_on_source) and drawn by report::heatmap_overlay. Not part of the library
// (programs only).
#pragma once

#include <medimg/medimg.hpp>
#include <medimg/train/run.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "device.hpp"

/// What --explain asked for (method empty: no explanation).
struct ExplainRequest {
    std::string method, layer, out_dir = "explanations", class_name;  // layer "": the model's default_cam_layer
    std::int64_t patch = 0, stride = 0;  // occlusion; 0 = from the image size
};

/// The overlay's file name for `path`: its stem and the method, made unique within this run.
inline std::string overlay_name(const std::string& path, const std::string& method, std::set<std::string>& used) {
    std::string tag = method == "gradcam++" ? "gradcampp" : method;
    const std::string stem = std::filesystem::path(path).stem().string() + "_" + tag;
    std::string name = stem + ".png";
    for (int k = 2; used.count(name); ++k) name = stem + "_" + std::to_string(k) + ".png";
    used.insert(name);
    return name;
}

/// An explanation drawn over its exam, and what it found.
struct ExplainedOverlay {
    medimg::report::Canvas canvas;
    nlohmann::ordered_json info;  // method, layer (CAM), class, file (when given), peak in the exam's pixels
};

/// Explains the class `target` of one preprocessed image x (1, C, s, s) and draws the overlay over
/// the exam as read from `path` (gray, its own resolution), titled `title`, the method, layer,
/// class and file name below it. `file`, when not empty, is named in info (where the caller saves it).
template <class B>
ExplainedOverlay explained_overlay(medimg::nn::ImageClassifier<float, B>& model, const medimg::Tensor<float, B>& x, const std::string& path,
                                   const medimg::train::Preprocessing& pre, const std::vector<std::string>& classes,
                                   std::int64_t target, const ExplainRequest& req, const std::string& title,
                                   const std::string& file = "") {
    using namespace medimg;
    explain::Explanation e;
    if (req.method == "rollout") {
        auto* vit = dynamic_cast<nn::VisionTransformer<float, B>*>(&model);
        MEDIMG_CHECK(vit != nullptr, ConfigError, "--explain rollout: attention rollout needs a Vision Transformer (vit_*); ",
                     "this model has no attention (use gradcam, gradcam++ or occlusion)");
        explain::RolloutOptions o;
        o.classes = {target};
        e = explain::attention_rollout(*vit, x, o);
    } else if (req.method == "occlusion") {
        explain::OcclusionOptions o;
        o.patch = req.patch > 0 ? req.patch : std::max<std::int64_t>(1, pre.image_size / 7);
        o.stride = req.stride > 0 ? req.stride : std::max<std::int64_t>(1, o.patch / 2);
        o.classes = {target};
        e = explain::occlusion(model, x, o);
    } else {
        explain::CamOptions o;
        o.method = req.method == "gradcam" ? explain::CamMethod::grad_cam : explain::CamMethod::grad_cam_pp;
        o.layer = req.layer.empty() ? model.default_cam_layer(pre.image_size) : req.layer;
        o.classes = {target};
        e = explain::grad_cam(model, x, o);
    }
    auto read = pre.read_settings();
    read.channels = 1;
    const auto gray = data::read_sample(data::SampleRef::from_display(path), read);  // (1, H, W), the exam as stored (windowed)
    const auto heat = explain::heatmap_on_source(e.heatmap.reshape({e.heatmap.size(1), e.heatmap.size(2)}),
                                                 gray.size(1), gray.size(2), pre.resize);
    report::OverlayOptions ov;
    ov.title = title;
    const std::string what = req.method == "gradcam"     ? "Grad-CAM"
                             : req.method == "gradcam++" ? "Grad-CAM++"
                             : req.method == "rollout"   ? "attention rollout"
                                                         : "occlusion";
    ov.subtitle = what + (e.layer.empty() ? "" : " at " + e.layer) + " for '" + classes[static_cast<std::size_t>(target)] +
                  "' | " + std::filesystem::path(path).filename().string();
    ExplainedOverlay out{report::heatmap_overlay(gray, heat, ov), {}};
    const auto [row, col] = explain::peak(heat.reshape({1, heat.size(0), heat.size(1)}), 0);
    auto& j = out.info;
    j["method"] = req.method;
    if (!e.layer.empty()) j["layer"] = e.layer;
    j["class"] = classes[static_cast<std::size_t>(target)];
    if (!file.empty()) j["file"] = io::escape_invalid_utf8(file);
    j["peak"] = {{"x", col}, {"y", row}};  // in the exam's own pixels
    return out;
}

/// One image of a report gallery: its path, true class and predicted probabilities.
struct GalleryCase {
    std::string path;
    std::int64_t label = 0;
    std::vector<double> probs;  // K, as reported (calibrated when calibrated)
};

/// The thumbnails of a report gallery: each case's Grad-CAM (at the default layer for the input
/// size) for class `target` (>= 0; -1: the predicted class), titled "true <class> | p(<positive>)
/// <p>" for two classes or "true <class> | <predicted> <p>" for more.
template <class B>
std::vector<medimg::report::Thumbnail> gallery_thumbnails(medimg::nn::ImageClassifier<float, B>& model, const medimg::train::Preprocessing& pre,
                                                          const std::vector<std::string>& classes, const std::vector<GalleryCase>& cases,
                                                          std::int64_t target) {
    using namespace medimg;
    std::vector<report::Thumbnail> out;
    ExplainRequest req;
    req.method = "gradcam";
    model.eval();
    for (const auto& c : cases) {
        const auto x = pre.load_eval(c.path);
        const auto xb = on_backend<B>(x.reshape({1, x.size(0), x.size(1), x.size(2)}));
        const auto pred = static_cast<std::size_t>(std::max_element(c.probs.begin(), c.probs.end()) - c.probs.begin());
        const auto t = target >= 0 ? target : static_cast<std::int64_t>(pred);
        char title[256];
        if (classes.size() == 2)
            std::snprintf(title, sizeof title, "true %s | p(%s) %.3f", classes[static_cast<std::size_t>(c.label)].c_str(),
                          classes[1].c_str(), c.probs[1]);
        else
            std::snprintf(title, sizeof title, "true %s | %s %.3f", classes[static_cast<std::size_t>(c.label)].c_str(),
                          classes[pred].c_str(), c.probs[pred]);
        auto ex = explained_overlay<B>(model, xb, c.path, pre, classes, t, req, title);
        out.push_back({std::move(ex.canvas), io::escape_invalid_utf8(c.path)});
    }
    return out;
}
