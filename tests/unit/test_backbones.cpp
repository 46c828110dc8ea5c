// Backbones against torchvision: state_dict names and shapes, numerical parity, stages, heads.
#include <halsal/halsal.hpp>

#include <algorithm>
#include <fstream>
#include <functional>
#include <map>

#include "test_support.hpp"

namespace {

using halsal::test::data_dir;

// The deterministic generator of tests/data/make_backbone_fixtures.py, bit for bit.
uint32_t fnv1a32(const std::string& s) {
  uint32_t h = 0x811C9DC5u;
  for (unsigned char c : s) h = (h ^ c) * 0x01000193u;
  return h;
}
double uniform(uint32_t seed, uint64_t i) {
  uint32_t x = static_cast<uint32_t>(i) * 0x9E3779B1u + seed;
  x ^= x >> 16;
  x *= 0x85EBCA6Bu;
  x ^= x >> 13;
  x *= 0xC2B2AE35u;
  x ^= x >> 16;
  return static_cast<double>(x >> 8) * (1.0 / 16777216.0);
}
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
void fill(const std::string& name, torch::Tensor t) {
  torch::NoGradGuard no_grad;
  if (ends_with(name, "num_batches_tracked")) {
    t.zero_();
    return;
  }
  const uint32_t seed = fnv1a32(name);
  const int64_t n = t.numel();
  std::vector<float> v(n);
  const double fan_in = t.dim() > 1 ? static_cast<double>(n / t.size(0)) : 1.0;
  for (int64_t i = 0; i < n; ++i) {
    const double u = uniform(seed, i);
    double x;
    if (ends_with(name, "running_var")) x = 0.5 + u;
    else if (ends_with(name, "running_mean") || ends_with(name, "bias")) x = 0.2 * (u - 0.5);
    else if (t.dim() == 1) x = 0.5 + u;
    else x = (2.0 * u - 1.0) * std::sqrt(3.0 / fan_in);
    v[i] = static_cast<float>(x);
  }
  t.copy_(torch::from_blob(v.data(), t.sizes(), torch::kFloat32));
}
void fill_all(torch::nn::Module& m) {
  for (auto& p : m.named_parameters()) fill(p.key(), p.value());
  for (auto& b : m.named_buffers()) fill(b.key(), b.value());
}
torch::Tensor parity_input() {
  const std::vector<int64_t> shape{2, 3, 224, 224};
  const int64_t n = 2 * 3 * 224 * 224;
  std::vector<float> v(n);
  const uint32_t seed = fnv1a32("input");
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<float>(2.0 * uniform(seed, i) - 1.0);
  return torch::from_blob(v.data(), shape, torch::kFloat32).clone();
}

std::string shape_string(const torch::Tensor& t) {
  if (t.dim() == 0) return "scalar";
  std::string s;
  for (int64_t i = 0; i < t.dim(); ++i) {
    if (i) s += 'x';
    s += std::to_string(t.size(i));
  }
  return s;
}

// torchvision's keys in state_dict order, with shapes.
std::vector<std::pair<std::string, std::string>> golden_keys(const std::string& model) {
  std::ifstream in(data_dir() / "backbones" / (model + ".keys"));
  BOOST_TEST_REQUIRE(in.good(), "missing fixture " << model << ".keys");
  std::vector<std::pair<std::string, std::string>> keys;
  std::string name, shape;
  while (in >> name >> shape) keys.emplace_back(name, shape);
  return keys;
}

void check_keys(const torch::nn::Module& m, const std::string& model) {
  const auto golden = golden_keys(model);
  std::map<std::string, std::string> ours;
  std::vector<std::string> param_order;
  for (const auto& p : m.named_parameters()) {
    ours[p.key()] = shape_string(p.value());
    param_order.push_back(p.key());
  }
  for (const auto& b : m.named_buffers()) ours[b.key()] = shape_string(b.value());
  std::map<std::string, std::string> theirs(golden.begin(), golden.end());
  BOOST_TEST(ours.size() == theirs.size(), model << ": " << ours.size() << " keys vs torchvision's " << theirs.size());
  for (const auto& [k, shape] : theirs) {
    auto it = ours.find(k);
    BOOST_TEST((it != ours.end()), model << ": torchvision key missing: " << k);
    if (it != ours.end()) BOOST_TEST(it->second == shape, model << ": " << k << " shape " << it->second << " vs " << shape);
  }
  for (const auto& [k, shape] : ours) BOOST_TEST(theirs.count(k) == 1u, model << ": key not in torchvision: " << k);
  // Parameters come in torchvision's order too (iteration order matters to users and optimizers).
  std::vector<std::string> golden_param_order;
  for (const auto& [k, shape] : golden)
    if (std::find(param_order.begin(), param_order.end(), k) != param_order.end()) golden_param_order.push_back(k);
  BOOST_TEST(param_order == golden_param_order, model << ": parameter order differs from torchvision's");
}

void check_parity(torch::nn::Module& m, const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                  const std::string& model) {
  fill_all(m);
  m.eval();
  torch::NoGradGuard no_grad;
  const auto ours = forward(parity_input());
  std::ifstream in(data_dir() / "backbones" / (model + ".logits"), std::ios::binary);
  std::vector<float> ref(2 * 1000);
  in.read(reinterpret_cast<char*>(ref.data()), static_cast<std::streamsize>(ref.size() * sizeof(float)));
  BOOST_TEST_REQUIRE(in.gcount() == static_cast<std::streamsize>(ref.size() * sizeof(float)));
  const auto theirs = torch::from_blob(ref.data(), {2, 1000}, torch::kFloat32);
  BOOST_TEST_REQUIRE((ours.sizes() == theirs.sizes()));
  const double scale = theirs.abs().max().item<double>();
  const double max_diff = (ours - theirs).abs().max().item<double>();
  BOOST_TEST_MESSAGE(model << ": max |logit| " << scale << ", max |difference| " << max_diff);
  BOOST_TEST(max_diff <= 1e-4 * scale, model << ": max difference " << max_diff << " > 1e-4 x " << scale);
  // The two images must give different logits: parity of a constant would prove nothing.
  BOOST_TEST((ours[0] - ours[1]).abs().max().item<double>() > 1e-3 * scale);
}

// ||a − b|| / ||b||: the relative difference of two runs of the same computation.
double relative_difference(const torch::Tensor& a, const torch::Tensor& b) {
  return (a - b).norm().item<double>() / std::max(1e-30, b.norm().item<double>());
}

// Logits and every parameter's gradient of one forward/backward pass on `x`.
std::vector<torch::Tensor> logits_and_gradients(torch::nn::Module& m,
                                                const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                                                const torch::Tensor& x) {
  m.zero_grad();
  const auto logits = forward(x);
  logits.pow(2).mean().backward();
  std::vector<torch::Tensor> out{logits.detach().clone()};
  for (const auto& p : m.parameters()) out.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  return out;
}

// The worst relative difference between two logits_and_gradients() results (which one in `where`).
double worst_difference(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b, size_t& where) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = relative_difference(a[i].contiguous(), b[i].contiguous());
    if (d > worst) {
      worst = d;
      where = i;
    }
  }
  return worst;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(test_backbones)

