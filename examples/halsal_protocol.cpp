// halsal_protocol: the paper's k-shot tables (methods × k × seeds), resumable, and Step I.
#include <halsal/halsal.hpp>
#include <halsal/train/experiment.hpp>

#include <CLI/CLI.hpp>
#include <iostream>

namespace ht = halsal::train;

namespace {

template <class B>
int run(const std::string& data_dir, const std::string& step_one_dir, ht::ProtocolOptions& p) {
  if (!step_one_dir.empty()) {
    auto imagenet = std::make_shared<const halsal::data::Dataset>(halsal::data::open(step_one_dir));
    std::cout << imagenet->summary() << "\n";
    const auto fit = ht::run_step_one<B>(imagenet, p.experiment.backbone_weights, p.experiment.config,
                                         p.experiment.step_one_weights);
    std::cout << "Step I: " << fit.epochs_done << " epochs; saliency branch written to "
              << p.experiment.step_one_weights.string() << "\n";
    return 0;
  }
  auto data = std::make_shared<const halsal::data::Dataset>(halsal::data::open(data_dir));
  std::cout << data->summary() << "\n";
  const auto table = ht::run_protocol<B>(data, p);
  std::cout << "\n" << table.markdown() << "\nWrote " << p.out_dir.string() << "/table.md, table.csv, runs.csv, runs.jsonl\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"halsal protocol: k-shot accuracy of Baseline-RGB, scratch SAL, SMIC, Approach A and B"};
  std::string data_dir, weights, step_one, step_one_data, methods = "rgb,scratch-sal,smic,A,B", ks = "1,2,3,5,10",
                                                         seeds = "0,1,2", prof = "fast", backbone = "mobilenet_v2",
                                                         out = "protocol-out", normalization, device = "cpu";
  int epochs = 0, image_size = 0;
  app.add_option("--data", data_dir, "dataset folder (any layout halsal::data::open detects)");
  app.add_option("--weights", weights, "torchvision-named ImageNet weights of the backbone (.pth/.safetensors)");
  app.add_option("--stepI", step_one, "Step I saliency weights (.safetensors): read by A and B, written by --step-one");
  app.add_option("--step-one", step_one_data, "run Step I on this ImageNet-validation-layout folder instead, "
                                              "writing --stepI")->check(CLI::ExistingDirectory);
  app.add_option("--methods", methods, "comma list of rgb, scratch-sal, smic, A, B");
  app.add_option("--k", ks, "comma list of training images per class; K = the dataset's own split");
  app.add_option("--seeds", seeds, "comma list of split/training seeds");
  app.add_option("--profile", prof, "fast (112 px, 12 epochs, cosine) or paper (224 px, 70 epochs, §4.1)")
      ->check(CLI::IsMember({"fast", "paper"}));
  app.add_option("--backbone", backbone, "mobilenet_v2, resnet18 or alexnet")
      ->check(CLI::IsMember({"mobilenet_v2", "resnet18", "alexnet"}));
  app.add_option("--normalization", normalization, "imagenet or symmetric (the shared MobileNetV2 needs symmetric)")
      ->check(CLI::IsMember({"imagenet", "symmetric"}));
  app.add_option("--epochs", epochs, "override the profile's epochs")->check(CLI::PositiveNumber);
  app.add_option("--image-size", image_size, "override the profile's image size")->check(CLI::Range(32, 1024));
  app.add_option("--device", device, "cpu or cuda[:n]");
  app.add_option("--out", out, "output folder; rerunning with the same folder resumes");
  CLI11_PARSE(app, argc, argv);

  try {
    ht::ProtocolOptions p;
    p.experiment.config = ht::profile(prof);
    auto& c = p.experiment.config;
    if (!normalization.empty()) c.normalization = normalization;
    if (epochs > 0) c.epochs = epochs;
    if (image_size > 0) c.image_size = image_size;
    c.device = device;
    p.experiment.backbone_weights = weights;
    p.experiment.step_one_weights = step_one;
    p.out_dir = out;
    if (step_one_data.empty()) {
      if (data_dir.empty()) throw halsal::Error("--data DIR is required (or --step-one IMAGENET_DIR)");
      p.methods = ht::split_list(methods);
      for (const auto& m : p.methods) ht::method_label(m);
      p.ks.clear();
      for (const auto& k : ht::split_list(ks)) {
        const int v = halsal::eval::parse_k(k);
        p.ks.push_back(v == halsal::eval::kFullSplit ? halsal::data::kOfficial : v);
      }
      p.seeds.clear();
      for (const auto& s : ht::split_list(seeds)) {
        try {
          p.seeds.push_back(std::stoull(s));
        } catch (const std::exception&) {
          throw halsal::Error("--seeds: '" + s + "' is not a non-negative integer");
        }
      }
    } else if (step_one.empty() || weights.empty()) {
      throw halsal::Error("--step-one needs --weights (with the ImageNet head) and --stepI OUT.safetensors");
    }
    if (backbone == "resnet18") return run<halsal::ResNet<18>>(data_dir, step_one_data, p);
    if (backbone == "alexnet") return run<halsal::AlexNet>(data_dir, step_one_data, p);
    return run<halsal::MobileNetV2>(data_dir, step_one_data, p);
  } catch (const std::exception& e) {
    std::cerr << "halsal_protocol: " << e.what() << "\n";
    return 1;
  }
}
