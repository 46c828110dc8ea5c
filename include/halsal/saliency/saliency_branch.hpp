// The saliency branch (paper §3.2): AlexNet-style convolutions, a 1×1 convolution and a ReLU that
// give a one-channel map, bilinearly resized to the fusion point's resolution.
#pragma once
#include <torch/nn/functional/upsampling.h>
#include <torch/nn/init.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>

#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "halsal/core/error.hpp"

namespace halsal {

/// Number of convolutional layers in the saliency branch (1..5; the paper found 4 best, Fig. 2).
template <int N>
struct Depth {
  static constexpr int value = N;
};

template <class D>
struct is_depth : std::false_type {};
template <int N>
struct is_depth<Depth<N>> : std::true_type {};
/// True for Depth<N>, whatever N.
template <class D>
inline constexpr bool is_depth_v = is_depth<D>::value;

/// The saliency map's last non-linearity.
enum class SaliencyActivation {
  relu,      ///< the paper's: exact zeros off the object, but a map that reaches 0 everywhere stays dead
  softplus,  ///< log(1 + e^z): keeps a gradient where z < 0 (in float32 it is 0 below z ≈ -88)
};

/// "relu" or "softplus".
inline const char* to_string(SaliencyActivation a) { return a == SaliencyActivation::relu ? "relu" : "softplus"; }

/// Parses "relu" or "softplus"; throws on anything else.
inline SaliencyActivation parse_saliency_activation(const std::string& name) {
  if (name == "relu") return SaliencyActivation::relu;
  if (name == "softplus") return SaliencyActivation::softplus;
  throw Error("unknown saliency activation '" + name + "' (expected relu or softplus)");
}

/// How the branch's 1×1 score starts.
enum class SaliencyStart {
  xavier,    ///< the paper's Xavier start (the score's weights taken absolute, so the map is alive)
  constant,  ///< score weights 0 and a bias giving s = 0.1 everywhere: the network starts as the plain
             ///< backbone with features scaled by 1.1, so Step I does not begin by undoing a random map
};

/// "xavier" or "constant".
inline const char* to_string(SaliencyStart s) { return s == SaliencyStart::xavier ? "xavier" : "constant"; }

/// Parses "xavier" or "constant"; throws on anything else.
inline SaliencyStart parse_saliency_start(const std::string& name) {
  if (name == "xavier") return SaliencyStart::xavier;
  if (name == "constant") return SaliencyStart::constant;
  throw Error("unknown saliency start '" + name + "' (expected xavier or constant)");
}

/// Layout of the saliency branch; the defaults are the paper's.
struct SaliencyOptions {
  /// Channels of the branch's input: 3 reads the RGB image (HalSal), 1 reads a given map (SMIC).
  int64_t in_channels = 3;
  /// Convolution widths of AlexNet (Krizhevsky et al.): 96, 256, 384, 384, 256.
  std::array<int64_t, 5> widths{96, 256, 384, 384, 256};
  /// The map's last non-linearity (the paper: ReLU). It has no parameters, so it is not in the
  /// state_dict: whoever reloads a network must set it the same way.
  SaliencyActivation activation = SaliencyActivation::relu;
  /// How the score starts (only the initialisation: a trained or loaded branch does not depend on it).
  SaliencyStart start = SaliencyStart::xavier;
  /// With the Xavier start, the 1×1 score's initial bias (the paper's: 0). A negative one starts a
  /// softplus map near 0, so that l·(s+1) starts as the identity: a pretrained network behind the
  /// fusion point is not swamped by features scaled several times at the first step of Step I.
  /// (With the ReLU it can start the map dead; use it with softplus.)
  double score_bias = 0;
};

/// The branch with a runtime depth; `SaliencyBranch<N>` fixes it at compile time.
/// Layers: conv1 11×11/4 → ReLU → max-pool 3/2, conv2 5×5 → ReLU → max-pool 3/2, conv3..conv5 3×3
/// → ReLU, then `score` (1×1 → 1 channel) → ReLU (or softplus: SaliencyOptions::activation).
/// At a 227 input, conv4 gives 384×13×13 (§3.2).
class SaliencyBranchImpl : public torch::nn::Module {
 public:
  explicit SaliencyBranchImpl(int depth = 4, SaliencyOptions options = {})
      : depth_(depth), activation_(options.activation), start_(options.start), score_bias_(options.score_bias) {
    if (depth < 1 || depth > 5) throw Error("saliency branch depth must be 1..5, got " + std::to_string(depth));
    namespace nn = torch::nn;
    const int64_t kernels[5] = {11, 5, 3, 3, 3}, strides[5] = {4, 1, 1, 1, 1}, pads[5] = {0, 2, 1, 1, 1};
    int64_t in = options.in_channels;
    for (int i = 0; i < depth; ++i) {
      const int64_t out = options.widths[i];
      convs_.push_back(register_module(
          "conv" + std::to_string(i + 1),
          nn::Conv2d(nn::Conv2dOptions(in, out, kernels[i]).stride(strides[i]).padding(pads[i]))));
      in = out;
    }
    score = register_module("score", nn::Conv2d(nn::Conv2dOptions(in, 1, 1)));
    reset_parameters();
  }

