// The GPU against the CPU (scripts/gpu-check.sh runs these on a CUDA machine): every backbone's
// forward and backward pass on CUDA equals the CPU's within rounding, the trainer takes steps on
// CUDA in fp32, bf16 and fp16, a checkpoint written by a CUDA run resumes on the CPU to the weights
// of an uninterrupted run, and fp16's loss scale survives a resume. Without a visible GPU each case
// runs its CPU half (the reference and the harness the comparison relies on) and says that it
// skipped the rest.
#include <torch/torch.h>

#include <halsal/halsal.hpp>
#include <halsal/train/trainer.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "test_support.hpp"
#include "tiny_data.hpp"

using namespace halsal;
namespace hd = halsal::data;

namespace {

/// True when a CUDA device is visible; otherwise the case says that it skips its GPU half (each
/// case calls it first, runs its CPU half, then returns early without a GPU).
bool cuda_visible() {
  if (torch::cuda::is_available()) return true;
  BOOST_TEST_MESSAGE("skipped: no CUDA GPU visible (this case runs its CPU half only)");
  return false;
}

/// fp32 on the GPU in full fp32: TF32 convolutions and matmuls (on by default for cuDNN) round
/// to ~1e-3 and would hide a real difference. Both setters exist in LibTorch 1.13 and 2.x.
void without_tf32() {
  try {
    at::globalContext().setAllowTF32CuBLAS(false);
    at::globalContext().setAllowTF32CuDNN(false);
  } catch (const std::exception& e) {  // a LibTorch that refuses the old switches: say so, go on
    BOOST_TEST_MESSAGE("TF32 could not be switched off: " << e.what());
  }
}

/// |a − ref| / |ref| (Frobenius norms, in double, on the CPU).
double relative_error(const torch::Tensor& a, const torch::Tensor& ref) {
  const auto r = ref.detach().to(torch::kCPU).to(torch::kFloat64);
  const auto d = a.detach().to(torch::kCPU).to(torch::kFloat64) - r;
  return d.norm().item<double>() / std::max(r.norm().item<double>(), 1e-30);
}

// --- (a) forward and backward parity -------------------------------------------------------------

/// One pass of a network in eval mode: its logits and every parameter's gradient, on the CPU.
struct Pass {
  torch::Tensor logits;
  std::vector<torch::Tensor> grads;
};

template <class Net>
Pass forward_backward(Net& net, const torch::Tensor& x, const torch::Tensor& labels, const torch::Device& device) {
  net->to(device);
  net->eval();
  for (auto& p : net->parameters())
    if (p.grad().defined()) p.mutable_grad() = torch::Tensor();
  const auto logits = net->forward(x.to(device));
  torch::nn::functional::cross_entropy(logits, labels.to(device)).backward();
  Pass pass{logits.detach().to(torch::kCPU), {}};
  for (const auto& p : net->parameters())
    pass.grads.push_back(p.grad().defined() ? p.grad().detach().to(torch::kCPU)
                                            : torch::zeros(p.sizes(), p.options().device(torch::kCPU)));
  return pass;
}

/// All gradients as one vector.
torch::Tensor flat(const std::vector<torch::Tensor>& grads) {
  std::vector<torch::Tensor> parts;
  for (const auto& g : grads) parts.push_back(g.flatten());
  return torch::cat(parts);
}

/// Builds `Net` twice, copies the first one's weights into the second by state dict, and checks
/// the copy on the CPU (identical logits and gradients: the harness) and on CUDA (within 1e-3:
/// the logits, all gradients together, and the stem's, a middle and the head's one by one).
template <class Net, class Make>
void check_parity(const std::string& name, Make make, bool has_gpu) {
  torch::manual_seed(7);
  Net reference = make();
  torch::manual_seed(8);
  Net copy = make();  // other initial weights, replaced by the reference's
  io::load_state_dict(*copy, io::state_dict(*reference));
  const auto x = torch::randn({2, 3, 64, 64});
  const auto labels = torch::tensor(std::vector<int64_t>{1, 3});
  const auto named = reference->named_parameters();

  const Pass cpu = forward_backward(reference, x, labels, torch::kCPU);
  const double scale = cpu.logits.abs().max().item<double>();
  BOOST_TEST_REQUIRE(std::isfinite(scale));
  // The two images must give different logits, and the probed gradients must not vanish:
  // agreement of constants would prove nothing. (A HalSalNet's saliency branch may get none.)
  BOOST_TEST((cpu.logits[0] - cpu.logits[1]).abs().max().item<double>() > 1e-4 * scale, name);
  std::vector<size_t> live;
  for (size_t i = 0; i < cpu.grads.size(); ++i)
    if (cpu.grads[i].abs().max().item<double>() > 0) live.push_back(i);
  BOOST_TEST_REQUIRE(live.size() >= 3u, name << ": " << live.size() << " parameters with a gradient");
  const std::vector<size_t> probe{live.front(), live[live.size() / 2], live.back()};
  const Pass same = forward_backward(copy, x, labels, torch::kCPU);
  BOOST_TEST(relative_error(same.logits, cpu.logits) <= 1e-6, name << ": the CPU copy's logits differ");
  BOOST_TEST(relative_error(flat(same.grads), flat(cpu.grads)) <= 1e-6, name << ": the CPU copy's gradients differ");
  if (!has_gpu) return;

  without_tf32();
  const Pass gpu = forward_backward(copy, x, labels, torch::Device(torch::kCUDA));
  const double logits_error = relative_error(gpu.logits, cpu.logits);
  const double grads_error = relative_error(flat(gpu.grads), flat(cpu.grads));
  BOOST_TEST_MESSAGE(name << ": relative error of the logits " << logits_error << ", of all gradients "
                          << grads_error);
  BOOST_TEST(logits_error <= 1e-3, name << ": CUDA logits differ from the CPU's by " << logits_error);
  BOOST_TEST(grads_error <= 1e-3, name << ": CUDA gradients differ from the CPU's by " << grads_error);
  for (size_t i : probe) {
    const double e = relative_error(gpu.grads[i], cpu.grads[i]);
    BOOST_TEST_MESSAGE(name << ": gradient of " << named[i].key() << " relative error " << e);
    BOOST_TEST(e <= 1e-3, name << ": CUDA gradient of " << named[i].key() << " differs by " << e);
  }
}

// --- (b)-(d) training --------------------------------------------------------------------------

using TrainNet = HalSalNet<ResNet<18>, Depth<2>, AfterStage<4>>;
using Weights = std::vector<torch::Tensor>;

/// 2 synthetic classes of 64 px: k training images per class, 5 test images per class.
hd::Split tiny_split(int k = 2) { return hd::kshot(test::tiny_synthetic(2, 10 + k), k, /*seed=*/0); }

/// Two epochs of SGD at 1e-3 over batches of 2, on `device` in `precision`. BatchNorm trains: from
/// scratch, its running statistics (mean 0, variance 1) would leave the activations unnormalised
/// (a loss of ~50).
train::TrainConfig tiny_run(const std::string& device, const std::string& precision) {
  auto c = test::tiny_config();
  c.optimizer = "sgd";
  c.lr = 1e-3;
  c.weight_decay = 0;
  c.epochs = 2;
  c.batch_size = 2;
  c.freeze_batchnorm = false;
  c.device = device;
  c.precision = precision;
  return c;
}

/// tiny_run in epochs of one step (batches of 4 on tiny_split(2)): the first epoch's loss is the
/// start's.
train::TrainConfig step_run(const std::string& device, const std::string& precision, int epochs) {
  auto c = tiny_run(device, precision);
  c.batch_size = 4;
  c.epochs = epochs;
  return c;
}

/// How many of `after`'s parameters (not buffers: BatchNorm's statistics move without a step)
/// differ from `before`'s.
size_t parameters_moved(const std::vector<torch::Tensor>& before, const std::vector<torch::Tensor>& after) {
  size_t moved = 0;
  for (size_t i = 0; i < after.size(); ++i) moved += !torch::equal(after[i].detach().to(torch::kCPU), before.at(i));
  return moved;
}

/// Copies of a module's parameters, on the CPU.
std::vector<torch::Tensor> parameter_copies(torch::nn::Module& m) {
  std::vector<torch::Tensor> w;
  for (const auto& p : m.parameters()) w.push_back(p.detach().to(torch::kCPU).clone());
  return w;
}

/// Copies of a module's parameters and buffers, on the CPU.
Weights weights(const torch::nn::Module& m) {
  Weights w;
  for (const auto& kv : io::state_dict(m)) w.push_back(kv.value().detach().to(torch::kCPU).clone());
  return w;
}

/// How far apart two runs ended, as a share of how far training moved the weights from `start`:
/// |a − b| / |a − start| over all tensors together.
double disagreement(const Weights& a, const Weights& b, const Weights& start) {
  BOOST_TEST_REQUIRE(a.size() == b.size());
  BOOST_TEST_REQUIRE(a.size() == start.size());
  double apart = 0, moved = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    apart += (a[i].to(torch::kFloat64) - b[i].to(torch::kFloat64)).square().sum().item<double>();
    moved += (a[i].to(torch::kFloat64) - start[i].to(torch::kFloat64)).square().sum().item<double>();
  }
  BOOST_TEST_REQUIRE(moved > 0.0, "training did not move the weights");
  return std::sqrt(apart / moved);
}

