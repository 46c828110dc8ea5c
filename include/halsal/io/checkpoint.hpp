// Training checkpoints: the model's state_dict, the optimizer's state (momentum buffers, Adam
// moments and step counts, learning rates), the epoch and step, the random generators' state
// and the run's configuration (JSON), in one safetensors file. Written atomically (temporary
// file, fsync, rename, fsync of the folder), so a crash leaves the previous checkpoint intact;
// a CRC-32 over the whole file is checked on load, so a corrupted file is refused, never
// half-loaded. Being safetensors, a checkpoint opens in `halsal_weights ls` and Python too.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "halsal/core/error.hpp"
#include "halsal/core/text.hpp"
#include "halsal/io/bytes.hpp"
#include "halsal/io/pickle.hpp"
#include "halsal/io/safetensors.hpp"
#include "halsal/io/state_dict.hpp"
#include "halsal/io/tensor_dict.hpp"
#include "halsal/io/zip.hpp"

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

// Format 2 keeps SGD/Adam/AdamW state as tensors and JSON; format 1 kept every optimizer's state
// as a LibTorch archive, whose reader (TorchScript's) crashes on crafted input: format-1 files
// still give their model and random state, not their optimizer state.
inline constexpr const char* kCheckpointFormat = "halsal-checkpoint-2";
inline constexpr const char* kCheckpointFormatV1 = "halsal-checkpoint-1";
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

/// The key of p's entry in an optimizer's per-parameter state: LibTorch 1.x keys it by the
/// TensorImpl's address as a string, 2.x by the address itself.
template <class Map>
typename Map::key_type param_state_key(const torch::Tensor& p) {
  if constexpr (std::is_same_v<typename Map::key_type, std::string>) {
    std::ostringstream key;
    key << p.unsafeGetTensorImpl();
    return key.str();
  } else {
    return static_cast<typename Map::key_type>(p.unsafeGetTensorImpl());
  }
}

/// p's state in `states`, or null when it has none.
template <class Map>
torch::optim::OptimizerParamState* find_param_state(Map& states, const torch::Tensor& p) {
  auto it = states.find(param_state_key<Map>(p));
  return it == states.end() ? nullptr : it->second.get();
}

/// Installs `s` as p's state; a null `s` removes p's state.
template <class Map>
void set_param_state(Map& states, const torch::Tensor& p, std::unique_ptr<torch::optim::OptimizerParamState> s) {
  auto key = param_state_key<Map>(p);
  if (s)
    states[key] = std::move(s);
  else
    states.erase(key);
}

/// True for the optimizers whose state halsal stores as tensors and JSON (format 2).
inline bool tensor_state_kind(const std::string& kind) { return kind == "SGD" || kind == "Adam" || kind == "AdamW"; }

/// One parameter group's hyper-parameters (SGD, Adam or AdamW), read from an optimizer or from
/// JSON, written to either.
struct GroupOptions {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0, beta1 = 0, beta2 = 0, eps = 0;
  bool nesterov = false, amsgrad = false;

  /// The numbers `kind` stores, by JSON key; one list for writing and reading.
  static std::vector<std::pair<const char*, double GroupOptions::*>> numbers(const std::string& kind) {
    if (kind == "SGD")
      return {{"lr", &GroupOptions::lr}, {"momentum", &GroupOptions::momentum},
              {"dampening", &GroupOptions::dampening}, {"weight_decay", &GroupOptions::weight_decay}};
    return {{"lr", &GroupOptions::lr}, {"beta1", &GroupOptions::beta1}, {"beta2", &GroupOptions::beta2},
            {"eps", &GroupOptions::eps}, {"weight_decay", &GroupOptions::weight_decay}};
  }
  /// The one flag `kind` stores, with its JSON key.
  static std::pair<const char*, bool GroupOptions::*> flag(const std::string& kind) {
    return kind == "SGD" ? std::make_pair("nesterov", &GroupOptions::nesterov)
                         : std::make_pair("amsgrad", &GroupOptions::amsgrad);
  }

  /// The options of one of `optimizer`'s groups.
  static GroupOptions of(const std::string& kind, torch::optim::OptimizerOptions& o) {
    GroupOptions g;
    if (kind == "SGD") {
      auto& x = static_cast<torch::optim::SGDOptions&>(o);
      g.lr = x.lr();
      g.momentum = x.momentum();
      g.dampening = x.dampening();
      g.weight_decay = x.weight_decay();
      g.nesterov = x.nesterov();
      return g;
    }
    auto get = [&](auto& x) {
      g.lr = x.lr();
      g.beta1 = std::get<0>(x.betas());
      g.beta2 = std::get<1>(x.betas());
      g.eps = x.eps();
      g.weight_decay = x.weight_decay();
      g.amsgrad = x.amsgrad();
    };
    if (kind == "Adam")
      get(static_cast<torch::optim::AdamOptions&>(o));
    else
      get(static_cast<torch::optim::AdamWOptions&>(o));
    return g;
  }

