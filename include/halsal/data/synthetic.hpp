// The embedded default dataset: synthetic "flowers" that differ only in small details — the
// number of petals, a shade of the petal colour, the pattern in the centre — at random positions,
// sizes and rotations on cluttered backgrounds, with ground-truth object masks. Generated from a
// seed; no files. What `make demo` and many tests train on. Optionally with distractors: loose
// petals in other classes' shades in the background, which make *where* one looks matter.
#pragma once
#include <algorithm>
#include <array>
#include <cmath>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/data/dataset.hpp"
#include "halsal/data/image.hpp"
#include "halsal/data/rng.hpp"

namespace halsal::data {

/// What distinguishes a synthetic class: petal count, petal shade, centre pattern.
struct FlowerSpec {
  int petals = 5;
  int shade = 0;   ///< index into three close pinks: magenta-pink, rose, coral
  int centre = 0;  ///< 0 plain, 1 ring, 2 dots, 3 cross
  bool operator==(const FlowerSpec& o) const { return petals == o.petals && shade == o.shade && centre == o.centre; }
  bool operator!=(const FlowerSpec& o) const { return !(*this == o); }
  /// "5-petal magenta plain".
  std::string name() const {
    static const char* shades[] = {"magenta", "rose", "coral"};
    static const char* centres[] = {"plain", "ring", "dots", "cross"};
    return std::to_string(petals) + "-petal " + shades[shade] + " " + centres[centre];
  }
};

/// The parameters of a synthetic dataset.
struct SyntheticOptions {
  int classes = 8;        ///< 2..48 (see synthetic_class_specs)
  int per_class = 40;     ///< images per class (the protocol needs 10 + k)
  int size = 96;          ///< square images of size x size pixels
  uint64_t seed = 0;      ///< the whole dataset follows from it
  double min_scale = 0.4; ///< object diameter as a fraction of the image side
  double max_scale = 0.75;
  int clutter = 14;       ///< background shapes per image
  /// The classes are specs first_class .. first_class + classes - 1 of synthetic_class_specs(48):
  /// two datasets with disjoint ranges have disjoint classes (base and novel sets).
  int first_class = 0;
  /// When not empty: exactly these classes, in this order (`classes` and `first_class` are then
  /// not used); each must be a valid spec and no two alike.
  std::vector<FlowerSpec> class_specs;
  /// Loose petal clusters per image, painted behind the flower in the shades of the dataset's
  /// other classes, so that colour anywhere but on the flower points to a wrong class (0: none).
  int distractors = 0;
};

/// The first n class specs. The first 8 form the cube {5, 7 petals} x {2 shades} x {plain, ring
/// centre}, so every pair of classes there differs in one or more small details; later classes
/// add 6 and 8 petals, a third shade and the dots/cross centres.
inline std::vector<FlowerSpec> synthetic_class_specs(int n) {
  static const int petals[] = {5, 7, 6, 8};
  std::vector<std::pair<std::array<int, 4>, FlowerSpec>> all;
  for (int p = 0; p < 4; ++p)
    for (int s = 0; s < 3; ++s)
      for (int c = 0; c < 4; ++c) {
        const int outside = (p >= 2) + (s >= 2) + (c >= 2);  // attributes beyond the base cube
        all.push_back({{outside, std::max({p, s, c}), p * 100 + s * 10 + c, 0}, FlowerSpec{petals[p], s, c}});
      }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  if (n < 2 || n > static_cast<int>(all.size()))
    throw Error("synthetic dataset: classes must be 2.." + std::to_string(all.size()) + ", got " + std::to_string(n));
  std::vector<FlowerSpec> out;
  for (int i = 0; i < n; ++i) out.push_back(all[static_cast<size_t>(i)].second);
  return out;
}

/// How many class specs there are: 4 petal counts x 3 shades x 4 centres.
inline constexpr int kSyntheticClassSpecs = 48;

/// The class specs of a dataset with these options: o.class_specs when given, else `classes`
/// specs of synthetic_class_specs(kSyntheticClassSpecs) from first_class on. Errors name the bad
/// option.
inline std::vector<FlowerSpec> synthetic_class_specs(const SyntheticOptions& o) {
  if (!o.class_specs.empty()) {
    if (o.class_specs.size() < 2) throw Error("synthetic dataset: class_specs must name at least 2 classes");
    for (size_t i = 0; i < o.class_specs.size(); ++i) {
      const FlowerSpec& c = o.class_specs[i];
      if (c.petals < 3 || c.petals > 12 || c.shade < 0 || c.shade > 2 || c.centre < 0 || c.centre > 3)
        throw Error("synthetic dataset: class_specs[" + std::to_string(i) + "] has petals " + std::to_string(c.petals) +
                    ", shade " + std::to_string(c.shade) + ", centre " + std::to_string(c.centre) +
                    " (petals must be 3..12, shade 0..2, centre 0..3)");
      for (size_t j = 0; j < i; ++j)
        if (c == o.class_specs[j])
          throw Error("synthetic dataset: class_specs[" + std::to_string(j) + "] and [" + std::to_string(i) +
                      "] are the same class (" + c.name() + ")");
    }
    return o.class_specs;
  }
  const int total = kSyntheticClassSpecs;
  if (o.classes < 2 || o.classes > total)
    throw Error("synthetic dataset: classes must be 2.." + std::to_string(total) + ", got " +
                std::to_string(o.classes));
  if (o.first_class < 0 || o.first_class + o.classes > total)
    throw Error("synthetic dataset: first_class must be 0.." + std::to_string(total - o.classes) + " with " +
                std::to_string(o.classes) + " classes (there are " + std::to_string(total) + " class specs), got " +
                std::to_string(o.first_class));
  auto all = synthetic_class_specs(o.first_class + o.classes);
  return {all.begin() + o.first_class, all.end()};
}

namespace detail {

constexpr double kPi = 3.14159265358979323846;

struct Rgb {
  float r = 0, g = 0, b = 0;
};

inline Rgb hsv(double h, double s, double v) {
  h = h - std::floor(h);
  const double i = std::floor(h * 6), f = h * 6 - i;
  const double p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
  switch (static_cast<int>(i) % 6) {
    case 0: return {float(v), float(t), float(p)};
    case 1: return {float(q), float(v), float(p)};
    case 2: return {float(p), float(v), float(t)};
    case 3: return {float(p), float(q), float(v)};
    case 4: return {float(t), float(p), float(v)};
    default: return {float(v), float(p), float(q)};
  }
}

/// A background shape: ellipse, rectangle or thick line segment, in one colour.
struct Shape {
  int type = 0;
  double cx = 0, cy = 0, a = 1, b = 1, angle = 0, c = 1, s = 0;  // c, s: cos and sin of angle
  Rgb colour;
  bool contains(double x, double y) const {
    const double dx = x - cx, dy = y - cy;
    if (std::abs(dx) > a + b || std::abs(dy) > a + b) return false;  // outside the bounding square
    const double u = dx * c + dy * s, v = -dx * s + dy * c;
    if (type == 0) return (u * u) / (a * a) + (v * v) / (b * b) <= 1;
    if (type == 1) return std::abs(u) <= a && std::abs(v) <= b;
    return std::abs(u) <= a && std::abs(v) <= std::max(0.6, b * 0.15);
  }
};

/// The hue of petal shade 0, 1, 2 (magenta-pink, rose, coral).
inline double shade_hue(int shade) {
  static const double hue[] = {0.915, 0.965, 0.02};
  return hue[shade];
}

/// A loose petal (a distractor): one petal of an imagined flower of radius r centred at (cx, cy),
/// pointing at angle a, shaded like the flower's petals.
struct LoosePetal {
  double cx = 0, cy = 0, r = 1, c = 1, s = 0, half_width = 0.3, light = 1;  // c, s: cos and sin of a
  Rgb colour;
  /// True (and the petal's colour at that point in `out`) when (x, y) lies on the petal.
  bool paint(double x, double y, Rgb& out) const {
    const double dx = (x - cx) / r, dy = (y - cy) / r;
    if (std::abs(dx) > 1 || std::abs(dy) > 1) return false;
    const double pu = dx * c + dy * s, pv = -dx * s + dy * c;
    const double eu = (pu - 0.58) / 0.42, ev = pv / half_width;
    if (eu * eu + ev * ev > 1) return false;
    const double shade = (0.8 + 0.2 * pu) * light * (std::abs(pv) < 0.03 ? 0.88 : 1.0);
    out = {float(colour.r * shade), float(colour.g * shade), float(colour.b * shade)};
    return true;
  }
};

class SyntheticGenerator final : public Generator {
 public:
  explicit SyntheticGenerator(SyntheticOptions o) : o_(o), specs_(synthetic_class_specs(o)) {
    if (o.size < 16 || o.size > 4096) throw Error("synthetic dataset: size must be 16..4096 px");
    if (o.per_class < 1) throw Error("synthetic dataset: per_class must be >= 1");
    if (!(0.05 <= o.min_scale && o.min_scale <= o.max_scale && o.max_scale <= 1.0))
      throw Error("synthetic dataset: need 0.05 <= min_scale <= max_scale <= 1");
    if (o.clutter < 0) throw Error("synthetic dataset: clutter must be >= 0, got " + std::to_string(o.clutter));
    if (o.distractors < 0 || o.distractors > 64)
      throw Error("synthetic dataset: distractors must be 0..64, got " + std::to_string(o.distractors));
    for (const auto& spec : specs_) shades_present_[static_cast<size_t>(spec.shade)] = true;
  }

