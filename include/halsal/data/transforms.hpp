// Geometric transforms on uint8 images (antialiased resize, RandomResizedCrop, flip, center crop)
// and the normalization that belongs to a set of weights. The geometric transforms run in the
// loader's worker threads on plain buffers (no LibTorch ops, so no intra-op thread pools fight
// over the cores); batches travel as uint8 and are converted to float on the target device.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/data/image.hpp"
#include "halsal/data/rng.hpp"

namespace halsal::data {

/// A rectangle in pixel coordinates: rows [top, top+height), columns [left, left+width).
struct CropBox {
  int top = 0;
  int left = 0;
  int height = 0;
  int width = 0;
  bool operator==(const CropBox& o) const {
    return top == o.top && left == o.left && height == o.height && width == o.width;
  }
};

namespace detail {

/// The taps of a 1-d antialiased bilinear (triangle) resampling from `in` to `out` samples: the
/// algorithm of PIL's BILINEAR and torch's interpolate(..., antialias=True) — the kernel widens
/// with the shrink factor, so shrinking averages every input pixel instead of skipping some.
struct Taps {
  std::vector<int> start;
  std::vector<int> count;
  std::vector<float> weight;  // out x max_count
  int max_count = 0;
};

inline Taps triangle_taps(int in, int out) {
  Taps t;
  const double scale = static_cast<double>(in) / out;
  const double support = scale >= 1.0 ? scale : 1.0;
  const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
  t.max_count = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.start.resize(out);
  t.count.resize(out);
  t.weight.assign(static_cast<size_t>(out) * t.max_count, 0.f);
  for (int i = 0; i < out; ++i) {
    const double center = scale * (i + 0.5);
    // Truncation toward zero, as torch does, then clamped to the image.
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    const int xmax = std::min(static_cast<int>(center + support + 0.5), in);
    const int n = std::min(std::max(xmax - xmin, 0), t.max_count);
    double total = 0;
    std::array<double, 64> local{};
    std::vector<double> big;
    double* w = n <= 64 ? local.data() : (big.resize(n), big.data());
    for (int j = 0; j < n; ++j) {
      const double x = (j + xmin - center + 0.5) * invscale;
      w[j] = std::max(0.0, 1.0 - std::abs(x));
      total += w[j];
    }
    t.start[i] = xmin;
    t.count[i] = n;
    for (int j = 0; j < n; ++j)
      t.weight[static_cast<size_t>(i) * t.max_count + j] = static_cast<float>(total > 0 ? w[j] / total : 0);
  }
  return t;
}

inline uint8_t to_u8(float v) {
  v = std::nearbyint(v);
  return static_cast<uint8_t>(v < 0.f ? 0.f : (v > 255.f ? 255.f : v));
}

}  // namespace detail

/// Resamples the region `box` of `src` to out_h x out_w with antialiased bilinear filtering (equal
/// to torch's interpolate(mode=bilinear, align_corners=False, antialias=True) up to rounding).
/// Only the output window `keep` (default: all of it) is computed and returned; parts of the
/// window outside the resized image are zero, like torchvision's padding center crop.
inline Image resize_region(ImageView src, CropBox box, int out_h, int out_w,
                           CropBox keep = {0, 0, -1, -1}) {
  if (src.empty()) throw Error("resize: empty image");
  if (box.height <= 0 || box.width <= 0 || box.top < 0 || box.left < 0 ||
      box.top + box.height > src.height || box.left + box.width > src.width)
    throw Error("resize: crop box outside the image");
  if (out_h <= 0 || out_w <= 0) throw Error("resize: output size must be positive");
  if (keep.height < 0) keep = {0, 0, out_h, out_w};
  const int C = src.channels;
  Image dst(keep.height, keep.width, C);
  // Window columns/rows that fall inside the resized image.
  const int x_lo = std::max(0, keep.left), x_hi = std::min(out_w, keep.left + keep.width);
  const int y_lo = std::max(0, keep.top), y_hi = std::min(out_h, keep.top + keep.height);
  if (x_lo >= x_hi || y_lo >= y_hi) return dst;
  if (box.height == out_h && box.width == out_w) {  // no resampling: a plain copy
    for (int y = y_lo; y < y_hi; ++y)
      std::memcpy(&dst.at(y - keep.top, x_lo - keep.left),
                  src.data + ((static_cast<size_t>(box.top + y) * src.width) + box.left + x_lo) * C,
                  static_cast<size_t>(x_hi - x_lo) * C);
    return dst;
  }
  const auto tx = detail::triangle_taps(box.width, out_w);
  const auto ty = detail::triangle_taps(box.height, out_h);
  // Rows of the source the kept output rows need.
  int row_lo = box.height, row_hi = 0;
  for (int y = y_lo; y < y_hi; ++y) {
    row_lo = std::min(row_lo, ty.start[y]);
    row_hi = std::max(row_hi, ty.start[y] + ty.count[y]);
  }
  const int nx = x_hi - x_lo;
  // Horizontal pass into floats, then vertical: the separable order torch uses.
  std::vector<float> tmp(static_cast<size_t>(std::max(row_hi - row_lo, 0)) * nx * C);
  for (int r = row_lo; r < row_hi; ++r) {
    const uint8_t* row = src.data + (static_cast<size_t>(box.top + r) * src.width + box.left) * C;
    float* out = tmp.data() + static_cast<size_t>(r - row_lo) * nx * C;
    for (int x = x_lo; x < x_hi; ++x) {
      const float* w = &tx.weight[static_cast<size_t>(x) * tx.max_count];
      const uint8_t* p = row + static_cast<size_t>(tx.start[x]) * C;
      float acc[4] = {0, 0, 0, 0};
      for (int j = 0; j < tx.count[x]; ++j)
        for (int c = 0; c < C && c < 4; ++c) acc[c] += w[j] * p[j * C + c];
      for (int c = 0; c < C && c < 4; ++c) out[(x - x_lo) * C + c] = acc[c];
    }
  }
  std::vector<float> acc(static_cast<size_t>(nx) * C);
  for (int y = y_lo; y < y_hi; ++y) {
    std::fill(acc.begin(), acc.end(), 0.f);
    const float* w = &ty.weight[static_cast<size_t>(y) * ty.max_count];
    for (int j = 0; j < ty.count[y]; ++j) {
      const float* in = tmp.data() + static_cast<size_t>(ty.start[y] + j - row_lo) * nx * C;
      const float wj = w[j];
      for (size_t i = 0; i < acc.size(); ++i) acc[i] += wj * in[i];
    }
    uint8_t* out = &dst.at(y - keep.top, x_lo - keep.left);
    for (size_t i = 0; i < acc.size(); ++i) out[i] = detail::to_u8(acc[i]);
  }
  return dst;
}

/// Resizes a whole image to out_h x out_w (antialiased bilinear).
inline Image resize(ImageView src, int out_h, int out_w) {
  return resize_region(src, {0, 0, src.height, src.width}, out_h, out_w);
}

/// The size torchvision's Resize(size) gives: the shorter side becomes `size`, the longer side
/// int(size * long / short). Returns {height, width}.
inline std::pair<int, int> shorter_side_size(int h, int w, int size) {
  if (w <= h) return {static_cast<int>(static_cast<int64_t>(size) * h / w), size};
  return {size, static_cast<int>(static_cast<int64_t>(size) * w / h)};
}

/// Resizes so that the shorter side is `size` (torchvision's Resize(int)).
inline Image resize_shorter(ImageView src, int size) {
  auto [h, w] = shorter_side_size(src.height, src.width, size);
  return resize(src, h, w);
}

/// The central h x w window of an image of in_h x in_w (torchvision's rounding).
inline CropBox center_box(int in_h, int in_w, int h, int w) {
  return {static_cast<int>(std::lround((in_h - h) / 2.0)), static_cast<int>(std::lround((in_w - w) / 2.0)),
          h, w};
}

/// Crops a window; parts outside the image are zero (torchvision's CenterCrop pads the same way).
inline Image crop(ImageView src, CropBox box) {
  Image dst(box.height, box.width, src.channels);
  for (int y = 0; y < box.height; ++y) {
    const int sy = box.top + y;
    if (sy < 0 || sy >= src.height) continue;
    for (int x = 0; x < box.width; ++x) {
      const int sx = box.left + x;
      if (sx < 0 || sx >= src.width) continue;
      for (int c = 0; c < src.channels; ++c) dst.at(y, x, c) = src.at(sy, sx, c);
    }
  }
  return dst;
}

/// The central h x w crop.
inline Image center_crop(ImageView src, int h, int w) {
  return crop(src, center_box(src.height, src.width, h, w));
}

/// Mirrors an image left-right in place.
inline void hflip(Image& im) {
  const int C = im.channels;
  for (int y = 0; y < im.height; ++y)
    for (int x = 0; x < im.width / 2; ++x)
      for (int c = 0; c < C; ++c) std::swap(im.at(y, x, c), im.at(y, im.width - 1 - x, c));
}

/// torchvision's RandomResizedCrop.get_params: a window covering `scale` of the area with an
/// aspect ratio in `ratio` (log-uniform); 10 tries, then the central crop of clamped ratio.
inline CropBox random_resized_crop_box(int height, int width, Rng& rng,
                                       std::pair<double, double> scale = {0.08, 1.0},
                                       std::pair<double, double> ratio = {3.0 / 4.0, 4.0 / 3.0}) {
  const double area = static_cast<double>(height) * width;
  const double lr0 = std::log(ratio.first), lr1 = std::log(ratio.second);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * rng.uniform(scale.first, scale.second);
    const double aspect = std::exp(rng.uniform(lr0, lr1));
    const int w = static_cast<int>(std::lround(std::sqrt(target * aspect)));
    const int h = static_cast<int>(std::lround(std::sqrt(target / aspect)));
    if (0 < w && w <= width && 0 < h && h <= height) {
      const int top = static_cast<int>(rng.range(0, height - h));
      const int left = static_cast<int>(rng.range(0, width - w));
      return {top, left, h, w};
    }
  }
  const double in_ratio = static_cast<double>(width) / height;
  int w = width, h = height;
  if (in_ratio < ratio.first) {
    h = static_cast<int>(std::lround(w / ratio.first));
  } else if (in_ratio > ratio.second) {
    w = static_cast<int>(std::lround(h * ratio.second));
  }
  return {(height - h) / 2, (width - w) / 2, h, w};
}

