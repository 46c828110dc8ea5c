// halsal_protocol: the paper's k-shot tables (methods × k × seeds), resumable, and Step I.
#include <halsal/halsal.hpp>
#include <halsal/train/experiment.hpp>

#include <CLI/CLI.hpp>
#include <iostream>

#include "cli_common.hpp"

namespace ht = halsal::train;

namespace {

template <class B>
int run(const std::string& data_dir, const std::string& step_one_dir, ht::ProtocolOptions& p) {
  if (!step_one_dir.empty()) {
    auto imagenet = std::make_shared<const halsal::data::Dataset>(halsal::data::open(step_one_dir));
    std::cout << imagenet->summary() << "\n";
    const auto fit = ht::run_step_one<B>(imagenet, p.experiment.backbone_weights, p.experiment.config,
                                         p.experiment.step_one_weights, p.experiment.saliency);
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
                                                         seeds = "0,1,2", backbone = "mobilenet_v2",
                                                         out = "protocol-out";
  halsal::cli::TrainingFlags flags;
  app.add_option("--data", data_dir, "dataset folder (any layout halsal::data::open detects)");
  app.add_option("--weights", weights, "torchvision-named ImageNet weights of the backbone (.pth/.safetensors)");
  app.add_option("--stepI", step_one, "Step I saliency weights (.safetensors): read by A and B, written by --step-one");
  app.add_option("--step-one", step_one_data, "run Step I on this ImageNet-validation-layout folder instead, "
                                              "writing --stepI")->check(CLI::ExistingDirectory);
  app.add_option("--methods", methods, "comma list of rgb, scratch-sal, smic, A, B");
  app.add_option("--k", ks, "comma list of training images per class; K = the dataset's own split");
  app.add_option("--seeds", seeds, "comma list of split/training seeds");
  app.add_option("--backbone", backbone, "mobilenet_v2, resnet18 or alexnet")
      ->check(CLI::IsMember({"mobilenet_v2", "resnet18", "alexnet"}));
  flags.add_to(app);
  app.add_option("--out", out, "output folder; rerunning with the same folder resumes");
  if (const int rc = halsal::cli::parse(app, argc, argv, "halsal_protocol"); rc >= 0) return rc;

  try {
    ht::ProtocolOptions p;
    p.experiment.config = flags.config();
    p.experiment.saliency = flags.saliency();
    p.experiment.backbone_weights = weights;
    p.experiment.step_one_weights = step_one;
    p.out_dir = out;
    if (step_one_data.empty()) {
      if (data_dir.empty()) throw halsal::Error("--data DIR is required (or --step-one IMAGENET_DIR)");
      p.methods = ht::split_list(methods);
      for (const auto& m : p.methods) ht::method_label(m);
      p.ks = ht::parse_k_list(ks);
      p.seeds = ht::parse_seed_list(seeds);
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
