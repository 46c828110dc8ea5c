// "Saliency on object": how much of a saliency map's mass lies inside the object's ground-truth
// mask, against the mask's share of the image. A map that ignores the object scores ratio ≈ 1 (its
// mass share equals the area share); one that looks only at the object scores 1 / area_share.
#pragma once
#include <halsal/core/error.hpp>
#include <halsal/core/text.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <ostream>
#include <sstream>
#include <string>
#include <vector>

namespace halsal::eval {

/// The score of one image (NaN fields when the map has no mass or the mask is empty).
struct SaliencyOnObject {
  double mass_share = std::numeric_limits<double>::quiet_NaN();  ///< saliency mass inside / total
  double area_share = std::numeric_limits<double>::quiet_NaN();  ///< mask pixels / all pixels
  double ratio = std::numeric_limits<double>::quiet_NaN();       ///< mass_share / area_share
};

/// Scores a batch: saliency N×1×h×w or N×h×w (≥ 0; negatives count as 0; bilinearly resized to the
/// mask size when it differs), masks N×1×H×W or N×H×W (bool, or numbers > 0.5 = object).
inline std::vector<SaliencyOnObject> saliency_on_object(const at::Tensor& saliency,
                                                        const at::Tensor& masks) {
  auto as_n1hw = [](const at::Tensor& t, const char* what) {
    at::Tensor x = t.detach();
    if (x.dim() == 3) x = x.unsqueeze(1);
    if (x.dim() != 4 || x.size(1) != 1) {
      std::ostringstream os;
      os << "saliency on object: " << what << " must be N×1×H×W or N×H×W, got shape " << t.sizes();
      throw Error(os.str());
    }
    return x;
  };
  if (!saliency.defined() || !masks.defined()) throw Error("saliency on object: undefined tensor");
  at::Tensor s = as_n1hw(saliency, "saliency").to(at::kCPU).to(at::kDouble);
  at::Tensor m = as_n1hw(masks, "mask").to(at::kCPU);
  if (s.size(0) != m.size(0))
    throw Error("saliency on object: " + std::to_string(s.size(0)) + " maps for " +
                std::to_string(m.size(0)) + " masks");
  m = m.scalar_type() == at::kBool ? m.to(at::kDouble) : (m.to(at::kDouble) > 0.5).to(at::kDouble);
  if (s.size(2) != m.size(2) || s.size(3) != m.size(3)) {
    std::int64_t size[2] = {m.size(2), m.size(3)};
    s = at::upsample_bilinear2d(s, at::IntArrayRef(size, 2), /*align_corners=*/false);
  }
  s = at::nan_to_num(s, 0.0, 0.0, 0.0).clamp_min(0);
  at::Tensor total = s.sum({1, 2, 3}), inside = (s * m).sum({1, 2, 3}), area = m.mean({1, 2, 3});
  std::vector<SaliencyOnObject> out(static_cast<std::size_t>(s.size(0)));
  for (std::int64_t i = 0; i < s.size(0); ++i) {
    auto& r = out[static_cast<std::size_t>(i)];
    double t = total[i].item<double>(), a = area[i].item<double>();
    if (a > 0) r.area_share = a;
    if (t > 0) r.mass_share = inside[i].item<double>() / t;
    if (t > 0 && a > 0) r.ratio = r.mass_share / a;
  }
  return out;
}

/// Averages of per-image scores over the images where they are defined.
struct SaliencyOnObjectSummary {
  std::int64_t images = 0;                                       ///< images with a defined ratio
  double mass_share = std::numeric_limits<double>::quiet_NaN();  ///< mean over those images
  double area_share = std::numeric_limits<double>::quiet_NaN();  ///< mean over those images
  double ratio = std::numeric_limits<double>::quiet_NaN();       ///< mean of per-image ratios
  double ratio_of_means = std::numeric_limits<double>::quiet_NaN();  ///< mass_share / area_share
};

/// Summarises per-image scores (images with an undefined ratio are left out).
inline SaliencyOnObjectSummary summarize(const std::vector<SaliencyOnObject>& scores) {
  SaliencyOnObjectSummary s;
  double mass = 0, area = 0, ratio = 0;
  for (const auto& r : scores) {
    if (std::isnan(r.ratio)) continue;
    ++s.images;
    mass += r.mass_share, area += r.area_share, ratio += r.ratio;
  }
  if (s.images == 0) return s;
  const auto n = static_cast<double>(s.images);
  s.mass_share = mass / n;
  s.area_share = area / n;
  s.ratio = ratio / n;
  s.ratio_of_means = s.mass_share / s.area_share;
  return s;
}

/// "saliency on object: 62.0% of the mass on 30.0% of the area (ratio 2.07, 12 images)".
inline std::ostream& operator<<(std::ostream& os, const SaliencyOnObjectSummary& s) {
  return os << "saliency on object: " << format_fixed(100 * s.mass_share, 1) << "% of the mass on "
            << format_fixed(100 * s.area_share, 1) << "% of the area (ratio "
            << format_fixed(s.ratio, 2) << ", " << s.images << " images)";
}

}  // namespace halsal::eval
