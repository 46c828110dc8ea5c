// halsal_predict: the top classes of image files under a model file, and each image's hallucinated
// saliency as a heat-map overlay PNG.
#include <halsal/halsal.hpp>
#include <halsal/models/instances.hpp>
#include <halsal/models/model_file.hpp>
#include <halsal/viz/image_ops.hpp>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <iomanip>
#include <iostream>

#include "cli_common.hpp"

namespace ht = halsal::train;

int main(int argc, char** argv) {
  CLI::App app{"halsal predict: top classes and a saliency overlay PNG for image files"};
  std::string model_file, saliency_png, out_dir, device = "cpu";
  std::vector<std::string> images;
  int top = 5;
  app.add_option("--model", model_file, "model file (.safetensors written by halsal_train)")->required();
  app.add_option("images", images, "image files (JPEG, PNG, BMP)")->required();
  app.add_option("--top", top, "how many classes to print")->check(CLI::PositiveNumber);
  auto* png_opt = app.add_option("--saliency-png", saliency_png, "write the saliency overlay of the (one) image here");
  app.add_option("--out", out_dir, "write <image stem>-saliency.png for every image into this folder")->excludes(png_opt);
  app.add_option("--device", device, "cpu or cuda[:n]");
  if (const int rc = halsal::cli::parse(app, argc, argv, "halsal_predict"); rc >= 0) return rc;

  try {
    if (!saliency_png.empty() && images.size() != 1)
      throw halsal::Error("--saliency-png names one file, but " + std::to_string(images.size()) +
                          " images were given (use --out DIR)");
    const ht::LoadedModel m = ht::load_model(model_file, device);
    std::cout << model_file << ": " << m.info.summary() << "\n";
    if (!m.has_saliency && (!saliency_png.empty() || !out_dir.empty()))
      std::cout << "(an " << m.info.method << " model has no saliency branch: no saliency PNG is written)\n";
    for (const auto& image : images) {
      const ht::ImagePrediction p = ht::predict(m, image, top);
      std::cout << image << "\n";
      for (size_t i = 0; i < p.classes.size(); ++i)
        std::cout << "  " << std::setw(2) << i + 1 << ". " << std::fixed << std::setprecision(2) << std::setw(6)
                  << 100 * p.probabilities[i] << " %  " << p.names[i] << " (class " << p.classes[i] << ")\n"
                  << std::defaultfloat;
      std::filesystem::path png = saliency_png;
      if (!out_dir.empty()) png = std::filesystem::path(out_dir) / (std::filesystem::path(image).stem().string() + "-saliency.png");
      if (png.empty()) continue;
      if (!p.saliency.defined()) {
        std::cout << "  no saliency map (rgb model)\n";
        continue;
      }
      if (png.has_parent_path()) std::filesystem::create_directories(png.parent_path());
      auto overlay = halsal::viz::overlay_heatmap(p.image, p.saliency);  // H×W×3 at the network's size
      const int64_t side = std::max<int64_t>(256, overlay.size(0));        // small inputs are enlarged
      halsal::viz::write_png(halsal::viz::resize_image(overlay, side, side * overlay.size(1) / overlay.size(0)), png);
      std::cout << "  saliency overlay: " << png.string() << "\n";
    }
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "halsal_predict: " << e.what() << "\n";
    return 1;
  }
}
