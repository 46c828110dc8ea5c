// The few-shot recipe and its evidence: pooled features and the cosine head, nearest class mean,
// imprinting, the head-only warm-up, paired bootstrap differences, Step I's held-out check, and
// the protocol's settings guard.
#include <halsal/halsal.hpp>
#include <halsal/experiments/experiment.hpp>

#include <fstream>
#include <map>

#include "test_support.hpp"
#include "tiny_data.hpp"

using namespace halsal;
namespace hd = halsal::data;
namespace ht = halsal::train;
using test::expect_error;
using test::slurp;
using test::tiny_config;
using test::tiny_synthetic;

namespace {

std::vector<torch::Tensor> snapshot(torch::nn::Module& m) {
  std::vector<torch::Tensor> w;
  for (const auto& kv : io::state_dict(m)) w.push_back(kv.value().detach().clone());
  return w;
}

// SGD, frozen BatchNorm, imprinted cosine head with a one-epoch warm-up: deterministic on the CPU.
ht::TrainConfig recipe_config() {
  auto c = tiny_config();
  c.optimizer = "sgd";
  c.lr = 0.01;
  c.freeze_batchnorm = true;
  c.head = "imprint";
  c.warmup_epochs = 1;
  c.warmup_lr = 0.05;
  c.epochs = 2;
  return c;
}

// A user's own network: a backbone and logits, but no pooled features and no cosine head.
class PlainNetImpl : public NetBase {
 public:
  static constexpr bool has_saliency = false, reads_saliency_map = false;
  explicit PlainNetImpl(int64_t classes) { backbone = register_module("backbone", ResNet<18>(classes)); }
  NetOutput forward_full(const torch::Tensor& x) {
    NetOutput out;
    out.logits = backbone->forward(x);
    return out;
  }
  static std::string head_name() { return "backbone.fc"; }
  static std::string name() { return "PlainNet"; }
  ResNet<18> backbone{nullptr};
};
class PlainNet : public torch::nn::ModuleHolder<PlainNetImpl> {
 public:
  using Impl = PlainNetImpl;
  using torch::nn::ModuleHolder<Impl>::ModuleHolder;
};

}  // namespace

BOOST_AUTO_TEST_SUITE(test_recipe)

BOOST_AUTO_TEST_CASE(pooled_features_feed_the_head) {
  torch::manual_seed(0);
  const auto x = torch::randn({2, 3, 64, 64});
  MobileNetV2 mobilenet(5);
  ResNet<18> resnet(5);
  AlexNet alexnet(5);
  for (auto* m : std::initializer_list<torch::nn::Module*>{mobilenet.ptr().get(), resnet.ptr().get(), alexnet.ptr().get()})
    m->eval();
  torch::NoGradGuard no_grad;
  const auto e1 = mobilenet->forward_embedding(mobilenet->forward_trunk(x, 19), 19);
  BOOST_TEST((e1.sizes() == torch::IntArrayRef{2, MobileNetV2::Impl::embedding_size()}));
  BOOST_TEST(torch::allclose(mobilenet->head()->forward(e1), mobilenet->forward(x)));
  const auto e2 = resnet->forward_embedding(resnet->forward_trunk(x, 2), 2);
  BOOST_TEST((e2.sizes() == torch::IntArrayRef{2, 512}));
  BOOST_TEST(torch::allclose(resnet->fc(e2), resnet->forward(x)));
  const auto y = torch::randn({1, 3, 227, 227});
  const auto e3 = alexnet->forward_embedding(alexnet->forward_trunk(y, 13), 13);
  BOOST_TEST((e3.sizes() == torch::IntArrayRef{1, 4096}));
  BOOST_TEST(torch::allclose(alexnet->head()->forward(e3), alexnet->forward(y)));

  // The networks hand the same features out; without the map the modulated net is the backbone.
  HalSalNet<ResNet<18>, Depth<2>, AfterStage<2>> net(resnet);
  net->eval();
  const auto plain = net->forward_without_saliency(x);
  BOOST_TEST(torch::allclose(plain.logits, resnet->forward(x)));
  BOOST_TEST(torch::allclose(plain.embedding, resnet->forward_embedding(resnet->forward_trunk(x, 4), 4)));
  const auto full = net->forward_full(x);
  BOOST_TEST(torch::allclose(full.logits, resnet->fc(full.embedding)));
  RgbNet<ResNet<18>> rgb(resnet);
  BOOST_TEST(torch::allclose(rgb->forward_full(x).embedding, plain.embedding));
}

