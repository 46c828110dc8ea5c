// Training checkpoints: the model's state_dict, the optimizer's state (momentum buffers, Adam
// moments and step counts, learning rates), the epoch and step, the random generators' state
// and the run's configuration (JSON), in one safetensors file. Written atomically (temporary
// file, fsync, rename, fsync of the folder), so a crash leaves the previous checkpoint intact;
// a CRC-32 over the whole file is checked on load, so a corrupted file is refused, never
// half-loaded. Being safetensors, a checkpoint opens in `halsal_weights ls` and Python too.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/io/bytes.hpp"
#include "halsal/io/safetensors.hpp"
#include "halsal/io/state_dict.hpp"
#include "halsal/io/tensor_dict.hpp"

namespace halsal::io {

/// A checkpoint's bookkeeping: where the run stands and how it was configured.
struct CheckpointInfo {
  std::int64_t epoch = 0;                            ///< epochs completed
  std::int64_t step = 0;                             ///< optimizer steps completed
  nlohmann::json config = nlohmann::json::object();  ///< the run's configuration
  std::filesystem::path path;  ///< the file it was read from (set by the loaders)
};

/// What load_checkpoint restores besides the model.
struct CheckpointLoadOptions {
  bool restore_rng = true;  ///< reset the CPU (and CUDA) random generators to their saved state
};

namespace detail {

inline constexpr const char* kCheckpointFormat = "halsal-checkpoint-1";
// "checksum" sorts first among the metadata keys, so the header always starts with this and the
// eight hex digits after it sit at a fixed place.
inline constexpr const char* kChecksumPrefix = "{\"__metadata__\":{\"checksum\":\"crc32:";

inline std::string optimizer_kind(const torch::optim::Optimizer* o) {
  if (!o) return "none";
  if (dynamic_cast<const torch::optim::SGD*>(o)) return "SGD";
  if (dynamic_cast<const torch::optim::AdamW*>(o)) return "AdamW";
  if (dynamic_cast<const torch::optim::Adam*>(o)) return "Adam";
  if (dynamic_cast<const torch::optim::RMSprop*>(o)) return "RMSprop";
  if (dynamic_cast<const torch::optim::Adagrad*>(o)) return "Adagrad";
  if (dynamic_cast<const torch::optim::LBFGS*>(o)) return "LBFGS";
  return "other";
}

inline torch::Tensor bytes_tensor(const std::string& s) {
  auto t = torch::empty({static_cast<std::int64_t>(s.size())}, torch::kUInt8);
  if (!s.empty()) std::memcpy(t.data_ptr(), s.data(), s.size());
  return t;
}

inline std::string tensor_bytes(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU).contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<std::size_t>(c.numel()));
}

/// Where the checksum's hex digits are, after checking the header has the expected shape.
inline std::size_t checksum_offset(ByteSpan file, const std::string& origin) {
  const std::size_t n = std::strlen(kChecksumPrefix);
  if (file.size < 8 + n + 8 || std::memcmp(file.data + 8, kChecksumPrefix, n) != 0)
    throw Error(origin + ": not a halsal checkpoint (no checksum at the start of its header)");
  return 8 + n;
}

inline std::string hex8(std::uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", v);
  return buf;
}

/// CRC-32 of the file with the checksum's own digits read as "00000000".
inline std::uint32_t checkpoint_crc(ByteSpan file, std::size_t digits) {
  std::uint32_t crc = crc32_update(0, file.data, digits);
  crc = crc32_update(crc, "00000000", 8);
  return crc32_update(crc, file.data + digits + 8, file.size - digits - 8);
}

/// Passes bytes on to a file while computing their CRC-32.
class CrcSink : public ByteSink {
 public:
  explicit CrcSink(ByteSink& out) : out_(out) {}
  void write(const void* data, std::size_t n) override {
    crc = crc32_update(crc, data, n);
    out_.write(data, n);
  }
  std::uint64_t position() const override { return out_.position(); }
  std::uint32_t crc = 0;

 private:
  ByteSink& out_;
};

inline std::vector<torch::Generator> rng_generators() {
  std::vector<torch::Generator> gens{at::detail::getDefaultCPUGenerator()};
  if (torch::cuda::is_available())
    for (std::int64_t i = 0; i < static_cast<std::int64_t>(torch::cuda::device_count()); ++i)
      gens.push_back(at::globalContext().defaultGenerator(
          c10::Device(c10::DeviceType::CUDA, static_cast<c10::DeviceIndex>(i))));
  return gens;
}

