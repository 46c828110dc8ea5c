// The training engine on the synthetic default data: it learns, Step I touches only the saliency
// branch, an interrupted run resumes to the same weights, and the configuration is checked.
#include <halsal/halsal.hpp>
#include <halsal/train/trainer.hpp>

#include <atomic>
#include <limits>
#include <map>
#include <thread>

#include "test_support.hpp"

using namespace halsal;
namespace hd = halsal::data;

namespace {

std::shared_ptr<const hd::Dataset> small_synthetic() {
  hd::SyntheticOptions o;
  o.classes = 4;  // {plain, ring centre} x {two close shades}
  o.per_class = 40;
  o.size = 64;
  o.seed = 7;
  o.clutter = 0;  // an easy version: the test checks the engine, not the method
  o.min_scale = 0.6;
  o.max_scale = 0.9;
  return std::make_shared<const hd::Dataset>(hd::synthetic(o));
}

train::TrainConfig small_config() {
  train::TrainConfig c;
  c.optimizer = "adam";
  c.lr = 1e-3;
  c.weight_decay = 0;
  c.epochs = 8;
  c.batch_size = 16;
  c.image_size = 64;
  c.random_resized_crop = false;
  c.freeze_batchnorm = false;  // from scratch: BatchNorm must learn its statistics
  c.schedule = "cosine";
  c.workers = 1;
  c.quiet = true;
  return c;
}

std::vector<torch::Tensor> weights(torch::nn::Module& m) {
  std::vector<torch::Tensor> w;
  for (const auto& kv : io::state_dict(m)) w.push_back(kv.value().detach().clone());
  return w;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(test_train)

BOOST_AUTO_TEST_CASE(a_short_run_lowers_the_loss_and_beats_chance) {
  torch::manual_seed(0);
  auto data = small_synthetic();
  auto split = hd::kshot(data, /*k=*/30, /*seed=*/0);
  using Net = HalSalNet<ResNet<18>, Depth<2>, AfterStage<3>>;
  train::Trainer<Net, ApproachB> trainer(Net(4), small_config());
  auto fit = trainer.fit(split.train, split.val);
  BOOST_TEST_REQUIRE(fit.history.size() == 8u);
  BOOST_TEST_MESSAGE("loss " << fit.history.front().loss << " -> " << fit.history.back().loss << ", val "
                             << fit.best_val_accuracy << " at epoch " << fit.best_epoch);
  BOOST_TEST(fit.history.back().loss < 0.7 * fit.history.front().loss);
  BOOST_TEST(fit.finished);
  auto report = trainer.evaluate(split.test);
  BOOST_TEST_MESSAGE("test: " << report);
  BOOST_TEST(report.metrics.count() == 20);
  BOOST_TEST(report.predictions.size() == 20u);
  BOOST_TEST(report.has_saliency_score);  // synthetic data has object masks
  BOOST_TEST_MESSAGE("saliency max " << trainer.net()->forward_full(torch::randn({2, 3, 64, 64})).saliency.max().item<float>());
  BOOST_TEST(report.saliency_on_object.images > 0);
  // Chance is 25 %; the validation-selected model must do far better on unseen images.
  BOOST_TEST(fit.best_val_accuracy >= 0.5);
  BOOST_TEST(report.metrics.top1() >= 0.5);
}

BOOST_AUTO_TEST_CASE(step_one_changes_only_the_saliency_branch) {
  torch::manual_seed(1);
  auto data = small_synthetic();
  auto split = hd::kshot(data, 2, 0);
  using Net = HalSalNet<ResNet<18>, Depth<1>, AfterStage<2>>;
  Net net(4);
  std::map<std::string, torch::Tensor> before;
  for (const auto& kv : io::state_dict(*net)) before[kv.key()] = kv.value().clone();
  auto c = small_config();
  c.epochs = 2;
  c.freeze_batchnorm = true;
  train::Trainer<Net, StepI> trainer(net, c);
  trainer.fit(split.train, {});
  int changed = 0;
  for (const auto& kv : io::state_dict(*net)) {
    const bool same = torch::equal(before.at(kv.key()), kv.value());
    if (kv.key().rfind("saliency.", 0) == 0) {
      changed += !same;
    } else {
      BOOST_TEST(same, "StepI changed " << kv.key());
    }
  }
  BOOST_TEST(changed == 4);  // conv1 and score, weights and biases
}

// Trains Net for 3 epochs straight and in two calls (1 epoch, then a resume in a "fresh process"
// with other initial weights and random state); the final weights must be identical.
template <class Net>
void check_resume_gives_the_same_weights(const std::string& name) {
  auto data = small_synthetic();
  auto split = hd::kshot(data, 3, 0);
  auto config = small_config();
  config.epochs = 3;
  config.optimizer = "sgd";
  config.lr = 0.01;
  config.freeze_batchnorm = true;  // deterministic across runs on the CPU

  torch::manual_seed(5);
  Net reference(4);
  auto init = weights(*reference);
  auto c1 = config;
  c1.checkpoint_dir = test::scratch_dir("resume-reference-" + name);
  train::Trainer<Net, ApproachB>(reference, c1).fit(split.train, split.val);

  auto c2 = config;
  c2.checkpoint_dir = test::scratch_dir("resume-interrupted-" + name);
  c2.stop_after_epochs = 1;
  c2.metrics_jsonl = c2.checkpoint_dir / "metrics.jsonl";
  torch::manual_seed(5);
  Net first(4);
  auto r1 = train::Trainer<Net, ApproachB>(first, c2).fit(split.train, split.val);
  BOOST_TEST(r1.epochs_done == 1);
  BOOST_TEST(!r1.finished);
  BOOST_TEST(io::list_checkpoints(c2.checkpoint_dir).size() == 1u);

  torch::manual_seed(99);  // a fresh process: other initial weights, other random state
  Net resumed(4);
  c2.stop_after_epochs = 0;
  auto r2 = train::Trainer<Net, ApproachB>(resumed, c2).fit(split.train, split.val);
  BOOST_TEST(r2.finished);
  BOOST_TEST(r2.history.size() == 3u);
  const auto a = weights(*reference), b = weights(*resumed);
  BOOST_TEST_REQUIRE(a.size() == b.size());
  size_t differing = 0;
  for (size_t i = 0; i < a.size(); ++i) differing += !torch::equal(a[i], b[i]);
  BOOST_TEST(differing == 0u, name << ": " << differing << " tensors differ after resuming");
  // And training did move the weights.
  size_t moved = 0;
  for (size_t i = 0; i < a.size(); ++i) moved += !torch::equal(a[i], init[i]);
  BOOST_TEST(moved > 10u);
  // Per-epoch metrics: one JSON line per epoch over both calls.
  std::ifstream jsonl(c2.metrics_jsonl);
  std::string line;
  int lines = 0;
  while (std::getline(jsonl, line)) {
    auto j = nlohmann::json::parse(line);
    BOOST_TEST(j["epoch"].get<int>() == ++lines);
    BOOST_TEST(j.contains("loss"));
    BOOST_TEST(j.contains("val_acc"));
  }
  BOOST_TEST(lines == 3);
}

BOOST_AUTO_TEST_CASE(an_interrupted_run_resumes_to_the_same_weights) {
  check_resume_gives_the_same_weights<HalSalNet<ResNet<18>, Depth<2>, AfterStage<4>>>("halsal-resnet18");
}

// MobileNetV2's classifier has dropout: its masks must repeat after a resume too.
BOOST_AUTO_TEST_CASE(a_resumed_run_repeats_the_dropout_masks) {
  check_resume_gives_the_same_weights<RgbNet<MobileNetV2>>("rgb-mobilenet_v2");
}

BOOST_AUTO_TEST_CASE(a_switched_off_saliency_map_is_reported) {
  using Net = HalSalNet<ResNet<18>>;
  auto data = small_synthetic();
  auto split = hd::kshot(data, 2, 0);
  auto c = small_config();
  c.epochs = 1;
  c.metrics_jsonl = test::scratch_dir("dead_map") / "metrics.jsonl";
  Net net(4);
  {
    torch::NoGradGuard no_grad;
    net->saliency->score->bias.fill_(-1e4);  // the ReLU map is 0 for every image
  }
  const auto fit = train::Trainer<Net, ApproachB>(net, c).fit(split.train, split.val);
  BOOST_TEST_REQUIRE(fit.history.size() == 1u);
  BOOST_TEST(fit.history[0].zero_saliency_share == 1.0);
  std::ifstream in(c.metrics_jsonl);
  std::string line;
  BOOST_TEST_REQUIRE(static_cast<bool>(std::getline(in, line)));
  BOOST_TEST(nlohmann::json::parse(line)["zero_saliency_share"].get<double>() == 1.0);
  // A fresh branch is alive, and RgbNet has no map to report.
  Net alive(4);
  auto c2 = small_config();
  c2.epochs = 1;
  const auto fit2 = train::Trainer<Net, ApproachB>(alive, c2).fit(split.train, split.val);
  BOOST_TEST(fit2.history[0].zero_saliency_share < 1.0);
  const auto fit3 = train::Trainer<RgbNet<ResNet<18>>, ApproachB>(RgbNet<ResNet<18>>(4), c2).fit(split.train, split.val);
  BOOST_TEST(std::isnan(fit3.history[0].zero_saliency_share));
}

BOOST_AUTO_TEST_CASE(schedules_and_configuration) {
  BOOST_TEST(train::detail::schedule_factor("constant", 5, 10) == 1.0);
  BOOST_TEST(train::detail::schedule_factor("cosine", 0, 11) == 1.0);
  BOOST_TEST(std::abs(train::detail::schedule_factor("cosine", 5, 11) - 0.5) < 1e-12);
  BOOST_TEST(std::abs(train::detail::schedule_factor("cosine", 10, 11)) < 1e-12);
  BOOST_TEST(std::abs(train::detail::schedule_factor("onecycle", 0, 11) - 0.04) < 1e-12);
  BOOST_TEST(std::abs(train::detail::schedule_factor("onecycle", 3, 11) - 1.0) < 1e-12);
  const auto paper = train::paper_profile();
  BOOST_TEST(paper.lr == 1e-4);
  BOOST_TEST(paper.weight_decay == 5e-3);
  BOOST_TEST(paper.epochs == 70);
  auto fast = train::fast_profile();
  fast.seed = 3;
  const auto back = train::from_json(train::to_json(fast));
  BOOST_TEST(train::to_json(back) == train::to_json(fast));
  BOOST_CHECK_THROW(train::from_json(nlohmann::json{{"lr", "fast"}}), halsal::Error);
  BOOST_CHECK_THROW(train::from_json(nlohmann::json{{"learning_rate", 1}}), halsal::Error);
  auto bad = train::paper_profile();
  bad.optimizer = "rmsprop";
  BOOST_CHECK_THROW(train::validate(bad), halsal::Error);
  using Net = RgbNet<ResNet<18>>;
  auto c = small_config();
  c.epochs = 0;
  BOOST_CHECK_THROW((train::Trainer<Net, ApproachB>(Net(3), c)), halsal::Error);
  // Learning rates per part: backbone lr, head lr × new_layer_lr_scale, saliency lr × its own scale.
  {
    using Sal = HalSalNet<ResNet<18>>;
    auto lc = small_config();
    lc.optimizer = "sgd";
    lc.lr = 1e-3;
    lc.new_layer_lr_scale = 10;
    lc.saliency_lr_scale = 2;
    train::Trainer<Sal, ApproachB> t(Sal(3), lc);
    auto& groups = t.optimizer().param_groups();
    BOOST_TEST_REQUIRE(groups.size() == 3u);
    BOOST_TEST(groups[0].options().get_lr() == 1e-3);
    BOOST_TEST(groups[1].options().get_lr() == 1e-2);
    BOOST_TEST(std::abs(groups[2].options().get_lr() - 2e-3) < 1e-15);
    BOOST_TEST(groups[2].params().size() == t.parameter_groups().saliency.size());
    lc.saliency_lr_scale = -1;
    BOOST_CHECK_THROW(train::validate(lc), halsal::Error);
  }
  // A network whose head does not match the data's classes is refused with the numbers.
  auto data = small_synthetic();
  auto split = hd::kshot(data, 1, 0);
  train::Trainer<Net, ApproachB> wrong(Net(3), small_config());
  BOOST_CHECK_THROW(wrong.fit(split.train, split.val), halsal::Error);
}

// Mixed precision: the configuration's field, autocast's scope, bf16 training that learns as fp32
// does on the same data, and the trainer's bf16 path.
BOOST_AUTO_TEST_CASE(mixed_precision_bf16_trains_like_fp32) {
  auto c = small_config();
  BOOST_TEST(!train::to_json(c).contains("precision"));  // fp32 settings read as before
  c.precision = "bf16";
  BOOST_TEST(train::to_json(c).at("precision") == "bf16");
  BOOST_TEST(train::from_json(train::to_json(c)).precision == "bf16");
  auto msg = test::error_message([&] { train::validate(train::apply_setting(c, "precision=fp16")); });
  BOOST_TEST(msg.find("precision fp16 is for CUDA") != std::string::npos);
  BOOST_TEST(msg.find("use bf16") != std::string::npos);
  msg = test::error_message([&] { train::validate(train::apply_setting(c, "precision=fp8")); });
  BOOST_TEST(msg.find("precision must be fp32, bf16 or fp16, not 'fp8'") != std::string::npos);
  auto cuda = train::apply_setting(train::apply_setting(c, "precision=fp16"), "device=cuda:1");
  BOOST_CHECK_NO_THROW(train::validate(cuda));

  // The scope: bf16 inside, fp32 again after it.
  torch::nn::Linear lin(4, 3);
  const auto x = torch::randn({2, 4});
  {
    train::AutocastScope scope(torch::kCPU, train::Precision::bf16);
    BOOST_TEST(lin(x).scalar_type() == torch::kBFloat16);
    {
      train::AutocastScope inner(torch::kCPU, train::Precision::fp32);  // fp32: leaves it as it is
      BOOST_TEST(lin(x).scalar_type() == torch::kBFloat16);
    }
  }
  BOOST_TEST(lin(x).scalar_type() == torch::kFloat32);

  // A tiny network (conv, pool, linear) trained in fp32 and under bf16 autocast on the same data:
  // both learn the rule (is the left half brighter than the right?) and end in the same band.
  // (This CPU has no bf16 instructions: a backbone in bf16 trains 15x slower here than in fp32.)
  torch::manual_seed(5);
  const auto images = torch::randn({512, 1, 8, 8});
  const auto rule = (images.narrow(3, 0, 4).mean({1, 2, 3}) > images.narrow(3, 4, 4).mean({1, 2, 3})).to(torch::kLong);
  std::map<std::string, double> accuracy;
  for (const std::string precision : {"fp32", "bf16"}) {
    torch::manual_seed(6);
    torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 8, 3).padding(1)), torch::nn::ReLU(),
                              torch::nn::AdaptiveAvgPool2d(torch::nn::AdaptiveAvgPool2dOptions({1, 2})),
                              torch::nn::Flatten(), torch::nn::Linear(16, 2));
    torch::optim::Adam adam(net->parameters(), 1e-2);
    for (int step = 0; step < 150; ++step) {
      const auto i = torch::randint(0, 256, {32}, torch::kLong);
      torch::Tensor logits;
      {
        train::AutocastScope scope(torch::kCPU, train::parse_precision(precision));
        logits = net->forward(images.index_select(0, i));
        if (precision == "bf16") BOOST_TEST_REQUIRE(logits.scalar_type() == torch::kBFloat16);
      }
      adam.zero_grad();
      torch::nn::functional::cross_entropy(logits.to(torch::kFloat32), rule.index_select(0, i)).backward();
      adam.step();
    }
    torch::NoGradGuard no_grad;
    train::AutocastScope scope(torch::kCPU, train::parse_precision(precision));
    const auto held_out = net->forward(images.narrow(0, 256, 256)).argmax(1);
    accuracy[precision] = held_out.eq(rule.narrow(0, 256, 256)).to(torch::kFloat64).mean().item<double>();
    BOOST_TEST_MESSAGE(precision << ": held-out accuracy " << accuracy[precision]);
  }
  BOOST_TEST(accuracy["fp32"] >= 0.85);
  BOOST_TEST(accuracy["bf16"] >= 0.85);
  BOOST_TEST(std::abs(accuracy["bf16"] - accuracy["fp32"]) <= 0.05);

  // The trainer in bf16: one short epoch from the same start, data and order as in fp32: the same
  // loss up to bf16's rounding (2 %), and evaluation reads its bf16 logits.
  auto data = small_synthetic();
  auto split = hd::kshot(data, /*k=*/4, /*seed=*/0);
  using Net = RgbNet<ResNet<18>>;
  std::map<std::string, double> first_loss;
  for (const std::string precision : {"fp32", "bf16"}) {
    torch::manual_seed(0);
    auto cfg = small_config();
    cfg.epochs = 1;
    cfg.batch_size = 8;
    cfg.image_size = 32;
    // Small steps and frozen BatchNorm: the epoch's loss is the start's, where the two precisions
    // differ by rounding only (Adam at 1e-3 with live BatchNorm moved them 5 % apart in two steps).
    cfg.optimizer = "sgd";
    cfg.lr = 1e-4;
    cfg.freeze_batchnorm = true;
    cfg.precision = precision;
    train::Trainer<Net, ApproachB> trainer(Net(4), cfg);
    const auto fit = trainer.fit(split.train, data::Subset{});
    first_loss[precision] = fit.history.front().loss;
    const auto report = trainer.evaluate(split.test);
    BOOST_TEST(report.metrics.count() == static_cast<int64_t>(split.test.size()));
    BOOST_TEST_MESSAGE(precision << ": loss " << first_loss[precision] << ", " << fit.history.front().images_per_s
                                 << " img/s; test " << report.metrics.top1());
  }
  BOOST_TEST(std::isfinite(first_loss["bf16"]));
  BOOST_TEST(std::abs(first_loss["bf16"] - first_loss["fp32"]) <= 0.02 * first_loss["fp32"]);
}

