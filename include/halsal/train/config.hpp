// A training run's configuration: the paper's profile, a fast CPU profile, and JSON round trips
// (a checkpoint stores the configuration it was trained with).
#pragma once
#include <nlohmann/json.hpp>

#include <filesystem>
#include <optional>
#include <string>

#include "halsal/core/error.hpp"
#include "halsal/train/precision.hpp"

namespace halsal::train {

/// Everything that decides how a network is trained and evaluated.
struct TrainConfig {
  std::string optimizer = "sgd";  ///< "sgd" (momentum) or "adam"
  double lr = 1e-4;               ///< learning rate of the pretrained backbone (paper §4.1)
  double new_layer_lr_scale = 1;  ///< head and saliency branch train at lr × this (paper: 1)
  double saliency_lr_scale = 0;   ///< > 0: the saliency branch trains at lr × this instead
  double momentum = 0.9;          ///< SGD momentum
  double weight_decay = 5e-3;     ///< paper §4.1
  std::string schedule = "constant";  ///< "constant", "cosine" or "onecycle"
  double label_smoothing = 0;     ///< cross-entropy label smoothing
  /// The head: "xavier" (the paper's linear layer, Xavier start) or "imprint" (a cosine classifier
  /// whose weights start as the normalised class means of the training images, learnable scale).
  std::string head = "xavier";
  double cosine_scale = 10;       ///< the cosine head's starting scale
  /// Head-only epochs (a linear probe on the frozen network) before the `epochs` of fine-tuning.
  int warmup_epochs = 0;
  double warmup_lr = 1e-2;        ///< the head's learning rate in the warm-up (constant)
  int epochs = 70;                ///< paper §4.1 (fine-tuning epochs, after any warm-up)
  int batch_size = 32;
  int image_size = 224;           ///< training crop and evaluation size
  bool random_resized_crop = true;  ///< false: squash whole images (small synthetic pictures)
  double crop_scale_min = 0.08;   ///< RandomResizedCrop's smallest area share
  bool freeze_batchnorm = true;   ///< FreezeOptions::freeze_batchnorm
  std::string normalization = "imagenet";  ///< "imagenet" or "symmetric" (the shared MobileNetV2)
  uint64_t seed = 0;               ///< data order, augmentation, dropout; run_cell/run_step_one also seed the init
  std::string device = "cpu";     ///< "cpu" or "cuda[:n]"
  /// "fp32"; "bf16" (autocast, CPU and CUDA) or "fp16" (autocast and loss scaling, CUDA only)
  std::string precision = "fp32";
  int workers = -1;               ///< loader threads; -1 = cores - 1
  // Speed only (results equal within rounding; not written to settings or checkpoints):
  bool fold_batchnorm = true;     ///< fold eval-mode BatchNorm into its convolution (set_batchnorm_folding)
  /// NHWC weights and inputs while training (set_channels_last); unset: on for networks with
  /// depthwise convolutions (MobileNetV2) on the CPU, where it is faster, off otherwise
  std::optional<bool> channels_last;
  bool cache_cpu_memory = true;   ///< keep freed CPU tensor memory for reuse while training (CpuMemoryCacheScope)
  int eval_every = 1;             ///< validate every n epochs (and after the last)
  std::filesystem::path checkpoint_dir;  ///< empty: no checkpoints; else resumable
  std::filesystem::path metrics_jsonl;   ///< empty: none; else one JSON line per epoch
  int stop_after_epochs = 0;      ///< > 0: stop early after this many epochs of this call (tests, time limits)
  bool quiet = false;             ///< no progress output
};

/// The paper's profile (§4.1): SGD, lr 1e-4, weight decay 5e-3, 70 epochs, 224 px.
inline TrainConfig paper_profile() { return TrainConfig{}; }

/// A CPU-sized few-shot profile, chosen on validation accuracy over Flowers-102 and the CUB subset
/// at k = 1 and 5 (docs/experiments.md, "Choosing the fast profile"): 160 px; an imprinted cosine
/// head, 2 head-only warm-up epochs at 0.05, then 10 epochs of fine-tuning with the backbone at
/// 3e-4, the head at 3e-2 and the saliency branch at the paper's 1e-4, cosine schedule; validated
/// every 2nd epoch and at the end of the warm-up.
inline TrainConfig fast_profile() {
  TrainConfig c;
  c.image_size = 160;
  c.head = "imprint";
  c.warmup_epochs = 2;
  c.warmup_lr = 0.05;
  c.epochs = 10;
  c.eval_every = 2;
  c.lr = 3e-4;
  c.new_layer_lr_scale = 100;
  c.saliency_lr_scale = 1.0 / 3;  // 1e-4: at 3e-3 the branch switched its map off in Step I
  c.schedule = "cosine";
  c.batch_size = 32;
  c.crop_scale_min = 0.35;
  return c;
}

/// The configuration as JSON.
inline nlohmann::json to_json(const TrainConfig& c) {
  nlohmann::json j = {{"optimizer", c.optimizer},       {"lr", c.lr},
          {"new_layer_lr_scale", c.new_layer_lr_scale}, {"saliency_lr_scale", c.saliency_lr_scale},
          {"momentum", c.momentum},
          {"weight_decay", c.weight_decay}, {"schedule", c.schedule},
          {"label_smoothing", c.label_smoothing}, {"head", c.head}, {"cosine_scale", c.cosine_scale},
          {"warmup_epochs", c.warmup_epochs}, {"warmup_lr", c.warmup_lr}, {"epochs", c.epochs},
          {"batch_size", c.batch_size},     {"image_size", c.image_size},
          {"random_resized_crop", c.random_resized_crop}, {"crop_scale_min", c.crop_scale_min},
          {"freeze_batchnorm", c.freeze_batchnorm}, {"normalization", c.normalization},
          {"eval_every", c.eval_every},
          {"seed", c.seed},                 {"device", c.device}};
  // Written only when not fp32, so that the settings and checkpoints of fp32 runs read as before.
  if (c.precision != "fp32") j["precision"] = c.precision;
  return j;
}

/// Reads the fields present in `j` over `base`; unknown fields are an error.
inline TrainConfig from_json(const nlohmann::json& j, TrainConfig base = {}) {
  if (!j.is_object()) throw Error("training configuration: expected a JSON object");
  for (const auto& [key, value] : j.items()) {
    try {
      if (key == "optimizer") base.optimizer = value.get<std::string>();
      else if (key == "lr") base.lr = value.get<double>();
      else if (key == "new_layer_lr_scale") base.new_layer_lr_scale = value.get<double>();
      else if (key == "saliency_lr_scale") base.saliency_lr_scale = value.get<double>();
      else if (key == "momentum") base.momentum = value.get<double>();
      else if (key == "weight_decay") base.weight_decay = value.get<double>();
      else if (key == "schedule") base.schedule = value.get<std::string>();
      else if (key == "label_smoothing") base.label_smoothing = value.get<double>();
      else if (key == "head") base.head = value.get<std::string>();
      else if (key == "cosine_scale") base.cosine_scale = value.get<double>();
      else if (key == "warmup_epochs") base.warmup_epochs = value.get<int>();
      else if (key == "warmup_lr") base.warmup_lr = value.get<double>();
      else if (key == "epochs") base.epochs = value.get<int>();
      else if (key == "batch_size") base.batch_size = value.get<int>();
      else if (key == "image_size") base.image_size = value.get<int>();
      else if (key == "random_resized_crop") base.random_resized_crop = value.get<bool>();
      else if (key == "crop_scale_min") base.crop_scale_min = value.get<double>();
      else if (key == "freeze_batchnorm") base.freeze_batchnorm = value.get<bool>();
      else if (key == "normalization") base.normalization = value.get<std::string>();
      else if (key == "seed") base.seed = value.get<uint64_t>();
      else if (key == "eval_every") base.eval_every = value.get<int>();
      else if (key == "device") base.device = value.get<std::string>();
      else if (key == "precision") base.precision = value.get<std::string>();
      else if (key == "fold_batchnorm") base.fold_batchnorm = value.get<bool>();
      else if (key == "channels_last") {
        if (value.is_null() || value == "auto") base.channels_last = std::nullopt;
        else if (value.is_boolean()) base.channels_last = value.get<bool>();
        else throw Error("training configuration: channels_last must be true, false or auto, not " + value.dump());
      }
      else if (key == "cache_cpu_memory") base.cache_cpu_memory = value.get<bool>();
      else throw Error("training configuration: unknown field '" + key + "'");
    } catch (const nlohmann::json::exception& e) {
      throw Error("training configuration: field '" + key + "' has the wrong type (" + e.what() + ")");
    }
  }
  return base;
}

/// Applies one "field=value" setting (the value as JSON, else as a string) over `base`; errors
/// name the field.
inline TrainConfig apply_setting(const TrainConfig& base, const std::string& setting) {
  const auto eq = setting.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error("training configuration: expected FIELD=VALUE, got '" + setting + "'");
  const std::string field = setting.substr(0, eq), text = setting.substr(eq + 1);
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;
  return from_json(nlohmann::json{{field, value}}, base);
}

/// Checks the values; throws an Error that names the bad field.
inline void validate(const TrainConfig& c) {
  auto fail = [](const std::string& what) { throw Error("training configuration: " + what); };
  if (c.optimizer != "sgd" && c.optimizer != "adam") fail("optimizer must be sgd or adam, not " + c.optimizer);
  if (c.schedule != "constant" && c.schedule != "cosine" && c.schedule != "onecycle")
    fail("schedule must be constant, cosine or onecycle, not " + c.schedule);
  if (c.normalization != "imagenet" && c.normalization != "symmetric")
    fail("normalization must be imagenet or symmetric, not " + c.normalization);
  if (!(c.lr > 0)) fail("lr must be positive");
  if (!(c.new_layer_lr_scale > 0)) fail("new_layer_lr_scale must be positive");
  if (!(c.saliency_lr_scale >= 0)) fail("saliency_lr_scale must be 0 (= new_layer_lr_scale) or positive");
  if (c.head != "xavier" && c.head != "imprint") fail("head must be xavier or imprint, not " + c.head);
  if (!(c.cosine_scale > 0)) fail("cosine_scale must be positive");
  if (c.warmup_epochs < 0) fail("warmup_epochs must be 0 or more");
  if (!(c.warmup_lr > 0)) fail("warmup_lr must be positive");
  if (c.epochs < 1) fail("epochs must be at least 1");
  if (c.eval_every < 1) fail("eval_every must be at least 1");
  if (c.batch_size < 1) fail("batch_size must be at least 1");
  if (c.image_size < 32 || c.image_size > 1024) fail("image_size must be 32..1024");
  if (c.label_smoothing < 0 || c.label_smoothing >= 1) fail("label_smoothing must be in [0, 1)");
  check_precision(parse_precision(c.precision), c.device);
}

}  // namespace halsal::train
