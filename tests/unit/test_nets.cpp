// The composed networks: the paper's equations, every variant's shapes, the freeze policies.
#include <halsal/halsal.hpp>

#include <tuple>

#include "test_support.hpp"

using namespace halsal;

namespace {

// Expected fusion-point resolution (h = w) and channels for a backbone at a 224 or 227 input.
struct FusionShape {
  int64_t channels, size224, size227;
};
template <class B, class F>
FusionShape fusion_shape() {
  if constexpr (std::is_same_v<B, AlexNet>) {
    if constexpr (std::is_same_v<F, BeforePool2>) return {192, 27, 27};
    if constexpr (std::is_same_v<F, AfterPool2>) return {192, 13, 13};
    if constexpr (std::is_same_v<F, AfterConv3>) return {384, 13, 13};
    return {256, 13, 13};
  } else {
    constexpr int64_t s224[] = {56, 28, 14, 7}, s227[] = {57, 29, 15, 8};
    constexpr int i = F::stage - 1;
    if constexpr (std::is_same_v<B, MobileNetV2>) {
      constexpr int64_t c[] = {24, 32, 96, 1280};
      return {c[i], s224[i], s227[i]};
    } else {
      constexpr int64_t basic[] = {64, 128, 256, 512}, bottleneck[] = {256, 512, 1024, 2048};
      return {B::depth >= 50 ? bottleneck[i] : basic[i], s224[i], s227[i]};
    }
  }
}

template <class B, class D, class F>
void check_variant_shapes(B backbone) {
  HalSalNet<B, D, F> net(backbone);
  net->eval();
  torch::NoGradGuard no_grad;
  const auto expected = fusion_shape<B, F>();
  for (int64_t size : {224, 227}) {
    const auto out = net->forward_full(torch::randn({1, 3, size, size}));
    const int64_t h = size == 224 ? expected.size224 : expected.size227;
    BOOST_TEST((out.logits.sizes() == torch::IntArrayRef{1, 11}), net->name() << " at " << size);
    BOOST_TEST(net->backbone.ptr() == backbone.ptr());  // shared, not copied
    BOOST_TEST((out.saliency.sizes() == torch::IntArrayRef{1, 1, h, h}), net->name() << " at " << size << ": saliency " << out.saliency.sizes());
    BOOST_TEST((out.features.sizes() == torch::IntArrayRef{1, expected.channels, h, h}), net->name() << " at " << size << ": features " << out.features.sizes());
    BOOST_TEST((out.modulated.sizes() == out.features.sizes()));
    BOOST_TEST(out.saliency.min().template item<float>() >= 0.0f);  // ReLU output
  }
}

template <class B, class D, class... Fs>
void check_fusions(B backbone) {
  (check_variant_shapes<B, D, Fs>(backbone), ...);
}
// One backbone (an 11-class head) shared by the 5 × 4 variants: construction costs more than a
// forward pass for the big ResNets.
template <class B, class... Fs>
void check_all_depths(std::tuple<Fs...>) {
  B backbone(11);
  check_fusions<B, Depth<1>, Fs...>(backbone);
  check_fusions<B, Depth<2>, Fs...>(backbone);
  check_fusions<B, Depth<3>, Fs...>(backbone);
  check_fusions<B, Depth<4>, Fs...>(backbone);
  check_fusions<B, Depth<5>, Fs...>(backbone);
}
// Debian's LibTorch 1.13 runs these convolutions ~10x slower than current wheels: for the deep
// ResNets it checks every fusion point at the default depth and every depth at the default fusion
// point; the full matrix runs against current LibTorch.
template <class B, class... Fs>
void check_deep_resnet([[maybe_unused]] std::tuple<Fs...> fusions) {
#if HALSAL_TORCH_AT_LEAST(2, 0)
  check_all_depths<B>(fusions);
#else
  B backbone(11);
  check_fusions<B, Depth<4>, Fs...>(backbone);
  check_fusions<B, Depth<1>, AfterStage<4>>(backbone);
  check_fusions<B, Depth<2>, AfterStage<4>>(backbone);
  check_fusions<B, Depth<3>, AfterStage<4>>(backbone);
  check_fusions<B, Depth<5>, AfterStage<4>>(backbone);
#endif
}
using AlexNetFusions = std::tuple<BeforePool2, AfterPool2, AfterConv3, AfterConv4>;
using StageFusions = std::tuple<AfterStage<1>, AfterStage<2>, AfterStage<3>, AfterStage<4>>;

// Values of every parameter and buffer, to compare before and after training.
std::map<std::string, torch::Tensor> snapshot(const torch::nn::Module& m) {
  std::map<std::string, torch::Tensor> s;
  for (const auto& p : m.named_parameters()) s[p.key()] = p.value().detach().clone();
  for (const auto& b : m.named_buffers()) s["buffer:" + b.key()] = b.value().detach().clone();
  return s;
}

// Trains a few SGD steps under Policy, then checks: frozen parameters and frozen BatchNorm buffers
// bit-identical, every trainable parameter changed.
template <class Policy, class Net>
void check_policy(Net net, FreezeOptions options, const std::string& label) {
  torch::manual_seed(3);
  auto groups = apply_policy<Policy>(net, options);
  net->train();  // must not wake the frozen BatchNorm layers
  const auto before = snapshot(*net);
  torch::optim::SGD sgd(groups.all(), torch::optim::SGDOptions(0.05).momentum(0.9).weight_decay(1e-3));
  for (int step = 0; step < 3; ++step) {
    sgd.zero_grad();
    const auto x = torch::randn({4, 3, 64, 64});
    torch::Tensor logits;
    if constexpr (Net::Impl::reads_saliency_map) logits = net->forward(x, torch::rand({4, 1, 64, 64}));
    else logits = net->forward(x);
    auto loss = torch::nn::functional::cross_entropy(logits, torch::tensor({0, 1, 2, 1}));
    loss.backward();
    sgd.step();
  }
  const auto after = snapshot(*net);
  const std::string head = Net::Impl::head_name();
  std::set<std::string> trainable;
  for (const auto& t : groups.all())
    for (const auto& p : net->named_parameters())
      if (p.value().is_same(t)) trainable.insert(p.key());
  std::set<std::string> frozen_bn;
  for (const auto& bn : net->frozen_batchnorm()) {
    for (const auto& m : net->named_modules())
      if (m.value().get() == bn.get()) frozen_bn.insert(m.key() + ".");
  }
  int changed = 0, kept = 0;
  for (const auto& [key, value] : before) {
    const bool is_buffer = key.rfind("buffer:", 0) == 0;
    const std::string name = is_buffer ? key.substr(7) : key;
    bool in_frozen_bn = false;
    for (const auto& prefix : frozen_bn) in_frozen_bn |= name.rfind(prefix, 0) == 0;
    const bool same = torch::equal(value, after.at(key));
    if (is_buffer) {
      if (in_frozen_bn) BOOST_TEST(same, label << ": frozen BatchNorm buffer changed: " << name);
      continue;
    }
    const bool should_train = trainable.count(name) > 0;
    BOOST_TEST(net->named_parameters()[name].requires_grad() == should_train, label << ": " << name);
    if (should_train) {
      BOOST_TEST(!same, label << ": trainable parameter unchanged: " << name);
      ++changed;
    } else {
      BOOST_TEST(same, label << ": frozen parameter changed: " << name);
      ++kept;
    }
    // Which part trains is the policy's choice.
    const bool is_saliency = name.rfind("saliency.", 0) == 0, is_head = name.rfind(head + ".", 0) == 0;
    const bool part_trains = is_saliency ? Policy::trains_saliency : is_head ? Policy::trains_head : Policy::trains_backbone;
    if (!part_trains) BOOST_TEST(!should_train, label << ": " << name << " belongs to a frozen part");
    if (part_trains && !in_frozen_bn) BOOST_TEST(should_train, label << ": " << name << " belongs to a trained part");
  }
  BOOST_TEST_MESSAGE(label << ": " << changed << " parameters trained, " << kept << " kept");
  BOOST_TEST(changed > 0);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(test_nets)

BOOST_AUTO_TEST_CASE(modulation_matches_hand_computation) {
  // l: 1×2×1×2, s: 1×1×1×2 — one map scales every channel.
  const auto l = torch::tensor({1.0f, -2.0f, 3.0f, 4.0f}).reshape({1, 2, 1, 2});
  const auto s = torch::tensor({0.5f, 2.0f}).reshape({1, 1, 1, 2});
  const auto residual = modulate(l, s, ModulationKind::Residual);
  const auto plain = modulate(l, s, ModulationKind::Plain);
  BOOST_TEST(torch::equal(residual, torch::tensor({1.5f, -6.0f, 4.5f, 12.0f}).reshape({1, 2, 1, 2})));
  BOOST_TEST(torch::equal(plain, torch::tensor({0.5f, -4.0f, 1.5f, 8.0f}).reshape({1, 2, 1, 2})));
}

BOOST_AUTO_TEST_CASE(forward_applies_equation_2_and_equation_1) {
  torch::manual_seed(0);
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 3, 96, 96});
  HalSalNet<ResNet<18>, Depth<2>, AfterStage<2>, Residual> residual(6);
  residual->eval();
  auto out = residual->forward_full(x);
  BOOST_TEST(out.saliency.max().item<float>() > 0.0f);  // a non-trivial map
  BOOST_TEST(torch::allclose(out.modulated, out.features * (out.saliency + 1), 0.0, 0.0));
  BOOST_TEST(torch::allclose(out.logits, residual->backbone->forward_joint(out.modulated, 2)));
  BOOST_TEST(torch::allclose(out.features, residual->backbone->forward_trunk(x, 2)));
  BOOST_TEST(torch::allclose(residual->forward(x), out.logits));
  // The map at the fusion resolution is the branch's own map, bilinearly resized.
  auto own = residual->saliency->forward(x);
  auto resized = torch::nn::functional::interpolate(
      own, torch::nn::functional::InterpolateFuncOptions().size(std::vector<int64_t>{12, 12}).mode(torch::kBilinear).align_corners(false));
  BOOST_TEST(torch::allclose(out.saliency, resized));