BOOST_AUTO_TEST_CASE(cosine_head_is_scale_times_cosine) {
  torch::manual_seed(1);
  RgbNet<ResNet<18>> net(3);
  const auto names_before = io::state_dict(*net).keys();
  net->use_cosine_head(4.0);
  BOOST_TEST((net->head_kind() == HeadKind::Cosine));
  const auto names = io::state_dict(*net).keys();
  BOOST_TEST(names.size() == names_before.size() + 1);
  BOOST_TEST(std::count(names.begin(), names.end(), "backbone.fc.scale") == 1);
  // The scale trains with the head.
  const auto groups = apply_policy<LinearProbe>(net);
  BOOST_TEST(groups.head.size() == 3u);  // weight, bias, scale
  net->eval();
  torch::NoGradGuard no_grad;
  const auto out = net->forward_full(torch::randn({2, 3, 64, 64}));
  const auto w = net->backbone->fc->weight;
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t c = 0; c < 3; ++c) {
      const auto f = out.embedding[i], wc = w[c];
      const double cosine = (f.dot(wc) / (f.norm() * wc.norm())).item<double>();
      BOOST_TEST(out.logits[i][c].item<double>() == 4.0 * cosine, boost::test_tools::tolerance(1e-5));
    }
  expect_error([&] { net->use_cosine_head(0); }, {"scale must be positive"});
  BOOST_TEST(cosine_logits(torch::tensor({{3.0f, 4.0f}}), torch::tensor({{1.0f, 0.0f}, {0.0f, 2.0f}}),
                           torch::tensor({10.0f}))
                 .allclose(torch::tensor({{6.0f, 8.0f}})));
  BOOST_TEST(to_string(parse_head_kind("cosine")) == "cosine");
  expect_error([] { parse_head_kind("softmax"); }, {"unknown head kind 'softmax'"});
}

BOOST_AUTO_TEST_CASE(nearest_class_mean_by_hand) {
  // Rows already of unit length: class 0 = {(1,0), (0,1)}, class 1 = {(-1,0)}.
  const auto f = torch::tensor({{2.0f, 0.0f}, {0.0f, 3.0f}, {-5.0f, 0.0f}});
  const auto y = torch::tensor({0, 0, 1}, torch::kLong);
  const auto means = eval::class_means(eval::l2_normalize(f), y, 2);
  BOOST_TEST(means.allclose(torch::tensor({{0.5f, 0.5f}, {-1.0f, 0.0f}})));
  const auto ncm = eval::NearestClassMean::fit(f, y, 2);
  const auto q = torch::tensor({{1.0f, 1.0f}, {-1.0f, 0.2f}});
  const auto logits = ncm.logits(q);
  // −‖f̂ − m‖²: (1,1)/√2 to (0.5,0.5) is 0.1716, to (−1,0) is 3.414.
  const double r = 1 / std::sqrt(2.0);
  BOOST_TEST(logits[0][0].item<double>() == -(std::pow(r - 0.5, 2) * 2), boost::test_tools::tolerance(1e-5));
  BOOST_TEST(logits[0][1].item<double>() == -(std::pow(r + 1, 2) + r * r), boost::test_tools::tolerance(1e-5));
  BOOST_TEST((logits.argmax(1).equal(torch::tensor({0, 1}, torch::kLong))));
  expect_error([&] { eval::class_means(f, torch::tensor({0, 0, 0}, torch::kLong), 3, {"rose", "lily", "tulip"}); },
               {"class 1 'lily' has no training image", "2 of 3 classes"});
  expect_error([&] { eval::class_means(f, torch::tensor({0, 1}, torch::kLong), 2); }, {"3 feature rows but 2 labels"});
  expect_error([&] { eval::class_means(f, torch::tensor({0, 1, 2}, torch::kLong), 2); }, {"outside 0..1"});
}