BOOST_AUTO_TEST_CASE(state_dict_keys_are_torchvisions) {
  check_keys(*halsal::AlexNet(), "alexnet");
  check_keys(*halsal::ResNet<18>(), "resnet18");
  check_keys(*halsal::ResNet<34>(), "resnet34");
  check_keys(*halsal::ResNet<50>(), "resnet50");
  check_keys(*halsal::ResNet<101>(), "resnet101");
  check_keys(*halsal::ResNet<152>(), "resnet152");
  check_keys(*halsal::MobileNetV2(), "mobilenet_v2");
}

BOOST_AUTO_TEST_CASE(logits_equal_torchvisions_with_the_same_weights) {
  halsal::AlexNet alexnet;
  check_parity(*alexnet, [&](const torch::Tensor& x) { return alexnet->forward(x); }, "alexnet");
  halsal::ResNet<18> resnet18;
  check_parity(*resnet18, [&](const torch::Tensor& x) { return resnet18->forward(x); }, "resnet18");
  halsal::ResNet<50> resnet50;
  check_parity(*resnet50, [&](const torch::Tensor& x) { return resnet50->forward(x); }, "resnet50");
  halsal::MobileNetV2 mobilenet;
  check_parity(*mobilenet, [&](const torch::Tensor& x) { return mobilenet->forward(x); }, "mobilenet_v2");
}

BOOST_AUTO_TEST_CASE(trunk_then_joint_equals_forward_at_every_cut) {
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 3, 96, 96});
  halsal::ResNet<18> resnet(10);
  resnet->eval();
  for (int cut = 1; cut <= 4; ++cut)
    BOOST_TEST(torch::allclose(resnet->forward_joint(resnet->forward_trunk(x, cut), cut), resnet->forward(x)));
  halsal::MobileNetV2 mobilenet(10);
  mobilenet->eval();
  for (int cut : {4, 7, 14, 19})
    BOOST_TEST(torch::allclose(mobilenet->forward_joint(mobilenet->forward_trunk(x, cut), cut), mobilenet->forward(x)));
  halsal::AlexNet alexnet(10);
  alexnet->eval();
  const auto y = torch::randn({1, 3, 224, 224});
  for (int cut : {5, 6, 8, 10})
    BOOST_TEST(torch::allclose(alexnet->forward_joint(alexnet->forward_trunk(y, cut), cut), alexnet->forward(y)));
}

