// Mixed precision: TrainConfig::precision ("fp32", "bf16", "fp16") and a scope that runs LibTorch's
// autocast for one device, as `with torch.autocast(device, dtype):` does in Python (the forward pass
// and the loss in the lower precision where ATen's autocast lists say so, the weights in fp32).
#pragma once
#include <ATen/autocast_mode.h>
#include <torch/types.h>

#include <string>

#include "halsal/core/compat.hpp"
#include "halsal/core/error.hpp"

namespace halsal::train {

/// The floating-point type a training step computes in.
enum class Precision { fp32, bf16, fp16 };

/// "fp32", "bf16" or "fp16".
inline std::string to_string(Precision p) { return p == Precision::bf16 ? "bf16" : p == Precision::fp16 ? "fp16" : "fp32"; }

/// Parses "fp32", "bf16" or "fp16"; an Error names the value otherwise.
inline Precision parse_precision(const std::string& s) {
  if (s == "fp32") return Precision::fp32;
  if (s == "bf16") return Precision::bf16;
  if (s == "fp16") return Precision::fp16;
  throw Error("training configuration: precision must be fp32, bf16 or fp16, not '" + s + "'");
}

/// Checks that `p` can train on `device` ("cpu", "cuda[:n]"): fp16 needs CUDA (on the CPU autocast
/// has no fp16 lists and loss scaling no kernels in every LibTorch): the Error suggests bf16.
inline void check_precision(Precision p, const std::string& device) {
  if (p == Precision::fp16 && device.rfind("cuda", 0) != 0)
    throw Error("training configuration: precision fp16 is for CUDA; on the CPU (device " + device +
                ") use bf16, which needs no loss scaling");
}

/// Autocast for `device`'s type in `precision` while in scope (nothing for fp32); the previous
/// state comes back, and autocast's cast cache is cleared, when it ends.
class AutocastScope {
 public:
  AutocastScope(const torch::Device& device, Precision precision)
      : type_(device.type()), on_(precision != Precision::fp32) {
    if (!on_) return;
    const auto dtype = precision == Precision::bf16 ? at::kBFloat16 : at::kHalf;
#if HALSAL_TORCH_AT_LEAST(2, 4)
    was_enabled_ = at::autocast::is_autocast_enabled(type_);
    was_dtype_ = at::autocast::get_autocast_dtype(type_);
    at::autocast::set_autocast_enabled(type_, true);
    at::autocast::set_autocast_dtype(type_, dtype);
#else
    if (type_ == at::kCUDA) {
      was_enabled_ = at::autocast::is_enabled();
      was_dtype_ = at::autocast::get_autocast_gpu_dtype();
      at::autocast::set_enabled(true);
      at::autocast::set_autocast_gpu_dtype(dtype);
    } else if (type_ == at::kCPU) {
      was_enabled_ = at::autocast::is_cpu_enabled();
      was_dtype_ = at::autocast::get_autocast_cpu_dtype();
      at::autocast::set_cpu_enabled(true);
      at::autocast::set_autocast_cpu_dtype(dtype);
    } else {
      throw Error("autocast: no mixed precision for " + device.str() + " in this LibTorch");
    }
#endif
    at::autocast::increment_nesting();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;
  ~AutocastScope() {
    if (!on_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#if HALSAL_TORCH_AT_LEAST(2, 4)
    at::autocast::set_autocast_enabled(type_, was_enabled_);
    at::autocast::set_autocast_dtype(type_, was_dtype_);
#else
    if (type_ == at::kCUDA) {
      at::autocast::set_enabled(was_enabled_);
      at::autocast::set_autocast_gpu_dtype(was_dtype_);
    } else {
      at::autocast::set_cpu_enabled(was_enabled_);
      at::autocast::set_autocast_cpu_dtype(was_dtype_);
    }
#endif
  }

 private:
  at::DeviceType type_;
  bool on_;
  bool was_enabled_ = false;
  at::ScalarType was_dtype_ = at::kFloat;
};

}  // namespace halsal::train
