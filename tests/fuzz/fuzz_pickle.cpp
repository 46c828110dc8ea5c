// libFuzzer target: the restricted pickle interpreter on arbitrary bytes, reading consecutive
// pickles as the legacy .pth container does (LibTorch-free).
#include <cstddef>
#include <cstdint>

#include "halsal/io/pickle.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    halsal::io::pickle::Unpickler u({data, size}, "fuzz.pkl");
    std::size_t at = 0;
    for (int i = 0; i < 6 && at < size; ++i) {
      const auto root = u.load(at);
      (void)u.at(root).kind;
      at = u.end();
    }
  } catch (const halsal::Error&) {
  }
  return 0;
}
