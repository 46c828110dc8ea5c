// Tables 3-4 of the paper from two evaluated models: the test images where one model is right and
// the other wrong, as gallery rows [input | our saliency | a training image of our predicted class]
// with the caption "Predicted (<baseline>): X / Predicted (<ours>): Y / Ground truth: Z".
//
//   auto better = viz::comparison_rows(rgb.report, sal.report, sal.infer, *data, sal.split.train,
//                                      /*ours_right=*/true, /*max_rows=*/4, "RGB", "HalSal");
//   auto g = viz::compare_models(baseline, ours, data, /*rows=*/4);   // two model files
//   viz::write_gallery_png(g.rows, "gallery.png", g.options);
#pragma once
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "halsal/data/data.hpp"
#include "halsal/models/model_file.hpp"
#include "halsal/train/trainer.hpp"
#include "halsal/viz/gallery.hpp"

namespace halsal::viz {

/// An eval-mode forward pass of uint8 images N×3×H×W (CellResult::infer, LoadedModel::infer).
using InferFunction = std::function<NetOutput(const torch::Tensor&)>;

namespace detail {

/// Checks that two prediction lists cover the same images in the same order.
inline void check_same_images(const std::vector<train::Prediction>& baseline, const std::vector<train::Prediction>& ours) {
  if (baseline.size() != ours.size())
    throw Error("comparison: the baseline has " + std::to_string(baseline.size()) + " predictions and ours " +
                std::to_string(ours.size()) + "; both must be over the same images");
  for (size_t i = 0; i < ours.size(); ++i)
    if (baseline[i].index != ours[i].index || baseline[i].label != ours[i].label)
      throw Error("comparison: prediction " + std::to_string(i) + " is of image " + std::to_string(baseline[i].index) +
                  " in the baseline but of image " + std::to_string(ours[i].index) +
                  " in ours; both must be over the same images in the same order");
}

inline bool right(const train::Prediction& p) { return p.predicted == p.label; }

}  // namespace detail

/// Positions i of `ours` where ours is right and the baseline wrong (ours_right), or the reverse.
inline std::vector<size_t> disagreements(const std::vector<train::Prediction>& baseline,
                                         const std::vector<train::Prediction>& ours, bool ours_right) {
  detail::check_same_images(baseline, ours);
  std::vector<size_t> out;
  for (size_t i = 0; i < ours.size(); ++i)
    if (detail::right(ours[i]) == ours_right && detail::right(baseline[i]) != ours_right) out.push_back(i);
  return out;
}

/// Up to `max_rows` gallery rows of the images where ours is right and the baseline wrong
/// (ours_right) or the reverse, in prediction order. Each row: the image, our saliency (from
/// `ours_infer`; undefined when it has none) and the first image of `train` of our predicted class
/// (the image itself when there is none). `transform`, when given, preprocesses every image
/// (model files: LoadedModel::info.eval_transform()); else the images are used as decoded, which
/// suits datasets whose images are already at the network's size (the demo's synthetic data).
inline std::vector<GalleryRow> comparison_rows(const train::EvalReport& baseline, const train::EvalReport& ours,
                                               const InferFunction& ours_infer, const data::Dataset& d,
                                               const data::Subset& train, bool ours_right, size_t max_rows,
                                               const std::string& baseline_name, const std::string& ours_name,
                                               const std::optional<data::Transform>& transform = std::nullopt) {
  const auto picked = disagreements(baseline.predictions, ours.predictions, ours_right);
  auto image = [&](size_t index) {
    data::Image im = data::load_sample(d, index).image;
    if (transform) {
      data::Rng rng(0);
      im = (*transform)(im, data::ImageView{}, rng).first;
    }
    return data::to_tensor_chw(im);
  };
  auto name = [&](int64_t c) {
    if (c < 0 || static_cast<size_t>(c) >= d.class_names.size())
      throw Error("comparison: class " + std::to_string(c) + " is not one of the dataset's " +
                  std::to_string(d.class_names.size()));
    return d.class_names[static_cast<size_t>(c)];
  };
  std::vector<GalleryRow> rows;
  for (size_t i : picked) {
    if (rows.size() >= max_rows) break;
    const auto& po = ours.predictions[i];
    const auto& pb = baseline.predictions[i];
    const auto img = image(po.index);
    size_t example = po.index;  // a training image of the predicted class
    for (size_t t = 0; t < train.size(); ++t)
      if (train.label(t) == po.predicted) {
        example = train.indices[t];
        break;
      }
    GalleryRow row;
    row.input = img;
    if (ours_infer) {
      const NetOutput out = ours_infer(img.unsqueeze(0));
      if (out.saliency.defined()) row.saliency = out.saliency[0].to(torch::kCPU);
    }
    row.example = image(example);
    row.caption = prediction_caption(baseline_name, name(pb.predicted), ours_name, name(po.predicted), name(po.label));
    rows.push_back(std::move(row));
  }
  return rows;
}

/// Two model files compared on the test set of `ours`' split.
struct ModelComparison {
  std::vector<GalleryRow> rows;  ///< ours-right rows first, then baseline-right rows
  size_t ours_better_rows = 0, baseline_better_rows = 0;  ///< rows of each kind in `rows`
  size_t ours_better = 0, baseline_better = 0;            ///< all such test images
  train::EvalReport baseline_report, ours_report;
  data::Split split;
  std::string baseline_name, ours_name;  ///< method labels ("Baseline-RGB", "Approach B")
  GalleryOptions options;                ///< title and headers for write_gallery_png
};

/// Checks that two model files were trained on the same classes and the same k-shot split; the
/// Error names both files and what differs.
inline void check_same_split(const train::LoadedModel& a, const train::LoadedModel& b) {
  auto differ = [&](const std::string& what, const std::string& va, const std::string& vb) {
    throw Error("the models disagree on " + what + ": " + a.file.string() + " has " + va + ", " + b.file.string() +
                " has " + vb);
  };
  if (a.info.class_names != b.info.class_names)
    differ("their classes", std::to_string(a.info.class_names.size()) + " classes",
           std::to_string(b.info.class_names.size()) + " classes" +
               (a.info.class_names.size() == b.info.class_names.size() ? " (other names or order)" : ""));
  if (a.info.k != b.info.k) differ("k", std::to_string(a.info.k), std::to_string(b.info.k));
  if (a.info.seed != b.info.seed) differ("the seed", std::to_string(a.info.seed), std::to_string(b.info.seed));
  if (a.info.split.test_per_class != b.info.split.test_per_class || a.info.split.val_per_class != b.info.split.val_per_class)
    differ("the test/val images per class",
           std::to_string(a.info.split.test_per_class) + "/" + std::to_string(a.info.split.val_per_class),
           std::to_string(b.info.split.test_per_class) + "/" + std::to_string(b.info.split.val_per_class));
}

/// Evaluates both models on the test set of `ours`' stored split of `data` and picks up to
/// `max_rows` images where ours is right and the baseline wrong, then as many of the reverse.
inline ModelComparison compare_models(const train::LoadedModel& baseline, const train::LoadedModel& ours,
                                      std::shared_ptr<const data::Dataset> data, size_t max_rows) {
  check_same_split(baseline, ours);
  ModelComparison c;
  c.split = data::kshot(data, ours.info.k, ours.info.seed, ours.info.split);
  c.baseline_report = baseline.evaluate(c.split.test);
  c.ours_report = ours.evaluate(c.split.test);
  c.baseline_name = train::method_label(baseline.info.method);
  c.ours_name = train::method_label(ours.info.method);
  c.ours_better = disagreements(c.baseline_report.predictions, c.ours_report.predictions, true).size();
  c.baseline_better = disagreements(c.baseline_report.predictions, c.ours_report.predictions, false).size();
  c.rows = comparison_rows(c.baseline_report, c.ours_report, ours.infer, *data, c.split.train, true, max_rows,
                           c.baseline_name, c.ours_name, ours.info.eval_transform());
  c.ours_better_rows = c.rows.size();
  auto worse = comparison_rows(c.baseline_report, c.ours_report, ours.infer, *data, c.split.train, false, max_rows,
                               c.baseline_name, c.ours_name, ours.info.eval_transform());
  c.baseline_better_rows = worse.size();
  c.rows.insert(c.rows.end(), std::make_move_iterator(worse.begin()), std::make_move_iterator(worse.end()));
  c.options.title = "Top: ours right, baseline wrong. Bottom: reverse";
  c.options.headers = {"Input image", ours.has_saliency ? "Our saliency" : "(no saliency)", "Example image"};
  return c;
}

}  // namespace halsal::viz
