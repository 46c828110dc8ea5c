// The ablation layer (Figs. 2–3): variant labels from type lists, the mean/std aggregation for
// known numbers and its files, a small depth ablation that resumes without re-training, per-variant
// Step I caching, the errors of A/B without Step I data, and the grid over shards (the same files
// as one process, merge, other settings refused, Step I made first).
#include <halsal/halsal.hpp>
#include <halsal/experiments/ablation.hpp>

#include <fstream>
#include <sstream>

#include "test_support.hpp"
#include "tiny_data.hpp"

using namespace halsal;
namespace hd = halsal::data;
namespace ht = halsal::train;
using test::slurp;
using test::tiny_config;
using test::tiny_synthetic;

namespace {

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1)) ++n;
  return n;
}

using Vs = std::vector<std::string>;

}  // namespace

BOOST_AUTO_TEST_SUITE(test_ablation)

BOOST_AUTO_TEST_CASE(variant_labels_from_type_lists) {
  const Vs depth = ht::ablation_labels(ht::type_list<Depth<1>, Depth<2>, Depth<3>, Depth<4>>{});
  BOOST_TEST(depth == (Vs{"Conv-1", "Conv-2", "Conv-3", "Conv-4", "Baseline"}), boost::test_tools::per_element());
  const Vs alex = ht::ablation_labels(ht::type_list<BeforePool2, AfterPool2, AfterConv3, AfterConv4>{});
  BOOST_TEST(alex == (Vs{"Before Pool-2", "After Pool-2", "After Conv-3", "After Conv-4", "Baseline"}),
             boost::test_tools::per_element());
  const Vs stages =
      ht::ablation_labels(ht::type_list<AfterStage<1>, AfterStage<2>, AfterStage<3>, AfterStage<4>>{}, false);
  BOOST_TEST(stages == (Vs{"After stage 1", "After stage 2", "After stage 3", "After stage 4"}),
             boost::test_tools::per_element());
  const Vs reordered = ht::ablation_labels(ht::type_list<Depth<3>, Depth<1>>{}, false);  // the list's order
  BOOST_TEST(reordered == (Vs{"Conv-3", "Conv-1"}), boost::test_tools::per_element());
  BOOST_TEST(ht::ablation_slug("Before Pool-2") == "before-pool-2");
  BOOST_TEST(ht::ablation_slug("After stage 3") == "after-stage-3");
  BOOST_TEST(ht::ablation_slug("Conv-4") == "conv-4");
}

