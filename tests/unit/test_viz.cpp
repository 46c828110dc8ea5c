// SVG charts, image operations (heat map, overlay, font, PNG) and the saliency gallery, checked by
// counting SVG elements and reading PNG pixels back with stb_image.
#include <halsal/data/stb.hpp>
#include <halsal/eval/table.hpp>
#include <halsal/viz/gallery.hpp>
#include <halsal/viz/image_ops.hpp>
#include <halsal/viz/svg.hpp>

#include <torch/torch.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace fs = std::filesystem;
using halsal::Error;
using namespace halsal::viz;

namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + what.size())) ++n;
  return n;
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// Pixel (y, x) of an H×W×3 uint8 tensor.
std::vector<int> px(const torch::Tensor& img, int64_t y, int64_t x) {
  return {img[y][x][0].item<int>(), img[y][x][1].item<int>(), img[y][x][2].item<int>()};
}

// Reads a PNG with stb_image as H×W×3 uint8.
torch::Tensor read_png(const fs::path& p) {
  int w = 0, h = 0, c = 0;
  unsigned char* data = stbi_load(p.string().c_str(), &w, &h, &c, 3);
  BOOST_REQUIRE_MESSAGE(data, "stb_image cannot read " << p);
  auto t = torch::from_blob(data, {h, w, 3}, torch::kByte).clone();
  stbi_image_free(data);
  return t;
}

torch::Tensor solid(int64_t h, int64_t w, int r, int g, int b) {
  auto t = torch::empty({h, w, 3}, torch::kByte);
  t.select(2, 0).fill_(r);
  t.select(2, 1).fill_(g);
  t.select(2, 2).fill_(b);
  return t;
}

using V = std::vector<int>;

}  // namespace

BOOST_AUTO_TEST_SUITE(test_viz)

// ---------------------------------------------------------------------------------------------
// SVG

BOOST_AUTO_TEST_CASE(bar_chart_has_bars_errors_labels_and_paper_axis) {
  BarChart c;
  c.title = "Saliency depth <Fig. 2> & baseline";
  c.y_label = "accuracy (%)";
  c.categories = {"Conv-1", "Conv-2", "Conv-3", "Conv-4", "Baseline"};
  c.series = {{"Flowers", {89.1, 90.2, 90.8, 91.6, 88.7}, {0.3, 0.2, 0.4, 0.3, 0.5}, "", {}}};
  const std::string svg = render_svg(c);
  BOOST_TEST(
      svg.rfind("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"400\"", 0) == 0u);
  BOOST_TEST(svg.find("</svg>") != std::string::npos);
  BOOST_TEST(count(svg, "<rect class=\"bar\"") == 5u);
  BOOST_TEST(count(svg, "class=\"errbar\"") == 5u);
  BOOST_TEST(count(svg, "class=\"value\"") == 5u);
  BOOST_TEST(count(svg, "class=\"legend\"") == 0u);  // one series: no legend
  BOOST_TEST(svg.find(">91.6</text>") != std::string::npos);
  BOOST_TEST(svg.find("<title>Flowers Conv-4: 91.6 ± 0.3</title>") != std::string::npos);
  BOOST_TEST(svg.find("Saliency depth &lt;Fig. 2&gt; &amp; baseline") != std::string::npos);
  // Data 88.2..91.9 gives the paper's 88..92 axis in steps of 1.
  BOOST_TEST(count(svg, "class=\"tick\"") == 5u);
  BOOST_TEST(svg.find("text-anchor=\"end\">88</text>") != std::string::npos);
  BOOST_TEST(svg.find("text-anchor=\"end\">92</text>") != std::string::npos);
  BOOST_TEST(svg.find("text-anchor=\"end\">87</text>") == std::string::npos);
  // Bar of 91.6 on 88..92 over a 292-px plot: 3.6 / 4 · 292 = 262.8 px high, top at 44 + 29.2.
  BOOST_TEST(svg.find("y=\"73.20\" width=\"88.96\" height=\"262.80\"") != std::string::npos);

  c.zero_based = true;
  const std::string z = render_svg(c);
  BOOST_TEST(z.find("text-anchor=\"end\">0</text>") != std::string::npos);
  c.y_min = 80;
  c.y_max = 95;
  const std::string fixed = render_svg(c);
  BOOST_TEST(fixed.find("text-anchor=\"end\">80</text>") != std::string::npos);

  BarChart bad = c;
  bad.series[0].values.pop_back();
  BOOST_CHECK_EXCEPTION(render_svg(bad), Error, [](const Error& e) {
    return std::string(e.what()).find("series 'Flowers' has 4 values for 5 categories") !=
           std::string::npos;
  });
}