  std::pair<Image, Image> render(size_t index) const override {
    const int S = o_.size;
    const FlowerSpec& spec = specs_.at(index / static_cast<size_t>(o_.per_class) % specs_.size());
    Rng rng(seed_of({o_.seed, index, 0x73796e7468ULL /* "synth" */}));
    // Background: a gradient between two muted colours plus low-frequency waves.
    const Rgb bg0 = hsv(rng.uniform(), rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.8));
    const Rgb bg1 = hsv(rng.uniform(), rng.uniform(0.1, 0.5), rng.uniform(0.3, 0.8));
    const double gdir = rng.uniform(0, 2 * kPi);
    std::array<double, 6> wave{};
    for (auto& w : wave) w = rng.uniform(0, 2 * kPi);
    std::vector<Shape> clutter(static_cast<size_t>(o_.clutter));
    for (auto& sh : clutter) {
      sh.type = static_cast<int>(rng.below(3));
      sh.cx = rng.uniform(-0.1, 1.1) * S;
      sh.cy = rng.uniform(-0.1, 1.1) * S;
      sh.a = rng.uniform(0.03, 0.22) * S;
      sh.b = rng.uniform(0.03, 0.15) * S;
      sh.angle = rng.uniform(0, kPi);
      sh.c = std::cos(sh.angle);
      sh.s = std::sin(sh.angle);
      // Clutter colours are drawn from the whole wheel, pinks and yellows included, so colour
      // alone does not find (or name) the flower.
      sh.colour = hsv(rng.uniform(), rng.uniform(0.2, 0.9), rng.uniform(0.25, 0.95));
    }
    // The flower.
    const double R = 0.5 * S * rng.uniform(o_.min_scale, o_.max_scale);
    const double cx = rng.uniform(R, S - R), cy = rng.uniform(R, S - R);
    const double phi = rng.uniform(0, 2 * kPi);
    const Rgb petal = hsv(shade_hue(spec.shade) + rng.uniform(-0.008, 0.008), rng.uniform(0.6, 0.8),
                          rng.uniform(0.8, 1.0));
    const Rgb centre = hsv(0.13 + rng.uniform(-0.01, 0.01), rng.uniform(0.75, 0.95), rng.uniform(0.85, 1.0));
    const Rgb dark = hsv(0.07, 0.8, rng.uniform(0.22, 0.32));
    const double half_width = 0.52 * std::sin(kPi / spec.petals) * rng.uniform(0.95, 1.15);
    const double light = rng.uniform(0, 2 * kPi);
    const double noise = rng.uniform(4, 10);
    const uint64_t noise_seed = rng.next();
    const std::vector<LoosePetal> loose = loose_petals(index, spec, cx, cy, R);

