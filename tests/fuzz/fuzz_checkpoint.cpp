// libFuzzer target: halsal's checkpoint reader (load_checkpoint: checksum, safetensors, metadata,
// model tensors, SGD state, random-generator state) on arbitrary bytes. A checkpoint carries a
// CRC-32 that random mutations almost never match, so when an input has the checksum field this
// target writes the right digits into it first: the fuzzer then reaches the parsing behind the
// check. (Inputs without the field still exercise the check itself.)
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_file.hpp"
#include "halsal/io/checkpoint.hpp"

namespace {

struct State {
  torch::nn::Linear model{torch::nn::LinearOptions(3, 2)};
  torch::optim::SGD sgd{model->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9)};
};

State& state() {
  static State s;
  return s;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const auto dir = halsal_fuzz::seed_dir();
  if (dir.empty()) return 0;
  auto& s = state();
  // One SGD step, so that the momentum buffers are part of the saved optimizer state.
  s.model->forward(torch::ones({4, 3})).sum().backward();
  s.sgd.step();
  halsal::io::CheckpointInfo info;
  info.epoch = 3;
  info.step = 12;
  info.config = {{"lr", 0.1}, {"epochs", 10}};
  halsal::io::save_checkpoint(dir / "checkpoint-000003.safetensors", *s.model, &s.sgd, info);
  halsal::io::save_checkpoint(dir / "checkpoint-no-optimizer.safetensors", *s.model, nullptr, info);
  // The seed must load: otherwise the campaign would explore only the error paths.
  if (halsal::io::load_checkpoint(dir / "checkpoint-000003.safetensors", *s.model, &s.sgd).step != 12) std::abort();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace io = halsal::io;
  std::vector<std::uint8_t> bytes(data, data + size);
  const std::size_t n = std::strlen(io::detail::kChecksumPrefix);
  if (size >= 8 + n + 8 && std::memcmp(data + 8, io::detail::kChecksumPrefix, n) == 0) {
    const std::string digits = io::detail::hex8(io::detail::checkpoint_crc(io::ByteSpan{bytes.data(), size}, 8 + n));
    std::memcpy(bytes.data() + 8 + n, digits.data(), 8);
  }
  const auto file = halsal_fuzz::write_input("checkpoint-000001.safetensors", bytes.data(), bytes.size());
  auto& s = state();
  try {
    (void)io::load_checkpoint(file, *s.model, &s.sgd);
  } catch (const halsal::Error&) {
  }
  return 0;
}
