// Command-line pieces the example programs share: the training flags (profile and its overrides)
// (CLI11 parsing itself is in cli_parse.hpp).
#pragma once
#include <halsal/saliency/saliency_branch.hpp>
#include <halsal/experiments/experiment.hpp>

#include "cli_parse.hpp"

#include <CLI/CLI.hpp>
#include <iostream>
#include <string>
#include <vector>

namespace halsal::cli {

/// --profile, --epochs, --image-size, --normalization, --device, --precision,
/// --saliency-activation, --head, --warmup-epochs and --set FIELD=VALUE for any other TrainConfig field.
struct TrainingFlags {
  std::string profile = "fast", normalization, device = "cpu", precision, saliency_activation = "relu", head,
              saliency_start = "xavier";
  int epochs = 0, image_size = 0, warmup_epochs = -1;
  std::vector<std::string> sets;

  /// Registers the flags on `app`.
  void add_to(CLI::App& app) {
    app.add_option("--profile", profile,
                   "fast (160 px, imprinted cosine head, 2 warm-up + 10 epochs) or paper (224 px, Xavier head, "
                   "70 epochs, §4.1)")
        ->check(CLI::IsMember({"fast", "paper"}));
    app.add_option("--epochs", epochs, "override the profile's epochs")->check(CLI::PositiveNumber);
    app.add_option("--image-size", image_size, "override the profile's image size")->check(CLI::Range(64, 1024));
    app.add_option("--normalization", normalization, "imagenet or symmetric (the shared MobileNetV2 needs symmetric)")
        ->check(CLI::IsMember({"imagenet", "symmetric"}));
    app.add_option("--device", device, "cpu or cuda[:n]");
    app.add_option("--precision", precision,
                   "fp32 (default), bf16 (autocast; CPU and CUDA) or fp16 (autocast with loss scaling; CUDA only)")
        ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
    app.add_option("--saliency-activation", saliency_activation,
                   "the saliency map's last non-linearity: relu (the paper's) or softplus")
        ->check(CLI::IsMember({"relu", "softplus"}));
    app.add_option("--saliency-start", saliency_start,
                   "how a new saliency branch's score starts: xavier (the paper's) or constant (s = 0.1 everywhere)")
        ->check(CLI::IsMember({"xavier", "constant"}));
    app.add_option("--head", head, "xavier (the paper's linear head) or imprint (cosine head from the class means)")
        ->check(CLI::IsMember({"xavier", "imprint"}));
    app.add_option("--warmup-epochs", warmup_epochs, "head-only epochs before fine-tuning (0 = none)")
        ->check(CLI::NonNegativeNumber);
    app.add_option("--set", sets, "FIELD=VALUE: any training-configuration field (as in runs.jsonl's config), "
                                  "e.g. --set lr=2e-4 --set warmup_lr=0.05; repeatable");
  }
  /// The profile with the overrides applied.
  train::TrainConfig config() const {
    train::TrainConfig c = train::profile(profile);
    if (!normalization.empty()) c.normalization = normalization;
    if (epochs > 0) c.epochs = epochs;
    if (image_size > 0) c.image_size = image_size;
    if (!head.empty()) c.head = head;
    if (warmup_epochs >= 0) c.warmup_epochs = warmup_epochs;
    c.device = device;
    if (!precision.empty()) c.precision = precision;
    for (const auto& item : sets) c = train::apply_setting(c, item);
    train::validate(c);
    return c;
  }
  /// The saliency-branch options.
  SaliencyOptions saliency() const {
    SaliencyOptions o;
    o.activation = parse_saliency_activation(saliency_activation);
    o.start = parse_saliency_start(saliency_start);
    return o;
  }
};

}  // namespace halsal::cli
