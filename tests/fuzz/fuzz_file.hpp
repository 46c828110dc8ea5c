// Shared by the fuzz targets whose readers take a path: the input is written to a file in a
// per-process folder on a RAM disk (/dev/shm when present, else $TMPDIR), named as the reader
// expects, and rewritten for every input.
#pragma once
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace halsal_fuzz {

/// This process's scratch folder (created once).
inline const std::filesystem::path& scratch() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    auto d = base / ("halsal-fuzz-" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

/// Writes `data` to scratch()/name and returns its path; aborts when the write fails (the
/// campaign would otherwise test an empty file).
inline std::filesystem::path write_input(const std::string& name, const std::uint8_t* data, std::size_t size) {
  auto path = scratch() / name;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
    std::perror(path.c_str());
    std::abort();
  }
  return path;
}

/// The folder named by $HALSAL_FUZZ_SEED_DIR, where a target writes its seed inputs when asked
/// (scripts/fuzz.sh sets it once, before the campaign); empty when unset.
inline std::filesystem::path seed_dir() {
  const char* d = std::getenv("HALSAL_FUZZ_SEED_DIR");
  return d && *d ? std::filesystem::path(d) : std::filesystem::path();
}

}  // namespace halsal_fuzz