  HalSalNet<AlexNet, Depth<4>, BeforePool2, Plain> plain(6);
  plain->eval();
  auto p = plain->forward_full(torch::randn({2, 3, 227, 227}));
  BOOST_TEST(torch::allclose(p.modulated, p.features * p.saliency, 0.0, 0.0));
}

BOOST_AUTO_TEST_CASE(backward_follows_equation_3) {
  torch::manual_seed(1);
  HalSalNet<ResNet<18>, Depth<3>, AfterStage<3>> net(4);
  net->eval();
  auto out = net->forward_full(torch::randn({2, 3, 80, 80}));
  auto loss = torch::nn::functional::cross_entropy(out.logits, torch::tensor({1, 3}));
  auto grads = torch::autograd::grad({loss}, {out.features, out.modulated, out.saliency}, {}, true);
  const auto& dl = grads[0];
  const auto& dlhat = grads[1];
  const auto& ds = grads[2];
  // ∂L/∂l = ∂L/∂l̂ · (s + 1)  (Eq. 3), per element, the map broadcast over channels.
  BOOST_TEST(dl.abs().max().item<double>() > 0.0);
  BOOST_TEST(torch::allclose(dl, dlhat * (out.saliency.detach() + 1), 1e-5, 1e-9));
  // And the map's gradient sums over the channels it modulates: ∂L/∂s = Σ_c ∂L/∂l̂ · l.
  BOOST_TEST(torch::allclose(ds, (dlhat * out.features.detach()).sum(1, true), 1e-4, 1e-9));
}

