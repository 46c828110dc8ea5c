// Freeze policies (paper §3.4): which parts of a network train, and the parameter groups to hand
// the optimizer. Parts: the saliency branch ("saliency.*"), the classifier head, and the rest of
// the backbone (RGB branch and joint branch).
#pragma once
#include <torch/nn/modules/batchnorm.h>
#include <torch/optim/optimizer.h>

#include <string>
#include <vector>

#include "halsal/nets/net_base.hpp"

namespace halsal {

/// Step I: only the saliency branch trains, against the frozen RGB branch and its ImageNet head.
struct StepI {
  static constexpr const char* name = "StepI";
  static constexpr bool trains_saliency = true, trains_backbone = false, trains_head = false;
  static constexpr bool needs_saliency = true;
};
/// Approach A: the saliency branch (from Step I) is frozen, everything else trains.
struct ApproachA {
  static constexpr const char* name = "ApproachA";
  static constexpr bool trains_saliency = false, trains_backbone = true, trains_head = true;
  static constexpr bool needs_saliency = true;
};
/// Approach B: everything trains (on RgbNet: plain fine-tuning, Baseline-RGB).
struct ApproachB {
  static constexpr const char* name = "ApproachB";
  static constexpr bool trains_saliency = true, trains_backbone = true, trains_head = true;
  static constexpr bool needs_saliency = false;
};
/// Linear probe: only the classifier head trains.
struct LinearProbe {
  static constexpr const char* name = "LinearProbe";
  static constexpr bool trains_saliency = false, trains_backbone = false, trains_head = true;
  static constexpr bool needs_saliency = false;
};

/// Runtime choices that come with a policy.
struct FreezeOptions {
  /// Also freeze BatchNorm in the trained parts: eval mode, running statistics and affine
  /// parameters untouched. On by default: few-shot batches give unusable batch statistics.
  /// BatchNorm in frozen parts is always frozen.
  bool freeze_batchnorm = true;
};

/// Trainable parameters by part, for per-part learning rates (new layers vs pretrained ones).
struct ParamGroups {
  std::vector<torch::Tensor> saliency;  ///< "saliency.*"
  std::vector<torch::Tensor> backbone;  ///< pretrained RGB + joint branch
  std::vector<torch::Tensor> head;      ///< the classifier layer

  /// All trainable parameters in one list.
  std::vector<torch::Tensor> all() const {
    std::vector<torch::Tensor> v = saliency;
    v.insert(v.end(), backbone.begin(), backbone.end());
    v.insert(v.end(), head.begin(), head.end());
    return v;
  }
};

namespace detail {
template <class Policy>
constexpr bool trains(NetPart part) {
  return part == NetPart::Saliency ? Policy::trains_saliency
         : part == NetPart::Head   ? Policy::trains_head
                                   : Policy::trains_backbone;
}
}  // namespace detail

/// Applies Policy to a network holder (HalSalNet, SmicNet, RgbNet): sets requires_grad, freezes
/// BatchNorm as FreezeOptions says, and returns the trainable parameters by part.
template <class Policy, class Net>
ParamGroups apply_policy(Net& net, FreezeOptions options = {}) {
  using Impl = typename Net::ContainedType;
  static_assert(Impl::has_saliency || !Policy::needs_saliency,
                "halsal: this freeze policy (StepI or ApproachA) trains or freezes the saliency "
                "branch, but RgbNet has none: use HalSalNet or SmicNet, or ApproachB / LinearProbe");
  Impl& impl = *net;
  const std::string head = Impl::head_name();

  std::vector<std::shared_ptr<torch::nn::Module>> frozen_bn;
  std::vector<std::string> frozen_bn_names;
  for (const auto& item : impl.named_modules("", /*include_self=*/false)) {
    if (!item.value()->template as<torch::nn::BatchNorm2d>()) continue;
    if (options.freeze_batchnorm || !detail::trains<Policy>(detail::part_of(item.key(), head))) {
      frozen_bn.push_back(item.value());
      frozen_bn_names.push_back(item.key() + ".");
    }
  }
  auto in_frozen_bn = [&](const std::string& param) {
    for (const auto& prefix : frozen_bn_names)
      if (starts_with(param, prefix)) return true;
    return false;
  };

  ParamGroups groups;
  for (auto& item : impl.named_parameters(/*recurse=*/true)) {
    const NetPart part = detail::part_of(item.key(), head);
    const bool train = detail::trains<Policy>(part) && !in_frozen_bn(item.key());
    item.value().set_requires_grad(train);
    if (!train) continue;
    (part == NetPart::Saliency ? groups.saliency : part == NetPart::Head ? groups.head : groups.backbone)
        .push_back(item.value());
  }
  impl.set_frozen_batchnorm(std::move(frozen_bn));
  return groups;
}

}  // namespace halsal