    Image img(S, S, 3), mask(S, S, 1);
    const double step = 2 * kPi / spec.petals;
    const double cphi = std::cos(phi), sphi = std::sin(phi);
    // Background terms separate into functions of x and of y: tabulate them per subsample
    // coordinate (t = 2 * pixel + sub) instead of calling sin per subsample.
    std::vector<double> gx(2 * S), gy(2 * S), w0(2 * S), w1(2 * S), w2s(2 * S), w2c(2 * S), w3s(2 * S), w3c(2 * S);
    for (int t = 0; t < 2 * S; ++t) {
      const double q = t / 2 + 0.25 + 0.5 * (t & 1);
      gx[t] = (q - S / 2.0) * std::cos(gdir) / S * kPi;
      gy[t] = (q - S / 2.0) * std::sin(gdir) / S * kPi;
      w0[t] = std::sin(q / S * 7 + wave[0]);
      w1[t] = std::sin(q / S * 5 + wave[1]);
      w2s[t] = std::sin(q / S * 11 + wave[2]);
      w2c[t] = std::cos(q / S * 11 + wave[2]);
      w3s[t] = std::sin(q / S * 11);
      w3c[t] = std::cos(q / S * 11);
    }
    std::vector<double> gsx(2 * S), gcx(2 * S), gsy(2 * S), gcy(2 * S);
    for (int t = 0; t < 2 * S; ++t) {
      gsx[t] = std::sin(gx[t]);
      gcx[t] = std::cos(gx[t]);
      gsy[t] = std::sin(gy[t]);
      gcy[t] = std::cos(gy[t]);
    }
    for (int y = 0; y < S; ++y) {
      for (int x = 0; x < S; ++x) {
        float acc[3] = {0, 0, 0};
        int covered = 0;
        for (int sub = 0; sub < 4; ++sub) {  // 2 x 2 supersampling: smooth edges, soft masks
          const int tx = 2 * x + (sub & 1), ty = 2 * y + (sub >> 1);
          const double px = x + 0.25 + 0.5 * (sub & 1), py = y + 0.25 + 0.5 * (sub >> 1);
          // Background: a gradient along gdir, sin(gx + gy), and waves, by angle addition.
          const double g = 0.5 + 0.5 * (gsx[tx] * gcy[ty] + gcx[tx] * gsy[ty]);
          const double w = 0.08 * (w0[tx] * w1[ty] + (w2s[tx] * w3c[ty] + w2c[tx] * w3s[ty]));
          Rgb c{float(bg0.r * (1 - g) + bg1.r * g + w), float(bg0.g * (1 - g) + bg1.g * g + w),
                float(bg0.b * (1 - g) + bg1.b * g + w)};
          for (const auto& sh : clutter)
            if (sh.contains(px, py)) c = sh.colour;
          for (const auto& lp : loose) lp.paint(px, py, c);  // over the clutter, under the flower
          // Flower, in its own frame (units of R).
          const double dx = (px - cx) / R, dy = (py - cy) / R, r = std::hypot(dx, dy);
          bool in = false;
          if (r <= 0.3) {
            in = true;
            c = centre;
            const double u = dx * cphi + dy * sphi, v = -dx * sphi + dy * cphi;
            bool d = false;
            if (spec.centre == 1) d = r > 0.15 && r < 0.23;
            if (spec.centre == 2)
              for (int j = 0; j < 5 && !d; ++j)
                d = std::hypot(u - 0.16 * std::cos(j * 2 * kPi / 5), v - 0.16 * std::sin(j * 2 * kPi / 5)) < 0.06;
            if (spec.centre == 3) d = std::abs(u) < 0.05 || std::abs(v) < 0.05;
            if (d) c = dark;
          } else if (r <= 1.0) {
            const double theta = std::atan2(dy, dx);
            const double k = std::round((theta - phi) / step);
            const double a = phi + k * step;
            const double pu = dx * std::cos(a) + dy * std::sin(a), pv = -dx * std::sin(a) + dy * std::cos(a);
            const double eu = (pu - 0.58) / 0.42, ev = pv / half_width;
            if (eu * eu + ev * ev <= 1) {
              in = true;
              const double shade = (0.8 + 0.2 * pu) * (0.9 + 0.1 * std::cos(theta - light)) *
                                   (std::abs(pv) < 0.03 ? 0.88 : 1.0);
              c = {float(petal.r * shade), float(petal.g * shade), float(petal.b * shade)};
            }
          }
          covered += in;
          acc[0] += c.r;
          acc[1] += c.g;
          acc[2] += c.b;
        }
        const uint64_t h = mix64(noise_seed ^ (static_cast<uint64_t>(y) * 131071 + x));
        for (int ch = 0; ch < 3; ++ch) {
          const double n = (static_cast<double>((h >> (ch * 16)) & 0xffff) / 65535.0 - 0.5) * 2 * noise;
          const double v = acc[ch] / 4 * 255 + n;
          img.at(y, x, ch) = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
        }
        mask.at(y, x) = static_cast<uint8_t>(covered * 255 / 4);
      }
    }
    return {std::move(img), std::move(mask)};
  }

