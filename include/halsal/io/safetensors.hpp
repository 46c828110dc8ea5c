// safetensors read and write (https://github.com/huggingface/safetensors): an 8-byte
// little-endian header length N, N bytes of JSON ({"__metadata__": {str: str}, NAME: {"dtype",
// "shape", "data_offsets": [begin, end]}}, padded with spaces to a multiple of 8), then the
// tensors' bytes. The writer lays files out exactly as Python's safetensors does (tensors sorted
// by descending dtype then name, compact JSON), so the same tensors give the same bytes; the
// reader enforces the same rules as Python's (offsets tile the data section exactly).
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "halsal/core/compat.hpp"
#include "halsal/core/error.hpp"
#include "halsal/io/bytes.hpp"
#include "halsal/io/tensor_dict.hpp"

namespace halsal::io {

/// A safetensors file's content: its tensors (in data order) and its string metadata.
struct Safetensors {
  TensorDict tensors;
  std::map<std::string, std::string> metadata;
};

namespace detail {

struct SafetensorsDtype {
  const char* name;
  torch::Dtype dtype;
  int rank;  ///< position in safetensors' Dtype enum: the writer sorts by it, descending
};

inline const std::vector<SafetensorsDtype>& safetensors_dtypes() {
  static const std::vector<SafetensorsDtype> table = {
    {"BOOL", torch::kBool, 0},
    {"U8", torch::kUInt8, 1},
    {"I8", torch::kInt8, 2},
#if HALSAL_TORCH_AT_LEAST(2, 1)
    {"F8_E5M2", torch::kFloat8_e5m2, 3},
    {"F8_E4M3", torch::kFloat8_e4m3fn, 4},
#endif
    {"I16", torch::kInt16, 5},
#if HALSAL_TORCH_AT_LEAST(2, 3)
    {"U16", torch::kUInt16, 6},
#endif
    {"F16", torch::kFloat16, 7},
    {"BF16", torch::kBFloat16, 8},
    {"I32", torch::kInt32, 9},
#if HALSAL_TORCH_AT_LEAST(2, 3)
    {"U32", torch::kUInt32, 10},
#endif
    {"F32", torch::kFloat32, 11},
    {"C64", torch::kComplexFloat, 12},
    {"F64", torch::kFloat64, 13},
    {"I64", torch::kInt64, 14},
#if HALSAL_TORCH_AT_LEAST(2, 3)
    {"U64", torch::kUInt64, 15},
#endif
  };
  return table;
}

inline const SafetensorsDtype* safetensors_dtype(const std::string& name) {
  for (const auto& d : safetensors_dtypes())
    if (name == d.name) return &d;
  return nullptr;
}

inline const SafetensorsDtype* safetensors_dtype(torch::Dtype dtype) {
  for (const auto& d : safetensors_dtypes())
    if (dtype == d.dtype) return &d;
  return nullptr;
}

/// JSON string literal as serde_json writes it (UTF-8 kept, control characters escaped).
inline std::string json_string(const std::string& s, const std::string& origin) {
  try {
    return nlohmann::json(s).dump();
  } catch (const nlohmann::json::exception&) {
    throw Error(origin + ": name or metadata '" + s + "' is not valid UTF-8");
  }
}

/// Deepest bracket nesting of a JSON text (strings skipped), to refuse hostile headers before
/// handing them to a parser.
inline int json_depth(std::string_view text) {
  int depth = 0, deepest = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      deepest = std::max(deepest, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return deepest;
}

/// The header (without its length prefix) and the tensors in the order their bytes follow.
struct SafetensorsPlan {
  std::string header;
  std::vector<torch::Tensor> data;
};

inline SafetensorsPlan plan_safetensors(const TensorDict& tensors,
                                        const std::map<std::string, std::string>& metadata,
                                        const std::string& origin) {
  struct Item {
    const std::string* name;
    const SafetensorsDtype* dtype;
    torch::Tensor t;
  };
  std::vector<Item> items;
  items.reserve(tensors.size());
  for (const auto& kv : tensors) {
    if (kv.key() == "__metadata__") throw Error(origin + ": '__metadata__' cannot name a tensor");
    const torch::Tensor& t = kv.value();
    const auto* d = safetensors_dtype(t.scalar_type());
    if (!d)
      throw Error(origin + ": tensor '" + kv.key() + "' has dtype " + dtype_name(t.scalar_type()) +
                  ", which safetensors writing does not support");
    items.push_back({&kv.key(), d, t.detach().to(torch::kCPU).contiguous()});
  }
  std::sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    if (a.dtype->rank != b.dtype->rank) return a.dtype->rank > b.dtype->rank;
    return *a.name < *b.name;
  });
  SafetensorsPlan plan;
  std::string& h = plan.header;
  h = "{";
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!first) h += ',';
      first = false;
      h += json_string(k, origin) + ":" + json_string(v, origin);
    }
    h += "}";
  }
  std::uint64_t offset = 0;
  for (auto& it : items) {
    if (h.size() > 1) h += ',';
    const std::uint64_t n =
        static_cast<std::uint64_t>(it.t.numel()) * static_cast<std::uint64_t>(it.t.element_size());
    h += json_string(*it.name, origin) + ":{\"dtype\":\"" + it.dtype->name + "\",\"shape\":[";
    for (std::int64_t d = 0; d < it.t.dim(); ++d) {
      if (d) h += ',';
      h += std::to_string(it.t.size(d));
    }
    h += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + n) + "]}";
    offset += n;
    plan.data.push_back(std::move(it.t));
  }
  h += "}";
  h.append((8 - h.size() % 8) % 8, ' ');
  return plan;
}

}  // namespace detail

