// halsal::data: decoding, transforms (vs torch's antialiased interpolate), normalization, the
// synthetic dataset, k-shot splits, the loader and the decoded-image cache.
#include <torch/torch.h>

#include <boost/test/unit_test.hpp>
#include <fstream>
#include <set>

#include "halsal/data/data.hpp"
#include "test_support.hpp"

namespace hd = halsal::data;
namespace fs = std::filesystem;
using halsal::test::expect_error;

namespace {

/// A test image with every channel varying: value = f(y, x, c).
hd::Image pattern(int h, int w, int c = 3) {
  hd::Image im(h, w, c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) im.at(y, x, k) = static_cast<uint8_t>((x * 37 + y * 91 + k * 53 + x * y) % 256);
  return im;
}

void write_bytes(const fs::path& p, const std::vector<uint8_t>& b) {
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

int max_diff(hd::ImageView a, hd::ImageView b) {
  BOOST_REQUIRE_EQUAL(a.height, b.height);
  BOOST_REQUIRE_EQUAL(a.width, b.width);
  BOOST_REQUIRE_EQUAL(a.channels, b.channels);
  int m = 0;
  for (size_t i = 0; i < static_cast<size_t>(a.height) * a.width * a.channels; ++i)
    m = std::max(m, std::abs(int(a.data[i]) - int(b.data[i])));
  return m;
}

/// torch's reference: interpolate(bilinear, align_corners=False, antialias=True) on floats, rounded.
hd::Image torch_resize(const hd::Image& im, int h, int w) {
  namespace F = torch::nn::functional;
  auto x = hd::to_tensor_chw(im).unsqueeze(0).to(torch::kFloat);
  auto y = F::interpolate(x, F::InterpolateFuncOptions()
                                 .size(std::vector<int64_t>{h, w})
                                 .mode(torch::kBilinear)
                                 .align_corners(false)
                                 .antialias(true));
  return hd::from_tensor(y.squeeze(0).round().clamp(0, 255).to(torch::kUInt8));
}

hd::SyntheticOptions small_synthetic(int classes = 4, int per_class = 16, int size = 48) {
  hd::SyntheticOptions o;
  o.classes = classes;
  o.per_class = per_class;
  o.size = size;
  o.seed = 7;
  return o;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(test_data)

// ---- decoding --------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(decodes_png_bmp_jpeg_grey_and_alpha) {
  const auto dir = halsal::test::scratch_dir("data-decode");
  const hd::Image rgb = pattern(13, 17);
  hd::write_image(dir / "a.png", rgb);
  hd::write_image(dir / "a.bmp", rgb);
  BOOST_TEST(max_diff(hd::decode_image(dir / "a.png"), rgb) == 0);
  BOOST_TEST(max_diff(hd::decode_image(dir / "a.bmp"), rgb) == 0);
  // Grey: replicated into three equal channels.
  const hd::Image grey = pattern(9, 11, 1);
  hd::write_image(dir / "g.png", grey);
  const auto g = hd::decode_image(dir / "g.png");
  BOOST_TEST(g.channels == 3);
  for (int y = 0; y < 9; ++y)
    for (int x = 0; x < 11; ++x)
      for (int c = 0; c < 3; ++c) BOOST_TEST(g.at(y, x, c) == grey.at(y, x));
  // RGBA and grey+alpha: alpha dropped (PIL's convert("RGB")), colour kept exactly.
  std::vector<uint8_t> rgba(7 * 5 * 4), la(7 * 5 * 2);
  for (size_t i = 0; i < 35; ++i) {
    for (int c = 0; c < 4; ++c) rgba[i * 4 + c] = static_cast<uint8_t>(i * 7 + c * 60);
    la[i * 2] = static_cast<uint8_t>(i * 5);
    la[i * 2 + 1] = static_cast<uint8_t>(255 - i);
  }
  BOOST_REQUIRE(stbi_write_png((dir / "rgba.png").c_str(), 7, 5, 4, rgba.data(), 7 * 4));
  BOOST_REQUIRE(stbi_write_png((dir / "la.png").c_str(), 7, 5, 2, la.data(), 7 * 2));
  const auto a = hd::decode_image(dir / "rgba.png");
  const auto l = hd::decode_image(dir / "la.png");
  for (size_t i = 0; i < 35; ++i) {
    for (int c = 0; c < 3; ++c) BOOST_TEST(a.pixels[i * 3 + c] == rgba[i * 4 + c]);
    for (int c = 0; c < 3; ++c) BOOST_TEST(l.pixels[i * 3 + c] == la[i * 2]);
  }
  // JPEG (baseline, quality 100): lossy, but close.
  hd::Image smooth(16, 24, 3);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 24; ++x)
      for (int c = 0; c < 3; ++c) smooth.at(y, x, c) = static_cast<uint8_t>(40 + 6 * x + 3 * y + 20 * c);
  hd::write_image(dir / "s.jpg", smooth, 100);
  BOOST_TEST(max_diff(hd::decode_image(dir / "s.jpg"), smooth) <= 6);
  hd::write_image(dir / "gs.jpg", hd::Image(8, 8, 1));
  const auto gj = hd::decode_image(dir / "gs.jpg");
  BOOST_TEST(gj.channels == 3);
  BOOST_TEST(gj.at(3, 3, 0) == gj.at(3, 3, 2));
  // Tensor forms: 3 x H x W like torchvision's read_image.
  const auto t = hd::read_image(dir / "a.png");
  BOOST_TEST(t.sizes() == (std::vector<int64_t>{3, 13, 17}));
  BOOST_TEST(t[2][4][5].item<int>() == rgb.at(4, 5, 2));
  BOOST_TEST(max_diff(hd::from_tensor(t), rgb) == 0);
  const auto info = hd::image_info(dir / "rgba.png");
  BOOST_TEST(info.width == 7);
  BOOST_TEST(info.height == 5);
  BOOST_TEST(info.channels == 4);
  BOOST_TEST(info.format == "png");
}

BOOST_AUTO_TEST_CASE(decodes_progressive_jpeg_like_pil) {
  const auto dir = halsal::test::data_dir() / "images";
  const auto prog = hd::decode_image(dir / "progressive.jpg");
  const auto ref = hd::decode_image(dir / "progressive_ref.png");  // Pillow's (libjpeg's) decode
  BOOST_TEST(prog.width == 40);
  BOOST_TEST(prog.height == 24);
  // stb's IDCT and upsampling differ from libjpeg's by a few levels at most.
  BOOST_TEST(max_diff(prog, ref) <= 6);
  double mean = 0;
  for (size_t i = 0; i < prog.pixels.size(); ++i) mean += std::abs(int(prog.pixels[i]) - int(ref.pixels[i]));
  BOOST_TEST(mean / prog.pixels.size() < 1.5);
}

BOOST_AUTO_TEST_CASE(bad_image_files_are_errors_naming_the_file) {
  const auto dir = halsal::test::scratch_dir("data-bad");
  const hd::Image rgb = pattern(40, 50);
  hd::write_image(dir / "ok.png", rgb);
  hd::write_image(dir / "ok.jpg", rgb);
  hd::write_image(dir / "ok.bmp", rgb);
  const auto png = hd::read_file_bytes(dir / "ok.png");
  const auto jpg = hd::read_file_bytes(dir / "ok.jpg");
  const auto bmp = hd::read_file_bytes(dir / "ok.bmp");
  write_bytes(dir / "empty.jpg", {});
  write_bytes(dir / "text.jpg", {'h', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd', '\n'});
  write_bytes(dir / "half.png", std::vector<uint8_t>(png.begin(), png.begin() + png.size() / 2));
  write_bytes(dir / "half.jpg", std::vector<uint8_t>(jpg.begin(), jpg.begin() + jpg.size() * 2 / 3));
  write_bytes(dir / "half.bmp", std::vector<uint8_t>(bmp.begin(), bmp.begin() + bmp.size() / 2));
  write_bytes(dir / "head.jpg", std::vector<uint8_t>(jpg.begin(), jpg.begin() + 20));
  // A PNG whose compressed data is garbage (zlib fails).
  auto bad_png = png;
  for (size_t i = 60; i + 20 < bad_png.size(); ++i) bad_png[i] = static_cast<uint8_t>(i * 131);
  write_bytes(dir / "garbage.png", bad_png);
  // A JPEG header claiming 60000 x 60000 pixels in a few hundred bytes: refused before allocating.
  auto huge = jpg;
  for (size_t i = 2; i + 9 < huge.size(); ++i)
    if (huge[i] == 0xFF && huge[i + 1] == 0xC0) {
      huge[i + 5] = 0xEA, huge[i + 6] = 0x60, huge[i + 7] = 0xEA, huge[i + 8] = 0x60;
      break;
    }
  write_bytes(dir / "huge.jpg", huge);

  expect_error([&] { hd::decode_image(dir / "empty.jpg"); }, {"empty.jpg", "empty file"});
  expect_error([&] { hd::decode_image(dir / "text.jpg"); }, {"text.jpg", "not a JPEG, PNG or BMP image"});
  expect_error([&] { hd::decode_image(dir / "half.png"); }, {"half.png"});
  expect_error([&] { hd::decode_image(dir / "half.jpg"); }, {"half.jpg", "truncated JPEG"});
  expect_error([&] { hd::decode_image(dir / "half.bmp"); }, {"half.bmp", "truncated BMP"});
  expect_error([&] { hd::decode_image(dir / "head.jpg"); }, {"head.jpg"});
  expect_error([&] { hd::decode_image(dir / "garbage.png"); }, {"garbage.png"});
  expect_error([&] { hd::decode_image(dir / "huge.jpg"); }, {"huge.jpg", "60000x60000"});
  expect_error([&] { hd::decode_image(dir / "missing.png"); }, {"missing.png", "no such file"});
  expect_error([&] { hd::decode_image(dir); }, {"folder"});
  expect_error([&] { hd::image_info(dir / "text.jpg"); }, {"text.jpg"});
  // Every prefix of a valid file fails cleanly or decodes (never crashes).
  for (size_t n = 0; n < png.size(); n += 7)
    try {
      hd::decode_image(png.data(), n, "prefix.png");
    } catch (const halsal::Error&) {
    }
  for (size_t n = 0; n < jpg.size(); n += 11)
    try {
      hd::decode_image(jpg.data(), n, "prefix.jpg");
    } catch (const halsal::Error&) {
    }
}

// ---- transforms ------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(resize_matches_torch_antialiased_interpolate) {
  const hd::Image im = pattern(37, 53);
  const std::pair<int, int> sizes[] = {{10, 14}, {37, 53}, {20, 53}, {64, 80}, {5, 7}, {36, 52}, {1, 1}};
  for (auto [h, w] : sizes) {
    const auto mine = hd::resize(im, h, w);
    const auto ref = torch_resize(im, h, w);
    BOOST_TEST(max_diff(mine, ref) <= 1, "resize to " << h << "x" << w);
  }
  // Same size: exact copy.
  BOOST_TEST(max_diff(hd::resize(im, 37, 53), im) == 0);
  // A crop region resized equals resizing the cropped image.
  const hd::CropBox box{5, 9, 20, 30};
  BOOST_TEST(max_diff(hd::resize_region(im, box, 12, 17), hd::resize(hd::crop(im, box), 12, 17)) == 0);
  // Masks (1 channel) go through the same code.
  const hd::Image m = pattern(30, 30, 1);
  BOOST_TEST(max_diff(hd::resize(m, 11, 13), torch_resize(m, 11, 13)) <= 1);
  // A constant image stays constant under any resampling.
  hd::Image flat(33, 21, 3);
  std::fill(flat.pixels.begin(), flat.pixels.end(), 117);
  const auto r = hd::resize(flat, 8, 50);
  BOOST_TEST(std::all_of(r.pixels.begin(), r.pixels.end(), [](uint8_t v) { return v == 117; }));
}

BOOST_AUTO_TEST_CASE(shorter_side_center_crop_and_flip) {
  // torchvision: Resize(256) of 500 x 375 (w x h) -> 341 x 256; of 375 x 500 -> 256 x 341.
  BOOST_TEST(hd::shorter_side_size(375, 500, 256) == std::make_pair(256, 341));
  BOOST_TEST(hd::shorter_side_size(500, 375, 256) == std::make_pair(341, 256));
  BOOST_TEST(hd::shorter_side_size(256, 256, 224) == std::make_pair(224, 224));
  // CenterCrop(3) of 5 x 7 (h x w): top = round(1.0) = 1, left = round(2.0) = 2.
  const hd::Image im = pattern(5, 7);
  const auto c = hd::center_crop(im, 3, 3);
  for (int y = 0; y < 3; ++y)
    for (int x = 0; x < 3; ++x) BOOST_TEST(c.at(y, x, 1) == im.at(y + 1, x + 2, 1));
  // Larger than the image: zero padding around it, as torchvision pads.
  const auto p = hd::center_crop(im, 7, 9);
  BOOST_TEST(p.at(0, 0, 0) == 0);
  BOOST_TEST(p.at(1, 1, 0) == im.at(0, 0, 0));
  auto f = im;
  hd::hflip(f);
  BOOST_TEST(f.at(2, 0, 1) == im.at(2, 6, 1));
  BOOST_TEST(f.at(2, 3, 2) == im.at(2, 3, 2));
  // Eval transform = Resize(resize_to) + CenterCrop(size), computed as one resampling.
  const hd::Image big = pattern(60, 90);
  hd::Rng rng(1);
  auto [e, em] = hd::Transform::eval(32, 40)(big, {}, rng);
  BOOST_TEST(em.empty());
  BOOST_TEST(max_diff(e, hd::center_crop(hd::resize_shorter(big, 40), 32, 32)) == 0);
}

BOOST_AUTO_TEST_CASE(random_resized_crop_follows_torchvision_rules) {
  hd::Rng rng(3);
  int fallbacks = 0;
  for (int i = 0; i < 500; ++i) {
    const auto b = hd::random_resized_crop_box(120, 200, rng);
    BOOST_REQUIRE(b.top >= 0 && b.left >= 0 && b.top + b.height <= 120 && b.left + b.width <= 200);
    const double area = double(b.height) * b.width / (120.0 * 200.0);
    const double ratio = double(b.width) / b.height;
    // Rounding of w and h moves area and ratio a little off the drawn values.
    BOOST_TEST(area >= 0.07);
    BOOST_TEST(area <= 1.0);
    BOOST_TEST(ratio >= 0.70);
    BOOST_TEST(ratio <= 1.42);
    fallbacks += (b.height == 120 && b.width == 160);
  }
  BOOST_TEST(fallbacks < 50);
  // Impossible scale: torchvision's fallback, the central crop with the ratio clamped to 4/3:
  // 100 wide x 20 high -> w = round(20 * 4/3) = 27, left = (100 - 27) / 2 = 36.
  const auto fb = hd::random_resized_crop_box(20, 100, rng, {5.0, 6.0});
  BOOST_TEST((fb == hd::CropBox{0, 36, 20, 27}));
  // Same seed, same crops.
  hd::Rng a(11), b(11);
  for (int i = 0; i < 20; ++i) BOOST_TEST((hd::random_resized_crop_box(64, 64, a) == hd::random_resized_crop_box(64, 64, b)));
  // The train transform moves the mask with the image: where the image is a flipped crop, so is the mask.
  hd::Image im = pattern(50, 70);
  hd::Image mask(50, 70, 1);
  for (int y = 0; y < 50; ++y)
    for (int x = 0; x < 70; ++x) mask.at(y, x) = im.at(y, x, 0);
  hd::Rng r1(5);
  auto [ti, tm] = hd::Transform::train(24)(im, mask, r1);
  BOOST_TEST(ti.height == 24);
  BOOST_TEST(tm.channels == 1);
  for (int y = 0; y < 24; ++y)
    for (int x = 0; x < 24; ++x) BOOST_TEST(ti.at(y, x, 0) == tm.at(y, x));
}

BOOST_AUTO_TEST_CASE(normalization_presets) {
  auto u8 = torch::tensor({0, 128, 255}, torch::kUInt8).view({1, 3, 1, 1}).repeat({2, 1, 2, 2});
  auto s = hd::Normalization::symmetric()(u8);
  BOOST_TEST(s.scalar_type() == torch::kFloat);
  BOOST_TEST(s[0][0][0][0].item<float>() == -1.0f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(s[1][1][1][1].item<float>() == 128.f / 255.f * 2 - 1, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(s[0][2][0][1].item<float>() == 1.0f, boost::test_tools::tolerance(1e-6f));
  auto n = hd::Normalization::imagenet()(u8[0]);
  BOOST_TEST(n.dim() == 3);
  BOOST_TEST(n[1][0][0].item<float>() == (128.f / 255.f - 0.456f) / 0.224f, boost::test_tools::tolerance(1e-5f));
  BOOST_TEST(n[2][1][1].item<float>() == (1.f - 0.406f) / 0.225f, boost::test_tools::tolerance(1e-5f));
  auto back = hd::Normalization::imagenet().unnormalize(n);
  BOOST_TEST(back[1][0][0].item<float>() == 128.f / 255.f, boost::test_tools::tolerance(1e-5f));
  BOOST_CHECK_THROW(hd::Normalization::imagenet()(u8.to(torch::kFloat)), halsal::Error);
}

// ---- synthetic data --------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(synthetic_dataset_is_seeded_masked_and_fine_grained) {
  const auto o = small_synthetic(8, 6, 64);
  const auto d = hd::synthetic(o);
  BOOST_TEST(d.size() == 48u);
  BOOST_TEST(d.num_classes() == 8);
  BOOST_TEST(d.has_masks());
  BOOST_TEST(d.samples[13].label == 2);
  // The first 8 classes are the cube {5,7 petals} x {2 shades} x {plain, ring}.
  const auto specs = hd::synthetic_class_specs(8);
  std::set<std::tuple<int, int, int>> cube;
  for (const auto& s : specs) cube.insert({s.petals, s.shade, s.centre});
  BOOST_TEST(cube.size() == 8u);
  for (const auto& [p, s, c] : cube) BOOST_TEST(((p == 5 || p == 7) && s <= 1 && c <= 1));
  BOOST_TEST(hd::synthetic_class_specs(48).size() == 48u);
  BOOST_CHECK_THROW(hd::synthetic_class_specs(49), halsal::Error);
  // Seeded: the same sample twice is identical; another seed differs.
  auto [a, am] = d.generator->render(5);
  auto [b, bm] = d.generator->render(5);
  BOOST_TEST(max_diff(a, b) == 0);
  auto o2 = o;
  o2.seed = 8;
  auto [c, cm] = hd::synthetic(o2).generator->render(5);
  BOOST_TEST(max_diff(a, c) > 0);
  // Masks: the object covers a sensible part of the image, and its pixels are the flower's
  // colours (pink petals or yellow centre: red channel high).
  double cover = 0, red_inside = 0, inside = 0;
  for (size_t i = 0; i < d.size(); ++i) {
    auto [im, m] = d.generator->render(i);
    BOOST_REQUIRE(m.height == 64 && m.channels == 1);
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x)
        if (m.at(y, x) == 255) {
          ++inside;
          red_inside += im.at(y, x, 0) > 150;
        }
    cover += std::count_if(m.pixels.begin(), m.pixels.end(), [](uint8_t v) { return v > 127; });
  }
  cover /= d.size() * 64.0 * 64.0;
  BOOST_TEST(cover > 0.05);
  BOOST_TEST(cover < 0.45);
  BOOST_TEST(red_inside / inside > 0.9);
  // Not trivial: a nearest-class-mean on 8x8 thumbnails of whole images is far from perfect.
  const auto big = hd::synthetic(small_synthetic(8, 30, 48));
  std::vector<std::vector<float>> mean(8, std::vector<float>(8 * 8 * 3, 0.f));
  auto thumb = [&](size_t i) {
    auto im = hd::resize(big.generator->render(i).first, 8, 8);
    return std::vector<float>(im.pixels.begin(), im.pixels.end());
  };
  for (size_t i = 0; i < big.size(); ++i)
    if (i % 30 < 20) {
      auto t = thumb(i);
      for (size_t k = 0; k < t.size(); ++k) mean[big.samples[i].label][k] += t[k] / 20;
    }
  int right = 0, total = 0;
  for (size_t i = 0; i < big.size(); ++i)
    if (i % 30 >= 20) {
      auto t = thumb(i);
      int best = 0;
      double bd = 1e30;
      for (int c2 = 0; c2 < 8; ++c2) {
        double dist = 0;
        for (size_t k = 0; k < t.size(); ++k) dist += (t[k] - mean[c2][k]) * (t[k] - mean[c2][k]);
        if (dist < bd) bd = dist, best = c2;
      }
      right += best == big.samples[i].label;
      ++total;
    }
  BOOST_TEST(double(right) / total < 0.45, "nearest mean on thumbnails: " << right << "/" << total);
  const auto grid = hd::synthetic_grid(o, 3, 4);
  BOOST_TEST(grid.height == 3 * 66 + 2);
  BOOST_TEST(grid.width == 4 * 66 + 2);
}

namespace {

/// FNV-1a over the pixels and masks of every 7th image of a synthetic dataset.
uint64_t synthetic_fingerprint(const hd::SyntheticOptions& o) {
  const auto d = hd::synthetic(o);
  uint64_t h = 1469598103934665603ull;
  auto add = [&](const std::vector<uint8_t>& bytes) {
    for (uint8_t b : bytes) h = (h ^ b) * 1099511628211ull;
  };
  for (size_t i = 0; i < d.size(); i += 7) {
    auto [im, m] = d.generator->render(i);
    add(im.pixels);
    add(m.pixels);
  }
  return h;
}

/// The hue (0..1) of an RGB pixel.
double hue_of(int r, int g, int b) {
  const int mx = std::max({r, g, b}), mn = std::min({r, g, b});
  if (mx == mn) return 0;
  const double d = mx - mn;
  double h = mx == r ? (g - b) / d : mx == g ? 2 + (b - r) / d : 4 + (r - g) / d;
  h /= 6;
  return h < 0 ? h + 1 : h;
}

}  // namespace

// The new options default to off: the default images are byte for byte those of the generator
// before distractors, class offsets and spec lists existed (fingerprints taken then, x86-64).
BOOST_AUTO_TEST_CASE(synthetic_defaults_render_the_v1_images) {
  hd::SyntheticOptions defaults;
  BOOST_TEST(synthetic_fingerprint(defaults) == 11527650613579859736ull);
  BOOST_TEST(synthetic_fingerprint(small_synthetic(4, 16, 48)) == 17964197999521282621ull);
  auto explicit_off = small_synthetic(4, 16, 48);
  explicit_off.distractors = 0;
  explicit_off.first_class = 0;
  BOOST_TEST(synthetic_fingerprint(explicit_off) == 17964197999521282621ull);
  BOOST_TEST(hd::synthetic(defaults).generator->describe() ==
             "synthetic-v1 classes=8 per_class=40 size=96 seed=0 scale=0.4..0.75 clutter=14");
}

BOOST_AUTO_TEST_CASE(synthetic_distractors_paint_other_classes_shades_outside_the_mask) {
  hd::SyntheticOptions o = small_synthetic(3, 6, 64);
  o.class_specs = {{5, 0, 0}, {6, 1, 0}, {7, 2, 0}};  // one class per shade
  o.clutter = 4;
  const auto plain = hd::synthetic(o);
  o.distractors = 3;
  const auto busy = hd::synthetic(o);
  BOOST_TEST(busy.generator->describe() != plain.generator->describe());  // cache keys differ
  const double shade_hue[] = {0.915, 0.965, 0.02};
  auto hue_distance = [](double a, double b) { return std::min(std::abs(a - b), 1 - std::abs(a - b)); };
  size_t changed_outside = 0, petal_like = 0, own_shade = 0, images_with_distractors = 0;
  for (size_t i = 0; i < busy.size(); ++i) {
    const int own = static_cast<int>(busy.samples[i].label);  // class c has shade c here
    auto [a, am] = plain.generator->render(i);
    auto [b, bm] = busy.generator->render(i);
    BOOST_TEST(max_diff(am, bm) == 0, "image " << i << ": distractors changed the object mask");
    size_t changed_here = 0;
    for (int y = 0; y < 64; ++y)
      for (int x = 0; x < 64; ++x) {
        int diff = 0;
        for (int c = 0; c < 3; ++c) diff = std::max(diff, std::abs(int(a.at(y, x, c)) - int(b.at(y, x, c))));
        if (bm.at(y, x) == 255) {
          BOOST_TEST(diff == 0, "image " << i << ": the flower changed at (" << y << ", " << x << ")");
          continue;
        }
        if (diff < 30 || bm.at(y, x) != 0) continue;
        ++changed_outside;
        ++changed_here;
        // A pixel in one of the three petal shades: which one?
        const double h = hue_of(b.at(y, x, 0), b.at(y, x, 1), b.at(y, x, 2));
        int nearest = 0;
        for (int s = 1; s < 3; ++s)
          if (hue_distance(h, shade_hue[s]) < hue_distance(h, shade_hue[nearest])) nearest = s;
        if (hue_distance(h, shade_hue[nearest]) > 0.02) continue;
        ++petal_like;
        own_shade += nearest == own;
      }
    images_with_distractors += changed_here > 20;
  }
  BOOST_TEST(images_with_distractors >= busy.size() * 3 / 4, images_with_distractors << " of " << busy.size());
  BOOST_TEST(petal_like > changed_outside / 2, petal_like << " petal-coloured of " << changed_outside << " changed");
  // Other classes' shades, not the image's own (a few edge pixels blend into a neighbouring hue).
  BOOST_TEST(own_shade < petal_like / 10, own_shade << " of " << petal_like << " in the image's own shade");
}

BOOST_AUTO_TEST_CASE(synthetic_class_offsets_and_spec_lists_choose_disjoint_classes) {
  auto base_options = small_synthetic(8, 2, 32), novel_options = small_synthetic(6, 2, 32);
  novel_options.first_class = 8;
  const auto base = hd::synthetic(base_options), novel = hd::synthetic(novel_options);
  const auto all = hd::synthetic_class_specs(14);
  BOOST_TEST_REQUIRE(novel.num_classes() == 6);
  for (int c = 0; c < 6; ++c) {
    BOOST_TEST(novel.class_names[c] == all[8 + c].name());
    for (const auto& b : base.class_names) BOOST_TEST(novel.class_names[c] != b);
  }
  BOOST_TEST(novel.size() == 12u);
  BOOST_TEST(novel.samples.back().label == 5);
  BOOST_TEST(novel.generator->describe().find("first_class=8") != std::string::npos);
  // An explicit list: exactly those classes, in that order; `classes` is not used.
  auto listed = small_synthetic(2, 3, 32);
  listed.class_specs = {{8, 2, 3}, {5, 0, 0}, {6, 1, 2}};
  const auto d = hd::synthetic(listed);
  BOOST_TEST(d.num_classes() == 3);
  BOOST_TEST(d.size() == 9u);
  BOOST_TEST(d.class_names[0] == "8-petal coral cross");
  BOOST_TEST(d.class_names[2] == "6-petal rose dots");
  // Bad choices name the option.
  auto far = small_synthetic(8, 2, 32);
  far.first_class = 41;
  expect_error([&] { hd::synthetic(far); }, {"first_class", "0..40", "41"});
  auto twice = listed;
  twice.class_specs.push_back({5, 0, 0});
  expect_error([&] { hd::synthetic(twice); }, {"class_specs[1] and [3]", "5-petal magenta plain"});
  auto bad = listed;
  bad.class_specs[1].shade = 3;
  expect_error([&] { hd::synthetic(bad); }, {"class_specs[1]", "shade 3"});
  auto negative = small_synthetic(2, 3, 32);
  negative.distractors = -1;
  expect_error([&] { hd::synthetic(negative); }, {"distractors", "-1"});
}

// ---- splits ----------------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(kshot_splits_are_deterministic_nested_and_disjoint) {
  auto data = std::make_shared<const hd::Dataset>(hd::synthetic(small_synthetic(6, 42, 32)));
  auto as_set = [](const hd::Subset& s) { return std::set<size_t>(s.indices.begin(), s.indices.end()); };
  const auto s5 = hd::kshot(data, 5, 0);
  BOOST_TEST(s5.train.size() == 30u);
  BOOST_TEST(s5.val.size() == 30u);
  BOOST_TEST(s5.test.size() == 30u);
  std::vector<int> per_class(6, 0);
  for (size_t i = 0; i < s5.train.size(); ++i) per_class[s5.train.label(i)]++;
  BOOST_TEST(per_class == std::vector<int>(6, 5), boost::test_tools::per_element());
  const auto tr = as_set(s5.train), va = as_set(s5.val), te = as_set(s5.test);
  for (size_t i : tr) BOOST_TEST((!va.count(i) && !te.count(i)));
  for (size_t i : va) BOOST_TEST(!te.count(i));
  // Same (dataset, seed): the same split; another seed: another.
  BOOST_TEST(hd::kshot(data, 5, 0).train.indices == s5.train.indices, boost::test_tools::per_element());
  BOOST_TEST((as_set(hd::kshot(data, 5, 1).test) != te));
  // Nested over k; val and test do not depend on k.
  std::set<size_t> prev;
  for (int k : hd::paper_ks()) {
    const auto s = hd::kshot(data, k, 0);
    BOOST_TEST(s.train.size() == size_t(6 * k));
    const auto cur = as_set(s.train);
    for (size_t i : prev) BOOST_TEST(cur.count(i), "k=" << k << " must contain the smaller k's images");
    BOOST_TEST((as_set(s.val) == va));
    BOOST_TEST((as_set(s.test) == te));
    prev = cur;
  }
  // K without an official split: everything after 5 test + 5 val.
  BOOST_TEST(hd::kshot(data, hd::kOfficial, 0).train.size() == 6u * 32u);
  // The split does not depend on the order the samples were listed in (checked on named files:
  // synthetic samples are named by position).
  hd::Dataset named;
  named.layout = "folders";
  named.root = "/nowhere";
  named.class_names = {"a", "b"};
  for (int i = 0; i < 40; ++i) {
    hd::Sample s;
    s.file = fs::path("/nowhere") / (i % 2 ? "b" : "a") / ("img" + std::to_string(i) + ".jpg");
    s.label = i % 2;
    named.samples.push_back(s);
  }
  auto names = [](const hd::Split& s, const hd::Subset& sub) {
    std::set<std::string> out;
    for (size_t i : sub.indices) out.insert(s.train.dataset->key(i));
    return out;
  };
  auto reversed = named;
  std::reverse(reversed.samples.begin(), reversed.samples.end());
  const auto n1 = hd::kshot(named, 3, 4), n2 = hd::kshot(reversed, 3, 4);
  BOOST_TEST((names(n1, n1.train) == names(n2, n2.train)));
  BOOST_TEST((names(n1, n1.test) == names(n2, n2.test)));
  // Too few images: an Error naming the class and the counts.
  auto few = hd::synthetic(small_synthetic(3, 12, 32));
  expect_error([&] { hd::kshot(few, 5, 0); }, {"class 0", few.class_names[0], "has 12 images", "= 15"});
  BOOST_CHECK_THROW(hd::kshot(few, 0, 0), halsal::Error);
}

BOOST_AUTO_TEST_CASE(split_csv_round_trip_and_errors) {
  const auto dir = halsal::test::scratch_dir("data-split");
  auto data = std::make_shared<const hd::Dataset>(hd::synthetic(small_synthetic(4, 20, 32)));
  const auto s = hd::kshot(data, 3, 9);
  hd::save_split(s, dir / "split.csv");
  const auto r = hd::load_split(dir / "split.csv", data);
  BOOST_TEST(r.k == 3);
  BOOST_TEST(r.seed == 9u);
  BOOST_TEST(r.train.indices == s.train.indices, boost::test_tools::per_element());
  BOOST_TEST(r.val.indices == s.val.indices, boost::test_tools::per_element());
  BOOST_TEST(r.test.indices == s.test.indices, boost::test_tools::per_element());
  {
    std::ofstream(dir / "bad.csv") << "set,label,path\ntrain,0,synthetic:0\ntrain,1,synthetic:99999\n";
  }
  expect_error([&] { hd::load_split(dir / "bad.csv", data); }, {"bad.csv", "line 3", "synthetic:99999"});
  {
    std::ofstream(dir / "label.csv") << "set,label,path\ntrain,3,synthetic:0\n";
  }
  expect_error([&] { hd::load_split(dir / "label.csv", data); }, {"label.csv", "line 2", "label 3"});
  {
    std::ofstream(dir / "noheader.csv") << "just some text\n";
  }
  expect_error([&] { hd::load_split(dir / "noheader.csv", data); }, {"noheader.csv", "header"});
  expect_error([&] { hd::load_split(dir / "absent.csv", data); }, {"absent.csv", "no such file"});
}

// ---- loader and cache ------------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(loader_shards_are_one_loader_s_samples) {
  // DistributedSampler's share: shard r of c takes positions r, r + c, ... of the epoch's order;
  // batches of b on 2 shards together are the batches of 2b of one loader, augmentations included.
  auto data = std::make_shared<const hd::Dataset>(hd::synthetic(small_synthetic(4, 16, 48)));
  const auto split = hd::kshot(data, 6, 0);  // 24 training images
  hd::LoaderOptions o;
  o.seed = 5;
  o.transform = hd::Transform::train(32);
  o.workers = 0;
  o.batch_size = 4;
  hd::Loader whole(split.train, o);
  o.batch_size = 2;
  o.shard_count = 2;
  o.shard_rank = 0;
  hd::Loader first(split.train, o);
  o.shard_rank = 1;
  hd::Loader second(split.train, o);
  BOOST_TEST(first.batches_per_epoch() == 6u);
  BOOST_TEST(whole.batches_per_epoch() == 6u);
  for (int epoch = 1; epoch < 3; ++epoch) {
    whole.start_epoch(epoch);
    first.start_epoch(epoch);
    second.start_epoch(epoch);
    while (auto w = whole.next()) {
      auto a = first.next(), b = second.next();
      BOOST_REQUIRE((a.has_value() && b.has_value()));
      BOOST_REQUIRE(a->size() == 2);
      for (int64_t i = 0; i < 2; ++i) {  // whole's row 2i is shard 0's row i, row 2i + 1 shard 1's
        BOOST_TEST(a->indices[i] == w->indices[2 * i]);
        BOOST_TEST(b->indices[i] == w->indices[2 * i + 1]);
        BOOST_TEST(torch::equal(a->images[i], w->images[2 * i]));
        BOOST_TEST(torch::equal(b->images[i], w->images[2 * i + 1]));
      }
    }
    BOOST_TEST(!first.next().has_value());
  }
  // 24 images over 5 shards: 5 each, the last positions wrap to the order's start (one repeat).
  o.shard_count = 5;
  std::multiset<size_t> seen;
  for (int r = 0; r < 5; ++r) {
    o.shard_rank = r;
    hd::Loader l(split.train, o);
    BOOST_TEST(l.samples_per_epoch() == 5u);
    while (auto b = l.next()) seen.insert(b->indices.begin(), b->indices.end());
  }
  BOOST_TEST(seen.size() == 25u);
  BOOST_TEST((std::set<size_t>(seen.begin(), seen.end()).size() == 24u));
  o.shard_rank = 5;
  BOOST_CHECK_THROW(hd::Loader(split.train, o), halsal::Error);
}

