// Explicit saliency maps for SMIC: the spectral-residual method of Hou & Zhang (CVPR 2007) computed
// with torch's FFT, and grey PNG saliency maps read from files.
//
// Algorithm (per image, in double precision on the input's device):
//   g = grey(image) (ITU-R 601: 0.299 R + 0.587 G + 0.114 B), resized to `width` (64) pixels wide
//       (area averaging when shrinking, bilinear when enlarging), aspect ratio kept;
//   F = fft2(g), A = |F|, L = log A, R = L - mean3x3(L) (replicate border, unshifted spectrum);
//   S = |ifft2(exp(R) · F / A)|^2 (the original phase with the residual amplitude);
//   S = gaussian(S, sigma) (replicate border, radius ceil(3 sigma)), min-max normalised to [0, 1]
//       (a map that is constant up to rounding becomes 0), resized back to H×W bilinearly.
// sigma defaults to 2.5 px at 64 px width, the value of the authors' published MATLAB code
// (fspecial('gaussian', [10 10], 2.5)); the paper's text says 8, which blurs a 64-px map to a blob.
// A tiny relative floor on A (1e-12 · max A) keeps exactly-zero spectra finite. The scale of the
// input (0..1 or 0..255) does not matter; ImageNet-normalised inputs shift the grey mix slightly.
#pragma once
#include <halsal/core/error.hpp>
#include <halsal/data/stb.hpp>  // stb_image

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <sstream>
#include <string>