BOOST_AUTO_TEST_CASE(stages_have_torchvisions_shapes) {
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({1, 3, 224, 224});
  halsal::ResNet<50> resnet;
  const int64_t resnet_channels[] = {256, 512, 1024, 2048}, resnet_sizes[] = {56, 28, 14, 7};
  for (int s = 1; s <= 4; ++s) {
    auto l = resnet->forward_trunk(x, s);
    BOOST_TEST((l.sizes() == torch::IntArrayRef{1, resnet_channels[s - 1], resnet_sizes[s - 1], resnet_sizes[s - 1]}));
  }
  halsal::MobileNetV2 mobilenet;
  const int cuts[] = {4, 7, 14, 19};
  const int64_t mobile_channels[] = {24, 32, 96, 1280};
  for (int s = 0; s < 4; ++s) {
    auto l = mobilenet->forward_trunk(x, cuts[s]);
    BOOST_TEST((l.sizes() == torch::IntArrayRef{1, mobile_channels[s], resnet_sizes[s], resnet_sizes[s]}));
  }
  halsal::AlexNet alexnet;
  BOOST_TEST((alexnet->forward_trunk(x, 5).sizes() == torch::IntArrayRef{1, 192, 27, 27}));
  BOOST_TEST((alexnet->forward_trunk(x, 6).sizes() == torch::IntArrayRef{1, 192, 13, 13}));
  BOOST_TEST((alexnet->forward_trunk(x, 8).sizes() == torch::IntArrayRef{1, 384, 13, 13}));
  BOOST_TEST((alexnet->forward_trunk(x, 10).sizes() == torch::IntArrayRef{1, 256, 13, 13}));
}

BOOST_AUTO_TEST_CASE(replaced_head_is_xavier_and_keeps_names) {
  auto check = [](torch::nn::Linear head, int64_t in, int64_t classes) {
    BOOST_TEST((head->weight.sizes() == torch::IntArrayRef{classes, in}));
    const double bound = std::sqrt(6.0 / static_cast<double>(in + classes));
    BOOST_TEST(head->weight.abs().max().item<double>() <= bound);
    BOOST_TEST(head->weight.abs().max().item<double>() > 0.5 * bound);  // uniform over the range
    BOOST_TEST(head->bias.abs().max().item<double>() == 0.0);
  };
  halsal::AlexNet alexnet;
  alexnet->replace_head(102);
  check(alexnet->head(), 4096, 102);
  BOOST_TEST((alexnet->named_parameters()["classifier.6.weight"].sizes() == torch::IntArrayRef{102, 4096}));
  BOOST_TEST((alexnet->named_parameters().contains("classifier.4.weight")));
  BOOST_TEST((alexnet->forward(torch::randn({2, 3, 224, 224})).sizes() == torch::IntArrayRef{2, 102}));
  halsal::ResNet<18> resnet;
  resnet->replace_head(5);
  check(resnet->head(), 512, 5);
  BOOST_TEST((resnet->named_parameters()["fc.weight"].sizes() == torch::IntArrayRef{5, 512}));
  halsal::MobileNetV2 mobilenet;
  mobilenet->replace_head(3);
  check(mobilenet->head(), 1280, 3);
  BOOST_TEST((mobilenet->named_parameters()["classifier.1.weight"].sizes() == torch::IntArrayRef{3, 1280}));
  BOOST_TEST((mobilenet->forward(torch::randn({1, 3, 64, 64})).sizes() == torch::IntArrayRef{1, 3}));
}