BOOST_AUTO_TEST_CASE(loader_is_deterministic_whatever_the_worker_count) {
  auto data = std::make_shared<const hd::Dataset>(hd::synthetic(small_synthetic(4, 16, 48)));
  const auto split = hd::kshot(data, 6, 0);
  hd::LoaderOptions o;
  o.batch_size = 5;
  o.seed = 3;
  o.transform = hd::Transform::train(32);
  o.masks = true;
  o.workers = 0;
  hd::Loader serial(split.train, o);
  o.workers = 3;
  o.prefetch = 2;
  hd::Loader parallel(split.train, o);
  BOOST_TEST(serial.batches_per_epoch() == 5u);  // 24 images, batches of 5
  for (int epoch = 0; epoch < 2; ++epoch) {
    serial.start_epoch(epoch);
    parallel.start_epoch(epoch);
    std::multiset<size_t> seen;
    size_t n = 0;
    while (auto a = serial.next()) {
      auto b = parallel.next();
      BOOST_REQUIRE(b.has_value());
      BOOST_TEST(a->images.sizes() == (std::vector<int64_t>{a->size(), 3, 32, 32}));
      BOOST_TEST(a->images.scalar_type() == torch::kUInt8);
      BOOST_TEST(a->masks.sizes() == (std::vector<int64_t>{a->size(), 1, 32, 32}));
      BOOST_TEST(torch::equal(a->images, b->images));
      BOOST_TEST(torch::equal(a->labels, b->labels));
      BOOST_TEST(torch::equal(a->masks, b->masks));
      for (int64_t i = 0; i < a->size(); ++i) {
        BOOST_TEST(a->labels[i].item<int64_t>() == data->samples[a->indices[i]].label);
        seen.insert(a->indices[i]);
      }
      n += a->size();
    }
    BOOST_TEST(!parallel.next().has_value());
    BOOST_TEST(n == 24u);
    BOOST_TEST((seen == std::multiset<size_t>(split.train.indices.begin(), split.train.indices.end())));
  }
  // Another epoch, another order.
  serial.start_epoch(0);
  auto e0 = serial.next()->indices;
  serial.start_epoch(1);
  auto e1 = serial.next()->indices;
  BOOST_TEST((e0 != e1));
  // The eval transform of a mask keeps object pixels where the image has them; drop_last.
  o.transform = hd::Transform::squash(48);
  o.shuffle = false;
  o.drop_last = true;
  hd::Loader eval(split.test, o);
  BOOST_TEST(eval.batches_per_epoch() == 4u);  // 20 test images
  auto b = eval.next();
  auto [im, m] = data->generator->render(b->indices[0]);
  BOOST_TEST(b->masks[0][0][20][20].item<int>() == m.at(20, 20));
  BOOST_TEST(b->images[0][1][20][20].item<int>() == im.at(20, 20, 1));
}

