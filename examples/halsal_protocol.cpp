// halsal_protocol: the paper's k-shot tables (methods × k × seeds), resumable, and Step I with
// its held-out check.
#include <halsal/halsal.hpp>
#include <halsal/experiments/experiment.hpp>
#include <halsal/models/instances.hpp>

#include <CLI/CLI.hpp>
#include <iostream>

#include "cli_common.hpp"

namespace ht = halsal::train;

namespace {

template <class B, class Fusion = halsal::default_fusion_t<B>>
int run(const std::string& data_dir, const std::vector<std::string>& step_one_dirs, double holdout,
        ht::ProtocolOptions& p) {
  if (!step_one_dirs.empty()) {
    std::vector<halsal::data::Dataset> parts;
    for (const auto& dir : step_one_dirs) {
      parts.push_back(halsal::data::open(dir));
      std::cout << parts.back().summary() << "\n";
    }
    auto imagenet = std::make_shared<const halsal::data::Dataset>(halsal::data::concat(parts));
    ht::StepOneOptions o;
    o.weights = p.experiment.backbone_weights;
    o.config = p.experiment.config;
    o.saliency = p.experiment.saliency;
    o.holdout = holdout;
    o.gallery_dir = p.out_dir;
    // Under torchrun (several processes): Step I is one data-parallel training run over them.
    o.process_group = halsal::dist::join_world_from_environment(o.config.device);
    if (o.process_group)
      std::cout << "rank " << o.process_group->rank() << " of " << o.process_group->size() << " (data-parallel over "
                << o.process_group->backend() << ", batch " << o.config.batch_size << " per process) on "
                << o.config.device << "\n";
    const auto report = ht::run_step_one<B, halsal::Depth<4>, Fusion>(imagenet, o, p.experiment.step_one_weights);
    if (o.process_group && o.process_group->rank() != 0) return 0;  // rank 0 reports and writes
    std::cout << "Step I: " << report.fit.epochs_done << " epochs on " << report.train_images
              << " images; saliency branch written to " << p.experiment.step_one_weights.string() << "\n"
              << report.verdict();
    if (report.checked)
      std::cout << "Held-out galleries: " << (p.out_dir / "stepI-helped.png").string() << ", stepI-hurt.png, "
                << "stepI-heldout.png\n";
    return 0;
  }
  auto data = std::make_shared<const halsal::data::Dataset>(halsal::data::open(data_dir));
  std::cout << data->summary() << "\n";
  const auto table = ht::run_protocol<B, halsal::Depth<4>, Fusion>(data, p);
  // A shard that did not finish last has written only its own runs (see the line above).
  const size_t grid = p.methods.size() * p.ks.size() * p.seeds.size();
  if (p.shard.sharded() && table.records().size() < grid) {
    std::cout << "Wrote " << (p.out_dir / "shards" / p.shard.folder()).string() << "/runs.csv, runs.jsonl\n";
    return 0;
  }
  std::cout << "\n" << table.markdown() << "\nWrote " << p.out_dir.string()
            << "/table.md, table.csv, paired.csv, runs.csv, runs.jsonl\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"halsal protocol: k-shot accuracy of the NCM floor, Baseline-RGB, scratch SAL, SMIC, Approach A "
               "and B; or Step I with its held-out check"};
  std::string data_dir, weights, step_one, methods = "ncm,rgb,scratch-sal,smic,A,B", ks = "1,2,3,5,10",
                                          seeds = "0,1,2", backbone = "mobilenet_v2", out = "protocol-out";
  int fusion_stage = 4;
  std::string shard;
  bool merge = false;
  std::vector<std::string> step_one_data;
  double holdout = 0.2;
  halsal::cli::TrainingFlags flags;
  app.add_option("--data", data_dir, "dataset folder (any layout halsal::data::open detects)");
  app.add_option("--weights", weights, "torchvision-named ImageNet weights of the backbone (.pth/.safetensors)");
  app.add_option("--stepI", step_one,
                 "Step I saliency weights (.safetensors): read by A, B and ncm-sal, written by --step-one");
  app.add_option("--step-one", step_one_data,
                 "run Step I instead, on these ImageNet-validation-layout folders (comma list or repeated; their "
                 "classes must be the weights' 1000), writing --stepI and its check into --out")
      ->delimiter(',')
      ->check(CLI::ExistingDirectory);
  app.add_option("--holdout", holdout, "Step I: share of the images held out for its check (0 = none)")
      ->check(CLI::Range(0.0, 0.9));
  app.add_option("--methods", methods, "comma list of ncm, ncm-sal, rgb, scratch-sal, smic, A, B");
  app.add_option("--k", ks, "comma list of training images per class; K = the dataset's own split");
  app.add_option("--seeds", seeds, "comma list of split/training seeds");
  app.add_option("--backbone", backbone, ht::backbone_names_text() + " (resnet152: the paper's Table 2)")
      ->check(CLI::IsMember(ht::backbone_names()));
  app.add_option("--fusion-stage", fusion_stage,
                 "mobilenet_v2: fuse after stage 3 (output stride 16) or 4 (32, the default, before pooling)")
      ->check(CLI::Range(3, 4));
  flags.add_to(app);
  app.add_option("--shard", shard,
                 "I/N: run shard I of N of the grid (cell i where i % N == I); without it, the place in the world "
                 "comes from torchrun (RANK, WORLD_SIZE) or Slurm (SLURM_PROCID, SLURM_NTASKS), else one process");
  app.add_flag("--merge", merge, "write the tables from every shard's finished cells in --out (no training)");
  app.add_option("--out", out, "output folder; rerunning with the same folder resumes");
  if (const int rc = halsal::cli::parse(app, argc, argv, "halsal_protocol"); rc >= 0) return rc;