// BatchNorm folding, channels-last and the CPU memory cache change the speed, not the training: the
// same start, data and order give the same losses, weights and test predictions as a run with all off.
BOOST_AUTO_TEST_CASE(speed_options_train_like_the_plain_network) {
  auto c = small_config();
  BOOST_TEST(c.fold_batchnorm);
  BOOST_TEST(!c.channels_last.has_value());  // unset: the network decides
  BOOST_TEST(c.cache_cpu_memory);
  BOOST_TEST(!train::to_json(c).contains("fold_batchnorm"));  // speed only: not part of a run's settings
  BOOST_TEST(!train::to_json(c).contains("cache_cpu_memory"));
  BOOST_TEST(!train::apply_setting(c, "fold_batchnorm=false").fold_batchnorm);
  BOOST_TEST((train::apply_setting(c, "channels_last=true").channels_last == std::optional<bool>(true)));
  BOOST_TEST((train::apply_setting(c, "channels_last=false").channels_last == std::optional<bool>(false)));
  BOOST_TEST(!train::apply_setting(train::apply_setting(c, "channels_last=true"), "channels_last=auto")
                  .channels_last.has_value());
  BOOST_TEST(!train::from_json(nlohmann::json{{"channels_last", nullptr}}, c).channels_last.has_value());
  test::expect_error([&] { train::apply_setting(c, "channels_last=sometimes"); }, {"channels_last must be true, false or auto", "sometimes"});
  BOOST_TEST(!train::apply_setting(c, "cache_cpu_memory=false").cache_cpu_memory);

  auto data = small_synthetic();
  auto split = hd::kshot(data, /*k=*/4, /*seed=*/0);
  using Net = HalSalNet<ResNet<18>, Depth<2>, AfterStage<3>>;
  struct Run {
    std::vector<double> losses;
    std::vector<torch::Tensor> weights;
    std::vector<int64_t> predicted;
  };
  auto run = [&](bool fold, bool channels_last, bool cache) {
    torch::manual_seed(0);
    auto cfg = small_config();
    cfg.epochs = 2;
    cfg.batch_size = 8;
    cfg.image_size = 48;
    cfg.optimizer = "sgd";
    cfg.lr = 1e-3;
    cfg.freeze_batchnorm = true;  // BatchNorm in eval mode: what folding applies to
    cfg.fold_batchnorm = fold;
    cfg.channels_last = channels_last;
    cfg.cache_cpu_memory = cache;
    Run r;
    {
      train::Trainer<Net, ApproachB> trainer(Net(4), cfg);
      BOOST_TEST(trainer.channels_last() == channels_last);
      BOOST_TEST(cpu_memory_cache_stats().installed == cache);  // the trainer holds the cache while it lives
      const auto hits = cpu_memory_cache_stats().hits;
      for (const auto& e : trainer.fit(split.train, data::Subset{}).history) r.losses.push_back(e.loss);
      if (cache) BOOST_TEST(cpu_memory_cache_stats().hits > hits);
      r.weights = weights(*trainer.net());
      for (const auto& p : trainer.evaluate(split.test).predictions) r.predicted.push_back(p.predicted);
    }
    BOOST_TEST(!cpu_memory_cache_stats().installed);
    BOOST_TEST(cpu_memory_cache_stats().cached_bytes == 0u);
    return r;
  };
  const Run plain = run(false, false, false), folded = run(true, false, true), nhwc = run(true, true, true);
  for (const auto* other : {&folded, &nhwc}) {
    const std::string name = other == &folded ? "folded + cache" : "folded + cache + channels-last";

    BOOST_TEST_REQUIRE(other->losses.size() == plain.losses.size());
    for (size_t e = 0; e < plain.losses.size(); ++e)
      // One pass agrees within 1e-6 (test_backbones); a few SGD steps carry the rounding along.
      BOOST_TEST(std::abs(other->losses[e] - plain.losses[e]) <= 1e-4 * plain.losses[e],
                 name << ": epoch " << e + 1 << " loss " << other->losses[e] << " vs " << plain.losses[e]);
    double worst = 0;
    for (size_t i = 0; i < plain.weights.size(); ++i)
      worst = std::max(worst, (other->weights[i] - plain.weights[i]).to(torch::kFloat64).norm().item<double>() /
                                  std::max(1e-30, plain.weights[i].to(torch::kFloat64).norm().item<double>()));
    BOOST_TEST_MESSAGE(name << ": losses " << other->losses.front() << ", " << other->losses.back()
                            << "; worst relative weight difference " << worst);
    BOOST_TEST(worst <= 1e-4, name << ": weights differ by " << worst);
    BOOST_TEST((other->predicted == plain.predicted), name << ": test predictions differ");
  }
  // The plain run's weights moved: equal weights would otherwise prove nothing.
  torch::manual_seed(0);
  const auto start = weights(*Net(4));  // as run() built it
  BOOST_TEST_REQUIRE(start.size() == plain.weights.size());
  double moved = 0;
  for (size_t i = 0; i < start.size(); ++i)
    moved = std::max(moved, (plain.weights[i] - start[i]).abs().max().to(torch::kFloat64).item<double>());
  BOOST_TEST(moved > 1e-4, "training changed no weight (largest change " << moved << ")");
}

