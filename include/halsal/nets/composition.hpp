// Compile-time checks of a network's composition: one sentence per mistake, no template pages.
#pragma once
#include <string>
#include <type_traits>

#include "halsal/backbones/alexnet.hpp"
#include "halsal/fusion/fusion_points.hpp"
#include "halsal/fusion/modulation.hpp"
#include "halsal/saliency/saliency_branch.hpp"

namespace halsal::detail {

template <class B, bool = is_backbone_v<B>>
struct family_of {
  static constexpr int value = -1;
};
template <class B>
struct family_of<B, true> {
  static constexpr int value = static_cast<int>(backbone_traits<B>::family);
};

template <class D, bool = is_depth_v<D>>
struct depth_of {
  static constexpr int value = 4;  // not a Depth: reported by its own assertion
};
template <class D>
struct depth_of<D, true> {
  static constexpr int value = D::value;
};

template <class F, bool = is_after_stage_v<F>>
struct stage_of {
  static constexpr int value = 1;
};
template <class F>
struct stage_of<F, true> {
  static constexpr int value = F::stage;
};

/// A backbone that stands in for a wrong one, so that only the assertion's sentence is printed.
template <class B>
using checked_backbone_t = std::conditional_t<is_backbone_v<B>, B, AlexNet>;

/// Asserts that <B, D, F, M> is a valid saliency network; the base class of HalSalNet / SmicNet.
template <class B, class D, class F, class M>
struct CheckComposition {
  static constexpr int family = family_of<B>::value;
  static constexpr bool alexnet = family == static_cast<int>(BackboneFamily::AlexNet);
  static_assert(is_backbone_v<B>,
                "halsal: the first template argument must be a backbone: AlexNet, "
                "ResNet<18|34|50|101|152> or MobileNetV2");
  static_assert(is_depth_v<D>,
                "halsal: the second template argument must be Depth<N>, the number of convolutional "
                "layers in the saliency branch");
  static_assert(depth_of<D>::value >= 1 && depth_of<D>::value <= 5,
                "halsal: Depth<N> is the number of convolutional layers in the saliency branch and "
                "must be 1 to 5 (the paper's default is Depth<4>)");
  static_assert(is_fusion_point_v<F>,
                "halsal: the third template argument must be a fusion point: BeforePool2, AfterPool2, "
                "AfterConv3, AfterConv4 (AlexNet) or AfterStage<1..4> (ResNet, MobileNetV2)");
  static_assert(!(family >= 0 && alexnet && is_after_stage_v<F>),
                "halsal: AfterStage<N> is a fusion point of ResNet and MobileNetV2; AlexNet fuses at "
                "BeforePool2, AfterPool2, AfterConv3 or AfterConv4");
  static_assert(!(family >= 0 && !alexnet && is_alexnet_fusion_v<F>),
                "halsal: BeforePool2, AfterPool2, AfterConv3 and AfterConv4 are AlexNet's fusion "
                "points; ResNet and MobileNetV2 fuse at AfterStage<1..4>");
  static_assert(stage_of<F>::value >= 1 && stage_of<F>::value <= 4,
                "halsal: AfterStage<N> needs N = 1, 2, 3 or 4 (the four stages of ResNet and "
                "MobileNetV2)");
  static_assert(is_modulation_v<M>,
                "halsal: the fourth template argument must be a modulation: Residual (Eq. 2, the "
                "default) or Plain (Eq. 1)");
  static constexpr bool valid = is_backbone_v<B> && is_depth_v<D> && is_fusion_point_v<F> &&
                                is_modulation_v<M> && depth_of<D>::value >= 1 &&
                                depth_of<D>::value <= 5 && stage_of<F>::value >= 1 &&
                                stage_of<F>::value <= 4 &&
                                !(alexnet && is_after_stage_v<F>) && !(!alexnet && is_alexnet_fusion_v<F>);
};

/// Asserts that B is a backbone; the base class of RgbNet.
template <class B>
struct CheckBackbone {
  static_assert(is_backbone_v<B>,
                "halsal: RgbNet<B> needs a backbone: AlexNet, ResNet<18|34|50|101|152> or MobileNetV2");
};

/// "ResNet-152, Depth<4>, AfterStage<4>, Residual" for names and logs.
template <class B, class D, class F, class M>
std::string composition_name() {
  std::string s;
  if constexpr (is_backbone_v<B>) s += backbone_traits<B>::name;
  if constexpr (is_depth_v<D>) s += ", Depth<" + std::to_string(D::value) + ">";
  if constexpr (is_fusion_point_v<F>) s += std::string(", ") + F::name;
  if constexpr (is_modulation_v<M>) s += std::string(", ") + M::name;
  return s;
}

}  // namespace halsal::detail