  std::string describe() const override {
    std::ostringstream os;
    os << "synthetic-v1 classes=" << specs_.size() << " per_class=" << o_.per_class << " size=" << o_.size
       << " seed=" << o_.seed << " scale=" << o_.min_scale << ".." << o_.max_scale << " clutter=" << o_.clutter;
    // Only non-default options are named: the v1 images keep their v1 description (cache keys).
    if (o_.first_class != 0) os << " first_class=" << o_.first_class;
    if (o_.distractors != 0) os << " distractors=" << o_.distractors;
    if (!o_.class_specs.empty()) {
      os << " specs=";
      for (const auto& c : o_.class_specs) os << c.petals << c.shade << c.centre << ";";
    }
    return os.str();
  }

  const std::vector<FlowerSpec>& specs() const { return specs_; }

 private:
  /// The distractors of image `index`: o_.distractors clusters of 1-3 adjacent petals of imagined
  /// flowers without centres, each in a shade of another class of the dataset, placed away from
  /// the flower (centre (cx, cy), radius R). Drawn from their own generator, so the rest of the
  /// image is the same as without distractors.
  std::vector<LoosePetal> loose_petals(size_t index, const FlowerSpec& spec, double cx, double cy, double R) const {
    std::vector<LoosePetal> out;
    if (o_.distractors == 0) return out;
    // The shades of the other classes; with none (all classes share one shade), the other shades.
    std::vector<int> shades;
    for (int sh = 0; sh < 3; ++sh)
      if (sh != spec.shade && shades_present_[static_cast<size_t>(sh)]) shades.push_back(sh);
    if (shades.empty())
      for (int sh = 0; sh < 3; ++sh)
        if (sh != spec.shade) shades.push_back(sh);
    const double S = o_.size;
    Rng rng(seed_of({o_.seed, index, 0x6c6f6f7365ULL /* "loose" */}));
    for (int d = 0; d < o_.distractors; ++d) {
      const int shade = shades[rng.below(shades.size())];
      // The distribution of the flowers' own petal colours: the shade alone tells them apart.
      const Rgb colour =
          hsv(shade_hue(shade) + rng.uniform(-0.008, 0.008), rng.uniform(0.6, 0.8), rng.uniform(0.8, 1.0));
      const double r = R * rng.uniform(0.7, 1.1);  // petals as large as the flower's
      const int petals_of_imagined_flower = 5 + static_cast<int>(rng.below(4));
      const double step = 2 * kPi / petals_of_imagined_flower;
      const double half_width = 0.52 * std::sin(kPi / petals_of_imagined_flower) * rng.uniform(0.95, 1.15);
      const int count = 1 + static_cast<int>(rng.below(3));
      const double start = rng.uniform(0, 2 * kPi), light = rng.uniform(0, 2 * kPi);
      // The cluster's centre: anywhere, but far enough from the flower that the flower (drawn on
      // top) leaves most of it visible; the last try is kept when the image has no such room.
      double x = 0, y = 0;
      for (int attempt = 0; attempt < 16; ++attempt) {
        x = rng.uniform(-0.05, 1.05) * S;
        y = rng.uniform(-0.05, 1.05) * S;
        if (std::hypot(x - cx, y - cy) >= R + 0.6 * r) break;
      }
      for (int p = 0; p < count; ++p) {
        LoosePetal petal;
        petal.cx = x;
        petal.cy = y;
        petal.r = r;
        const double a = start + p * step;
        petal.c = std::cos(a);
        petal.s = std::sin(a);
        petal.half_width = half_width;
        petal.light = 0.9 + 0.1 * std::cos(a - light);
        petal.colour = colour;
        out.push_back(petal);
      }
    }
    return out;
  }