// Channels-last is the default where it is faster (depthwise convolutions, on the CPU), an explicit
// setting wins, and the network is NCHW again once the trainer is gone.
BOOST_AUTO_TEST_CASE(channels_last_by_default_for_depthwise_networks) {
  // Weights whose layout is not NCHW: > 0 while channels-last.
  auto nhwc_weights = [](torch::nn::Module& net) {
    int n = 0;
    for (const auto& p : net.parameters())
      if (p.dim() == 4 && !p.is_contiguous()) {
        BOOST_TEST(p.is_contiguous(at::MemoryFormat::ChannelsLast));
        ++n;
      }
    return n;
  };
  BOOST_TEST(has_depthwise_convolutions(*MobileNetV2(4)));
  BOOST_TEST(has_depthwise_convolutions(*HalSalNet<MobileNetV2>(4)));
  BOOST_TEST(!has_depthwise_convolutions(*ResNet<18>(4)));
  BOOST_TEST(!has_depthwise_convolutions(*AlexNet(4)));
  BOOST_TEST(!has_depthwise_convolutions(*torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 8, 3).groups(2))));  // grouped
  BOOST_TEST(has_depthwise_convolutions(*torch::nn::Conv2d(torch::nn::Conv2dOptions(4, 8, 3).groups(4))));
  // The default the trainer and bench_models share: depthwise on the CPU only (CUDA is unmeasured).
  BOOST_TEST(channels_last_by_default(*MobileNetV2(4), torch::kCPU));
  BOOST_TEST(!channels_last_by_default(*MobileNetV2(4), torch::Device("cuda:0")));
  BOOST_TEST(!channels_last_by_default(*ResNet<18>(4), torch::kCPU));

  using Mobile = RgbNet<MobileNetV2>;
  Mobile mobile(4);
  {
    train::Trainer<Mobile, ApproachB> trainer(mobile, small_config());
    BOOST_TEST(trainer.channels_last());
    BOOST_TEST(nhwc_weights(*mobile) > 0);  // the 3x3 stem (depthwise C x 1 x 3 x 3 and 1 x 1 weights are both)
  }
  BOOST_TEST(nhwc_weights(*mobile) == 0);  // NCHW again
  auto off = small_config();
  off.channels_last = false;
  {
    train::Trainer<Mobile, ApproachB> trainer(mobile, off);
    BOOST_TEST(!trainer.channels_last());
    BOOST_TEST(nhwc_weights(*mobile) == 0);
  }
  using Res = RgbNet<ResNet<18>>;
  Res res(4);
  {
    train::Trainer<Res, ApproachB> trainer(res, small_config());
    BOOST_TEST(!trainer.channels_last());
    BOOST_TEST(nhwc_weights(*res) == 0);
  }
  auto on = small_config();
  on.channels_last = true;
  {
    train::Trainer<Res, ApproachB> trainer(res, on);
    BOOST_TEST(trainer.channels_last());
    BOOST_TEST(nhwc_weights(*res) > 0);
  }
  BOOST_TEST(nhwc_weights(*res) == 0);
}