/// The newest checkpoint's configuration in `folder`.
nlohmann::json last_checkpoint_config(const std::filesystem::path& folder) {
  const auto all = io::list_checkpoints(folder);
  BOOST_TEST_REQUIRE(!all.empty(), "no checkpoint in " << folder);
  return io::read_checkpoint_info(all.back().second).config;
}

struct Run {
  train::FitResult fit;
  Weights start, end;    ///< parameters and buffers
  size_t moved = 0;      ///< parameter tensors that changed
};

/// Trains a TrainNet (initial weights from `init_seed`) with `config` on tiny_split(k).
Run train_tiny(const train::TrainConfig& config, uint64_t init_seed = 5, int k = 2) {
  const auto split = tiny_split(k);
  torch::manual_seed(init_seed);
  TrainNet net(2);
  Run run;
  run.start = weights(*net);
  const auto params = parameter_copies(*net);
  train::Trainer<TrainNet, ApproachB> trainer(net, config);
  run.fit = trainer.fit(split.train, hd::Subset{});
  run.end = weights(*net);
  run.moved = parameters_moved(params, net->parameters());
  return run;
}

/// `config` interrupted after one epoch on `first_device`, then resumed to the end on
/// `then_device` in a "fresh process" (other initial weights and random state).
Run interrupted(train::TrainConfig config, const std::string& first_device, const std::string& then_device,
                const std::string& name) {
  config.checkpoint_dir = test::scratch_dir("cuda-" + name);
  config.stop_after_epochs = 1;
  config.device = first_device;
  const Run first = train_tiny(config);
  BOOST_TEST(first.fit.epochs_done == 1);
  BOOST_TEST(!first.fit.finished);
  BOOST_TEST(last_checkpoint_config(config.checkpoint_dir)["train"]["device"].get<std::string>() == first_device);
  config.stop_after_epochs = 0;
  config.device = then_device;
  Run resumed = train_tiny(config, /*init_seed=*/99);
  BOOST_TEST(resumed.fit.finished);
  BOOST_TEST_REQUIRE(resumed.fit.history.size() == 2u);
  // The first epoch's record comes from the checkpoint.
  BOOST_TEST(resumed.fit.history[0].loss == first.fit.history[0].loss);
  return resumed;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(test_cuda)

BOOST_AUTO_TEST_CASE(forward_and_backward_match_the_cpu_for_every_backbone) {
  const bool has_gpu = cuda_visible();
  check_parity<AlexNet>("AlexNet", [] { return AlexNet(10); }, has_gpu);
  check_parity<ResNet<18>>("ResNet-18", [] { return ResNet<18>(10); }, has_gpu);
  check_parity<ResNet<50>>("ResNet-50", [] { return ResNet<50>(10); }, has_gpu);
  check_parity<MobileNetV2>("MobileNetV2", [] { return MobileNetV2(10); }, has_gpu);
  check_parity<TrainNet>("HalSalNet<ResNet-18, Depth<2>, AfterStage<4>>", [] { return TrainNet(10); }, has_gpu);
}

BOOST_AUTO_TEST_CASE(a_training_step_runs_in_fp32_bf16_and_fp16) {
  const bool has_gpu = cuda_visible();
  // CPU: fp16 is refused (no loss-scaling kernels there), fp32 trains: the reference.
  test::expect_error([] { train::Trainer<TrainNet, ApproachB>(TrainNet(2), tiny_run("cpu", "fp16")); },
                     {"precision fp16 is for CUDA"});
  const Run cpu = train_tiny(step_run("cpu", "fp32", 4));
  BOOST_TEST_REQUIRE(cpu.fit.history.size() == 4u);
  BOOST_TEST(cpu.moved > 10u);
  const double cpu_loss = cpu.fit.history[0].loss;
  BOOST_TEST_REQUIRE(std::isfinite(cpu_loss));
  if (!has_gpu) return;

  without_tf32();
  const auto split = tiny_split();
  for (const std::string precision : {"fp32", "bf16", "fp16"}) {
    // 10 steps: fp16 starts at a loss scale of 65536 and halves it at each step whose scaled
    // gradients overflow, skipping that step, as PyTorch does (this network's largest gradient,
    // ~30 at conv1, fits from a scale of 2048 on, after 5 skipped steps).
    torch::manual_seed(5);
    TrainNet net(2);
    const auto start = parameter_copies(*net);
    train::Trainer<TrainNet, ApproachB> trainer(net, step_run("cuda", precision, 10));
    const auto fit = trainer.fit(split.train, hd::Subset{});
    BOOST_TEST_REQUIRE(fit.history.size() == 10u);
    for (const auto& epoch : fit.history)
      BOOST_TEST(std::isfinite(epoch.loss), precision << ": epoch " << epoch.epoch << " loss " << epoch.loss);
    // The first epoch's loss is the start's: the CPU's in fp32, within rounding otherwise.
    const double e = std::abs(fit.history[0].loss - cpu_loss) / cpu_loss;
    BOOST_TEST_MESSAGE("cuda " << precision << ": losses " << fit.history[0].loss << " ... " << fit.history.back().loss
                               << " (cpu fp32 " << cpu_loss << " ... " << cpu.fit.history.back().loss
                               << " after 4; first: relative difference " << e << ")");
    BOOST_TEST(e <= (precision == "fp32" ? 1e-3 : 5e-2), precision << ": first-epoch loss differs by " << e);
    // Steps were taken and the weights stayed finite.
    const auto end = net->parameters();
    const size_t moved = parameters_moved(start, end);
    size_t finite = 0;
    for (const auto& p : end) finite += torch::isfinite(p).all().item<bool>();
    BOOST_TEST(moved > 10u, precision << ": only " << moved << " parameter tensors changed");
    BOOST_TEST(finite == end.size(), precision << ": non-finite weights");
    const auto report = trainer.evaluate(split.test);
    BOOST_TEST(report.metrics.count() == static_cast<int64_t>(split.test.size()));
  }
}

BOOST_AUTO_TEST_CASE(a_checkpoint_from_cuda_resumes_on_the_cpu) {
  const bool has_gpu = cuda_visible();
  const auto config = tiny_run("cpu", "fp32");
  auto straight = config;
  straight.checkpoint_dir = test::scratch_dir("cuda-reference");
  const Run reference = train_tiny(straight);
  BOOST_TEST_REQUIRE(reference.fit.history.size() == 2u);
  // CPU half: interrupted and resumed on the CPU ends where the uninterrupted run did (to the
  // bit with one thread, as test_train checks), so that below only the CUDA epoch can differ.
  const Run cpu = interrupted(config, "cpu", "cpu", "cpu-then-cpu");
  BOOST_TEST(disagreement(cpu.end, reference.end, reference.start) <= 1e-5);
  if (!has_gpu) return;

  without_tf32();
  const Run gpu = interrupted(config, "cuda", "cpu", "cuda-then-cpu");
  const double d = disagreement(gpu.end, reference.end, reference.start);
  BOOST_TEST_MESSAGE("epoch 1 on CUDA, epoch 2 on the CPU: weights apart by " << d << " of their movement; losses "
                     << gpu.fit.history[0].loss << ", " << gpu.fit.history[1].loss << " (CPU only "
                     << reference.fit.history[0].loss << ", " << reference.fit.history[1].loss << ")");
  BOOST_TEST(d <= 5e-3);
  for (size_t i = 0; i < 2; ++i) {
    const double e = std::abs(gpu.fit.history[i].loss - reference.fit.history[i].loss) / reference.fit.history[i].loss;
    BOOST_TEST(e <= 1e-3, "epoch " << i + 1 << " loss differs by " << e);
  }
}

BOOST_AUTO_TEST_CASE(fp16_loss_scale_is_saved_and_restored) {
  const bool has_gpu = cuda_visible();
  // CPU half: a run without loss scaling writes no scaler state.
  auto plain = tiny_run("cpu", "fp32");
  plain.epochs = 1;
  plain.checkpoint_dir = test::scratch_dir("cuda-no-scaler");
  train_tiny(plain);
  BOOST_TEST(last_checkpoint_config(plain.checkpoint_dir)["grad_scaler"].is_null());
  if (!has_gpu) return;

  // fp16 on CUDA, 3 epochs of 4 steps (8 images, batches of 2): straight, and interrupted after
  // the first epoch. The scale backs off from 65536 over the first ~5 steps (see the case above), then the
  // steps are taken and counted towards growing it.
  auto config = tiny_run("cuda", "fp16");
  config.epochs = 3;
  const int k = 4;
  auto straight = config;
  straight.checkpoint_dir = test::scratch_dir("cuda-fp16-reference");
  const Run reference = train_tiny(straight, 5, k);
  BOOST_TEST(reference.moved > 10u, "fp16: only " << reference.moved << " parameter tensors changed in 12 steps");
  const auto want = last_checkpoint_config(straight.checkpoint_dir)["grad_scaler"];
  BOOST_TEST_REQUIRE(want.is_object());

  auto first = config;
  first.checkpoint_dir = test::scratch_dir("cuda-fp16-interrupted");
  first.stop_after_epochs = 1;
  train_tiny(first, 5, k);
  const auto saved = last_checkpoint_config(first.checkpoint_dir)["grad_scaler"];
  BOOST_TEST_REQUIRE(saved.is_object());
  const double saved_scale = saved.at("scale").get<double>();
  const int64_t saved_tracker = saved.at("growth_tracker").get<int64_t>();
  BOOST_TEST(saved_scale > 0.0);
  BOOST_TEST(saved_tracker >= 0);
  BOOST_TEST(saved_tracker <= 4);  // at most the epoch's 4 good steps

  first.stop_after_epochs = 0;
  const Run resumed = train_tiny(first, /*init_seed=*/99, k);
  BOOST_TEST(resumed.fit.finished);
  const auto got = last_checkpoint_config(first.checkpoint_dir)["grad_scaler"];
  BOOST_TEST_REQUIRE(got.is_object());
  BOOST_TEST_MESSAGE("fp16 loss scale: after epoch 1 " << saved.dump() << "; after epoch 3 straight " << want.dump()
                                                       << ", resumed " << got.dump());
  // A fresh scaler in the resumed call would start again at 65536 and count only its own steps.
  BOOST_TEST(got.at("scale").get<double>() == want.at("scale").get<double>());
  BOOST_TEST(got.at("growth_tracker").get<int64_t>() == want.at("growth_tracker").get<int64_t>());
  const double d = disagreement(resumed.end, reference.end, reference.start);
  BOOST_TEST_MESSAGE("resumed against straight: weights apart by " << d << " of their movement");
  BOOST_TEST(d <= 1e-2);
}

BOOST_AUTO_TEST_SUITE_END()