BOOST_AUTO_TEST_CASE(paired_bootstrap_known_answers) {
  // All differences equal: the interval is that value.
  auto d = eval::paired_bootstrap({{100, 100, 100}, {100, 100}});
  BOOST_TEST(d.mean == 100.0);
  BOOST_TEST(d.lo == 100.0);
  BOOST_TEST(d.hi == 100.0);
  BOOST_TEST(d.pairs == 5u);
  BOOST_TEST(d.groups == 2);
  BOOST_TEST(d.above_zero());
  BOOST_TEST(eval::to_text(d) == "+100.0 [+100.0, +100.0]");
  // 10 wins, 10 losses, 80 ties: mean 0, interval straddles 0; the same data give the same interval.
  std::vector<double> g(100, 0.0);
  for (int i = 0; i < 10; ++i) g[static_cast<size_t>(i)] = 100, g[static_cast<size_t>(50 + i)] = -100;
  const auto a = eval::paired_bootstrap({g}), b = eval::paired_bootstrap({g});
  BOOST_TEST(a.mean == 0.0);
  BOOST_TEST(a.lo < 0.0);
  BOOST_TEST(a.hi > 0.0);
  BOOST_TEST(!a.above_zero());
  BOOST_TEST(a.lo == b.lo);
  BOOST_TEST(a.hi == b.hi);
  // The interval's half-width is about 1.96 standard errors: sd of g is 44.9, se 4.49.
  BOOST_TEST(a.hi - a.lo > 2 * 1.6 * 4.49);
  BOOST_TEST(a.hi - a.lo < 2 * 2.4 * 4.49);
  BOOST_TEST(eval::to_text(eval::PairedDifference{}) == "—");
  expect_error([] { eval::paired_bootstrap({{1.0}}, eval::BootstrapOptions{10, 0.95, 0}); }, {"at least 100"});

  eval::TestOutcomes x{{4, 7, 9}, {0, 1, 2}, {0, 0, 2}}, y{{9, 4, 7}, {2, 0, 1}, {1, 0, 1}};
  const auto diff = eval::paired_differences(x, y);  // y − x paired by index: 9: −1, 4: 0, 7: +1
  BOOST_TEST((diff == std::vector<double>{-100, 0, 100}));
  eval::TestOutcomes z{{4, 7, 8}, {0, 1, 2}, {0, 0, 2}};
  expect_error([&] { eval::paired_differences(x, z); }, {"test image 8 is in one run only"});

  const auto dir = test::scratch_dir("recipe_outcomes");
  ::halsal::io::write_file_atomic(dir / "t.csv", eval::to_csv(x));
  const auto back = eval::read_test_outcomes(dir / "t.csv");
  BOOST_TEST((back.index == x.index));
  BOOST_TEST((back.predicted == x.predicted));
  ::halsal::io::write_file_atomic(dir / "bad.csv", "index,label,predicted\n1,2\n");
  expect_error([&] { eval::read_test_outcomes(dir / "bad.csv"); }, {"bad.csv", "line 2", "expected 3 fields"});
  ::halsal::io::write_file_atomic(dir / "neg.csv", "index,label,predicted\n1,-2,3\n");
  expect_error([&] { eval::read_test_outcomes(dir / "neg.csv"); }, {"neg.csv", "label '-2'"});
}

