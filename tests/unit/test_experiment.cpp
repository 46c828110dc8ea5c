// The experiment layer: the protocol's table files for known numbers, resuming a protocol without
// re-training finished cells, run_cell's errors, and Step I's output file.
#include <halsal/halsal.hpp>
#include <halsal/train/experiment.hpp>

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

BOOST_AUTO_TEST_SUITE(test_experiment)

BOOST_AUTO_TEST_CASE(protocol_tables_for_known_numbers) {
  eval::ResultsTable t;
  t.set_method_order({"Baseline-RGB", "Approach B"});
  t.add("Approach B", 1, 0, 50, 90);
  t.add("Approach B", 1, 1, 60, 100);  // mean 55, sample std sqrt(50) = 7.07
  t.add("Baseline-RGB", 1, 0, 40, 80);
  t.add("Baseline-RGB", 1, 1, 40, 80);  // std 0
  const auto dir = test::scratch_dir("experiment_tables");
  ht::write_protocol_tables(t, dir);
  const std::string wide = slurp(dir / "table.csv");
  BOOST_TEST(wide == "method,1,1_std,AVG\nBaseline-RGB,40.00,0.00,40.00\nApproach B,55.00,7.07,55.00\n");
  const std::string md = slurp(dir / "table.md");
  BOOST_TEST(md.find("| Approach B | 55.0 ± 7.1 | 55.0 |") != std::string::npos, md);
  BOOST_TEST(md.find("| Approach B | 95.0 ± 7.1 | 95.0 |") != std::string::npos, md);  // top-5 table
  const auto back = eval::ResultsTable::read_long_csv(dir / "runs.csv");
  BOOST_TEST(back.records().size() == 4u);
  BOOST_TEST(back.cell("Approach B", 1).mean == 55.0);
}

BOOST_AUTO_TEST_CASE(protocol_resumes_without_retraining) {
  const auto data = tiny_synthetic(2, 14);
  const auto dir = test::scratch_dir("experiment_protocol");
  ht::ProtocolOptions p;
  p.methods = {"rgb", "scratch-sal"};
  p.ks = {1, 2};
  p.seeds = {0};
  p.experiment.config = tiny_config();
  p.out_dir = dir;
  p.log = nullptr;
  int trained = 0;
  p.on_cell = [&](const ht::CellResult& r) {
    ++trained;
    BOOST_TEST(r.split.train.size() == static_cast<size_t>(2 * r.k));
    BOOST_TEST(r.split.test.size() == 10u);
    BOOST_TEST(r.report.metrics.count() == 10);
  };
  const auto first = ht::run_protocol<ResNet<18>>(data, p);
  BOOST_TEST(trained == 4);
  BOOST_TEST(first.records().size() == 4u);
  for (const auto& r : first.records()) {
    BOOST_TEST(r.top1 >= 0.0);
    BOOST_TEST(r.top1 <= 100.0);
    BOOST_TEST(std::fmod(r.top1, 10.0) == 0.0);  // 10 test images: multiples of 10 %
    BOOST_TEST(r.top5 == 100.0);                 // 2 classes: top-5 is always right
  }
  const std::string runs = slurp(dir / "runs.csv"), md = slurp(dir / "table.md"),
                    wide = slurp(dir / "table.csv"), jsonl = slurp(dir / "runs.jsonl");
  BOOST_TEST(std::count(jsonl.begin(), jsonl.end(), '\n') == 4);
  BOOST_TEST(!std::filesystem::exists(dir / "cells" / "rgb-k1-s0" / "checkpoints"));
  BOOST_TEST(std::filesystem::exists(dir / "cells" / "rgb-k1-s0" / "metrics.jsonl"));

  trained = 0;  // a restart: nothing to do, files unchanged
  const auto second = ht::run_protocol<ResNet<18>>(data, p);
  BOOST_TEST(trained == 0);
  BOOST_TEST(slurp(dir / "runs.csv") == runs);
  BOOST_TEST(slurp(dir / "table.md") == md);
  BOOST_TEST(slurp(dir / "table.csv") == wide);
  BOOST_TEST(slurp(dir / "runs.jsonl") == jsonl);
  BOOST_TEST(second.cell("Baseline-RGB", 2).mean == first.cell("Baseline-RGB", 2).mean);

  p.methods = {"rgb"};  // a wider grid: only the new cell trains
  p.ks = {1, 2, 3};
  const auto third = ht::run_protocol<ResNet<18>>(data, p);
  BOOST_TEST(trained == 1);
  BOOST_TEST(third.records().size() == 5u);
  BOOST_TEST(third.has("Baseline-RGB", 3, 0));
}