  /// The JSON a checkpoint stores: the numbers and the flag of `kind`.
  nlohmann::json to_json(const std::string& kind) const {
    nlohmann::json j;
    for (const auto& [key, member] : numbers(kind)) j[key] = this->*member;
    const auto [key, member] = flag(kind);
    j[key] = this->*member;
    return j;
  }

  /// Throws nlohmann::json exceptions for missing or mistyped keys, Error for non-finite values.
  static GroupOptions parse(const std::string& kind, const nlohmann::json& j) {
    GroupOptions g;
    for (const auto& [key, member] : numbers(kind)) {
      const double v = j.at(key).get<double>();
      if (!std::isfinite(v)) throw Error(std::string("'") + key + "' is not a finite number");
      g.*member = v;
    }
    const auto [key, member] = flag(kind);
    g.*member = j.at(key).get<bool>();
    return g;
  }

  /// Sets one of an optimizer's groups to these options.
  void apply(const std::string& kind, torch::optim::OptimizerOptions& o) const {
    if (kind == "SGD") {
      static_cast<torch::optim::SGDOptions&>(o).lr(lr).momentum(momentum).dampening(dampening).weight_decay(weight_decay).nesterov(nesterov);
      return;
    }
    auto set = [&](auto& x) { x.lr(lr).betas(std::make_tuple(beta1, beta2)).eps(eps).weight_decay(weight_decay).amsgrad(amsgrad); };
    if (kind == "Adam")
      set(static_cast<torch::optim::AdamOptions&>(o));
    else
      set(static_cast<torch::optim::AdamWOptions&>(o));
  }
};

/// The names of a parameter's state tensors for `kind`.
inline std::vector<std::string> state_tensor_names(const std::string& kind) {
  if (kind == "SGD") return {"momentum_buffer"};
  return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
}

/// Adds `optimizer`'s state (SGD/Adam/AdamW) to `tensors` as "optimizer.<i>.<name>" (i: the
/// parameter's place over all groups) and returns the JSON of its groups and step counts.
inline nlohmann::json save_tensor_state(torch::optim::Optimizer& optimizer, const std::string& kind,
                                        TensorDict& tensors) {
  nlohmann::json groups = nlohmann::json::array(), steps = nlohmann::json::object();
  std::size_t index = 0;
  for (auto& group : optimizer.param_groups()) {
    auto options = GroupOptions::of(kind, group.options()).to_json(kind);
    options["params"] = group.params().size();
    groups.push_back(options);
    for (const auto& p : group.params()) {
      const std::string prefix = "optimizer." + std::to_string(index) + ".";
      if (auto* st = find_param_state(optimizer.state(), p)) {
        auto put = [&](const std::string& name, const torch::Tensor& t) {
          if (t.defined()) tensors.insert(prefix + name, t.detach().to(torch::kCPU).contiguous());
        };
        if (kind == "SGD") {
          put("momentum_buffer", static_cast<torch::optim::SGDParamState&>(*st).momentum_buffer());
        } else {
          auto save = [&](auto& a) {
            put("exp_avg", a.exp_avg());
            put("exp_avg_sq", a.exp_avg_sq());
            put("max_exp_avg_sq", a.max_exp_avg_sq());
            steps[std::to_string(index)] = a.step();
          };
          if (kind == "Adam")
            save(static_cast<torch::optim::AdamParamState&>(*st));
          else
            save(static_cast<torch::optim::AdamWParamState&>(*st));
        }
      }
      ++index;
    }
  }
  return {{"groups", groups}, {"steps", steps}};
}

