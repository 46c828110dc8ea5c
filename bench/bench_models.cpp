// Throughput of the backbones and the composed networks: eval forward and train step, images/s.
// Usage: bench_models [--size 224] [--batch 8] [--threads N] [--device cpu|cuda] [--steps 3]
#include <halsal/halsal.hpp>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iomanip>
#include <iostream>

namespace {

struct Timing {
  double eval_ips = 0, train_ips = 0;
};

template <class Net, class... Args>
Timing measure(Net net, int64_t batch, int64_t size, int steps, torch::Device device) {
  net->to(device);
  const auto x = torch::randn({batch, 3, size, size}, device);
  const auto y = torch::zeros({batch}, torch::dtype(torch::kLong).device(device));
  auto sync = [&] {
    if (device.is_cuda()) torch::cuda::synchronize();
  };
  auto time = [&](auto&& step) {
    step();  // warm-up
    sync();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < steps; ++i) step();
    sync();
    return static_cast<double>(batch * steps) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  Timing t;
  net->eval();
  {
    torch::NoGradGuard no_grad;
    t.eval_ips = time([&] { net->forward(x); });
  }
  auto groups = halsal::apply_policy<halsal::ApproachB>(net);
  torch::optim::SGD sgd(groups.all(), torch::optim::SGDOptions(1e-4).momentum(0.9));
  net->train();
  t.train_ips = time([&] {
    sgd.zero_grad();
    torch::nn::functional::cross_entropy(net->forward(x), y).backward();
    sgd.step();
  });
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"halsal model throughput (images/s)"};
  int64_t size = 224, batch = 8;
  int threads = 0, steps = 3;
  std::string device_name = "cpu";
  app.add_option("--size", size, "input side");
  app.add_option("--batch", batch, "batch size");
  app.add_option("--threads", threads, "intra-op threads (0 = cores)");
  app.add_option("--steps", steps, "timed steps per measurement");
  app.add_option("--device", device_name, "cpu or cuda");
  CLI11_PARSE(app, argc, argv);
  halsal::set_num_threads(threads);
  const torch::Device device(device_name);
  std::cout << "LibTorch " << TORCH_VERSION << ", " << at::get_num_threads() << " threads, " << device
            << ", batch " << batch << ", " << size << " px\n\n| network | eval img/s | train img/s |\n|---|---|---|\n";
  auto row = [&](const std::string& name, Timing t) {
    std::cout << "| " << name << " | " << std::fixed << std::setprecision(1) << t.eval_ips << " | " << t.train_ips
              << " |\n" << std::flush;
  };
  using namespace halsal;
  row("RgbNet<AlexNet>", measure(RgbNet<AlexNet>(102), batch, size, steps, device));
  row("HalSalNet<AlexNet> (BeforePool2, Depth<4>)", measure(HalSalAlexNet(102), batch, size, steps, device));
  row("RgbNet<ResNet-18>", measure(RgbNet<ResNet<18>>(102), batch, size, steps, device));
  row("RgbNet<ResNet-50>", measure(RgbNet<ResNet<50>>(102), batch, size, steps, device));
  row("RgbNet<ResNet-152>", measure(RgbNet<ResNet<152>>(102), batch, size, steps, device));
  row("HalSalNet<ResNet-152> (AfterStage<4>, Depth<4>)", measure(HalSalResNet152(102), batch, size, steps, device));
  row("RgbNet<MobileNetV2>", measure(RgbNet<MobileNetV2>(102), batch, size, steps, device));
  row("HalSalNet<MobileNetV2> (AfterStage<4>, Depth<4>)", measure(HalSalMobileNetV2(102), batch, size, steps, device));
  return 0;
}
