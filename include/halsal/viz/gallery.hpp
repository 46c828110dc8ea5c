// The paper's Tables 3-4 as one PNG: one row per test image with [input | its saliency as a
// heat-map overlay | an example image of the predicted class] and a caption per row ("Predicted
// (Baseline-RGB): X / Predicted (Approach B): Y / Ground truth: Z").
#pragma once
#include <halsal/viz/image_ops.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace halsal::viz {

/// One gallery row; undefined tensors draw as a grey "n/a" tile.
struct GalleryRow {
  at::Tensor input;                  ///< uint8 image, CHW or HWC, 1 or 3 channels
  at::Tensor saliency;               ///< float map H×W or 1×H×W of any size (resized to the input)
  at::Tensor example;                ///< uint8 image of the predicted class
  std::vector<std::string> caption;  ///< lines printed under the row (ASCII; longer lines are cut)
};

/// Layout of a gallery.
struct GalleryOptions {
  int tile = 200;      ///< each image is letterboxed into tile × tile pixels
  int padding = 8;     ///< between tiles and around the border
  int font_scale = 2;  ///< built-in font scale: glyphs are 6·s × 8·s pixels
  float alpha = 0.5f;  ///< heat-map opacity over the input
  std::string title;   ///< drawn above the headers when not empty
  std::vector<std::string> headers = {"Input image", "Our saliency", "Example image"};
  Rgb background{255, 255, 255}, text{0, 0, 0};
};

/// The paper's caption: "Predicted (<baseline>): X", "Predicted (<ours>): Y", "Ground truth: Z".
inline std::vector<std::string> prediction_caption(const std::string& baseline_name,
                                                   const std::string& baseline_prediction,
                                                   const std::string& ours_name,
                                                   const std::string& ours_prediction,
                                                   const std::string& ground_truth) {
  return {"Predicted (" + baseline_name + "): " + baseline_prediction,
          "Predicted (" + ours_name + "): " + ours_prediction, "Ground truth: " + ground_truth};
}

namespace detail {

// Scales an image to fit tile × tile, keeping its aspect ratio.
inline at::Tensor fit_into(const at::Tensor& hwc, std::int64_t tile) {
  const double s =
      static_cast<double>(tile) / static_cast<double>(std::max(hwc.size(0), hwc.size(1)));
  const auto h = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::lround(hwc.size(0) * s)));
  const auto w = std::max<std::int64_t>(1, static_cast<std::int64_t>(std::lround(hwc.size(1) * s)));
  return resize_image(hwc, std::min(h, tile), std::min(w, tile));
}

// Copies `tile_img` centred into the tile whose top-left corner is (x, y).
inline void paste_centred(at::Tensor& canvas, const at::Tensor& tile_img, std::int64_t x,
                          std::int64_t y, std::int64_t tile) {
  const std::int64_t ox = x + (tile - tile_img.size(1)) / 2, oy = y + (tile - tile_img.size(0)) / 2;
  canvas.slice(0, oy, oy + tile_img.size(0)).slice(1, ox, ox + tile_img.size(1)).copy_(tile_img);
}

// Cuts `line` to at most max_chars characters, ending in "..." when cut.
inline std::string fit_text(const std::string& line, std::int64_t max_chars) {
  if (static_cast<std::int64_t>(line.size()) <= max_chars) return line;
  if (max_chars <= 3)
    return line.substr(0, static_cast<std::size_t>(std::max<std::int64_t>(0, max_chars)));
  return line.substr(0, static_cast<std::size_t>(max_chars - 3)) + "...";
}

}  // namespace detail

/// Composes the gallery image (H×W×3 uint8); with no rows it says "(no examples)".
inline at::Tensor compose_gallery(const std::vector<GalleryRow>& rows,
                                  const GalleryOptions& o = {}) {
  if (o.tile < 16 || o.tile > 4096) throw Error("gallery: tile size must be in [16, 4096]");
  if (o.padding < 0 || o.padding > 256) throw Error("gallery: padding must be in [0, 256]");
  if (o.font_scale < 1 || o.font_scale > 16) throw Error("gallery: font_scale must be in [1, 16]");
  const std::int64_t tile = o.tile, pad = o.padding, s = o.font_scale;
  const std::int64_t line_h = kGlyphHeight * s + 2;
  const std::int64_t width = pad + 3 * (tile + pad);
  const std::int64_t max_chars = (width - 2 * pad) / (kGlyphWidth * s);
  std::size_t caption_lines = 0;
  for (const auto& r : rows) caption_lines += r.caption.size();
  const std::int64_t title_h = o.title.empty() ? 0 : kGlyphHeight * s * 2 + pad;
  const std::int64_t header_h = o.headers.empty() ? 0 : line_h + pad / 2;
  const std::int64_t rows_h = rows.empty()
                                  ? line_h + pad
                                  : static_cast<std::int64_t>(rows.size()) * (tile + 2 * pad) +
                                        static_cast<std::int64_t>(caption_lines) * line_h;
  at::Tensor canvas = blank_image(pad + title_h + header_h + rows_h, width, o.background);

  std::int64_t y = pad;
  if (!o.title.empty()) {
    std::string t = detail::fit_text(o.title, max_chars / 2);
    draw_text(canvas, (width - text_width(t, 2 * o.font_scale)) / 2, y, t, o.text,
              2 * o.font_scale);
    y += title_h;
  }
  if (!o.headers.empty()) {
    for (std::size_t c = 0; c < 3 && c < o.headers.size(); ++c) {
      std::string h = detail::fit_text(o.headers[c], tile / (kGlyphWidth * s));
      std::int64_t x = pad + static_cast<std::int64_t>(c) * (tile + pad);
      draw_text(canvas, x + (tile - text_width(h, o.font_scale)) / 2, y, h, o.text, o.font_scale);
    }
    y += header_h;
  }
  if (rows.empty()) draw_text(canvas, pad, y, "(no examples)", o.text, o.font_scale);
  const Rgb missing{200, 200, 200};
  for (const auto& r : rows) {
    at::Tensor input =
        r.input.defined() ? detail::fit_into(to_hwc_rgb(r.input), tile) : at::Tensor();
    at::Tensor sal;
    if (input.defined() && r.saliency.defined()) sal = overlay_heatmap(input, r.saliency, o.alpha);
    at::Tensor example =
        r.example.defined() ? detail::fit_into(to_hwc_rgb(r.example), tile) : at::Tensor();
    const at::Tensor* tiles[3] = {&input, &sal, &example};
    for (int c = 0; c < 3; ++c) {
      std::int64_t x = pad + c * (tile + pad);
      if (tiles[c]->defined()) {
        detail::paste_centred(canvas, *tiles[c], x, y, tile);
      } else {
        fill_rect(canvas, x, y, tile, tile, missing);
        draw_text(canvas, x + (tile - text_width("n/a", o.font_scale)) / 2,
                  y + (tile - kGlyphHeight * s) / 2, "n/a", o.text, o.font_scale);
      }
    }
    y += tile + pad;
    for (const auto& line : r.caption) {
      draw_text(canvas, pad, y, detail::fit_text(line, max_chars), o.text, o.font_scale);
      y += line_h;
    }
    y += pad;
  }
  return canvas;
}

/// Composes the gallery and writes it as a PNG file, atomically.
inline void write_gallery_png(const std::vector<GalleryRow>& rows,
                              const std::filesystem::path& path,
                              const GalleryOptions& options = {}) {
  write_png(compose_gallery(rows, options), path);
}

}  // namespace halsal::viz
