// Step I (paper §3.4) that shows whether it worked: the saliency branch trains against the frozen
// ImageNet network on part of the ImageNet images, and the rest are held out to compare the frozen
// classifier with the learned map against the same network with s = 0 (the plain backbone), image
// by image, with a paired 95 % interval.
//
//   namespace ht = halsal::train;
//   auto imagenet = std::make_shared<const halsal::data::Dataset>(halsal::data::concat(
//       {halsal::data::open("imagenet_samples"), halsal::data::open("imagenet_extra")}));
//   ht::StepOneOptions o;
//   o.weights = "mobilenet_v2-imagenet.pth";   // with its ImageNet head
//   o.gallery_dir = "stepI-out";               // PNGs of held-out images with their maps
//   ht::StepOneReport r = ht::run_step_one<halsal::MobileNetV2>(imagenet, o, "stepI.safetensors");
//   std::cout << r.verdict();                  // loud when the interval does not lie above zero
#pragma once
#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "halsal/data/data.hpp"
#include "halsal/eval/paired.hpp"
#include "halsal/io/state_dict.hpp"
#include "halsal/io/weights.hpp"
#include "halsal/nets/halsal_net.hpp"
#include "halsal/train/trainer.hpp"
#include "halsal/viz/gallery.hpp"

namespace halsal::train {

/// What Step I trains on and how it checks itself.
struct StepOneOptions {
  /// torchvision-named weights of the backbone WITH its ImageNet head (Step I trains against it).
  std::filesystem::path weights;
  /// Training settings; its head and warm-up are not used (Step I keeps the pretrained head).
  TrainConfig config = fast_profile();
  SaliencyOptions saliency;
  /// Share of the images held out for the check (drawn with config.seed); 0 = train on all, no check.
  double holdout = 0.2;
  std::filesystem::path gallery_dir;  ///< empty: no PNGs; else stepI-*.png of held-out images
  int gallery_rows = 8;               ///< rows per PNG
  /// Data-parallel over the processes of this world (null: this process alone): every process
  /// calls run_step_one alike with config.batch_size images per step each; the gradients are
  /// averaged, every process runs the check on the whole hold-out, and only rank 0 writes the
  /// weights file and the galleries.
  std::shared_ptr<dist::ProcessGroup> process_group;
};

/// The frozen classifier with the learned map against s = 0, on one set of images.
struct StepOneCheck {
  size_t images = 0;
  double top1_map = 0, top1_plain = 0;  ///< in percent
  double loss_map = 0, loss_plain = 0;  ///< mean cross-entropy
  eval::PairedDifference top1_gain;     ///< map − plain, percentage points
  eval::PairedDifference loss_drop;     ///< plain − map (> 0: the map lowers the loss)
  double zero_map_share = 0;            ///< images whose map is 0 everywhere
  double flat_map_share = 0;            ///< images whose map stays below 0.01 everywhere (switched off, softplus)
  double mean_map = 0;                  ///< mean of s over pixels and images
  /// Per-image outcomes, in the subset's order (for galleries).
  std::vector<size_t> index;
  std::vector<int64_t> label, predicted_map, predicted_plain;
};

/// What run_step_one() did and what it showed.
struct StepOneReport {
  FitResult fit;
  size_t train_images = 0;
  StepOneCheck heldout;  ///< the evidence: images the branch never saw
  StepOneCheck train;    ///< the same on the training images (tells overfitting from no effect)
  bool checked = false;  ///< false when nothing was held out

  /// True when the held-out top-1 gain's interval lies above zero.
  bool helps() const { return checked && heldout.top1_gain.above_zero(); }

  /// Lines for a person: the numbers, and a loud warning with the likely cause when the held-out
  /// interval does not lie above zero.
  std::string verdict() const {
    if (!checked) return "Step I: nothing was held out, so nothing shows whether the map helps\n";
    auto pct = [](double v) { return format_fixed(v, 1); };
    auto num = [](double v) { return format_fixed(v, 3); };
    std::string s = "Step I check on " + std::to_string(heldout.images) + " held-out images (" +
                    std::to_string(train_images) + " trained on), frozen ImageNet classifier:\n" +
                    "  top-1 with the map " + pct(heldout.top1_map) + " %, with s = 0 " + pct(heldout.top1_plain) +
                    " %: difference " + eval::to_text(heldout.top1_gain) + " points (95 % paired bootstrap)\n" +
                    "  loss  with the map " + num(heldout.loss_map) + ", with s = 0 " + num(heldout.loss_plain) +
                    ": lowered by " + eval::to_text(heldout.loss_drop, 3) + "\n" +
                    "  on the training images: top-1 " + eval::to_text(train.top1_gain) + " points, loss lowered by " +
                    eval::to_text(train.loss_drop, 3) + "\n" + "  mean map value s " +
                    format_fixed(heldout.mean_map, 3) + " on the held-out images\n";
    if (helps()) return s + "Step I helps: the held-out top-1 interval lies above zero.\n";
    s += "WARNING: Step I did NOT show that its map helps: the held-out top-1 interval does not lie above zero";
    s += heldout.loss_drop.above_zero() ? " (the loss interval does: the map sharpens the logits more than it moves "
                                          "the ranking).\n"
                                        : ".\n";
    s += "  Likely cause: " + likely_cause() + "\n";
    return s;
  }

