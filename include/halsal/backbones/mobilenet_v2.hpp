// MobileNetV2 (width 1.0) as in torchvision, with fusion cuts at the ends of its four strided
// stages, mirroring ResNet's layer1..layer4 (output strides 4, 8, 16, 32).
#pragma once
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>

#include "halsal/backbones/backbone.hpp"
#include "halsal/backbones/batchnorm_folding.hpp"

namespace halsal {

/// torchvision's Conv2dNormActivation: Conv2d (no bias) → BatchNorm2d → ReLU6, named 0, 1, 2.
/// A Sequential subclass with a plain forward, so that it can sit inside other Sequentials.
class ConvBNReLU6Impl : public torch::nn::SequentialImpl, public FoldsBatchNorm {
 public:
  ConvBNReLU6Impl(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t groups = 1) {
    namespace nn = torch::nn;
    nn::Conv2d conv(
        nn::Conv2dOptions(in, out, kernel).stride(stride).padding((kernel - 1) / 2).groups(groups).bias(false));
    nn::BatchNorm2d bn(out);
    push_back(conv);
    push_back(bn);
    push_back(nn::ReLU6());
    conv_ = conv.get();
    bn_ = bn.get();
  }
  torch::Tensor forward(torch::Tensor x) {
    auto y = detail::conv_bn(*conv_, *bn_, x, fold_batchnorm_);
    torch::hardtanh_(y, 0, 6);  // ReLU6, in place as torchvision's
    return y;
  }

 private:
  // Children 0 and 1, owned by the Sequential.
  torch::nn::Conv2dImpl* conv_ = nullptr;
  torch::nn::BatchNorm2dImpl* bn_ = nullptr;
};
TORCH_MODULE(ConvBNReLU6);

/// torchvision's InvertedResidual: expand 1×1 (when t ≠ 1), depthwise 3×3, linear 1×1; `conv.*`.
class InvertedResidualImpl : public torch::nn::Module, public FoldsBatchNorm {
 public:
  InvertedResidualImpl(int64_t in, int64_t out, int64_t stride, int64_t expand_ratio)
      : use_residual_(stride == 1 && in == out) {
    namespace nn = torch::nn;
    const int64_t hidden = in * expand_ratio;
    conv = nn::Sequential();
    if (expand_ratio != 1) conv->push_back(ConvBNReLU6(in, hidden, 1));
    conv->push_back(ConvBNReLU6(hidden, hidden, 3, stride, hidden));
    nn::Conv2d project(nn::Conv2dOptions(hidden, out, 1).bias(false));
    nn::BatchNorm2d project_bn(out);
    conv->push_back(project);
    conv->push_back(project_bn);
    register_module("conv", conv);
    project_ = project.get();
    project_bn_ = project_bn.get();
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto y = x;
    for (size_t i = 0; i + 2 < conv->size(); ++i) y = detail::layer(conv, static_cast<int>(i)).forward(y);
    y = detail::conv_bn(*project_, *project_bn_, y, fold_batchnorm_);  // the linear 1×1 projection
    return use_residual_ ? x + y : y;
  }
  torch::nn::Sequential conv{nullptr};

