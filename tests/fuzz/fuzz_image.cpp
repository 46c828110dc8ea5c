// libFuzzer target for halsal's image decoding wrapper (header checks, truncation checks, stb).
// stb is compiled into this target (HALSAL_STB_IMPLEMENTATION) so that the sanitizers see inside it.
//   clang++ -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -I include -I /usr/include/stb
//       tests/fuzz/fuzz_image.cpp -o fuzz_image
//   mkdir -p /tmp/corpus && ./fuzz_image -max_len=4096 /tmp/corpus tests/fuzz/corpus_image
// (libFuzzer adds new inputs to the FIRST folder: keep the committed seeds second.)
#ifndef HALSAL_STB_IMPLEMENTATION
#define HALSAL_STB_IMPLEMENTATION
#endif
#include <cstddef>
#include <cstdint>

#include "halsal/data/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    // A tight pixel budget keeps each run fast; the limits are part of what is tested.
    halsal::data::DecodeLimits limits;
    limits.max_pixels = 1 << 22;
    const auto im = halsal::data::decode_image(data, size, "fuzz-input", limits);
    if (im.pixels.size() != static_cast<size_t>(im.width) * im.height * 3) __builtin_trap();
  } catch (const halsal::Error&) {
    // Rejecting bad input with an Error is the expected outcome.
  }
  return 0;
}
