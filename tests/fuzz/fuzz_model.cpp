// libFuzzer target: the model-file reader (read_model_info: safetensors, halsal metadata, the
// ModelInfo JSON) on arbitrary bytes.
#include <cstddef>
#include <cstdint>

#include "fuzz_file.hpp"
#include "halsal/models/model_file.hpp"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto dir = halsal_fuzz::seed_dir();
  if (dir.empty()) return 0;
  // A model file as save_model writes it, around a tiny network (the reader does not build one).
  torch::nn::Linear net(torch::nn::LinearOptions(4, 3));
  halsal::train::ModelInfo info;
  info.backbone = "mobilenet_v2";
  info.method = "B";
  info.network = "HalSalNet<MobileNetV2>";
  info.class_names = {"daisy", "rose", "tulip"};
  info.k = 5;
  info.top1 = 0.75;
  info.config = {{"epochs", 10}, {"lr", 0.01}};
  halsal::train::save_model(*net, info, dir / "model.safetensors");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = halsal_fuzz::write_input("model.safetensors", data, size);
  try {
    const auto info = halsal::train::read_model_info(file);
    (void)halsal::train::to_json(info).dump();  // what halsal_eval prints back
  } catch (const halsal::Error&) {
  }
  return 0;
}
