// The two-branch network of paper Fig. 1 with its composition fixed at run time; HalSalNet and
// SmicNet fix it at compile time on top. Children: `backbone` (torchvision names below it) and
// `saliency`.
#pragma once
#include <string>

#include "halsal/backbones/backbone.hpp"
#include "halsal/fusion/modulation.hpp"
#include "halsal/nets/net_base.hpp"
#include "halsal/saliency/saliency_branch.hpp"

namespace halsal {

/// RGB branch up to the fusion point, saliency branch, modulation, joint branch.
template <class Backbone>
class ModulatedNetImpl : public NetBase {
 public:
  using backbone_type = Backbone;
  static constexpr bool has_saliency = true;

  /// A network with a fresh Xavier head for `num_classes`, cut at backbone index `cut`.
  ModulatedNetImpl(int64_t num_classes, int depth, int cut, ModulationKind modulation,
                   SaliencyOptions options)
      : ModulatedNetImpl(fresh_backbone(num_classes), depth, cut, modulation, options) {}

  /// A network around an existing backbone, shared rather than copied (its head is kept).
  ModulatedNetImpl(Backbone shared_backbone, int depth, int cut, ModulationKind modulation,
                   SaliencyOptions options)
      : cut_(cut), modulation_(modulation) {
    if (cut < 0) throw Error("invalid fusion point for " + std::string(backbone_traits<Backbone>::name));
    if (!shared_backbone) throw Error("ModulatedNet: the backbone is empty");
    backbone = register_module("backbone", std::move(shared_backbone));
    saliency = register_module("saliency", torch::nn::ModuleHolder<SaliencyBranchImpl>(
                                               std::make_shared<SaliencyBranchImpl>(depth, options)));
  }

  /// All intermediate results; `saliency_input` is the image (HalSal) or a given map (SMIC).
  NetOutput modulated_forward(const torch::Tensor& image, const torch::Tensor& saliency_input) {
    NetOutput out;
    out.features = backbone->forward_trunk(image, cut_);
    out.saliency = saliency->forward(saliency_input, {out.features.size(2), out.features.size(3)});
    out.modulated = modulate(out.features, out.saliency, modulation_);
    out.embedding = backbone->forward_embedding(out.modulated, cut_);
    out.logits = classify(backbone->head(), out.embedding);
    return out;
  }
  /// The plain RGB network's output (s = 0 everywhere: l·(0+1) = l), the saliency branch unused;
  /// Step I's report compares against it.
  NetOutput forward_without_saliency(const torch::Tensor& image) {
    NetOutput out;
    out.features = backbone->forward_trunk(image, cut_);
    out.embedding = backbone->forward_embedding(out.features, cut_);
    out.logits = classify(backbone->head(), out.embedding);
    return out;
  }
  /// Turns the head into a cosine classifier (learnable scale, starting at `scale`).
  void use_cosine_head(double scale = 10) { make_cosine_head(backbone->head(), scale); }

  /// Backbone index where the joint branch starts.
  int cut() const { return cut_; }
  /// Eq. 2 (Residual) or Eq. 1 (Plain).
  ModulationKind modulation() const { return modulation_; }
  /// State-dict prefix of the classifier head, e.g. "backbone.fc".
  static std::string head_name() { return "backbone." + Backbone::Impl::head_name(); }

  Backbone backbone{nullptr};
  torch::nn::ModuleHolder<SaliencyBranchImpl> saliency{nullptr};

 private:
  static Backbone fresh_backbone(int64_t num_classes) {
    Backbone b(num_classes);
    auto head = b->head();
    xavier_init(head);
    return b;
  }
  int cut_;
  ModulationKind modulation_;
};

}  // namespace halsal
