// Throughput of the backbones and the composed networks: eval forward and train step (frozen
// BatchNorm, SGD with momentum), images/s. bench/python_twin.py measures the same in Python eager,
// bench/compare.py puts both side by side (make bench).
// Usage: bench_models [--size 224] [--batch 8] [--threads N] [--device cpu|cuda] [--steps 3]
//                     [--precision fp32|bf16|fp16] [--no-fold] [--no-memory-cache]
//                     [--channels-last | --no-channels-last] [--only key,key] [--json FILE] [--list]
// --no-fold runs BatchNorm apart from its convolution, --no-memory-cache leaves LibTorch's CPU
// allocator in place and --no-channels-last keeps every network NCHW (the trainer folds, caches and
// stores networks with depthwise convolutions channels-last on the CPU by default), so that the
// speed of the language and of the optimisations can be told apart.
#include <halsal/halsal.hpp>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <functional>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Timing {
  double eval_ips = 0, train_ips = 0;
  bool channels_last = false;
};

struct Setup {
  int64_t batch = 8, size = 224;
  int steps = 3;
  torch::Device device = torch::kCPU;
  halsal::train::Precision precision = halsal::train::Precision::fp32;
  bool fold = true;
  std::optional<bool> channels_last;  // unset: the trainer's default
};

template <class Net>
Timing measure(Net net, const Setup& s) {
  const auto batch = s.batch;
  const auto steps = s.steps;
  const auto device = s.device;
  const auto precision = s.precision;
  net->to(device);
  halsal::set_batchnorm_folding(*net, s.fold);
  Timing t;
  t.channels_last = s.channels_last.value_or(halsal::channels_last_by_default(*net, device));  // as the Trainer
  halsal::set_channels_last(*net, t.channels_last);
  const auto x = halsal::in_channels_last(torch::randn({batch, 3, s.size, s.size}, device), t.channels_last);
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
  net->eval();
  {
    c10::InferenceMode inference;  // as Trainer::evaluate
    t.eval_ips = time([&] {
      halsal::train::AutocastScope autocast(device, precision);
      net->forward(x);
    });
  }
  auto groups = halsal::apply_policy<halsal::ApproachB>(net);
  torch::optim::SGD sgd(groups.all(), torch::optim::SGDOptions(1e-4).momentum(0.9));
  net->train();
  t.train_ips = time([&] {
    sgd.zero_grad();
    torch::Tensor logits;
    {
      halsal::train::AutocastScope autocast(device, precision);
      logits = net->forward(x);
    }
    torch::nn::functional::cross_entropy(logits.to(torch::kFloat32), y).backward();
    sgd.step();
  });
  return t;
}

/// One row of the table: its key (for --only and the JSON), its name, and how it is measured.
struct Row {
  std::string key, name;
  std::function<Timing(const Setup&)> measure;
};