/// Parses a safetensors file held in memory; `origin` names it in errors.
inline Safetensors read_safetensors(ByteSpan bytes, const std::string& origin) {
  const auto fail = [&](const std::string& what) { return Error(origin + ": " + what); };
  if (bytes.size == 0) throw fail("file is empty (0 bytes)");
  if (bytes.size < 8)
    throw fail("too short for a safetensors file (" + std::to_string(bytes.size) + " bytes)");
  const std::uint64_t n = detail::load_le<std::uint64_t>(bytes.data);
  if (n > 100'000'000)  // Python's safetensors refuses headers over 100 MB as well
    throw fail("safetensors header length " + std::to_string(n) +
               " is implausibly large: not a safetensors file, or corrupt");
  if (n > bytes.size - 8)
    throw fail("safetensors header length " + std::to_string(n) + " exceeds the " +
               std::to_string(bytes.size) + "-byte file: truncated or not a safetensors file");
  const std::string_view text(reinterpret_cast<const char*>(bytes.data + 8),
                              static_cast<std::size_t>(n));
  if (text.empty() || text[0] != '{')
    throw fail("not a safetensors file (header is not a JSON object)");
  if (detail::json_depth(text) > 8) throw fail("safetensors header nests too deeply");
  const auto header = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (header.is_discarded() || !header.is_object())
    throw fail("safetensors header is not valid JSON");

  struct Entry {
    std::string name;
    const detail::SafetensorsDtype* dtype;
    std::vector<std::int64_t> shape;
    std::uint64_t begin, end;
  };
  Safetensors out;
  std::vector<Entry> entries;
  for (const auto& item : header.items()) {
    // (Not a structured binding: C++17 lambdas cannot capture those.)
    const std::string& name = item.key();
    const auto& info = item.value();
    if (name == "__metadata__") {
      if (!info.is_object()) throw fail("__metadata__ must be an object of strings");
      for (const auto& [k, v] : info.items()) {
        if (!v.is_string()) throw fail("__metadata__ value of '" + k + "' is not a string");
        out.metadata[k] = v.get<std::string>();
      }
      continue;
    }
    const auto bad = [&](const std::string& what) {
      return fail("tensor '" + name + "': " + what);
    };
    if (!info.is_object()) throw bad("header entry is not an object");
    const auto dt = info.find("dtype");
    const auto sh = info.find("shape");
    const auto off = info.find("data_offsets");
    if (dt == info.end() || !dt->is_string()) throw bad("missing dtype");
    if (sh == info.end() || !sh->is_array()) throw bad("missing shape");
    if (off == info.end() || !off->is_array() || off->size() != 2)
      throw bad("missing data_offsets");
    Entry e{name, detail::safetensors_dtype(dt->get<std::string>()), {}, 0, 0};
    if (!e.dtype) throw bad("unsupported dtype '" + dt->get<std::string>() + "'");
    if (sh->size() > 64) throw bad("more than 64 dimensions");
    std::uint64_t numel = 1;
    for (const auto& d : *sh) {
      if (!d.is_number_unsigned()) throw bad("shape entries must be non-negative integers");
      const std::uint64_t v = d.get<std::uint64_t>();
      if (v > static_cast<std::uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, v, &numel))
        throw bad("shape overflows");
      e.shape.push_back(static_cast<std::int64_t>(v));
    }
    if (!(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
      throw bad("data_offsets must be non-negative integers");
    e.begin = (*off)[0].get<std::uint64_t>();
    e.end = (*off)[1].get<std::uint64_t>();
    const std::uint64_t w = static_cast<std::uint64_t>(c10::elementSize(e.dtype->dtype));
    std::uint64_t nbytes = 0;
    if (__builtin_mul_overflow(numel, w, &nbytes)) throw bad("size overflows");
    if (e.end < e.begin || e.end - e.begin != nbytes)
      throw bad("data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                "] do not match its shape and dtype (" + std::to_string(nbytes) + " bytes)");
    entries.push_back(std::move(e));
  }
  // The tensors must tile the data section: no gaps, no overlaps, nothing past the end.
  const ByteSpan data{bytes.data + 8 + n, static_cast<std::size_t>(bytes.size - 8 - n)};
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t expected = 0;
  for (const auto& e : entries) {
    if (e.begin != expected)
      throw fail("tensor '" + e.name + "' data_offsets [" + std::to_string(e.begin) + ", " +
                 std::to_string(e.end) + "] " +
                 (e.begin < expected ? "overlap" : "leave a gap after") + " the previous tensor's");
    expected = e.end;
  }
  if (expected != data.size)
    throw fail("tensor data covers " + std::to_string(expected) + " bytes but the file holds " +
               std::to_string(data.size) + " after the header (truncated or trailing bytes)");
  for (const auto& e : entries) {
    auto t = torch::empty(e.shape, torch::TensorOptions().dtype(e.dtype->dtype));
    if (e.end > e.begin) std::memcpy(t.data_ptr(), data.data + e.begin, e.end - e.begin);
    set_tensor(out.tensors, e.name, std::move(t));
  }
  return out;
}

/// Reads a .safetensors file.
inline Safetensors read_safetensors(const std::filesystem::path& file) {
  MappedFile map(file);
  return read_safetensors(map.bytes(), file.string());
}

/// Writes tensors (and optional string metadata, keys sorted) as safetensors into `sink`.
inline void write_safetensors(ByteSink& sink, const TensorDict& tensors,
                              const std::map<std::string, std::string>& metadata,
                              const std::string& origin) {
  auto plan = detail::plan_safetensors(tensors, metadata, origin);
  std::uint8_t len[8];
  detail::store_le<std::uint64_t>(len, plan.header.size());
  sink.write(len, 8);
  sink.write(plan.header.data(), plan.header.size());
  for (const auto& t : plan.data)
    if (t.numel()) sink.write(t.data_ptr(), static_cast<std::size_t>(t.numel() * t.element_size()));
}

/// Writes a .safetensors file atomically.
inline void write_safetensors(const std::filesystem::path& file, const TensorDict& tensors,
                              const std::map<std::string, std::string>& metadata = {}) {
  AtomicFile out(file);
  write_safetensors(out, tensors, metadata, file.string());
  out.commit();
}

/// The bytes of a safetensors file of `tensors`, in memory.
inline std::vector<std::uint8_t> safetensors_bytes(
    const TensorDict& tensors, const std::map<std::string, std::string>& metadata = {}) {
  VectorSink sink;
  write_safetensors(sink, tensors, metadata, "<memory>");
  return std::move(sink.bytes);
}

}  // namespace halsal::io
