// libFuzzer target: read_safetensors on arbitrary bytes; whatever reads back must survive a
// write-read round trip with the same names and shapes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "halsal/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  halsal::io::Safetensors st;
  try {
    st = halsal::io::read_safetensors(halsal::io::ByteSpan{data, size}, "fuzz.safetensors");
  } catch (const halsal::Error&) {
    return 0;
  }
  double total = 0;
  for (const auto& item : st.tensors) total += halsal::io::tensor_sum(item.value());
  (void)total;
  const auto bytes = halsal::io::safetensors_bytes(st.tensors, st.metadata);
  const auto back =
      halsal::io::read_safetensors(halsal::io::ByteSpan{bytes.data(), bytes.size()}, "again");
  if (back.tensors.size() != st.tensors.size()) std::abort();
  for (const auto& item : st.tensors)
    if (back.tensors[item.key()].sizes() != item.value().sizes()) std::abort();
  return 0;
}