  /// The map at the branch's own resolution (N×1×h×w, non-negative).
  torch::Tensor forward(const torch::Tensor& x) {
    if (x.dim() != 4) throw Error("saliency branch: expected an N×C×H×W batch");
    const int64_t min_side = depth_ == 1 ? 19 : 35;  // conv1 11/4 and the max-pools need this much
    if (x.size(2) < min_side || x.size(3) < min_side)
      throw Error("saliency branch: images of " + std::to_string(x.size(2)) + "×" + std::to_string(x.size(3)) +
                  " px are too small for Depth<" + std::to_string(depth_) + ">; it needs at least " +
                  std::to_string(min_side) + " px a side");
    auto h = x;
    for (int i = 0; i < depth_; ++i) {
      h = torch::relu(convs_[i](h));
      if (i < 2) h = torch::max_pool2d(h, 3, 2);
    }
    const auto z = score(h);
    return activation_ == SaliencyActivation::relu ? torch::relu(z) : torch::softplus(z);
  }
  /// The map resized bilinearly to `size` (the fusion point's h×w).
  torch::Tensor forward(const torch::Tensor& x, std::vector<int64_t> size) {
    namespace F = torch::nn::functional;
    auto s = forward(x);
    if (s.size(2) == size[0] && s.size(3) == size[1]) return s;
    return F::interpolate(s, F::InterpolateFuncOptions().size(size).mode(torch::kBilinear).align_corners(false));
  }

  /// Xavier-uniform weights and zero biases: the paper's initialisation of the branch (§3.4);
  /// the 1×1 score takes the absolute values, its bias is SaliencyOptions::score_bias (0 by default).
  void reset_parameters() {
    torch::NoGradGuard no_grad;
    for (auto& conv : convs_) {
      torch::nn::init::xavier_uniform_(conv->weight);
      torch::nn::init::zeros_(conv->bias);
    }
    if (start_ == SaliencyStart::constant) {
      // s = 0.1 everywhere: ReLU(0.1), or softplus(log(e^0.1 - 1)). The gradient reaches the
      // score's weights at once; the convolutions follow as soon as those move away from 0.
      torch::nn::init::zeros_(score->weight);
      const double target = 0.1;
      torch::nn::init::constant_(score->bias, activation_ == SaliencyActivation::relu ? target : std::log(std::expm1(target)));
      return;
    }
    // The score starts with |Xavier| weights: its inputs are ReLU outputs (≥ 0), so the map is
    // alive at the start. With signed weights it can start at 0 everywhere, and a dead ReLU there
    // never recovers: the network would silently train as the baseline.
    torch::nn::init::xavier_uniform_(score->weight);
    score->weight.abs_();
    torch::nn::init::constant_(score->bias, score_bias_);
  }

  /// Number of convolutional layers before the 1×1 score.
  int depth() const { return depth_; }
  /// The map's last non-linearity.
  SaliencyActivation activation() const { return activation_; }

  torch::nn::Conv2d score{nullptr};

 private:
  int depth_;
  SaliencyActivation activation_;
  SaliencyStart start_;
  double score_bias_ = 0;
  std::vector<torch::nn::Conv2d> convs_;
};

/// Holder for a saliency branch of compile-time depth N.
template <int N>
class SaliencyBranch : public torch::nn::ModuleHolder<SaliencyBranchImpl> {
  static_assert(N >= 1 && N <= 5,
                "halsal: Depth<N> is the number of convolutional layers in the saliency branch and "
                "must be 1 to 5 (the paper's default is Depth<4>)");

 public:
  using Impl = SaliencyBranchImpl;
  /// A branch with the paper's widths; `options` overrides input channels and widths.
  explicit SaliencyBranch(SaliencyOptions options = {})
      : torch::nn::ModuleHolder<SaliencyBranchImpl>(std::make_shared<SaliencyBranchImpl>(N, options)) {}
  SaliencyBranch(std::nullptr_t) : torch::nn::ModuleHolder<SaliencyBranchImpl>(nullptr) {}
};

}  // namespace halsal