BOOST_AUTO_TEST_CASE(batchnorm_folding_matches_the_unfolded_network) {
  // BatchNorm in eval mode with running statistics and affine far from 1/0 (fill), so that folding
  // changes every convolution; the gradients reach the convolutions and BatchNorm's affine alike.
  // The gradients are compared in float64: in float32 a pre-activation within rounding of 0 may
  // land on the other side of a ReLU in one of the two networks, and every gradient upstream of it
  // moves by ~1e-3 (seen once: ResNet-50, LibTorch 1.13, one thread, an AVX-512 CPU; one of 16,384
  // ReLUs of layer4.1 flipped while float64 agreed with the unfolded network). That is the kink of
  // ReLU, not folding, so float32 gradients get a bound that still catches a missing or wrong
  // gradient path, and float32 logits (continuous across the kink) the tight one.
  torch::manual_seed(3);
  const auto x = torch::randn({2, 3, 64, 64});
  auto check = [&](torch::nn::Module& m, const std::function<torch::Tensor(const torch::Tensor&)>& forward,
                   const std::string& model, int parts) {
    fill_all(m);
    m.eval();
    BOOST_TEST(halsal::set_batchnorm_folding(m, true) == parts, model);
    auto folded = logits_and_gradients(m, forward, x);
    halsal::set_batchnorm_folding(m, false);
    auto apart = logits_and_gradients(m, forward, x);
    const double logits = relative_difference(folded[0], apart[0]);
    BOOST_TEST(logits <= 1e-5, model << ": float32 logits differ by " << logits);
    size_t where = 0;
    double worst = worst_difference(folded, apart, where);
    BOOST_TEST_MESSAGE(model << ": float32, folded vs unfolded, logits " << logits << ", worst " << worst
                             << " (tensor " << where << " of " << folded.size() << ")");
    BOOST_TEST(worst <= 1e-2, model << ": float32 tensor " << where << " differs by " << worst);
    BOOST_TEST(relative_difference(folded[0], torch::zeros_like(folded[0])) > 0.0);  // not a zero network
    m.to(torch::kFloat64);
    const auto x64 = x.to(torch::kFloat64);
    halsal::set_batchnorm_folding(m, true);
    folded = logits_and_gradients(m, forward, x64);
    halsal::set_batchnorm_folding(m, false);
    apart = logits_and_gradients(m, forward, x64);
    worst = worst_difference(folded, apart, where);
    BOOST_TEST_MESSAGE(model << ": float64, folded vs unfolded, worst relative difference " << worst << " (tensor "
                             << where << ")");
    BOOST_TEST(worst <= 1e-10, model << ": float64 tensor " << where << " differs by " << worst);
    m.to(torch::kFloat32);
    // In training mode BatchNorm uses the batch's statistics: nothing is folded, same results.
    // (The same dropout masks for both: MobileNetV2's classifier drops out in training mode.)
    m.train();
    halsal::set_batchnorm_folding(m, true);
    torch::manual_seed(5);
    const auto a = logits_and_gradients(m, forward, x);
    halsal::set_batchnorm_folding(m, false);
    torch::manual_seed(5);
    const auto b = logits_and_gradients(m, forward, x);
    BOOST_TEST(worst_difference(a, b, where) == 0.0, model << ": training mode must not fold");
  };
  halsal::ResNet<18> resnet18(10);
  check(*resnet18, [&](const torch::Tensor& t) { return resnet18->forward(t); }, "ResNet-18", 1 + 8);
  halsal::ResNet<50> resnet50(10);
  check(*resnet50, [&](const torch::Tensor& t) { return resnet50->forward(t); }, "ResNet-50", 1 + 16);
  halsal::MobileNetV2 mobilenet(10);
  check(*mobilenet, [&](const torch::Tensor& t) { return mobilenet->forward(t); }, "MobileNetV2", 17 + 35);
}

BOOST_AUTO_TEST_CASE(channels_last_gives_the_same_logits_and_gradients) {
  torch::manual_seed(4);
  const auto x = torch::randn({2, 3, 64, 64});
  halsal::MobileNetV2 mobilenet(10);
  fill_all(*mobilenet);
  mobilenet->eval();
  auto forward = [&](const torch::Tensor& t) { return mobilenet->forward(halsal::in_channels_last(t, true)); };
  const auto nchw = logits_and_gradients(*mobilenet, forward, x);
  BOOST_TEST(halsal::set_channels_last(*mobilenet, true) == 52);  // the 52 convolution weights
  BOOST_TEST(mobilenet->features[0]->named_parameters()["0.weight"].is_contiguous(at::MemoryFormat::ChannelsLast));
  BOOST_TEST(halsal::in_channels_last(x, true).is_contiguous(at::MemoryFormat::ChannelsLast));
  const auto nhwc = logits_and_gradients(*mobilenet, forward, x);
  size_t where = 0;
  const double worst = worst_difference(nhwc, nchw, where);
  BOOST_TEST_MESSAGE("MobileNetV2: channels-last vs NCHW, worst relative difference " << worst);
  BOOST_TEST(worst <= 1e-5, "tensor " << where << " differs by " << worst);
  halsal::set_channels_last(*mobilenet, false);
  BOOST_TEST(mobilenet->features[0]->named_parameters()["0.weight"].is_contiguous());
}

BOOST_AUTO_TEST_SUITE_END()
