// RgbNet: Baseline-RGB, the backbone alone with a new head.
#pragma once
#include <string>

#include "halsal/nets/composition.hpp"
#include "halsal/nets/net_base.hpp"

namespace halsal {

/// RgbNet's module: child `backbone`, torchvision names below it.
template <class B>
class RgbNetImpl : private detail::CheckBackbone<B>, public NetBase {
  using Backbone = detail::checked_backbone_t<B>;

 public:
  using backbone_type = Backbone;
  static constexpr bool has_saliency = false;
  static constexpr bool reads_saliency_map = false;

  /// The backbone with a fresh Xavier head for `num_classes`.
  explicit RgbNetImpl(int64_t num_classes = 1000) {
    backbone = register_module("backbone", Backbone(num_classes));
    auto head = backbone->head();
    xavier_init(head);
  }
  /// A network around an existing backbone, shared rather than copied (its head is kept).
  explicit RgbNetImpl(Backbone shared_backbone) {
    if (!shared_backbone) throw Error("RgbNet: the backbone is empty");
    backbone = register_module("backbone", std::move(shared_backbone));
  }
  /// Logits for normalised images N×3×H×W.
  torch::Tensor forward(const torch::Tensor& image) { return forward_full(image).logits; }
  /// Logits and the pooled features the head reads (no saliency branch).
  NetOutput forward_full(const torch::Tensor& image) {
    constexpr int full = Backbone::Impl::full_cut();
    NetOutput out;
    out.embedding = backbone->forward_embedding(backbone->forward_trunk(image, full), full);
    out.logits = classify(backbone->head(), out.embedding);
    return out;
  }
  /// Turns the head into a cosine classifier (learnable scale, starting at `scale`).
  void use_cosine_head(double scale = 10) { make_cosine_head(backbone->head(), scale); }

  /// State-dict prefix of the classifier head.
  static std::string head_name() { return "backbone." + Backbone::Impl::head_name(); }
  /// "RgbNet<MobileNetV2>".
  static std::string name() {
    // Appended, not `std::string(…) + … + ">"`: GCC 12 at -O3 warns falsely (-Warray-bounds) on that.
    std::string s = "RgbNet<";
    s += backbone_traits<Backbone>::name;
    s += '>';
    return s;
  }

  Backbone backbone{nullptr};
};

/// RgbNet<Backbone>: Baseline-RGB of the paper's tables.
template <class B>
class RgbNet : public torch::nn::ModuleHolder<RgbNetImpl<B>> {
 public:
  using Impl = RgbNetImpl<B>;
  using torch::nn::ModuleHolder<Impl>::ModuleHolder;
};

}  // namespace halsal