// The CPU memory cache: a freed large block serves the next request of its size, small ones and
// LibTorch's own blocks pass through, the limit holds, threads share it, and the outermost scope
// puts LibTorch's allocator back and frees the cache.
BOOST_AUTO_TEST_CASE(cpu_memory_cache_reuses_freed_blocks) {
  c10::Allocator* const libtorch = c10::GetCPUAllocator();
  BOOST_TEST_REQUIRE(!cpu_memory_cache_stats().installed);
  {
    CpuMemoryCacheScope off(false);
    BOOST_TEST(!off.installed());
    BOOST_TEST(c10::GetCPUAllocator() == libtorch);
  }
  const int64_t n = 300000;             // 1.2 MB of float32: large enough to be cached
  const size_t block = 293 * 4096;      // 1,200,000 bytes rounded up to pages
  auto outside = torch::ones({n});      // LibTorch's block, freed while the cache is in place
  void* foreign = libtorch->raw_allocate(block);
  torch::Tensor survivor;
  const size_t default_limit = cpu_memory_cache_stats().limit_bytes;
  torch::manual_seed(3);
  auto w = torch::randn({8, 3, 5, 5}, torch::requires_grad());
  const auto in = torch::randn({4, 3, 96, 96});  // its activations are cached blocks
  torch::conv2d(in, w).relu().sum().backward();
  const auto reference = w.grad().clone();
  BOOST_TEST(default_limit >= (size_t{256} << 20));
  {
    CpuMemoryCacheScope scope;
    BOOST_TEST_REQUIRE(scope.installed());
    BOOST_TEST(c10::GetCPUAllocator() != libtorch);
    const auto start = cpu_memory_cache_stats();
    BOOST_TEST(start.cached_blocks == 0u);
    outside.reset();
    c10::GetCPUAllocator()->raw_deallocate(foreign);  // not this allocator's: freed, not kept
    BOOST_TEST(cpu_memory_cache_stats().cached_blocks == 0u);

    void* first = nullptr;
    {
      auto a = torch::ones({n});
      first = a.data_ptr();
      BOOST_TEST(reinterpret_cast<uintptr_t>(first) % 64 == 0u);  // LibTorch's alignment
    }
    auto s = cpu_memory_cache_stats();
    BOOST_TEST(s.misses == start.misses + 1);
    BOOST_TEST(s.cached_blocks == 1u);
    BOOST_TEST(s.cached_bytes == block);
    auto b = torch::full({n}, 2.0f);  // the same size: the freed block again
    BOOST_TEST(b.data_ptr() == first);
    BOOST_TEST(cpu_memory_cache_stats().hits == s.hits + 1);
    BOOST_TEST(cpu_memory_cache_stats().cached_blocks == 0u);
    BOOST_TEST(b.sum().item<double>() == 2.0 * n);
    { auto small = torch::ones({1000}); }  // 4 KB: glibc's business
    BOOST_TEST(cpu_memory_cache_stats().cached_blocks == 0u);
    BOOST_TEST(cpu_memory_cache_stats().misses == s.misses);

    {
      CpuMemoryCacheScope inner;  // scopes nest
      BOOST_TEST(inner.installed());
    }
    BOOST_TEST(cpu_memory_cache_stats().installed);
    BOOST_TEST(c10::GetCPUAllocator() != libtorch);

    set_cpu_memory_cache_limit(block + block / 2);
    {
      auto x = torch::empty({n});
      auto y = torch::empty({n});
    }  // both freed; only one fits under the limit
    BOOST_TEST(cpu_memory_cache_stats().cached_blocks == 1u);
    BOOST_TEST(cpu_memory_cache_stats().cached_bytes == block);
    set_cpu_memory_cache_limit(0);  // a lower limit evicts at once
    BOOST_TEST(cpu_memory_cache_stats().cached_bytes == 0u);
    set_cpu_memory_cache_limit(default_limit);

    // Threads allocate and free at once; every block holds what its thread wrote.
    const auto before_threads = cpu_memory_cache_stats();
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&, t] {
        for (int i = 0; i < 50; ++i) {
          auto v = torch::full({n + 1024 * (i % 3)}, static_cast<float>(t * 100 + i));
          if (v.max().item<float>() != v.min().item<float>() || v[0].item<float>() != t * 100 + i) ++wrong;
        }
      });
    for (auto& th : threads) th.join();
    BOOST_TEST(wrong.load() == 0);
    const auto after_threads = cpu_memory_cache_stats();
    BOOST_TEST(after_threads.hits + after_threads.misses == before_threads.hits + before_threads.misses + 200);
    // Each of the 3 sizes is held by at most 4 threads at once: at most 12 blocks are ever made.
    BOOST_TEST(after_threads.misses - before_threads.misses <= 12u);
    release_cached_cpu_memory();
    BOOST_TEST(cpu_memory_cache_stats().cached_bytes == 0u);

    // Autograd through a convolution gives the numbers it gave with LibTorch's allocator, twice
    // (the second time on cached blocks).
    for (int pass = 0; pass < 2; ++pass) {
      w.mutable_grad() = torch::Tensor();
      torch::conv2d(in, w).relu().sum().backward();
      BOOST_TEST(torch::equal(w.grad(), reference), "pass " << pass);
    }
    survivor = torch::ones({n});  // made by the cache, freed after the scope ends
  }
  BOOST_TEST(c10::GetCPUAllocator() == libtorch);
  BOOST_TEST(!cpu_memory_cache_stats().installed);
  BOOST_TEST(cpu_memory_cache_stats().cached_bytes == 0u);
  BOOST_TEST(survivor.sum().item<double>() == static_cast<double>(n));
  survivor.reset();  // freed through the cache's deleter, not kept
  BOOST_TEST(cpu_memory_cache_stats().cached_bytes == 0u);
}