BOOST_AUTO_TEST_CASE(aggregation_for_known_numbers) {
  const auto nan = std::numeric_limits<double>::quiet_NaN();
  const auto s = halsal::eval::mean_and_std({1, 2, nan, 3, 4});
  BOOST_TEST(s.n == 4);
  BOOST_TEST(s.mean == 2.5);
  BOOST_TEST(s.std == std::sqrt(5.0 / 3.0), boost::test_tools::tolerance(1e-12));  // ddof = 1
  BOOST_TEST(std::isnan(halsal::eval::mean_and_std({7}).std));
  BOOST_TEST(halsal::eval::mean_and_std({}).n == 0);

  eval::ResultsTable runs = ht::ablation_runs();
  for (const eval::ResultRecord& r : std::vector<eval::ResultRecord>{
           {"Conv-1", 5, 0, 88, 99}, {"Conv-1", 5, 1, 90, 100}, {"Conv-1", 5, 2, 92, 101},  // 90 ± 2, 100 ± 1
           {"Baseline", 5, 0, 85, 95},                                                      // one seed: no std
           {"Conv-2", 1, 0, 50, 80},   {"Conv-2", 1, 1, 60, 90},                            // 55 ± 7.07
           {"Conv-9", 5, 0, 10, 10}})                                                       // not asked: ignored
    runs.add(r);
  BOOST_TEST(runs.row_label() == "variant");
  const auto r = ht::aggregate_ablation(runs, {"Conv-1", "Conv-2", "Baseline"}, {1, 5}, "T");
  BOOST_TEST(r.cell("Conv-1", 5).n == 3);
  BOOST_TEST(r.cell("Conv-1", 5).mean == 90.0);
  BOOST_TEST(r.cell("Conv-1", 5).std == 2.0);
  BOOST_TEST(r.cell("Conv-1", 5, eval::Metric::top5).mean == 100.0);
  BOOST_TEST(r.cell("Conv-1", 5, eval::Metric::top5).std == 1.0);
  BOOST_TEST(r.cell("Conv-1", 1).n == 0);
  BOOST_TEST(r.cell("Conv-2", 1).std == std::sqrt(50.0), boost::test_tools::tolerance(1e-12));
  BOOST_TEST(r.cell("Baseline", 5).mean == 85.0);
  BOOST_TEST(std::isnan(r.cell("Baseline", 5).std));
  BOOST_CHECK_THROW(r.cell("Conv-9", 5), Error);
  BOOST_CHECK_THROW(r.cell("Conv-1", 3), Error);

  BOOST_TEST(ht::ablation_results_csv(r) ==
             "variant,k,n,top1_mean,top1_std,top5_mean,top5_std\n"
             "Conv-1,1,0,,,,\n"
             "Conv-1,5,3,90.00,2.00,100.00,1.00\n"
             "Conv-2,1,2,55.00,7.07,85.00,7.07\n"
             "Conv-2,5,0,,,,\n"
             "Baseline,1,0,,,,\n"
             "Baseline,5,1,85.00,,95.00,\n");
  const std::string md = ht::ablation_results_markdown(r);
  BOOST_TEST(md.find("# T\n") == 0u, md);
  BOOST_TEST(md.find("| Variant | k = 1 | k = 5 |") != std::string::npos, md);
  BOOST_TEST(md.find("| Conv-1 | — | 90.0 ± 2.0 |") != std::string::npos, md);
  BOOST_TEST(md.find("| Conv-1 | — | 100.0 ± 1.0 |") != std::string::npos, md);  // top-5 table
  BOOST_TEST(md.find("| Baseline | — | 85.0 |") != std::string::npos, md);

  const auto chart = ht::ablation_chart(r);
  BOOST_TEST(chart.categories == (Vs{"Conv-1", "Conv-2", "Baseline"}), boost::test_tools::per_element());
  BOOST_TEST(!chart.zero_based);
  BOOST_REQUIRE(chart.series.size() == 2u);  // grouped per k
  BOOST_TEST(chart.series[1].name == "k = 5");
  BOOST_TEST(chart.series[1].values[0] == 90.0);
  BOOST_TEST(chart.series[1].errors[0] == 2.0);
  BOOST_TEST(chart.series[1].errors[2] == 0.0);      // one seed: no error bar
  BOOST_TEST(std::isnan(chart.series[1].values[1]));  // not run: no bar
  BOOST_TEST(chart.series[0].values[1] == 55.0);

  // runs.csv round trip, in order, exact.
  const auto dir = test::scratch_dir("ablation_aggregate");
  runs.write_long_csv(dir / "runs.csv");
  BOOST_TEST(slurp(dir / "runs.csv").find("variant,k,seed,top1,top5\nConv-1,5,0,88,99\n") == 0u);
  const auto back = ht::read_ablation_runs(dir / "runs.csv").records();
  BOOST_REQUIRE(back.size() == runs.records().size());
  for (size_t i = 0; i < back.size(); ++i) {
    BOOST_TEST(back[i].method == runs.records()[i].method);
    BOOST_TEST(back[i].k == runs.records()[i].k);
    BOOST_TEST(back[i].seed == runs.records()[i].seed);
    BOOST_TEST(back[i].top1 == runs.records()[i].top1);
  }
  BOOST_TEST(ht::read_ablation_runs(dir / "absent.csv").records().empty());
  // The same table with "variant" rows: its Markdown and wide CSV name the column so.
  BOOST_TEST(runs.markdown().find("| Variant |") == 0u, runs.markdown());
  BOOST_TEST(runs.wide_csv().find("variant,") == 0u, runs.wide_csv());
  ::halsal::io::write_file_atomic(dir / "bad.csv", "method,k,seed,top1,top5\n");
  BOOST_CHECK_THROW(ht::read_ablation_runs(dir / "bad.csv"), Error);
}