  /// The most likely reason for a Step I that did not help, from its own numbers.
  std::string likely_cause() const {
    if (heldout.zero_map_share > 0.5)
      return "the map is 0 everywhere on " + format_fixed(100 * heldout.zero_map_share, 0) +
             " % of the held-out images (its ReLU switched off), so the network is the plain backbone there: "
             "lower the branch's learning rate or use --saliency-activation softplus";
    if (heldout.flat_map_share > 0.5)
      return "the branch learned to switch the map off (s < 0.01 everywhere on " +
             format_fixed(100 * heldout.flat_map_share, 0) +
             " % of the held-out images): against the frozen classifier every map it found cost more (amplified "
             "features sharpen wrong predictions too) than its attention gained, on " +
             std::to_string(train_images) + " training images — more images (the paper used ImageNet's 50,000 "
             "validation images) or another fusion point";
    if (train.top1_gain.above_zero() || train.loss_drop.above_zero())
      return "the map helps on the " + std::to_string(train_images) +
             " training images but not on held-out ones: the branch fits its few images instead of learning where "
             "to look (more images, fewer epochs, or a lower rate)";
    return "the map changes the frozen classifier too little even on its training images: too few epochs or too "
           "low a learning rate for the branch";
  }

  /// The report as JSON (kept in the Step I file's metadata).
  nlohmann::json to_json() const {
    auto diff = [](const eval::PairedDifference& d) {
      return nlohmann::json{{"mean", d.mean}, {"lo", d.lo}, {"hi", d.hi}, {"level", d.level}, {"pairs", d.pairs}};
    };
    auto check = [&](const StepOneCheck& c) {
      return nlohmann::json{{"images", c.images},         {"top1_map", c.top1_map},   {"top1_plain", c.top1_plain},
                            {"loss_map", c.loss_map},     {"loss_plain", c.loss_plain}, {"top1_gain", diff(c.top1_gain)},
                            {"loss_drop", diff(c.loss_drop)}, {"zero_map_share", c.zero_map_share},
                            {"flat_map_share", c.flat_map_share}, {"mean_map", c.mean_map}};
    };
    nlohmann::json j{{"epochs", fit.epochs_done}, {"train_images", train_images}, {"checked", checked}};
    if (checked) {
      j["heldout"] = check(heldout);
      j["train"] = check(train);
      j["helps"] = helps();
    }
    return j;
  }
};

namespace detail {

/// The options that load a torchvision file into a network's `backbone.*` (without its head when
/// `with_head` is false; a saliency branch in the network is left alone).
template <class Net>
io::LoadOptions backbone_load_options(bool with_head) {
  using Impl = typename Net::Impl;
  io::LoadOptions lo;
  lo.strict = true;
  lo.rename_prefixes = {{"", "backbone."}};
  if (!with_head) lo.skip_prefixes.push_back(Impl::head_name() + ".");
  if constexpr (Impl::has_saliency) lo.skip_prefixes.push_back("saliency.");
  return lo;
}

/// The map against s = 0 on `subset`, image by image.
template <class Net, class Policy>
StepOneCheck check_step_one(Trainer<Net, Policy>& trainer, const data::Subset& subset) {
  StepOneCheck c;
  std::vector<double> top1_diff, loss_diff;
  double top1_map = 0, top1_plain = 0, loss_map = 0, loss_plain = 0;
  size_t zero_maps = 0, flat_maps = 0;
  double map_sum = 0;
  trainer.for_each_eval_batch(subset, [&](const torch::Tensor& x, const data::Batch& batch) {
    auto& net = trainer.net();
    const NetOutput with = net->forward_full(x);
    const NetOutput plain = net->forward_without_saliency(x);
    const torch::Tensor labels = batch.labels;
    const auto ce = [&](const torch::Tensor& logits) {
      return torch::nn::functional::cross_entropy(
                 logits.to(torch::kCPU).to(torch::kFloat32), labels,
                 torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone))
          .to(torch::kFloat64);
    };
    const torch::Tensor l_map = ce(with.logits), l_plain = ce(plain.logits);
    const torch::Tensor p_map = with.logits.argmax(1).to(torch::kCPU), p_plain = plain.logits.argmax(1).to(torch::kCPU);
    const torch::Tensor peak = std::get<0>(with.saliency.flatten(1).max(1)).to(torch::kCPU);
    const torch::Tensor zero = peak.le(0), flat = peak.lt(0.01);
    map_sum += with.saliency.flatten(1).mean(1).sum().item<double>();
    for (int64_t i = 0; i < batch.size(); ++i) {
      const int64_t y = labels[i].item<int64_t>(), pm = p_map[i].item<int64_t>(), pp = p_plain[i].item<int64_t>();
      const double lm = l_map[i].item<double>(), lp = l_plain[i].item<double>();
      top1_map += pm == y;
      top1_plain += pp == y;
      loss_map += lm;
      loss_plain += lp;
      top1_diff.push_back(100.0 * ((pm == y) - (pp == y)));
      loss_diff.push_back(lp - lm);
      zero_maps += zero[i].item<bool>();
      flat_maps += flat[i].item<bool>();
      c.index.push_back(batch.indices[static_cast<size_t>(i)]);
      c.label.push_back(y);
      c.predicted_map.push_back(pm);
      c.predicted_plain.push_back(pp);
    }
  });
  c.images = top1_diff.size();
  if (c.images == 0) return c;
  const double n = static_cast<double>(c.images);
  c.top1_map = 100 * top1_map / n;
  c.top1_plain = 100 * top1_plain / n;
  c.loss_map = loss_map / n;
  c.loss_plain = loss_plain / n;
  c.top1_gain = eval::paired_bootstrap({top1_diff});
  c.loss_drop = eval::paired_bootstrap({loss_diff});
  c.zero_map_share = static_cast<double>(zero_maps) / n;
  c.flat_map_share = static_cast<double>(flat_maps) / n;
  c.mean_map = map_sum / n;
  return c;
}

/// Up to `rows` gallery rows of held-out images, chosen by `pick(i)` over the check's images.
template <class Net, class Policy, class Pick>
std::vector<viz::GalleryRow> step_one_rows(Trainer<Net, Policy>& trainer, const data::Dataset& d,
                                           const StepOneCheck& c, size_t rows, Pick pick) {
  std::vector<viz::GalleryRow> out;
  const auto transform = data::Transform::eval(trainer.config().image_size);
  const auto norm = normalization_of(trainer.config());
  const torch::Device device(trainer.config().device);
  auto name = [&](int64_t k) { return d.class_names.at(static_cast<size_t>(k)); };
  for (size_t i = 0; i < c.images && out.size() < rows; ++i) {
    if (!pick(i)) continue;
    data::Rng rng(0);
    const auto img = data::to_tensor_chw(transform(data::load_sample(d, c.index[i]).image, data::ImageView{}, rng).first);
    auto& net = trainer.net();
    net->eval();
    torch::NoGradGuard no_grad;
    const NetOutput forward = net->forward_full(norm(img.unsqueeze(0), device));
    const torch::Tensor map = forward.saliency[0].to(torch::kCPU).to(torch::kFloat32);
    viz::GalleryRow row;
    row.input = img;
    row.saliency = map;
    // The map alone, stretched from its minimum (black) to its maximum (white); the caption gives
    // the range, so a nearly flat map is not mistaken for a confident one.
    const float lo = map.min().item<float>(), hi = map.max().item<float>();
    row.example = ((map - lo) / std::max(hi - lo, 1e-12f)).mul(255).clamp(0, 255).to(torch::kUInt8);
    row.caption = {"Truth: " + name(c.label[i]), "With map: " + name(c.predicted_map[i]),
                   "With s = 0: " + name(c.predicted_plain[i]),
                   "s from " + format_fixed(lo, 3) + " to " + format_fixed(hi, 3)};
    out.push_back(std::move(row));
  }
  return out;
}

}  // namespace detail

