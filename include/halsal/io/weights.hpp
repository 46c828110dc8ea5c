// One entry point for weight files of any supported kind: the format is recognised from the
// file's content (not its name) when reading, and chosen by the extension when writing.
#pragma once
#include <filesystem>
#include <map>
#include <string>

#include "halsal/core/error.hpp"
#include "halsal/io/bytes.hpp"
#include "halsal/io/pth.hpp"
#include "halsal/io/safetensors.hpp"
#include "halsal/io/tensor_dict.hpp"
#include "halsal/io/zip.hpp"

namespace halsal::io {

/// The weight-file formats halsal reads.
enum class WeightsFormat { PthZip, PthLegacy, Safetensors, Unknown };

/// Human name of a format.
inline const char* format_name(WeightsFormat f) {
  switch (f) {
    case WeightsFormat::PthZip:
      return "pth (zip container)";
    case WeightsFormat::PthLegacy:
      return "pth (legacy container)";
    case WeightsFormat::Safetensors:
      return "safetensors";
    default:
      return "unknown";
  }
}

/// Recognises a weight file from its first bytes.
inline WeightsFormat detect_format(ByteSpan b) {
  if (looks_like_zip(b)) return WeightsFormat::PthZip;
  if (looks_like_legacy_pth(b)) return WeightsFormat::PthLegacy;
  if (b.size >= 9 && b.data[8] == '{') return WeightsFormat::Safetensors;
  return WeightsFormat::Unknown;
}

/// A weight file's tensors, its format and (safetensors) metadata.
struct WeightsFile {
  WeightsFormat format = WeightsFormat::Unknown;
  TensorDict tensors;
  std::map<std::string, std::string> metadata;
};

/// Reads a .pth (either container) or .safetensors file, whatever its name.
inline WeightsFile read_weights_file(const std::filesystem::path& file) {
  MappedFile map(file);
  WeightsFile out;
  out.format = detect_format(map.bytes());
  switch (out.format) {
    case WeightsFormat::PthZip:
    case WeightsFormat::PthLegacy:
      out.tensors = read_pth(map.bytes(), file.string());
      break;
    case WeightsFormat::Safetensors: {
      auto st = read_safetensors(map.bytes(), file.string());
      out.tensors = std::move(st.tensors);
      out.metadata = std::move(st.metadata);
      break;
    }
    default:
      throw file_error(file,
                       "not a weight file (expected a PyTorch .pth zip or legacy file, or a "
                       "safetensors file)");
  }
  return out;
}

/// Reads the tensors of a .pth or .safetensors file.
inline TensorDict read_weights(const std::filesystem::path& file) {
  return read_weights_file(file).tensors;
}

/// Writes tensors as .safetensors or .pth (zip container), chosen by `file`'s extension
/// (.safetensors; .pth, .pt, .bin), atomically.
inline void write_weights(const std::filesystem::path& file, const TensorDict& tensors,
                          const std::map<std::string, std::string>& metadata = {}) {
  const auto ext = file.extension().string();
  if (ext == ".safetensors") {
    write_safetensors(file, tensors, metadata);
  } else if (ext == ".pth" || ext == ".pt" || ext == ".bin") {
    write_pth(file, tensors);
  } else {
    throw file_error(file, "unknown output format '" + ext +
                               "' (use .safetensors, or .pth / .pt for torch.save's format)");
  }
}

}  // namespace halsal::io
