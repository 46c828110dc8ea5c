// What every halsal network shares: the output record and frozen-BatchNorm bookkeeping.
#pragma once
#include <torch/nn/module.h>

#include <memory>
#include <string>
#include <vector>

#include "halsal/core/text.hpp"
#include "halsal/nets/head.hpp"

namespace halsal {

/// Which part a parameter or module of a network belongs to, from its state-dict name.
enum class NetPart { Saliency, Backbone, Head };

namespace detail {
/// The part of `name`: "saliency.*" is the saliency branch, "<head_name>.*" the head, else backbone.
inline NetPart part_of(const std::string& name, const std::string& head_name) {
  if (starts_with(name, "saliency.") || name == "saliency") return NetPart::Saliency;
  if (starts_with(name, head_name + ".") || name == head_name) return NetPart::Head;
  return NetPart::Backbone;
}
}  // namespace detail

/// Everything one forward pass computes; saliency, features and modulated are undefined for
/// RgbNet (which has no saliency branch).
struct NetOutput {
  torch::Tensor logits;     ///< N×classes
  torch::Tensor embedding;  ///< the pooled features the head reads, N×D
  torch::Tensor saliency;   ///< s: N×1×h×w at the fusion point's resolution
  torch::Tensor features;   ///< l: the RGB branch's output at the fusion point, N×C×h×w
  torch::Tensor modulated;  ///< l̂ = l·(s+1) (Residual) or l·s (Plain), fed to the joint branch
};

/// Base of the network kinds. BatchNorm layers marked frozen stay in eval mode (running statistics
/// untouched) through every later train() call, which is what few-shot fine-tuning needs.
class NetBase : public torch::nn::Module {
 public:
  /// Module::train, then puts the frozen BatchNorm layers back into eval mode.
  void train(bool on = true) override {
    torch::nn::Module::train(on);
    for (auto& bn : frozen_batchnorm_) bn->eval();
  }
  /// Replaces the set of frozen BatchNorm layers (the freeze policies call this).
  void set_frozen_batchnorm(std::vector<std::shared_ptr<torch::nn::Module>> layers) {
    frozen_batchnorm_ = std::move(layers);
    train(is_training());
  }
  /// The BatchNorm layers currently frozen.
  const std::vector<std::shared_ptr<torch::nn::Module>>& frozen_batchnorm() const {
    return frozen_batchnorm_;
  }
  /// Linear (the paper's head) unless the network was given a cosine head.
  HeadKind head_kind() const { return head_kind_; }
  /// The cosine head's learnable scale (a 1-element tensor); undefined for a linear head.
  const torch::Tensor& head_scale() const { return head_scale_; }

 protected:
  /// Makes `head` a cosine classifier whose learnable scale starts at `scale`; the scale is
  /// registered on the head as `<head>.scale`, so it trains, saves and loads with the head.
  void make_cosine_head(torch::nn::Linear head, double scale) {
    if (!(scale > 0)) throw Error("cosine head: the scale must be positive, got " + std::to_string(scale));
    torch::NoGradGuard no_grad;
    if (head_kind_ == HeadKind::Cosine) {
      head_scale_.fill_(scale);
      return;
    }
    head_scale_ = head->register_parameter("scale", torch::full({1}, scale, head->weight.options()));
    head_kind_ = HeadKind::Cosine;
  }
  /// The head's logits for pooled features, linear or cosine.
  torch::Tensor classify(torch::nn::Linear head, const torch::Tensor& embedding) {
    return detail::head_logits(head_kind_, head, embedding, head_scale_);
  }

 private:
  std::vector<std::shared_ptr<torch::nn::Module>> frozen_batchnorm_;
  HeadKind head_kind_ = HeadKind::Linear;
  torch::Tensor head_scale_;
};

/// Number of scalar parameters (all, or only those that require grad).
inline int64_t count_parameters(const torch::nn::Module& module, bool trainable_only = false) {
  int64_t n = 0;
  for (const auto& p : module.parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

}  // namespace halsal