BOOST_AUTO_TEST_CASE(depth_ablation_writes_files_and_resumes) {
  const auto data = tiny_synthetic();
  const auto dir = test::scratch_dir("ablation_depth");
  ht::AblationOptions o;
  o.ks = {1};
  o.seeds = {0};
  o.experiment.config = tiny_config();
  o.out_dir = dir;
  std::ostringstream log;
  o.log = &log;
  Vs trained;
  o.on_cell = [&](const std::string& variant, const ht::CellResult& r) {
    trained.push_back(variant);
    BOOST_TEST(r.method == (variant == "Baseline" ? "rgb" : "scratch-sal"));
    BOOST_TEST(r.split.train.size() == 2u);
    BOOST_TEST(r.report.metrics.count() == 10);
  };
  using Depths = ht::type_list<Depth<1>, Depth<2>>;
  // ResNet-18 (11 M parameters) rather than AlexNet (61 M, mostly its classifier) keeps it quick.
  const auto first = ht::run_depth_ablation<ResNet<18>>(data, Depths{}, o);
  BOOST_TEST(trained == (Vs{"Conv-1", "Conv-2", "Baseline"}), boost::test_tools::per_element());
  BOOST_TEST(first.variants == (Vs{"Conv-1", "Conv-2", "Baseline"}), boost::test_tools::per_element());
  BOOST_TEST(first.title.find("ResNet") != std::string::npos, first.title);
  BOOST_REQUIRE(first.runs.records().size() == 3u);

  // runs.csv: exactly one row per cell, in training order, with the numbers of the result.
  const std::string runs = slurp(dir / "runs.csv");
  std::istringstream lines(runs);
  Vs rows;
  for (std::string line; std::getline(lines, line);) rows.push_back(line);
  BOOST_REQUIRE(rows.size() == 4u);
  BOOST_TEST(rows[0] == "variant,k,seed,top1,top5");
  const Vs labels{"Conv-1", "Conv-2", "Baseline"};
  for (size_t i = 0; i < 3; ++i) {
    const auto& r = first.runs.records()[i];
    BOOST_TEST(r.method == labels[i]);
    BOOST_TEST(rows[i + 1] == labels[i] + ",1,0," + ::halsal::format_exact(r.top1) + ",100");
    BOOST_TEST(std::fmod(r.top1, 10.0) == 0.0);  // 10 test images: multiples of 10 %
    BOOST_TEST(first.cell(labels[i], 1).mean == r.top1);
    BOOST_TEST(first.cell(labels[i], 1).n == 1);
  }
  const std::string md = slurp(dir / "results.md"), csv = slurp(dir / "results.csv"),
                    svg = slurp(dir / "ablation.svg");
  for (const auto& l : labels) {
    BOOST_TEST(md.find("| " + l + " |") != std::string::npos, l);
    BOOST_TEST(csv.find("\n" + l + ",1,1,") != std::string::npos, l);
    BOOST_TEST(svg.find(">" + l + "</text>") != std::string::npos, l);
  }
  BOOST_TEST(count_of(svg, "class=\"bar\"") == 3u);
  // Each variant against the baseline, paired over the same 10 test images.
  BOOST_TEST_REQUIRE(first.paired.size() == 2u);
  for (const auto& row : first.paired) {
    BOOST_TEST(row.diff.pairs == 10u);
    BOOST_TEST(row.diff.mean == first.cell(row.method, 1).mean - first.cell("Baseline", 1).mean,
               boost::test_tools::tolerance(1e-9));
    BOOST_TEST(md.find("| " + row.method + " | " + eval::to_text(row.diff) + " |") != std::string::npos, md);
  }
  BOOST_TEST(md.find("Paired difference to Baseline") != std::string::npos, md);
  BOOST_TEST(slurp(dir / "paired.csv").rfind("method,k,seeds,pairs,mean,lo,hi\nConv-1,1,0,10,", 0) == 0u);
  BOOST_TEST(std::filesystem::exists(dir / "cells" / "conv-2-k1-s0" / "metrics.jsonl"));
  BOOST_TEST(!std::filesystem::exists(dir / "cells" / "conv-2-k1-s0" / "checkpoints"));
  BOOST_TEST(count_of(log.str(), "skipped") == 0u);

  // A restart: every cell is skipped, the files are unchanged.
  trained.clear();
  log.str("");
  const auto second = ht::run_depth_ablation<ResNet<18>>(data, Depths{}, o);
  BOOST_TEST(trained.empty());
  BOOST_TEST(count_of(log.str(), "done before, skipped") == 3u, log.str());
  BOOST_TEST(slurp(dir / "runs.csv") == runs);
  BOOST_TEST(slurp(dir / "results.md") == md);
  BOOST_TEST(slurp(dir / "ablation.svg") == svg);
  BOOST_TEST(second.cell("Conv-2", 1).mean == first.cell("Conv-2", 1).mean);

  // Without the baseline, only the saliency variants are rows.
  o.include_baseline = false;
  const auto third = ht::run_depth_ablation<ResNet<18>>(data, Depths{}, o);
  BOOST_TEST(trained.empty());
  BOOST_TEST(third.variants == (Vs{"Conv-1", "Conv-2"}), boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(a_and_b_need_step_one_data) {
  const auto data = tiny_synthetic();
  const auto dir = test::scratch_dir("ablation_errors");
  ht::AblationOptions o;
  o.ks = {1};
  o.experiment.config = tiny_config();
  o.out_dir = dir / "out";
  o.log = nullptr;
  int trained = 0;
  o.on_cell = [&](const std::string&, const ht::CellResult&) { ++trained; };
  auto message = [&] {
    return test::error_message([&] { ht::run_fusion_ablation<ResNet<18>, Depth<1>>(data, ht::type_list<AfterStage<3>>{}, o); });
  };
  o.method = "A";
  BOOST_TEST(message().find("Step I dataset") != std::string::npos, message());
  o.method = "B";
  o.step_one_data = data;
  BOOST_TEST(message().find("--weights") != std::string::npos, message());
  o.experiment.backbone_weights = dir / "nope.pth";
  BOOST_TEST(message().find("nope.pth") != std::string::npos, message());
  o.method = "rgb";
  BOOST_TEST(message().find("method must be scratch-sal, A or B") != std::string::npos, message());
  o.method = "scratch-sal";
  o.ks = {0};
  BOOST_TEST(message().find("k must be") != std::string::npos, message());
  BOOST_TEST(trained == 0);
  BOOST_TEST(!std::filesystem::exists(o.out_dir / "runs.csv"));
}

BOOST_AUTO_TEST_CASE(step_one_runs_once_per_variant) {
  const auto data = tiny_synthetic();
  const auto dir = test::scratch_dir("ablation_step_one");
  RgbNet<ResNet<18>> source(2);  // an "ImageNet" ResNet-18 with a 2-class head
  io::save_weights(*source->backbone, dir / "r18.safetensors");
  ht::AblationOptions o;
  o.method = "B";
  o.ks = {1};
  o.experiment.config = tiny_config();
  o.experiment.backbone_weights = dir / "r18.safetensors";
  o.step_one_data = data;
  o.include_baseline = false;
  o.out_dir = dir / "out";
  std::ostringstream log;
  o.log = &log;
  int trained = 0;
  o.on_cell = [&](const std::string&, const ht::CellResult& r) {
    ++trained;
    BOOST_TEST(r.method == "B");
  };
  const auto step_one = o.out_dir / "stepI-after-stage-3.safetensors";
  ht::run_fusion_ablation<ResNet<18>, Depth<1>>(data, ht::type_list<AfterStage<3>>{}, o);
  BOOST_TEST(trained == 1);
  BOOST_REQUIRE(std::filesystem::exists(step_one));
  BOOST_TEST(count_of(log.str(), "Step I ->") == 1u, log.str());
  const auto saved = io::read_weights(step_one);
  BOOST_TEST(saved.size() == 4u);  // conv1 and score, weight and bias: Depth<1>'s branch
  for (const auto& kv : saved) BOOST_TEST(kv.key().rfind("saliency.", 0) == 0u, kv.key());

  // A second seed reuses the cached Step I file.
  log.str("");
  o.seeds = {0, 1};
  const auto r = ht::run_fusion_ablation<ResNet<18>, Depth<1>>(data, ht::type_list<AfterStage<3>>{}, o);
  BOOST_TEST(trained == 2);
  BOOST_TEST(count_of(log.str(), "Step I ->") == 0u, log.str());
  BOOST_TEST(count_of(log.str(), "skipped") == 1u, log.str());
  BOOST_TEST(r.cell("After stage 3", 1).n == 2);

  // Sharded, method B needs the Step I made first (step_one_only), by the variant's own shard.
  o.out_dir = dir / "sharded";
  o.shard = ht::parse_shard("1/2");
  auto message = [&] {
    return test::error_message([&] { ht::run_fusion_ablation<ResNet<18>, Depth<1>>(data, ht::type_list<AfterStage<3>>{}, o); });
  };
  const std::string refused = message();
  BOOST_TEST(refused.find("--step-one-only") != std::string::npos, refused);
  BOOST_TEST(refused.find("stepI-after-stage-3.safetensors") != std::string::npos, refused);
  BOOST_TEST(trained == 2);
  log.str("");
  o.mode = ht::AblationMode::step_one_only;
  ht::run_fusion_ablation<ResNet<18>, Depth<1>>(data, ht::type_list<AfterStage<3>>{}, o);
  BOOST_TEST(!std::filesystem::exists(o.out_dir / "stepI-after-stage-3.safetensors"));  // variant 0 is shard 0's
  o.shard = ht::parse_shard("0/2");
  ht::run_fusion_ablation<ResNet<18>, Depth<1>>(data, ht::type_list<AfterStage<3>>{}, o);
  BOOST_TEST(std::filesystem::exists(o.out_dir / "stepI-after-stage-3.safetensors"));
  BOOST_TEST(count_of(log.str(), "Step I ->") == 1u, log.str());
  BOOST_TEST(trained == 2);  // Step I only
  o.mode = ht::AblationMode::run;
  o.shard = ht::parse_shard("1/2");  // cell 1: seed 1
  log.str("");
  ht::run_fusion_ablation<ResNet<18>, Depth<1>>(data, ht::type_list<AfterStage<3>>{}, o);
  BOOST_TEST(trained == 3);
  BOOST_TEST(count_of(log.str(), "Step I ->") == 0u, log.str());
  BOOST_TEST(count_of(log.str(), "other shards are not yet") == 1u, log.str());
  o.mode = ht::AblationMode::step_one_only;
  o.method = "scratch-sal";
  BOOST_TEST(message().find("only methods A and B have a Step I") != std::string::npos, message());
}

BOOST_AUTO_TEST_CASE(shards_write_what_one_process_writes) {
  const auto data = tiny_synthetic();
  const auto dir = test::scratch_dir("ablation_shards");
  ht::AblationOptions o;
  o.ks = {1};
  o.seeds = {0, 1};
  o.experiment.config = tiny_config();
  o.log = nullptr;
  using Depths = ht::type_list<Depth<1>>;
  o.out_dir = dir / "single";
  const auto single = ht::run_depth_ablation<ResNet<18>>(data, Depths{}, o);
  BOOST_REQUIRE(single.runs.records().size() == 4u);

  // Two shards, one after the other; cells count variant, k, seed: shard 0 has cells 0 and 2.
  o.out_dir = dir / "two";
  Vs trained;
  o.on_cell = [&](const std::string& v, const ht::CellResult& r) {
    trained.push_back(v + "/" + std::to_string(r.seed));
  };
  o.shard = ht::parse_shard("0/2");
  ht::run_depth_ablation<ResNet<18>>(data, Depths{}, o);
  BOOST_TEST(trained == (Vs{"Conv-1/0", "Baseline/0"}), boost::test_tools::per_element());
  BOOST_TEST(std::filesystem::exists(o.out_dir / "shards" / "rank-0-of-2" / "runs.csv"));
  BOOST_TEST(!std::filesystem::exists(o.out_dir / "results.md"));  // shard 1 has not run
  trained.clear();
  o.shard = ht::parse_shard("1/2");
  const auto two = ht::run_depth_ablation<ResNet<18>>(data, Depths{}, o);
  BOOST_TEST(trained == (Vs{"Conv-1/1", "Baseline/1"}), boost::test_tools::per_element());
  BOOST_TEST(two.cell("Conv-1", 1).n == 2);
  // The shard that finished last wrote the results: those of one process, byte for byte.
  const Vs names{"runs.csv", "results.md", "results.csv", "paired.csv", "ablation.svg"};
  for (const auto& name : names)
    BOOST_TEST((slurp(dir / "single" / name) == slurp(dir / "two" / name) && !slurp(dir / "two" / name).empty()), name);

  // A merge writes them again from the shards' files, training nothing.
  for (const auto& name : names) std::filesystem::remove(o.out_dir / name);
  o.mode = ht::AblationMode::merge;
  o.shard = ht::Shard{};
  trained.clear();
  ht::run_depth_ablation<ResNet<18>>(data, Depths{}, o);
  BOOST_TEST(trained.empty());
  for (const auto& name : names) BOOST_TEST(slurp(dir / "single" / name) == slurp(dir / "two" / name), name);

  // Another shard (or a resume) with other settings in the same folder is refused; nothing changes.
  auto message = [&] { return test::error_message([&] { ht::run_depth_ablation<ResNet<18>>(data, Depths{}, o); }); };
  const std::string settings = slurp(o.out_dir / "settings.json");
  o.mode = ht::AblationMode::run;
  o.shard = ht::parse_shard("1/2");
  o.experiment.config.epochs += 1;
  const std::string other = message();
  BOOST_TEST(other.find("other settings") != std::string::npos, other);
  BOOST_TEST(other.find("config.epochs") != std::string::npos, other);
  BOOST_TEST(slurp(o.out_dir / "settings.json") == settings);
  BOOST_TEST(trained.empty());
  // A merge of a folder with no ablation.
  o.mode = ht::AblationMode::merge;
  o.out_dir = dir / "empty";
  BOOST_TEST(message().find("nothing to merge") != std::string::npos, message());
}

BOOST_AUTO_TEST_SUITE_END()
