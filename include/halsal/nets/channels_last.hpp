// Channels-last (NHWC) memory format for a whole network: its 4-D weights and buffers are stored
// NHWC, and inputs made NHWC follow them through every convolution. The values are unchanged;
// only the layout is, which some convolution kernels (oneDNN on x86, cuDNN with tensor cores) prefer.
#pragma once
#include <c10/core/Device.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>

#include <memory>

namespace halsal {

/// Stores every 4-D parameter and buffer of `net` channels-last (on) or contiguous NCHW (off);
/// returns how many tensors it set.
inline int set_channels_last(torch::nn::Module& net, bool on) {
  const auto format = on ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  int changed = 0;
  auto relayout = [&](const torch::Tensor& t) {
    if (!t.defined() || t.dim() != 4) return;
    t.set_data(t.data().contiguous(format));
    ++changed;
  };
  for (const auto& p : net.parameters(/*recurse=*/true)) relayout(p);
  for (const auto& b : net.buffers(/*recurse=*/true)) relayout(b);
  return changed;
}

/// True when `net` has a depthwise convolution (groups = input channels > 1), as MobileNetV2 has:
/// there oneDNN's NHWC kernels train 1.2-1.4x faster than NCHW on the CPU (docs/performance.md),
/// so the trainer stores such networks channels-last unless told otherwise.
inline bool has_depthwise_convolutions(torch::nn::Module& net) {
  for (const auto& m : net.modules(/*include_self=*/true))
    if (const auto* conv = m->as<torch::nn::Conv2d>()) {
      const auto groups = conv->options.groups();
      if (groups > 1 && groups == conv->options.in_channels()) return true;
    }
  return false;
}

/// The layout halsal chooses for `net` on `device` when the user does not: channels-last for
/// networks with depthwise convolutions on the CPU (measured faster there), NCHW otherwise,
/// CUDA included until a GPU run has measured it (docs/performance.md).
inline bool channels_last_by_default(torch::nn::Module& net, const torch::Device& device) {
  return device.is_cpu() && has_depthwise_convolutions(net);
}

/// While alive, `net` is stored channels-last (on); when it ends, the network is NCHW again, so
/// that code after (saving, another trainer, a comparison) sees the layout it started with.
class ChannelsLastScope {
 public:
  /// on = false: a scope that changes nothing.
  ChannelsLastScope(std::shared_ptr<torch::nn::Module> net, bool on) : net_(on ? std::move(net) : nullptr) {
    if (net_) set_channels_last(*net_, true);
  }
  ~ChannelsLastScope() {
    if (!net_) return;
    try {
      set_channels_last(*net_, false);
    } catch (...) {  // out of memory while copying: the values are right in either layout
    }
  }
  ChannelsLastScope(const ChannelsLastScope&) = delete;
  ChannelsLastScope& operator=(const ChannelsLastScope&) = delete;
  /// Whether the network is channels-last while the scope lives.
  bool on() const { return net_ != nullptr; }

 private:
  std::shared_ptr<torch::nn::Module> net_;
};

/// `x` (N×C×H×W) in the layout set_channels_last(net, on) gave the network.
inline torch::Tensor in_channels_last(const torch::Tensor& x, bool on) {
  return on && x.dim() == 4 ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
}

}  // namespace halsal