BOOST_AUTO_TEST_CASE(paired_table_rows_against_the_baseline) {
  eval::ResultsTable t;
  t.set_method_order({"Baseline-RGB", "Approach B"});
  eval::OutcomeMap o;
  for (int seed = 0; seed < 2; ++seed) {
    t.add("Baseline-RGB", 1, seed, 50);
    t.add("Approach B", 1, seed, 75);
    // 4 test images: the baseline gets images 0 and 1 right, B gets 0, 1 and 2.
    o[{"Baseline-RGB", 1, seed}] = {{0, 1, 2, 3}, {0, 1, 2, 3}, {0, 1, 0, 0}};
    o[{"Approach B", 1, seed}] = {{0, 1, 2, 3}, {0, 1, 2, 3}, {0, 1, 2, 0}};
  }
  const auto rows = eval::paired_comparisons(t, o, "Baseline-RGB");
  BOOST_TEST_REQUIRE(rows.size() == 1u);
  BOOST_TEST(rows[0].diff.mean == 25.0);
  BOOST_TEST(rows[0].diff.pairs == 8u);
  BOOST_TEST((rows[0].seeds == std::vector<std::int64_t>{0, 1}));
  const auto md = eval::paired_markdown(t.ks(), rows, "Baseline-RGB");
  BOOST_TEST(md.find("| Method − Baseline-RGB | 1 |") != std::string::npos, md);
  BOOST_TEST(md.find("| Approach B | +25.0 [") != std::string::npos, md);
  BOOST_TEST(eval::paired_csv(rows).rfind("method,k,seeds,pairs,mean,lo,hi\nApproach B,1,0 1,8,25.000,", 0) == 0);
  BOOST_TEST(eval::paired_comparisons(t, o, "Approach A").empty());
}

BOOST_AUTO_TEST_CASE(imprinting_sets_the_normalised_class_means) {
  const auto data = tiny_synthetic(3, 13);
  const auto split = hd::kshot(data, 3, 0);
  torch::manual_seed(2);
  RgbNet<ResNet<18>> net(3);
  auto c = recipe_config();
  ht::Trainer<RgbNet<ResNet<18>>, ApproachB> trainer(net, c);
  BOOST_TEST((net->head_kind() == HeadKind::Cosine));
  trainer.imprint(split.train);
  const auto e = trainer.embed(split.train);
  BOOST_TEST(e.features.size(0) == 9);
  const auto w = net->backbone->fc->weight.detach();
  for (int64_t cls = 0; cls < 3; ++cls) {
    const auto rows = eval::l2_normalize(e.features.index({e.labels == cls}));
    const auto mean = rows.mean(0);
    BOOST_TEST(w[cls].allclose(mean / mean.norm(), 1e-4, 1e-5));
  }
  BOOST_TEST(net->head_scale().item<double>() == c.cosine_scale);
  // A class without a training image is named before anything trains.
  hd::Subset partial = split.train;
  partial.indices.erase(std::remove_if(partial.indices.begin(), partial.indices.end(),
                                       [&](size_t i) { return data->samples[i].label == 1; }),
                        partial.indices.end());
  expect_error([&] { trainer.imprint(partial); }, {"class 1", data->class_names[1], "no training image"});
  // Imprinting needs a policy that trains the head, and a network with pooled features.
  HalSalNet<ResNet<18>, Depth<1>, AfterStage<4>> sal(3);
  expect_error([&] { ht::Trainer<decltype(sal), StepI>(sal, c); }, {"imprint", "StepI"});
  auto no_imprint = c;
  no_imprint.head = "xavier";
  expect_error([&] { ht::Trainer<decltype(sal), StepI>(sal, no_imprint); }, {"warm-up", "StepI"});
  PlainNet plain(3);
  expect_error([&] { ht::Trainer<PlainNet, ApproachB>(plain, c); }, {"PlainNet has no use_cosine_head()", "head = xavier"});
  ht::Trainer<PlainNet, ApproachB> plain_trainer(plain, no_imprint);
  expect_error([&] { plain_trainer.embed(split.train); }, {"PlainNet gives no pooled features"});
}

