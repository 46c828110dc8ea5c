// What every backbone shares: its traits (family, default fusion point, where each fusion point
// cuts it), and the classifier-head helpers. The backbones themselves are plain LibTorch modules
// whose parameter and buffer names are torchvision's, byte for byte.
#pragma once
#include <torch/nn/init.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/linear.h>

#include <string>

#include "halsal/fusion/fusion_points.hpp"

namespace halsal {

/// The backbone families halsal knows how to cut at a fusion point.
enum class BackboneFamily { AlexNet, ResNet, MobileNetV2 };

/// Compile-time facts about a backbone type; specialised next to each backbone.
/// `cut<F>()` is the backbone-specific index where fusion point F splits RGB and joint branch,
/// or -1 when F is not a fusion point of this backbone.
template <class B>
struct backbone_traits {
  static constexpr bool is_backbone = false;
};

/// True for the backbone holders (AlexNet, ResNet<N>, MobileNetV2).
template <class B>
inline constexpr bool is_backbone_v = backbone_traits<B>::is_backbone;

namespace detail {
template <class B, bool = is_backbone_v<B>>
struct default_fusion {
  using type = void;
};
template <class B>
struct default_fusion<B, true> {
  using type = typename backbone_traits<B>::default_fusion;
};
}  // namespace detail

/// The paper's fusion point for a backbone: BeforePool2 for AlexNet, AfterStage<4> otherwise.
template <class B>
using default_fusion_t = typename detail::default_fusion<B>::type;

/// Xavier (Glorot) uniform weights and zero bias: the paper's initialisation of new layers (§4.1).
inline void xavier_init(torch::nn::Linear& linear) {
  torch::NoGradGuard no_grad;
  torch::nn::init::xavier_uniform_(linear->weight);
  if (linear->bias.defined()) torch::nn::init::zeros_(linear->bias);
}

namespace detail {
/// The i-th layer of a Sequential, callable with forward().
inline torch::nn::AnyModule& layer(torch::nn::Sequential seq, int i) {
  return *(seq->begin() + i);
}
/// The i-th layer of a Sequential as a Linear holder.
inline torch::nn::Linear linear_at(torch::nn::Sequential seq, int i) {
  return torch::nn::Linear(std::dynamic_pointer_cast<torch::nn::LinearImpl>(seq->ptr(i)));
}
/// A copy of `seq` (same child modules, same names) whose last child is `last`; LibTorch's
/// Sequential cannot swap one element in place, so the parent replaces the whole container.
inline torch::nn::Sequential with_last_replaced(torch::nn::Sequential seq,
                                                torch::nn::AnyModule last) {
  torch::nn::Sequential out;
  const auto names = seq->named_children().keys();
  for (size_t i = 0; i + 1 < seq->size(); ++i) out->push_back(names[i], *(seq->begin() + i));
  out->push_back(names.back(), std::move(last));
  return out;
}
}  // namespace detail

}  // namespace halsal