 private:
  bool use_residual_;
  // The last two children of `conv`, owned by it.
  torch::nn::Conv2dImpl* project_ = nullptr;
  torch::nn::BatchNorm2dImpl* project_bn_ = nullptr;
};
TORCH_MODULE(InvertedResidual);

/// torchvision.models.mobilenet_v2(): `features` (19 blocks) and `classifier` (Dropout, Linear).
class MobileNetV2Impl : public torch::nn::Module {
 public:
  explicit MobileNetV2Impl(int64_t num_classes = 1000) {
    namespace nn = torch::nn;
    // t (expansion), c (channels), n (repeats), s (first stride): torchvision's table.
    const int64_t setting[7][4] = {{1, 16, 1, 1}, {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                   {6, 96, 3, 1}, {6, 160, 3, 2}, {6, 320, 1, 1}};
    features = nn::Sequential();
    features->push_back(ConvBNReLU6(3, 32, 3, 2));
    int64_t in = 32;
    for (const auto& row : setting) {
      for (int64_t i = 0; i < row[2]; ++i) {
        features->push_back(InvertedResidual(in, row[1], i == 0 ? row[3] : 1, row[0]));
        in = row[1];
      }
    }
    features->push_back(ConvBNReLU6(in, kLastChannels, 1));
    register_module("features", features);
    classifier = register_module("classifier", nn::Sequential(nn::Dropout(0.2), nn::Linear(kLastChannels, num_classes)));
    init_like_torchvision();
  }

  /// Logits for a batch of normalised images (N×3×H×W).
  torch::Tensor forward(const torch::Tensor& x) {
    return forward_joint(forward_trunk(x, kFeatureCount), kFeatureCount);
  }
  /// The RGB branch: `features[0:cut]`.
  torch::Tensor forward_trunk(torch::Tensor x, int cut) {
    for (int i = 0; i < cut; ++i) x = detail::layer(features, i).forward(x);
    return x;
  }
  /// The joint branch: `features[cut:]`, global average pooling, classifier.
  torch::Tensor forward_joint(torch::Tensor x, int cut) { return head()->forward(forward_embedding(x, cut)); }
  /// The joint branch without its head: `features[cut:]`, global average pooling and the
  /// classifier's dropout, N×1280 (what the head reads).
  torch::Tensor forward_embedding(torch::Tensor x, int cut) {
    for (int i = cut; i < kFeatureCount; ++i) x = detail::layer(features, i).forward(x);
    return detail::layer(classifier, 0).forward(torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1));
  }
  /// Index where forward_trunk(x, full_cut()) has run the whole RGB branch.
  static constexpr int full_cut() { return kFeatureCount; }
  /// Width of forward_embedding's output.
  static constexpr int64_t embedding_size() { return kLastChannels; }

  /// The classifier layer that a new task replaces.
  torch::nn::Linear head() const { return detail::linear_at(classifier, 1); }
  /// State-dict prefix of the head ("classifier.1").
  static std::string head_name() { return "classifier.1"; }
  /// Replaces the head by a fresh Xavier-initialised layer for `num_classes`.
  void replace_head(int64_t num_classes) {
    torch::nn::Linear fresh(kLastChannels, num_classes);
    xavier_init(fresh);
    classifier = replace_module(
        "classifier", detail::with_last_replaced(classifier, torch::nn::AnyModule(fresh)));
  }

  torch::nn::Sequential features{nullptr}, classifier{nullptr};

 private:
  static constexpr int64_t kLastChannels = 1280;
  static constexpr int kFeatureCount = 19;
  // torchvision: Kaiming-normal (fan_out) convolutions, BN 1/0, Linear N(0, 0.01) and zero bias.
  void init_like_torchvision() {
    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_normal_(conv->weight, 0, torch::kFanOut);
      } else if (auto* bn = m->as<torch::nn::BatchNorm2d>()) {
        torch::nn::init::ones_(bn->weight);
        torch::nn::init::zeros_(bn->bias);
      } else if (auto* fc = m->as<torch::nn::Linear>()) {
        torch::nn::init::normal_(fc->weight, 0, 0.01);
        torch::nn::init::zeros_(fc->bias);
      }
    }
  }
};

/// Holder for MobileNetV2Impl (shared ownership, like TORCH_MODULE).
class MobileNetV2 : public torch::nn::ModuleHolder<MobileNetV2Impl> {
 public:
  using torch::nn::ModuleHolder<MobileNetV2Impl>::ModuleHolder;
  using Impl = MobileNetV2Impl;
};

template <>
struct backbone_traits<MobileNetV2> {
  static constexpr bool is_backbone = true;
  static constexpr BackboneFamily family = BackboneFamily::MobileNetV2;
  static constexpr const char* name = "MobileNetV2";
  static constexpr const char* key = "mobilenet_v2";  ///< the name programs and model files use
  // Same rule as ResNet: fuse at the end of the last stage, right before global pooling.
  using default_fusion = AfterStage<4>;
  /// Index into `features` where the joint branch starts: the end of the stride-4, -8, -16 and
  /// -32 stages (56×56×24, 28×28×32, 14×14×96, 7×7×1280 at a 224 input).
  template <class F>
  static constexpr int cut() {
    if constexpr (is_after_stage_v<F>) {
      constexpr int ends[] = {4, 7, 14, 19};
      return (F::stage >= 1 && F::stage <= 4) ? ends[F::stage - 1] : -1;
    }
    return -1;
  }
};

}  // namespace halsal