BOOST_AUTO_TEST_CASE(cache_gives_the_same_batches_and_survives_damage) {
  const auto dir = halsal::test::scratch_dir("data-cache");
  auto data = std::make_shared<const hd::Dataset>(hd::synthetic(small_synthetic(3, 12, 40)));
  hd::CacheOptions co;
  co.shorter_side = 64;  // >= 40: stored as generated
  co.quiet = true;
  const auto file = dir / "synth.hcache";
  auto cache = hd::ImageCache::open_or_build(*data, file, co);
  BOOST_TEST(cache->size() == 36u);
  BOOST_TEST(cache->image(7).height == 40);
  BOOST_TEST(cache->mask(7).channels == 1);
  auto [im, m] = data->generator->render(7);
  BOOST_TEST(max_diff(cache->image(7), im) == 0);
  BOOST_TEST(max_diff(cache->mask(7), m) == 0);
  hd::LoaderOptions o;
  o.batch_size = 8;
  o.transform = hd::Transform::train(32);
  o.masks = true;
  o.workers = 2;
  hd::Loader plain(hd::Subset::all(data), o);
  o.cache = cache;
  hd::Loader cached(hd::Subset::all(data), o);
  while (auto a = plain.next()) {
    auto b = cached.next();
    BOOST_TEST(torch::equal(a->images, b->images));
    BOOST_TEST(torch::equal(a->masks, b->masks));
  }
  cached.start_epoch(0);  // release the views before the file is damaged
  o.cache.reset();
  const auto size = fs::file_size(file);
  cache.reset();
  // Reopening a good cache does not rebuild it.
  const auto mtime = fs::last_write_time(file);
  hd::ImageCache::open_or_build(*data, file, co);
  BOOST_TEST((fs::last_write_time(file) == mtime));
  auto damage = [&](const std::string& what, auto&& f) {
    f();
    auto strict = co;
    strict.rebuild_if_invalid = false;
    expect_error([&] { hd::ImageCache::open_or_build(*data, file, strict); }, {file.filename().string(), what});
    auto c = hd::ImageCache::open_or_build(*data, file, co);  // rebuilt
    BOOST_TEST(max_diff(c->image(7), im) == 0);
  };
  damage("truncated", [&] { fs::resize_file(file, size - 100); });
  damage("truncated", [&] { fs::resize_file(file, 10); });
  damage("header", [&] {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x7f');
  });
  damage("index", [&] {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(64 + 32 * 5 + 8);
    f.put('\x7f');
  });
  damage("magic", [&] { std::ofstream(file, std::ios::binary) << std::string(4096, 'x'); });
  // Stale: another dataset.
  auto other = hd::synthetic(small_synthetic(3, 13, 40));
  auto strict = co;
  strict.rebuild_if_invalid = false;
  expect_error([&] { hd::ImageCache::open_or_build(other, file, strict); }, {"stale"});
  expect_error([&] { hd::ImageCache::open(*data, dir / "none.hcache", 64); }, {"none.hcache"});
  // Large images are stored at the shorter side.
  const auto fdir = halsal::test::scratch_dir("data-cache-files");
  fs::create_directories(fdir / "a");
  fs::create_directories(fdir / "b");
  hd::write_image(fdir / "a" / "x.png", pattern(90, 120));
  hd::write_image(fdir / "b" / "y.png", pattern(100, 50));
  const auto fd = hd::open(fdir);
  co.shorter_side = 30;
  auto fc = hd::ImageCache::open_or_build(fd, fdir / "c.hcache", co);
  BOOST_TEST(fc->image(0).height == 30);
  BOOST_TEST(fc->image(0).width == 40);
  BOOST_TEST(fc->image(1).height == 60);
  BOOST_TEST(fc->image(1).width == 30);
  BOOST_TEST(max_diff(fc->image(0), hd::resize(pattern(90, 120), 30, 40)) == 0);
}