BOOST_AUTO_TEST_CASE(saliency_branch_has_the_papers_widths_and_sizes) {
  torch::NoGradGuard no_grad;
  SaliencyBranch<4> branch;
  auto params = branch->named_parameters();
  BOOST_TEST((params["conv1.weight"].sizes() == torch::IntArrayRef{96, 3, 11, 11}));
  BOOST_TEST((params["conv2.weight"].sizes() == torch::IntArrayRef{256, 96, 5, 5}));
  BOOST_TEST((params["conv3.weight"].sizes() == torch::IntArrayRef{384, 256, 3, 3}));
  BOOST_TEST((params["conv4.weight"].sizes() == torch::IntArrayRef{384, 384, 3, 3}));
  BOOST_TEST((params["score.weight"].sizes() == torch::IntArrayRef{1, 384, 1, 1}));
  BOOST_TEST(!params.contains("conv5.weight"));
  BOOST_TEST((branch->forward(torch::randn({1, 3, 227, 227})).sizes() == torch::IntArrayRef{1, 1, 13, 13}));
  BOOST_TEST((SaliencyBranch<1>()->forward(torch::randn({1, 3, 227, 227})).sizes() == torch::IntArrayRef{1, 1, 27, 27}));
  BOOST_TEST((SaliencyBranch<5>()->named_parameters()["conv5.weight"].sizes() == torch::IntArrayRef{256, 384, 3, 3}));
  SaliencyOptions narrow;
  narrow.widths = {8, 16, 24, 24, 16};
  narrow.in_channels = 1;
  SaliencyBranch<3> small(narrow);
  BOOST_TEST((small->named_parameters()["conv3.weight"].sizes() == torch::IntArrayRef{24, 16, 3, 3}));
  BOOST_TEST((small->forward(torch::randn({1, 1, 227, 227}), {27, 27}).sizes() == torch::IntArrayRef{1, 1, 27, 27}));
  // Xavier init: weights within the Glorot bound, zero biases.
  const double bound = std::sqrt(6.0 / (96 * 121 + 3 * 121));
  BOOST_TEST(params["conv1.weight"].abs().max().item<double>() <= bound);
  BOOST_TEST(params["conv1.bias"].abs().max().item<double>() == 0.0);
  BOOST_CHECK_THROW(SaliencyBranchImpl(0), halsal::Error);
  BOOST_CHECK_THROW(branch->forward(torch::randn({1, 3, 32, 32})), halsal::Error);  // too small
  BOOST_TEST((branch->forward(torch::randn({1, 3, 35, 35})).sizes() == torch::IntArrayRef{1, 1, 1, 1}));
  // The score starts non-negative, so the map is alive: positive somewhere for any image.
  BOOST_TEST(params["score.weight"].min().item<double>() >= 0.0);
  for (int seed = 0; seed < 5; ++seed) {
    torch::manual_seed(seed);
    SaliencyBranch<4> fresh;
    BOOST_TEST(fresh->forward(torch::randn({2, 3, 227, 227})).max().item<double>() > 0.0, "seed " << seed);
  }
}