BOOST_AUTO_TEST_CASE(grouped_bars_and_legend) {
  BarChart c;
  c.categories = {"Before Pool-2", "After Pool-2", "Baseline"};
  c.series = {{"AlexNet", {91.5, 90.1, 88.9}, {}, "", {"", "", "#999999"}},
              {"ResNet", {92.0, NAN, 90.0}, {}, "#123456", {}}};
  const std::string svg = render_svg(c);
  BOOST_TEST(count(svg, "<rect class=\"bar\"") == 5u);  // NaN draws no bar
  BOOST_TEST(count(svg, "class=\"errbar\"") == 0u);
  BOOST_TEST(count(svg, "class=\"legend\"") == 4u);  // swatch + name per series
  BOOST_TEST(count(svg, "fill=\"#999999\"") == 1u);  // grey baseline bar
  BOOST_TEST(count(svg, "fill=\"#123456\"") == 3u);  // 2 bars + legend swatch
  BOOST_TEST(count(svg, "fill=\"#4e79a7\"") == 3u);  // palette colour: 2 bars + swatch
}

BOOST_AUTO_TEST_CASE(line_chart_from_results_table) {
  halsal::eval::ResultsTable t;
  for (int seed = 0; seed < 2; ++seed) {
    t.add("Baseline-RGB", 1, seed, 30 + seed);
    t.add("Baseline-RGB", 5, seed, 60 + seed);
    t.add("Baseline-RGB", halsal::data::kOfficial, seed, 80 + seed);
  }
  t.add("Approach B", 1, 0, 37.3);
  t.add("Approach B", halsal::data::kOfficial, 0, 85.0);
  LineChart c = line_chart_from_table(t, "Flowers");
  BOOST_TEST((c.x_ticks == std::vector<std::string>{"1", "5", "K"}));
  BOOST_TEST(c.series.size() == 2u);
  BOOST_TEST(c.series[0].values[1] == 60.5);
  const std::string svg = render_svg(c);
  BOOST_TEST(count(svg, "<path class=\"line\"") == 2u);
  BOOST_TEST(count(svg, "<circle class=\"point\"") == 5u);
  BOOST_TEST(count(svg, "class=\"errbar\"") == 3u);  // the baseline's std over 2 seeds
  // Approach B lacks k = 5: its line has a gap (two subpaths).
  auto b = svg.find("<path class=\"line\"", svg.find("<path class=\"line\"") + 1);
  auto d = svg.substr(b, svg.find("\"", svg.find("d=\"", b) + 3) - b);
  BOOST_TEST(count(d, "M") == 2u);
  BOOST_TEST(count(d, "L") == 0u);
  BOOST_TEST(svg.find(">K</text>") != std::string::npos);

  auto dir = halsal::test::scratch_dir("viz-svg");
  write_svg(c, dir / "fig" / "lines.svg");
  BOOST_TEST(read_text(dir / "fig" / "lines.svg") == svg);
  LineChart bad = c;
  bad.series[1].errors = {1.0};
  BOOST_CHECK_THROW(render_svg(bad), Error);
}

// ---------------------------------------------------------------------------------------------
// Image operations

BOOST_AUTO_TEST_CASE(jet_colours_and_colorize) {
  auto eq = [](Rgb c, int r, int g, int b) { return c.r == r && c.g == g && c.b == b; };
  BOOST_TEST(eq(jet(1.0f), 128, 0, 0));
  BOOST_TEST(eq(jet(0.0f), 0, 0, 128));
  BOOST_TEST(eq(jet(0.5f), 128, 255, 128));
  BOOST_TEST(eq(jet(0.25f), 0, 128, 255));
  BOOST_TEST(eq(jet(2.0f), 128, 0, 0));  // clamped
  auto map = torch::tensor({{0.0f, 4.0f}, {2.0f, 1.0f}});
  auto heat = colorize(map);  // normalised: 0, 1, 0.5, 0.25
  BOOST_TEST((heat.sizes() == torch::IntArrayRef{2, 2, 3}));
  BOOST_TEST((px(heat, 0, 1) == V{128, 0, 0}));
  BOOST_TEST((px(heat, 0, 0) == V{0, 0, 128}));
  BOOST_TEST((px(heat, 1, 0) == V{128, 255, 128}));
  BOOST_TEST((px(heat, 1, 1) == V{0, 128, 255}));
  BOOST_TEST((px(colorize(torch::full({2, 2}, 3.0f)), 1, 1) == V{0, 0, 128}));  // constant → 0
}

