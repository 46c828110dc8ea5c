// Nearest class mean on L2-normalised features: the few-shot floor every table carries (no
// training at all), and the class means that imprint a cosine head.
#pragma once
#include <torch/nn/functional/normalization.h>
#include <torch/types.h>

#include <string>
#include <vector>

#include "halsal/core/error.hpp"

namespace halsal::eval {

/// Rows scaled to unit L2 norm (a zero row stays zero).
inline torch::Tensor l2_normalize(const torch::Tensor& rows) {
  namespace F = torch::nn::functional;
  return F::normalize(rows, F::NormalizeFuncOptions().dim(1).eps(1e-12));
}

/// The mean of each class's rows of `features` (N×D, labels N in [0, num_classes)), C×D. Every
/// class needs at least one row; the Error names the first class without one (by name when
/// `class_names` has it).
inline torch::Tensor class_means(const torch::Tensor& features, const torch::Tensor& labels, int64_t num_classes,
                                 const std::vector<std::string>& class_names = {}) {
  if (features.dim() != 2) throw Error("class means: the features must be N×D");
  if (labels.dim() != 1 || labels.size(0) != features.size(0))
    throw Error("class means: " + std::to_string(features.size(0)) + " feature rows but " +
                std::to_string(labels.numel()) + " labels");
  if (num_classes < 1) throw Error("class means: no classes");
  const auto lab = labels.to(torch::kCPU).to(torch::kLong);
  if (lab.numel() > 0 && (lab.min().item<int64_t>() < 0 || lab.max().item<int64_t>() >= num_classes))
    throw Error("class means: a label lies outside 0.." + std::to_string(num_classes - 1));
  const auto f = features.to(torch::kCPU).to(torch::kFloat64);
  auto sums = torch::zeros({num_classes, f.size(1)}, f.options());
  sums.index_add_(0, lab, f);
  const auto counts = torch::bincount(lab, {}, num_classes);
  const auto empty = counts.eq(0).nonzero();
  if (empty.numel() > 0) {
    const int64_t c = empty[0][0].item<int64_t>();
    const std::string name = static_cast<size_t>(c) < class_names.size() ? " '" + class_names[static_cast<size_t>(c)] + "'" : "";
    throw Error("class " + std::to_string(c) + name + " has no training image: " + std::to_string(empty.size(0)) +
                " of " + std::to_string(num_classes) + " classes have none, and a class mean needs at least one");
  }
  return (sums / counts.unsqueeze(1).to(torch::kFloat64)).to(features.scalar_type());
}

/// A nearest-class-mean classifier on L2-normalised features.
struct NearestClassMean {
  torch::Tensor means;  ///< C×D: the mean of each class's normalised training features

  /// Fits the class means; every class needs a training row (Error otherwise).
  static NearestClassMean fit(const torch::Tensor& features, const torch::Tensor& labels, int64_t num_classes,
                              const std::vector<std::string>& class_names = {}) {
    return {class_means(l2_normalize(features.to(torch::kFloat32)), labels, num_classes, class_names)};
  }
  /// −‖f̂ − m_c‖² for each normalised row f̂ (N×C): the largest is the nearest mean.
  torch::Tensor logits(const torch::Tensor& features) const {
    const auto f = l2_normalize(features.to(torch::kFloat32));
    const auto dot = f.matmul(means.t());
    return 2 * dot - f.pow(2).sum(1, true) - means.pow(2).sum(1).unsqueeze(0);
  }
};

}  // namespace halsal::eval