BOOST_AUTO_TEST_CASE(softplus_activation_keeps_the_map_alive) {
  torch::NoGradGuard no_grad;
  SaliencyOptions soft;
  soft.activation = SaliencyActivation::softplus;
  SaliencyBranch<2> relu_branch, soft_branch(soft);
  BOOST_TEST((relu_branch->activation() == SaliencyActivation::relu));
  BOOST_TEST((soft_branch->activation() == SaliencyActivation::softplus));
  // Same weights (the activation has none), a score that is negative everywhere: ReLU's map is 0.
  auto rp = relu_branch->named_parameters(), sp = soft_branch->named_parameters();
  BOOST_TEST_REQUIRE(rp.size() == sp.size());
  for (const auto& kv : rp) sp[kv.key()].copy_(kv.value());
  rp["score.bias"].fill_(-1e3);
  sp["score.bias"].fill_(-1e3);
  const auto x = torch::rand({2, 3, 64, 64});
  BOOST_TEST(relu_branch->forward(x).abs().max().item<double>() == 0.0);
  const auto dead = soft_branch->forward(x);
  BOOST_TEST(dead.min().item<double>() >= 0.0);  // softplus(-1e3) underflows to 0 in float, never below
  // Around zero the two differ by exactly log(1 + e^-|z|): softplus(z) = relu(z) + log1p(exp(-|z|)).
  rp["score.bias"].fill_(0);
  sp["score.bias"].fill_(0);
  rp["score.weight"].copy_(torch::randn_like(rp["score.weight"]) * 1e-3);
  sp["score.weight"].copy_(rp["score.weight"]);
  const auto r = relu_branch->forward(x), s = soft_branch->forward(x);
  const auto z_positive = r.gt(0);
  // Where ReLU passed z through, z = r; check softplus(z) against the closed form there.
  const auto expected = r + torch::log1p(torch::exp(-r));
  BOOST_TEST(((s - expected).abs() * z_positive).max().item<double>() < 1e-5);
  BOOST_TEST(s.min().item<double>() > 0.0);  // positive for moderate scores: a gradient flows where ReLU has none
  BOOST_TEST(std::string(to_string(SaliencyActivation::softplus)) == "softplus");
  BOOST_TEST((parse_saliency_activation("relu") == SaliencyActivation::relu));
  BOOST_CHECK_THROW(parse_saliency_activation("sigmoid"), halsal::Error);
  // HalSalNet passes the option to its branch.
  HalSalNet<ResNet<18>> net(3, soft);
  BOOST_TEST((net->saliency->activation() == SaliencyActivation::softplus));
}

