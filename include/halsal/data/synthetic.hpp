// The embedded default dataset: synthetic "flowers" that differ only in small details — the
// number of petals, a shade of the petal colour, the pattern in the centre — at random positions,
// sizes and rotations on cluttered backgrounds, with ground-truth object masks. Generated from a
// seed; no files. What `make demo` and many tests train on.
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

/// The parameters of a synthetic dataset.
struct SyntheticOptions {
  int classes = 8;        ///< 2..48 (see synthetic_class_specs)
  int per_class = 40;     ///< images per class (the protocol needs 10 + k)
  int size = 96;          ///< square images of size x size pixels
  uint64_t seed = 0;      ///< the whole dataset follows from it
  double min_scale = 0.4; ///< object diameter as a fraction of the image side
  double max_scale = 0.75;
  int clutter = 14;       ///< background shapes per image
};

/// What distinguishes a synthetic class: petal count, petal shade, centre pattern.
struct FlowerSpec {
  int petals = 5;
  int shade = 0;   ///< index into three close pinks: magenta-pink, rose, coral
  int centre = 0;  ///< 0 plain, 1 ring, 2 dots, 3 cross
  std::string name() const {
    static const char* shades[] = {"magenta", "rose", "coral"};
    static const char* centres[] = {"plain", "ring", "dots", "cross"};
    return std::to_string(petals) + "-petal " + shades[shade] + " " + centres[centre];
  }
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

class SyntheticGenerator final : public Generator {
 public:
  explicit SyntheticGenerator(SyntheticOptions o) : o_(o), specs_(synthetic_class_specs(o.classes)) {
    if (o.size < 16 || o.size > 4096) throw Error("synthetic dataset: size must be 16..4096 px");
    if (o.per_class < 1) throw Error("synthetic dataset: per_class must be >= 1");
    if (!(0.05 <= o.min_scale && o.min_scale <= o.max_scale && o.max_scale <= 1.0))
      throw Error("synthetic dataset: need 0.05 <= min_scale <= max_scale <= 1");
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
    static const double shade_hue[] = {0.915, 0.965, 0.02};
    const Rgb petal = hsv(shade_hue[spec.shade] + rng.uniform(-0.008, 0.008), rng.uniform(0.6, 0.8),
                          rng.uniform(0.8, 1.0));
    const Rgb centre = hsv(0.13 + rng.uniform(-0.01, 0.01), rng.uniform(0.75, 0.95), rng.uniform(0.85, 1.0));
    const Rgb dark = hsv(0.07, 0.8, rng.uniform(0.22, 0.32));
    const double half_width = 0.52 * std::sin(kPi / spec.petals) * rng.uniform(0.95, 1.15);
    const double light = rng.uniform(0, 2 * kPi);
    const double noise = rng.uniform(4, 10);
    const uint64_t noise_seed = rng.next();

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
    os << "synthetic-v1 classes=" << o_.classes << " per_class=" << o_.per_class << " size=" << o_.size
       << " seed=" << o_.seed << " scale=" << o_.min_scale << ".." << o_.max_scale << " clutter=" << o_.clutter;
    return os.str();
  }

  const std::vector<FlowerSpec>& specs() const { return specs_; }

 private:
  SyntheticOptions o_;
  std::vector<FlowerSpec> specs_;
};

}  // namespace detail

/// The synthetic dataset: classes x per_class images (class-major order), with masks.
inline Dataset synthetic(const SyntheticOptions& opts = {}) {
  auto gen = std::make_shared<detail::SyntheticGenerator>(opts);
  Dataset d;
  d.layout = "synthetic";
  d.root = "synthetic";
  for (const auto& s : gen->specs()) d.class_names.push_back(s.name());
  const size_t n = static_cast<size_t>(opts.classes) * static_cast<size_t>(opts.per_class);
  d.samples.resize(n);
  for (size_t i = 0; i < n; ++i) d.samples[i].label = static_cast<int64_t>(i / static_cast<size_t>(opts.per_class));
  d.generator = std::move(gen);
  return d;
}

/// A picture of the dataset: one row per class (at most `rows`), `cols` samples each, 2 px gaps.
inline Image synthetic_grid(const SyntheticOptions& opts, int rows = 8, int cols = 8, bool with_masks = false) {
  const Dataset d = synthetic(opts);
  rows = std::min(rows, opts.classes);
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
