// libFuzzer target: load_split (the "set,label,path" split files of halsal_data split and the
// protocol) against a fixed 3-class, 12-image dataset.
#include <cstddef>
#include <cstdint>
#include <memory>

#include "fuzz_file.hpp"
#include "halsal/data/split.hpp"

namespace {
std::shared_ptr<const halsal::data::Dataset> dataset() {
  static const auto d = [] {
    auto ds = std::make_shared<halsal::data::Dataset>();
    ds->layout = "folders";
    ds->root = "/data";
    ds->class_names = {"a", "b", "c"};
    for (int i = 0; i < 12; ++i) {
      halsal::data::Sample s;
      s.label = i % 3;
      s.file = ds->root / ds->class_names[static_cast<std::size_t>(i % 3)] / ("img_" + std::to_string(i) + ".png");
      ds->samples.push_back(s);
    }
    return std::shared_ptr<const halsal::data::Dataset>(ds);
  }();
  return d;
}
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Seed: a valid split of the dataset above, as save_split writes it.
  const auto dir = halsal_fuzz::seed_dir();
  if (!dir.empty()) halsal::data::save_split(halsal::data::kshot(dataset(), 2, 7, halsal::data::SplitOptions{1, 1}), dir / "split.csv");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = halsal_fuzz::write_input("split.csv", data, size);
  try {
    const auto s = halsal::data::load_split(file, dataset());
    if (s.train.indices.size() + s.val.indices.size() + s.test.indices.size() > dataset()->size())
      __builtin_trap();  // every sample at most once
  } catch (const halsal::Error&) {
  }
  return 0;
}