/// The per-sample image pipeline of a loader: training augmentation or evaluation preprocessing.
/// The same geometry is applied to a sample's mask when it has one.
struct Transform {
  enum class Mode {
    train,   ///< RandomResizedCrop(size, scale, ratio) + horizontal flip with probability `flip`
    eval,    ///< Resize(shorter side = resize_to) + CenterCrop(size): torchvision's eval recipe
    squash,  ///< resize the whole image to size x size (small synthetic images)
  };
  Mode mode = Mode::eval;
  int size = 224;
  int resize_to = 256;
  std::pair<double, double> scale{0.08, 1.0};
  std::pair<double, double> ratio{3.0 / 4.0, 4.0 / 3.0};
  double flip = 0.5;

  /// RandomResizedCrop + flip at `size` px.
  static Transform train(int size = 224, std::pair<double, double> scale = {0.08, 1.0}) {
    Transform t;
    t.mode = Mode::train;
    t.size = size;
    t.scale = scale;
    return t;
  }
  /// Resize to resize_to (default size * 256 / 224) + center crop at `size` px.
  static Transform eval(int size = 224, int resize_to = 0) {
    Transform t;
    t.mode = Mode::eval;
    t.size = size;
    t.resize_to = resize_to > 0 ? resize_to : size * 256 / 224;
    return t;
  }
  /// Whole image to size x size.
  static Transform squash(int size) {
    Transform t;
    t.mode = Mode::squash;
    t.size = size;
    return t;
  }