/// An optimizer's state read back from a format-2 checkpoint, checked against the optimizer
/// (groups, parameter counts, shapes, dtypes) before anything is changed; apply() installs it.
class TensorState {
 public:
  TensorState(const Safetensors& st, torch::optim::Optimizer& optimizer, const std::string& kind,
              const std::filesystem::path& file)
      : optimizer_(optimizer), kind_(kind) {
    auto fail = [&](const std::string& what) { return file_error(file, "cannot restore the optimizer state: " + what); };
    const auto meta = st.metadata.find("optimizer_state");
    if (meta == st.metadata.end()) throw fail("the 'optimizer_state' metadata is missing");
    try {
      const auto j = nlohmann::json::parse(meta->second);
      const auto& groups = j.at("groups");
      auto& mine = optimizer.param_groups();
      if (!groups.is_array() || groups.size() != mine.size())
        throw fail("it has " + std::to_string(groups.is_array() ? groups.size() : 0) + " parameter groups, the optimizer " +
                   std::to_string(mine.size()));
      std::size_t index = 0;
      for (std::size_t g = 0; g < mine.size(); ++g) {
        if (groups[g].at("params").get<std::size_t>() != mine[g].params().size())
          throw fail("group " + std::to_string(g) + " holds " + groups[g].at("params").dump() + " parameters, the optimizer's " +
                     std::to_string(mine[g].params().size()));
        try {
          options_.push_back(GroupOptions::parse(kind, groups[g]));
        } catch (const Error& e) {
          throw fail("group " + std::to_string(g) + ": " + e.what());
        }
        for (const auto& p : mine[g].params()) {
          const std::string prefix = "optimizer." + std::to_string(index) + ".";
          std::map<std::string, torch::Tensor> found;
          for (const auto& name : state_tensor_names(kind)) {
            if (const auto* t = st.tensors.find(prefix + name)) {
              if (t->sizes() != p.sizes() || t->scalar_type() != p.scalar_type())
                throw fail("'" + prefix + name + "' does not match its parameter's shape and type");
              found[name] = t->to(p.options(), /*non_blocking=*/false, /*copy=*/true);
            }
          }
          std::unique_ptr<torch::optim::OptimizerParamState> state;
          if (kind == "SGD") {
            if (found.count("momentum_buffer")) {
              auto s = std::make_unique<torch::optim::SGDParamState>();
              s->momentum_buffer(found["momentum_buffer"]);
              state = std::move(s);
            }
          } else if (found.count("exp_avg") || found.count("exp_avg_sq")) {
            if (!found.count("exp_avg") || !found.count("exp_avg_sq"))
              throw fail("parameter " + std::to_string(index) + " has only one of exp_avg and exp_avg_sq");
            const auto step = j.at("steps").at(std::to_string(index)).get<std::int64_t>();
            if (step < 0) throw fail("parameter " + std::to_string(index) + " has a negative step count");
            auto fill = [&](auto s) {
              s->step(step);
              s->exp_avg(found["exp_avg"]);
              s->exp_avg_sq(found["exp_avg_sq"]);
              if (found.count("max_exp_avg_sq")) s->max_exp_avg_sq(found["max_exp_avg_sq"]);
              state = std::move(s);
            };
            if (kind == "Adam")
              fill(std::make_unique<torch::optim::AdamParamState>());
            else
              fill(std::make_unique<torch::optim::AdamWParamState>());
          }
          states_.push_back(std::move(state));
          ++index;
        }
      }
      for (const auto& kv : st.tensors) {
        const auto& key = kv.key();
        if (key.rfind("optimizer.", 0) == 0 && key != "optimizer.state") {
          const auto dot = key.find('.', 10);
          const std::string i = key.substr(10, dot == std::string::npos ? std::string::npos : dot - 10);
          if (i.empty() || i.size() > 9 || i.find_first_not_of("0123456789") != std::string::npos ||
              std::stoul(i) >= index)
            throw fail("'" + key + "' belongs to no parameter of the optimizer");
        }
      }
    } catch (const nlohmann::json::exception& e) {
      throw fail(std::string("its 'optimizer_state' metadata is damaged (") + e.what() + ")");
    }
  }

  /// Installs the state read (call after everything else that can fail).
  void apply() {
    auto& groups = optimizer_.param_groups();
    std::size_t index = 0;
    for (std::size_t g = 0; g < groups.size(); ++g) {
      options_[g].apply(kind_, groups[g].options());
      for (const auto& p : groups[g].params()) {
        // A parameter saved before its first step has no state: a null entry removes it.
        set_param_state(optimizer_.state(), p, std::move(states_[index]));
        ++index;
      }
    }
  }

 private:
  torch::optim::Optimizer& optimizer_;
  std::string kind_;
  std::vector<GroupOptions> options_;
  std::vector<std::unique_ptr<torch::optim::OptimizerParamState>> states_;
};

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
  if (st.metadata["format"] != kCheckpointFormat && st.metadata["format"] != kCheckpointFormatV1)
    throw Error(origin + ": unknown checkpoint format '" + st.metadata["format"] + "'");
  return st;
}