BOOST_AUTO_TEST_CASE(warm_up_trains_only_the_head_then_everything) {
  const auto data = tiny_synthetic(2, 13);
  const auto split = hd::kshot(data, 3, 0);
  torch::manual_seed(3);
  using Net = HalSalNet<ResNet<18>, Depth<1>, AfterStage<4>>;
  Net net(2);
  auto c = recipe_config();
  c.head = "xavier";
  c.stop_after_epochs = 1;  // the warm-up alone
  c.checkpoint_dir = test::scratch_dir("recipe_warmup");
  std::map<std::string, torch::Tensor> before;
  for (const auto& kv : io::state_dict(*net)) before[kv.key()] = kv.value().clone();
  ht::Trainer<Net, ApproachB> trainer(net, c);
  const auto r = trainer.fit(split.train, split.val);
  BOOST_TEST(r.epochs_done == 1);
  BOOST_TEST(!std::isnan(r.history.at(0).val_accuracy));  // the end of the warm-up is validated
  for (const auto& kv : io::state_dict(*net)) {
    const bool same = torch::equal(before.at(kv.key()), kv.value());
    if (kv.key().rfind("backbone.fc.", 0) == 0)
      BOOST_TEST(!same, kv.key() << " should have trained in the warm-up");
    else
      BOOST_TEST(same, kv.key() << " changed in the warm-up");
  }
  // The rest of the run (resumed) trains the backbone and the branch too (no validation: the
  // last epoch is kept, not a better-validated warm-up).
  c.stop_after_epochs = 0;
  ht::Trainer<Net, ApproachB> rest(net, c);
  const auto r2 = rest.fit(split.train, hd::Subset{});
  BOOST_TEST(r2.epochs_done == 3);
  BOOST_TEST(!torch::equal(before.at("backbone.layer4.1.conv2.weight"), io::state_dict(*net)["backbone.layer4.1.conv2.weight"]));
  BOOST_TEST(!torch::equal(before.at("saliency.score.weight"), io::state_dict(*net)["saliency.score.weight"]));
}

BOOST_AUTO_TEST_CASE(a_run_resumed_across_the_warm_up_repeats_itself) {
  const auto data = tiny_synthetic(2, 13);
  const auto split = hd::kshot(data, 3, 0);
  using Net = RgbNet<ResNet<18>>;
  auto c = recipe_config();
  torch::manual_seed(4);
  Net straight(2);
  auto c1 = c;
  c1.checkpoint_dir = test::scratch_dir("recipe_resume_a");
  ht::Trainer<Net, ApproachB>(straight, c1).fit(split.train, split.val);
  for (int stop : {1, 2}) {
    torch::manual_seed(4);
    Net first(2);
    auto c2 = c;
    c2.checkpoint_dir = test::scratch_dir("recipe_resume_b" + std::to_string(stop));
    c2.stop_after_epochs = stop;
    ht::Trainer<Net, ApproachB>(first, c2).fit(split.train, split.val);
    torch::manual_seed(77);
    Net resumed(2);
    c2.stop_after_epochs = 0;
    ht::Trainer<Net, ApproachB>(resumed, c2).fit(split.train, split.val);
    const auto a = snapshot(*straight), b = snapshot(*resumed);
    BOOST_TEST_REQUIRE(a.size() == b.size());
    size_t differing = 0;
    for (size_t i = 0; i < a.size(); ++i) differing += !torch::equal(a[i], b[i]);
    BOOST_TEST(differing == 0u, "stopped after epoch " << stop << ": " << differing << " tensors differ");
  }
}

