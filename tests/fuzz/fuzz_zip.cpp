// libFuzzer target: halsal::io::ZipReader on arbitrary bytes (LibTorch-free).
#include <cstddef>
#include <cstdint>

#include "halsal/io/zip.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    halsal::io::ZipReader zip({data, size}, "fuzz.zip");
    std::uint64_t total = 0;
    for (const auto& e : zip.entries()) {
      const auto bytes = zip.data(e);  // verifies the CRC: reads every byte of the entry
      total += bytes.size;
      (void)zip.find(e.name);
    }
    (void)total;
  } catch (const halsal::Error&) {
  }
  return 0;
}