BOOST_AUTO_TEST_CASE(defaults_are_the_papers) {
  static_assert(std::is_same_v<HalSalNet<AlexNet>::Impl::fusion_type, BeforePool2>);
  static_assert(std::is_same_v<HalSalNet<ResNet<152>>::Impl::fusion_type, AfterStage<4>>);
  static_assert(std::is_same_v<HalSalNet<MobileNetV2>::Impl::fusion_type, AfterStage<4>>);
  static_assert(std::is_same_v<HalSalNet<AlexNet>::Impl::depth_type, Depth<4>>);
  static_assert(std::is_same_v<HalSalNet<AlexNet>::Impl::modulation_type, Residual>);
  BOOST_TEST(HalSalResNet152::Impl::name() == "HalSalNet<ResNet-152, Depth<4>, AfterStage<4>, Residual>");
  BOOST_TEST(RgbNet<MobileNetV2>::Impl::name() == "RgbNet<MobileNetV2>");
  HalSalMobileNetV2 net(102);
  auto keys = net->named_parameters().keys();
  BOOST_TEST((std::find(keys.begin(), keys.end(), "backbone.features.0.0.weight") != keys.end()));
  BOOST_TEST((std::find(keys.begin(), keys.end(), "saliency.conv4.weight") != keys.end()));
  BOOST_TEST((net->named_parameters()["backbone.classifier.1.weight"].sizes() == torch::IntArrayRef{102, 1280}));
}