BOOST_AUTO_TEST_CASE(layouts_resize_and_errors) {
  auto hwc = torch::arange(5 * 4 * 3, torch::kByte).view({5, 4, 3});
  BOOST_TEST(torch::equal(to_hwc_rgb(hwc.permute({2, 0, 1}).contiguous()), hwc));  // CHW → HWC
  BOOST_TEST(torch::equal(to_hwc_rgb(hwc), hwc));
  auto grey = to_hwc_rgb(torch::full({2, 3}, 7, torch::kByte));
  BOOST_TEST((grey.sizes() == torch::IntArrayRef{2, 3, 3}));
  BOOST_TEST((px(grey, 1, 2) == V{7, 7, 7}));
  BOOST_CHECK_THROW(to_hwc_rgb(torch::zeros({3, 4, 4})), Error);  // float pixels
  BOOST_CHECK_EXCEPTION(
      to_hwc_rgb(torch::zeros({4, 4, 4}, torch::kByte)), Error, [](const Error& e) {
        return std::string(e.what()).find("expected 1 or 3 channels") != std::string::npos;
      });
  // Shrinking averages 2×2 blocks: (0 + 3 + 12 + 15) / 4 = 7.5 → 8 on channel 0 of pixel (0, 0).
  auto small = resize_image(hwc.slice(0, 0, 4), 2, 2);
  BOOST_TEST((small.sizes() == torch::IntArrayRef{2, 2, 3}));
  BOOST_TEST(small[0][0][0].item<int>() == 8);
  auto up = resize_map(torch::tensor({{0.0f, 1.0f}}), 2, 4);
  BOOST_TEST((up.sizes() == torch::IntArrayRef{2, 4}));
  BOOST_TEST(up[0][0].item<float>() == 0.0f);
  BOOST_TEST(up[1][3].item<float>() == 1.0f);
  BOOST_TEST(up[0][1].item<float>() == 0.25f);
}

BOOST_AUTO_TEST_CASE(overlay_png_round_trip_and_font) {
  // Black 8×8 image (CHW) and a 2×2 map whose maximum is top-left.
  auto img = torch::zeros({3, 8, 8}, torch::kByte);
  auto sal = torch::tensor({{{1.0f, 0.2f}, {0.2f, 0.0f}}});
  auto over = overlay_heatmap(img, sal, 0.5f);
  BOOST_TEST((over.sizes() == torch::IntArrayRef{8, 8, 3}));
  BOOST_TEST((px(over, 0, 0) == V{64, 0, 0}));  // half of jet(1) = (128, 0, 0)
  BOOST_TEST((px(over, 7, 7) == V{0, 0, 64}));  // half of jet(0) = (0, 0, 128)
  auto white = torch::full({8, 8, 3}, 255, torch::kByte);
  BOOST_TEST(
      (px(overlay_heatmap(white, sal, 0.25f), 0, 0) == V{223, 191, 191}));  // .75·255 + .25·128

  // Text: 'I' is columns {0x00, 0x41, 0x7F, 0x41, 0x00}.
  auto canvas = blank_image(10, 20);
  draw_text(canvas, 1, 1, "I", Rgb{0, 0, 0});
  BOOST_TEST((px(canvas, 1 + 3, 1 + 2) == V{0, 0, 0}));        // stem
  BOOST_TEST((px(canvas, 1 + 0, 1 + 1) == V{0, 0, 0}));        // top serif
  BOOST_TEST((px(canvas, 1 + 3, 1 + 1) == V{255, 255, 255}));  // beside the stem
  BOOST_TEST((px(canvas, 1 + 7, 1 + 2) == V{255, 255, 255}));  // below the glyph
  draw_text(canvas, 8, 0, "I", Rgb{255, 0, 0},
            2);  // scale 2: stem at columns 12-13, rows 0-13 (clipped)
  BOOST_TEST((px(canvas, 9, 13) == V{255, 0, 0}));
  draw_text(canvas, -100, -100, "clipped \x01", Rgb{0, 0, 0});  // no crash
  BOOST_TEST(text_width("abc", 2) == 36);

  // PNG written atomically and read back bit-exact.
  auto dir = halsal::test::scratch_dir("viz-png");
  write_png(over, dir / "out" / "overlay.png");
  write_png(img, dir / "black.png");
  auto back = read_png(dir / "out" / "overlay.png");
  BOOST_TEST(torch::equal(back, over));
  BOOST_TEST((px(back, 0, 0) == V{64, 0, 0}));
  BOOST_TEST(read_png(dir / "black.png").sum().item<int64_t>() == 0);
  for (auto& e : fs::directory_iterator(dir / "out"))
    BOOST_TEST(e.path().filename() == "overlay.png");
  BOOST_CHECK_THROW(write_png(torch::zeros({2, 2, 3}), dir / "f.png"), Error);
}