// A cell's network is initialised from the cell's seed, not from whatever ran before it in the
// process, so a resumed protocol fills the cells a fresh one would.
BOOST_AUTO_TEST_CASE(a_cell_does_not_depend_on_what_ran_before) {
  const auto data = tiny_synthetic(2, 14);
  ht::ExperimentOptions o;
  o.config = tiny_config();
  o.config.freeze_batchnorm = true;  // bit-reproducible on the CPU
  auto trained_weights = [&](uint64_t seed) {
    std::vector<torch::Tensor> w;
    for (const auto& kv : io::state_dict(*ht::run_cell<ResNet<18>>("scratch-sal", data, 1, seed, o).model))
      w.push_back(kv.value().detach().clone());
    return w;
  };
  const auto first = trained_weights(0);
  torch::randn({1000});  // other work in between moves torch's generator
  const auto again = trained_weights(0);
  const auto other_seed = trained_weights(1);
  BOOST_TEST_REQUIRE(first.size() == again.size());
  size_t differing = 0, differing_other_seed = 0;
  for (size_t i = 0; i < first.size(); ++i) {
    differing += !torch::equal(first[i], again[i]);
    differing_other_seed += !torch::equal(first[i], other_seed[i]);
  }
  BOOST_TEST(differing == 0u, differing << " tensors differ between two runs of the same cell");
  BOOST_TEST(differing_other_seed > 0u);
}

BOOST_AUTO_TEST_CASE(k_and_seed_lists) {
  BOOST_TEST((ht::parse_k_list("1,5,10,K") == std::vector<int>{1, 5, 10, hd::kOfficial}));
  BOOST_TEST((ht::parse_seed_list("0,2,1234567890123456789") == std::vector<uint64_t>{0, 2, 1234567890123456789ull}));
  BOOST_TEST((ht::parse_seed_list("18446744073709551615") == std::vector<uint64_t>{18446744073709551615ull}));
  try {
    ht::parse_seed_list("18446744073709551616");  // 2^64
    BOOST_FAIL("no error");
  } catch (const halsal::Error& e) {
    BOOST_TEST(std::string(e.what()).find("larger than the largest seed") != std::string::npos, e.what());
  }
  BOOST_CHECK_THROW(ht::parse_k_list("1,x"), halsal::Error);
  BOOST_CHECK_THROW(ht::parse_k_list(""), halsal::Error);
  BOOST_CHECK_THROW(ht::parse_seed_list("-1"), halsal::Error);
  BOOST_CHECK_THROW(ht::parse_seed_list("1e3"), halsal::Error);
  try {
    ht::parse_seed_list("0,abc");
    BOOST_FAIL("no error");
  } catch (const halsal::Error& e) {
    BOOST_TEST(std::string(e.what()).find("'abc'") != std::string::npos);
  }
}

BOOST_AUTO_TEST_CASE(run_cell_errors) {
  const auto data = tiny_synthetic(2, 14);
  ht::ExperimentOptions o;
  o.config = tiny_config();
  auto message = [&](const std::string& method) {
    try {
      ht::run_cell<ResNet<18>>(method, data, 1, 0, o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  BOOST_TEST(message("A").find("Step I") != std::string::npos, message("A"));
  BOOST_TEST(message("B").find("Step I") != std::string::npos);
  BOOST_TEST(message("C").find("unknown method 'C'") != std::string::npos);
  o.step_one_weights = test::scratch_dir("experiment_errors") / "missing.safetensors";
  BOOST_TEST(message("A").find("missing.safetensors") != std::string::npos, message("A"));
  o.step_one_weights.clear();
  o.backbone_weights = test::scratch_dir("experiment_errors") / "nope.pth";
  BOOST_TEST(message("rgb").find("nope.pth") != std::string::npos, message("rgb"));
  BOOST_CHECK_THROW(ht::profile("slow"), Error);
  BOOST_TEST(ht::profile("fast").image_size == 160);
  BOOST_TEST(ht::profile("paper").image_size == 224);
}

BOOST_AUTO_TEST_CASE(step_one_writes_only_the_saliency_branch) {
  const auto data = tiny_synthetic(2, 14);
  const auto dir = test::scratch_dir("experiment_step_one");
  // A torchvision-named backbone file with a 2-class "ImageNet" head.
  RgbNet<ResNet<18>> source(2);
  io::save_weights(*source->backbone, dir / "r18.safetensors");
  const auto out = dir / "stepI.safetensors";
  const auto fit = ht::run_step_one<ResNet<18>>(data, dir / "r18.safetensors", tiny_config(), out);
  BOOST_TEST(fit.epochs_done == 1);
  const auto saved = io::read_weights(out);
  HalSalNet<ResNet<18>> reference(2);
  size_t expected = 0;
  for (const auto& kv : io::state_dict(*reference)) expected += kv.key().rfind("saliency.", 0) == 0;
  BOOST_TEST(saved.size() == expected);
  BOOST_TEST(expected >= 10u);  // 5 convolutions + score, weight and bias each
  for (const auto& kv : saved) BOOST_TEST(kv.key().rfind("saliency.", 0) == 0u, kv.key());

  // Step II loads exactly these tensors, and the backbone file without its head.
  HalSalNet<ResNet<18>> net(3);
  ht::detail::load_step_one(net, out);
  io::load_weights(*net, dir / "r18.safetensors", ht::detail::backbone_load_options<HalSalNet<ResNet<18>>>(false));
  const auto state = io::state_dict(*net);
  for (const auto& kv : saved) BOOST_TEST(torch::equal(state[kv.key()], kv.value()), kv.key());
  BOOST_TEST(torch::equal(state["backbone.conv1.weight"], source->backbone->named_parameters()["conv1.weight"]));
  BOOST_TEST(state["backbone.fc.weight"].size(0) == 3);  // the new head was kept
}

BOOST_AUTO_TEST_SUITE_END()