inline std::string rng_name(std::size_t i) {
  return i == 0 ? "rng.cpu" : "rng.cuda." + std::to_string(i - 1);
}

/// Verifies and parses a checkpoint held in memory.
inline Safetensors read_verified_checkpoint(ByteSpan bytes, const std::string& origin) {
  const std::size_t digits = checksum_offset(bytes, origin);
  const std::string stored(reinterpret_cast<const char*>(bytes.data + digits), 8);
  const std::string actual = hex8(checkpoint_crc(bytes, digits));
  if (stored != actual)
    throw Error(origin + ": checkpoint is corrupt (CRC-32 " + actual + " but the file records " +
                stored + ")");
  Safetensors st = read_safetensors(bytes, origin);
  if (st.metadata["format"] != kCheckpointFormat)
    throw Error(origin + ": unknown checkpoint format '" + st.metadata["format"] + "'");
  return st;
}

inline CheckpointInfo parse_info(std::map<std::string, std::string>& meta,
                                 const std::filesystem::path& file) {
  CheckpointInfo info;
  info.path = file;
  try {
    info.epoch = std::stoll(meta.at("epoch"));
    info.step = std::stoll(meta.at("step"));
    info.config = nlohmann::json::parse(meta.at("config"));
  } catch (const std::exception& e) {
    throw file_error(file, std::string("bad checkpoint metadata: ") + e.what());
  }
  return info;
}

}  // namespace detail

/// Writes a checkpoint of `model`, `optimizer` (may be null), the random generators and `info`
/// to `file`, atomically.
inline void save_checkpoint(const std::filesystem::path& file, const torch::nn::Module& model,
                            const torch::optim::Optimizer* optimizer, const CheckpointInfo& info) {
  TensorDict tensors;
  for (const auto& kv : state_dict(model)) tensors.insert("model." + kv.key(), kv.value());
  if (optimizer) {
    std::ostringstream s;
    torch::serialize::OutputArchive archive;
    optimizer->save(archive);
    archive.save_to(s);
    tensors.insert("optimizer.state", detail::bytes_tensor(s.str()));
  }
  const auto gens = detail::rng_generators();
  for (std::size_t i = 0; i < gens.size(); ++i) {
    auto gen = gens[i];
    std::lock_guard<std::mutex> lock(gen.mutex());
    tensors.insert(detail::rng_name(i), gen.get_state().clone());
  }
  const std::map<std::string, std::string> meta = {{"checksum", "crc32:00000000"},
                                                   {"config", info.config.dump()},
                                                   {"epoch", std::to_string(info.epoch)},
                                                   {"format", detail::kCheckpointFormat},
                                                   {"optimizer", detail::optimizer_kind(optimizer)},
                                                   {"step", std::to_string(info.step)}};
  AtomicFile out(file);
  detail::CrcSink sink(out);
  write_safetensors(sink, tensors, meta, file.string());
  // The CRC was computed with "00000000" in place of the digits; now write the real ones.
  const std::string digits = detail::hex8(sink.crc);
  out.patch(8 + std::strlen(detail::kChecksumPrefix), digits.data(), 8);
  out.commit();
}

/// Reads only the bookkeeping of a checkpoint, after verifying its checksum.
inline CheckpointInfo read_checkpoint_info(const std::filesystem::path& file) {
  MappedFile map(file);
  auto st = detail::read_verified_checkpoint(map.bytes(), file.string());
  return detail::parse_info(st.metadata, file);
}

