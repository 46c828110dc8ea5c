// libFuzzer target: read_pth (zip and legacy containers) on arbitrary bytes. Every tensor that
// comes back is summed, so a view reaching outside its storage would be caught by ASan.
#include <cstddef>
#include <cstdint>

#include "halsal/io/pth.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto tensors = halsal::io::read_pth(halsal::io::ByteSpan{data, size}, "fuzz.pth");
    double total = 0;
    for (const auto& item : tensors) total += halsal::io::tensor_sum(item.value());
    (void)total;
  } catch (const halsal::Error&) {
  }
  return 0;
}
