// Tiny synthetic data and a one-epoch configuration for tests that train (seconds, not minutes).
#pragma once
#include <halsal/data/data.hpp>
#include <halsal/train/config.hpp>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

namespace halsal::test {

/// `classes` synthetic flower classes of `per_class` 64-px images (5 val + 5 test + the rest to train).
inline std::shared_ptr<const data::Dataset> tiny_synthetic(int classes = 2, int per_class = 12) {
  data::SyntheticOptions o;
  o.classes = classes;
  o.per_class = per_class;
  o.size = 64;  // the AlexNet-style saliency branch needs >= 64 px
  o.seed = 3;
  o.clutter = 0;
  return std::make_shared<const data::Dataset>(data::synthetic(o));
}

/// One epoch of Adam at 1e-3, batches of 4, 64 px squashed, trainable BatchNorm, quiet.
inline train::TrainConfig tiny_config() {
  train::TrainConfig c;
  c.optimizer = "adam";
  c.lr = 1e-3;
  c.epochs = 1;
  c.batch_size = 4;
  c.image_size = 64;
  c.random_resized_crop = false;
  c.freeze_batchnorm = false;
  c.workers = 0;
  c.quiet = true;
  return c;
}

/// A whole file as a string.
inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace halsal::test
