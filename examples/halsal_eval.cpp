// halsal_eval: evaluates a model file on a dataset folder — on the test (or val / train) set of the
// k-shot split stored in the model, or on all images — and writes per-class accuracy, the
// confusion matrix and every image's prediction.
#include <halsal/halsal.hpp>
#include <halsal/models/instances.hpp>
#include <halsal/models/model_file.hpp>

#include <CLI/CLI.hpp>
#include <iostream>

#include "cli_common.hpp"
#include <optional>

namespace ht = halsal::train;

int main(int argc, char** argv) {
  CLI::App app{"halsal eval: a model file's accuracy on a dataset folder, per class, with the confusion matrix"};
  std::string model_file, data_dir, subset = "test", k_text, device = "cpu", out = "eval-out";
  uint64_t seed = 0;
  app.add_option("--model", model_file, "model file (.safetensors written by halsal_train)")->required();
  app.add_option("--data", data_dir, "dataset folder with the model's classes")->required();
  app.add_option("--subset", subset, "test, val or train of the model's k-shot split, or all images")
      ->check(CLI::IsMember({"test", "val", "train", "all"}));
  app.add_option("--k", k_text, "rebuild the split with this k instead of the model's (K = the dataset's split)");
  auto* seed_opt = app.add_option("--seed", seed, "rebuild the split with this seed instead of the model's");
  app.add_option("--device", device, "cpu or cuda[:n]");
  app.add_option("--out", out, "output folder: per_class.csv, confusion.csv, predictions.csv, report.md");
  if (const int rc = halsal::cli::parse(app, argc, argv, "halsal_eval"); rc >= 0) return rc;

  try {
    std::optional<int> k;
    if (!k_text.empty()) k = halsal::data::parse_k(k_text);
    std::optional<uint64_t> seed_override;
    if (seed_opt->count() > 0) seed_override = seed;
    const ht::LoadedModel m = ht::load_model(model_file, device);
    std::cout << model_file << ": " << m.info.summary() << "\n";
    auto data = std::make_shared<const halsal::data::Dataset>(halsal::data::open(data_dir));
    std::cout << data->summary() << "\n";
    ht::check_same_classes(m.info, *data, model_file);
    const auto images = ht::model_subset(m.info, data, subset, k, seed_override);
    const ht::EvalReport r = m.evaluate(images);
    std::cout << subset << " (" << images.size() << " images): " << r << "\n";
    const auto files = ht::write_evaluation_files(r, *data, out, "Evaluation of " + model_file + " (" + subset + ")");
    std::cout << "Wrote";
    for (const auto& f : files.all()) std::cout << " " << f.string();
    std::cout << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "halsal_eval: " << e.what() << "\n";
    return 1;
  }
}