BOOST_AUTO_TEST_CASE(settings_from_the_command_line) {
  // The paper's profile keeps the paper's head; the fast one is the measured few-shot recipe.
  BOOST_TEST(ht::paper_profile().head == "xavier");
  BOOST_TEST(ht::paper_profile().warmup_epochs == 0);
  BOOST_TEST(ht::fast_profile().head == "imprint");
  BOOST_TEST(ht::fast_profile().warmup_epochs == 2);
  BOOST_TEST(ht::fast_profile().lr * ht::fast_profile().saliency_lr_scale == 1e-4, boost::test_tools::tolerance(1e-12));
  auto c = ht::apply_setting(ht::fast_profile(), "warmup_lr=0.2");
  BOOST_TEST(c.warmup_lr == 0.2);
  c = ht::apply_setting(c, "head=imprint");
  BOOST_TEST(c.head == "imprint");
  c = ht::apply_setting(c, "epochs=3");
  BOOST_TEST(c.epochs == 3);
  expect_error([&] { ht::apply_setting(c, "epochs"); }, {"FIELD=VALUE"});
  expect_error([&] { ht::apply_setting(c, "learning_rate=3"); }, {"unknown field 'learning_rate'"});
  expect_error([&] { ht::apply_setting(c, "epochs=many"); }, {"'epochs' has the wrong type"});
  auto bad = c;
  bad.head = "linear";
  expect_error([&] { ht::validate(bad); }, {"head must be xavier or imprint"});
  bad = c;
  bad.warmup_epochs = -1;
  expect_error([&] { ht::validate(bad); }, {"warmup_epochs"});
  const auto back = ht::from_json(ht::to_json(c));
  BOOST_TEST(ht::to_json(back) == ht::to_json(c));
}

BOOST_AUTO_TEST_CASE(holdout_and_concat) {
  const auto data = tiny_synthetic(2, 12);
  const auto all = hd::Subset::all(data);
  const auto [kept, held] = hd::holdout(all, 0.25, 5);
  BOOST_TEST(held.size() == 6u);
  BOOST_TEST(kept.size() == 18u);
  std::vector<size_t> both = kept.indices;
  both.insert(both.end(), held.indices.begin(), held.indices.end());
  std::sort(both.begin(), both.end());
  BOOST_TEST((both == all.indices));  // disjoint, and together everything
  BOOST_TEST((hd::holdout(all, 0.25, 5).second.indices == held.indices));
  BOOST_TEST((hd::holdout(all, 0.25, 6).second.indices != held.indices));
  expect_error([&] { hd::holdout(all, 1.0, 0); }, {"(0, 1)"});
  expect_error([&] { hd::holdout(all, 0.01, 0); }, {"leaves one part empty"});

  hd::Dataset a, b, c;
  a.root = "/a";
  a.class_names = {"tench", "goldfish"};
  auto sample = [](const char* file, int64_t label) {
    hd::Sample s;
    s.file = file;
    s.label = label;
    return s;
  };
  a.samples = {sample("/a/x.jpg", 0), sample("/a/y.jpg", 1)};
  b = a;
  b.root = "/b";
  b.samples = {sample("/b/z.jpg", 1)};
  const auto joined = hd::concat({a, b});
  BOOST_TEST(joined.size() == 3u);
  BOOST_TEST(joined.samples[2].file == "/b/z.jpg");
  c = a;
  c.root = "/c";
  c.class_names = {"tench", "shark"};
  expect_error([&] { hd::concat({a, c}); }, {"class 1 is 'shark' in /c but 'goldfish' in /a"});
  c.class_names = {"tench"};
  expect_error([&] { hd::concat({a, c}); }, {"/c has 1 classes but /a has 2"});
}

