// The experiment layer: the protocol's table files for known numbers, resuming a protocol without
// re-training finished cells, run_cell's errors, Step I's output file, and the demo pipeline.
#include <halsal/halsal.hpp>
#include <halsal/demo/demo.hpp>
#include <halsal/experiments/experiment.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>

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

BOOST_AUTO_TEST_CASE(demo_classes_are_disjoint_and_share_their_features) {
  const auto [base, novel] = ht::demo_class_specs();
  std::set<int> base_petals, novel_petals, base_shades, novel_shades;
  for (const auto& b : base) {
    BOOST_TEST((std::find(novel.begin(), novel.end(), b) == novel.end()), b.name() << " is in both sets");
    base_petals.insert(b.petals);
    base_shades.insert(b.shade);
  }
  for (const auto& n : novel) {
    novel_petals.insert(n.petals);
    novel_shades.insert(n.shade);
  }
  BOOST_TEST(base.size() == 6u);
  BOOST_TEST(novel.size() == 6u);
  BOOST_TEST((base_petals == novel_petals && base_petals.size() == 4u));  // what the base set teaches ...
  BOOST_TEST((base_shades == novel_shades && base_shades.size() == 3u));  // ... the novel set needs
  const auto sets = ht::demo_datasets(ht::DemoDataOptions{});
  for (const auto& name : sets.novel->class_names)
    BOOST_TEST((std::find(sets.pretrain->class_names.begin(), sets.pretrain->class_names.end(), name) ==
                sets.pretrain->class_names.end()));
  BOOST_TEST(sets.step_one->class_names == sets.pretrain->class_names);
  // Step I's images are other images of the same classes.
  BOOST_TEST(sets.step_one->generator->describe() != sets.pretrain->generator->describe());
}

// The whole demo in miniature (a few images, one epoch each): every file, the Step I check, the
// table rows with their paired differences and saliency scores.
BOOST_AUTO_TEST_CASE(demo_pipeline_writes_its_files_and_the_step_one_report) {
  const auto dir = test::scratch_dir("experiment_demo");
  ht::DemoOptions o;
  o.out_dir = dir / "out";
  o.data.base_specs = {{5, 0, 0}, {7, 2, 0}};
  o.data.novel_specs = {{6, 1, 0}, {8, 0, 0}};
  o.data.pretrain_per_class = 4;
  o.data.step_one_per_class = 5;
  o.data.novel_per_class = 4;
  o.data.size = 48;
  o.data.clutter = 2;
  o.data.distractors = 2;
  o.k = 1;
  o.split = {2, 1};
  o.seeds = {0, 1};
  for (auto* c : {&o.pretrain, &o.step_one, &o.fewshot}) {
    c->epochs = 1;
    c->batch_size = 4;
    c->workers = 0;
    c->quiet = true;
  }
  o.step_one_holdout = 0.4;  // 4 of the 10 Step I images
  o.gallery_rows = 2;
  o.log = nullptr;

  // Bad options stop before anything trains, naming what is wrong.
  auto too_few = o;
  too_few.data.novel_per_class = 3;
  test::expect_error([&] { ht::run_demo(too_few); }, {"novel_per_class is 3", "needs 2 test + 1 val + 1 train = 4"});
  auto overlapping = o;
  overlapping.data.novel_specs.push_back({5, 0, 0});
  test::expect_error([&] { ht::run_demo(overlapping); }, {"5-petal magenta plain", "both a base and a novel class"});
  auto foreign = o;
  foreign.out_dir = dir / "foreign";
  std::filesystem::create_directories(foreign.out_dir / "protocol");
  std::ofstream(foreign.out_dir / "protocol" / "notes.txt") << "mine\n";
  test::expect_error([&] { ht::run_demo(foreign); }, {"protocol", "will not delete it"});
  BOOST_TEST(std::filesystem::exists(foreign.out_dir / "protocol" / "notes.txt"));

  const ht::DemoResult r = ht::run_demo(o);
  const ht::DemoFiles f(o.out_dir);
  for (const auto& file : {f.results_md, f.results_csv, f.gallery_png, f.pretrained_weights, f.step_one_weights,
                           f.protocol_dir / "table.md", f.protocol_dir / "paired.csv", o.out_dir / "stepI-heldout.png"})
    BOOST_TEST(std::filesystem::exists(file), file << " is missing");
  BOOST_TEST((r.map_size == std::vector<int64_t>{6, 6}));  // layer2 of ResNet-18 at 48 px
  BOOST_TEST(r.pretrain.epochs_done == 1);
  // Step I: 6 images trained on, 4 held out and compared with s = 0; the report is in the file.
  BOOST_TEST(r.step_one.checked);
  BOOST_TEST(r.step_one.train_images == 6u);
  BOOST_TEST(r.step_one.heldout.images == 4u);
  BOOST_TEST(r.step_one.heldout.top1_gain.pairs == 4u);
  BOOST_TEST(r.step_one_saliency.area_share > 0.0);
  const auto stored = ht::read_step_one_report(f.step_one_weights);
  BOOST_TEST(stored.contains("heldout"));
  // The protocol's rows, every method on both seeds.
  BOOST_TEST_REQUIRE(r.rows.size() == 4u);
  const std::vector<std::string> order{"NCM (frozen features)", "Baseline-RGB", "Approach A", "Approach B"};
  for (size_t i = 0; i < 4; ++i) {
    BOOST_TEST(r.rows[i].method == order[i]);
    BOOST_TEST(r.rows[i].top1.n == 2);
  }
  BOOST_TEST(!r.rows[1].vs_baseline.has_value());
  BOOST_TEST(!r.rows[1].saliency.has_value());
  const auto* b = r.row("Approach B");
  BOOST_TEST_REQUIRE(b != nullptr);
  BOOST_TEST_REQUIRE(b->vs_baseline.has_value());
  BOOST_TEST(b->vs_baseline->pairs == 8u);  // 2 seeds x 2 classes x 2 test images
  BOOST_TEST(b->vs_baseline->groups == 2);
  BOOST_TEST_REQUIRE(b->saliency.has_value());
  BOOST_TEST(b->saliency->images == 8);
  BOOST_TEST(b->saliency->ratio_per_seed.size() == 2u);
  BOOST_TEST(r.gallery_better + r.gallery_worse <= 4u);
  const std::string md = slurp(f.results_md), csv = slurp(f.results_csv);
  BOOST_TEST(md.find("| Approach B | ") != std::string::npos, md);
  BOOST_TEST(md.find("Step I check on 4 held-out images") != std::string::npos, md);
  BOOST_TEST(std::count(csv.begin(), csv.end(), '\n') == 5);
  BOOST_TEST(csv.rfind("method,k,seeds,top1_mean", 0) == 0u, csv);
  BOOST_TEST(csv.find("Approach B,1,2,") != std::string::npos, csv);
}

