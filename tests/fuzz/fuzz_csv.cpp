// libFuzzer target: halsal's CSV and text-table readers on arbitrary bytes -- a dataset's
// classes.csv, CUB-200's index tables (images.txt-style "<id> <value>" rows) and the long-format
// results CSV (runs.csv) a protocol run resumes from. Every reader must either return or throw
// halsal::Error.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string>

#include "fuzz_file.hpp"
#include "halsal/data/dataset.hpp"
#include "halsal/eval/table.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto file = halsal_fuzz::write_input("classes.csv", data, size);
  try {
    const auto classes = halsal::data::detail::read_classes_csv(file);
    for (const auto& [folder, entry] : classes)
      if (entry.second.size() > size) __builtin_trap();  // a name longer than its file
  } catch (const halsal::Error&) {
  }
  try {
    const std::set<std::int64_t> ids{1, 2, 3, 4, 5};
    (void)halsal::data::detail::read_cub_table(file, ids, 1, "<value>");
  } catch (const halsal::Error&) {
  }
  try {
    const auto table = halsal::eval::ResultsTable::parse_long_csv(
        std::string(reinterpret_cast<const char*>(data), size), "runs.csv");
    (void)table.long_csv();  // what a resumed run writes back
  } catch (const halsal::Error&) {
  }
  return 0;
}