  /// Applies the pipeline to an image (and the mask, when not empty); draws from `rng`.
  std::pair<Image, Image> operator()(ImageView image, ImageView mask, Rng& rng) const {
    if (!mask.empty() && (mask.height != image.height || mask.width != image.width))
      throw Error("Transform: mask size differs from the image's");
    Image out, out_mask;
    const CropBox all{0, 0, image.height, image.width};
    switch (mode) {
      case Mode::train: {
        const CropBox box = random_resized_crop_box(image.height, image.width, rng, scale, ratio);
        out = resize_region(image, box, size, size);
        if (!mask.empty()) out_mask = resize_region(mask, box, size, size);
        if (flip > 0 && rng.bernoulli(flip)) {
          hflip(out);
          if (!out_mask.empty()) hflip(out_mask);
        }
        break;
      }
      case Mode::eval: {
        auto [h, w] = shorter_side_size(image.height, image.width, resize_to);
        const CropBox keep = center_box(h, w, size, size);
        out = resize_region(image, all, h, w, keep);
        if (!mask.empty()) out_mask = resize_region(mask, all, h, w, keep);
        break;
      }
      case Mode::squash:
        out = resize_region(image, all, size, size);
        if (!mask.empty()) out_mask = resize_region(mask, all, size, size);
        break;
    }
    return {std::move(out), std::move(out_mask)};
  }
};