/// Step I (§3.4) with its check: a HalSalNet with the dataset's class count (1000 on ImageNet)
/// gets the FULL backbone of `o.weights` including its head; only the saliency branch trains
/// (StepI policy) on all images but the held-out share; the held-out images then compare the
/// frozen classifier with the learned map against s = 0. The `saliency.*` tensors go to
/// `out_file` (.safetensors) with the report in its metadata ("step_one_report"). The dataset's
/// class order must be the head's (ImageNet: sorted wnids); a dataset with another class count is
/// refused before any training.
template <class Backbone, class Depth_ = Depth<4>, class Fusion = default_fusion_t<Backbone>>
StepOneReport run_step_one(std::shared_ptr<const data::Dataset> imagenet, const StepOneOptions& o,
                           const std::filesystem::path& out_file) {
  if (!imagenet) throw Error("run_step_one: no dataset");
  if (o.weights.empty()) throw Error("Step I needs the backbone's ImageNet weights (with their head)");
  if (out_file.extension() != ".safetensors")
    throw file_error(out_file, "the Step I output must be a .safetensors file");
  using Net = HalSalNet<Backbone, Depth_, Fusion>;
  TrainConfig config = o.config;
  config.head = "xavier";  // Step I trains against the pretrained head: never imprint or warm it up
  config.warmup_epochs = 0;
  torch::manual_seed(config.seed);  // the branch's Xavier start follows the seed, as in run_cell
  Net net(imagenet->num_classes(), o.saliency);
  const auto tensors = io::read_weights(o.weights);
  const std::string head = Backbone::Impl::head_name() + ".weight";
  if (const auto* w = tensors.find(head); w && w->dim() == 2 && w->size(0) != imagenet->num_classes())
    throw Error("Step I: the images at " + imagenet->root.string() + " have " + std::to_string(imagenet->num_classes()) +
                " classes but the head of " + o.weights.string() + " has " + std::to_string(w->size(0)) +
                " outputs; Step I needs the classes the weights were trained on, in their order (ImageNet: the "
                "1000 wnids, sorted)");
  try {
    io::load_state_dict(*net, tensors, detail::backbone_load_options<Net>(/*with_head=*/true));
  } catch (const Error& e) {
    throw file_error(o.weights, e.what());
  }

  StepOneReport report;
  const auto all = data::Subset::all(imagenet);
  data::Subset train = all, heldout;
  if (o.holdout > 0) {
    std::tie(train, heldout) = data::holdout(all, o.holdout, config.seed);
    report.checked = true;
  }
  report.train_images = train.size();
  Trainer<Net, StepI> trainer(net, config);
  trainer.set_progress_prefix("[Step I] ");
  trainer.set_process_group(o.process_group);
  report.fit = trainer.fit(train, data::Subset{});
  if (report.checked) {
    report.heldout = detail::check_step_one(trainer, heldout);
    report.train = detail::check_step_one(trainer, train);
  }
  if (!trainer.writes_files()) return report;  // rank 0 of the world writes
  io::TensorDict branch;
  for (const auto& kv : io::state_dict(*net))
    if (kv.key().rfind("saliency.", 0) == 0) branch.insert(kv.key(), kv.value().detach().to(torch::kCPU).contiguous());
  io::write_weights(out_file, branch,
                    {{"halsal", "step-one"},
                     {"network", Net::Impl::name()},
                     {"saliency_activation", to_string(o.saliency.activation)},
                     {"step_one_report", report.to_json().dump()}});
  if (report.checked && !o.gallery_dir.empty()) {
    const auto rows = static_cast<size_t>(std::max(1, o.gallery_rows));
    const auto& c = report.heldout;
    viz::GalleryOptions go;
    go.tile = 160;
    go.font_scale = 1;
    go.headers = {"Held-out image", "Step I map", "Map (min to max)"};
    const struct {
      const char* file;
      const char* title;
      std::function<bool(size_t)> pick;
    } pages[] = {
        {"stepI-helped.png", "Right with map, wrong without",
         [&](size_t i) { return c.predicted_map[i] == c.label[i] && c.predicted_plain[i] != c.label[i]; }},
        {"stepI-hurt.png", "Wrong with map, right without",
         [&](size_t i) { return c.predicted_map[i] != c.label[i] && c.predicted_plain[i] == c.label[i]; }},
        {"stepI-heldout.png", "Held-out images, Step I maps", [](size_t) { return true; }},
    };
    for (const auto& page : pages) {
      go.title = page.title;
      viz::write_gallery_png(detail::step_one_rows(trainer, *imagenet, c, rows, page.pick), o.gallery_dir / page.file, go);
    }
  }
  return report;
}

/// Step I on all of `imagenet` without a hold-out check (the ablations' cached per-variant
/// branches); returns the training history.
template <class Backbone, class Depth_ = Depth<4>, class Fusion = default_fusion_t<Backbone>>
FitResult run_step_one(std::shared_ptr<const data::Dataset> imagenet, const std::filesystem::path& weights,
                       const TrainConfig& config, const std::filesystem::path& out_file,
                       const SaliencyOptions& saliency = {}) {
  StepOneOptions o;
  o.weights = weights;
  o.config = config;
  o.saliency = saliency;
  o.holdout = 0;
  return run_step_one<Backbone, Depth_, Fusion>(std::move(imagenet), o, out_file).fit;
}

/// The report stored in a Step I file's metadata (null when the file has none).
inline nlohmann::json read_step_one_report(const std::filesystem::path& file) {
  const auto meta = io::read_weights_file(file).metadata;
  const auto it = meta.find("step_one_report");
  if (it == meta.end()) return nullptr;
  try {
    return nlohmann::json::parse(it->second);
  } catch (const nlohmann::json::exception& e) {
    throw file_error(file, std::string("its step_one_report metadata is not JSON: ") + e.what());
  }
}

}  // namespace halsal::train