/// True when `file` is a complete checkpoint whose checksum matches (never throws).
inline bool verify_checkpoint(const std::filesystem::path& file) {
  try {
    read_checkpoint_info(file);
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

/// Restores `model` (strictly: every key must match), `optimizer` (when not null; it must be of
/// the kind saved and built over the same parameters) and, by default, the random generators.
/// Nothing is changed when the file is corrupt or does not fit the model.
inline CheckpointInfo load_checkpoint(const std::filesystem::path& file, torch::nn::Module& model,
                                      torch::optim::Optimizer* optimizer,
                                      const CheckpointLoadOptions& options = {}) {
  MappedFile map(file);
  auto st = detail::read_verified_checkpoint(map.bytes(), file.string());
  CheckpointInfo info = detail::parse_info(st.metadata, file);
  const std::string saved_kind = st.metadata["optimizer"];
  if (optimizer) {
    if (saved_kind != detail::optimizer_kind(optimizer))
      throw file_error(file, "checkpoint holds " + saved_kind + " optimizer state, not " +
                                 detail::optimizer_kind(optimizer));
    if (!st.tensors.contains("optimizer.state"))
      throw file_error(file, "checkpoint holds no optimizer state");
  }
  TensorDict model_tensors;
  for (const auto& kv : st.tensors)
    if (detail::starts_with(kv.key(), "model."))
      model_tensors.insert(kv.key().substr(6), kv.value());
  try {
    load_state_dict(model, model_tensors);
  } catch (const Error& e) {
    throw file_error(file, e.what());
  }
  if (optimizer) {
    const std::string bytes = detail::tensor_bytes(st.tensors["optimizer.state"]);
    try {
      std::istringstream s(bytes);
      torch::serialize::InputArchive archive;
      archive.load_from(s);
      optimizer->load(archive);
    } catch (const c10::Error& e) {
      throw file_error(
          file, std::string("cannot restore the optimizer state: ") + e.what_without_backtrace());
    }
  }
  if (options.restore_rng) {
    const auto gens = detail::rng_generators();
    for (std::size_t i = 0; i < gens.size(); ++i) {
      if (const auto* state = st.tensors.find(detail::rng_name(i))) {
        auto gen = gens[i];
        std::lock_guard<std::mutex> lock(gen.mutex());
        gen.set_state(*state);
      }
    }
  }
  return info;
}

/// "FOLDER/checkpoint-000012.safetensors": the name halsal gives the checkpoint after epoch 12.
inline std::filesystem::path checkpoint_path(const std::filesystem::path& folder,
                                             std::int64_t epoch) {
  char name[64];
  std::snprintf(name, sizeof name, "checkpoint-%06lld.safetensors", static_cast<long long>(epoch));
  return folder / name;
}

/// The checkpoints in `folder` named as checkpoint_path() names them, oldest epoch first
/// (temporary files of unfinished writes are not listed).
inline std::vector<std::pair<std::int64_t, std::filesystem::path>> list_checkpoints(
    const std::filesystem::path& folder) {
  std::vector<std::pair<std::int64_t, std::filesystem::path>> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(folder, ec)) {
    const std::string name = entry.path().filename().string();
    const std::string head = "checkpoint-", tail = ".safetensors";
    if (name.size() <= head.size() + tail.size() || name.compare(0, head.size(), head) != 0 ||
        name.compare(name.size() - tail.size(), tail.size(), tail) != 0)
      continue;
    const std::string digits = name.substr(head.size(), name.size() - head.size() - tail.size());
    if (digits.size() > 18 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    out.emplace_back(std::stoll(digits), entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// The newest checkpoint in `folder` whose checksum verifies (a corrupt newest one is passed
/// over for the one before, with a warning on stderr that names it and its problem), or nothing.
inline std::optional<std::filesystem::path> latest_checkpoint(const std::filesystem::path& folder) {
  auto all = list_checkpoints(folder);
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    try {
      read_checkpoint_info(it->second);
      return it->second;
    } catch (const std::exception& e) {
      std::cerr << "halsal: warning: " << e.what() << " (checkpoint passed over; resuming from an earlier one, "
                << "or from the start)\n";
    }
  }
  return std::nullopt;
}

/// Continues a run: loads the latest valid checkpoint in `folder` into `model` and
/// `optimizer`; nothing (and no change) when there is none.
inline std::optional<CheckpointInfo> resume(const std::filesystem::path& folder,
                                            torch::nn::Module& model,
                                            torch::optim::Optimizer* optimizer,
                                            const CheckpointLoadOptions& options = {}) {
  const auto latest = latest_checkpoint(folder);
  if (!latest) return std::nullopt;
  return load_checkpoint(*latest, model, optimizer, options);
}

/// Saves the checkpoint for `info.epoch` into `folder` (created if needed) and, when
/// `keep_last` > 0, deletes all but the newest `keep_last` checkpoints. Returns its path.
inline std::filesystem::path save_epoch_checkpoint(const std::filesystem::path& folder,
                                                   const torch::nn::Module& model,
                                                   const torch::optim::Optimizer* optimizer,
                                                   const CheckpointInfo& info, int keep_last = 0) {
  std::filesystem::create_directories(folder);
  const auto file = checkpoint_path(folder, info.epoch);
  save_checkpoint(file, model, optimizer, info);
  if (keep_last > 0) {
    auto all = list_checkpoints(folder);
    for (std::size_t i = 0; i + static_cast<std::size_t>(keep_last) < all.size(); ++i) {
      std::error_code ec;
      std::filesystem::remove(all[i].second, ec);
    }
  }
  return file;
}

}  // namespace halsal::io