BOOST_AUTO_TEST_CASE(bad_files_in_a_dataset_error_or_skip) {
  const auto dir = halsal::test::scratch_dir("data-skip");
  for (const char* c : {"cat", "dog"}) {
    fs::create_directories(dir / c);
    for (int i = 0; i < 4; ++i) hd::write_image(dir / c / ("im" + std::to_string(i) + ".png"), pattern(20 + i, 24));
  }
  const auto good = hd::read_file_bytes(dir / "cat" / "im0.png");
  write_bytes(dir / "dog" / "zero.jpg", {});
  write_bytes(dir / "dog" / "cut.png", std::vector<uint8_t>(good.begin(), good.begin() + good.size() - 30));
  std::ofstream(dir / "dog" / "notes.txt") << "not an image";
  // Default: the zero-byte file is an Error naming it.
  expect_error([&] { hd::open(dir); }, {"zero.jpg", "empty"});
  hd::OpenOptions skip;
  skip.on_bad_file = hd::OnBadFile::skip;
  skip.quiet = true;
  const auto d = hd::open(dir, skip);
  BOOST_TEST(d.skipped == 1u);  // zero.jpg; cut.png has a valid header
  BOOST_TEST(d.size() == 9u);
  BOOST_TEST(d.problems.size() == 2u);  // the skipped file and the ignored notes.txt
  // Full verification also catches the truncated PNG.
  skip.verify = hd::Verify::decode;
  const auto dv = hd::open(dir, skip);
  BOOST_TEST(dv.skipped == 2u);
  BOOST_TEST(dv.size() == 8u);
  // The loader: an Error naming cut.png, or under skip the batch loses it.
  auto shared = std::make_shared<const hd::Dataset>(d);
  hd::LoaderOptions o;
  o.batch_size = 16;
  o.transform = hd::Transform::squash(16);
  o.workers = 2;
  {
    hd::Loader l(hd::Subset::all(shared), o);
    expect_error([&] { l.next(); }, {"cut.png"});
  }
  o.on_bad_file = hd::OnBadFile::skip;
  o.quiet = true;
  hd::Loader l(hd::Subset::all(shared), o);
  auto b = l.next();
  BOOST_TEST(b->size() == 8);
  BOOST_TEST(l.skipped() == 1u);
}

BOOST_AUTO_TEST_CASE(opening_a_dataset_names_every_bad_file_not_only_the_first) {
  const auto dir = halsal::test::scratch_dir("data-every-bad");
  fs::create_directories(dir / "cat");
  for (int i = 0; i < 3; ++i) hd::write_image(dir / "cat" / ("im" + std::to_string(i) + ".png"), pattern(20, 24));
  const auto good = hd::read_file_bytes(dir / "cat" / "im0.png");
  write_bytes(dir / "cat" / "empty.jpg", {});
  write_bytes(dir / "cat" / "cut.png", std::vector<uint8_t>(good.begin(), good.begin() + good.size() - 30));
  std::ofstream(dir / "cat" / "text.jpg") << "this is text, not a JPEG";
  // Header checks see the empty and the text file; both are named in one error.
  expect_error([&] { hd::open(dir); }, {"2 bad files", "empty.jpg", "text.jpg"});
  // Decoding every image also finds the truncated PNG.
  hd::OpenOptions decode;
  decode.verify = hd::Verify::decode;
  expect_error([&] { hd::open(dir, decode); }, {"3 bad files", "empty.jpg", "text.jpg", "cut.png"});
}

BOOST_AUTO_TEST_SUITE_END()