// fp16 loss scaling: a step with an inf gradient is skipped and the scale halved; growth_interval
// good steps later it doubles; the true gradients reach the step; the state round-trips.
BOOST_AUTO_TEST_CASE(grad_scaler_skips_backs_off_and_grows) {
  if (!train::GradScaler::supported(torch::kCPU)) {
    BOOST_TEST_MESSAGE("skipped: this LibTorch (" << TORCH_VERSION_MAJOR << "." << TORCH_VERSION_MINOR
                                                  << ") has no CPU kernels for _amp_foreach_non_finite_check_and_"
                                                     "unscale_ / _amp_update_scale_ (fp16 training needs CUDA here)");
    return;
  }
  BOOST_CHECK_THROW(train::GradScaler(train::GradScalerOptions{1024, 1.0, 0.5, 3}), halsal::Error);
  torch::manual_seed(1);
  torch::nn::Linear lin(4, 3);
  torch::optim::SGD opt(lin->parameters(), 0.1);
  train::GradScaler scaler(train::GradScalerOptions{1024, 2.0, 0.5, 3});
  const auto x = torch::randn({5, 4});
  BOOST_CHECK_THROW(scaler.update(), halsal::Error);  // no step yet

  // Step 1: an inf in one gradient: no step, the scale halves.
  const auto w0 = lin->weight.detach().clone();
  opt.zero_grad();
  auto loss = lin(x).sum();
  const auto scaled = scaler.scale(loss);
  BOOST_TEST(scaled.item<double>() == loss.item<double>() * 1024, boost::test_tools::tolerance(1e-5));
  scaled.backward();
  {
    torch::NoGradGuard no_grad;
    lin->weight.mutable_grad()[0][0] = std::numeric_limits<float>::infinity();
  }
  BOOST_TEST(!scaler.step(opt));
  scaler.update();
  BOOST_TEST(torch::equal(lin->weight.detach(), w0));
  BOOST_TEST(scaler.current_scale() == 512.0);
  BOOST_TEST(scaler.growth_tracker() == 0);

  // Steps 2-4: good; the bias gradient the step sees is the true one (5 images: 5 each); after
  // three the scale doubles back.
  for (int i = 0; i < 3; ++i) {
    opt.zero_grad();
    scaler.scale(lin(x).sum()).backward();
    scaler.unscale(opt);
    BOOST_TEST(torch::allclose(lin->bias.grad(), torch::full({3}, 5.0f)));
    BOOST_CHECK_THROW(scaler.unscale(opt), halsal::Error);
    const auto before = lin->bias.detach().clone();
    BOOST_TEST(scaler.step(opt));
    BOOST_TEST(torch::allclose(lin->bias.detach(), before - 0.5f));  // lr 0.1 × 5
    scaler.update();
    BOOST_TEST(scaler.current_scale() == (i < 2 ? 512.0 : 1024.0));
    BOOST_TEST(scaler.growth_tracker() == (i < 2 ? i + 1 : 0));
  }
  // The checkpoint state.
  BOOST_TEST(scaler.state().scale == 1024.0);
  scaler.load_state({256.0, 2});
  BOOST_TEST(scaler.current_scale() == 256.0);
  BOOST_TEST(scaler.growth_tracker() == 2);
  BOOST_CHECK_THROW(scaler.load_state({-1.0, 0}), halsal::Error);
  BOOST_CHECK_THROW(scaler.load_state({std::numeric_limits<double>::infinity(), 0}), halsal::Error);
}

BOOST_AUTO_TEST_SUITE_END()