BOOST_AUTO_TEST_CASE(smic_reads_a_given_map) {
  torch::manual_seed(2);
  SmicNet<AlexNet, Depth<2>, AfterPool2> net(5);
  net->eval();
  torch::NoGradGuard no_grad;
  BOOST_TEST((net->named_parameters()["saliency.conv1.weight"].sizes() == torch::IntArrayRef{96, 1, 11, 11}));
  const auto x = torch::randn({2, 3, 227, 227});
  const auto map = torch::rand({2, 1, 227, 227});
  auto out = net->forward_full(x, map);
  BOOST_TEST((out.logits.sizes() == torch::IntArrayRef{2, 5}));
  BOOST_TEST(torch::allclose(out.saliency, net->saliency->forward(map, {13, 13})));
  net->saliency->score->bias.fill_(0.5);  // a live map whatever the random weights
  BOOST_TEST(!torch::allclose(net->forward(x, torch::zeros_like(map)), net->forward(x, map)));  // the map matters
  BOOST_CHECK_THROW(net->forward(x, x), halsal::Error);
}

// Every backbone × fusion point × depth, at 224 and 227 (split so that ctest runs them in parallel).
BOOST_AUTO_TEST_CASE(variant_shapes_alexnet_mobilenet_resnet18_34) {
  check_all_depths<AlexNet>(AlexNetFusions{});
  check_all_depths<MobileNetV2>(StageFusions{});
  check_all_depths<ResNet<18>>(StageFusions{});
  check_deep_resnet<ResNet<34>>(StageFusions{});
}
BOOST_AUTO_TEST_CASE(variant_shapes_resnet50_101) {
  check_deep_resnet<ResNet<50>>(StageFusions{});
  check_deep_resnet<ResNet<101>>(StageFusions{});
}
BOOST_AUTO_TEST_CASE(variant_shapes_resnet152) { check_deep_resnet<ResNet<152>>(StageFusions{}); }

BOOST_AUTO_TEST_CASE(freeze_policies_train_exactly_their_parts) {
  using Net = HalSalNet<ResNet<18>, Depth<2>, AfterStage<3>>;
  check_policy<StepI>(Net(3), {}, "StepI");
  check_policy<ApproachA>(Net(3), {}, "ApproachA");
  check_policy<ApproachB>(Net(3), {}, "ApproachB");
  check_policy<ApproachB>(Net(3), FreezeOptions{false}, "ApproachB, BatchNorm trains");
  check_policy<LinearProbe>(Net(3), {}, "LinearProbe");
  check_policy<ApproachB>(RgbNet<MobileNetV2>(3), {}, "Baseline-RGB");
  check_policy<StepI>(SmicNet<AlexNet, Depth<1>, AfterConv4>(3), {}, "SMIC StepI");
}

BOOST_AUTO_TEST_CASE(frozen_batchnorm_survives_train_and_trainable_batchnorm_learns) {
  HalSalNet<ResNet<18>, Depth<1>, AfterStage<1>> net(2);
  auto groups = apply_policy<ApproachB>(net, FreezeOptions{true});
  net->train();
  BOOST_TEST(net->is_training());
  BOOST_TEST(!net->backbone->bn1->is_training());
  BOOST_TEST(!net->backbone->bn1->weight.requires_grad());
  const auto mean_before = net->backbone->bn1->running_mean.clone();
  net->forward(torch::randn({2, 3, 64, 64}));
  BOOST_TEST(torch::equal(mean_before, net->backbone->bn1->running_mean));

  apply_policy<ApproachB>(net, FreezeOptions{false});
  net->train();
  BOOST_TEST(net->backbone->bn1->is_training());
  BOOST_TEST(net->backbone->bn1->weight.requires_grad());
  net->forward(torch::randn({2, 3, 64, 64}));
  BOOST_TEST(!torch::equal(mean_before, net->backbone->bn1->running_mean));

  // StepI freezes the backbone, BatchNorm included, whatever the option says.
  apply_policy<StepI>(net, FreezeOptions{false});
  net->train();
  BOOST_TEST(!net->backbone->layer1->ptr(0)->as<BasicBlockImpl>()->bn2->is_training());
  BOOST_TEST(net->saliency->is_training());
  BOOST_TEST(groups.head.size() == 2u);  // fc.weight, fc.bias
}

BOOST_AUTO_TEST_SUITE_END()
