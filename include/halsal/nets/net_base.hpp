// What every halsal network shares: the output record and frozen-BatchNorm bookkeeping.
#pragma once
#include <torch/nn/module.h>

#include <memory>
#include <vector>

namespace halsal {

/// Everything one forward pass computes; saliency, features and modulated are undefined for
/// RgbNet (which has no saliency branch).
struct NetOutput {
  torch::Tensor logits;     ///< N×classes
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

 private:
  std::vector<std::shared_ptr<torch::nn::Module>> frozen_batchnorm_;
};

/// Number of scalar parameters (all, or only those that require grad).
inline int64_t count_parameters(const torch::nn::Module& module, bool trainable_only = false) {
  int64_t n = 0;
  for (const auto& p : module.parameters())
    if (!trainable_only || p.requires_grad()) n += p.numel();
  return n;
}

}  // namespace halsal