// ---------------------------------------------------------------------------------------------
// Gallery

BOOST_AUTO_TEST_CASE(gallery_layout_tiles_and_captions) {
  GalleryOptions o;
  o.tile = 32;
  o.padding = 4;
  o.font_scale = 1;
  std::vector<GalleryRow> rows(2);
  rows[0].input = solid(16, 32, 255, 0, 0);  // red, HWC, wide
  rows[0].saliency = torch::tensor({{{1.0f, 0.0f}, {0.0f, 0.0f}}});
  rows[0].caption =
      prediction_caption("Baseline-RGB", "Watercress", "Approach B", "Primula", "Primula");
  rows[1].input = solid(32, 32, 0, 255, 0).permute({2, 0, 1});  // green, CHW
  rows[1].example = solid(64, 64, 0, 0, 255);                   // blue, shrunk to the tile
  rows[1].caption = {"a", "b", "c"};
  BOOST_TEST(rows[0].caption[1] == "Predicted (Approach B): Primula");
  auto g = compose_gallery(rows, o);
  // Width: 4 + 3·(32 + 4); height: 4 + headers 12 + rows 2·(32 + 8) + 6 caption lines of 10.
  BOOST_TEST((g.sizes() == torch::IntArrayRef{156, 112, 3}));
  // Row 0 starts at y = 16; the 16-px-high input is centred in its 32-px tile (rows 24..39).
  BOOST_TEST((px(g, 30, 10) == V{255, 0, 0}));
  BOOST_TEST((px(g, 18, 10) == V{255, 255, 255}));
  BOOST_TEST((px(g, 24, 40) == V{192, 0, 0}));   // overlay at max saliency: (255 + 128) / 2
  BOOST_TEST((px(g, 39, 71) == V{128, 0, 64}));  // overlay at zero saliency: (255 + 0, 0, 128) / 2
  BOOST_TEST((px(g, 17, 77) == V{200, 200, 200}));  // missing example: grey tile
  BOOST_TEST((px(g, 55, 4) == V{0, 0, 0}));  // first caption line starts with 'P' (a full column)
  // Row 1 starts at y = 16 + 32 + 4 + 30 + 4 = 86.
  BOOST_TEST((px(g, 100, 20) == V{0, 255, 0}));
  BOOST_TEST((px(g, 100, 90) == V{0, 0, 255}));
  BOOST_TEST((px(g, 87, 41) == V{200, 200, 200}));  // no saliency: grey tile

  auto dir = halsal::test::scratch_dir("viz-gallery");
  write_gallery_png(rows, dir / "gallery.png", o);
  BOOST_TEST(torch::equal(read_png(dir / "gallery.png"), g));

  o.title = "Successes";
  auto titled = compose_gallery(rows, o);
  BOOST_TEST(titled.size(0) == 156 + 8 * 2 + 4);
  auto empty = compose_gallery({}, o);
  BOOST_TEST(empty.size(0) == 4 + 20 + 12 + 14);
  BOOST_TEST(empty.lt(255).any().item<bool>());  // "(no examples)" is drawn
  o.tile = 8;
  BOOST_CHECK_THROW(compose_gallery(rows, o), Error);
}

BOOST_AUTO_TEST_SUITE_END()
