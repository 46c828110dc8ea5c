// Loss scaling for fp16 training, PyTorch's torch.amp.GradScaler in C++ (LibTorch has none): the
// loss is multiplied by a scale before backward so that small fp16 gradients do not underflow; the
// gradients are unscaled before the step, a step whose gradients hold an inf or NaN is skipped and
// the scale backed off, and after growth_interval good steps in a row the scale grows. Built on
// ATen's own kernels (_amp_foreach_non_finite_check_and_unscale_, _amp_update_scale_), so it
// behaves like PyTorch's, step for step.
//
//   GradScaler scaler;
//   scaler.scale(loss).backward();
//   scaler.step(optimizer);   // false: skipped (inf/NaN)
//   scaler.update();
#pragma once
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <cmath>
#include <map>
#include <string>
#include <vector>

#include "halsal/core/compat.hpp"
#include "halsal/core/error.hpp"

namespace halsal::train {

/// How the scale starts, backs off and grows (PyTorch's defaults).
struct GradScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;   ///< after growth_interval good steps in a row
  double backoff_factor = 0.5;  ///< after a step with inf/NaN gradients
  int64_t growth_interval = 2000;
};

/// What a checkpoint keeps of a GradScaler.
struct GradScalerState {
  double scale = 65536.0;
  int64_t growth_tracker = 0;
};

/// fp16 loss scaling (see the file's comment). One scale for every parameter; its state
/// (GradScalerState: the scale and the good-step count) is kept in checkpoints, so that a resumed
/// run scales as an uninterrupted one.
class GradScaler {
 public:
  explicit GradScaler(GradScalerOptions o = {}) : o_(o) {
    if (!(o_.init_scale > 0) || !(o_.growth_factor > 1) || !(o_.backoff_factor > 0 && o_.backoff_factor < 1) ||
        o_.growth_interval < 1)
      throw Error("GradScaler: needs init_scale > 0, growth_factor > 1, 0 < backoff_factor < 1, growth_interval ≥ 1");
  }

  /// True when this LibTorch has the scaler's kernels for `device` (CUDA always; the CPU from
  /// PyTorch 2.x on, not Debian's 1.13).
  static bool supported(const torch::Device& device) {
    if (device.is_cuda()) return true;
    static const bool cpu = [] {
      try {
        auto g = torch::ones({2});
        auto found = torch::zeros({1});
        auto inv = torch::ones({1});
        std::vector<torch::Tensor> gs{g};
        at::_amp_foreach_non_finite_check_and_unscale_(gs, found, inv);
        auto scale = torch::ones({1});
        auto tracker = torch::zeros({1}, torch::kInt32);
        at::_amp_update_scale_(scale, tracker, found, 2.0, 0.5, 1);
        return true;
      } catch (const std::exception&) {
        return false;
      }
    }();
    return cpu;
  }

  /// loss × the current scale (the scale moves to the loss's device on first use).
  torch::Tensor scale(const torch::Tensor& loss) {
    ensure(loss.device());
    return loss * scale_.to(loss.scalar_type());
  }

  /// Divides every gradient of `opt` by the scale and records whether any is inf/NaN. Called by
  /// step() when not called before (call it yourself to clip the true gradients first).
  void unscale(torch::optim::Optimizer& opt) {
    if (unscaled_) throw Error("GradScaler::unscale called twice before update()");
    if (!scale_.defined()) throw Error("GradScaler: scale(loss) was not called before unscale/step");
    torch::NoGradGuard no_grad;
    const auto inv = scale_.to(torch::kFloat64).reciprocal().to(torch::kFloat32);
    // The kernel takes the gradients of one device and type at a time.
    std::map<std::pair<std::string, int>, std::vector<torch::Tensor>> groups;
    for (auto& group : opt.param_groups())
      for (auto& p : group.params())
        if (p.grad().defined())
          groups[{p.grad().device().str(), static_cast<int>(p.grad().scalar_type())}].push_back(p.grad());
    found_inf_ = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat32).device(scale_.device()));
    for (auto& [key, grads] : groups) {
      const auto device = grads.front().device();
      auto found = torch::zeros({1}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
      at::_amp_foreach_non_finite_check_and_unscale_(grads, found, inv.to(device));
      found_inf_ += found.to(scale_.device());
    }
    unscaled_ = true;
  }

  /// Unscales (unless done) and takes the optimizer's step unless a gradient was inf/NaN; returns
  /// whether the step was taken.
  bool step(torch::optim::Optimizer& opt) {
    if (!unscaled_) unscale(opt);
    const bool finite = found_inf_.item<float>() == 0.0f;
    if (finite) opt.step();
    return finite;
  }

  /// After step(): backs the scale off (inf/NaN) or counts a good step and grows it after
  /// growth_interval of them.
  void update() {
    if (!unscaled_) throw Error("GradScaler::update without step() (or unscale()) since the last update");
    at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, o_.growth_factor, o_.backoff_factor,
                           o_.growth_interval);
    unscaled_ = false;
  }

  /// The current scale.
  double current_scale() const { return scale_.defined() ? scale_.item<double>() : o_.init_scale; }
  /// Good steps in a row since the scale last changed.
  int64_t growth_tracker() const { return growth_tracker_.defined() ? growth_tracker_.item<int64_t>() : 0; }

  /// The scale and the good steps counted towards growing it, for checkpoints.
  GradScalerState state() const { return {current_scale(), growth_tracker()}; }
  /// Restores state(); an Error when the scale is not a positive number or the count is negative.
  void load_state(const GradScalerState& s) {
    if (!(s.scale > 0) || !std::isfinite(s.scale) || s.growth_tracker < 0)
      throw Error("GradScaler state: scale " + std::to_string(s.scale) + " and growth tracker " +
                  std::to_string(s.growth_tracker) + " (a positive scale and a count ≥ 0 are needed)");
    const auto device = scale_.defined() ? scale_.device() : torch::Device(torch::kCPU);
    scale_ = torch::full({1}, s.scale, torch::TensorOptions().dtype(torch::kFloat32).device(device));
    growth_tracker_ = torch::full({1}, s.growth_tracker, torch::TensorOptions().dtype(torch::kInt32).device(device));
    unscaled_ = false;
  }

 private:
  void ensure(const torch::Device& device) {
    if (!supported(device))
      throw Error("GradScaler: this LibTorch (" + std::to_string(TORCH_VERSION_MAJOR) + "." +
                  std::to_string(TORCH_VERSION_MINOR) + ") has no loss-scaling kernels for " + device.str() +
                  " (fp16 needs CUDA here; use bf16 on the CPU)");
    if (!scale_.defined()) {
      scale_ = torch::full({1}, o_.init_scale, torch::TensorOptions().dtype(torch::kFloat32).device(device));
      growth_tracker_ = torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt32).device(device));
    } else if (scale_.device() != device) {
      scale_ = scale_.to(device);
      growth_tracker_ = growth_tracker_.to(device);
    }
  }

  GradScalerOptions o_;
  torch::Tensor scale_, growth_tracker_, found_inf_;
  bool unscaled_ = false;
};

}  // namespace halsal::train