/// Checks a torch::serialize archive's structure with halsal's own readers before LibTorch's
/// reader sees it (that one sizes buffers by the lengths it reads, unchecked): a ZIP whose
/// entries lie inside it and whose pickles' lengths fit.
inline void check_archive(const std::string& blob, const std::string& origin) {
  ByteSpan bytes{reinterpret_cast<const std::uint8_t*>(blob.data()), blob.size()};
  if (!looks_like_zip(bytes)) throw Error(origin + ": not a ZIP archive");
  ZipReader zip(bytes, origin);
  for (const auto& e : zip.entries())
    if (e.name.size() > 4 && e.name.compare(e.name.size() - 4, 4, ".pkl") == 0)
      pickle::check_opcode_lengths(zip.data(e), origin + " " + e.name);
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
  const std::string kind = detail::optimizer_kind(optimizer);
  std::string optimizer_state;
  if (optimizer && detail::tensor_state_kind(kind)) {
    // const_cast: param_groups() and state() have no const overloads in LibTorch 1.13.
    optimizer_state =
        detail::save_tensor_state(const_cast<torch::optim::Optimizer&>(*optimizer), kind, tensors).dump();
  } else if (optimizer) {  // other optimizers: LibTorch's own archive (see load_checkpoint)
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
  std::map<std::string, std::string> meta = {{"checksum", "crc32:00000000"},
                                             {"config", info.config.dump()},
                                             {"epoch", std::to_string(info.epoch)},
                                             {"format", detail::kCheckpointFormat},
                                             {"optimizer", kind},
                                             {"step", std::to_string(info.step)}};
  if (!optimizer_state.empty()) meta["optimizer_state"] = optimizer_state;
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
/// Nothing is changed when the file is corrupt, its optimizer state does not parse, or its model
/// tensors do not fit the model; errors name the file.
inline CheckpointInfo load_checkpoint(const std::filesystem::path& file, torch::nn::Module& model,
                                      torch::optim::Optimizer* optimizer,
                                      const CheckpointLoadOptions& options = {}) {
  MappedFile map(file);
  auto st = detail::read_verified_checkpoint(map.bytes(), file.string());
  CheckpointInfo info = detail::parse_info(st.metadata, file);
  const std::string saved_kind = st.metadata["optimizer"];
  auto optimizer_error = [&](const std::string& what) {
    return file_error(file, "cannot restore the optimizer state: " + what);
  };
  // The optimizer's state is read and checked before anything is changed.
  torch::serialize::InputArchive archive;
  std::optional<detail::TensorState> tensor_state;
  if (optimizer) {
    if (saved_kind != detail::optimizer_kind(optimizer))
      throw file_error(file, "checkpoint holds " + saved_kind + " optimizer state, not " +
                                 detail::optimizer_kind(optimizer));
    if (st.metadata["format"] == detail::kCheckpointFormatV1 && detail::tensor_state_kind(saved_kind))
      throw optimizer_error(
          "the file was written by an older halsal (checkpoint format 1), whose optimizer state was a LibTorch "
          "archive that halsal no longer reads; resume from a newer checkpoint or start the run again");
    if (detail::tensor_state_kind(saved_kind)) {
      tensor_state.emplace(st, *optimizer, saved_kind, file);
    } else {
      // Other optimizers keep LibTorch's archive; its reader trusts its input, so halsal checks
      // the archive's ZIP structure and pickle lengths first.
      if (!st.tensors.contains("optimizer.state"))
        throw file_error(file, "checkpoint holds no optimizer state");
      const std::string blob = detail::tensor_bytes(st.tensors["optimizer.state"]);
      try {
        detail::check_archive(blob, file.string() + " (optimizer state)");
        std::istringstream s(blob);
        archive.load_from(s);
      } catch (const Error& e) {
        throw optimizer_error(e.what());
      } catch (const c10::Error& e) {
        throw optimizer_error(e.what_without_backtrace());
      } catch (const std::exception& e) {  // LibTorch's archive reader also throws plain errors
        throw optimizer_error(e.what());
      }
    }
  }
  TensorDict model_tensors;
  for (const auto& kv : st.tensors)
    if (starts_with(kv.key(), "model."))
      model_tensors.insert(kv.key().substr(6), kv.value());
  try {
    load_state_dict(model, model_tensors);
  } catch (const Error& e) {
    throw file_error(file, e.what());
  }
  if (tensor_state) {
    tensor_state->apply();
  } else if (optimizer) {
    try {
      optimizer->load(archive);
    } catch (const c10::Error& e) {
      throw optimizer_error(e.what_without_backtrace());
    } catch (const std::exception& e) {
      throw optimizer_error(e.what());
    }
  }
  if (options.restore_rng) {
    const auto gens = detail::rng_generators();
    for (std::size_t i = 0; i < gens.size(); ++i) {
      if (const auto* state = st.tensors.find(detail::rng_name(i))) {
        auto gen = gens[i];
        std::lock_guard<std::mutex> lock(gen.mutex());
        try {
          gen.set_state(*state);
        } catch (const c10::Error& e) {
          throw file_error(file, "cannot restore the random generator state '" + detail::rng_name(i) +
                                     "': " + e.what_without_backtrace());
        }
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
