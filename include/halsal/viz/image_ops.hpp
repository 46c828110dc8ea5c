// Small image operations for halsal's figures: uint8 RGB images as HWC torch tensors, a jet
// heat-map colour map, saliency overlays, a built-in 5×7 ASCII bitmap font for captions, and PNG
// writing.
#pragma once
#include <halsal/core/error.hpp>
#include <halsal/data/stb.hpp>    // stb_image_write
#include <halsal/io/bytes.hpp>  // io::write_file_atomic

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <sstream>
#include <string>

namespace halsal::viz {

/// An 8-bit RGB colour.
struct Rgb {
  std::uint8_t r = 0, g = 0, b = 0;
};

/// How a 3-D image tensor is laid out; Auto picks CHW when dim 0 is 1 or 3, else HWC.
enum class Layout { Auto, CHW, HWC };

namespace detail {

inline std::string shape_of(const at::Tensor& t) {
  std::ostringstream os;
  os << t.sizes();
  return os.str();
}

// The classic 5×7 font, ASCII 32..126: 5 columns per glyph, bit r of a column = row r (top = 0).
inline const std::array<std::array<std::uint8_t, 5>, 95>& font5x7() {
  static const std::array<std::array<std::uint8_t, 5>, 95> f = {{
      {0x00, 0x00, 0x00, 0x00, 0x00},  // space
      {0x00, 0x00, 0x5F, 0x00, 0x00},  // !
      {0x00, 0x07, 0x00, 0x07, 0x00},  // "
      {0x14, 0x7F, 0x14, 0x7F, 0x14},  // #
      {0x24, 0x2A, 0x7F, 0x2A, 0x12},  // $
      {0x23, 0x13, 0x08, 0x64, 0x62},  // %
      {0x36, 0x49, 0x55, 0x22, 0x50},  // &
      {0x00, 0x05, 0x03, 0x00, 0x00},  // '
      {0x00, 0x1C, 0x22, 0x41, 0x00},  // (
      {0x00, 0x41, 0x22, 0x1C, 0x00},  // )
      {0x14, 0x08, 0x3E, 0x08, 0x14},  // *
      {0x08, 0x08, 0x3E, 0x08, 0x08},  // +
      {0x00, 0x50, 0x30, 0x00, 0x00},  // ,
      {0x08, 0x08, 0x08, 0x08, 0x08},  // -
      {0x00, 0x60, 0x60, 0x00, 0x00},  // .
      {0x20, 0x10, 0x08, 0x04, 0x02},  // /
      {0x3E, 0x51, 0x49, 0x45, 0x3E},  // 0
      {0x00, 0x42, 0x7F, 0x40, 0x00},  // 1
      {0x42, 0x61, 0x51, 0x49, 0x46},  // 2
      {0x21, 0x41, 0x45, 0x4B, 0x31},  // 3
      {0x18, 0x14, 0x12, 0x7F, 0x10},  // 4
      {0x27, 0x45, 0x45, 0x45, 0x39},  // 5
      {0x3C, 0x4A, 0x49, 0x49, 0x30},  // 6
      {0x01, 0x71, 0x09, 0x05, 0x03},  // 7
      {0x36, 0x49, 0x49, 0x49, 0x36},  // 8
      {0x06, 0x49, 0x49, 0x29, 0x1E},  // 9
      {0x00, 0x36, 0x36, 0x00, 0x00},  // :
      {0x00, 0x56, 0x36, 0x00, 0x00},  // ;
      {0x08, 0x14, 0x22, 0x41, 0x00},  // <
      {0x14, 0x14, 0x14, 0x14, 0x14},  // =
      {0x00, 0x41, 0x22, 0x14, 0x08},  // >
      {0x02, 0x01, 0x51, 0x09, 0x06},  // ?
      {0x32, 0x49, 0x79, 0x41, 0x3E},  // @
      {0x7E, 0x11, 0x11, 0x11, 0x7E},  // A
      {0x7F, 0x49, 0x49, 0x49, 0x36},  // B
      {0x3E, 0x41, 0x41, 0x41, 0x22},  // C
      {0x7F, 0x41, 0x41, 0x22, 0x1C},  // D
      {0x7F, 0x49, 0x49, 0x49, 0x41},  // E
      {0x7F, 0x09, 0x09, 0x09, 0x01},  // F
      {0x3E, 0x41, 0x49, 0x49, 0x7A},  // G
      {0x7F, 0x08, 0x08, 0x08, 0x7F},  // H
      {0x00, 0x41, 0x7F, 0x41, 0x00},  // I
      {0x20, 0x40, 0x41, 0x3F, 0x01},  // J
      {0x7F, 0x08, 0x14, 0x22, 0x41},  // K
      {0x7F, 0x40, 0x40, 0x40, 0x40},  // L
      {0x7F, 0x02, 0x0C, 0x02, 0x7F},  // M
      {0x7F, 0x04, 0x08, 0x10, 0x7F},  // N
      {0x3E, 0x41, 0x41, 0x41, 0x3E},  // O
      {0x7F, 0x09, 0x09, 0x09, 0x06},  // P
      {0x3E, 0x41, 0x51, 0x21, 0x5E},  // Q
      {0x7F, 0x09, 0x19, 0x29, 0x46},  // R
      {0x46, 0x49, 0x49, 0x49, 0x31},  // S
      {0x01, 0x01, 0x7F, 0x01, 0x01},  // T
      {0x3F, 0x40, 0x40, 0x40, 0x3F},  // U
      {0x1F, 0x20, 0x40, 0x20, 0x1F},  // V
      {0x3F, 0x40, 0x38, 0x40, 0x3F},  // W
      {0x63, 0x14, 0x08, 0x14, 0x63},  // X
      {0x07, 0x08, 0x70, 0x08, 0x07},  // Y
      {0x61, 0x51, 0x49, 0x45, 0x43},  // Z
      {0x00, 0x7F, 0x41, 0x41, 0x00},  // [
      {0x02, 0x04, 0x08, 0x10, 0x20},  // backslash
      {0x00, 0x41, 0x41, 0x7F, 0x00},  // ]
      {0x04, 0x02, 0x01, 0x02, 0x04},  // ^
      {0x40, 0x40, 0x40, 0x40, 0x40},  // _
      {0x00, 0x01, 0x02, 0x04, 0x00},  // `
      {0x20, 0x54, 0x54, 0x54, 0x78},  // a
      {0x7F, 0x48, 0x44, 0x44, 0x38},  // b
      {0x38, 0x44, 0x44, 0x44, 0x20},  // c
      {0x38, 0x44, 0x44, 0x48, 0x7F},  // d
      {0x38, 0x54, 0x54, 0x54, 0x18},  // e
      {0x08, 0x7E, 0x09, 0x01, 0x02},  // f
      {0x0C, 0x52, 0x52, 0x52, 0x3E},  // g
      {0x7F, 0x08, 0x04, 0x04, 0x78},  // h
      {0x00, 0x44, 0x7D, 0x40, 0x00},  // i
      {0x20, 0x40, 0x44, 0x3D, 0x00},  // j
      {0x7F, 0x10, 0x28, 0x44, 0x00},  // k
      {0x00, 0x41, 0x7F, 0x40, 0x00},  // l
      {0x7C, 0x04, 0x18, 0x04, 0x78},  // m
      {0x7C, 0x08, 0x04, 0x04, 0x78},  // n
      {0x38, 0x44, 0x44, 0x44, 0x38},  // o
      {0x7C, 0x14, 0x14, 0x14, 0x08},  // p
      {0x08, 0x14, 0x14, 0x18, 0x7C},  // q
      {0x7C, 0x08, 0x04, 0x04, 0x08},  // r
      {0x48, 0x54, 0x54, 0x54, 0x20},  // s
      {0x04, 0x3F, 0x44, 0x40, 0x20},  // t
      {0x3C, 0x40, 0x40, 0x20, 0x7C},  // u
      {0x1C, 0x20, 0x40, 0x20, 0x1C},  // v
      {0x3C, 0x40, 0x30, 0x40, 0x3C},  // w
      {0x44, 0x28, 0x10, 0x28, 0x44},  // x
      {0x0C, 0x50, 0x50, 0x50, 0x3C},  // y
      {0x44, 0x64, 0x54, 0x4C, 0x44},  // z
      {0x00, 0x08, 0x36, 0x41, 0x00},  // {
      {0x00, 0x00, 0x7F, 0x00, 0x00},  // |
      {0x00, 0x41, 0x36, 0x08, 0x00},  // }
      {0x08, 0x04, 0x08, 0x10, 0x08},  // ~
  }};
  return f;
}

}  // namespace detail

/// Glyph cell of the built-in font at scale 1: 5×7 pixels plus 1 pixel of spacing each way.
inline constexpr int kGlyphWidth = 6, kGlyphHeight = 8;

/// Converts an image to a contiguous CPU uint8 HWC tensor with 3 channels (grey is replicated).
inline at::Tensor to_hwc_rgb(const at::Tensor& image, Layout layout = Layout::Auto) {
  if (!image.defined()) throw Error("image: undefined tensor");
  at::Tensor t = image.detach();
  if (t.dim() == 2) t = t.unsqueeze(2), layout = Layout::HWC;
  if (t.dim() != 3) throw Error("image: expected CHW or HWC, got shape " + detail::shape_of(image));
  if (t.scalar_type() != at::kByte)
    throw Error("image: expected uint8 pixels, got " + std::string(c10::toString(t.scalar_type())));
  if (layout == Layout::Auto)
    layout = (t.size(0) == 1 || t.size(0) == 3) ? Layout::CHW : Layout::HWC;
  if (layout == Layout::CHW) t = t.permute({1, 2, 0});
  if (t.size(2) != 1 && t.size(2) != 3)
    throw Error("image: expected 1 or 3 channels, got shape " + detail::shape_of(image));
  if (t.size(0) == 0 || t.size(1) == 0) throw Error("image: empty image");
  if (t.size(2) == 1) t = t.expand({t.size(0), t.size(1), 3});
  return t.to(at::kCPU).contiguous();
}

/// A blank H×W×3 uint8 image filled with `color`.
inline at::Tensor blank_image(std::int64_t height, std::int64_t width,
                              Rgb color = {255, 255, 255}) {
  at::Tensor img = at::empty({height, width, 3}, at::kByte);
  img.select(2, 0).fill_(color.r);
  img.select(2, 1).fill_(color.g);
  img.select(2, 2).fill_(color.b);
  return img;
}

/// The jet colour map at t in [0, 1] (clamped): 0 → dark blue (0,0,128), 1 → dark red (128,0,0).
inline Rgb jet(float t) {
  if (!std::isfinite(t)) t = 0;
  t = std::clamp(t, 0.0f, 1.0f);
  auto ch = [&](float centre) {
    float v = std::clamp(1.5f - std::abs(4.0f * t - centre), 0.0f, 1.0f);
    return static_cast<std::uint8_t>(std::lround(v * 255.0f));
  };
  return {ch(3.0f), ch(2.0f), ch(1.0f)};
}

/// Bilinear resize (align_corners = false) of a float map H×W, 1×H×W or N×C×H×W to height × width.
inline at::Tensor resize_map(const at::Tensor& map, std::int64_t height, std::int64_t width) {
  if (map.dim() < 2 || map.dim() > 4)
    throw Error("resize: expected a 2-D to 4-D map, got shape " + detail::shape_of(map));
  at::Tensor x = map.to(at::kFloat);
  const auto dim = map.dim();
  while (x.dim() < 4) x = x.unsqueeze(0);
  if (x.size(2) != height || x.size(3) != width)
    x = at::upsample_bilinear2d(x, {height, width}, /*align_corners=*/false);
  while (x.dim() > dim) x = x.squeeze(0);
  return x;
}

/// Resizes a uint8 HWC RGB image: area averaging when shrinking (no aliasing), bilinear otherwise.
inline at::Tensor resize_image(const at::Tensor& image, std::int64_t height, std::int64_t width) {
  at::Tensor x = to_hwc_rgb(image).permute({2, 0, 1}).unsqueeze(0).to(at::kFloat);
  if (x.size(2) == height && x.size(3) == width) return to_hwc_rgb(image);
  if (height <= x.size(2) && width <= x.size(3))
    x = at::adaptive_avg_pool2d(x, {height, width});
  else
    x = at::upsample_bilinear2d(x, {height, width}, /*align_corners=*/false);
  return x.squeeze(0).permute({1, 2, 0}).round().clamp(0, 255).to(at::kByte).contiguous();
}

/// Maps a one-channel map (H×W or 1×H×W, any float range) to a jet heat-map image (H×W×3 uint8);
/// with `normalize`, min..max maps to 0..1 (a constant map becomes 0), else values are clamped.
inline at::Tensor colorize(const at::Tensor& map, bool normalize = true) {
  at::Tensor m = map.detach().to(at::kCPU).to(at::kFloat);
  if (m.dim() == 3 && m.size(0) == 1) m = m.squeeze(0);
  if (m.dim() != 2)
    throw Error("heat map: expected H×W or 1×H×W, got shape " + detail::shape_of(map));
  m = at::nan_to_num(m, 0.0, 0.0, 0.0);
  if (normalize) {
    float lo = m.min().item<float>(), hi = m.max().item<float>();
    m = hi > lo ? (m - lo) / (hi - lo) : at::zeros_like(m);
  }
  m = m.contiguous();
  at::Tensor out = at::empty({m.size(0), m.size(1), 3}, at::kByte);
  const float* src = m.data_ptr<float>();
  std::uint8_t* dst = out.data_ptr<std::uint8_t>();
  for (std::int64_t i = 0; i < m.numel(); ++i) {
    Rgb c = jet(src[i]);
    dst[3 * i] = c.r, dst[3 * i + 1] = c.g, dst[3 * i + 2] = c.b;
  }
  return out;
}

/// Blends the heat map of `saliency` (any size, bilinearly resized to the image) over an RGB uint8
/// image (CHW or HWC): out = (1 - alpha) · image + alpha · jet(saliency); returns H×W×3 uint8.
inline at::Tensor overlay_heatmap(const at::Tensor& image, const at::Tensor& saliency,
                                  float alpha = 0.5f, bool normalize = true) {
  at::Tensor img = to_hwc_rgb(image);
  at::Tensor s = saliency.detach().to(at::kCPU).to(at::kFloat);
  while (s.dim() > 2 && s.size(0) == 1) s = s.squeeze(0);
  if (s.dim() != 2)
    throw Error("overlay: saliency must be H×W or 1×H×W, got shape " + detail::shape_of(saliency));
  s = resize_map(s, img.size(0), img.size(1));
  at::Tensor heat = colorize(s, normalize).to(at::kFloat);
  alpha = std::clamp(alpha, 0.0f, 1.0f);
  return (img.to(at::kFloat) * (1 - alpha) + heat * alpha).round().clamp(0, 255).to(at::kByte);
}

/// Fills a rectangle (clipped to the image) of an H×W×3 uint8 image.
inline void fill_rect(at::Tensor& image, std::int64_t x, std::int64_t y, std::int64_t w,
                      std::int64_t h, Rgb color) {
  const std::int64_t x0 = std::max<std::int64_t>(0, x), y0 = std::max<std::int64_t>(0, y);
  const std::int64_t x1 = std::min(image.size(1), x + w), y1 = std::min(image.size(0), y + h);
  if (x1 <= x0 || y1 <= y0) return;
  at::Tensor r = image.slice(0, y0, y1).slice(1, x0, x1);
  r.select(2, 0).fill_(color.r);
  r.select(2, 1).fill_(color.g);
  r.select(2, 2).fill_(color.b);
}

/// Width in pixels of `text` in the built-in font at integer `scale`.
inline std::int64_t text_width(const std::string& text, int scale = 1) {
  return static_cast<std::int64_t>(text.size()) * kGlyphWidth * std::max(1, scale);
}

/// Draws ASCII `text` with its top-left corner at (x, y) into a contiguous H×W×3 uint8 CPU image
/// (clipped); characters outside ASCII 32..126 draw as '?'.
inline void draw_text(at::Tensor& image, std::int64_t x, std::int64_t y, const std::string& text,
                      Rgb color = {0, 0, 0}, int scale = 1) {
  if (image.dim() != 3 || image.size(2) != 3 || image.scalar_type() != at::kByte ||
      !image.is_contiguous() || !image.device().is_cpu())
    throw Error("draw_text: expected a contiguous CPU H×W×3 uint8 image, got shape " +
                detail::shape_of(image));
  scale = std::max(1, scale);
  const std::int64_t H = image.size(0), W = image.size(1);
  std::uint8_t* px = image.data_ptr<std::uint8_t>();
  const auto& font = detail::font5x7();
  for (std::size_t i = 0; i < text.size(); ++i) {
    unsigned char ch = static_cast<unsigned char>(text[i]);
    if (ch < 32 || ch > 126) ch = '?';
    const auto& glyph = font[ch - 32];
    const std::int64_t gx = x + static_cast<std::int64_t>(i) * kGlyphWidth * scale;
    for (int col = 0; col < 5; ++col)
      for (int row = 0; row < 7; ++row) {
        if (!((glyph[col] >> row) & 1)) continue;
        for (int dy = 0; dy < scale; ++dy)
          for (int dx = 0; dx < scale; ++dx) {
            std::int64_t xx = gx + col * scale + dx, yy = y + row * scale + dy;
            if (xx < 0 || yy < 0 || xx >= W || yy >= H) continue;
            std::uint8_t* p = px + 3 * (yy * W + xx);
            p[0] = color.r, p[1] = color.g, p[2] = color.b;
          }
      }
  }
}

/// Encodes an image (uint8 CHW or HWC, 1 or 3 channels) as PNG bytes.
inline std::string encode_png(const at::Tensor& image) {
  at::Tensor img = to_hwc_rgb(image);
  if (img.size(0) > (1 << 15) || img.size(1) > (1 << 15))
    throw Error("png: image of " + detail::shape_of(img) + " is too large to encode");
  std::string bytes;
  auto sink = [](void* ctx, void* data, int size) {
    static_cast<std::string*>(ctx)->append(static_cast<const char*>(data),
                                           static_cast<std::size_t>(size));
  };
  const int w = static_cast<int>(img.size(1)), h = static_cast<int>(img.size(0));
  if (!stbi_write_png_to_func(sink, &bytes, w, h, 3, img.data_ptr<std::uint8_t>(), w * 3))
    throw Error("png: encoding failed");
  return bytes;
}

/// Writes an image (uint8 CHW or HWC, 1 or 3 channels) as a PNG file, atomically.
inline void write_png(const at::Tensor& image, const std::filesystem::path& path) {
  io::write_file_atomic(path, encode_png(image));
}

}  // namespace halsal::viz
