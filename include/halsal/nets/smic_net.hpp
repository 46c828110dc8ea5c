// SmicNet: saliency-modulated classification (Flores et al. 2019): the saliency branch reads an
// explicit one-channel saliency map instead of the RGB image.
#pragma once
#include <string>

#include "halsal/nets/composition.hpp"
#include "halsal/nets/modulated_net.hpp"

namespace halsal {

/// SmicNet's module.
template <class B, class D = Depth<4>, class F = default_fusion_t<B>, class M = Residual>
class SmicNetImpl : private detail::CheckComposition<B, D, F, M>,
                    public ModulatedNetImpl<detail::checked_backbone_t<B>> {
  using Base = ModulatedNetImpl<detail::checked_backbone_t<B>>;

 public:
  using depth_type = D;
  using fusion_type = F;
  using modulation_type = M;
  static constexpr bool reads_saliency_map = true;

  /// A network for `num_classes`; its saliency branch takes one input channel.
  explicit SmicNetImpl(int64_t num_classes = 1000, SaliencyOptions options = {})
      : Base(num_classes, detail::depth_of<D>::value,
             backbone_traits<detail::checked_backbone_t<B>>::template cut<F>(), modulation_kind(),
             with_map_input(options)) {}
  /// A network around an existing backbone (e.g. pretrained), shared rather than copied.
  explicit SmicNetImpl(detail::checked_backbone_t<B> backbone, SaliencyOptions options = {})
      : Base(std::move(backbone), detail::depth_of<D>::value,
             backbone_traits<detail::checked_backbone_t<B>>::template cut<F>(), modulation_kind(),
             with_map_input(options)) {}

  /// Logits for images N×3×H×W and their saliency maps N×1×H×W.
  torch::Tensor forward(const torch::Tensor& image, const torch::Tensor& saliency_map) {
    return forward_full(image, saliency_map).logits;
  }
  /// Logits, the map as transformed by the branch, features before and after modulation.
  NetOutput forward_full(const torch::Tensor& image, const torch::Tensor& saliency_map) {
    if (saliency_map.dim() != 4 || saliency_map.size(1) != 1)
      throw Error("SmicNet: the saliency map must be N×1×H×W");
    return this->modulated_forward(image, saliency_map);
  }

  /// "SmicNet<AlexNet, Depth<4>, BeforePool2, Residual>".
  static std::string name() { return "SmicNet<" + detail::composition_name<B, D, F, M>() + ">"; }

 private:
  static ModulationKind modulation_kind() {
    if constexpr (is_modulation_v<M>) return M::kind;
    return ModulationKind::Residual;
  }
  static SaliencyOptions with_map_input(SaliencyOptions o) {
    o.in_channels = 1;
    return o;
  }
};

/// SmicNet<Backbone, Depth, Fusion, Modulation>, the same axes as HalSalNet.
template <class B, class D = Depth<4>, class F = default_fusion_t<B>, class M = Residual>
class SmicNet : public torch::nn::ModuleHolder<SmicNetImpl<B, D, F, M>> {
 public:
  using Impl = SmicNetImpl<B, D, F, M>;
  using torch::nn::ModuleHolder<Impl>::ModuleHolder;
};

}  // namespace halsal
