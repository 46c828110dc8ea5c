// The command line both ablation programs share (halsal_ablation_depth, halsal_ablation_fusion):
// they differ only in their type lists, which they pass in as one runner per backbone.
#pragma once
#include <halsal/experiments/ablation.hpp>
#include <halsal/models/model_file.hpp>

#include <CLI/CLI.hpp>
#include <iostream>
#include <memory>
#include <string>

#include "cli_common.hpp"

namespace halsal::cli {

/// What one ablation program says about itself.
struct AblationProgram {
  const char* name;           ///< e.g. "halsal_ablation_depth"
  const char* description;    ///< --help's first line
  const char* backbones;      ///< --backbone's help: what each backbone's variants are
  const char* variant;        ///< "depth" or "fusion point" (in messages)
  const char* default_out;
};

/// Parses the options, opens the data and calls run_alexnet / run_mobilenet_v2(data, options) →
/// train::AblationResult; prints the table. Returns the exit status.
template <class RunAlexNet, class RunMobileNetV2>
int ablation_main(int argc, char** argv, const AblationProgram& p, RunAlexNet run_alexnet,
                  RunMobileNetV2 run_mobilenet_v2) {
  namespace ht = halsal::train;
  CLI::App app{p.description};
  std::string data_dir, weights, method = "scratch-sal", ks = "5", seeds = "0", backbone = "alexnet",
              out = p.default_out;
  std::vector<std::string> step_one_data;
  TrainingFlags flags;
  bool no_baseline = false, save_models = false, merge = false, step_one_only = false;
  std::string shard;
  const std::string variant = p.variant;
  app.add_option("--data", data_dir, "dataset folder (any layout halsal::data::open detects)")->required();
  app.add_option("--backbone", backbone, p.backbones)->check(CLI::IsMember({"alexnet", "mobilenet_v2"}));
  app.add_option("--weights", weights, "torchvision-named ImageNet weights of the backbone (.pth/.safetensors)");
  app.add_option("--method", method, "scratch-sal (branch from Xavier init), or A / B (branch from a Step I run per " +
                                         variant + ": needs --step-one and --weights)")
      ->check(CLI::IsMember({"scratch-sal", "A", "B"}));
  app.add_option("--step-one", step_one_data, "ImageNet-validation-layout folders (comma list) for each " + variant +
                                                  "'s Step I (A, B); cached as <out>/stepI-<variant>.safetensors")
      ->delimiter(',')
      ->check(CLI::ExistingDirectory);
  app.add_option("--k", ks, "comma list of training images per class; K = the dataset's own split");
  app.add_option("--seeds", seeds, "comma list of split/training seeds (std over them = error bars)");
  flags.add_to(app);
  app.add_flag("--no-baseline", no_baseline, "leave out the Baseline-RGB bar");
  app.add_flag("--save-models", save_models,
               "write each cell's trained network as a model file, <out>/cells/<cell>/model.safetensors, which "
               "halsal_eval and halsal_predict load as that " + variant);
  app.add_option("--out", out, "output folder; rerunning with the same folder resumes");
  app.add_option("--shard", shard,
                 "I/N: run shard I of N of the grid (cell i where i % N == I, counting variant, k, seed); without "
                 "it, the place in the world comes from torchrun (RANK, WORLD_SIZE) or Slurm (SLURM_PROCID, "
                 "SLURM_NTASKS)");
  app.add_flag("--step-one-only", step_one_only,
               "methods A and B: run each " + variant + "'s Step I (a shard: every N-th " + variant +
                   ") and stop; a sharded run needs them made first");
  app.add_flag("--merge", merge,
               "write the results from every shard's finished cells in --out (no training; give the run's own "
               "--data, --backbone, --method, --k and --seeds)");
  if (const int rc = parse(app, argc, argv, p.name); rc >= 0) return rc;

  try {
    ht::AblationOptions o;
    o.method = method;
    if (method != "scratch-sal" && !merge && (step_one_data.empty() || weights.empty()))
      throw Error("--method " + method + " needs --step-one IMAGENET_DIR and --weights FILE (ImageNet weights with "
                  "their head): each " + variant + "'s saliency branch gets its own Step I");
    if (method == "scratch-sal" && !step_one_data.empty()) throw Error("--step-one is only used by --method A or B");
    o.experiment.config = flags.config();
    o.experiment.saliency = flags.saliency();
    o.experiment.backbone_weights = weights;
    o.out_dir = out;
    o.include_baseline = !no_baseline;
    o.ks = ht::parse_k_list(ks);
    o.seeds = ht::parse_seed_list(seeds);
    if (merge && (step_one_only || !shard.empty()))
      throw Error("--merge writes the results from what every shard finished: no --shard, no --step-one-only");
    o.mode = merge ? ht::AblationMode::merge : step_one_only ? ht::AblationMode::step_one_only : ht::AblationMode::run;
    o.shard = merge ? ht::Shard{} : shard.empty() ? ht::shard_from_environment() : ht::parse_shard(shard);
    o.experiment.config.device = o.shard.device(o.experiment.config.device);
    if (o.shard.sharded())
      std::cout << "shard " << o.shard.label() << " (" << o.shard.source << ") on " << o.experiment.config.device
                << "\n";
    auto data = std::make_shared<const data::Dataset>(data::open(data_dir));
    std::cout << data->summary() << "\n";
    if (save_models)
      o.on_cell = [&](const std::string&, const ht::CellResult& r) {
        if (r.out_dir.empty()) return;
        const auto file = r.out_dir / "model.safetensors";
        ht::save_cell_model(r, *data, o.experiment, file);
        std::cout << "  model: " << file.string() << "\n";
      };
    if (!step_one_data.empty()) {
      std::vector<data::Dataset> parts;
      for (const auto& dir : step_one_data) parts.push_back(data::open(dir));
      o.step_one_data = std::make_shared<const data::Dataset>(data::concat(parts));
    }
    const ht::AblationResult result = backbone == "mobilenet_v2" ? run_mobilenet_v2(data, o) : run_alexnet(data, o);
    if (o.mode == ht::AblationMode::step_one_only) {
      std::cout << "Step I files are in " << o.out_dir.string() << " (stepI-<" << variant << ">.safetensors)\n";
      return 0;
    }
    bool complete = true;
    for (const auto& row : result.top1)
      for (const auto& cell : row) complete = complete && cell.n >= static_cast<int>(o.seeds.size());
    if (o.shard.sharded() && !complete) {  // the results wait for the other shards
      std::cout << "Wrote " << (o.out_dir / "shards" / o.shard.folder()).string() << "/runs.csv\n";
      return 0;
    }
    std::cout << "\n" << ht::ablation_results_markdown(result) << "\nWrote " << o.out_dir.string()
              << "/results.md, results.csv, ablation.svg, runs.csv\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << p.name << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace halsal::cli
