// Channels-last (NHWC) memory format for a whole network: its 4-D weights and buffers are stored
// NHWC, and inputs made NHWC follow them through every convolution. The values are unchanged;
// only the layout is, which some convolution kernels (oneDNN on x86, cuDNN with tensor cores) prefer.
#pragma once
#include <torch/nn/module.h>

namespace halsal {

/// Stores every 4-D parameter and buffer of `net` channels-last (on) or contiguous NCHW (off);
/// returns how many tensors it set.
inline int set_channels_last(torch::nn::Module& net, bool on) {
  const auto format = on ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
  int changed = 0;
  auto relayout = [&](const torch::Tensor& t) {
    if (!t.defined() || t.dim() != 4) return;
    const_cast<torch::Tensor&>(t).set_data(t.data().contiguous(format));
    ++changed;
  };
  for (const auto& p : net.parameters(/*recurse=*/true)) relayout(p);
  for (const auto& b : net.buffers(/*recurse=*/true)) relayout(b);
  return changed;
}

/// `x` (N×C×H×W) in the layout set_channels_last(net, on) gave the network.
inline torch::Tensor in_channels_last(const torch::Tensor& x, bool on) {
  return on && x.dim() == 4 ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
}

}  // namespace halsal