BOOST_AUTO_TEST_CASE(step_one_reports_its_held_out_check) {
  // A 2-class "ImageNet": the weights' head must have 2 outputs.
  const auto data = tiny_synthetic(2, 12);
  const auto dir = test::scratch_dir("recipe_step_one");
  torch::manual_seed(6);
  ResNet<18> backbone(2);
  io::save_weights(*backbone, dir / "imagenet.safetensors");
  ht::StepOneOptions o;
  o.weights = dir / "imagenet.safetensors";
  o.config = tiny_config();
  o.config.freeze_batchnorm = true;
  o.config.head = "imprint";  // ignored: Step I keeps the pretrained head
  o.config.warmup_epochs = 2;
  o.holdout = 0.25;
  o.gallery_dir = dir;
  o.gallery_rows = 2;
  const auto r = ht::run_step_one<ResNet<18>, Depth<1>, AfterStage<2>>(data, o, dir / "stepI.safetensors");
  BOOST_TEST(r.checked);
  BOOST_TEST(r.train_images == 18u);
  BOOST_TEST(r.heldout.images == 6u);
  BOOST_TEST(r.fit.epochs_done == 1);
  BOOST_TEST(r.heldout.top1_gain.pairs == 6u);
  // Paired: the mean difference is the difference of the accuracies.
  BOOST_TEST(r.heldout.top1_gain.mean == r.heldout.top1_map - r.heldout.top1_plain, boost::test_tools::tolerance(1e-9));
  BOOST_TEST(r.heldout.loss_drop.mean == r.heldout.loss_plain - r.heldout.loss_map, boost::test_tools::tolerance(1e-9));
  const auto stored = ht::read_step_one_report(dir / "stepI.safetensors");
  BOOST_TEST(stored["heldout"]["images"].get<size_t>() == 6u);
  BOOST_TEST(stored["helps"].get<bool>() == r.helps());
  const auto text = r.verdict();
  BOOST_TEST(text.find("6 held-out images (18 trained on)") != std::string::npos, text);
  if (!r.helps()) BOOST_TEST(text.find("WARNING: Step I did NOT show that its map helps") != std::string::npos, text);
  for (const char* png : {"stepI-helped.png", "stepI-hurt.png", "stepI-heldout.png"})
    BOOST_TEST(std::filesystem::file_size(dir / png) > 100u, png);
  // Only the branch is in the file; a dataset with other classes than the head is refused first.
  const auto branch = io::read_weights(dir / "stepI.safetensors");
  for (const auto& kv : branch) BOOST_TEST(kv.key().rfind("saliency.", 0) == 0u);
  expect_error([&] { ht::run_step_one<ResNet<18>, Depth<1>, AfterStage<2>>(tiny_synthetic(3, 12), o, dir / "x.safetensors"); },
               {"3 classes", "imagenet.safetensors", "2 outputs"});
  BOOST_TEST(!std::filesystem::exists(dir / "x.safetensors"));
}