/// The networks, in table order (bench/python_twin.py has the same keys; bench/compare.py checks).
std::vector<Row> rows() {
  using namespace halsal;
  return {
      {"alexnet", "RgbNet<AlexNet>", [](const Setup& s) { return measure(RgbNet<AlexNet>(102), s); }},
      {"halsal_alexnet", "HalSalNet<AlexNet> (BeforePool2, Depth<4>)",
       [](const Setup& s) { return measure(HalSalAlexNet(102), s); }},
      {"resnet18", "RgbNet<ResNet-18>", [](const Setup& s) { return measure(RgbNet<ResNet<18>>(102), s); }},
      {"resnet50", "RgbNet<ResNet-50>", [](const Setup& s) { return measure(RgbNet<ResNet<50>>(102), s); }},
      {"resnet152", "RgbNet<ResNet-152>", [](const Setup& s) { return measure(RgbNet<ResNet<152>>(102), s); }},
      {"halsal_resnet152", "HalSalNet<ResNet-152> (AfterStage<4>, Depth<4>)",
       [](const Setup& s) { return measure(HalSalResNet152(102), s); }},
      {"mobilenet_v2", "RgbNet<MobileNetV2>", [](const Setup& s) { return measure(RgbNet<MobileNetV2>(102), s); }},
      {"halsal_mobilenet_v2", "HalSalNet<MobileNetV2> (AfterStage<4>, Depth<4>)",
       [](const Setup& s) { return measure(HalSalMobileNetV2(102), s); }},
  };
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"halsal model throughput (images/s)"};
  Setup setup;
  int threads = 0;
  bool no_fold = false, no_memory_cache = false, channels_last = false, no_channels_last = false, list = false;
  std::string device_name = "cpu", precision_name = "fp32", only, json_file;
  app.add_option("--size", setup.size, "input side");
  app.add_option("--batch", setup.batch, "batch size");
  app.add_option("--threads", threads, "intra-op threads (0 = cores)");
  app.add_option("--steps", setup.steps, "timed steps per measurement");
  app.add_flag("--no-fold", no_fold, "run BatchNorm apart from its convolution (halsal folds eval-mode BatchNorm)");
  app.add_flag("--no-memory-cache", no_memory_cache,
               "LibTorch's own CPU allocator (the trainer keeps freed tensor memory for reuse)");
  auto* nhwc = app.add_flag("--channels-last", channels_last, "NHWC weights and inputs for every network");
  app.add_flag("--no-channels-last", no_channels_last,
               "NCHW for every network (by default networks with depthwise convolutions run NHWC on the CPU)")
      ->excludes(nhwc);
  app.add_option("--device", device_name, "cpu or cuda");
  app.add_option("--precision", precision_name, "fp32, bf16 or fp16 (autocast around the forward pass)")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  app.add_option("--only", only, "comma list of row keys (default: all; --list prints them)");
  app.add_flag("--list", list, "print the row keys, one per line, and exit");
  app.add_option("--json", json_file, "also write the rows to this JSON file");
  CLI11_PARSE(app, argc, argv);
  const auto table = rows();
  if (list) {
    for (const auto& r : table) std::cout << r.key << "\n";
    return 0;
  }
  try {
    const auto keys = halsal::train::split_list(only);
    for (const auto& key : keys)
      if (std::none_of(table.begin(), table.end(), [&](const Row& r) { return r.key == key; })) {
        std::string known;
        for (const auto& r : table) known += (known.empty() ? "" : ", ") + r.key;
        throw halsal::Error("--only: no network \"" + key + "\"; known: " + known);
      }
    halsal::set_num_threads(threads);
    setup.device = torch::Device(device_name);
    setup.precision = halsal::train::parse_precision(precision_name);
    halsal::train::check_precision(setup.precision, device_name);
    if (setup.device.is_cuda() && !torch::cuda::is_available())
      throw halsal::Error("--device " + device_name + ": this process sees no CUDA GPU");
    setup.fold = !no_fold;
    if (channels_last || no_channels_last) setup.channels_last = channels_last;
    const halsal::CpuMemoryCacheScope memory_cache(!no_memory_cache);  // as the Trainer
    std::cout << "LibTorch " << TORCH_VERSION << ", " << at::get_num_threads() << " threads, " << setup.device << ", "
              << precision_name << ", batch " << setup.batch << ", " << setup.size << " px, BatchNorm "
              << (setup.fold ? "folded" : "apart") << (memory_cache.installed() ? ", memory cache" : "")
              << (!setup.channels_last ? ", channels-last where depthwise"
                  : *setup.channels_last ? ", channels-last" : ", NCHW")
              << "\n\n| network | eval img/s | train img/s |\n|---|---|---|\n";
    nlohmann::json json_rows = nlohmann::json::array();
    for (const auto& r : table) {
      if (!keys.empty() && std::find(keys.begin(), keys.end(), r.key) == keys.end()) continue;
      const Timing t = r.measure(setup);
      std::cout << "| " << r.name << " | " << std::fixed << std::setprecision(1) << t.eval_ips << " | " << t.train_ips
                << " |\n" << std::flush;
      json_rows.push_back({{"key", r.key}, {"network", r.name}, {"eval_ips", t.eval_ips}, {"train_ips", t.train_ips},
                           {"channels_last", t.channels_last}});
    }
    if (!json_file.empty()) {
      const nlohmann::json j = {{"language", "C++"},         {"torch", TORCH_VERSION},
                                {"threads", at::get_num_threads()},
                                {"device", device_name},     {"precision", precision_name},
                                {"batch", setup.batch},      {"size", setup.size},
                                {"steps", setup.steps},      {"fold_batchnorm", setup.fold},
                                {"cpu_memory_cache", memory_cache.installed()},
                                {"channels_last", setup.channels_last ? nlohmann::json(*setup.channels_last)
                                                                      : nlohmann::json("auto")},
                                {"rows", json_rows}};
      halsal::io::write_file_atomic(json_file, j.dump(2) + "\n");
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "bench_models: " << e.what() << "\n";
    return 1;
  }
}
