// ResNet-18/34/50/101/152 as in torchvision (v1.5: stride on the 3×3 convolution of Bottleneck),
// written like torchvision's old C++ models: ResNetImpl<Block>.
#pragma once
#include <torch/nn/functional/activation.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/pooling.h>

#include <array>

#include "halsal/backbones/backbone.hpp"
#include "halsal/backbones/batchnorm_folding.hpp"

namespace halsal {

namespace detail {
inline torch::nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}
inline torch::nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}
}  // namespace detail

/// Two 3×3 convolutions (ResNet-18/34).
class BasicBlockImpl : public torch::nn::Module, public FoldsBatchNorm {
 public:
  static constexpr int64_t expansion = 1;
  BasicBlockImpl(int64_t inplanes, int64_t planes, int64_t stride, torch::nn::Sequential downsample)
      : conv1(register_module("conv1", detail::conv3x3(inplanes, planes, stride))),
        bn1(register_module("bn1", torch::nn::BatchNorm2d(planes))),
        conv2(register_module("conv2", detail::conv3x3(planes, planes))),
        bn2(register_module("bn2", torch::nn::BatchNorm2d(planes))),
        downsample(downsample) {
    if (downsample) register_module("downsample", downsample);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    // In place where torchvision's are: each tensor changed is a fresh output no backward reads.
    auto out = detail::conv_bn(*conv1, *bn1, x, fold_batchnorm_).relu_();
    out = detail::conv_bn(*conv2, *bn2, out, fold_batchnorm_);
    out += downsample ? detail::conv_bn(downsample, x, fold_batchnorm_) : x;
    return out.relu_();
  }
  torch::nn::Conv2d conv1;
  torch::nn::BatchNorm2d bn1;
  torch::nn::Conv2d conv2;
  torch::nn::BatchNorm2d bn2;
  torch::nn::Sequential downsample;
};

/// 1×1, 3×3 (with the stride), 1×1 ×4 (ResNet-50/101/152).
class BottleneckImpl : public torch::nn::Module, public FoldsBatchNorm {
 public:
  static constexpr int64_t expansion = 4;
  BottleneckImpl(int64_t inplanes, int64_t planes, int64_t stride, torch::nn::Sequential downsample)
      : conv1(register_module("conv1", detail::conv1x1(inplanes, planes))),
        bn1(register_module("bn1", torch::nn::BatchNorm2d(planes))),
        conv2(register_module("conv2", detail::conv3x3(planes, planes, stride))),
        bn2(register_module("bn2", torch::nn::BatchNorm2d(planes))),
        conv3(register_module("conv3", detail::conv1x1(planes, planes * expansion))),
        bn3(register_module("bn3", torch::nn::BatchNorm2d(planes * expansion))),
        downsample(downsample) {
    if (downsample) register_module("downsample", downsample);
  }
  torch::Tensor forward(const torch::Tensor& x) {
    auto out = detail::conv_bn(*conv1, *bn1, x, fold_batchnorm_).relu_();  // in place, as torchvision's
    out = detail::conv_bn(*conv2, *bn2, out, fold_batchnorm_).relu_();
    out = detail::conv_bn(*conv3, *bn3, out, fold_batchnorm_);
    out += downsample ? detail::conv_bn(downsample, x, fold_batchnorm_) : x;
    return out.relu_();
  }
  torch::nn::Conv2d conv1;
  torch::nn::BatchNorm2d bn1;
  torch::nn::Conv2d conv2;
  torch::nn::BatchNorm2d bn2;
  torch::nn::Conv2d conv3;
  torch::nn::BatchNorm2d bn3;
  torch::nn::Sequential downsample;
};

/// torchvision.models.ResNet: conv1 bn1 maxpool layer1..layer4 avgpool fc. The four `layer`
/// stages are the fusion points AfterStage<1..4>.
template <class Block>
class ResNetImpl : public torch::nn::Module, public FoldsBatchNorm {
 public:
  ResNetImpl(std::array<int64_t, 4> layers, int64_t num_classes = 1000) {
    namespace nn = torch::nn;
    conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
    bn1 = register_module("bn1", nn::BatchNorm2d(64));
    layer1 = register_module("layer1", make_layer(64, layers[0], 1));
    layer2 = register_module("layer2", make_layer(128, layers[1], 2));
    layer3 = register_module("layer3", make_layer(256, layers[2], 2));
    layer4 = register_module("layer4", make_layer(512, layers[3], 2));
    fc = register_module("fc", nn::Linear(512 * Block::expansion, num_classes));
    init_like_torchvision();
  }