// A process's place in the world: --shard I/N, torchrun's and Slurm's environment, and the errors.
BOOST_AUTO_TEST_CASE(shards_from_flags_and_environment) {
  const ht::Shard s = ht::parse_shard("1/3");
  BOOST_TEST(s.index == 1);
  BOOST_TEST(s.count == 3);
  BOOST_TEST(s.folder() == "rank-1-of-3");
  BOOST_TEST(s.owns(1));
  BOOST_TEST(s.owns(4));
  BOOST_TEST(!s.owns(0));
  BOOST_TEST(!s.owns(5));
  BOOST_TEST(!ht::Shard{}.sharded());
  auto message = [](const std::function<void()>& f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  BOOST_TEST(message([] { ht::parse_shard("3/2"); }).find("rank 3 is not below the world size 2") != std::string::npos);
  BOOST_TEST(message([] { ht::parse_shard("-1/2"); }).find("expected I/N") != std::string::npos);
  BOOST_TEST(message([] { ht::parse_shard("0/0"); }).find("at least one process") != std::string::npos);
  BOOST_TEST(message([] { ht::parse_shard("1/2 "); }).find("expected I/N") != std::string::npos);

  using Env = std::map<std::string, std::string>;
  auto from = [](const Env& env) {
    return ht::shard_from_environment([env](const char* name) -> const char* {
      const auto it = env.find(name);
      return it == env.end() ? nullptr : it->second.c_str();
    });
  };
  BOOST_TEST(!from({}).sharded());
  const auto t = from({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "9"}});
  BOOST_TEST(t.index == 3);  // torchrun's variables win over Slurm's
  BOOST_TEST(t.count == 4);
  BOOST_TEST(t.local_rank == 1);
  BOOST_TEST(t.source == "torchrun");
  const auto u = from({{"SLURM_PROCID", "2"}, {"SLURM_NTASKS", "5"}, {"SLURM_LOCALID", "0"}});
  BOOST_TEST(u.index == 2);
  BOOST_TEST(u.count == 5);
  BOOST_TEST(u.source == "Slurm");
  BOOST_TEST(message([&] { from({{"WORLD_SIZE", "2"}}); }).find("WORLD_SIZE is set but RANK is not") != std::string::npos);
  BOOST_TEST(message([&] { from({{"RANK", "2"}, {"WORLD_SIZE", "2"}}); }).find("rank 2 is not below the world size 2") !=
             std::string::npos);
  BOOST_TEST(message([&] { from({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "two"}}); })
                 .find("SLURM_NTASKS=two is not a world size") != std::string::npos);
  BOOST_TEST(message([&] { from({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "x"}}); })
                 .find("LOCAL_RANK=x is not a local rank") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(data_parallel_world_from_environment) {
  namespace hdist = halsal::dist;
  using Env = std::map<std::string, std::string>;
  auto from = [](const Env& env) {
    return hdist::world_from_environment([env](const char* name) -> const char* {
      const auto it = env.find(name);
      return it == env.end() ? nullptr : it->second.c_str();
    });
  };
  auto message = [&](const Env& env) { return test::error_message([&] { from(env); }); };
  BOOST_TEST(from({}).size == 1);
  const auto w = from({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "10.0.0.7"},
                       {"MASTER_PORT", "29400"}, {"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"HALSAL_DIST_TIMEOUT", "9"}});
  BOOST_TEST(w.rank == 1);
  BOOST_TEST(w.size == 2);
  BOOST_TEST(w.master_addr == "10.0.0.7");
  BOOST_TEST(w.master_port == 29400);
  BOOST_TEST(w.agent_store);
  BOOST_TEST(w.timeout.count() == 9000);
  BOOST_TEST(w.device("cuda") == "cuda:1");
  BOOST_TEST(w.device("cpu") == "cpu");
  BOOST_TEST(from({{"RANK", "0"}, {"WORLD_SIZE", "1"}}).device("cuda") == "cuda");
  BOOST_TEST(message({{"WORLD_SIZE", "2"}}).find("WORLD_SIZE is set but RANK is not") != std::string::npos);
  BOOST_TEST(message({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}})
                 .find("RANK=2 is not a whole number in [0, 1]") != std::string::npos);
  BOOST_TEST(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}}).find("needs MASTER_ADDR and MASTER_PORT") !=
             std::string::npos);
  BOOST_TEST(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "99999"}})
                 .find("MASTER_PORT=99999") != std::string::npos);
  // A world of one needs no store; a rank outside the world is refused.
  BOOST_TEST(hdist::ProcessGroup(hdist::WorldOptions{}).size() == 1);
  hdist::WorldOptions bad;
  bad.rank = 2;
  bad.size = 2;
  BOOST_CHECK_THROW(hdist::ProcessGroup{bad}, Error);
  // The transport: HALSAL_DIST_BACKEND, "auto" picks NCCL only for CUDA and only where built with it.
  BOOST_TEST(from({}).backend_for("cpu") == "gloo");
  BOOST_TEST(from({}).backend_for("cuda:0") == (hdist::nccl_available() ? "nccl" : "gloo"));
  BOOST_TEST(from({{"HALSAL_DIST_BACKEND", "gloo"}}).backend_for("cuda:0") == "gloo");
  BOOST_TEST(message({{"HALSAL_DIST_BACKEND", "mpi"}}).find("HALSAL_DIST_BACKEND=mpi is not gloo, nccl or auto") !=
             std::string::npos);
}