  try {
    if (merge) {
      if (!shard.empty() || !step_one_data.empty()) throw halsal::Error("--merge takes only --out: it writes the tables from what the shards finished");
      const auto table = ht::merge_protocol(out);
      std::cout << table.markdown() << "\nMerged " << table.records().size() << " runs into " << out
                << "/table.md, table.csv, paired.csv, runs.csv, runs.jsonl\n";
      return 0;
    }
    ht::ProtocolOptions p;
    p.shard = shard.empty() ? ht::shard_from_environment() : ht::parse_shard(shard);
    // Step I is one training run: under torchrun its processes train it data-parallel, not as shards.
    if (!step_one_data.empty() && p.shard.sharded() && shard.empty() && p.shard.source == "torchrun") p.shard = {};
    p.experiment.config = flags.config();
    // Each process of a world on CUDA takes the GPU of its local rank.
    p.experiment.config.device = p.shard.device(p.experiment.config.device);
    if (p.shard.sharded() && !step_one_data.empty())
      throw halsal::Error("--step-one is one training run: it takes no --shard, and several Slurm tasks train it "
                          "data-parallel only through torchrun (srun torchrun --no-python …), which sets RANK, "
                          "WORLD_SIZE, MASTER_ADDR and MASTER_PORT");
    if (p.shard.sharded())
      std::cout << "shard " << p.shard.label() << " (" << p.shard.source << ") on " << p.experiment.config.device << "\n";
    p.experiment.saliency = flags.saliency();
    p.experiment.backbone_weights = weights;
    p.experiment.step_one_weights = step_one;
    p.out_dir = out;
    if (step_one_data.empty()) {
      if (data_dir.empty()) throw halsal::Error("--data DIR is required (or --step-one IMAGENET_DIR[,DIR...])");
      p.methods = ht::split_list(methods);
      for (const auto& m : p.methods) ht::method_label(m);
      p.ks = ht::parse_k_list(ks);
      p.seeds = ht::parse_seed_list(seeds);
    } else if (step_one.empty() || weights.empty()) {
      throw halsal::Error("--step-one needs --weights (with the ImageNet head) and --stepI OUT.safetensors");
    }
    if (backbone != "mobilenet_v2" && fusion_stage != 4)
      throw halsal::Error("--fusion-stage is a MobileNetV2 option; " + backbone + " fuses at its default point");
    if (fusion_stage == 3)
      return run<halsal::MobileNetV2, halsal::AfterStage<3>>(data_dir, step_one_data, holdout, p);
    return ht::with_backbone(backbone, [&](auto tag) {
      return run<typename decltype(tag)::type>(data_dir, step_one_data, holdout, p);
    });
  } catch (const std::exception& e) {
    std::cerr << "halsal_protocol: " << e.what() << "\n";
    return 1;
  }
}