  /// Logits for a batch of normalised images (N×3×H×W).
  torch::Tensor forward(const torch::Tensor& x) { return forward_joint(forward_trunk(x, 4), 4); }
  /// The RGB branch: stem and stages 1..cut.
  torch::Tensor forward_trunk(const torch::Tensor& x, int cut) {
    auto out = torch::max_pool2d(detail::conv_bn(*conv1, *bn1, x, fold_batchnorm_).relu_(), 3, 2, 1);
    for (int s = 1; s <= cut; ++s) out = stage(s)->forward(out);
    return out;
  }
  /// The joint branch: stages cut+1..4, global average pooling, fc.
  torch::Tensor forward_joint(torch::Tensor x, int cut) { return fc(forward_embedding(x, cut)); }
  /// The joint branch without its head: stages cut+1..4 and global average pooling (what fc reads).
  torch::Tensor forward_embedding(torch::Tensor x, int cut) {
    for (int s = cut + 1; s <= 4; ++s) x = stage(s)->forward(x);
    return torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);
  }
  /// Index where forward_trunk(x, full_cut()) has run the whole RGB branch.
  static constexpr int full_cut() { return 4; }
  /// Width of forward_embedding's output.
  static constexpr int64_t embedding_size() { return 512 * Block::expansion; }

  /// The classifier layer that a new task replaces.
  torch::nn::Linear head() const { return fc; }
  /// State-dict prefix of the head ("fc").
  static std::string head_name() { return "fc"; }
  /// Replaces the head by a fresh Xavier-initialised layer for `num_classes`.
  void replace_head(int64_t num_classes) {
    torch::nn::Linear fresh(512 * Block::expansion, num_classes);
    xavier_init(fresh);
    fc = replace_module("fc", fresh);
  }
  /// Stage s (1..4): layer1..layer4.
  torch::nn::Sequential stage(int s) const {
    return s == 1 ? layer1 : s == 2 ? layer2 : s == 3 ? layer3 : layer4;
  }

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  torch::nn::Linear fc{nullptr};

 private:
  torch::nn::Sequential make_layer(int64_t planes, int64_t blocks, int64_t stride) {
    torch::nn::Sequential downsample{nullptr};
    if (stride != 1 || inplanes_ != planes * Block::expansion) {
      downsample = torch::nn::Sequential(detail::conv1x1(inplanes_, planes * Block::expansion, stride),
                                         torch::nn::BatchNorm2d(planes * Block::expansion));
    }
    torch::nn::Sequential layer;
    layer->push_back(std::make_shared<Block>(inplanes_, planes, stride, downsample));
    inplanes_ = planes * Block::expansion;
    for (int64_t i = 1; i < blocks; ++i)
      layer->push_back(std::make_shared<Block>(inplanes_, planes, 1, torch::nn::Sequential(nullptr)));
    return layer;
  }
  // torchvision: Kaiming-normal (fan_out, ReLU) convolutions, BatchNorm weight 1 and bias 0.
  void init_like_torchvision() {
    torch::NoGradGuard no_grad;
    for (auto& m : modules(/*include_self=*/false)) {
      if (auto* conv = m->template as<torch::nn::Conv2d>()) {
        torch::nn::init::kaiming_normal_(conv->weight, 0, torch::kFanOut, torch::kReLU);
      } else if (auto* bn = m->template as<torch::nn::BatchNorm2d>()) {
        torch::nn::init::ones_(bn->weight);
        torch::nn::init::zeros_(bn->bias);
      }
    }
  }
  int64_t inplanes_ = 64;
};

namespace detail {
template <int N>
inline constexpr bool is_resnet_depth_v = N == 18 || N == 34 || N == 50 || N == 101 || N == 152;
template <int N>
inline constexpr std::array<int64_t, 4> resnet_layers() {
  if constexpr (N == 18) return {2, 2, 2, 2};
  if constexpr (N == 34 || N == 50) return {3, 4, 6, 3};
  if constexpr (N == 101) return {3, 4, 23, 3};
  if constexpr (N == 152) return {3, 8, 36, 3};
  return {1, 1, 1, 1};
}
}  // namespace detail

/// ResNet-N (N = 18, 34, 50, 101, 152), torchvision's layout and names.
template <int N>
class ResNet
    : public torch::nn::ModuleHolder<ResNetImpl<std::conditional_t<(N >= 50), BottleneckImpl, BasicBlockImpl>>> {
  static_assert(detail::is_resnet_depth_v<N>,
                "halsal: ResNet<N> exists for N = 18, 34, 50, 101 and 152 (torchvision's ResNets)");

 public:
  using Impl = ResNetImpl<std::conditional_t<(N >= 50), BottleneckImpl, BasicBlockImpl>>;
  static constexpr int depth = N;
  /// An ImageNet-shaped ResNet-N with a `num_classes`-way fc.
  explicit ResNet(int64_t num_classes = 1000)
      : torch::nn::ModuleHolder<Impl>(std::make_shared<Impl>(detail::resnet_layers<N>(), num_classes)) {}
  /// An empty holder, to be assigned later.
  ResNet(std::nullptr_t) : torch::nn::ModuleHolder<Impl>(nullptr) {}
  /// Wraps an existing module.
  ResNet(std::shared_ptr<Impl> impl) : torch::nn::ModuleHolder<Impl>(std::move(impl)) {}
};

template <int N>
struct backbone_traits<ResNet<N>> {
  static constexpr bool is_backbone = true;
  static constexpr BackboneFamily family = BackboneFamily::ResNet;
  static constexpr const char* name = N == 18    ? "ResNet-18"
                                      : N == 34  ? "ResNet-34"
                                      : N == 50  ? "ResNet-50"
                                      : N == 101 ? "ResNet-101"
                                                 : "ResNet-152";
  /// The name programs and model files use.
  static constexpr const char* key = N == 18    ? "resnet18"
                                     : N == 34  ? "resnet34"
                                     : N == 50  ? "resnet50"
                                     : N == 101 ? "resnet101"
                                                : "resnet152";
  using default_fusion = AfterStage<4>;  // paper footnote 2: "after the fourth residual block"
  /// Number of stages in the RGB branch.
  template <class F>
  static constexpr int cut() {
    if constexpr (is_after_stage_v<F>) return (F::stage >= 1 && F::stage <= 4) ? F::stage : -1;
    return -1;
  }
};

}  // namespace halsal
