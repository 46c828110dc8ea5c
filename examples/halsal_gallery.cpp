// halsal_gallery: the paper's Tables 3-4 from two model files — test images where ours is right and
// the baseline wrong, then the reverse, each with our saliency and an example of our prediction.
#include <halsal/halsal.hpp>
#include <halsal/models/instances.hpp>
#include <halsal/models/model_file.hpp>
#include <halsal/models/comparison.hpp>

#include <CLI/CLI.hpp>
#include <iostream>

#include "cli_common.hpp"

namespace ht = halsal::train;

int main(int argc, char** argv) {
  CLI::App app{"halsal gallery: where two models disagree on the test split (the paper's Tables 3-4) as a PNG"};
  std::string data_dir, baseline_file, ours_file, out = "gallery.png", device = "cpu";
  int rows = 4, tile = 160;
  app.add_option("--data", data_dir, "dataset folder with the models' classes")->required();
  app.add_option("--baseline", baseline_file, "the baseline's model file (e.g. an rgb model)")->required();
  app.add_option("--ours", ours_file, "our model file (its split's test set is used)")->required();
  app.add_option("--rows", rows, "rows of each kind at most")->check(CLI::Range(1, 100));
  app.add_option("--out", out, "the PNG to write");
  app.add_option("--tile", tile, "tile size in pixels")->check(CLI::Range(32, 1024));
  app.add_option("--device", device, "cpu or cuda[:n]");
  if (const int rc = halsal::cli::parse(app, argc, argv, "halsal_gallery"); rc >= 0) return rc;

  try {
    const ht::LoadedModel baseline = ht::load_model(baseline_file, device);
    const ht::LoadedModel ours = ht::load_model(ours_file, device);
    std::cout << "baseline " << baseline_file << ": " << baseline.info.summary() << "\nours     " << ours_file << ": "
              << ours.info.summary() << "\n";
    auto data = std::make_shared<const halsal::data::Dataset>(halsal::data::open(data_dir));
    std::cout << data->summary() << "\n";
    auto g = halsal::viz::compare_models(baseline, ours, data, static_cast<size_t>(rows));
    std::cout << g.baseline_name << ": " << g.baseline_report << "\n" << g.ours_name << ": " << g.ours_report << "\n"
              << g.ours_better << " test images where " << g.ours_name << " is right and " << g.baseline_name
              << " wrong, " << g.baseline_better << " the reverse\n";
    g.options.tile = tile;
    g.options.font_scale = tile >= 200 ? 2 : 1;
    halsal::viz::write_gallery_png(g.rows, out, g.options);
    std::cout << "Wrote " << out << " (" << g.ours_better_rows << " + " << g.baseline_better_rows << " rows)\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "halsal_gallery: " << e.what() << "\n";
    return 1;
  }
}
