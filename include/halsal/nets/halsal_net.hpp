// HalSalNet: the paper's network, the saliency map hallucinated from the RGB image itself.
#pragma once
#include <string>

#include "halsal/nets/composition.hpp"
#include "halsal/nets/modulated_net.hpp"

namespace halsal {

/// HalSalNet's module. Checks the composition first (a base listed before the network).
template <class B, class D = Depth<4>, class F = default_fusion_t<B>, class M = Residual>
class HalSalNetImpl : private detail::CheckComposition<B, D, F, M>,
                      public ModulatedNetImpl<detail::checked_backbone_t<B>> {
  using Base = ModulatedNetImpl<detail::checked_backbone_t<B>>;

 public:
  using depth_type = D;
  using fusion_type = F;
  using modulation_type = M;
  static constexpr bool reads_saliency_map = false;

  /// A network for `num_classes` (fresh Xavier head, Xavier saliency branch).
  explicit HalSalNetImpl(int64_t num_classes = 1000, SaliencyOptions options = {})
      : Base(num_classes, detail::depth_of<D>::value,
             backbone_traits<detail::checked_backbone_t<B>>::template cut<F>(), modulation_kind(),
             with_rgb_input(options)) {}
  /// A network around an existing backbone (e.g. pretrained), shared rather than copied.
  explicit HalSalNetImpl(detail::checked_backbone_t<B> backbone, SaliencyOptions options = {})
      : Base(std::move(backbone), detail::depth_of<D>::value,
             backbone_traits<detail::checked_backbone_t<B>>::template cut<F>(), modulation_kind(),
             with_rgb_input(options)) {}

  /// Logits for normalised images N×3×H×W.
  torch::Tensor forward(const torch::Tensor& image) { return forward_full(image).logits; }
  /// Logits, hallucinated saliency map, features before and after modulation.
  NetOutput forward_full(const torch::Tensor& image) { return this->modulated_forward(image, image); }

  /// "HalSalNet<ResNet-152, Depth<4>, AfterStage<4>, Residual>".
  static std::string name() { return "HalSalNet<" + detail::composition_name<B, D, F, M>() + ">"; }

 private:
  static ModulationKind modulation_kind() {
    if constexpr (is_modulation_v<M>) return M::kind;
    return ModulationKind::Residual;
  }
  static SaliencyOptions with_rgb_input(SaliencyOptions o) {
    o.in_channels = 3;
    return o;
  }
};

/// HalSalNet<Backbone, Depth, Fusion, Modulation>: one line picks a variant, e.g.
/// `HalSalNet<ResNet<152>, Depth<4>, AfterStage<4>>`. Defaults are the paper's.
template <class B, class D = Depth<4>, class F = default_fusion_t<B>, class M = Residual>
class HalSalNet : public torch::nn::ModuleHolder<HalSalNetImpl<B, D, F, M>> {
 public:
  using Impl = HalSalNetImpl<B, D, F, M>;
  using torch::nn::ModuleHolder<Impl>::ModuleHolder;
};

}  // namespace halsal
