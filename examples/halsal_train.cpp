// halsal_train: trains one network (backbone × method) on one k-shot split of a dataset folder and
// writes it as a model file (weights + backbone, method, classes, preprocessing, split) that
// halsal_eval, halsal_predict and halsal_gallery read.
#include <halsal/halsal.hpp>
#include <halsal/models/instances.hpp>
#include <halsal/models/model_file.hpp>

#include <CLI/CLI.hpp>
#include <iostream>

#include "cli_common.hpp"

namespace ht = halsal::train;

int main(int argc, char** argv) {
  CLI::App app{"halsal train: one network on one k-shot split, written as a model file (DIR/model.safetensors)"};
  std::string data_dir, backbone = "mobilenet_v2", method = "B", k_text = "5", weights, step_one, out;
  uint64_t seed = 0;
  bool keep_checkpoints = false;
  halsal::cli::TrainingFlags flags;
  app.add_option("--data", data_dir, "dataset folder (any layout halsal::data::open detects)")->required();
  app.add_option("--backbone", backbone, ht::backbone_names_text())->check(CLI::IsMember(ht::backbone_names()));
  app.add_option("--method", method, "rgb, scratch-sal, smic, A or B")
      ->check(CLI::IsMember({"rgb", "scratch-sal", "smic", "A", "B"}));
  app.add_option("--k", k_text, "training images per class; K = the dataset's own training split");
  app.add_option("--seed", seed, "split and training seed");
  app.add_option("--weights", weights, "torchvision-named ImageNet weights of the backbone (.pth/.safetensors)");
  app.add_option("--stepI", step_one, "Step I saliency weights (.safetensors), needed by A and B");
  flags.add_to(app);
  app.add_option("--out", out, "output folder: model.safetensors, metrics.jsonl; rerunning resumes")->required();
  app.add_flag("--keep-checkpoints", keep_checkpoints, "keep DIR/checkpoints after the model file is written");
  if (const int rc = halsal::cli::parse(app, argc, argv, "halsal_train"); rc >= 0) return rc;

  try {
    ht::TrainModelOptions t;
    t.backbone = backbone;
    t.method = method;
    t.k = halsal::data::parse_k(k_text);
    t.seed = seed;
    t.keep_checkpoints = keep_checkpoints;
    t.experiment.config = flags.config();
    t.experiment.saliency = flags.saliency();
    t.experiment.backbone_weights = weights;
    t.experiment.step_one_weights = step_one;
    t.experiment.out_dir = out;
    // Under torchrun (or with RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set): data-parallel.
    if (auto pg = halsal::dist::join_world_from_environment(t.experiment.config.device)) {
      t.experiment.process_group = pg;
      std::cout << "rank " << pg->rank() << " of " << pg->size() << " (data-parallel over " << pg->backend()
                << ", batch " << t.experiment.config.batch_size << " per process) on " << t.experiment.config.device
                << "\n";
    }
    auto data = std::make_shared<const halsal::data::Dataset>(halsal::data::open(data_dir));
    std::cout << data->summary() << "\n";
    const ht::TrainedModel r = ht::train_and_save(data, t);
    if (r.files.empty()) return 0;  // a data-parallel rank other than 0: rank 0 reports and writes
    std::cout << r.cell.split.summary() << "\n"
              << ht::method_label(method) << " (" << r.info.network << "), epoch " << r.cell.best_epoch
              << " selected; test: " << r.cell.report << "\nWrote";
    for (const auto& f : r.files) std::cout << " " << f.string();
    std::cout << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "halsal_train: " << e.what() << "\n";
    return 1;
  }
}