BOOST_AUTO_TEST_CASE(protocol_with_floor_paired_differences_and_a_settings_guard) {
  const auto data = tiny_synthetic(2, 13);
  const auto dir = test::scratch_dir("recipe_protocol");
  torch::manual_seed(8);
  ResNet<18> pretrained(2);
  io::save_weights(*pretrained, dir / "backbone.safetensors");
  ht::ProtocolOptions p;
  p.methods = {"ncm", "rgb"};
  p.ks = {2};
  p.seeds = {0, 1};
  p.experiment.config = recipe_config();
  p.experiment.backbone_weights = dir / "backbone.safetensors";
  p.out_dir = dir / "out";
  p.log = nullptr;
  std::map<std::pair<std::string, uint64_t>, std::vector<size_t>> tests;
  p.on_cell = [&](const ht::CellResult& r) { tests[{r.method, r.seed}] = r.split.test.indices; };
  ht::run_protocol<ResNet<18>>(data, p);
  // Every method of a seed saw the same test images.
  for (uint64_t seed : {0, 1}) BOOST_TEST((tests.at({"ncm", seed}) == tests.at({"rgb", seed})));
  const std::string md = slurp(p.out_dir / "table.md");
  BOOST_TEST(md.find("| NCM (frozen features) |") != std::string::npos, md);
  BOOST_TEST(md.find("Paired difference to Baseline-RGB") != std::string::npos, md);
  BOOST_TEST(md.find("| NCM (frozen features) | ") != md.rfind("| NCM (frozen features) | "));  // top-1 and paired rows
  const auto outcomes = eval::read_test_outcomes(p.out_dir / "cells" / "ncm-k2-s0" / "test_outcomes.csv");
  BOOST_TEST(outcomes.size() == 10u);
  const std::string paired = slurp(p.out_dir / "paired.csv");
  BOOST_TEST(paired.find("NCM (frozen features),2,0 1,20,") != std::string::npos, paired);
  const auto jsonl = slurp(p.out_dir / "runs.jsonl");
  BOOST_TEST(jsonl.find("\"head\":\"imprint\"") != std::string::npos);

  // NCM by hand: the same features, the same means, the same predictions.
  {
    const auto split = hd::kshot(data, 2, 0);
    RgbNet<ResNet<18>> net(2);
    io::load_weights(*net, dir / "backbone.safetensors", ht::detail::backbone_load_options<RgbNet<ResNet<18>>>(false));
    auto c = p.experiment.config;
    c.head = "xavier";
    c.warmup_epochs = 0;
    ht::Trainer<RgbNet<ResNet<18>>, LinearProbe> t(net, c);
    const auto train = t.embed(split.train), test = t.embed(split.test);
    const auto pred = eval::NearestClassMean::fit(train.features, train.labels, 2).logits(test.features).argmax(1);
    for (size_t i = 0; i < outcomes.size(); ++i) {
      BOOST_TEST(outcomes.index[i] == test.indices[i]);
      BOOST_TEST(outcomes.predicted[i] == pred[static_cast<int64_t>(i)].item<int64_t>());
    }
  }

  // More seeds resume: only the new cells run, the finished ones stay byte for byte.
  const std::string runs = slurp(p.out_dir / "runs.csv");
  tests.clear();
  p.seeds = {0, 1, 2};
  ht::run_protocol<ResNet<18>>(data, p);
  BOOST_TEST(tests.size() == 2u);  // ncm and rgb at seed 2
  BOOST_TEST(slurp(p.out_dir / "runs.csv").rfind(runs, 0) == 0u);

  // Other training settings: refused with the differences named, nothing rewritten.
  const std::string table = slurp(p.out_dir / "table.md"), settings = slurp(p.out_dir / "settings.json");
  auto q = p;
  q.experiment.config.image_size = 96;
  q.experiment.config.warmup_lr = 0.5;
  q.seeds = {3};
  expect_error([&] { ht::run_protocol<ResNet<18>>(data, q); },
               {"settings.json", "config.image_size: 64 before, 96 now", "config.warmup_lr: 0.05 before, 0.5 now"});
  q = p;
  q.experiment.backbone_weights = dir / "out" / "runs.csv";
  q.seeds = {3};
  expect_error([&] { ht::run_protocol<ResNet<18>>(data, q); }, {"weights: backbone.safetensors", "runs.csv"});
  BOOST_TEST(slurp(p.out_dir / "table.md") == table);
  BOOST_TEST(slurp(p.out_dir / "settings.json") == settings);
  BOOST_TEST(!std::filesystem::exists(p.out_dir / "cells" / "ncm-k2-s3"));
}

BOOST_AUTO_TEST_CASE(a_rerun_cell_replaces_its_runs_jsonl_record) {
  const nlohmann::json a{{"method", "Baseline-RGB"}, {"k", 1}, {"seed", 0}, {"top1", 40.0}};
  const nlohmann::json b{{"method", "Approach B"}, {"k", 1}, {"seed", 0}, {"top1", 41.0}};
  const nlohmann::json a_again{{"method", "Baseline-RGB"}, {"k", 1}, {"seed", 0}, {"top1", 40.5}};
  const nlohmann::json a_seed1{{"method", "Baseline-RGB"}, {"k", 1}, {"seed", 1}, {"top1", 39.0}};
  std::string text = ht::detail::replace_jsonl_record("", a);
  text = ht::detail::replace_jsonl_record(text, b);
  BOOST_TEST(text == a.dump() + "\n" + b.dump() + "\n");
  // The same (method, k, seed) replaces the earlier line; another seed is a new line.
  text = ht::detail::replace_jsonl_record(text, a_again);
  BOOST_TEST(text == b.dump() + "\n" + a_again.dump() + "\n");
  text = ht::detail::replace_jsonl_record(text + "not json\n", a_seed1);
  BOOST_TEST(text == b.dump() + "\n" + a_again.dump() + "\nnot json\n" + a_seed1.dump() + "\n");
}

BOOST_AUTO_TEST_SUITE_END()