/// The input normalization a set of weights was trained with: x = (pixel / 255 - mean) / std.
struct Normalization {
  std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
  std::array<float, 3> std{0.229f, 0.224f, 0.225f};

  /// torchvision's ImageNet statistics.
  static Normalization imagenet() { return {{0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}}; }
  /// Pixels to [-1, 1]: what the shared TF-converted MobileNetV2 weights expect.
  static Normalization symmetric() { return {{0.5f, 0.5f, 0.5f}, {0.5f, 0.5f, 0.5f}}; }

  /// A uint8 batch (N x 3 x H x W, or 3 x H x W) to normalized float32 on `device`: the copy
  /// travels as uint8 (4x less traffic) and the conversion runs where the network does.
  torch::Tensor operator()(const torch::Tensor& images, torch::Device device = torch::kCPU) const {
    if (images.scalar_type() != torch::kUInt8 || (images.dim() != 4 && images.dim() != 3) ||
        images.size(images.dim() - 3) != 3)
      throw Error("Normalization: expected uint8 images N x 3 x H x W or 3 x H x W");
    const auto opts = torch::TensorOptions().dtype(torch::kFloat).device(device);
    auto shape = images.dim() == 4 ? std::vector<int64_t>{1, 3, 1, 1} : std::vector<int64_t>{3, 1, 1};
    auto m = torch::tensor({mean[0], mean[1], mean[2]}).view(shape).to(opts);
    auto s = torch::tensor({std[0], std[1], std[2]}).view(shape).to(opts);
    auto x = images.to(device, /*non_blocking=*/true).to(torch::kFloat);
    return x.div_(255.f).sub_(m).div_(s);
  }

  /// The inverse: normalized float back to [0, 1] (for pictures).
  torch::Tensor unnormalize(const torch::Tensor& x) const {
    auto shape = x.dim() == 4 ? std::vector<int64_t>{1, 3, 1, 1} : std::vector<int64_t>{3, 1, 1};
    const auto opts = torch::TensorOptions().dtype(x.scalar_type()).device(x.device());
    auto m = torch::tensor({mean[0], mean[1], mean[2]}).view(shape).to(opts);
    auto s = torch::tensor({std[0], std[1], std[2]}).view(shape).to(opts);
    return (x * s + m).clamp(0, 1);
  }
};

}  // namespace halsal::data
