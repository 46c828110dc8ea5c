// AlexNet as in torchvision (the "one weird trick" variant), with fusion cuts for paper Fig. 3.
#pragma once
#include <torch/nn/functional/activation.h>
#include <torch/nn/modules/activation.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/dropout.h>
#include <torch/nn/modules/pooling.h>

#include "halsal/backbones/backbone.hpp"

namespace halsal {

/// torchvision.models.alexnet: `features` (13 layers), `avgpool`, `classifier` (7 layers).
class AlexNetImpl : public torch::nn::Module {
 public:
  explicit AlexNetImpl(int64_t num_classes = 1000) {
    namespace nn = torch::nn;
    // In place, as torchvision's: each ReLU follows a layer whose output nothing else reads.
    const auto relu_inplace = nn::ReLUOptions().inplace(true);
    features = register_module(
        "features",
        nn::Sequential(nn::Conv2d(nn::Conv2dOptions(3, 64, 11).stride(4).padding(2)), nn::ReLU(relu_inplace),
                       nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2)),
                       nn::Conv2d(nn::Conv2dOptions(64, 192, 5).padding(2)), nn::ReLU(relu_inplace),
                       nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2)),
                       nn::Conv2d(nn::Conv2dOptions(192, 384, 3).padding(1)), nn::ReLU(relu_inplace),
                       nn::Conv2d(nn::Conv2dOptions(384, 256, 3).padding(1)), nn::ReLU(relu_inplace),
                       nn::Conv2d(nn::Conv2dOptions(256, 256, 3).padding(1)), nn::ReLU(relu_inplace),
                       nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2))));
    avgpool = register_module("avgpool", nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({6, 6})));
    classifier = register_module(
        "classifier",
        nn::Sequential(nn::Dropout(0.5), nn::Linear(256 * 6 * 6, 4096), nn::ReLU(relu_inplace), nn::Dropout(0.5),
                       nn::Linear(4096, 4096), nn::ReLU(relu_inplace), nn::Linear(4096, num_classes)));
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
  /// The joint branch: `features[cut:]`, pooling and classifier.
  torch::Tensor forward_joint(torch::Tensor x, int cut) { return head()->forward(forward_embedding(x, cut)); }
  /// The joint branch without its head: `features[cut:]`, pooling and the classifier up to fc7's
  /// ReLU, N×4096 (what the head reads; AlexNet's pooled features are its fc7 activations).
  torch::Tensor forward_embedding(torch::Tensor x, int cut) {
    for (int i = cut; i < kFeatureCount; ++i) x = detail::layer(features, i).forward(x);
    x = avgpool(x).flatten(1);
    for (int i = 0; i < kHeadIndex; ++i) x = detail::layer(classifier, i).forward(x);
    return x;
  }
  /// Index where forward_trunk(x, full_cut()) has run the whole RGB branch.
  static constexpr int full_cut() { return kFeatureCount; }
  /// Width of forward_embedding's output.
  static constexpr int64_t embedding_size() { return 4096; }

  /// The classifier layer that a new task replaces.
  torch::nn::Linear head() const { return detail::linear_at(classifier, kHeadIndex); }
  /// State-dict prefix of the head ("classifier.6").
  static std::string head_name() { return "classifier.6"; }
  /// Replaces the head by a fresh Xavier-initialised layer for `num_classes`.
  void replace_head(int64_t num_classes) {
    torch::nn::Linear fresh(4096, num_classes);
    xavier_init(fresh);
    classifier = replace_module(
        "classifier", detail::with_last_replaced(classifier, torch::nn::AnyModule(fresh)));
  }

  torch::nn::Sequential features{nullptr}, classifier{nullptr};
  torch::nn::AdaptiveAvgPool2d avgpool{nullptr};

 private:
  static constexpr int kFeatureCount = 13;
  static constexpr int kHeadIndex = 6;
};

/// Holder for AlexNetImpl (shared ownership, like TORCH_MODULE).
class AlexNet : public torch::nn::ModuleHolder<AlexNetImpl> {
 public:
  using torch::nn::ModuleHolder<AlexNetImpl>::ModuleHolder;
  using Impl = AlexNetImpl;
};

template <>
struct backbone_traits<AlexNet> {
  static constexpr bool is_backbone = true;
  static constexpr BackboneFamily family = BackboneFamily::AlexNet;
  static constexpr const char* name = "AlexNet";
  static constexpr const char* key = "alexnet";  ///< the name programs and model files use
  using default_fusion = BeforePool2;
  /// Index into `features` where the joint branch starts.
  template <class F>
  static constexpr int cut() {
    if constexpr (std::is_same_v<F, BeforePool2>) return 5;  // conv1 relu pool1 conv2 relu | pool2
    if constexpr (std::is_same_v<F, AfterPool2>) return 6;
    if constexpr (std::is_same_v<F, AfterConv3>) return 8;
    if constexpr (std::is_same_v<F, AfterConv4>) return 10;
    return -1;
  }
};

}  // namespace halsal