  SyntheticOptions o_;
  std::vector<FlowerSpec> specs_;
  std::array<bool, 3> shades_present_{};
};

}  // namespace detail

/// The synthetic dataset: classes x per_class images (class-major order), with masks.
inline Dataset synthetic(const SyntheticOptions& opts = {}) {
  auto gen = std::make_shared<detail::SyntheticGenerator>(opts);
  Dataset d;
  d.layout = "synthetic";
  d.root = "synthetic";
  for (const auto& s : gen->specs()) d.class_names.push_back(s.name());
  const size_t n = gen->specs().size() * static_cast<size_t>(opts.per_class);
  d.samples.resize(n);
  for (size_t i = 0; i < n; ++i) d.samples[i].label = static_cast<int64_t>(i / static_cast<size_t>(opts.per_class));
  d.generator = std::move(gen);
  return d;
}

/// A picture of the dataset: one row per class (at most `rows`), `cols` samples each, 2 px gaps.
inline Image synthetic_grid(const SyntheticOptions& opts, int rows = 8, int cols = 8, bool with_masks = false) {
  const Dataset d = synthetic(opts);
  rows = std::min(rows, static_cast<int>(d.num_classes()));
  cols = std::min(cols, opts.per_class);
  const int S = opts.size, gap = 2, per = with_masks ? 2 : 1;
  Image grid(rows * (S + gap) + gap, cols * per * (S + gap) + gap, 3);
  std::fill(grid.pixels.begin(), grid.pixels.end(), 255);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      auto [im, m] = d.generator->render(static_cast<size_t>(r) * opts.per_class + c);
      for (int k = 0; k < per; ++k) {
        const int y0 = gap + r * (S + gap), x0 = gap + (c * per + k) * (S + gap);
        for (int y = 0; y < S; ++y)
          for (int x = 0; x < S; ++x)
            for (int ch = 0; ch < 3; ++ch) grid.at(y0 + y, x0 + x, ch) = k == 0 ? im.at(y, x, ch) : m.at(y, x);
      }
    }
  return grid;
}

}  // namespace halsal::data
