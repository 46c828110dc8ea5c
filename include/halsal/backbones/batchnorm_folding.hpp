// BatchNorm in eval mode folded into the convolution before it, recomputed on every call: one
// convolution instead of a convolution followed by a normalising pass over its whole output.
// The folded weights are built from the live convolution weights, so gradients still reach them
// (and reach BatchNorm's affine where it trains). Exact up to floating-point rounding.
#pragma once
#include <torch/enum.h>
#include <torch/nn/functional/conv.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>

namespace halsal {

/// A backbone part that runs convolution → BatchNorm pairs and may fold them (see
/// set_batchnorm_folding). Folding is on by default.
class FoldsBatchNorm {
 public:
  virtual ~FoldsBatchNorm() = default;
  /// Folds BatchNorm layers that are in eval mode into their convolutions (true) or runs them apart.
  void set_fold_batchnorm(bool on) { fold_batchnorm_ = on; }
  /// Whether this part folds its eval-mode BatchNorm layers.
  bool fold_batchnorm() const { return fold_batchnorm_; }

 protected:
  bool fold_batchnorm_ = true;
};

/// Turns BatchNorm folding on or off in every part of `net`; returns how many parts it set.
inline int set_batchnorm_folding(torch::nn::Module& net, bool on) {
  int parts = 0;
  for (const auto& m : net.modules(/*include_self=*/true)) {
    if (auto* f = dynamic_cast<FoldsBatchNorm*>(m.get())) {
      f->set_fold_batchnorm(on);
      ++parts;
    }
  }
  return parts;
}

namespace detail {
/// bn(conv(x)). With `fold` and bn in eval mode (running statistics, affine), one convolution:
/// y = γ(conv_w(x) + c − μ)/√(σ² + ε) + β = conv_{w·s}(x) + β + (c − μ)·s,  s = γ/√(σ² + ε).
inline torch::Tensor conv_bn(torch::nn::Conv2dImpl& conv, torch::nn::BatchNorm2dImpl& bn, const torch::Tensor& x,
                             bool fold) {
  const auto& co = conv.options;
  if (!fold || bn.is_training() || !bn.options.affine() || !bn.options.track_running_stats() ||
      torch::enumtype::get_enum_name(co.padding_mode()) != "kZeros")
    return bn.forward(conv.forward(x));
  const auto scale = bn.weight * torch::rsqrt(bn.running_var + bn.options.eps());
  auto bias = bn.bias - bn.running_mean * scale;
  if (conv.bias.defined()) bias = bias + conv.bias * scale;
  namespace F = torch::nn::functional;
  return F::conv2d(x, conv.weight * scale.reshape({-1, 1, 1, 1}),
                   F::Conv2dFuncOptions()
                       .bias(bias)
                       .stride(co.stride())
                       .padding(co.padding())
                       .dilation(co.dilation())
                       .groups(co.groups()));
}
/// conv_bn over a Sequential(Conv2d, BatchNorm2d) such as a ResNet downsample; other contents run as they are.
inline torch::Tensor conv_bn(torch::nn::Sequential pair, const torch::Tensor& x, bool fold) {
  if (pair->size() == 2) {
    auto* conv = pair->ptr(0)->as<torch::nn::Conv2d>();
    auto* bn = pair->ptr(1)->as<torch::nn::BatchNorm2d>();
    if (conv && bn) return conv_bn(*conv, *bn, x, fold);
  }
  return pair->forward(x);
}
}  // namespace detail

}  // namespace halsal