namespace halsal::saliency {

/// Parameters of spectral_residual(); the defaults follow Hou & Zhang's published code.
struct SpectralResidualOptions {
  std::int64_t width = 64;   ///< working width in pixels (height keeps the aspect ratio)
  double sigma = 2.5;        ///< Gaussian blur of the squared map, in working-resolution pixels
  std::int64_t average = 3;  ///< size of the local average of the log amplitude
};

namespace detail {

inline std::string shape_of(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

// Separable Gaussian blur of N×1×H×W with replicate borders.
inline at::Tensor gaussian_blur(const at::Tensor& x, double sigma) {
  if (sigma <= 0) return x;
  const auto r = static_cast<std::int64_t>(std::ceil(3 * sigma));
  at::Tensor k = at::arange(-r, r + 1, x.options()).pow(2).div(-2 * sigma * sigma).exp();
  k = k / k.sum();
  at::Tensor y = at::replication_pad2d(x, {r, r, 0, 0});
  y = at::conv2d(y, k.view({1, 1, 1, 2 * r + 1}));
  y = at::replication_pad2d(y, {0, 0, r, r});
  return at::conv2d(y, k.view({1, 1, 2 * r + 1, 1}));
}

// Resizes N×C×H×W to h×w: area averaging when shrinking both sides, bilinear otherwise.
inline at::Tensor resize(const at::Tensor& x, std::int64_t h, std::int64_t w) {
  if (x.size(2) == h && x.size(3) == w) return x;
  if (h <= x.size(2) && w <= x.size(3)) return at::adaptive_avg_pool2d(x, {h, w});
  std::int64_t size[2] = {h, w};
  return at::upsample_bilinear2d(x, at::IntArrayRef(size, 2), /*align_corners=*/false);
}

}  // namespace detail

/// Spectral-residual saliency of a batch: N×3×H×W (or N×1×H×W, or one C×H×W image) float →
/// N×1×H×W (or 1×H×W) float in [0, 1], on the input's device.
inline at::Tensor spectral_residual(const at::Tensor& images,
                                    const SpectralResidualOptions& o = {}) {
  if (!images.defined()) throw Error("spectral residual: undefined tensor");
  const bool single = images.dim() == 3;
  at::Tensor x = single ? images.unsqueeze(0) : images;
  if (x.dim() != 4 || (x.size(1) != 1 && x.size(1) != 3))
    throw Error("spectral residual: expected N×3×H×W or N×1×H×W images, got shape " +
                detail::shape_of(images));
  if (x.size(0) == 0 || x.size(2) == 0 || x.size(3) == 0)
    throw Error("spectral residual: empty images, shape " + detail::shape_of(images));
  if (o.width < 4 || o.width > 4096) throw Error("spectral residual: width must be in [4, 4096]");
  if (o.average < 1 || o.average % 2 == 0) throw Error("spectral residual: average must be odd");
  if (!(o.sigma >= 0) || o.sigma > 1000)
    throw Error("spectral residual: sigma must be in [0, 1000]");
  const std::int64_t H = x.size(2), W = x.size(3);
  at::Tensor g = x.detach().to(at::kDouble);
  if (g.size(1) == 3) {
    at::Tensor w = at::tensor({0.299, 0.587, 0.114}, g.options()).view({1, 3, 1, 1});
    g = (g * w).sum(1, /*keepdim=*/true);
  }
  g = at::nan_to_num(g, 0.0, 0.0, 0.0);
  const std::int64_t w0 = o.width;
  const std::int64_t h0 = std::max<std::int64_t>(
      1, std::llround(static_cast<double>(H) * static_cast<double>(w0) / static_cast<double>(W)));
  g = detail::resize(g, h0, w0);

  at::Tensor F = at::fft_fft2(g);  // over the last two dims
  at::Tensor A = F.abs();
  at::Tensor a_floor = A.amax({2, 3}, /*keepdim=*/true).clamp_min(1e-300) * 1e-12;
  A = at::maximum(A, a_floor);
  at::Tensor L = A.log();
  const std::int64_t p = o.average / 2;
  at::Tensor local =
      at::avg_pool2d(at::replication_pad2d(L, {p, p, p, p}), {o.average, o.average}, {1, 1});
  at::Tensor R = L - local;
  at::Tensor S = at::fft_ifft2(F * (R.exp() / A)).abs().pow(2);
  S = detail::gaussian_blur(S, o.sigma);
  at::Tensor lo = S.amin({2, 3}, true), hi = S.amax({2, 3}, true);
  at::Tensor range = hi - lo;
  // A range at rounding-noise level (a flat image) is no structure: the map becomes 0, not noise.
  S = at::where(range > hi * 1e-9, (S - lo) / range.clamp_min(1e-300), at::zeros_like(S));
  S = detail::resize(S.to(at::kFloat), H, W).clamp(0, 1);
  return single ? S.squeeze(0) : S;
}

/// Reads a saliency map from a grey (or colour, converted to grey) PNG/JPEG file as 1×H×W float in
/// [0, 1]; errors name the file.
inline at::Tensor load_saliency_png(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) throw file_error(path, "saliency map not found");
  int w = 0, h = 0, c = 0;
  const std::string p = path.string();
  if (!stbi_info(p.c_str(), &w, &h, &c))
    throw file_error(path, std::string("not a readable image (") + stbi_failure_reason() + ")");
  if (w <= 0 || h <= 0 || static_cast<std::int64_t>(w) * h > (std::int64_t{1} << 26))
    throw file_error(path, "saliency map of " + std::to_string(w) + "x" + std::to_string(h) +
                               " pixels is empty or too large");
  unsigned char* data = stbi_load(p.c_str(), &w, &h, &c, 1);
  if (!data)
    throw file_error(path, std::string("cannot decode the image (") + stbi_failure_reason() + ")");
  at::Tensor out;
  try {
    out = at::from_blob(data, {1, h, w}, at::kByte).to(at::kFloat).div_(255.0f);
  } catch (...) {
    stbi_image_free(data);
    throw;
  }
  stbi_image_free(data);
  return out;
}

/// Like load_saliency_png(path), resized bilinearly to height × width.
inline at::Tensor load_saliency_png(const std::filesystem::path& path, std::int64_t height,
                                    std::int64_t width) {
  at::Tensor m = load_saliency_png(path).unsqueeze(0);
  return detail::resize(m, height, width).squeeze(0).clamp(0, 1);
}

}  // namespace halsal::saliency
