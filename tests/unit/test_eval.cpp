// Metrics, the k-shot results table, the saliency-on-object score, spectral-residual saliency and
// progress/JSONL reporting, checked against hand-computed values and a numpy reference.
#include <halsal/data/stb.hpp>
#include <halsal/eval/metrics.hpp>
#include <halsal/eval/saliency_score.hpp>
#include <halsal/eval/table.hpp>
#include <halsal/saliency/spectral_residual.hpp>
#include <halsal/train/progress.hpp>

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace fs = std::filesystem;
using halsal::Error;
using namespace halsal::eval;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

bool message_has(const Error& e, const std::string& part) {
  return std::string(e.what()).find(part) != std::string::npos;
}

// Logits whose ranking for sample i is rank[i] (best first); other classes get -inf-ish scores.
torch::Tensor logits_from_ranks(const std::vector<std::vector<int64_t>>& ranks, int64_t classes) {
  auto l = torch::full({static_cast<int64_t>(ranks.size()), classes}, -100.0f);
  for (size_t i = 0; i < ranks.size(); ++i)
    for (size_t r = 0; r < ranks[i].size(); ++r)
      l[static_cast<int64_t>(i)][ranks[i][r]] = 10.0f - static_cast<float>(r);
  return l;
}

// The synthetic image of tests/data/make_spectral_fixture.py (same formula, float64).
torch::Tensor fixture_image(int64_t H, int64_t W, const std::vector<int64_t>& sq) {
  auto img = torch::empty({3, H, W}, torch::kDouble);
  auto a = img.accessor<double, 3>();
  for (int64_t y = 0; y < H; ++y)
    for (int64_t x = 0; x < W; ++x) {
      double s =
          std::sin(12.9898 * static_cast<double>(x) + 78.233 * static_cast<double>(y)) * 43758.5453;
      double base = 0.1 + 0.05 * (s - std::floor(s));
      double v = (y >= sq[0] && y < sq[1] && x >= sq[2] && x < sq[3]) ? 0.8 : 0.0;
      a[0][y][x] = base + v;
      a[1][y][x] = 0.5 * base + v;
      a[2][y][x] = 2.0 * base + v;
    }
  return img;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(test_eval)

// ---------------------------------------------------------------------------------------------
// Metrics

BOOST_AUTO_TEST_CASE(metrics_match_hand_computed_confusion_matrix) {
  // 7 classes; true labels and rankings chosen by hand.
  const std::vector<int64_t> labels = {0, 0, 1, 1, 2, 3, 6};
  const std::vector<std::vector<int64_t>> ranks = {
      {0, 1, 2, 3, 4},  // correct
      {1, 0, 2, 3, 4},  // top-1 wrong (1), top-5 hit
      {1, 2, 3, 4, 5},  // correct
      {1, 0, 2, 3, 4},  // correct
      {3, 4, 5, 6, 0},  // wrong (3), label 2 not in top 5
      {3, 0, 1, 2, 4},  // correct
      {5, 0, 1, 2, 3},  // wrong (5), label 6 not in top 5
  };
  ClassificationMetrics m(7);
  m.add_logits(logits_from_ranks(ranks, 7), torch::tensor(labels));
  Eigen::MatrixXi expected = Eigen::MatrixXi::Zero(7, 7);
  expected(0, 0) = 1, expected(0, 1) = 1, expected(1, 1) = 2, expected(2, 3) = 1,
              expected(3, 3) = 1, expected(6, 5) = 1;
  BOOST_TEST((m.confusion() == expected));
  BOOST_TEST(m.count() == 7);
  BOOST_TEST(m.top1() == 4.0 / 7.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(m.top5() == 5.0 / 7.0, boost::test_tools::tolerance(1e-12));
  Eigen::VectorXd pc = m.per_class_accuracy();
  BOOST_TEST(pc(0) == 0.5);
  BOOST_TEST(pc(1) == 1.0);
  BOOST_TEST(pc(2) == 0.0);
  BOOST_TEST(pc(3) == 1.0);
  BOOST_TEST(std::isnan(pc(4)));  // no samples of class 4
  BOOST_TEST(pc(6) == 0.0);
  BOOST_TEST(m.mean_per_class_accuracy() == (0.5 + 1 + 0 + 1 + 0) / 5.0,
             boost::test_tools::tolerance(1e-12));
  auto conf = m.most_confused(10);
  BOOST_TEST(conf.size() == 3u);

  // The same from ranked indices, and from two merged halves.
  ClassificationMetrics a(7), b(7);
  torch::Tensor idx =
      torch::tensor(std::vector<int64_t>{0, 1, 2, 3, 4, 1, 0, 2, 3, 4, 1, 2, 3, 4, 5, 1, 0, 2,
                                         3, 4, 3, 4, 5, 6, 0, 3, 0, 1, 2, 4, 5, 0, 1, 2, 3})
          .view({7, 5});
  a.add_topk(idx.slice(0, 0, 3), torch::tensor(labels).slice(0, 0, 3));
  b.add_topk(idx.slice(0, 3, 7), torch::tensor(labels).slice(0, 3, 7));
  a.merge(b);
  BOOST_TEST((a.confusion() == expected));
  BOOST_TEST(a.top5() == m.top5());

  // Fewer than 5 classes: top-5 is always a hit.
  ClassificationMetrics small(3);
  small.add_logits(torch::tensor({{0.1f, 0.9f, 0.0f}, {2.0f, 1.0f, 0.0f}}), torch::tensor({0, 0}));
  BOOST_TEST(small.top1() == 0.5);
  BOOST_TEST(small.top5() == 1.0);
}

BOOST_AUTO_TEST_CASE(metrics_reject_bad_input_and_leave_counts_unchanged) {
  ClassificationMetrics m(4, {"a", "b", "c", "d"});
  m.add(0, 0, true);
  BOOST_CHECK_EXCEPTION(m.add_logits(torch::zeros({2, 5}), torch::tensor({0, 1})), Error,
                        [](const Error& e) { return message_has(e, "N×4"); });
  BOOST_CHECK_EXCEPTION(m.add_topk(torch::tensor({{0, 1}, {1, 2}}), torch::tensor({0, 4})), Error,
                        [](const Error& e) { return message_has(e, "label 4 is outside [0, 4)"); });
  BOOST_CHECK_THROW(m.add_topk(torch::tensor({{0, 9}}), torch::tensor({0})), Error);
  BOOST_CHECK_THROW(m.add_logits(torch::zeros({2, 4}), torch::tensor({0})), Error);
  BOOST_CHECK_THROW(m.add_logits(torch::zeros({1, 4}), torch::tensor({0.5f})), Error);
  BOOST_CHECK_THROW(m.merge(ClassificationMetrics(3)), Error);
  BOOST_CHECK_THROW(ClassificationMetrics(3, {"a"}), Error);
  BOOST_CHECK_THROW(ClassificationMetrics(0), Error);
  BOOST_TEST(m.count() == 1);
  BOOST_TEST(m.confusion().sum() == 1);
  ClassificationMetrics empty(2);
  BOOST_TEST(std::isnan(empty.top1()));
  BOOST_TEST(std::isnan(empty.mean_per_class_accuracy()));
}

BOOST_AUTO_TEST_CASE(metrics_reports) {
  ClassificationMetrics m(3, {"daisy", "rose", "tulip"});
  m.add_topk(torch::tensor({{0, 1}, {1, 0}, {1, 2}, {2, 0}}), torch::tensor({0, 0, 1, 2}));
  std::ostringstream os;
  os << m;
  const std::string text = os.str();
  BOOST_TEST(text.find("samples 4, classes 3") != std::string::npos);
  BOOST_TEST(text.find("top-1 75.0%  top-5 100.0%  mean per-class 83.3%") != std::string::npos);
  BOOST_TEST(text.find("weakest classes: daisy 50.0% (2)") != std::string::npos);
  BOOST_TEST(text.find("most confused: daisy -> rose x1") != std::string::npos);

  const std::string md = m.to_markdown("Flowers");
  BOOST_TEST(md.find("# Flowers\n") == 0u);
  BOOST_TEST(md.find("| 4 | 3 | 75.0% | 100.0% | 83.3% |") != std::string::npos);
  BOOST_TEST(md.find("| 0 | daisy | 2 | 1 | 50.0% |") != std::string::npos);
  BOOST_TEST(md.find("| **0** | 1 | 1 | 0 |") != std::string::npos);

  auto j = m.to_json(true);
  BOOST_TEST(j["top1"].get<double>() == 0.75);
  BOOST_TEST(j["confusion"][0][1].get<int>() == 1);
  BOOST_TEST(j["per_class_accuracy"].size() == 3u);

  auto dir = halsal::test::scratch_dir("eval-metrics");
  m.write_markdown(dir / "sub" / "eval.md", "Flowers");
  m.write_confusion_csv(dir / "confusion.csv");
  BOOST_TEST(read_text(dir / "sub" / "eval.md") == md);
  BOOST_TEST(read_text(dir / "confusion.csv") == "true\\pred,0,1,2\n0,1,1,0\n1,0,1,0\n2,0,0,1\n");
}

// ---------------------------------------------------------------------------------------------
// Results table

namespace {
ResultsTable known_table() {
  ResultsTable t;
  t.add("Baseline-RGB", 1, 0, 30, 50);
  t.add("Baseline-RGB", 1, 1, 32, 52);
  t.add("Baseline-RGB", 1, 2, 34, 54);
  t.add("Baseline-RGB", 5, 0, 60);
  t.add("Baseline-RGB", 5, 1, 62);
  t.add("Baseline-RGB", 5, 2, 64);
  t.add("Baseline-RGB", kOfficial, 0, 80);
  t.add("Baseline-RGB", kOfficial, 1, 80);
  t.add("Baseline-RGB", kOfficial, 2, 83);
  t.add("Approach B", 5, 0, 68.7);
  t.add("Approach B", 1, 0, 37.3);
  return t;
}
}  // namespace

BOOST_AUTO_TEST_CASE(table_cells_average_and_exact_output) {
  ResultsTable t = known_table();
  BOOST_TEST((t.ks() == std::vector<int>{1, 5, kOfficial}));
  BOOST_TEST((t.methods() == std::vector<std::string>{"Baseline-RGB", "Approach B"}));
  CellStats c = t.cell("Baseline-RGB", kOfficial);
  BOOST_TEST(c.n == 3);
  BOOST_TEST(c.mean == 81.0, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(c.std == std::sqrt(3.0), boost::test_tools::tolerance(1e-12));  // ddof = 1
  BOOST_TEST(t.average("Baseline-RGB") == (32.0 + 62.0 + 81.0) / 3,
             boost::test_tools::tolerance(1e-12));
  BOOST_TEST(std::isnan(t.average("Approach B")));  // has no K column
  BOOST_TEST(t.has("Approach B", 1, 0));
  BOOST_TEST(!t.has("Approach B", 1, 1));

  const std::string md =
      "| Method | 1 | 5 | K | AVG |\n"
      "|:---|---:|---:|---:|---:|\n"
      "| Baseline-RGB | 32.0 ± 2.0 | 62.0 ± 2.0 | 81.0 ± 1.7 | 58.3 |\n"
      "| Approach B | 37.3 | 68.7 | — | — |\n";
  BOOST_TEST(t.markdown() == md);
  const std::string csv =
      "method,1,1_std,5,5_std,K,K_std,AVG\n"
      "Baseline-RGB,32.00,2.00,62.00,2.00,81.00,1.73,58.33\n"
      "Approach B,37.30,,68.70,,,,\n";
  BOOST_TEST(t.wide_csv() == csv);
  // top-5: only k = 1 of the baseline has it.
  BOOST_TEST(t.markdown(Metric::top5) ==
             "| Method | 1 | 5 | K | AVG |\n|:---|---:|---:|---:|---:|\n"
             "| Baseline-RGB | 52.0 ± 2.0 | — | — | — |\n| Approach B | — | — | — | — |\n");

  t.set_method_order({"Approach B", "Missing", "Baseline-RGB"});
  BOOST_TEST((t.methods() == std::vector<std::string>{"Approach B", "Baseline-RGB"}));
  t.add("Approach B", 1, 0, 40.0);  // replaces
  BOOST_TEST(t.cell("Approach B", 1).mean == 40.0);
  BOOST_TEST(t.records().size() == 11u);
  BOOST_TEST(parse_k("K") == kOfficial);
  BOOST_TEST(parse_k("15") == 15);
  BOOST_CHECK_THROW(parse_k("0"), Error);
  BOOST_CHECK_THROW(parse_k("5x"), Error);
  BOOST_CHECK_THROW(parse_k("-3"), Error);
  BOOST_CHECK_THROW(parse_k("99999999999"), Error);
  BOOST_CHECK_THROW(t.add("x", 0, 0, 1.0), Error);
  BOOST_CHECK_THROW(t.add("", 1, 0, 1.0), Error);
}

BOOST_AUTO_TEST_CASE(table_long_csv_round_trip_and_resume) {
  ResultsTable t = known_table();
  t.add("SMIC, spectral \"SR\"", 1, 7, 1.0 / 3.0);
  const std::string csv = t.long_csv();
  BOOST_TEST(csv.find("method,k,seed,top1,top5\nBaseline-RGB,1,0,30,50\n") == 0u);
  BOOST_TEST(csv.find("\nBaseline-RGB,K,2,83,\n") != std::string::npos);
  BOOST_TEST(csv.find("\n\"SMIC, spectral \"\"SR\"\"\",1,7,0.33333333333333331,\n") !=
             std::string::npos);

  auto dir = halsal::test::scratch_dir("eval-table");
  t.write_long_csv(dir / "runs.csv");
  t.write_markdown(dir / "table.md");
  t.write_wide_csv(dir / "table.csv");
  for (auto& e : fs::directory_iterator(dir))  // no temp files left behind
    BOOST_TEST(e.path().filename().string().find(".tmp") == std::string::npos);
  ResultsTable back = ResultsTable::read_long_csv(dir / "runs.csv");
  BOOST_TEST(back.records().size() == t.records().size());
  BOOST_TEST(back.long_csv() == csv);
  BOOST_TEST(back.markdown() == t.markdown());
  BOOST_TEST(back.cell("SMIC, spectral \"SR\"", 1).mean == 1.0 / 3.0);  // exact round trip
  BOOST_TEST(read_text(dir / "table.md") == t.markdown());
  BOOST_TEST(back.has("Baseline-RGB", kOfficial, 2));
  BOOST_TEST(ResultsTable::read_long_csv_or_empty(dir / "absent.csv").records().empty());

  // CRLF line ends and a trailing blank line are accepted; duplicates: the later line wins.
  auto r = ResultsTable::parse_long_csv(
      "method,k,seed,top1,top5\r\nA,2,0,1.5,\r\nA,2,0,2.5,9\r\n\r\n", "x.csv");
  BOOST_TEST(r.records().size() == 1u);
  BOOST_TEST(r.records()[0].top1 == 2.5);
  BOOST_TEST(r.records()[0].top5 == 9.0);
}

BOOST_AUTO_TEST_CASE(table_reader_errors_name_file_and_line) {
  auto expect = [](const std::string& text, const std::string& part) {
    try {
      ResultsTable::parse_long_csv(text, "runs.csv");
      BOOST_ERROR("no error for: " << text);
    } catch (const Error& e) {
      BOOST_TEST(message_has(e, part), e.what() << " lacks '" << part << "'");
    }
  };
  expect("", "runs.csv: empty file");
  expect("method,k,seed,top1\n", "runs.csv:1: expected the header");
  expect("method,k,seed,top1,top5\nA,0,0,1,\n", "runs.csv:2: k must be a positive integer or K");
  expect("method,k,seed,top1,top5\nA,1,0,1,\nA,x,0,1,\n", "runs.csv:3: k must be");
  expect("method,k,seed,top1,top5\nA,1,s,1,\n", "runs.csv:2: seed is not an integer");
  expect("method,k,seed,top1,top5\nA,1,0,abc,\n", "runs.csv:2: top1 is not a number");
  expect("method,k,seed,top1,top5\nA,1,0,1,2,3\n", "runs.csv:2: expected 5 fields, got 6");
  expect("method,k,seed,top1,top5\n\"A,1,0,1,\n", "runs.csv:2: unterminated quoted field");
  expect("method,k,seed,top1,top5\nA,1,0,inf,\n", "top1 is not a number");
  BOOST_CHECK_EXCEPTION(ResultsTable::read_long_csv("/nonexistent/runs.csv"), Error,
                        [](const Error& e) { return message_has(e, "/nonexistent/runs.csv"); });
}

// ---------------------------------------------------------------------------------------------
// Saliency on object

BOOST_AUTO_TEST_CASE(saliency_on_object_hand_computed) {
  auto mask = torch::zeros({2, 1, 4, 4}, torch::kBool);
  mask.index_put_(
      {torch::indexing::Slice(), 0, torch::indexing::Slice(0, 2), torch::indexing::Slice(0, 2)},
      true);  // top-left 2×2: a quarter of the image
  auto sal = torch::zeros({2, 1, 4, 4});
  sal[0][0].index_put_({torch::indexing::Slice(0, 2), torch::indexing::Slice(0, 2)},
                       3.0);  // 12 inside
  sal[0][0][3][3] = 12.0;     // 12 outside
  sal[1][0].fill_(-1.0);      // negative counts as zero: no mass
  auto s = saliency_on_object(sal, mask);
  BOOST_TEST(s.size() == 2u);
  BOOST_TEST(s[0].mass_share == 0.5);
  BOOST_TEST(s[0].area_share == 0.25);
  BOOST_TEST(s[0].ratio == 2.0);
  BOOST_TEST(std::isnan(s[1].mass_share));
  BOOST_TEST(std::isnan(s[1].ratio));

  // A constant map at another size (resized bilinearly) scores ratio 1; numeric masks > 0.5.
  auto s2 = saliency_on_object(torch::ones({1, 2, 2}), mask[0].to(torch::kFloat) * 0.9);
  BOOST_TEST(s2[0].ratio == 1.0, boost::test_tools::tolerance(1e-12));
  auto sum = summarize({s[0], s[1], s2[0]});
  BOOST_TEST(sum.images == 2);
  BOOST_TEST(sum.ratio == 1.5, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(sum.mass_share == 0.375, boost::test_tools::tolerance(1e-12));
  BOOST_TEST(sum.ratio_of_means == 1.5, boost::test_tools::tolerance(1e-12));
  std::ostringstream os;
  os << sum;
  BOOST_TEST(os.str() ==
             "saliency on object: 37.5% of the mass on 25.0% of the area (ratio 1.50, 2 images)");
  BOOST_CHECK_THROW(saliency_on_object(torch::ones({2, 1, 4, 4}), mask[0]), Error);
  BOOST_CHECK_THROW(saliency_on_object(torch::ones({2, 3, 4, 4}), mask), Error);
}

// ---------------------------------------------------------------------------------------------
// Spectral residual

BOOST_AUTO_TEST_CASE(spectral_residual_matches_numpy_reference) {
  std::ifstream in(halsal::test::data_dir() / "spectral_residual_fixture.json");
  BOOST_REQUIRE(in);
  auto fx = nlohmann::json::parse(in);
  const int64_t H = fx["height"], W = fx["width"];
  const auto sq = fx["square"].get<std::vector<int64_t>>();
  auto img = fixture_image(H, W, sq);
  auto s = halsal::saliency::spectral_residual(img.unsqueeze(0).to(torch::kFloat));
  BOOST_TEST((s.sizes() == torch::IntArrayRef{1, 1, H, W}));
  BOOST_TEST(s.scalar_type() == torch::kFloat);
  BOOST_TEST(s.min().item<float>() >= 0.0f);
  BOOST_TEST(s.max().item<float>() <= 1.0f);
  auto m = s[0][0];
  for (const auto& p : fx["samples"]) {
    const int64_t y = p[0], x = p[1];
    const double expected = p[2];
    // float32 input and output against numpy's float64
    BOOST_TEST(std::abs(m[y][x].item<double>() - expected) < 1e-5,
               "at (" << y << ", " << x << "): " << m[y][x].item<double>() << " vs " << expected);
  }
  BOOST_TEST(m.mean().item<double>() == fx["mean"].get<double>(),
             boost::test_tools::tolerance(1e-5));
  const double in_square =
      (m.slice(0, sq[0], sq[1]).slice(1, sq[2], sq[3]).sum() / m.sum()).item<double>();
  BOOST_TEST(in_square == fx["mass_in_square"].get<double>(), boost::test_tools::tolerance(1e-5));
  const int64_t arg = m.argmax().item<int64_t>();
  BOOST_TEST(arg / W == fx["argmax"][0].get<int64_t>());
  BOOST_TEST(arg % W == fx["argmax"][1].get<int64_t>());

  // The bright square draws the saliency: 7.6x its area share, most of the mass within 8 px of it.
  const double area =
      static_cast<double>((sq[1] - sq[0]) * (sq[3] - sq[2])) / static_cast<double>(H * W);
  BOOST_TEST(in_square / area > 5.0);
  const double near =
      (m.slice(0, sq[0] - 8, sq[1] + 8).slice(1, sq[2] - 8, sq[3] + 8).sum() / m.sum())
          .item<double>();
  BOOST_TEST(near > 0.6);
  auto score = saliency_on_object(s, torch::zeros({1, 1, H, W})
                                         .index_put_({0, 0, torch::indexing::Slice(sq[0], sq[1]),
                                                      torch::indexing::Slice(sq[2], sq[3])},
                                                     1.0));
  BOOST_TEST(score[0].mass_share == in_square, boost::test_tools::tolerance(1e-5));
}

BOOST_AUTO_TEST_CASE(spectral_residual_batches_and_edge_cases) {
  using halsal::saliency::spectral_residual;
  auto a = fixture_image(40, 50, {10, 20, 30, 40}).to(torch::kFloat);
  auto b = fixture_image(40, 50, {25, 35, 5, 15}).to(torch::kFloat) * 255;  // scale does not matter
  auto batch = spectral_residual(torch::stack({a, b}));
  BOOST_TEST((batch.sizes() == torch::IntArrayRef{2, 1, 40, 50}));
  auto single = spectral_residual(a);  // C×H×W → 1×H×W
  BOOST_TEST((single.sizes() == torch::IntArrayRef{1, 40, 50}));
  BOOST_TEST(torch::allclose(batch[0], single, 1e-5, 1e-5));
  BOOST_TEST(torch::allclose(batch[1], spectral_residual(b), 1e-5, 1e-5));
  // Each image's maximum lies near its own square.
  auto arg_b = batch[1][0].argmax().item<int64_t>();
  BOOST_TEST((arg_b / 50 >= 17 && arg_b / 50 < 43 && arg_b % 50 < 23));
  // Grey input equals the same grey replicated in 3 channels.
  auto grey = a.mean(0, true);
  BOOST_TEST(torch::allclose(spectral_residual(grey), spectral_residual(grey.expand({3, 40, 50})),
                             1e-4, 1e-4));
  // A constant image has no salient region: all zeros, no NaN.
  auto flat = spectral_residual(torch::full({1, 3, 16, 16}, 0.5f));
  BOOST_TEST(flat.abs().max().item<float>() == 0.0f);
  BOOST_CHECK_THROW(spectral_residual(torch::zeros({1, 2, 8, 8})), Error);
  BOOST_CHECK_THROW(spectral_residual(torch::zeros({8, 8})), Error);
  BOOST_CHECK_THROW(spectral_residual(torch::zeros({1, 3, 8, 8}), {64, 2.5, 2}), Error);
}

BOOST_AUTO_TEST_CASE(load_saliency_png_reads_grey_values_and_names_bad_files) {
  auto dir = halsal::test::scratch_dir("eval-salpng");
  const unsigned char px[6] = {0, 51, 102, 153, 204, 255};  // 2 rows × 3 columns
  const std::string p = (dir / "map.png").string();
  BOOST_REQUIRE(stbi_write_png(p.c_str(), 3, 2, 1, px, 3));
  auto m = halsal::saliency::load_saliency_png(dir / "map.png");
  BOOST_TEST((m.sizes() == torch::IntArrayRef{1, 2, 3}));
  BOOST_TEST(m[0][0][1].item<float>() == 0.2f, boost::test_tools::tolerance(1e-6f));
  BOOST_TEST(m[0][1][2].item<float>() == 1.0f);
  auto r = halsal::saliency::load_saliency_png(dir / "map.png", 4, 6);
  BOOST_TEST((r.sizes() == torch::IntArrayRef{1, 4, 6}));
  BOOST_TEST(r[0][0][0].item<float>() == 0.0f);  // bilinear keeps the corner value

  std::ofstream(dir / "junk.png") << "this is not a png";
  BOOST_CHECK_EXCEPTION(
      halsal::saliency::load_saliency_png(dir / "junk.png"), Error, [&](const Error& e) {
        return message_has(e, (dir / "junk.png").string() + ": not a readable image");
      });
  BOOST_CHECK_EXCEPTION(
      halsal::saliency::load_saliency_png(dir / "absent.png"), Error,
      [&](const Error& e) { return message_has(e, "absent.png: saliency map not found"); });
}

// ---------------------------------------------------------------------------------------------
// Progress and JSONL

BOOST_AUTO_TEST_CASE(progress_plain_lines_with_fields) {
  using namespace halsal::train;
  BOOST_TEST(format_duration(42) == "42s");
  BOOST_TEST(format_duration(312) == "5m12s");
  BOOST_TEST(format_duration(3720) == "1h02m");
  BOOST_TEST(format_duration(NAN) == "--");

  std::ostringstream out;
  double t = 0;
  ProgressOptions o;
  o.out = &out;
  o.clock = [&] { return t; };
  o.prefix = "[B] ";
  Progress p(2, 100, o);
  BOOST_TEST((p.style() == ProgressStyle::Plain));  // not a terminal
  p.begin_epoch(1);
  for (int i = 1; i <= 100; ++i) {
    t = 0.1 * i;
    p.step(0.5, 3, 4);
  }
  t = 10.0;
  auto j = p.end_epoch({{"val_acc", 0.8}});
  std::vector<std::string> lines;
  std::istringstream is(out.str());
  for (std::string l; std::getline(is, l);) lines.push_back(l);
  BOOST_TEST_REQUIRE(lines.size() == 5u);  // steps 20, 40, 60, 80 and the epoch summary
  BOOST_TEST(lines[0] == "[B] epoch 1/2 step 20/100 loss 0.5000 acc 75.0% 40.0 img/s ETA 18s");
  BOOST_TEST(lines[3] == "[B] epoch 1/2 step 80/100 loss 0.5000 acc 75.0% 40.0 img/s ETA 12s");
  BOOST_TEST(lines[4] == "[B] epoch 1/2 loss 0.5000 acc 75.0% val_acc 80.0% 40.0 img/s 10s ETA 10s");
  BOOST_TEST(out.str().find('\r') == std::string::npos);
  BOOST_TEST(j["epoch"].get<int>() == 1);
  BOOST_TEST(j["images"].get<int>() == 400);
  BOOST_TEST(j["loss"].get<double>() == 0.5);
  BOOST_TEST(j["accuracy"].get<double>() == 0.75);
  BOOST_TEST(j["images_per_s"].get<double>() == 40.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(j["eta_s"].get<double>() == 10.0, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(j["val_acc"].get<double>() == 0.8);

  // Terminal style redraws one line in place with \r and ends the epoch with a newline.
  std::ostringstream tty;
  o.out = &tty;
  o.style = ProgressStyle::Terminal;
  o.refresh_seconds = 0;
  t = 0;
  Progress q(1, 3, o);
  q.begin_epoch(1);
  q.step(1.0, 1, 2);
  q.message("checkpoint saved");
  q.step(1.0, 1, 2);
  q.step(1.0, 1, 2);
  q.end_epoch();
  const std::string s = tty.str();
  BOOST_TEST(s.find("\r\x1b[2K[B] epoch 1/1 step 1/3 loss 1.0000 acc 50.0%") == 0u);
  BOOST_TEST(s.find("\r\x1b[2K[B] checkpoint saved\n") != std::string::npos);
  BOOST_TEST(s.find("step 3/3") != std::string::npos);
  BOOST_TEST(s.back() == '\n');
  BOOST_TEST(std::count(s.begin(), s.end(), '\n') == 2);

  // Deferred sums (kept on the device by the trainer): read only when a line is drawn, here at
  // steps 20, 40, 60 and 80 of 100; set_totals gives the epoch's summary its numbers.
  std::ostringstream plain;
  o.out = &plain;
  o.style = ProgressStyle::Plain;
  t = 0;
  Progress d(1, 100, o);
  d.begin_epoch(1);
  int reads = 0;
  for (int i = 1; i <= 100; ++i) {
    t = 0.1 * i;
    d.step_deferred(4, [&] {
      ++reads;
      return std::make_pair(0.5 * 4 * i, static_cast<std::int64_t>(3 * i));
    });
  }
  BOOST_TEST(reads == 4);
  d.set_totals(0.25 * 400, 200);
  const auto dj = d.end_epoch();
  BOOST_TEST(dj["loss"].get<double>() == 0.25);
  BOOST_TEST(dj["accuracy"].get<double>() == 0.5);
  BOOST_TEST(plain.str().find("[B] epoch 1/1 step 20/100 loss 0.5000 acc 75.0%") == 0u);
}

BOOST_AUTO_TEST_CASE(jsonl_lines_parse_back) {
  using namespace halsal::train;
  auto dir = halsal::test::scratch_dir("eval-jsonl");
  const auto path = dir / "logs" / "metrics.jsonl";
  {
    JsonlWriter w(path);
    w.write({{"epoch", 1}, {"loss", 1.25}});
    w.write({{"epoch", 2}, {"loss", 0.5}, {"name", "caf\xc3\xa9"}});
    // Flushed per line: visible before the writer closes.
    BOOST_TEST(
        read_text(path) ==
        "{\"epoch\":1,\"loss\":1.25}\n{\"epoch\":2,\"loss\":0.5,\"name\":\"caf\xc3\xa9\"}\n");
  }
  {
    JsonlWriter(path).write({{"epoch", 3}});
  }  // appends (resume)
  auto recs = read_jsonl(path);
  BOOST_TEST_REQUIRE(recs.size() == 3u);
  BOOST_TEST(recs[1]["loss"].get<double>() == 0.5);
  BOOST_TEST(recs[2]["epoch"].get<int>() == 3);
  {
    JsonlWriter(path, /*append=*/false).write({{"epoch", 1}});
  }  // truncates
  BOOST_TEST(read_jsonl(path).size() == 1u);

  std::ofstream(dir / "bad.jsonl") << "{\"a\":1}\n\n{oops\n";
  BOOST_CHECK_EXCEPTION(read_jsonl(dir / "bad.jsonl"), Error, [&](const Error& e) {
    return message_has(e, (dir / "bad.jsonl").string() + ": line 3 is not valid JSON");
  });
  BOOST_CHECK_THROW(read_jsonl(dir / "absent.jsonl"), Error);
}

BOOST_AUTO_TEST_SUITE_END()