namespace {
// A port nobody listens on now (the kernel's choice for port 0).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
    port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}
}  // namespace

// Two ranks of one world (threads of this process, Gloo on localhost): the gradients the reducer
// leaves are the mean of each rank's own, buckets start while backward runs, a parameter without a
// gradient keeps none, and a changed set of trainable parameters is planned again.
BOOST_AUTO_TEST_CASE(gradient_reducer_averages_during_backward) {
  namespace hdist = halsal::dist;
  if (!hdist::available()) {
    BOOST_TEST_MESSAGE("skipped: this halsal was built without c10d");
    return;
  }
  torch::manual_seed(3);
  // w1 16x8, b1, w2 4x16, b2, frozen (no gradient wanted), and first (so that its bucket is the last
  // one, as backward's order goes) one never in the graph
  const std::vector<torch::Tensor> base{torch::randn({16, 8}), torch::randn({16}), torch::randn({4, 16}),
                                        torch::randn({4}),     torch::randn({3}),  torch::randn({5})};
  const std::vector<torch::Tensor> inputs{torch::randn({6, 8}), torch::randn({6, 8})};
  auto leaves = [&] {
    std::vector<torch::Tensor> p;
    for (size_t i = 0; i < base.size(); ++i) p.push_back(base[i].clone().requires_grad_(i != 4));
    return p;
  };
  auto loss_of = [](const std::vector<torch::Tensor>& p, const torch::Tensor& x) {
    const auto h = torch::relu(torch::addmm(p[1], x, p[0].t()));
    return (torch::addmm(p[3], h, p[2].t()) * p[4].sum()).pow(2).mean();
  };
  // The reference: each rank's gradients alone, averaged; the second step trains w2 and b2 only.
  std::vector<std::vector<torch::Tensor>> expected(2);
  for (int step = 0; step < 2; ++step) {
    std::vector<torch::Tensor> sum;
    for (const auto& x : inputs) {
      auto p = leaves();
      if (step == 1) p[0].requires_grad_(false), p[1].requires_grad_(false);
      loss_of(p, x.mul(step + 1)).backward();
      for (size_t i = 0; i < 4; ++i) {
        const auto g = p[i].grad().defined() ? p[i].grad() : torch::zeros_like(p[i]);
        if (sum.size() < 4) sum.push_back(g.clone());
        else sum[i] += g;
      }
    }
    for (auto& g : sum) g /= 2;
    expected[static_cast<size_t>(step)] = sum;
  }

  const int port = free_port();
  struct Outcome {
    std::string error;
    std::vector<std::vector<torch::Tensor>> grads;
    std::vector<bool> unused_has_grad;
    std::vector<size_t> buckets, early;
  };
  std::vector<Outcome> outcome(2);
  std::vector<std::thread> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.emplace_back([&, r] {
      auto& o = outcome[static_cast<size_t>(r)];
      try {
        hdist::WorldOptions w;
        w.rank = r;
        w.size = 2;
        w.master_port = port;
        w.timeout = std::chrono::seconds(30);
        auto pg = std::make_shared<hdist::ProcessGroup>(w);
        auto p = leaves();
        // The reducer's order is the network's: the unused parameter first.
        std::vector<torch::Tensor> in_order{p[5], p[0], p[1], p[2], p[3], p[4]};
        // Tiny buckets: several of them, so that some fill (and start) before backward ends.
        hdist::GradientReducer reducer(pg, in_order, /*bucket_bytes=*/64 * 4, /*first_bucket_bytes=*/4 * 4);
        for (int step = 0; step < 2; ++step) {
          for (auto& t : p)
            if (t.grad().defined()) t.mutable_grad().zero_();
          if (step == 1) p[0].requires_grad_(false), p[1].requires_grad_(false);
          const auto before = p[0].grad().defined() ? p[0].grad().clone() : torch::Tensor();
          reducer.prepare();
          loss_of(p, inputs[static_cast<size_t>(r)].mul(step + 1)).backward();
          reducer.finish();
          std::vector<torch::Tensor> g;
          for (size_t i = 0; i < 4; ++i) g.push_back(p[i].grad().defined() ? p[i].grad().clone() : torch::zeros_like(p[i]));
          if (step == 1) g[0] = before;  // frozen now: untouched by the reducer
          o.grads.push_back(g);
          o.unused_has_grad.push_back(p[5].grad().defined());
          o.buckets.push_back(reducer.buckets());
          o.early.push_back(reducer.started_during_backward());
        }
      } catch (const std::exception& e) {
        o.error = e.what();
      }
    });
  for (auto& t : ranks) t.join();
  for (size_t r = 0; r < 2; ++r) {
    BOOST_TEST_CONTEXT("rank " << r) {
      BOOST_TEST_REQUIRE(outcome[r].error == "");
      for (size_t step = 0; step < 2; ++step) {
        for (size_t i = step == 0 ? 0 : 2; i < 4; ++i)
          BOOST_TEST(torch::allclose(outcome[r].grads[step][i], expected[step][i], 1e-5, 1e-6),
                     "step " << step << " tensor " << i);
        BOOST_TEST(!outcome[r].unused_has_grad[step]);
      }
      // Step 0, backward's order: b2 (the first bucket, 16 bytes), w2, b1, w1, unused: 5 buckets; the
      // first four fill during backward and start there, the unused parameter's waits for finish().
      BOOST_TEST(outcome[r].buckets[0] == 5u);
      BOOST_TEST(outcome[r].early[0] == 4u);
      BOOST_TEST(outcome[r].buckets[1] == 3u);  // w1 and b1 left the plan
      BOOST_TEST(outcome[r].early[1] == 2u);
    }
  }
  // A frozen step leaves w1's gradient as it was (zeroed before the step): the reducer wrote nothing there.
  BOOST_TEST(outcome[0].grads[1][0].abs().sum().item<double>() == 0.0);
}

BOOST_AUTO_TEST_SUITE_END()
